//! A connection's reader: it opens the connection, decodes frames, enforces the heartbeat and
//! the op limits, hands each op to the [`Session`], and leads the close.
//!
//! The loop sleeps until the first of the heartbeat deadline and the token's next deadline
//! ([`super::token`]): the expiry warning, then the close with 4501.
//!
//! Closing always goes through the queue: the session (or the hub, for a slow consumer) closes
//! the queue with a code, the writer sends the close frame, and the session waits a bounded time
//! for the client's close reply.

use super::token::TokenDue;
use super::{OpError, ReadState, Session, oldest_ready};
use crate::conn::direct::{self, Direct};
use crate::conn::direct_read;
use crate::conn::queue::{Outbound, Payload};
use crate::conn::writer::{self, Packing, WriterConfig};
use crate::conn::{Conn, Wire};
use crate::node::{ConnPermit, Node};
use crate::room_key::RoomKey;
use crate::shutdown::Phase;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use evd_protocol::auth::Claims;
use evd_protocol::event::{Event, Pong, Reconnect, TokenExpiring};
use evd_protocol::op::StreamPosition;
use evd_protocol::socketio::{self, Inbound};
use evd_protocol::{CloseCode, Codec, DecodeError, ErrorCode, Op, Request};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a connection that could not be opened (the broker or store failed) waits to get
/// its 1011 close frame out before the socket is dropped.
const OPEN_FAILURE_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The writer takes up to this many frames' worth of queued bytes per wake-up
/// (`limits.frame_batch_bytes` each): enough to pack a burst into a few frames with one flush,
/// little enough that one wake-up never holds a huge batch in memory.
const WRITER_TAKE_FRAMES: usize = 4;

/// Drain closes are spread over this share (in percent) of `drain.grace_ms`, leaving the rest
/// for the last clients' close replies before the grace ends.
const DRAIN_SPREAD_PERCENT: u64 = 80;

/// What the read loop does after a data frame.
enum Handled {
    /// Nothing more: it was answered here, or there was nothing to do.
    Done,
    /// Run this op.
    Run(Request),
    /// Close the connection with this code.
    Close(CloseCode),
}

impl Session {
    /// Handles one data frame, up to the op it asks for: not an `async fn`, so nothing of it is
    /// held in the connection's task while the task idles.
    fn on_frame(&mut self, msg: &Message) -> Handled {
        let protocol = self.conn.wire.label();
        let req = match decode(&self.conn, msg) {
            Decoded::Op(req) => req,
            Decoded::Nothing => return Handled::Done,
            Decoded::Close(code) => return Handled::Close(code),
            Decoded::Bad(e) => {
                self.node.metrics.op("invalid", protocol);
                if !self.limits.bad_frame_strike(&self.node.settings.limits) {
                    self.send_error(
                        e.r#ref,
                        OpError::new(ErrorCode::BadRequest, "too many malformed frames"),
                    );
                    return Handled::Close(CloseCode::ProtocolViolation);
                }
                self.send_error(e.r#ref, OpError::new(ErrorCode::BadRequest, e.message));
                return Handled::Done;
            }
        };
        if let Err(retry) = self.limits.op() {
            self.node.metrics.op("rate_limited", protocol);
            if !self.limits.flood_strike(&self.node.settings.limits) {
                return Handled::Close(CloseCode::Flood);
            }
            let mut err = OpError::new(ErrorCode::RateLimited, "too many ops; slow down");
            err.retry_after_ms = Some(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX).max(1));
            self.send_error(req.r#ref, err);
            return Handled::Done;
        }
        // The heartbeat, answered here: no op dispatch and no allocation for the most frequent
        // op. Behind a waiting reply it takes the ordinary path, which keeps the order.
        if let Op::Ping(_) = req.op
            && self.conn.wire == Wire::Evd
            && self.pending.is_empty()
        {
            self.node.metrics.evd_pings.increment(1);
            self.send(&Event::Pong(Pong { r#ref: req.r#ref }));
            return Handled::Done;
        }
        Handled::Run(req)
    }

    /// Socket.IO: how often the server pings. `None` on evd's protocol, where the client does.
    fn ping_every(&self) -> Option<Duration> {
        (self.conn.wire == Wire::SocketIo)
            .then(|| Duration::from_millis(self.node.settings.socketio.ping_interval_ms))
    }

    /// How long a silent client is given before it is taken for gone: on Socket.IO a ping
    /// interval and the ping timeout, on evd's protocol two heartbeats.
    fn silence(&self) -> Duration {
        let settings = &self.node.settings;
        match self.ping_every() {
            Some(every) => every + Duration::from_millis(settings.socketio.ping_timeout_ms),
            None => settings.heartbeat() * 2,
        }
    }

    /// How long a closing connection waits for the client's close reply.
    fn close_wait(&self) -> Duration {
        Duration::from_millis(self.node.settings.drain.close_timeout_ms)
    }
}

impl Session {
    /// Queues an Engine.IO ping. Behind a full queue it closes the connection as any event
    /// would (4008).
    fn ping(&self) {
        let item = Outbound {
            payload: Payload::Text(Utf8Bytes::from_static(socketio::PING)),
            published_at: None,
        };
        if let crate::conn::queue::Push::Overflow { dropped } =
            self.conn.push(item, &self.node.stats)
        {
            self.node.metrics.slow_consumer_closes.increment(1);
            self.node.metrics.queue_drops.increment(dropped as u64);
        }
    }
}

/// What a client frame asks for.
enum Decoded {
    /// An op to run.
    Op(Request),
    /// A frame that is not an op: answer `ERROR bad_request`.
    Bad(DecodeError),
    /// Nothing to do (a Socket.IO pong, which already proved liveness; a noop).
    Nothing,
    /// The client asked to close (a Socket.IO DISCONNECT or Engine.IO close).
    Close(CloseCode),
}

/// Decodes a data frame by the connection's wire and codec.
fn decode(conn: &Conn, msg: &Message) -> Decoded {
    let codec = conn.codec;
    let packet = match (conn.wire, msg, codec) {
        (Wire::Evd, Message::Text(t), Codec::Json) => {
            return codec
                .decode_request(t.as_bytes())
                .map_or_else(Decoded::Bad, Decoded::Op);
        }
        (Wire::Evd, Message::Binary(b), Codec::MsgPack) => {
            return codec
                .decode_request(b)
                .map_or_else(Decoded::Bad, Decoded::Op);
        }
        // Engine.IO's own packets (pong, close) are text whatever the parser.
        (Wire::SocketIo, Message::Text(t), _) => socketio::decode_text(t.as_str()),
        (Wire::SocketIo, Message::Binary(b), Codec::MsgPack) => socketio::decode_msgpack(b),
        _ => return Decoded::Bad(DecodeError::wrong_frame_type(codec)),
    };
    match packet {
        Ok(Inbound::Request(req)) => Decoded::Op(req),
        Ok(Inbound::Close | Inbound::Disconnect) => Decoded::Close(CloseCode::Normal),
        Ok(
            Inbound::Pong
            | Inbound::Ping { .. }
            | Inbound::Upgrade
            | Inbound::Connect { .. }
            | Inbound::ClientAck,
        ) => Decoded::Nothing,
        Err(e) => Decoded::Bad(e),
    }
}

/// Why a connection ended, as a metrics label.
fn reason(code: Option<CloseCode>, fallback: &'static str) -> &'static str {
    code.map_or(fallback, CloseCode::reason)
}

/// Opens a freshly upgraded connection, then hands the rest of its life to a task of its own.
pub async fn run_connection(
    node: Arc<Node>,
    socket: WebSocket,
    claims: Claims,
    wire: Wire,
    codec: Codec,
    permit: ConnPermit,
) {
    let (sink, stream) = socket.split();
    run_link(node, sink, stream, claims, wire, codec, permit, None).await;
}

/// [`run_connection`] on a link's two halves: a WebSocket's, or a Socket.IO polling link's
/// (opened once the client has connected). With `recover`, the connection first rejoins that
/// room from that position, its missed messages queued before anything live (Socket.IO's
/// connection-state recovery); if the room no longer holds them it is closed with 4001, so the
/// client connects again and learns that recovery failed.
#[allow(clippy::too_many_arguments)]
pub async fn run_link<Si, St>(
    node: Arc<Node>,
    mut sink: Si,
    stream: St,
    claims: Claims,
    wire: Wire,
    codec: Codec,
    permit: ConnPermit,
    recover: Option<(RoomKey, StreamPosition)>,
) where
    Si: Sink<Message> + Unpin + Send + 'static,
    Si::Error: Display + Send,
    St: Stream<Item = Result<Message, axum::Error>> + Unpin + Send + 'static,
{
    // Opening and closing talk to the broker and presence: boxed, so their futures are not part
    // of every connection's task while it idles.
    let conn = match Box::pin(node.open_conn(&claims, wire, codec, None)).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "could not open connection");
            node.metrics.closed("internal", wire.label());
            // 1011: a server-side failure; the client reconnects with backoff.
            let close = Message::Close(Some(axum::extract::ws::CloseFrame {
                code: 1011,
                reason: "backend unavailable".into(),
            }));
            let _ = tokio::time::timeout(OPEN_FAILURE_CLOSE_WAIT, sink.send(close)).await;
            return;
        }
    };
    if let Some((room, pos)) = recover {
        let recovered = Box::pin(node.rejoin(&conn, &claims, &room, pos)).await;
        if !matches!(recovered, Ok(true)) {
            tracing::debug!(
                conn = conn.id,
                ?room,
                "recovery failed after CONNECT; closing"
            );
            conn.close(CloseCode::ShuttingDown, true, &node.stats);
        }
    }
    let writer = Some(node.shutdown.spawn(writer::run(
        sink,
        Arc::clone(&conn),
        writer_config(&node, packing(wire)),
        Arc::clone(&node.stats),
        node.metrics.clone(),
    )));
    // Boxed: moved through two futures' arguments, it would otherwise be stored in each.
    let session = Box::new(Session::new(Arc::clone(&node), Arc::clone(&conn), claims));
    // The connection's life runs in a task of its own, so this task's state (the socket and
    // claims it was handed, the opening) is freed now instead of idling beside it.
    let shutdown = node.shutdown.clone();
    shutdown.spawn(serve(stream, session, writer, permit));
}

/// Opens a connection on a plain TCP socket whose upgrade is done ([`crate::handshake`]): its
/// frames are written directly ([`crate::conn::direct`]) and read by the WebSocket layer in the
/// connection's one task, with no writer task.
pub async fn run_direct(
    node: Arc<Node>,
    socket: TcpStream,
    read_buf: Bytes,
    claims: Claims,
    codec: Codec,
    permit: ConnPermit,
) {
    let wire = Wire::Evd;
    let direct = direct_writer(&node, socket, packing(wire));
    let opened = Box::pin(node.open_conn(&claims, wire, codec, Some(direct))).await;
    let conn = match opened {
        Ok(conn) => conn,
        Err(failed) => {
            tracing::warn!(error = %failed, "could not open connection");
            node.metrics.closed("internal", wire.label());
            // 1011: a server-side failure; the client reconnects with backoff.
            // Best effort: the socket is dropped right after.
            failed
                .conn
                .write_raw(&direct::close_frame(CloseCode::InternalError));
            failed.conn.abandon();
            return;
        }
    };
    let max_message = node.settings.limits.max_message_bytes;
    let stream = direct_read::messages(Arc::clone(&conn), &read_buf, max_message);
    let session = Box::new(Session::new(Arc::clone(&node), Arc::clone(&conn), claims));
    let shutdown = node.shutdown.clone();
    shutdown.spawn(serve(stream, session, None, permit));
}

/// The rest of a connection's life: the reader loop, then the close. The node and the
/// connection are taken from the session once the loop is over, not kept beside it.
async fn serve<St>(
    stream: St,
    mut session: Box<Session>,
    writer: Option<tokio::task::JoinHandle<writer::WriterEnd>>,
    permit: ConnPermit,
) where
    St: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let why = read_session(stream, &mut session).await;
    let (node, conn) = (Arc::clone(&session.node), Arc::clone(&session.conn));
    drop(session);
    Box::pin(node.close_conn(&conn)).await;
    // If the session ended first (client gone), make the writer finish too.
    conn.close(CloseCode::Normal, false, &node.stats);
    if let Some(writer) = writer {
        let _ = writer.await;
    }
    conn.abandon();
    node.metrics.closed(why, conn.wire.label());
    tracing::debug!(conn = conn.id, reason = why, "connection closed");
    drop(permit);
}

/// How a wire's events become frames: evd's protocol packs them into arrays; every Socket.IO
/// packet is a frame of its own.
fn packing(wire: Wire) -> Packing {
    match wire {
        Wire::Evd => Packing::Batch,
        Wire::SocketIo => Packing::OnePerFrame,
    }
}

/// The direct write side of a plain TCP socket, with this node's writer settings.
pub fn direct_writer(node: &Node, socket: TcpStream, packing: Packing) -> Direct {
    Direct::new(
        socket,
        writer_config(node, packing),
        Arc::clone(&node.stats),
        Arc::clone(&node.metrics),
    )
}

/// The writer settings for this node.
pub fn writer_config(node: &Node, packing: Packing) -> WriterConfig {
    let l = &node.settings.limits;
    WriterConfig {
        take_bytes: l.frame_batch_bytes * WRITER_TAKE_FRAMES,
        frame_batch_bytes: l.frame_batch_bytes,
        packing,
        close_timeout: Duration::from_millis(node.settings.drain.close_timeout_ms),
    }
}

/// The reader loop; returns the close reason label. Generic over the stream so it can be driven
/// by a channel in tests.
pub async fn read_loop<St>(stream: St, mut s: Box<Session>) -> &'static str
where
    St: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    read_session(stream, &mut s).await
}

/// When the read loop wakes next: the read deadline (while open, the token's next deadline
/// too), and, while open, the first of the drain close and the next ping.
fn wake_times(s: &Session, closing: bool) -> (Instant, Option<Instant>) {
    let w = &s.read;
    if closing {
        return (w.deadline, None);
    }
    let wake_at = match (w.drain_at, w.ping_at) {
        (Some(d), Some(p)) => Some(d.min(p)),
        (d, p) => d.or(p),
    };
    (w.deadline.min(s.token.due()), wake_at)
}

/// [`read_loop`] on a session its caller keeps.
async fn read_session<St>(mut stream: St, s: &mut Session) -> &'static str
where
    St: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    // Socket.IO: the server pings (every `ping_interval_ms`, from this loop, so no task of its
    // own) and a client silent for an interval and a timeout is gone. evd's protocol: the client
    // pings, and silence for two heartbeats is a timeout. These durations are worked out from
    // the settings where used, not kept: kept, they would sit in every idle connection's task.
    s.read = ReadState {
        deadline: Instant::now() + s.silence(),
        drain_at: None,
        ping_at: s.ping_every().map(|every| Instant::now() + every),
        closing: None,
    };
    let mut writer_done = false;
    // One waiter for the drain and the stop, made before the phase is first read.
    let mut phase_changed = std::pin::pin!(s.node.shutdown.phase_changed());

    // The connection's one timer: it wakes for the first of the read deadline (heartbeat, or the
    // wait for the close reply), the token's next deadline, the drain close and the next ping.
    // One `Sleep` reset each turn, not one per deadline: it sits in every idle connection's task.
    let timer = tokio::time::sleep_until(s.read.deadline);
    tokio::pin!(timer);

    loop {
        // The stop ends the loop at once; the drain picks this connection's point in the grace
        // period, if it is still open.
        match s.node.shutdown.phase() {
            Phase::Stopped => {
                s.close(CloseCode::ShuttingDown, false);
                return s.read.closing.unwrap_or("shutting_down");
            }
            Phase::Draining if s.read.drain_at.is_none() && s.read.closing.is_none() => {
                let spread = s.node.settings.drain.grace_ms * DRAIN_SPREAD_PERCENT / 100;
                let after = Duration::from_millis(fastrand::u64(0..=spread));
                s.read.drain_at = Some(Instant::now() + after);
            }
            _ => {}
        }
        let (wake, wake_at) = wake_times(s, s.read.closing.is_some());
        let at = wake_at.map_or(wake, |at| at.min(wake));
        // A fired timer is reset even to the same instant, so it does not fire again at once.
        if timer.deadline() != at || timer.is_elapsed() {
            timer.as_mut().reset(at);
        }
        tokio::select! {
            biased;
            // Looked at on the next turn; a new waiter is made before that look.
            () = &mut phase_changed => phase_changed.set(s.node.shutdown.phase_changed()),
            () = oldest_ready(&mut s.pending, &s.node, &s.conn), if !s.pending.is_empty() => {}
            () = s.conn.writer_done.wait(), if !writer_done => {
                writer_done = true;
                s.read.closing.get_or_insert(reason(s.conn.queue.closing(), "write_error"));
                s.read.deadline = Instant::now() + s.close_wait();
            }
            () = &mut timer => {
                let now = Instant::now();
                // Worked out again rather than kept across the wait: nothing they depend on
                // changed while it lasted.
                let (wake, wake_at) = wake_times(s, s.read.closing.is_some());
                if wake_at.is_some_and(|at| at <= now) {
                    if let (Some(at), Some(every)) = (s.read.ping_at, s.ping_every()) && at <= now {
                        s.ping();
                        s.read.ping_at = Some(now + every);
                    }
                    if s.read.drain_at.is_some_and(|at| at <= now) {
                        let max = s.node.settings.drain.reconnect_after_max_ms;
                        let after_ms = fastrand::u64(0..=max);
                        s.send(&Event::Reconnect(Reconnect { after_ms, reason: "shutdown".into() }));
                        s.close(CloseCode::ShuttingDown, true);
                        s.read.closing = Some(CloseCode::ShuttingDown.reason());
                        s.read.deadline = Instant::now() + s.close_wait();
                    }
                    // A read deadline due too is looked at next turn, against the new state.
                    continue;
                }
                if now < wake {
                    continue;
                }
                if let Some(why) = s.read.closing {
                    return why;
                }
                if now >= s.read.deadline {
                    s.close(CloseCode::HeartbeatTimeout, false);
                    s.read.closing = Some(CloseCode::HeartbeatTimeout.reason());
                    s.read.deadline = now + s.close_wait();
                    continue;
                }
                match s.token.fire(now) {
                    Some(TokenDue::Warn(expires_at)) => {
                        s.send(&Event::TokenExpiring(TokenExpiring { expires_at }));
                    }
                    Some(TokenDue::Expired) => {
                        s.close(CloseCode::TokenExpired, true);
                        s.read.closing = Some(CloseCode::TokenExpired.reason());
                        s.read.deadline = now + s.close_wait();
                    }
                    None => {}
                }
            }
            next = stream.next() => match next {
                None => return s.read.closing.unwrap_or("client_gone"),
                Some(Err(e)) => {
                    if s.read.closing.is_some() {
                        return s.read.closing.unwrap_or("error");
                    }
                    // Gone without a close frame: nothing to answer, and no fault of protocol.
                    if client_vanished(&e) {
                        return "client_gone";
                    }
                    // A frame the WebSocket layer refused: the stream cannot be read past it.
                    // Send the matching close code and wait (bounded) for the writer to deliver it.
                    return match close_code_for(&e) {
                        Some(code) => {
                            s.close(code, false);
                            // Boxed: a rare path, and its timer would otherwise sit in every
                            // idle connection's task.
                            let wait = tokio::time::timeout(s.close_wait(), s.conn.writer_done.wait());
                            let _ = Box::pin(wait).await;
                            code.reason()
                        }
                        None => {
                            tracing::debug!(conn = s.conn.id, error = %e, "read failed");
                            "read_error"
                        }
                    };
                }
                Some(Ok(msg)) => {
                    if s.read.closing.is_none() {
                        s.read.deadline = Instant::now() + s.silence();
                    }
                    match msg {
                        Message::Text(_) | Message::Binary(_) if s.read.closing.is_none() => {
                            let close = match s.on_frame(&msg) {
                                Handled::Done => None,
                                Handled::Close(code) => Some(code),
                                // Boxed: an op's future (store and broker calls) is kilobytes,
                                // and inline it would sit in every idle connection's task.
                                Handled::Run(req) => {
                                    drop(msg);
                                    Box::pin(s.dispatch(req)).await;
                                    None
                                }
                            };
                            if let Some(code) = close {
                                s.close(code, true);
                                s.read.closing = Some(code.reason());
                                s.read.deadline = Instant::now() + s.close_wait();
                            }
                        }
                        Message::Close(_) => {
                            s.read.closing.get_or_insert("client_closed");
                            s.read.deadline = Instant::now() + s.close_wait();
                        }
                        // Pings (answered by the WebSocket layer) and pongs only prove liveness.
                        _ => {}
                    }
                }
            },
        }
    }
}

/// The WebSocket error behind a read error, if there is one.
fn ws_error(e: &axum::Error) -> Option<&tokio_tungstenite::tungstenite::Error> {
    use std::error::Error as _;
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(err) = source {
        if let Some(t) = err.downcast_ref() {
            return Some(t);
        }
        source = err.source();
    }
    None
}

/// The close code for a read error, when the client broke a rule (rather than the socket
/// failing).
pub fn close_code_for(e: &axum::Error) -> Option<CloseCode> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match ws_error(e)? {
        WsError::Capacity(_) => Some(CloseCode::MessageTooBig),
        WsError::Utf8(_) => Some(CloseCode::InvalidPayload),
        WsError::Protocol(_) => Some(CloseCode::ProtocolError),
        _ => None,
    }
}

/// Whether a read error means the client went away without a close frame: its TCP connection
/// ended or was reset (a closed laptop, a lost network, a killed app).
pub fn client_vanished(e: &axum::Error) -> bool {
    use std::io::ErrorKind;
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match ws_error(e) {
        Some(
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
            | WsError::ConnectionClosed
            | WsError::AlreadyClosed,
        ) => true,
        Some(WsError::Io(io)) => matches!(
            io.kind(),
            ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output_size4<F: FnOnce(A, B, C, D) -> R, A, B, C, D, R>(_: F) -> usize {
        std::mem::size_of::<R>()
    }

    fn output_size5<F: FnOnce(A, B, C, D, E) -> R, A, B, C, D, E, R>(_: F) -> usize {
        std::mem::size_of::<R>()
    }

    fn output_size2<F: FnOnce(A, B) -> R, A, B, R>(_: F) -> usize {
        std::mem::size_of::<R>()
    }

    /// An idle connection holds its reader's and writer's futures and its session for its whole
    /// life, so their sizes are RSS per connection (the idle bar in bench/RESULTS.md). This
    /// catches a change that inlines a large future (an op, a store call) or the strike buckets
    /// into a connection's state.
    #[test]
    fn an_idle_connection_holds_small_futures() {
        let direct = output_size4(serve::<direct_read::DirectStream>);
        let serve = output_size4(serve::<futures_util::stream::SplitStream<WebSocket>>);
        let read_loop = output_size2(|st: direct_read::DirectStream, s: &'static mut Session| {
            read_session(st, s)
        });
        let writer =
            output_size5(writer::run::<futures_util::stream::SplitSink<WebSocket, Message>>);
        let session = std::mem::size_of::<Session>();
        // Measured in a test build: 632, 632 and 440 bytes, a read loop of 504, and a session
        // of 392 (328 before the loop's deadlines and close reason moved into it; 464 with the
        // strike buckets made up front). tokio aligns a task to 128 bytes, so its allocation
        // grows in 128-byte steps: a serve future of up to 656 bytes makes a 768-byte task
        // (tokio 1.54, spawned through the shutdown's task tracker), one more byte an 896-byte
        // one. The serve futures were 920 (a 1,152-byte task) with the drain and the stop each
        // waited on through a token (72 bytes each), the writer's end through a `Notify` (64),
        // and the loop's durations, deadlines and close reason kept in the future; 944 with a
        // second timer; once 2,696 plus axum's upgrade task, and 1,072.
        assert!(serve <= 656, "serve future is {serve} bytes");
        assert!(direct <= 656, "direct serve future is {direct} bytes");
        assert!(read_loop <= 544, "read loop future is {read_loop} bytes");
        assert!(writer <= 512, "writer future is {writer} bytes");
        assert!(session <= 400, "session is {session} bytes");
    }
}
