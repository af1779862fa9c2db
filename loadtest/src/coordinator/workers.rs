//! The worker processes: starts one per plan (this binary again, with `--worker`), hands each
//! its plan on stdin, relays their JSON lines, and tells them all when to start measuring.

use crate::plan::WorkerPlan;
use anyhow::Context;
use serde_json::Value;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// What a worker said.
pub(super) enum FromWorker {
    /// One JSON line of worker `.0`.
    Line(usize, Value),
    /// Worker `.0` closed its stdout (it exited).
    Gone(usize),
}

/// Starts a worker per plan; their lines arrive on the receiver, tagged with the worker.
pub(super) async fn spawn(
    plans: &[WorkerPlan],
) -> anyhow::Result<(Vec<Child>, mpsc::UnboundedReceiver<FromWorker>)> {
    let exe = std::env::current_exe().context("own executable")?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut children: Vec<Child> = Vec::new();
    for p in plans {
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
    Ok((children, rx))
}

/// Tells every worker to start measuring at `start_ms`, unix ms.
pub(super) async fn start(children: &mut [Child], start_ms: u64) -> anyhow::Result<()> {
    for c in children {
        if let Some(stdin) = c.stdin.as_mut() {
            stdin
                .write_all(format!("start {start_ms}\n").as_bytes())
                .await?;
            stdin.flush().await?;
        }
    }
    Ok(())
}
