//! The writer task: drains a connection's queue into the socket.
//!
//! Per wake-up it takes what is waiting (up to a few frames' worth), packs consecutive events
//! into one frame (a JSON array, or a MessagePack array of maps), feeds the frames and flushes
//! once. A burst of 50 events to one client costs one frame and one write, not 50.

use super::Conn;
use super::queue::{Outbound, Payload, QueueStats};
use crate::metrics::Metrics;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use evd_protocol::{CloseCode, Codec};
use futures_util::{Sink, SinkExt};
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

/// How queued events become frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// Consecutive events share a frame (an array), up to `frame_batch_bytes`.
    Batch,
    /// Every payload is its own frame (the echo endpoint: each message comes back as sent).
    OnePerFrame,
}

/// Writer settings, from [`crate::settings::Limits`].
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Most bytes taken from the queue per flush.
    pub take_bytes: usize,
    /// Most bytes packed into one frame.
    pub frame_batch_bytes: usize,
    /// Packing mode.
    pub packing: Packing,
    /// How long sending the close frame may take.
    pub close_timeout: Duration,
}

/// Why the writer stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterEnd {
    /// It sent (or tried to send) a close frame with this code.
    Closed(CloseCode),
    /// The socket failed.
    Failed(String),
}

/// Runs until the queue is closed and the close frame is sent, or the socket fails. Generic over
/// the sink so it can be tested with a channel.
pub async fn run<S>(
    mut sink: S,
    conn: Arc<Conn>,
    cfg: WriterConfig,
    stats: Arc<QueueStats>,
    metrics: Arc<Metrics>,
) -> WriterEnd
where
    S: Sink<Message> + Unpin,
    S::Error: Display,
{
    let end = write_loop(&mut sink, &conn, &cfg, &stats, &metrics).await;
    conn.writer_done.set();
    end
}

async fn write_loop<S>(
    sink: &mut S,
    conn: &Conn,
    cfg: &WriterConfig,
    stats: &QueueStats,
    metrics: &Metrics,
) -> WriterEnd
where
    S: Sink<Message> + Unpin,
    S::Error: Display,
{
    // Usually the queue's own buffer, taken whole; dropped after each flush, so an idle
    // connection keeps none.
    let mut batch: Vec<Outbound> = Vec::new();
    loop {
        let close = conn.queue.take_into(cfg.take_bytes, stats, &mut batch);
        if !batch.is_empty() {
            // Boxed, like the close below: while the connection idles, its task holds only
            // the wait for the queue, not the larger write state.
            if let Some(end) = Box::pin(write_batch(sink, &mut batch, conn, cfg, metrics)).await {
                return end;
            }
            batch = Vec::new();
            continue;
        }
        if let Some(code) = close {
            return Box::pin(send_close(sink, code, cfg.close_timeout)).await;
        }
        conn.queue.wait().await;
    }
}

/// Writes one batch; `Some` when the writer is done (the socket failed or the queue was aborted
/// and the close sent).
async fn write_batch<S>(
    sink: &mut S,
    batch: &mut Vec<Outbound>,
    conn: &Conn,
    cfg: &WriterConfig,
    metrics: &Metrics,
) -> Option<WriterEnd>
where
    S: Sink<Message> + Unpin,
    S::Error: Display,
{
    let oldest = batch.iter().filter_map(|o| o.published_at).min();
    let bytes: usize = batch.iter().map(|o| o.payload.len()).sum();
    let mut n_frames = 0u64;
    let write = async {
        for frame in frames(batch, conn.codec, cfg.packing, cfg.frame_batch_bytes) {
            n_frames += 1;
            sink.feed(frame).await?;
        }
        sink.flush().await
    };
    // A client that stops reading blocks this write. If the queue is aborted meanwhile (slow
    // consumer, heartbeat, forced close), stop writing data and send the close.
    tokio::select! {
        r = write => {
            if let Err(e) = r {
                return Some(WriterEnd::Failed(e.to_string()));
            }
            metrics.frames_out.increment(n_frames);
            metrics.bytes_out.increment(bytes as u64);
            if let Some(t) = oldest {
                metrics.fanout_latency.record(t.elapsed().as_secs_f64());
            }
            None
        }
        code = conn.queue.wait_abort() => Some(send_close(sink, code, cfg.close_timeout).await),
    }
}

async fn send_close<S>(sink: &mut S, code: CloseCode, limit: Duration) -> WriterEnd
where
    S: Sink<Message> + Unpin,
    S::Error: Display,
{
    let frame = CloseFrame {
        code: code.code(),
        reason: Utf8Bytes::from_static(code.reason()),
    };
    match tokio::time::timeout(limit, sink.send(Message::Close(Some(frame)))).await {
        Ok(Ok(())) => WriterEnd::Closed(code),
        Ok(Err(e)) => WriterEnd::Failed(e.to_string()),
        Err(_) => WriterEnd::Failed(format!("close frame {code} not sent within {limit:?}")),
    }
}

/// The frames for one flush, taken out of `batch`.
#[derive(Debug)]
pub enum Frames {
    /// The common case, one event: no allocation.
    One(Option<Message>),
    /// Several frames.
    Many(std::vec::IntoIter<Message>),
}

impl Iterator for Frames {
    type Item = Message;
    fn next(&mut self) -> Option<Message> {
        match self {
            Frames::One(m) => m.take(),
            Frames::Many(it) => it.next(),
        }
    }
}

/// Turns queued payloads into frames, emptying `batch`: one payload as is; consecutive payloads
/// packed into arrays of up to `frame_batch_bytes` ([`Packing::Batch`]), or one frame each.
pub fn frames(
    batch: &mut Vec<Outbound>,
    codec: Codec,
    packing: Packing,
    frame_batch_bytes: usize,
) -> Frames {
    if batch.len() == 1 {
        return Frames::One(batch.pop().map(|o| message(o.payload)));
    }
    if packing == Packing::OnePerFrame {
        return Frames::Many(
            batch
                .drain(..)
                .map(|o| message(o.payload))
                .collect::<Vec<_>>()
                .into_iter(),
        );
    }
    let mut out = Vec::new();
    let mut group: Vec<Payload> = Vec::new();
    let mut group_bytes = 0;
    for item in batch.drain(..) {
        let len = item.payload.len();
        if !group.is_empty() && group_bytes + len > frame_batch_bytes {
            out.push(join(codec, std::mem::take(&mut group)));
            group_bytes = 0;
        }
        group_bytes += len;
        group.push(item.payload);
    }
    if !group.is_empty() {
        out.push(join(codec, group));
    }
    Frames::Many(out.into_iter())
}

fn message(p: Payload) -> Message {
    match p {
        Payload::Text(t) => Message::Text(t),
        Payload::Binary(b) => Message::Binary(b),
    }
}

/// One payload as is; several as an array, without re-encoding.
fn join(codec: Codec, mut group: Vec<Payload>) -> Message {
    if group.len() == 1 {
        return message(group.remove(0));
    }
    match codec {
        Codec::Json => {
            let len: usize = group.iter().map(|p| p.len() + 1).sum();
            let mut s = String::with_capacity(len + 1);
            s.push('[');
            for (i, p) in group.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                if let Payload::Text(t) = p {
                    s.push_str(t.as_str());
                }
            }
            s.push(']');
            Message::Text(Utf8Bytes::from(s))
        }
        Codec::MsgPack => {
            let parts: Vec<bytes::Bytes> = group
                .into_iter()
                .filter_map(|p| match p {
                    Payload::Binary(b) => Some(b),
                    Payload::Text(_) => None,
                })
                .collect();
            Message::Binary(codec.batch(&parts))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::encode;
    use evd_protocol::event::{Event, Pong};
    use futures_util::StreamExt;

    fn pong(r: i64, codec: Codec) -> Outbound {
        Outbound {
            payload: encode(codec, &Event::Pong(Pong { r#ref: Some(r) })),
            published_at: None,
        }
    }

    fn decode(codec: Codec, m: &Message) -> Vec<Event> {
        match m {
            Message::Text(t) => codec.decode_events(t.as_bytes()).unwrap(),
            Message::Binary(b) => codec.decode_events(b).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn packs_consecutive_events_into_arrays_within_the_frame_limit() {
        for codec in Codec::ALL {
            let mut items: Vec<_> = (0..10).map(|i| pong(i, codec)).collect();
            let one = items[0].payload.len();
            let packed: Vec<Message> =
                frames(&mut items, codec, Packing::Batch, one * 4 + 8).collect();
            assert!(items.is_empty());
            assert_eq!(packed.len(), 3, "{codec}: 4 + 4 + 2");
            let refs: Vec<i64> = packed
                .iter()
                .flat_map(|f| decode(codec, f))
                .map(|e| e.reply_ref().unwrap())
                .collect();
            assert_eq!(refs, (0..10).collect::<Vec<_>>(), "order is kept");
            let mut items: Vec<_> = (0..3).map(|i| pong(i, codec)).collect();
            assert_eq!(
                frames(&mut items, codec, Packing::OnePerFrame, 1 << 20).count(),
                3
            );
            let mut one_item = vec![pong(7, codec)];
            assert!(matches!(
                frames(&mut one_item, codec, Packing::Batch, 1 << 20),
                Frames::One(Some(_))
            ));
        }
    }

    #[tokio::test]
    async fn writes_batches_then_the_close_frame() {
        let stats = Arc::new(QueueStats::default());
        let conn = Arc::new(Conn::new(1, "u".into(), Codec::Json, 1 << 20));
        for i in 0..5 {
            conn.queue.push(pong(i, Codec::Json), &stats);
        }
        conn.queue.close(CloseCode::ShuttingDown, true, &stats);
        let (tx, mut rx) = futures_channel::mpsc::channel::<Message>(16);
        let cfg = WriterConfig {
            take_bytes: 1 << 20,
            frame_batch_bytes: 1 << 16,
            packing: Packing::Batch,
            close_timeout: Duration::from_secs(1),
        };
        let end = run(
            tx,
            conn.clone(),
            cfg,
            stats.clone(),
            Arc::new(Metrics::new()),
        )
        .await;
        assert_eq!(end, WriterEnd::Closed(CloseCode::ShuttingDown));
        let first = rx.next().await.unwrap();
        assert_eq!(
            decode(Codec::Json, &first).len(),
            5,
            "five events, one frame"
        );
        match rx.next().await.unwrap() {
            Message::Close(Some(f)) => assert_eq!(f.code, 4001),
            other => panic!("expected close, got {other:?}"),
        }
        assert_eq!(stats.queued_bytes(), 0);
    }
}
