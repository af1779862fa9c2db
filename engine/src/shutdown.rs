//! Shutdown as a type: every task gets a [`Shutdown`] and stops when it says so.
//!
//! Two phases, because a realtime node must not drop 20,000 clients at once:
//! 1. **Drain.** `/readyz` fails and `/ws` refuses new connections, so the load balancer moves
//!    traffic away. Each connection, at its own point in the grace period, is sent `RECONNECT`
//!    and closed with 4001, so clients spread their reconnects over the other nodes.
//! 2. **Stop.** Whatever is still open when the grace period ends is closed, background tasks
//!    end, and `run` returns.
//!
//! Connections watch the phase ([`Shutdown::phase`], [`Shutdown::phase_changed`]) rather than
//! the two tokens: one waiter per idle connection instead of two, each held for the
//! connection's whole life.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where the node is in its shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Serving.
    Running,
    /// Draining: connections close, each at its own point in the grace period.
    Draining,
    /// Stopped: everything closes now.
    Stopped,
}

impl Phase {
    const fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Stopped,
        }
    }
}

/// The phase as one atomic, and one `Notify` whose waiters are all woken at each change.
#[derive(Debug, Default)]
struct PhaseSignal {
    phase: AtomicU8,
    changed: Arc<Notify>,
}

impl PhaseSignal {
    /// Moves the phase forward to `to` (never back) and wakes every waiter.
    fn advance(&self, to: Phase) {
        let before = self.phase.fetch_max(to as u8, Ordering::SeqCst);
        if before < to as u8 {
            self.changed.notify_waiters();
        }
    }
}

/// Handle to the node's shutdown state; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    stop: CancellationToken,
    phase: Arc<PhaseSignal>,
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
        self.phase.advance(Phase::Draining);
    }

    /// Ends everything now. Implies drain.
    pub fn stop(&self) {
        self.drain.cancel();
        self.stop.cancel();
        self.phase.advance(Phase::Stopped);
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.phase.load(Ordering::SeqCst))
    }

    /// Completes at the first phase change after it was made, polled or not. Make it before
    /// reading [`Shutdown::phase`], and no change falls between the two. Owned (it holds the
    /// `Notify`), so a waiter borrows nothing.
    pub fn phase_changed(&self) -> OwnedNotified {
        Arc::clone(&self.phase.changed).notified_owned()
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

    #[tokio::test(start_paused = true)]
    async fn a_phase_change_reaches_a_waiter_made_before_it() {
        let sd = Shutdown::new();
        assert_eq!(sd.phase(), Phase::Running);
        // Made, not yet polled: the change still reaches it.
        let changed = sd.phase_changed();
        sd.begin_drain();
        changed.await;
        assert_eq!(sd.phase(), Phase::Draining);
        let changed = sd.phase_changed();
        // Draining again is no change.
        sd.begin_drain();
        let mut changed = std::pin::pin!(changed);
        assert!(futures_util::poll!(changed.as_mut()).is_pending());
        sd.stop();
        changed.await;
        assert_eq!(sd.phase(), Phase::Stopped);
    }
}
