//! `evd-loadtest`: a load harness for evd deployments and the Socket.IO servers it replaces.
//!
//! The coordinator (this binary, run by you) splits the connections over worker processes (this
//! binary again, with the hidden `--worker` flag), each on its own 127.0.0.x source address so
//! neither the per-process file limit nor the ~28k ephemeral ports of one address pair bound the
//! run. Workers report HdrHistograms and counters as JSON lines; the coordinator merges them,
//! samples the servers' CPU and memory from `/proc`, and prints a report (or `--json`).

mod coordinator;
mod plan;
mod procstat;
mod schedule;
mod stamp;
mod stats;
mod wire;
mod worker;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    // The worker flag is hidden from the normal interface: its value is a JSON plan.
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--worker") {
        let spec = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("--worker needs its plan"))?;
        return worker::run(serde_json::from_str(&spec)?);
    }
    coordinator::run(plan::Args::parse())
}
