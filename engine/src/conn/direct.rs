//! The direct write path: a plain-TCP connection's frames written by whoever queued them.
//!
//! A room broadcast pushes the encoded event to each member's queue and then calls
//! [`Direct::flush`] for each: the flush takes what is queued, frames it (the WebSocket header
//! beside the shared payload, in one vectored write) and writes it to the socket with a
//! non-blocking `write`. No task wakes and no bytes are copied when the socket takes them,
//! which is the usual case. Only when the socket would block is the rest kept (copied once)
//! and a task started that waits until the socket is writable again and goes on writing: a
//! connection whose client keeps up holds no write task and no write buffer.
//!
//! At most one thread writes a connection's socket at a time (`state` is `try_lock`ed); a
//! flush that finds it taken leaves the queued bytes to the thread that holds it, which looks
//! at the queue again after letting go, so nothing queued is left behind.
//!
//! Connections behind TLS, and the Socket.IO polling links, use the [`super::writer`] task.

use super::done::Done;
use super::queue::{Outbound, QueueStats, SendQueue};
use super::writer::{WriterConfig, frames};
use crate::metrics::Metrics;
use axum::extract::ws::Message;
use bytes::Bytes;
use evd_protocol::{CloseCode, Codec};
use nix::sys::socket::{self, MsgFlags};
use parking_lot::Mutex;
use smallvec::SmallVec;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Most frames passed to one vectored write (two slices each): below the kernel's `IOV_MAX`.
const FRAMES_PER_WRITE: usize = 64;

/// Frames that add up to at most this many bytes are copied into one buffer on the stack and
/// sent with one `send(2)`: for the usual small event that is cheaper in the kernel than a
/// vectored `write(2)` (no iovec import, no file-position lock).
const SMALL_WRITE: usize = 4_096;

/// A WebSocket frame header is at most this long (server frames are never masked).
const MAX_HEADER: usize = 10;

/// The opcode of a close frame, as the low bits of a frame's first byte.
const OPCODE_CLOSE: u8 = 0x8;

/// The write side of a connection on a plain TCP socket. `repr(C)`: what a write pass uses
/// comes first (see [`super::Conn`]).
#[derive(Debug)]
#[repr(C)]
pub struct Direct {
    state: Mutex<WriteState>,
    /// Set while bytes wait for the socket to become writable, and a [`Direct::pump`] runs.
    blocked: AtomicBool,
    stream: TcpStream,
    cfg: WriterConfig,
    stats: Arc<QueueStats>,
    metrics: Arc<Metrics>,
    /// Stops the pump ([`Direct::abandon`]).
    wake: Notify,
}

#[derive(Debug, Default)]
struct WriteState {
    /// Bytes the socket did not take yet, always ending at a frame boundary. Empty (and
    /// without a buffer) in the usual case.
    leftover: Vec<u8>,
    /// A close frame was written (ours, or the WebSocket layer's echo of the client's): nothing
    /// may follow it.
    close_sent: bool,
    /// The socket failed; nothing more is written.
    failed: bool,
}

/// What one pass of writing did.
enum Pass {
    /// The queue is empty and the socket took everything.
    Idle,
    /// The socket would block; the rest waits in `leftover`.
    Blocked,
    /// The close frame is out or the socket failed: the writer side is done.
    Done,
}

/// What a run of write passes adds to the write metrics, recorded once for the run
/// ([`Tally::record`]) instead of once per pass: a broadcast's chunk of 1,024 writes costs two
/// counter updates and one histogram call, not three shared-counter updates per connection.
#[derive(Debug, Default)]
pub struct Tally {
    frames: u64,
    bytes: u64,
    /// Passes that wrote broadcast payloads (which carry when the hub received them).
    timed: usize,
    /// The earliest such receive time.
    oldest: Option<Instant>,
}

impl Tally {
    /// Records the run: each timed pass's fanout latency is taken as the time from the
    /// earliest receive to now, the end of the run (an upper bound by at most the run's length).
    pub fn record(self, metrics: &Metrics) {
        if self.frames > 0 {
            metrics.frames_out.increment(self.frames);
            metrics.bytes_out.increment(self.bytes);
        }
        if let Some(t) = self.oldest {
            metrics
                .fanout_latency
                .record_many(t.elapsed().as_secs_f64(), self.timed);
        }
    }
}

impl Direct {
    /// The write side over `stream`.
    pub fn new(
        stream: TcpStream,
        cfg: WriterConfig,
        stats: Arc<QueueStats>,
        metrics: Arc<Metrics>,
    ) -> Direct {
        Direct {
            stream,
            state: Mutex::new(WriteState::default()),
            blocked: AtomicBool::new(false),
            wake: Notify::new(),
            cfg,
            stats,
            metrics,
        }
    }

    /// The metrics its writes count in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The socket, for the read side.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes what `queue` holds, unless another thread is writing (it will) or the socket is
    /// blocked (the pump will). `done` is notified once the close frame is out or the socket
    /// failed. True when this call found the socket full: the caller starts [`Direct::pump`].
    #[must_use = "a socket that became blocked needs a pump"]
    pub fn flush(&self, queue: &SendQueue, codec: Codec, done: &Done, tally: &mut Tally) -> bool {
        self.flush_with(queue, codec, done, false, tally)
    }

    /// [`Direct::flush`]; with `wait`, it waits for a thread that is writing instead of leaving
    /// the bytes to it (the pump must not leave: a `write_raw` holding the lock hands nothing
    /// on).
    fn flush_with(
        &self,
        queue: &SendQueue,
        codec: Codec,
        done: &Done,
        wait: bool,
        tally: &mut Tally,
    ) -> bool {
        loop {
            let state = if wait {
                Some(self.state.lock())
            } else {
                self.state.try_lock()
            };
            let Some(mut state) = state else {
                return false;
            };
            if self.blocked.load(Ordering::Acquire) {
                return false;
            }
            let pass = self.write_pass(&mut state, queue, codec, tally);
            drop(state);
            match pass {
                Pass::Idle => {
                    // A push that found the lock taken left its bytes to us: look again.
                    if !queue.has_work() {
                        return false;
                    }
                }
                Pass::Blocked => return !self.blocked.swap(true, Ordering::AcqRel),
                Pass::Done => {
                    done.set();
                    return false;
                }
            }
        }
    }

    /// Runs while the socket is blocked: waits until it is writable and writes what waits,
    /// until everything is out, the socket fails, or the connection is [abandoned]. Runs in a
    /// task of its own that exists only while the client is behind.
    ///
    /// [abandoned]: Direct::abandon
    pub async fn pump(&self, queue: &SendQueue, codec: Codec, done: &Done) {
        loop {
            tokio::select! {
                writable = self.stream.writable() => {
                    if writable.is_err() {
                        self.fail();
                        done.set();
                        return;
                    }
                }
                () = self.wake.notified() => {}
            }
            if self.state.lock().failed {
                done.set();
                return;
            }
            self.blocked.store(false, Ordering::Release);
            let mut tally = Tally::default();
            let again = self.flush_with(queue, codec, done, true, &mut tally);
            tally.record(&self.metrics);
            if !again {
                return;
            }
        }
    }

    /// The connection is over: nothing more is written, and a pump stops.
    pub fn abandon(&self) {
        self.fail();
        self.wake.notify_one();
    }

    fn fail(&self) {
        let mut state = self.state.lock();
        state.failed = true;
        state.leftover = Vec::new();
    }

    /// Writes bytes the WebSocket layer made itself (a pong, the echo of a client's close)
    /// after what is already waiting. True when the socket became blocked: the caller starts
    /// [`Direct::pump`].
    #[must_use = "a socket that became blocked needs a pump"]
    pub fn write_raw(&self, bytes: &[u8]) -> bool {
        let mut state = self.state.lock();
        if state.failed || state.close_sent {
            return false;
        }
        if bytes.first().is_some_and(|b| b & 0x0f == OPCODE_CLOSE) {
            state.close_sent = true;
        }
        if !state.leftover.is_empty() {
            state.leftover.extend_from_slice(bytes);
            return false;
        }
        let written = match self.send(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                state.failed = true;
                return false;
            }
        };
        if written == bytes.len() {
            return false;
        }
        state.leftover.extend_from_slice(&bytes[written..]);
        drop(state);
        !self.blocked.swap(true, Ordering::AcqRel)
    }

    /// One non-blocking `send(2)` on the socket. It goes to the socket first: Tokio's readiness
    /// record (an allocation of its own, so a cache miss per connection in a broadcast) is
    /// consulted only when the socket would block, through `try_io`, which tries once more and
    /// clears the readiness, so that [`Direct::pump`] then waits for the socket to drain.
    fn send(&self, bytes: &[u8]) -> io::Result<usize> {
        let fd = self.stream.as_raw_fd();
        match socket::send(fd, bytes, MsgFlags::MSG_DONTWAIT) {
            Err(nix::errno::Errno::EAGAIN) => self.stream.try_io(Interest::WRITABLE, || {
                socket::send(fd, bytes, MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)
            }),
            sent => sent.map_err(io::Error::from),
        }
    }

    fn write_pass(
        &self,
        state: &mut WriteState,
        queue: &SendQueue,
        codec: Codec,
        tally: &mut Tally,
    ) -> Pass {
        if state.failed {
            return Pass::Done;
        }
        if !state.leftover.is_empty() {
            match self.write_leftover(state) {
                Ok(true) => {}
                Ok(false) => return Pass::Blocked,
                Err(()) => return Pass::Done,
            }
        }
        let mut batch: Vec<Outbound> = Vec::new();
        loop {
            let close = queue.take_into(self.cfg.take_bytes, &self.stats, &mut batch);
            if batch.is_empty() {
                let Some(code) = close else {
                    return Pass::Idle;
                };
                if !state.close_sent {
                    state.close_sent = true;
                    let frame = close_frame(code);
                    if self.write_frames(state, &[(frame, None)]).is_err() {
                        return Pass::Done;
                    }
                    if !state.leftover.is_empty() {
                        return Pass::Blocked;
                    }
                }
                return Pass::Done;
            }
            if state.close_sent {
                // The client's close was echoed: what is still queued can never be sent.
                batch.clear();
                continue;
            }
            let oldest = batch.iter().filter_map(|o| o.published_at).min();
            let bytes: usize = batch.iter().map(|o| o.payload.len()).sum();
            let packed: SmallVec<[(Bytes, Option<u8>); 2]> = frames(
                &mut batch,
                codec,
                self.cfg.packing,
                self.cfg.frame_batch_bytes,
            )
            .map(|m| match m {
                Message::Text(t) => (Bytes::from(t), Some(OPCODE_TEXT)),
                Message::Binary(b) => (b, Some(OPCODE_BINARY)),
                _ => unreachable!("queued payloads are text or binary"),
            })
            .collect();
            if self.write_frames(state, &packed).is_err() {
                return Pass::Done;
            }
            tally.frames += packed.len() as u64;
            tally.bytes += bytes as u64;
            if let Some(t) = oldest {
                tally.timed += 1;
                tally.oldest = Some(tally.oldest.map_or(t, |o| o.min(t)));
            }
            if !state.leftover.is_empty() {
                return Pass::Blocked;
            }
        }
    }

    /// `Ok(true)` when the leftover is all written.
    fn write_leftover(&self, state: &mut WriteState) -> Result<bool, ()> {
        match self.send(&state.leftover) {
            Ok(n) if n == state.leftover.len() => {
                state.leftover = Vec::new();
                Ok(true)
            }
            Ok(n) => {
                state.leftover.drain(..n);
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(_) => {
                state.failed = true;
                state.leftover = Vec::new();
                Err(())
            }
        }
    }

    /// Writes frames (`None` as opcode: the bytes are a whole frame already); what the socket
    /// does not take goes to `leftover`. `Err` when the socket failed.
    fn write_frames(
        &self,
        state: &mut WriteState,
        frames: &[(Bytes, Option<u8>)],
    ) -> Result<(), ()> {
        for chunk in frames.chunks(FRAMES_PER_WRITE) {
            // Headers first (the slices borrow them); on the stack for the usual one frame.
            let heads: SmallVec<[([u8; MAX_HEADER], usize); 2]> = chunk
                .iter()
                .map(|(payload, opcode)| {
                    let mut head = [0u8; MAX_HEADER];
                    let n = opcode.map_or(0, |op| header(op, payload.len(), &mut head));
                    (head, n)
                })
                .collect();
            let mut slices: SmallVec<[IoSlice<'_>; 4]> = SmallVec::new();
            let mut total = 0;
            for ((payload, _), (head, n)) in chunk.iter().zip(heads.iter()) {
                if *n > 0 {
                    slices.push(IoSlice::new(&head[..*n]));
                    total += n;
                }
                slices.push(IoSlice::new(payload));
                total += payload.len();
            }
            if !state.leftover.is_empty() {
                for s in &slices {
                    state.leftover.extend_from_slice(s);
                }
                continue;
            }
            let sent = if total <= SMALL_WRITE {
                // Not zero-filled: only the bytes copied in are sent.
                let mut buf: SmallVec<[u8; SMALL_WRITE]> = SmallVec::new();
                for s in &slices {
                    buf.extend_from_slice(s);
                }
                self.send(&buf)
            } else {
                self.stream.try_write_vectored(&slices)
            };
            let written = match sent {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(_) => {
                    state.failed = true;
                    state.leftover = Vec::new();
                    return Err(());
                }
            };
            if written < total {
                let mut skip = written;
                state.leftover.reserve(total - written);
                for s in &slices {
                    if skip >= s.len() {
                        skip -= s.len();
                        continue;
                    }
                    state.leftover.extend_from_slice(&s[skip..]);
                    skip = 0;
                }
            }
        }
        Ok(())
    }
}

/// The opcode of a text frame.
const OPCODE_TEXT: u8 = 0x1;
/// The opcode of a binary frame.
const OPCODE_BINARY: u8 = 0x2;

/// Writes a final, unmasked frame header for `len` payload bytes into `out`; returns its length.
fn header(opcode: u8, len: usize, out: &mut [u8; MAX_HEADER]) -> usize {
    out[0] = 0x80 | opcode;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// A whole close frame with `code` and its reason.
pub fn close_frame(code: CloseCode) -> Bytes {
    let reason = code.reason().as_bytes();
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.code().to_be_bytes());
    payload.extend_from_slice(reason);
    let mut head = [0u8; MAX_HEADER];
    let n = header(OPCODE_CLOSE, payload.len(), &mut head);
    let mut frame = Vec::with_capacity(n + payload.len());
    frame.extend_from_slice(&head[..n]);
    frame.extend_from_slice(&payload);
    Bytes::from(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::queue::Payload;
    use crate::conn::writer::Packing;
    use axum::extract::ws::Utf8Bytes;
    use futures_util::StreamExt;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    use tokio_tungstenite::tungstenite::{self as ts};

    /// A connected pair: the server side as a `Direct`, the client side as a WebSocket reader.
    async fn pair() -> (Arc<Direct>, tokio_tungstenite::WebSocketStream<TcpStream>) {
        let (server, client) = crate::conn::testing::loopback().await;
        let cfg = WriterConfig {
            take_bytes: 1 << 16,
            frame_batch_bytes: 1 << 14,
            packing: Packing::OnePerFrame,
            close_timeout: Duration::from_secs(1),
        };
        let direct = Arc::new(Direct::new(
            server,
            cfg,
            Arc::new(QueueStats::default()),
            Arc::new(Metrics::new()),
        ));
        let config = WebSocketConfig::default().max_message_size(None);
        let ws =
            tokio_tungstenite::WebSocketStream::from_raw_socket(client, Role::Client, Some(config))
                .await;
        (direct, ws)
    }

    fn text(i: usize) -> Outbound {
        // Large enough that a few hundred fill the socket's buffers.
        Outbound {
            payload: Payload::Text(Utf8Bytes::from(format!("{i:08}{}", "x".repeat(8_000)))),
            published_at: None,
        }
    }

    #[tokio::test]
    async fn a_full_socket_is_drained_by_the_pump_in_order_then_closed() {
        let (direct, mut client) = pair().await;
        let stats = QueueStats::default();
        let queue = SendQueue::new(64 << 20);
        let done = Done::default();
        let n = 2_000;
        let mut pumps = 0;
        for i in 0..n {
            queue.push(text(i), &stats);
            if direct.flush(&queue, Codec::Json, &done, &mut Tally::default()) {
                pumps += 1;
            }
        }
        assert_eq!(
            pumps, 1,
            "16 MB does not fit a loopback socket: it blocks once"
        );
        assert!(queue.bytes() > 0 || !direct.state.lock().leftover.is_empty());
        queue.close(CloseCode::ShuttingDown, true, &stats);
        assert!(
            !direct.flush(&queue, Codec::Json, &done, &mut Tally::default()),
            "already blocked"
        );
        let pump = direct.pump(&queue, Codec::Json, &done);
        let read = async {
            let mut seen = 0;
            while let Some(m) = client.next().await {
                match m.unwrap() {
                    ts::Message::Text(t) => {
                        assert_eq!(t[..8].parse::<usize>().unwrap(), seen, "in order");
                        assert_eq!(t.len(), 8_008);
                        seen += 1;
                    }
                    ts::Message::Close(Some(f)) => {
                        assert_eq!(u16::from(f.code), 4001);
                        break;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            seen
        };
        let (seen, ()) = tokio::join!(read, pump);
        assert_eq!(seen, n, "every frame arrived, then the close");
        assert!(
            direct.state.lock().leftover.capacity() == 0,
            "no buffer kept"
        );
    }

    #[tokio::test]
    async fn raw_frames_go_after_what_waits_and_nothing_follows_a_close() {
        let (direct, mut client) = pair().await;
        let stats = QueueStats::default();
        let queue = SendQueue::new(1 << 20);
        let done = Done::default();
        queue.push(text(0), &stats);
        assert!(!direct.flush(&queue, Codec::Json, &done, &mut Tally::default()));
        // A pong, then the echo of a client's close, as the WebSocket layer writes them.
        assert!(!direct.write_raw(&[0x8a, 0x01, b'p']));
        assert!(!direct.write_raw(&[0x88, 0x02, 0x03, 0xe8]));
        queue.push(text(1), &stats);
        assert!(!direct.flush(&queue, Codec::Json, &done, &mut Tally::default()));
        match client.next().await.unwrap().unwrap() {
            ts::Message::Text(t) => assert!(t.starts_with("00000000")),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            client.next().await.unwrap().unwrap(),
            ts::Message::Pong(_)
        ));
        assert!(matches!(
            client.next().await.unwrap().unwrap(),
            ts::Message::Close(_)
        ));
        // The text queued after the close was dropped: the client's side sees the end.
        let mut raw = client.into_inner();
        raw.shutdown().await.unwrap();
        assert_eq!(queue.bytes(), 0);
    }

    #[test]
    fn headers_parse_back_with_their_lengths() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 1 << 20] {
            let mut out = [0u8; MAX_HEADER];
            let n = header(OPCODE_TEXT, len, &mut out);
            let mut cur = std::io::Cursor::new(&out[..n]);
            let (h, parsed_len) = FrameHeader::parse(&mut cur).unwrap().unwrap();
            assert_eq!(parsed_len, len as u64, "length {len}");
            assert!(h.is_final && h.mask.is_none());
            assert_eq!(cur.position() as usize, n, "header of {len} is {n} bytes");
        }
    }

    #[test]
    fn close_frames_carry_code_and_reason() {
        let f = close_frame(CloseCode::SlowConsumer);
        assert_eq!(f[0], 0x88);
        let len = f[1] as usize;
        assert_eq!(len, f.len() - 2);
        assert_eq!(u16::from_be_bytes([f[2], f[3]]), 4008);
        assert_eq!(&f[4..], CloseCode::SlowConsumer.reason().as_bytes());
    }
}
