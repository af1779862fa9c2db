//! The coordinator: makes the rooms' polls (`--api`), starts the workers, shows progress,
//! starts the measurement on every worker at one instant, samples the servers from `/proc`,
//! merges the reports and prints them.

mod report;
mod workers;

use crate::plan::{self, Args, Scenario};
use crate::procstat::{self, Sample};
use crate::provision;
use crate::stats::{self, WorkerReport};
use anyhow::{Context, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};
use workers::FromWorker;

/// Delay between telling the workers to start and the start itself, so every worker has read
/// the line before the instant comes.
const START_LEAD: Duration = Duration::from_millis(1000);
/// How often the servers' RSS is sampled for the peak.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Files a worker needs besides its connections (stdio, the runtime's own descriptors).
const FILES_HEADROOM: u64 = 64;
/// How long past the run and its drain the workers may take to report before the run fails.
const REPORT_GRACE: Duration = Duration::from_secs(60);

fn sample_servers(pids: &[u32]) -> Option<Sample> {
    if pids.is_empty() {
        return None;
    }
    let samples: Option<Vec<Sample>> = pids.iter().map(|p| procstat::sample(Some(*p))).collect();
    samples.map(|s| procstat::sum(&s))
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(coordinate(args))
}

async fn coordinate(args: Args) -> anyhow::Result<()> {
    plan::check(&args)?;
    let bars = MultiProgress::with_draw_target(if args.json || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let style = ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let provisioned = match &args.api {
        Some(api) => {
            let rooms = plan::room_count(&args);
            let bar = bars.add(ProgressBar::new(rooms as u64));
            bar.set_style(style.clone());
            bar.set_prefix("polls");
            let p = provision::provision(
                api,
                args.secret.clone(),
                rooms,
                match args.scenario {
                    Scenario::Broadcast => args.connections,
                    _ => args.room_size,
                },
                args.publishers,
                &bar,
            )
            .await?;
            if !args.json {
                eprintln!(
                    "api: org {}, {} sessions with a poll each",
                    p.org,
                    p.rooms.len()
                );
            }
            Some(p)
        }
        None => None,
    };
    let plans = plan::split(&args, provisioned.as_ref());
    let n_workers = plans.len();
    let biggest = plans
        .iter()
        .map(|p| p.clients + p.publishers.len())
        .max()
        .unwrap_or(0);
    if let Some(limit) = procstat::open_files_limit()
        && (biggest as u64) + FILES_HEADROOM > limit
    {
        eprintln!(
            "warning: a worker holds {biggest} connections but may open only {limit} files; \
             raise it (ulimit -n) or lower --per-worker"
        );
    }
    let baseline = sample_servers(&args.server_pids);

    let (mut children, mut rx) = workers::spawn(&plans).await?;

    let connect_bar = bars.add(ProgressBar::new(args.connections as u64));
    connect_bar.set_style(style.clone());
    connect_bar.set_prefix("connect");

    // Ramp: until every worker is ready.
    let started = Instant::now();
    let mut connected = vec![0u64; n_workers];
    let mut received = vec![0u64; n_workers];
    let mut back = vec![0u64; n_workers];
    let mut errors = vec![0u64; n_workers];
    let mut votes_acked = vec![0u64; n_workers];
    let votes_planned = plans.first().and_then(|p| p.vote_window()).is_some();
    let mut ready = 0;
    let mut reports: Vec<Option<WorkerReport>> = vec![None; n_workers];
    let mut gone = 0;
    while ready < n_workers {
        match rx.recv().await {
            Some(FromWorker::Line(w, v)) => match v["t"].as_str() {
                Some("progress") => {
                    connected[w] = v["connected"].as_u64().unwrap_or(0);
                    errors[w] = v["errors"].as_u64().unwrap_or(0);
                    connect_bar.set_position(connected.iter().sum());
                    connect_bar.set_message(format!("errors {}", errors.iter().sum::<u64>()));
                }
                Some("ready") => ready += 1,
                _ => {}
            },
            Some(FromWorker::Gone(w)) => bail!("worker {w} exited during the ramp"),
            None => bail!("workers gone"),
        }
    }
    let ramp_s = started.elapsed().as_secs_f64();
    connect_bar.finish();
    let at_ready = sample_servers(&args.server_pids);

    // Start every worker at one instant.
    let start_ms = (crate::stamp::now_us() / 1000) + START_LEAD.as_millis() as u64;
    workers::start(&mut children, start_ms).await?;
    tokio::time::sleep(START_LEAD).await;
    let at_start = sample_servers(&args.server_pids);
    let window = Duration::from_secs_f64(args.duration + args.drain);
    let run_bar = bars.add(ProgressBar::new(window.as_secs()));
    run_bar.set_style(style);
    run_bar.set_prefix(format!("{:?}", args.scenario).to_lowercase());
    let t0 = Instant::now();
    let mut peak_rss = at_start.map_or(0, |s| s.rss_kib);
    let mut at_end = None;
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    let report_deadline = window + REPORT_GRACE;
    while reports.iter().any(Option::is_none) {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(s) = sample_servers(&args.server_pids) {
                    peak_rss = peak_rss.max(s.rss_kib);
                    if at_end.is_none() && t0.elapsed() >= window {
                        at_end = Some(s);
                    }
                }
                run_bar.set_position(t0.elapsed().as_secs().min(window.as_secs()));
                if t0.elapsed() > report_deadline {
                    bail!("workers did not report within {report_deadline:?}");
                }
            }
            msg = rx.recv() => match msg {
                Some(FromWorker::Line(w, v)) => match v["t"].as_str() {
                    Some("progress") => {
                        received[w] = v["received"].as_u64().unwrap_or(0);
                        back[w] = v["back"].as_u64().unwrap_or(0);
                        errors[w] = v["errors"].as_u64().unwrap_or(0);
                        votes_acked[w] = v["votes_acked"].as_u64().unwrap_or(0);
                        let mut m = format!("received {}", received.iter().sum::<u64>());
                        if args.scenario == Scenario::ReconnectStorm {
                            m.push_str(&format!(", back {}", back.iter().sum::<u64>()));
                        }
                        if votes_planned {
                            m.push_str(&format!(", votes acked {}", votes_acked.iter().sum::<u64>()));
                        }
                        m.push_str(&format!(", errors {}", errors.iter().sum::<u64>()));
                        run_bar.set_message(m);
                    }
                    Some("report") => {
                        if at_end.is_none() {
                            at_end = sample_servers(&args.server_pids);
                        }
                        reports[w] = Some(serde_json::from_value(v).context("worker report")?);
                    }
                    _ => {}
                },
                Some(FromWorker::Gone(w)) => {
                    gone += 1;
                    if reports[w].is_none() {
                        bail!("worker {w} exited without a report");
                    }
                    if gone == n_workers {
                        break;
                    }
                }
                None => break,
            }
        }
    }
    run_bar.finish();
    for c in &mut children {
        let _ = c.wait().await;
    }
    let reports: Vec<WorkerReport> = reports.into_iter().flatten().collect();
    let merged = stats::merge(&reports)?;
    let votes = stats::merge_votes(&reports)?;
    let own_cpu = procstat::sample(None).map_or(0.0, |s| s.cpu_s);
    let run = report::Run {
        args: &args,
        org: provisioned.as_ref().map_or(&args.org, |p| &p.org),
        workers: n_workers,
        ramp_s,
        start_us: start_ms * 1000,
        window,
        baseline,
        at_ready,
        at_start,
        at_end,
        peak_rss,
        own_cpu,
    };
    let report = report::build(&run, &merged, votes.as_ref());
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{report}")?;
    } else {
        writeln!(out, "{}", report::human(&report))?;
    }
    Ok(())
}
