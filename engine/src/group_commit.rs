//! [`GroupCommit`]: many callers' writes committed together in one transaction.
//!
//! Each caller submits one item and waits for its own outcome. One task takes whatever has
//! queued up (up to a batch limit), commits it with a single call, and answers every caller.
//! While a batch commits, the next one gathers, so under load batches grow by themselves. With
//! `linger` at zero a lone write is committed at once; a writer whose callers don't wait on the
//! commit (the chat archive: the message is delivered first, its ACK follows the commit) can
//! linger a moment after the first write, so a steady trickle commits in groups rather than as
//! one transaction per write.
//!
//! A write may have a deadline ([`GroupCommit::submit_within`]): if the committer has not taken it
//! into a batch by then, its caller is answered [`SubmitError::Expired`] at once and the write is
//! never committed. A claim flag decides the race: whichever side sets it first, the committer
//! (taking the write) or the caller (giving up), wins, so "expired" always means "not written".
//!
//! Each writer has a name (`votes`, `archive`, …) and reports, labelled `writer`, the size of
//! every batch it commits ([`crate::metrics::GROUP_COMMIT_BATCH`]), how long each write waited
//! from being queued to its commit's end ([`crate::metrics::GROUP_COMMIT_WAIT`]), and the writes
//! refused because the queue stayed full or their deadline passed
//! ([`crate::metrics::GROUP_COMMIT_BUSY`]).

use crate::metrics::{GROUP_COMMIT_BATCH, GROUP_COMMIT_BUSY, GROUP_COMMIT_WAIT};
use crate::shutdown::Shutdown;
use metrics::{Counter, counter, histogram};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Why a write got no outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue stayed full for the whole wait.
    #[error("the writer is busy; retry")]
    Busy,
    /// The writer stopped (shutdown) before answering.
    #[error("the writer stopped")]
    Stopped,
    /// The write was not taken into a batch before its deadline; it was not committed.
    #[error("the write waited past its deadline; retry")]
    Expired,
}

/// A write, where its outcome goes, when it was queued, and, for a write with a deadline, the
/// claim its caller and the committer race for (see the module doc).
struct Job<T, R> {
    item: T,
    reply: oneshot::Sender<R>,
    queued: Instant,
    claim: Option<Arc<AtomicBool>>,
}

/// A handle to submit writes; cheap to clone.
#[derive(Debug)]
pub struct GroupCommit<T, R> {
    tx: mpsc::Sender<Job<T, R>>,
    wait: Duration,
    busy: Counter,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        GroupCommit {
            tx: self.tx.clone(),
            wait: self.wait,
            busy: self.busy.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Starts the committing task of the writer named `writer` (its metrics' label). `commit`
    /// gets a batch and returns one outcome per item, in order. At most `queue` writes wait; a
    /// caller waits up to `wait` for room in the queue. A batch that is not full waits `linger`
    /// for more writes before it commits.
    pub fn spawn<F, Fut>(
        shutdown: &Shutdown,
        writer: &'static str,
        queue: usize,
        max_batch: usize,
        wait: Duration,
        linger: Duration,
        commit: F,
    ) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Job<T, R>>(queue.max(1));
        let batch_size = histogram!(GROUP_COMMIT_BATCH, "writer" => writer);
        let waited = histogram!(GROUP_COMMIT_WAIT, "writer" => writer);
        let busy = counter!(GROUP_COMMIT_BUSY, "writer" => writer);
        let stopped = shutdown.stopped();
        shutdown.spawn(async move {
            tokio::pin!(stopped);
            let mut jobs: Vec<Job<T, R>> = Vec::with_capacity(max_batch);
            let mut stopping = false;
            loop {
                let n = tokio::select! {
                    biased;
                    n = rx.recv_many(&mut jobs, max_batch.max(1)) => n,
                    _ = &mut stopped, if !stopping => {
                        // Refuse new writes, but commit those already queued: their callers are
                        // waiting for an answer.
                        stopping = true;
                        rx.close();
                        continue;
                    }
                };
                if n == 0 {
                    break;
                }
                if !linger.is_zero() && !stopping && jobs.len() < max_batch {
                    tokio::time::sleep(linger).await;
                    while jobs.len() < max_batch
                        && let Ok(job) = rx.try_recv()
                    {
                        jobs.push(job);
                    }
                }
                let mut items = Vec::with_capacity(jobs.len());
                let mut replies = Vec::with_capacity(jobs.len());
                for job in jobs.drain(..) {
                    // A caller that gave up first keeps its write out of the batch.
                    if job.claim.is_some_and(|c| c.swap(true, Ordering::AcqRel)) {
                        continue;
                    }
                    items.push(job.item);
                    replies.push((job.reply, job.queued));
                }
                if items.is_empty() {
                    continue;
                }
                batch_size.record(items.len() as f64);
                let outcomes = commit(items).await;
                let done = Instant::now();
                for ((reply, queued), outcome) in replies.into_iter().zip(outcomes) {
                    waited.record(done.duration_since(queued).as_secs_f64());
                    let _ = reply.send(outcome);
                }
            }
        });
        GroupCommit { tx, wait, busy }
    }

    /// Submits one write and waits for its outcome.
    pub async fn submit(&self, item: T) -> Result<R, SubmitError> {
        self.enqueue(item).await?.await
    }

    /// Submits one write that must be taken into a batch within `within`: past that, whether it
    /// is still waiting for room in the queue or queued, the caller gets
    /// [`SubmitError::Expired`] (or [`SubmitError::Busy`] for a queue that stayed full) and the
    /// write is never committed. Once taken, the caller waits for its commit.
    pub async fn submit_within(&self, item: T, within: Duration) -> Result<R, SubmitError> {
        let deadline = tokio::time::Instant::now() + within;
        let claim = Arc::new(AtomicBool::new(false));
        let mut outcome = self
            .send(item, Some(Arc::clone(&claim)), self.wait.min(within))
            .await?;
        match tokio::time::timeout_at(deadline, &mut outcome).await {
            Ok(r) => r.map_err(|_| SubmitError::Stopped),
            Err(_) if !claim.swap(true, Ordering::AcqRel) => {
                self.busy.increment(1);
                Err(SubmitError::Expired)
            }
            // The committer took it first: its commit is under way, so wait for the outcome.
            Err(_) => outcome.await.map_err(|_| SubmitError::Stopped),
        }
    }

    /// Queues one write (waiting up to the configured time for room) and returns a future of
    /// its outcome. The write is committed whether or not the future is awaited; outcomes of one
    /// caller's writes arrive in the order they were queued.
    pub async fn enqueue(
        &self,
        item: T,
    ) -> Result<impl Future<Output = Result<R, SubmitError>> + Send + 'static, SubmitError> {
        let outcome = self.send(item, None, self.wait).await?;
        Ok(async move { outcome.await.map_err(|_| SubmitError::Stopped) })
    }

    /// Queues one job, waiting up to `wait` for room; the receiver of its outcome.
    async fn send(
        &self,
        item: T,
        claim: Option<Arc<AtomicBool>>,
        wait: Duration,
    ) -> Result<oneshot::Receiver<R>, SubmitError> {
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            item,
            reply,
            queued: Instant::now(),
            claim,
        };
        match tokio::time::timeout(wait, self.tx.send(job)).await {
            Err(_) => {
                self.busy.increment(1);
                Err(SubmitError::Busy)
            }
            Ok(Err(_)) => Err(SubmitError::Stopped),
            Ok(Ok(())) => Ok(outcome),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn concurrent_writes_share_batches_and_get_their_own_outcome() {
        let shutdown = Shutdown::new();
        let batches = Arc::new(AtomicUsize::new(0));
        let b = Arc::clone(&batches);
        let gc = GroupCommit::spawn(
            &shutdown,
            "test",
            1000,
            64,
            Duration::from_secs(5),
            Duration::ZERO,
            move |items: Vec<u32>| {
                let b = Arc::clone(&b);
                async move {
                    b.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                    items.into_iter().map(|i| i * 2).collect()
                }
            },
        );
        let tasks: Vec<_> = (0..500u32)
            .map(|i| {
                let gc = gc.clone();
                tokio::spawn(async move { (i, gc.submit(i).await.unwrap()) })
            })
            .collect();
        for t in tasks {
            let (i, out) = t.await.unwrap();
            assert_eq!(out, i * 2, "each caller gets its own outcome");
        }
        let n = batches.load(Ordering::Relaxed);
        assert!(
            (500 / 64..500).contains(&n),
            "writes were batched: {n} batches"
        );
        shutdown.stop();
        assert!(
            shutdown.wait_tasks(Duration::from_secs(5)).await,
            "the committer ends"
        );
        assert_eq!(gc.submit(1).await, Err(SubmitError::Stopped));
    }

    /// A series' value in a Prometheus rendering (0 when absent).
    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    #[tokio::test]
    async fn batches_and_waits_are_measured_per_writer() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let shutdown = Shutdown::new();
        let batches = Arc::new(AtomicUsize::new(0));
        let b = Arc::clone(&batches);
        let gc = metrics::with_local_recorder(&recorder, || {
            GroupCommit::spawn(
                &shutdown,
                "votes",
                1000,
                64,
                Duration::from_secs(5),
                Duration::ZERO,
                move |items: Vec<u32>| {
                    b.fetch_add(1, Ordering::Relaxed);
                    async move {
                        tokio::task::yield_now().await;
                        items
                    }
                },
            )
        });
        let tasks: Vec<_> = (0..200u32)
            .map(|i| {
                let gc = gc.clone();
                tokio::spawn(async move { gc.submit(i).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let text = handle.render();
        let series = |name: &str| sample(&text, &format!("{name}{{writer=\"votes\"}}"));
        assert_eq!(series("evd_group_commit_batch_size_sum"), 200.0, "{text}");
        assert_eq!(
            series("evd_group_commit_batch_size_count"),
            batches.load(Ordering::Relaxed) as f64,
            "one sample per batch"
        );
        assert_eq!(
            series("evd_group_commit_wait_seconds_count"),
            200.0,
            "one wait per write"
        );
        assert_eq!(series("evd_group_commit_busy_total"), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lingering_writer_commits_a_trickle_in_one_batch() {
        for (linger, batches_expected) in [(Duration::ZERO, 2), (Duration::from_millis(10), 1)] {
            let shutdown = Shutdown::new();
            let batches = Arc::new(AtomicUsize::new(0));
            let b = Arc::clone(&batches);
            let gc = GroupCommit::spawn(
                &shutdown,
                "test",
                100,
                64,
                Duration::from_secs(5),
                linger,
                move |items: Vec<u32>| {
                    b.fetch_add(1, Ordering::Relaxed);
                    async move { items }
                },
            );
            let first = gc.enqueue(1).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            let second = gc.enqueue(2).await.unwrap();
            assert_eq!((first.await, second.await), (Ok(1), Ok(2)));
            assert_eq!(
                batches.load(Ordering::Relaxed),
                batches_expected,
                "linger {linger:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_answers_busy_after_the_wait() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let shutdown = Shutdown::new();
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let _guard = metrics::set_default_local_recorder(&recorder);
        let gc = GroupCommit::spawn(
            &shutdown,
            "test",
            1,
            1,
            Duration::from_millis(50),
            Duration::ZERO,
            move |items: Vec<u32>| {
                let mut gate = gate_rx.clone();
                async move {
                    let _ = gate.wait_for(|open| *open).await;
                    items
                }
            },
        );
        let first = tokio::spawn({
            let gc = gc.clone();
            async move { gc.submit(1).await }
        });
        tokio::task::yield_now().await; // the committer takes item 1 and blocks on the gate
        let second = tokio::spawn({
            let gc = gc.clone();
            async move { gc.submit(2).await }
        });
        tokio::task::yield_now().await; // item 2 fills the queue
        assert_eq!(gc.submit(3).await, Err(SubmitError::Busy));
        gate_tx.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        assert_eq!(second.await.unwrap(), Ok(2));
        let text = handle.render();
        assert_eq!(
            sample(&text, r#"evd_group_commit_busy_total{writer="test"}"#),
            1.0,
            "the refusal is counted: {text}"
        );
    }

    /// A committer gated on `gate`, recording every item it commits.
    fn gated(
        shutdown: &Shutdown,
        gate: tokio::sync::watch::Receiver<bool>,
        committed: Arc<parking_lot::Mutex<Vec<u32>>>,
    ) -> GroupCommit<u32, u32> {
        GroupCommit::spawn(
            shutdown,
            "test",
            100,
            64,
            Duration::from_secs(5),
            Duration::ZERO,
            move |items: Vec<u32>| {
                let mut gate = gate.clone();
                let committed = Arc::clone(&committed);
                async move {
                    let _ = gate.wait_for(|open| *open).await;
                    committed.lock().extend(&items);
                    items
                }
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_not_taken_by_its_deadline_expires_and_is_never_committed() {
        let shutdown = Shutdown::new();
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let committed = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let gc = gated(&shutdown, gate_rx, Arc::clone(&committed));
        let within = Duration::from_millis(100);
        // Item 1 is taken into a commit that stalls longer than its deadline: it waits for it.
        let first = tokio::spawn({
            let gc = gc.clone();
            async move { gc.submit_within(1, within).await }
        });
        tokio::task::yield_now().await;
        // Item 2 queues behind the stalled commit and is refused at its deadline.
        assert_eq!(gc.submit_within(2, within).await, Err(SubmitError::Expired));
        assert!(
            !first.is_finished(),
            "a write taken before its deadline is not refused"
        );
        gate_tx.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        // The next batch skips the expired item 2 and commits item 3.
        assert_eq!(gc.submit_within(3, within).await, Ok(3));
        assert_eq!(
            *committed.lock(),
            vec![1, 3],
            "the expired write was not committed"
        );
    }
}
