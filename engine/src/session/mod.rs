//! The session: the layer above the node that runs one connection's ops. A [`Session`] is who
//! the connection is (its [`Conn`] and verified token), its op limits, and the replies still
//! waiting; [`reader`] reads its frames and leads its close, [`ops`] holds one file per op, and
//! [`socketio`] opens a Socket.IO connection before it becomes an ordinary one.
//!
//! [`token`] keeps the token's deadlines (the expiry warning, the 4501 close) that `refresh`
//! moves.
//!
//! Replies keep the ops' order: a reply that waits for a commit (a `send_message` ACK behind
//! its archive) holds every later reply behind it, and at most [`MAX_PENDING_REPLIES`] wait.

pub mod echo;
pub mod error;
pub mod ops;
pub mod reader;
pub mod socketio;
pub mod token;

pub use error::OpError;
pub use ops::PendingReply;
pub use reader::{run_connection, run_direct};

use crate::conn::Conn;
use crate::node::Node;
use crate::settings::Limits;
use evd_protocol::auth::Claims;
use evd_protocol::event::{Event, Pong};
use evd_protocol::{CloseCode, Op, Ref, Request};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ops::{Caller, Reply};
use std::collections::VecDeque;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use token::TokenClock;
use tokio::time::Instant;

/// The flood-strike bucket refills at this fraction of the op rate: a client that keeps
/// sending at five times what it may is closed (4029) once its strikes run out; one that
/// bursts now and then never is.
const FLOOD_REFILL_DIVISOR: u32 = 5;

/// One malformed-frame strike comes back per this long, so a buggy client that sends a bad
/// frame now and then is never closed, while a stream of garbage is (4500).
const BAD_FRAME_REFILL: Duration = Duration::from_secs(10);

/// The clock every connection's buckets read. Making one (`DefaultClock::default()`, which
/// `RateLimiter::direct` does) asks the CPU whether its counter is usable (`cpuid`, a trap to
/// the hypervisor on a virtual machine): `perf record -a` of a 1,000-a-second connect ramp put
/// 1.5 % of the whole machine there when each connection made its own.
static BUCKET_CLOCK: LazyLock<DefaultClock> = LazyLock::new(DefaultClock::default);

/// A bucket on [`BUCKET_CLOCK`].
fn bucket(quota: Quota) -> DefaultDirectRateLimiter {
    RateLimiter::direct_with_clock(quota, BUCKET_CLOCK.clone())
}

/// One connection's op limits: a token bucket for ops, and two "strike" buckets that close the
/// connection when a client keeps flooding or keeps sending garbage.
///
/// The strike buckets are made on a client's first strike: a bucket nobody drew from is full,
/// so one made then is in the state it would be in had it been made with the session, and the
/// connections that never misbehave (nearly all) do not carry them.
struct OpLimits {
    ops: DefaultDirectRateLimiter,
    strikes: Option<Box<Strikes>>,
}

/// The strike buckets, made on the first strike.
struct Strikes {
    flood: DefaultDirectRateLimiter,
    bad_frames: DefaultDirectRateLimiter,
}

/// `n` as a bucket size: at least one.
fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("max(1) is non-zero")
}

impl Strikes {
    fn new(l: &Limits) -> Strikes {
        Strikes {
            flood: bucket(
                Quota::per_second(nz(l.ops_per_sec / FLOOD_REFILL_DIVISOR))
                    .allow_burst(nz(l.flood_strikes)),
            ),
            bad_frames: bucket(
                Quota::with_period(BAD_FRAME_REFILL)
                    .expect("non-zero period")
                    .allow_burst(nz(l.bad_frame_strikes)),
            ),
        }
    }
}

impl OpLimits {
    fn new(l: &Limits) -> OpLimits {
        OpLimits {
            ops: bucket(Quota::per_second(nz(l.ops_per_sec)).allow_burst(nz(l.ops_burst))),
            strikes: None,
        }
    }

    /// The strike buckets, made on first use.
    fn strikes(&mut self, l: &Limits) -> &Strikes {
        self.strikes
            .get_or_insert_with(|| Box::new(Strikes::new(l)))
    }

    /// False when the client is out of flood strikes: close it (4029).
    fn flood_strike(&mut self, l: &Limits) -> bool {
        self.strikes(l).flood.check().is_ok()
    }

    /// False when the client is out of malformed-frame strikes: close it (4500).
    fn bad_frame_strike(&mut self, l: &Limits) -> bool {
        self.strikes(l).bad_frames.check().is_ok()
    }

    /// `Err(retry_after)` when over the op rate.
    fn op(&self) -> Result<(), Duration> {
        self.ops
            .check()
            .map_err(|nu| nu.wait_time_from(BUCKET_CLOCK.now()))
    }
}

/// The reader side of one connection: who it is, its limits, and the replies still waiting.
pub struct Session {
    /// The node below: its parts are handed to each op.
    node: Arc<Node>,
    /// This connection.
    conn: Arc<Conn>,
    /// The verified token; `refresh` replaces it.
    claims: Claims,
    /// When the token is warned of and when it closes the connection.
    token: TokenClock,
    limits: OpLimits,
    /// Replies that wait for a commit (a `send_message` ACK waits for its archive), oldest
    /// first. While any waits, later replies queue behind it, so replies keep the ops' order.
    pending: VecDeque<PendingReply>,
    /// The read loop's state between wake-ups; set by it.
    read: ReadState,
}

/// The read loop's deadlines and close reason ([`reader`]). Kept in the session rather than in
/// the loop's future: tokio allocates a task in 128-byte steps (it aligns tasks to cache lines),
/// so bytes moved out of the connection's future can save a whole step, where the session grows
/// by just them.
#[derive(Debug, Clone, Copy)]
struct ReadState {
    /// The read deadline: silence for this long is a timeout, or, once closing, the wait for
    /// the client's close reply ends.
    deadline: Instant,
    /// When this connection is closed for the drain (its point in the grace period).
    drain_at: Option<Instant>,
    /// Socket.IO: when the server pings next.
    ping_at: Option<Instant>,
    /// Set once the connection is closing, to why (the metrics label); the deadline then bounds
    /// the wait for the close reply.
    closing: Option<&'static str>,
}

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
        let token = token_clock(&node, &claims);
        node.staff.track(conn.id, &claims);
        Session {
            node,
            conn,
            claims: compact(claims),
            token,
            limits,
            pending: VecDeque::new(),
            // The read loop sets it when it starts.
            read: ReadState {
                deadline: Instant::now(),
                drain_at: None,
                ping_at: None,
                closing: None,
            },
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

    /// Starts closing with `code`; with `flush`, queued events go out first. A Socket.IO client
    /// told not to reconnect (a code from 4500 up) gets a DISCONNECT first, which its client
    /// obeys; a close frame alone would have it reconnect.
    pub fn close(&self, code: CloseCode, flush: bool) {
        self.node.close_with(&self.conn, code, flush);
    }

    /// Runs one op and queues its reply or `ERROR`.
    async fn dispatch(&mut self, req: Request) {
        self.node.metrics.op(req.op.name(), self.conn.wire.label());
        if !matches!(req.op, Op::SendMessage(_)) {
            self.flush_replies().await;
        }
        let who = Caller {
            conn: &self.conn,
            claims: &self.claims,
            r#ref: req.r#ref,
        };
        match run_op(&self.node, who, req.op).await {
            Ok(Reply::Now(event)) => self.reply(event),
            Ok(Reply::Later(pending)) => self.reply_later(pending).await,
            Ok(Reply::Sent) => {}
            Ok(Reply::Refreshed { claims, reply }) => {
                self.token = token_clock(&self.node, &claims);
                self.node.staff.track(self.conn.id, &claims);
                self.claims = compact(*claims);
                self.reply(reply);
            }
            Err(e) => self.send_error(req.r#ref, e),
        }
    }
}

/// `claims` as the session keeps them for the connection's life: the token's room list
/// without the spare capacity it was read into (a one-room list is read into room for four).
fn compact(mut claims: Claims) -> Claims {
    if let Some(rooms) = &mut claims.rooms {
        rooms.shrink_to_fit();
    }
    claims
}

/// The deadlines of the token `claims` came from, with the node's warning and leeway.
fn token_clock(node: &Node, claims: &Claims) -> TokenClock {
    TokenClock::new(
        claims.exp,
        Duration::from_secs(node.settings.token_expiry_warning_secs),
        Duration::from_secs(node.settings.api.jwt.leeway_secs),
    )
}

/// Runs one op with the node parts it uses.
async fn run_op(node: &Node, who: Caller<'_>, op: Op) -> ops::OpResult {
    let (authorizer, store) = (node.authorizer.as_ref(), node.live.as_ref());
    let limits = &node.settings.limits;
    match op {
        Op::JoinRoom(op) => ops::join_room::apply(op, who, node).await,
        Op::LeaveRoom(op) => ops::leave_room::apply(op, who, node).await,
        Op::SendMessage(op) => {
            let broker = node.broker.as_ref();
            ops::send_message::apply(op, who, authorizer, broker, store, limits, &node.metrics)
                .await
        }
        Op::Ping(_) => Ok(Reply::Now(Event::Pong(Pong { r#ref: who.r#ref }))),
        Op::SubmitPollResponse(op) => ops::polls::apply(op, who, authorizer, store).await,
        Op::AskQuestion(op) => ops::questions::ask(op, who, authorizer, store, limits).await,
        Op::UpvoteQuestion(op) => ops::questions::upvote(op, who, authorizer, store).await,
        Op::AcceptOffer(op) => ops::offers::accept(op, who, store).await,
        Op::DeclineOffer(op) => ops::offers::decline(op, who, store).await,
        Op::Refresh(op) => ops::refresh::apply(&op, who, &node.verifier),
    }
}

/// Completes once the oldest waiting reply is ready and queued to the client (never, when none
/// waits). Takes the session's fields apart so the read loop can wait on it beside the socket.
/// It queues the reply itself: a future that handed the reply out would hold room for one (an
/// `Event`) in every idle connection's task.
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
