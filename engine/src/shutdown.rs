//! Shutdown as a type: every task gets a [`Shutdown`] and stops when it says so.
//!
//! Two phases, because a realtime node must not drop 20,000 clients at once:
//! 1. **Drain.** `/readyz` fails and `/ws` refuses new connections, so the load balancer moves
//!    traffic away. Each connection, at its own point in the grace period, is sent `RECONNECT`
//!    and closed with 4001, so clients spread their reconnects over the other nodes.
//! 2. **Stop.** Whatever is still open when the grace period ends is closed, background tasks
//!    end, and `run` returns.

use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Handle to the node's shutdown state; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    /// A new, running state.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Starts the drain phase. Idempotent.
    pub fn begin_drain(&self) {
        self.drain.cancel();
    }

    /// Ends everything now. Implies drain.
    pub fn stop(&self) {
        self.drain.cancel();
        self.stop.cancel();
    }

    /// True once draining (or stopped).
    pub fn is_draining(&self) -> bool {
        self.drain.is_cancelled()
    }

    /// Completes when draining starts.
    pub fn draining(&self) -> impl Future<Output = ()> + Send + 'static {
        self.drain.clone().cancelled_owned()
    }

    /// A token cancelled when the node must stop, for libraries that take one.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Completes when the node must stop.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        self.stop.clone().cancelled_owned()
    }

    /// Spawns a task the node waits for on shutdown.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(fut)
    }

    /// Wraps a future so the node waits for it on shutdown (used for tasks spawned elsewhere,
    /// such as axum's upgrade task).
    pub fn track<F: Future>(&self, fut: F) -> tokio_util::task::task_tracker::TrackedFuture<F> {
        self.tasks.track_future(fut)
    }

    /// Number of tracked tasks still running.
    pub fn tasks_running(&self) -> usize {
        self.tasks.len()
    }

    /// Waits up to `limit` for every tracked task to finish; true if they all did.
    pub async fn wait_tasks(&self, limit: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(limit, self.tasks.wait()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_then_stop_reach_tracked_tasks() {
        let sd = Shutdown::new();
        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel();
        let s = sd.clone();
        let task = sd.spawn(async move {
            s.draining().await;
            let _ = drained_tx.send(());
            s.stopped().await;
        });
        assert!(!sd.is_draining());
        sd.begin_drain();
        assert!(sd.is_draining());
        drained_rx.await.unwrap();
        assert!(!task.is_finished(), "draining is not stopping");
        assert!(!sd.wait_tasks(Duration::from_millis(10)).await);
        sd.stop();
        assert!(sd.wait_tasks(Duration::from_secs(1)).await);
        task.await.unwrap();
    }
}
