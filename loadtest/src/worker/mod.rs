//! A worker process: holds its share of the connections on one source address, runs its
//! publishers, and reports counters and histograms as JSON lines on stdout.
//!
//! Lines out: `{"t":"progress",…}` every half second, `{"t":"ready"}` once every connection has
//! joined (or failed), `{"t":"report",…}` at the end. Lines in: the plan as JSON (too big for the
//! command line once it lists thousands of polls), then `start <unix ms>`, the instant every
//! worker starts measuring, so publishers on all workers share one schedule.
//!
//! One thread per worker (a current-thread runtime and a `LocalSet`): counters are plain
//! `RefCell`s with no locking, and the coordinator starts as many workers as the run needs.
//! This file is the run itself: ramp, ready, common start, phases, report.

mod client;
mod counters;
mod frames;
mod member;
mod publisher;
mod storm;
mod transport;

use crate::plan::{Scenario, WorkerPlan};
use crate::stamp;
use crate::wire::Wire;
use anyhow::Context;
use counters::Counters;
use std::cell::{Cell, RefCell};
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;
use transport::Transport;

/// How often the worker tells the coordinator its counts, for the progress bars.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// How often the ramp checks whether every client and publisher has settled.
const SETTLE_POLL: Duration = Duration::from_millis(50);
/// Past the connect timeout, how long the ramp still waits for stragglers before it says ready.
const SETTLE_GRACE: Duration = Duration::from_secs(5);
/// Where in the run the reconnect storm comes, as a share of the duration.
const STORM_AT: f64 = 0.3;

/// What the clients are doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ramp,
    Run,
    Storm,
    Done,
}

/// What every task of the worker shares.
struct Ctx {
    plan: WorkerPlan,
    wire: Wire,
    net: Transport,
    counters: RefCell<Counters>,
    phase: watch::Sender<Phase>,
    /// The measurement start, set when the coordinator says `start`.
    start: Cell<Option<(Instant, u64)>>,
}

/// Writes one JSON line to the coordinator.
fn emit(line: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Reads its plan from stdin, runs it to the end, then exits the process.
pub(crate) fn run() -> anyhow::Result<()> {
    // A worker never outlives its coordinator: Ctrl-C or a killed coordinator stops the load.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .context("PR_SET_PDEATHSIG")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let plan = lines
            .next_line()
            .await?
            .context("the coordinator sent no plan")?;
        work(serde_json::from_str(&plan).context("worker plan")?, lines).await
    })?;
    // Exiting closes every socket at once; dropping thousands of tasks one by one buys nothing.
    std::process::exit(0)
}

async fn work(
    plan: WorkerPlan,
    mut lines: tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>,
) -> anyhow::Result<()> {
    let wire = Wire {
        target: plan.target,
        codec: plan.codec.codec(),
    };
    let net = Transport::new(&plan, wire).await?;
    let (phase, _) = watch::channel(Phase::Ramp);
    let counters = Counters::new(plan.clients, !plan.api_rooms.is_empty());
    let ctx = Rc::new(Ctx {
        wire,
        plan,
        net,
        counters: RefCell::new(counters),
        phase,
        start: Cell::new(None),
    });

    // Progress for the coordinator's bars.
    let progress_ctx = ctx.clone();
    tokio::task::spawn_local(async move {
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        loop {
            tick.tick().await;
            emit(&progress_ctx.counters.borrow().progress());
        }
    });

    // Ramp at this worker's share of the rate.
    let plan = &ctx.plan;
    let ramp_start = tokio::time::Instant::now();
    for k in 0..plan.clients {
        if plan.ramp > 0.0 {
            tokio::time::sleep_until(ramp_start + Duration::from_secs_f64(k as f64 / plan.ramp))
                .await;
        }
        tokio::task::spawn_local(client::client(ctx.clone(), plan.first_client + k));
    }
    for &p in &plan.publishers {
        tokio::task::spawn_local(publisher::publisher(ctx.clone(), p));
    }
    let deadline = Instant::now() + Duration::from_millis(plan.connect_timeout_ms) + SETTLE_GRACE;
    loop {
        {
            let c = ctx.counters.borrow();
            if c.settled >= plan.clients as u64
                && c.publishers_ready >= plan.publishers.len() as u64
            {
                break;
            }
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
    emit(&serde_json::json!({ "t": "ready" }));

    // Wait for the common start.
    let start_ms: u64 = loop {
        match lines.next_line().await? {
            Some(l) => {
                if let Some(ms) = l.strip_prefix("start ").and_then(|m| m.trim().parse().ok()) {
                    break ms;
                }
            }
            None => anyhow::bail!("coordinator went away"),
        }
    };
    let now_us = stamp::now_us();
    let start = Instant::now() + Duration::from_micros((start_ms * 1000).saturating_sub(now_us));
    tokio::time::sleep_until(start.into()).await;
    ctx.start.set(Some((start, start_ms * 1000)));
    {
        let mut c = ctx.counters.borrow_mut();
        c.members_at_start = c.members_now.clone();
    }
    ctx.phase.send_replace(Phase::Run);

    let duration = Duration::from_millis(plan.duration_ms);
    if plan.scenario == Scenario::ReconnectStorm {
        tokio::time::sleep_until((start + duration.mul_f64(STORM_AT)).into()).await;
        ctx.phase.send_replace(Phase::Storm);
    }
    tokio::time::sleep_until((start + duration + Duration::from_millis(plan.drain_ms)).into())
        .await;
    ctx.phase.send_replace(Phase::Done);
    let r = ctx.counters.borrow().report(&ctx.plan);
    let mut line = serde_json::to_value(&r)?;
    line["t"] = "report".into();
    emit(&line);
    Ok(())
}
