//! The coordinator: makes the rooms' polls (`--api`), starts the workers, shows progress,
//! starts the measurement on every worker at one instant, samples the servers from `/proc`,
//! merges the reports and prints them.

use crate::plan::{self, Args, Scenario};
use crate::procstat::{self, Sample};
use crate::provision;
use crate::stats::{self, WorkerReport};
use anyhow::{Context, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Delay between telling the workers to start and the start itself, so every worker has read
/// the line before the instant comes.
const START_LEAD: Duration = Duration::from_millis(1000);
/// How often the servers' RSS is sampled for the peak.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

fn sample_servers(pids: &[u32]) -> Option<Sample> {
    if pids.is_empty() {
        return None;
    }
    let samples: Option<Vec<Sample>> = pids.iter().map(|p| procstat::sample(Some(*p))).collect();
    samples.map(|s| procstat::sum(&s))
}

enum FromWorker {
    Line(usize, Value),
    Gone(usize),
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
        && (biggest as u64) + 64 > limit
    {
        eprintln!(
            "warning: a worker holds {biggest} connections but may open only {limit} files; \
             raise it (ulimit -n) or lower --per-worker"
        );
    }
    let baseline = sample_servers(&args.server_pids);

    let exe = std::env::current_exe().context("own executable")?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut children: Vec<Child> = Vec::new();
    for p in &plans {
        let mut child = Command::new(&exe)
            .arg("--worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start a worker")?;
        // The plan goes on stdin: with thousands of polls it outgrows a command-line argument.
        let stdin = child.stdin.as_mut().context("worker stdin")?;
        let mut line = serde_json::to_vec(p)?;
        line.push(b'\n');
        stdin.write_all(&line).await?;
        stdin.flush().await?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let tx = tx.clone();
        let w = p.worker;
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    let _ = tx.send(FromWorker::Line(w, v));
                }
            }
            let _ = tx.send(FromWorker::Gone(w));
        });
        children.push(child);
    }
    drop(tx);

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
    for c in &mut children {
        if let Some(stdin) = c.stdin.as_mut() {
            stdin
                .write_all(format!("start {start_ms}\n").as_bytes())
                .await?;
            stdin.flush().await?;
        }
    }
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
    let report_deadline = window + Duration::from_secs(60);
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

    let ms = |us: u64| us as f64 / 1000.0;
    let q = |h: &hdrhistogram::Histogram<u64>, p: f64| {
        if h.is_empty() {
            0.0
        } else {
            ms(h.value_at_quantile(p))
        }
    };
    let ratio = if merged.expected > 0 {
        merged.received as f64 / merged.expected as f64
    } else {
        1.0
    };
    let deliveries_per_s = merged.received as f64 / args.duration.max(1e-9);
    let server = match (baseline, at_ready, at_start, at_end) {
        (Some(b), Some(r), Some(s), Some(e)) => {
            let cpu = e.cpu_s - s.cpu_s;
            json!({
                "pids": args.server_pids,
                "rss_baseline_kib": b.rss_kib,
                "rss_ready_kib": r.rss_kib,
                "rss_peak_kib": peak_rss,
                "rss_per_connection_kib": if merged.connected > 0 {
                    (r.rss_kib as f64 - b.rss_kib as f64) / merged.connected as f64
                } else { 0.0 },
                "cpu_s": cpu,
                "cpu_percent": 100.0 * cpu / window.as_secs_f64(),
                "cpu_per_delivery_us": if merged.received > 0 { cpu * 1e6 / merged.received as f64 } else { 0.0 },
            })
        }
        _ => Value::Null,
    };
    let storm = merged.storm.as_ref().map(|(s, h)| {
        json!({
            "dropped": s.dropped, "back": s.back, "recovered": s.recovered,
            "not_recovered": s.not_recovered, "replayed": s.replayed,
            "all_back_s": s.slowest_us as f64 / 1e6,
            "rejoin_p50_ms": q(h, 0.5), "rejoin_p99_ms": q(h, 0.99),
        })
    });
    let start_us = start_ms * 1000;
    let votes = votes.map(|v| {
        let span_s = v.last_ack_us.saturating_sub(start_us) as f64 / 1e6;
        json!({
            "sent": v.sent,
            "acked": v.acked,
            "errors": v.errors,
            "error_kinds": v.error_kinds,
            "unanswered": v.sent.saturating_sub(v.acked + v.errors),
            "latency_ms": {
                "p50": q(&v.latency, 0.5), "p95": q(&v.latency, 0.95),
                "p99": q(&v.latency, 0.99), "p999": q(&v.latency, 0.999),
                "max": if v.latency.is_empty() { 0.0 } else { ms(v.latency.max()) },
            },
            "rate_per_s": if span_s > 0.0 { v.acked as f64 / span_s } else { 0.0 },
            "rooms_checked": v.rooms_checked,
            "rooms_tally_ok": v.rooms_tally_ok,
            "tally_mismatches": v.mismatches.iter().take(10).map(|(room, seen, acked)| {
                json!({ "room": room, "largest_total_seen": seen, "acked": acked })
            }).collect::<Vec<_>>(),
            "members_missed_final": v.members_missed_final,
            "results_converged_s": if v.converged_us > 0 {
                v.converged_us.saturating_sub(start_us) as f64 / 1e6
            } else { 0.0 },
        })
    });
    let report = json!({
        "scenario": args.scenario,
        "target": args.target,
        "codec": args.codec,
        "targets": args.targets,
        "workers": n_workers,
        "connections_requested": args.connections,
        "connections": merged.connected,
        "connect_failed": merged.connect_failed,
        "joined": merged.joined,
        "connect_p50_ms": q(&merged.connect, 0.5),
        "connect_p99_ms": q(&merged.connect, 0.99),
        "connect_rate_per_s": if merged.connect_span_us > 0 {
            merged.connected as f64 / (merged.connect_span_us as f64 / 1e6)
        } else { 0.0 },
        "ramp_s": ramp_s,
        "duration_s": args.duration,
        "publishers": args.publishers,
        "rate": args.rate,
        "payload": args.payload,
        "room_size": args.room_size,
        "published": merged.sent,
        "expected": merged.expected,
        "received": merged.received,
        "delivery_ratio": ratio,
        "deliveries_per_s": deliveries_per_s,
        "latency_ms": {
            "p50": q(&merged.latency, 0.5), "p95": q(&merged.latency, 0.95),
            "p99": q(&merged.latency, 0.99), "p999": q(&merged.latency, 0.999),
            "max": if merged.latency.is_empty() { 0.0 } else { ms(merged.latency.max()) },
        },
        "gaps": merged.gaps,
        "reorders": merged.reorders,
        "churn": args.churn,
        "churn_rejoins": merged.rejoins,
        "errors": merged.errors,
        "error_kinds": merged.error_kinds,
        "closes": merged.closes,
        "server": server,
        "storm": storm,
        "api": args.api,
        "org": provisioned.as_ref().map_or(&args.org, |p| &p.org),
        "sync_publishers": args.sync_publishers,
        "votes": votes,
        "harness_cpu_s": merged.cpu_s + own_cpu,
    });
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{report}")?;
    } else {
        writeln!(out, "{}", human(&report))?;
    }
    Ok(())
}

/// The report as a few readable lines.
fn human(r: &Value) -> String {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let mut s = format!(
        "{} against {} ({}), {} workers\n\
         connections   {} of {} ({} failed), connect p50 {:.1} ms p99 {:.1} ms, {:.0}/s\n",
        r["scenario"].as_str().unwrap_or(""),
        r["targets"],
        r["target"].as_str().unwrap_or(""),
        r["workers"],
        r["connections"],
        r["connections_requested"],
        r["connect_failed"],
        f(&r["connect_p50_ms"]),
        f(&r["connect_p99_ms"]),
        f(&r["connect_rate_per_s"]),
    );
    let l = &r["latency_ms"];
    s += &format!(
        "deliveries    {} of {} expected (ratio {:.4}), {:.0}/s from {} published\n\
         latency       p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms\n\
         order         gaps {}  reorders {}  churn rejoins {}\n\
         errors        {} {}  closes {}\n",
        r["received"],
        r["expected"],
        f(&r["delivery_ratio"]),
        f(&r["deliveries_per_s"]),
        r["published"],
        f(&l["p50"]),
        f(&l["p95"]),
        f(&l["p99"]),
        f(&l["p999"]),
        f(&l["max"]),
        r["gaps"],
        r["reorders"],
        r["churn_rejoins"],
        r["errors"],
        r["error_kinds"],
        r["closes"],
    );
    let sv = &r["server"];
    if !sv.is_null() {
        s += &format!(
            "server        RSS {} → {} KiB (peak {}), {:.2} KiB per connection; CPU {:.2} s ({:.0}%), {:.3} µs per delivery\n",
            sv["rss_baseline_kib"],
            sv["rss_ready_kib"],
            sv["rss_peak_kib"],
            f(&sv["rss_per_connection_kib"]),
            f(&sv["cpu_s"]),
            f(&sv["cpu_percent"]),
            f(&sv["cpu_per_delivery_us"]),
        );
    }
    let st = &r["storm"];
    if !st.is_null() {
        s += &format!(
            "storm         {} dropped, {} back in {:.2} s (rejoin p50 {:.0} ms p99 {:.0} ms), {} recovered, {} not, {} messages replayed\n",
            st["dropped"],
            st["back"],
            f(&st["all_back_s"]),
            f(&st["rejoin_p50_ms"]),
            f(&st["rejoin_p99_ms"]),
            st["recovered"],
            st["not_recovered"],
            st["replayed"],
        );
    }
    let v = &r["votes"];
    if !v.is_null() {
        let l = &v["latency_ms"];
        s += &format!(
            "votes         {} sent, {} acked, {} errors {}, {} unanswered; {:.0} acked/s\n\
             vote latency  p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms\n\
             tally         {} of {} rooms ok, results converged in {:.2} s, {} members missed the final tally\n",
            v["sent"],
            v["acked"],
            v["errors"],
            v["error_kinds"],
            v["unanswered"],
            f(&v["rate_per_s"]),
            f(&l["p50"]),
            f(&l["p95"]),
            f(&l["p99"]),
            f(&l["p999"]),
            f(&l["max"]),
            v["rooms_tally_ok"],
            v["rooms_checked"],
            f(&v["results_converged_s"]),
            v["members_missed_final"],
        );
        if let Some(bad) = v["tally_mismatches"].as_array().filter(|b| !b.is_empty()) {
            s += &format!("tally FAILED  {}\n", Value::Array(bad.clone()));
        }
    }
    s += &format!("harness CPU   {:.2} s", f(&r["harness_cpu_s"]));
    s
}
