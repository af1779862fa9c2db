//! The session: a connection's reader. It decodes frames, enforces the heartbeat and the op
//! limits, runs ops in order, and leads the close.
//!
//! Closing always goes through the queue: the session (or the hub, for a slow consumer) closes
//! the queue with a code, the writer sends the close frame, and the session waits a bounded time
//! for the client's close reply.

use super::Conn;
use super::queue::QueueStats;
use super::writer::{self, Packing, WriterConfig};
use crate::metrics::Metrics;
use crate::node::{ConnPermit, Node};
use crate::ops::{self, OpError};
use axum::extract::ws::{Message, WebSocket};
use evd_protocol::auth::Claims;
use evd_protocol::event::{Event, Reconnect};
use evd_protocol::{CloseCode, Codec, DecodeError, ErrorCode, Ref};
use futures_util::stream::SplitStream;
use futures_util::{Stream, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::VecDeque;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One connection's op limits: a token bucket for ops, and two "strike" buckets that close the
/// connection when a client keeps flooding or keeps sending garbage.
struct OpLimits {
    ops: DefaultDirectRateLimiter,
    flood: DefaultDirectRateLimiter,
    bad_frames: DefaultDirectRateLimiter,
}

impl OpLimits {
    fn new(l: &crate::settings::Limits) -> OpLimits {
        let nz = |n: u32| NonZeroU32::new(n.max(1)).expect("max(1) is non-zero");
        OpLimits {
            ops: RateLimiter::direct(
                Quota::per_second(nz(l.ops_per_sec)).allow_burst(nz(l.ops_burst)),
            ),
            flood: RateLimiter::direct(
                Quota::per_second(nz(l.ops_per_sec / 5)).allow_burst(nz(l.flood_strikes)),
            ),
            bad_frames: RateLimiter::direct(
                Quota::with_period(Duration::from_secs(10))
                    .expect("non-zero period")
                    .allow_burst(nz(l.bad_frame_strikes)),
            ),
        }
    }

    /// `Err(retry_after)` when over the op rate.
    fn op(&self) -> Result<(), Duration> {
        self.ops.check().map_err(|nu| {
            nu.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))
        })
    }
}

/// The reader side of one connection, handed to every op.
pub struct Session {
    /// The node.
    pub node: Arc<Node>,
    /// This connection.
    pub conn: Arc<Conn>,
    /// The verified token.
    pub claims: Claims,
    limits: OpLimits,
    /// Replies that wait for a commit (a `send_message` ACK waits for its archive), oldest
    /// first. While any waits, later replies queue behind it, so replies keep the ops' order.
    pending: VecDeque<PendingReply>,
}

/// A reply that is ready later.
pub type PendingReply = Pin<Box<dyn Future<Output = Event> + Send + Sync>>;

/// Most replies one connection may have waiting; the next op waits for the oldest.
pub const MAX_PENDING_REPLIES: usize = 64;

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for `conn`.
    pub fn new(node: Arc<Node>, conn: Arc<Conn>, claims: Claims) -> Session {
        let limits = OpLimits::new(&node.settings.limits);
        Session {
            node,
            conn,
            claims,
            limits,
            pending: VecDeque::new(),
        }
    }

    /// Queues `reply` behind the replies still waiting, or sends it now when none waits.
    pub fn reply(&mut self, reply: Event) {
        if self.pending.is_empty() {
            self.send(&reply);
        } else {
            self.pending.push_back(Box::pin(std::future::ready(reply)));
        }
    }

    /// Queues a reply that is ready later; first waits for the oldest if too many wait.
    pub async fn reply_later(&mut self, reply: PendingReply) {
        if self.pending.len() >= MAX_PENDING_REPLIES {
            self.flush_one().await;
        }
        self.pending.push_back(reply);
    }

    /// Sends every waiting reply, in order.
    pub async fn flush_replies(&mut self) {
        while !self.pending.is_empty() {
            self.flush_one().await;
        }
    }

    /// Waits for the oldest waiting reply and sends it; callers check that one waits.
    async fn flush_one(&mut self) {
        oldest_ready(&mut self.pending, &self.node, &self.conn).await;
    }

    /// Queues an event to this connection.
    pub fn send(&self, event: &Event) {
        self.node.send(&self.conn, event);
    }

    /// Queues an `ERROR`, behind any reply still waiting.
    pub fn send_error(&mut self, r: Option<Ref>, e: OpError) {
        self.node.metrics.op_error(e.code.as_str());
        self.reply(e.into_event(r));
    }

    /// Starts closing with `code`; with `flush`, queued events go out first.
    pub fn close(&self, code: CloseCode, flush: bool) {
        let dropped = self.conn.queue.close(code, flush, &self.node.stats);
        self.node.metrics.queue_drops.increment(dropped as u64);
    }

    /// Handles one data frame; returns a close reason if the connection must close.
    async fn on_frame(&mut self, msg: Message) -> Option<CloseCode> {
        let codec = self.conn.codec;
        let decoded = match (&msg, codec) {
            (Message::Text(t), Codec::Json) => codec.decode_request(t.as_bytes()),
            (Message::Binary(b), Codec::MsgPack) => codec.decode_request(b),
            _ => Err(DecodeError::wrong_frame_type(codec)),
        };
        let req = match decoded {
            Ok(req) => req,
            Err(e) => {
                self.node.metrics.op("invalid");
                if self.limits.bad_frames.check().is_err() {
                    self.send_error(
                        e.r#ref,
                        OpError::new(ErrorCode::BadRequest, "too many malformed frames"),
                    );
                    return Some(CloseCode::ProtocolViolation);
                }
                self.send_error(e.r#ref, OpError::new(ErrorCode::BadRequest, e.message));
                return None;
            }
        };
        if let Err(retry) = self.limits.op() {
            self.node.metrics.op("rate_limited");
            if self.limits.flood.check().is_err() {
                return Some(CloseCode::Flood);
            }
            let mut err = OpError::new(ErrorCode::RateLimited, "too many ops; slow down");
            err.retry_after_ms = Some(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX).max(1));
            self.send_error(req.r#ref, err);
            return None;
        }
        // Boxed: an op's future (store and broker calls) is kilobytes, and inline it would sit
        // in every idle connection's task for the connection's whole life.
        Box::pin(ops::dispatch(self, req)).await;
        None
    }
}

/// Completes once the oldest waiting reply is ready and queued to the client (never, when none
/// waits). Takes the session's fields apart so the read loop can wait on it beside the socket.
fn oldest_ready<'a>(
    pending: &'a mut VecDeque<PendingReply>,
    node: &'a Node,
    conn: &'a Conn,
) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| match pending.front_mut() {
        Some(oldest) => oldest.as_mut().poll(cx).map(|reply| {
            pending.pop_front();
            node.send(conn, &reply);
        }),
        None => std::task::Poll::Pending,
    })
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
    codec: Codec,
    permit: ConnPermit,
) {
    // Opening and closing talk to the broker and presence: boxed, so their futures are not part
    // of every connection's task while it idles.
    let conn = match Box::pin(node.open_conn(&claims, codec)).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "could not open connection");
            node.metrics.closed("internal");
            // 1011: a server-side failure; the client reconnects with backoff.
            let close = Message::Close(Some(axum::extract::ws::CloseFrame {
                code: 1011,
                reason: "backend unavailable".into(),
            }));
            let mut socket = socket;
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(close)).await;
            return;
        }
    };
    let (sink, stream) = socket.split();
    let writer = node.shutdown.spawn(writer::run(
        sink,
        Arc::clone(&conn),
        writer_config(&node, Packing::Batch),
        Arc::clone(&node.stats),
        node.metrics.clone(),
    ));
    // Boxed: moved through two futures' arguments, it would otherwise be stored in each.
    let session = Box::new(Session::new(Arc::clone(&node), Arc::clone(&conn), claims));
    // The connection's life runs in a task of its own, so this task's state (the socket and
    // claims it was handed, the opening) is freed now instead of idling beside it.
    let shutdown = node.shutdown.clone();
    shutdown.spawn(serve(node, conn, stream, session, writer, permit));
}

/// The rest of a connection's life: the reader loop, then the close.
async fn serve(
    node: Arc<Node>,
    conn: Arc<Conn>,
    stream: SplitStream<WebSocket>,
    session: Box<Session>,
    writer: tokio::task::JoinHandle<writer::WriterEnd>,
    permit: ConnPermit,
) {
    let why = read_loop(stream, session).await;
    Box::pin(node.close_conn(&conn)).await;
    // If the session ended first (client gone), make the writer finish too.
    conn.queue.close(CloseCode::Normal, false, &node.stats);
    let _ = writer.await;
    node.metrics.closed(why);
    tracing::debug!(conn = conn.id, reason = why, "connection closed");
    drop(permit);
}

/// The writer settings for this node.
pub fn writer_config(node: &Node, packing: Packing) -> WriterConfig {
    let l = &node.settings.limits;
    WriterConfig {
        take_bytes: l.frame_batch_bytes * 4,
        frame_batch_bytes: l.frame_batch_bytes,
        packing,
        close_timeout: Duration::from_millis(node.settings.drain.close_timeout_ms),
    }
}

/// The reader loop; returns the close reason label. Generic over the stream so it can be driven
/// by a channel in tests.
pub async fn read_loop<St>(mut stream: St, mut s: Box<Session>) -> &'static str
where
    St: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let node = Arc::clone(&s.node);
    let silence = node.settings.heartbeat() * 2;
    let close_wait = Duration::from_millis(node.settings.drain.close_timeout_ms);
    let mut deadline = Instant::now() + silence;
    // Set once the connection is closing; the deadline then bounds the wait for the close reply.
    let mut closing: Option<&'static str> = None;
    let mut writer_done = false;
    let mut drain_at: Option<Instant> = None;
    let drain = node.shutdown.draining();
    let stop = node.shutdown.stopped();
    tokio::pin!(drain, stop);

    loop {
        let drain_due = async {
            match drain_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = &mut stop => {
                s.close(CloseCode::ShuttingDown, false);
                return closing.unwrap_or("shutting_down");
            }
            () = oldest_ready(&mut s.pending, &s.node, &s.conn), if !s.pending.is_empty() => {}
            _ = s.conn.writer_done.notified(), if !writer_done => {
                writer_done = true;
                closing.get_or_insert(reason(s.conn.queue.closing(), "write_error"));
                deadline = Instant::now() + close_wait;
            }
            _ = &mut drain, if drain_at.is_none() && closing.is_none() => {
                let spread = node.settings.drain.grace_ms * 8 / 10;
                drain_at = Some(Instant::now() + Duration::from_millis(fastrand::u64(0..=spread)));
            }
            _ = drain_due, if closing.is_none() => {
                let after_ms = fastrand::u64(0..=node.settings.drain.reconnect_after_max_ms);
                s.send(&Event::Reconnect(Reconnect { after_ms, reason: "shutdown".into() }));
                s.close(CloseCode::ShuttingDown, true);
                closing = Some(CloseCode::ShuttingDown.reason());
                deadline = Instant::now() + close_wait;
            }
            next = tokio::time::timeout_at(deadline, stream.next()) => match next {
                Err(_elapsed) => {
                    if let Some(why) = closing {
                        return why;
                    }
                    s.close(CloseCode::HeartbeatTimeout, false);
                    closing = Some(CloseCode::HeartbeatTimeout.reason());
                    deadline = Instant::now() + close_wait;
                }
                Ok(None) => return closing.unwrap_or("client_gone"),
                Ok(Some(Err(e))) => {
                    if closing.is_some() {
                        return closing.unwrap_or("error");
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
                            let _ = tokio::time::timeout(close_wait, s.conn.writer_done.notified()).await;
                            code.reason()
                        }
                        None => {
                            tracing::debug!(conn = s.conn.id, error = %e, "read failed");
                            "read_error"
                        }
                    };
                }
                Ok(Some(Ok(msg))) => {
                    if closing.is_none() {
                        deadline = Instant::now() + silence;
                    }
                    match msg {
                        Message::Text(_) | Message::Binary(_) if closing.is_none() => {
                            if let Some(code) = s.on_frame(msg).await {
                                s.close(code, true);
                                closing = Some(code.reason());
                                deadline = Instant::now() + close_wait;
                            }
                        }
                        Message::Close(_) => {
                            closing.get_or_insert("client_closed");
                            deadline = Instant::now() + close_wait;
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

/// Shared with the echo endpoint.
pub(crate) fn stats_of(node: &Node) -> Arc<QueueStats> {
    Arc::clone(&node.stats)
}

/// Shared with the echo endpoint.
pub(crate) fn metrics_of(node: &Node) -> Arc<Metrics> {
    Arc::clone(&node.metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output_size<F: FnOnce(A, B, C, D, E, G) -> R, A, B, C, D, E, G, R>(_: F) -> usize {
        std::mem::size_of::<R>()
    }

    fn output_size5<F: FnOnce(A, B, C, D, E) -> R, A, B, C, D, E, R>(_: F) -> usize {
        std::mem::size_of::<R>()
    }

    /// An idle connection holds its reader's and writer's futures for its whole life, so their
    /// sizes are RSS per connection (the idle bar in bench/RESULTS.md). This catches a change
    /// that inlines a large future (an op, a store call) into a connection's state.
    #[test]
    fn an_idle_connection_holds_small_futures() {
        let serve = output_size(serve);
        let writer =
            output_size5(writer::run::<futures_util::stream::SplitSink<WebSocket, Message>>);
        // Measured: 872 and 440 bytes (they were 2,696 plus axum's upgrade task, and 1,072).
        assert!(serve <= 1_024, "serve future is {serve} bytes");
        assert!(writer <= 512, "writer future is {writer} bytes");
    }
}
