//! Engine.IO's HTTP long-polling transport as a link: a [`PollSink`] and a [`PollStream`] of
//! WebSocket messages, so a polling connection runs the same reader and writer as a WebSocket
//! one. A `GET` takes what the writer has put in the sink; a `POST` feeds the stream. When the
//! client upgrades to a WebSocket, both switch to the socket's halves in place: the connection
//! keeps its two tasks and its queue, and nothing is re-sent or lost.
//!
//! Both directions are bounded: the sink holds at most `limits.frame_batch_bytes` for the next
//! `GET` (a writer facing a client that stops polling blocks, its queue fills, and the
//! connection is closed with 4008 as on a WebSocket), and a `POST` waits for room in a small
//! channel before it is answered.

use crate::shutdown::Shutdown;
use axum::extract::ws::{Message, WebSocket};
use base64::Engine as _;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// Packets a `POST` may have waiting for the reader. A `POST` beyond it waits (the client's
/// next one waits for its answer), so a client cannot queue ops faster than they are read.
const INBOUND_PACKETS: usize = 16;

/// Engine.IO's packet separator in a polling payload.
const SEPARATOR: char = '\u{1e}';

/// Engine.IO's noop packet: answers a pending `GET` when a transport upgrade needs it back.
const NOOP: &str = "6";

/// The client's probe over the new WebSocket, and the server's answer.
const PROBE_PING: &str = "2probe";
const PROBE_PONG: &str = "3probe";

/// Engine.IO's upgrade packet: the client switched to the WebSocket.
const UPGRADE: &str = "5";

/// Packets the client may send on the new WebSocket between the probe and its upgrade packet.
const PACKETS_BEFORE_UPGRADE: usize = 4;

/// How long an ended session with output left waits for its last `GET`.
const LINGER: Duration = Duration::from_secs(5);

/// Rounds of carrying what waits for a `GET` onto the new WebSocket before switching. The
/// writer adds at most one batch per round, so a round or two empties it.
const CARRY_ROUNDS: usize = 8;

/// What the stream side receives.
enum Item {
    /// A packet from a `POST`.
    Packet(Message),
    /// The client upgraded: read from this socket from now on.
    Upgraded(SplitStream<WebSocket>),
}

/// Why a polling request was refused: Engine.IO's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollError {
    /// No such session (`code` 1): it ended, or it lives on another node.
    UnknownSid,
    /// A second `GET` while one waits, or a bad payload (`code` 3).
    BadRequest,
}

impl PollError {
    /// Engine.IO's code and message.
    pub fn code_and_message(self) -> (u8, &'static str) {
        match self {
            PollError::UnknownSid => (1, "Session ID unknown"),
            PollError::BadRequest => (3, "Bad request"),
        }
    }
}

/// The polling sessions of this node, by `sid`. Bounded by admission: each session's
/// connection holds a connection slot.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<HashMap<String, Arc<Shared>>>,
    /// Runs the short wait before an ended session is forgotten; it ends with the node.
    shutdown: Shutdown,
}

/// One polling session, shared by its link and its requests.
pub struct Shared {
    sid: String,
    out: Mutex<Out>,
    /// Wakes the waiting `GET`: the writer put something out, or an upgrade needs a noop.
    out_ready: Notify,
    /// Where `POST`s put packets; taken when the session ends, which ends the stream.
    inbound: Mutex<Option<mpsc::Sender<Item>>>,
    /// A `GET` is waiting (Engine.IO allows one at a time).
    polling: AtomicBool,
    /// Most bytes held for the next `GET`.
    limit: usize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("sid", &self.sid)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Out {
    /// Messages for the next `GET`, oldest first.
    buf: VecDeque<Message>,
    bytes: usize,
    /// The writer, waiting for room.
    writer: Option<Waker>,
    /// Set by the upgrade: write here instead.
    ws: Option<SplitSink<WebSocket, Message>>,
    /// The next `GET` answers a noop at once (an upgrade is under way).
    noop: bool,
}

fn message_len(m: &Message) -> usize {
    match m {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
        _ => 1,
    }
}

impl Registry {
    /// An empty registry whose lingering sessions end with `shutdown`.
    pub fn new(shutdown: Shutdown) -> Registry {
        Registry {
            sessions: Mutex::default(),
            shutdown,
        }
    }

    /// A new session `sid`: its link, to run as a connection.
    pub fn open(self: &Arc<Self>, sid: &str, limit: usize) -> (PollSink, PollStream) {
        let (tx, rx) = mpsc::channel(INBOUND_PACKETS);
        let shared = Arc::new(Shared {
            sid: sid.to_owned(),
            out: Mutex::new(Out::default()),
            out_ready: Notify::new(),
            inbound: Mutex::new(Some(tx)),
            polling: AtomicBool::new(false),
            limit,
        });
        self.sessions
            .lock()
            .insert(sid.to_owned(), Arc::clone(&shared));
        (
            PollSink {
                shared: Arc::clone(&shared),
            },
            PollStream {
                state: StreamState::Polling(rx),
                shared,
                registry: Arc::clone(self),
            },
        )
    }

    /// The session `sid`, if it is open here.
    pub fn get(&self, sid: &str) -> Option<Arc<Shared>> {
        self.sessions.lock().get(sid).cloned()
    }

    /// Open polling sessions.
    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    /// True when none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Clears `polling` when a `GET` ends, however it ends.
struct PollGuard<'a>(&'a AtomicBool);

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Shared {
    /// A `GET`: waits up to `wait` for what the writer put out, and answers it as one polling
    /// payload (a noop when nothing came).
    pub async fn poll(&self, wait: Duration) -> Result<String, PollError> {
        if self.polling.swap(true, Ordering::AcqRel) {
            return Err(PollError::BadRequest);
        }
        let _guard = PollGuard(&self.polling);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            {
                let mut out = self.out.lock();
                if out.ws.is_some() {
                    return Err(PollError::BadRequest);
                }
                if out.noop {
                    out.noop = false;
                    return Ok(NOOP.to_owned());
                }
                if !out.buf.is_empty() {
                    let taken: Vec<Message> = out.buf.drain(..).collect();
                    out.bytes = 0;
                    if let Some(w) = out.writer.take() {
                        w.wake();
                    }
                    drop(out);
                    return Ok(self.payload(taken));
                }
            }
            // `notify_one` keeps a permit when no one waits, so a message put out between the
            // check and this wait still wakes it.
            if tokio::time::timeout_at(deadline, self.out_ready.notified())
                .await
                .is_err()
            {
                return Ok(NOOP.to_owned());
            }
        }
    }

    /// Messages as a polling payload; a close frame becomes Engine.IO's close packet and ends
    /// the session's input.
    fn payload(&self, taken: Vec<Message>) -> String {
        let mut body = String::new();
        for m in taken {
            if !body.is_empty() {
                body.push(SEPARATOR);
            }
            match m {
                Message::Text(t) => body.push_str(t.as_str()),
                Message::Binary(b) => {
                    body.push('b');
                    body.push_str(&base64::engine::general_purpose::STANDARD.encode(&b));
                }
                Message::Close(_) => {
                    body.push_str(evd_protocol::socketio::CLOSE);
                    self.inbound.lock().take();
                }
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
        body
    }

    /// A `POST`: hands each packet of `body` to the reader, waiting for room.
    pub async fn post(&self, body: &str) -> Result<(), PollError> {
        let Some(tx) = self.inbound.lock().clone() else {
            return Err(PollError::UnknownSid);
        };
        for packet in body.split(SEPARATOR) {
            let msg = match packet.strip_prefix('b') {
                Some(b64) => Message::Binary(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|_| PollError::BadRequest)?
                        .into(),
                ),
                None => Message::Text(packet.to_owned().into()),
            };
            tx.send(Item::Packet(msg))
                .await
                .map_err(|_| PollError::UnknownSid)?;
        }
        Ok(())
    }

    /// The upgrade to `socket`: the probe (`2probe`, answered `3probe`), then the pending `GET`
    /// answers a noop, and once the client's upgrade packet (`5`) came, what waits for a `GET`
    /// goes out on the socket and the link switches to it. False when the client did not finish
    /// the upgrade within `wait`; the session goes on polling then.
    pub async fn upgrade(&self, mut socket: WebSocket, wait: Duration) -> bool {
        if self.out.lock().ws.is_some() || self.inbound.lock().is_none() {
            // Upgraded already, or over: a second socket has nothing to take over.
            return false;
        }
        let probed = tokio::time::timeout(wait, async {
            match socket.next().await {
                Some(Ok(Message::Text(t))) if t.as_str() == PROBE_PING => {
                    socket.send(Message::Text(PROBE_PONG.into())).await.is_ok()
                }
                _ => false,
            }
        })
        .await;
        if probed != Ok(true) {
            return false;
        }
        self.out.lock().noop = true;
        self.out_ready.notify_one();
        let upgraded = tokio::time::timeout(wait, async {
            // Bounded: the client sends nothing but `5` here.
            for _ in 0..PACKETS_BEFORE_UPGRADE {
                match socket.next().await {
                    Some(Ok(Message::Text(t))) if t.as_str() == UPGRADE => return true,
                    Some(Ok(_)) => {}
                    _ => return false,
                }
            }
            false
        })
        .await;
        if upgraded != Ok(true) {
            self.out.lock().noop = false;
            return false;
        }
        let (sink, stream) = socket.split();
        let mut sink = Some(sink);
        for _ in 0..CARRY_ROUNDS {
            let taken: Vec<Message> = {
                let mut out = self.out.lock();
                out.noop = false;
                if out.buf.is_empty() {
                    out.ws = sink.take();
                    if let Some(w) = out.writer.take() {
                        w.wake();
                    }
                    break;
                }
                out.bytes = 0;
                if let Some(w) = out.writer.take() {
                    w.wake();
                }
                out.buf.drain(..).collect()
            };
            let Some(s) = sink.as_mut() else { break };
            for m in taken {
                if s.feed(m).await.is_err() {
                    return false;
                }
            }
            if s.flush().await.is_err() {
                return false;
            }
        }
        if let Some(s) = sink.take() {
            // The writer kept adding: whatever is left goes out after the switch, in order.
            let mut out = self.out.lock();
            out.ws = Some(s);
        }
        let tx = self.inbound.lock().clone();
        match tx {
            Some(tx) => tx.send(Item::Upgraded(stream)).await.is_ok(),
            None => false,
        }
    }
}

/// The writer's side of a polling link.
#[derive(Debug)]
pub struct PollSink {
    shared: Arc<Shared>,
}

impl PollSink {
    /// Writes what waits in the buffer to the socket, after an upgrade left some there.
    fn drain_to_ws(out: &mut Out, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>> {
        let Out { buf, bytes, ws, .. } = out;
        let Some(ws) = ws.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while let Some(m) = buf.front() {
            let _ = m;
            match ws.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            if let Some(m) = buf.pop_front() {
                *bytes = bytes.saturating_sub(message_len(&m));
                ws.start_send_unpin(m)?;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl Sink<Message> for PollSink {
    type Error = axum::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let mut out = self.shared.out.lock();
        if out.ws.is_some() {
            if let Poll::Ready(Err(e)) = Self::drain_to_ws(&mut out, cx) {
                return Poll::Ready(Err(e));
            }
            if !out.buf.is_empty() {
                return Poll::Pending;
            }
            return out
                .ws
                .as_mut()
                .map_or(Poll::Ready(Ok(())), |ws| ws.poll_ready_unpin(cx));
        }
        if out.bytes < self.shared.limit {
            Poll::Ready(Ok(()))
        } else {
            out.writer = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        let mut out = self.shared.out.lock();
        if let Some(ws) = out.ws.as_mut() {
            return ws.start_send_unpin(item);
        }
        out.bytes += message_len(&item);
        out.buf.push_back(item);
        drop(out);
        self.shared.out_ready.notify_one();
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let mut out = self.shared.out.lock();
        match out.ws.as_mut() {
            Some(ws) => ws.poll_flush_unpin(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let mut out = self.shared.out.lock();
        match out.ws.as_mut() {
            Some(ws) => ws.poll_close_unpin(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

enum StreamState {
    Polling(mpsc::Receiver<Item>),
    Ws(SplitStream<WebSocket>),
}

/// The reader's side of a polling link. Dropping it ends the session.
pub struct PollStream {
    state: StreamState,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for PollStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let upgraded = matches!(self.state, StreamState::Ws(_));
        f.debug_struct("PollStream")
            .field("sid", &self.shared.sid)
            .field("upgraded", &upgraded)
            .finish()
    }
}

impl Stream for PollStream {
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match &mut self.state {
                StreamState::Ws(ws) => return ws.poll_next_unpin(cx),
                StreamState::Polling(rx) => match rx.poll_recv(cx) {
                    Poll::Ready(Some(Item::Packet(m))) => return Poll::Ready(Some(Ok(m))),
                    Poll::Ready(Some(Item::Upgraded(ws))) => self.state = StreamState::Ws(ws),
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                },
            }
        }
    }
}

impl Drop for PollStream {
    /// The connection is over. Its last packets (a `CONNECT_ERROR`, the close) may still wait
    /// for the client's next `GET`, so a session with output left lingers a moment before it
    /// is forgotten.
    fn drop(&mut self) {
        self.shared.inbound.lock().take();
        self.shared.out_ready.notify_one();
        let registry = Arc::clone(&self.registry);
        let sid = self.shared.sid.clone();
        let waiting = !self.shared.out.lock().buf.is_empty();
        if waiting && tokio::runtime::Handle::try_current().is_ok() {
            let stop = registry.shutdown.stopped();
            let shutdown = registry.shutdown.clone();
            shutdown.spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(LINGER) => {}
                    () = stop => {}
                }
                registry.sessions.lock().remove(&sid);
            });
        } else {
            registry.sessions.lock().remove(&sid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn posts_reach_the_stream_and_polls_take_what_the_sink_got() {
        let registry = Arc::new(Registry::default());
        let (mut sink, mut stream) = registry.open("s1", 1024);
        let shared = registry.get("s1").unwrap();
        shared
            .post("40{\"token\":\"t\"}\u{1e}3\u{1e}bAQI=")
            .await
            .unwrap();
        for want in [
            Message::Text("40{\"token\":\"t\"}".into()),
            Message::Text("3".into()),
            Message::Binary(vec![1u8, 2].into()),
        ] {
            assert_eq!(stream.next().await.unwrap().unwrap(), want);
        }
        sink.send(Message::Text("2".into())).await.unwrap();
        sink.send(Message::Binary(vec![3u8].into())).await.unwrap();
        sink.send(Message::Close(None)).await.unwrap();
        let body = shared.poll(Duration::from_secs(1)).await.unwrap();
        assert_eq!(body, "2\u{1e}bAw==\u{1e}1");
        assert_eq!(
            shared.post("3").await,
            Err(PollError::UnknownSid),
            "after the close packet the session takes no input"
        );
        drop(stream);
        assert!(
            registry.get("s1").is_none(),
            "nothing waits: forgotten at once"
        );
    }

    #[tokio::test]
    async fn one_poll_at_a_time_and_an_idle_poll_answers_a_noop() {
        let registry = Arc::new(Registry::default());
        let (_sink, _stream) = registry.open("s2", 1024);
        let shared = registry.get("s2").unwrap();
        let first = shared.poll(Duration::from_millis(50));
        tokio::pin!(first);
        assert!((&mut first).now_or_never().is_none(), "waits for output");
        assert_eq!(
            shared.poll(Duration::from_millis(50)).await,
            Err(PollError::BadRequest)
        );
        assert_eq!(first.await.unwrap(), NOOP);
    }

    #[tokio::test]
    async fn the_sink_holds_at_most_its_limit_until_a_poll_takes_it() {
        let registry = Arc::new(Registry::default());
        let (mut sink, _stream) = registry.open("s3", 8);
        let shared = registry.get("s3").unwrap();
        sink.send(Message::Text("12345678".into())).await.unwrap();
        let blocked = sink.send(Message::Text("next".into()));
        tokio::pin!(blocked);
        assert!(
            (&mut blocked).now_or_never().is_none(),
            "full: the writer waits"
        );
        assert_eq!(
            shared.poll(Duration::from_secs(1)).await.unwrap(),
            "12345678"
        );
        blocked.await.unwrap();
        assert_eq!(shared.poll(Duration::from_secs(1)).await.unwrap(), "next");
    }
}
