//! `evd-loadtest`: a load harness for evd deployments and the Socket.IO servers it replaces.
//!
//! The coordinator (this binary, run by you) splits the connections over worker processes (this
//! binary again, with the hidden `--worker` flag), each on its own 127.0.0.x source address so
//! neither the per-process file limit nor the ~28k ephemeral ports of one address pair bound the
//! run. Workers report HdrHistograms and counters as JSON lines; the coordinator merges them,
//! samples the servers' CPU and memory from `/proc`, and prints a report (or `--json`).
//!
//! With `--api` the coordinator first creates an org, an event and a session with a poll per
//! room through the engine's REST API, and the clients vote in those polls over the WebSocket.

mod coordinator;
mod plan;
mod procstat;
mod provision;
mod schedule;
mod stamp;
mod stats;
mod wire;
mod worker;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    // The worker flag is hidden from the normal interface; the plan follows on stdin.
    if std::env::args().nth(1).as_deref() == Some("--worker") {
        return worker::run();
    }
    coordinator::run(plan::Args::parse())
}
