//! The per-connection outbound queue, bounded in bytes.
//!
//! Fanout pushes already-encoded frames here without waiting; the connection's writer task
//! drains it. When a push would take the queue over its limit, the client is a slow consumer:
//! the queue is emptied at once (so its memory is freed now, not when the socket dies) and the
//! connection is closed with 4008. Nothing else in the node waits on a slow client.

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use crossbeam_utils::CachePadded;
use evd_protocol::CloseCode;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;
use tokio::time::Instant;

/// One encoded event, ready for the socket.
#[derive(Clone, Debug)]
pub enum Payload {
    /// JSON, for a text frame.
    Text(Utf8Bytes),
    /// MessagePack, for a binary frame.
    Binary(Bytes),
}

impl Payload {
    /// Size in bytes, as counted against the queue limit.
    pub fn len(&self) -> usize {
        match self {
            Payload::Text(t) => t.len(),
            Payload::Binary(b) => b.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A queued payload and, for room broadcasts, when the hub received it (for the fanout latency
/// histogram).
#[derive(Clone, Debug)]
pub struct Outbound {
    /// The encoded event.
    pub payload: Payload,
    /// When the publication reached this node's hub; `None` for direct replies.
    pub published_at: Option<Instant>,
}

/// Counter stripes: each queue adds to one, so pushes on one core and takes on the other
/// rarely touch the same cache line. With one shared counter, `push` was about a tenth of the
/// server's CPU at a million deliveries a second (`perf`); striped, about half that.
const STRIPES: usize = 16;

/// Byte accounting shared by all queues of a node.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Bytes queued, split over stripes. Only the wrapping sum means anything: a queue picks
    /// its stripe by its address.
    bytes: [CachePadded<AtomicUsize>; STRIPES],
    peak_conn_bytes: AtomicUsize,
}

impl QueueStats {
    /// Bytes waiting in all queues now.
    pub fn queued_bytes(&self) -> usize {
        self.bytes
            .iter()
            .fold(0usize, |sum, b| sum.wrapping_add(b.load(Ordering::Relaxed)))
    }

    /// The most bytes any single queue has held. Never above the configured limit.
    pub fn peak_conn_bytes(&self) -> usize {
        self.peak_conn_bytes.load(Ordering::Relaxed)
    }

    fn add(&self, stripe: usize, n: usize) {
        self.bytes[stripe].fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, stripe: usize, n: usize) {
        self.bytes[stripe].fetch_sub(n, Ordering::Relaxed);
    }

    /// Raises the peak; reads first, so the common case writes nothing shared.
    fn saw(&self, conn_bytes: usize) {
        if conn_bytes > self.peak_conn_bytes.load(Ordering::Relaxed) {
            self.peak_conn_bytes
                .fetch_max(conn_bytes, Ordering::Relaxed);
        }
    }
}

/// What happened to a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued.
    Queued,
    /// The queue would have gone over its limit: it was emptied, `dropped` items were discarded,
    /// and the connection is closing with 4008. Reported once per connection.
    Overflow {
        /// Items discarded, this one included.
        dropped: usize,
    },
    /// The connection is already closing; the payload was not queued.
    Closed,
}

/// What the writer should do next.
#[derive(Debug, Default)]
pub struct Take {
    /// Payloads to write, oldest first.
    pub items: Vec<Outbound>,
    /// Set once the queue is closed and nothing more will be written: send this close code.
    pub close: Option<CloseCode>,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Outbound>,
    bytes: usize,
    /// Set when closing. With `flush`, queued items are written before the close frame.
    close: Option<(CloseCode, bool)>,
}

/// A byte-bounded queue with one producer side (the hub, replies) and one consumer (the writer).
/// `repr(C)`: the state a push and a take use first (see [`super::Conn`]).
#[derive(Debug)]
#[repr(C)]
pub struct SendQueue {
    /// A `parking_lot` mutex, not a Tokio one: it is held for a push or a drain, never across
    /// an `.await`.
    state: Mutex<State>,
    limit: usize,
    wake: Notify,
}

impl SendQueue {
    /// A queue holding at most `limit` bytes.
    pub fn new(limit: usize) -> SendQueue {
        SendQueue {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            limit,
        }
    }

    /// This queue's stripe of [`QueueStats`]: from its address, so it costs no memory.
    fn stripe(&self) -> usize {
        (std::ptr::from_ref(self) as usize >> 7) % STRIPES
    }

    /// Queues a payload without waiting.
    pub fn push(&self, item: Outbound, stats: &QueueStats) -> Push {
        let len = item.payload.len();
        let mut s = self.state.lock();
        if s.close.is_some() {
            return Push::Closed;
        }
        if s.bytes + len > self.limit {
            let dropped = s.items.len() + 1;
            let freed = s.bytes;
            s.items = VecDeque::new();
            s.bytes = 0;
            s.close = Some((CloseCode::SlowConsumer, false));
            drop(s);
            stats.sub(self.stripe(), freed);
            self.wake.notify_one();
            return Push::Overflow { dropped };
        }
        let was_empty = s.items.is_empty();
        s.items.push_back(item);
        s.bytes += len;
        let now = s.bytes;
        drop(s);
        stats.add(self.stripe(), len);
        stats.saw(now);
        // The writer only sleeps on an empty queue, so only the first push after empty wakes it.
        if was_empty {
            self.wake.notify_one();
        }
        Push::Queued
    }

    /// Starts closing with `code`. With `flush`, what is queued is written first; without, it
    /// is dropped. The first code wins, but a later close without `flush` still stops a flushing
    /// one (a client that does not read must not keep the writer forever). Returns the number of
    /// items dropped.
    pub fn close(&self, code: CloseCode, flush: bool, stats: &QueueStats) -> usize {
        let mut s = self.state.lock();
        match s.close {
            None => s.close = Some((code, flush)),
            Some((first, true)) if !flush => s.close = Some((first, false)),
            Some(_) => return 0,
        }
        let mut dropped = 0;
        if !flush {
            dropped = s.items.len();
            stats.sub(self.stripe(), s.bytes);
            s.items = VecDeque::new();
            s.bytes = 0;
        }
        drop(s);
        self.wake.notify_one();
        dropped
    }

    /// The close code, once closing.
    pub fn closing(&self) -> Option<CloseCode> {
        self.state.lock().close.map(|(c, _)| c)
    }

    /// Takes up to `max_bytes` (at least one item), or the close code once nothing is left.
    pub fn take(&self, max_bytes: usize, stats: &QueueStats) -> Take {
        let mut items = Vec::new();
        let close = self.take_into(max_bytes, stats, &mut items);
        Take { items, close }
    }

    /// Like [`SendQueue::take`], appending to `out`. When `out` is empty and everything
    /// queued fits in `max_bytes` (the usual case), it takes the queue's buffer itself, so the
    /// queue is left with none: an idle connection then holds no buffer on either side, at the
    /// price of one allocation at its next push. Returns the close code once the queue is closed
    /// and nothing is left.
    pub fn take_into(
        &self,
        max_bytes: usize,
        stats: &QueueStats,
        out: &mut Vec<Outbound>,
    ) -> Option<CloseCode> {
        let mut s = self.state.lock();
        let start = out.len();
        let mut bytes = 0;
        if start == 0 && !s.items.is_empty() && s.bytes <= max_bytes {
            bytes = s.bytes;
            *out = Vec::from(std::mem::take(&mut s.items));
        }
        while let Some(front) = s.items.front() {
            let len = front.payload.len();
            if out.len() > start && bytes + len > max_bytes {
                break;
            }
            bytes += len;
            out.extend(s.items.pop_front());
        }
        s.bytes -= bytes;
        let mut close = None;
        if s.items.is_empty() {
            // Give back the memory of a burst: idle connections should not keep large buffers.
            if s.items.capacity() > 64 {
                s.items = VecDeque::new();
            }
            if out.len() == start {
                close = s.close.map(|(c, _)| c);
            }
        }
        drop(s);
        stats.sub(self.stripe(), bytes);
        close
    }

    /// Whether a writer has something to do: items queued, or a close to send.
    pub fn has_work(&self) -> bool {
        let s = self.state.lock();
        !s.items.is_empty() || s.close.is_some()
    }

    /// Bytes queued now.
    pub fn bytes(&self) -> usize {
        self.state.lock().bytes
    }

    /// Waits until something is pushed or the queue starts closing.
    pub async fn wait(&self) {
        self.wake.notified().await;
    }

    /// Waits until the queue is closed without flushing: the writer must stop writing data and
    /// send the close frame now.
    pub async fn wait_abort(&self) -> CloseCode {
        loop {
            if let Some((code, false)) = self.state.lock().close {
                return code;
            }
            self.wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: usize) -> Outbound {
        Outbound {
            payload: Payload::Binary(Bytes::from(vec![0u8; n])),
            published_at: None,
        }
    }

    #[test]
    fn bounded_in_bytes_and_overflow_frees_everything() {
        let stats = QueueStats::default();
        let q = SendQueue::new(100);
        for _ in 0..10 {
            assert_eq!(q.push(item(10), &stats), Push::Queued);
        }
        assert_eq!((q.bytes(), stats.queued_bytes()), (100, 100));
        assert_eq!(q.push(item(1), &stats), Push::Overflow { dropped: 11 });
        assert_eq!((q.bytes(), stats.queued_bytes()), (0, 0));
        assert_eq!(stats.peak_conn_bytes(), 100);
        assert_eq!(q.push(item(1), &stats), Push::Closed);
        let t = q.take(1000, &stats);
        assert!(t.items.is_empty());
        assert_eq!(t.close, Some(CloseCode::SlowConsumer));
    }

    #[test]
    fn taking_everything_takes_the_buffer_in_order_and_leaves_the_queue_none() {
        let stats = QueueStats::default();
        let q = SendQueue::new(1000);
        // Wrap the ring buffer: the taken Vec must still be in push order.
        for n in 1..=3 {
            q.push(item(n), &stats);
        }
        let mut out = Vec::new();
        assert_eq!(q.take_into(3, &stats, &mut out), None);
        assert_eq!(out.len(), 2, "a partial take pops");
        for n in 4..=6 {
            q.push(item(n), &stats);
        }
        let mut out = Vec::new();
        assert_eq!(q.take_into(1000, &stats, &mut out), None);
        let lens: Vec<usize> = out.iter().map(|o| o.payload.len()).collect();
        assert_eq!(lens, [3, 4, 5, 6]);
        assert_eq!(
            q.state.lock().items.capacity(),
            0,
            "the buffer went with the items"
        );
        assert_eq!((q.bytes(), stats.queued_bytes()), (0, 0));
    }

    #[test]
    fn take_respects_the_batch_size_and_flush_close_drains_first() {
        let stats = QueueStats::default();
        let q = SendQueue::new(1000);
        for _ in 0..5 {
            q.push(item(30), &stats);
        }
        q.close(CloseCode::ShuttingDown, true, &stats);
        let t = q.take(70, &stats);
        assert_eq!((t.items.len(), t.close), (2, None));
        let t = q.take(1, &stats);
        assert_eq!(
            t.items.len(),
            1,
            "at least one item even when bigger than the batch"
        );
        let t = q.take(1000, &stats);
        assert_eq!((t.items.len(), t.close), (2, None));
        let t = q.take(1000, &stats);
        assert_eq!((t.items.len(), t.close), (0, Some(CloseCode::ShuttingDown)));
        assert_eq!(stats.queued_bytes(), 0);
    }

    #[test]
    fn the_node_total_is_the_sum_over_queues_on_every_stripe() {
        let stats = QueueStats::default();
        let queues: Vec<Box<SendQueue>> = (0..64).map(|_| Box::new(SendQueue::new(1000))).collect();
        let stripes: std::collections::HashSet<usize> = queues.iter().map(|q| q.stripe()).collect();
        assert!(stripes.len() > 1, "64 queues all on one stripe");
        for (i, q) in queues.iter().enumerate() {
            for _ in 0..=i % 3 {
                q.push(item(i + 1), &stats);
            }
        }
        let sum = |qs: &[Box<SendQueue>]| qs.iter().map(|q| q.bytes()).sum::<usize>();
        assert_eq!(stats.queued_bytes(), sum(&queues));
        for q in queues.iter().step_by(2) {
            q.take(1000, &stats);
        }
        queues[1].close(CloseCode::ShuttingDown, false, &stats);
        assert_eq!(stats.queued_bytes(), sum(&queues));
        for q in &queues {
            q.take(1000, &stats);
        }
        assert_eq!(stats.queued_bytes(), 0);
        assert_eq!(stats.peak_conn_bytes(), 3 * 63);
    }

    #[test]
    fn discarding_close_drops_and_first_close_wins() {
        let stats = QueueStats::default();
        let q = SendQueue::new(1000);
        q.push(item(30), &stats);
        assert_eq!(q.close(CloseCode::HeartbeatTimeout, false, &stats), 1);
        assert_eq!(q.close(CloseCode::ShuttingDown, false, &stats), 0);
        assert_eq!(q.closing(), Some(CloseCode::HeartbeatTimeout));
        assert_eq!(stats.queued_bytes(), 0);
        // A flushing close is turned into a dropping one by a later forced close.
        let q = SendQueue::new(1000);
        q.push(item(30), &stats);
        assert_eq!(q.close(CloseCode::ShuttingDown, true, &stats), 0);
        assert_eq!(q.close(CloseCode::Normal, false, &stats), 1);
        assert_eq!(
            q.closing(),
            Some(CloseCode::ShuttingDown),
            "the first code is kept"
        );
        assert_eq!(stats.queued_bytes(), 0);
    }
}
