//! A worker process: holds its share of the connections on one source address, runs its
//! publishers, and reports counters and histograms as JSON lines on stdout.
//!
//! Lines out: `{"t":"progress",…}` every half second, `{"t":"ready"}` once every connection has
//! joined (or failed), `{"t":"report",…}` at the end. Lines in: the plan as JSON (too big for the
//! command line once it lists thousands of polls), then `start <unix ms>`, the instant every
//! worker starts measuring, so publishers on all workers share one schedule.
//!
//! Timers are per event, not per tick: a chat client sleeps until its next churn (a Poisson
//! process) and its vote, so 100,000 idle clients cause no wakeups between them.
//!
//! One thread per worker (a current-thread runtime and a `LocalSet`): counters are plain
//! `RefCell`s with no locking, and the coordinator starts as many workers as the run needs.

use crate::plan::{Scenario, WorkerPlan};
use crate::schedule::{self, Schedule};
use crate::stamp;
use crate::stats::{self, OffsetTracker, Order, RoomTally, StormReport, VoteReport, WorkerReport};
use crate::wire::{Incoming, Target, VOTE_REF, Wire};
use anyhow::Context;
use evd_protocol::auth::{Claims, JwtSettings, Role, Signer};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use nix::sys::socket::{setsockopt, sockopt};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Ws = WebSocketStream<TcpStream>;

/// How often an evd client sends its heartbeat; the engine's default `heartbeat_ms` is 25 s.
const PING_EVERY: Duration = Duration::from_secs(20);
/// Read buffer per harness connection: tungstenite's default of 128 KiB would cost 2.4 GB for
/// 19k connections.
const READ_BUFFER: usize = 8 * 1024;
/// How long a client keeps trying to come back after the storm.
const STORM_GIVE_UP: Duration = Duration::from_secs(120);
/// How long tokens live: longer than any run.
const TOKEN_TTL_SECS: u64 = 6 * 3600;
/// Longest wait for a churn: an exponential gap is unbounded, a timer is not.
const CHURN_GAP_MAX: Duration = Duration::from_secs(24 * 3600);

/// What the clients are doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ramp,
    Run,
    Storm,
    Done,
}

#[derive(Default)]
struct StormCounters {
    dropped: u64,
    back: u64,
    recovered: u64,
    not_recovered: u64,
    replayed: u64,
    slowest_us: u64,
}

struct Counters {
    connected: u64,
    connect_failed: u64,
    joined: u64,
    /// Clients that joined or gave up: the ramp is over when this reaches the client count.
    settled: u64,
    publishers_ready: u64,
    first_connect: Option<Instant>,
    last_connect: Option<Instant>,
    connect_hist: Histogram<u64>,
    latency_hist: Histogram<u64>,
    rejoin_hist: Histogram<u64>,
    members_now: BTreeMap<usize, u64>,
    members_at_start: BTreeMap<usize, u64>,
    sent_per_room: BTreeMap<usize, u64>,
    received: u64,
    gaps: u64,
    reorders: u64,
    /// Churn leaves answered by a rejoin.
    rejoins: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    closes: BTreeMap<String, u64>,
    storm: StormCounters,
    votes_sent: u64,
    votes_acked_per_room: BTreeMap<usize, u64>,
    vote_error_kinds: BTreeMap<String, u64>,
    vote_hist: Histogram<u64>,
    last_ack_us: u64,
    /// Per client of this worker (by local index): its room and what it saw of the room's
    /// tally; `None` until it joined, and for every client when rooms have no polls.
    tallies: Vec<Option<(usize, RoomTally)>>,
}

impl Counters {
    fn new(clients: usize, polls: bool) -> Counters {
        Counters {
            connected: 0,
            connect_failed: 0,
            joined: 0,
            settled: 0,
            publishers_ready: 0,
            first_connect: None,
            last_connect: None,
            connect_hist: stats::histogram(),
            latency_hist: stats::histogram(),
            rejoin_hist: stats::histogram(),
            members_now: BTreeMap::new(),
            members_at_start: BTreeMap::new(),
            sent_per_room: BTreeMap::new(),
            received: 0,
            gaps: 0,
            reorders: 0,
            rejoins: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
            closes: BTreeMap::new(),
            storm: StormCounters::default(),
            votes_sent: 0,
            votes_acked_per_room: BTreeMap::new(),
            vote_error_kinds: BTreeMap::new(),
            vote_hist: stats::histogram(),
            last_ack_us: 0,
            tallies: if polls {
                vec![None; clients]
            } else {
                Vec::new()
            },
        }
    }

    fn error(&mut self, kind: impl Into<String>) {
        self.errors += 1;
        *self.error_kinds.entry(kind.into()).or_default() += 1;
    }

    fn close(&mut self, code: impl Into<String>) {
        *self.closes.entry(code.into()).or_default() += 1;
    }
}

struct Ctx {
    plan: WorkerPlan,
    wire: Wire,
    signer: Option<Signer>,
    addrs: Vec<SocketAddr>,
    counters: RefCell<Counters>,
    phase: watch::Sender<Phase>,
    /// The measurement start, set when the coordinator says `start`.
    start: Cell<Option<(Instant, u64)>>,
}

impl Ctx {
    fn token(&self, user: &str, role: Role, room: Option<&str>) -> Option<String> {
        let signer = self.signer.as_ref()?;
        let mut claims = Claims::new(
            user,
            &self.plan.org,
            role,
            stamp::now_us() / 1_000_000,
            TOKEN_TTL_SECS,
        );
        claims.rooms = room.map(|r| vec![r.to_owned()]);
        signer.sign(&claims).ok()
    }

    /// Opens a WebSocket to target `t` from this worker's source address.
    async fn open(&self, t: usize, token: Option<&str>) -> Result<Ws, String> {
        let url = self.wire.url(&self.plan.targets[t]);
        let mut req = url.into_client_request().map_err(|e| format!("url: {e}"))?;
        if let Some(token) = token {
            let v = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| "token header".to_owned())?;
            req.headers_mut().insert("authorization", v);
        }
        if self.wire.target == Target::Evd {
            req.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_static(self.wire.codec.subprotocol()),
            );
        }
        let addr = self.addrs[t];
        let sock = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| format!("socket: {:?}", e.kind()))?;
        if let Some(src) = self.plan.source {
            // Reuse lets a reconnect storm bind ports still in TIME_WAIT from the drop.
            sock.set_reuseaddr(true)
                .map_err(|e| format!("reuseaddr: {:?}", e.kind()))?;
            // Pick the port at connect time, by the whole 4-tuple: a port bound with
            // `bind(src:0)` is reserved against every destination, and the kernel's search for
            // a free one grows with the ports in use, which at tens of thousands of connections
            // turns the ramp into seconds of kernel time per thousand connections.
            setsockopt(&sock, sockopt::IpBindAddressNoPort, &true)
                .map_err(|e| format!("IP_BIND_ADDRESS_NO_PORT: {e}"))?;
            sock.bind(SocketAddr::new(src, 0))
                .map_err(|e| format!("bind: {:?}", e.kind()))?;
        }
        let stream = sock
            .connect(addr)
            .await
            .map_err(|e| format!("connect: {:?}", e.kind()))?;
        let _ = stream.set_nodelay(true);
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(config))
            .await
            .map_err(|e| match e {
                WsError::Http(resp) => format!("http {}", resp.status().as_u16()),
                WsError::Io(e) => format!("handshake: {:?}", e.kind()),
                other => format!("handshake: {other}"),
            })?;
        Ok(ws)
    }
}

/// One client's view of its room.
#[derive(Default)]
struct Member {
    tracker: OffsetTracker,
    epoch: Option<String>,
    /// The client's index in this worker, where its view of the tally is kept.
    slot: usize,
    /// The room index.
    room: usize,
    /// The room's poll, when it has one.
    poll: Option<String>,
    /// The intended time of the vote awaiting its reply, unix µs.
    vote_due_us: Option<u64>,
    /// The largest tally `total` seen.
    max_total: u64,
}

impl Member {
    /// Counts one event of the run (chat, a vote's reply, a tally); the rest is ignored.
    fn event(&mut self, c: &mut Counters, inc: Incoming<'_>, now_us: u64) {
        match inc {
            Incoming::Message { offset, text } => self.message(c, offset, &text, now_us),
            Incoming::Ack {
                r#ref: Some(VOTE_REF),
            } => {
                if let Some(due) = self.vote_due_us.take() {
                    *c.votes_acked_per_room.entry(self.room).or_default() += 1;
                    c.vote_hist
                        .saturating_record(now_us.saturating_sub(due).max(1));
                    c.last_ack_us = c.last_ack_us.max(now_us);
                }
            }
            Incoming::Error {
                r#ref: Some(VOTE_REF),
                code,
            } if self.vote_due_us.is_some() => {
                self.vote_due_us = None;
                *c.vote_error_kinds.entry(code.into_owned()).or_default() += 1;
            }
            Incoming::Error { code, .. } => c.error(code.into_owned()),
            Incoming::PollResults { poll, total }
                if total > self.max_total && self.poll.as_deref() == Some(&*poll) =>
            {
                self.max_total = total;
                if let Some(slot) = c.tallies.get_mut(self.slot) {
                    *slot = Some((self.room, RoomTally::member(total, now_us)));
                }
            }
            _ => {}
        }
    }

    /// Counts one chat message; `replayed` ones came in a recovery's `history`.
    fn message(&mut self, c: &mut Counters, offset: Option<u64>, text: &str, now_us: u64) {
        let Some(st) = stamp::parse(text) else { return };
        c.received += 1;
        c.latency_hist
            .saturating_record(now_us.saturating_sub(st.intended_us).max(1));
        if let Some(o) = offset {
            match self.tracker.see(o) {
                Order::Next => {}
                Order::Gap(n) => c.gaps += n,
                Order::Reorder => c.reorders += 1,
            }
        }
    }
}

/// Reads frames until the join is confirmed, doing the Socket.IO handshake on the way. Returns
/// whether the server recovered the gap (evd `recovered`).
async fn join(
    ctx: &Ctx,
    ws: &mut Ws,
    room: &str,
    member: &mut Member,
    recover: bool,
    fresh: bool,
) -> Result<bool, String> {
    let wire = ctx.wire;
    let recover_from = if recover && wire.target == Target::Evd {
        member.epoch.clone().zip(member.tracker.last)
    } else {
        None
    };
    // A fresh Socket.IO connection joins once its namespace connect is answered (below).
    if wire.target == Target::Evd || !fresh {
        ws.send(wire.join(room, recover_from))
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    loop {
        let msg = match ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(format!("join: {e}")),
            None => return Err("join: closed".into()),
        };
        let (data, binary) = match &msg {
            Message::Text(t) => (t.as_bytes(), false),
            Message::Binary(b) => (&b[..], true),
            Message::Close(f) => {
                return Err(format!(
                    "join: close {}",
                    f.as_ref().map_or(1005, |f| u16::from(f.code))
                ));
            }
            _ => continue,
        };
        let mut replies = Vec::new();
        let mut done = None;
        let now = stamp::now_us();
        let parsed = {
            let mut c = ctx.counters.borrow_mut();
            wire.parse(data, binary, |inc| match inc {
                Incoming::SioOpen => replies.push(Wire::sio_connect()),
                Incoming::SioConnected => replies.push(wire.join(room, None)),
                Incoming::SioPing => replies.push(Wire::sio_pong()),
                Incoming::SioGone => done = Some(Err("socket.io refused".to_owned())),
                Incoming::Joined {
                    epoch,
                    offset,
                    recovered,
                    history,
                } => {
                    if !recover {
                        member.tracker.last = offset;
                    }
                    if epoch.is_some() {
                        member.epoch = epoch;
                    }
                    for (o, text) in &history {
                        // Messages that arrived after the join was sent are already counted; a
                        // client drops their replay by offset.
                        if recover && member.tracker.last.is_some_and(|last| *o <= last) {
                            continue;
                        }
                        member.message(&mut c, Some(*o), text, now);
                        if recover {
                            c.storm.replayed += 1;
                        }
                    }
                    done = Some(Ok(recovered));
                }
                Incoming::Error { r#ref, code } if r#ref != Some(VOTE_REF) => {
                    c.error(format!("join: {code}"))
                }
                other => member.event(&mut c, other, now),
            })
        };
        if parsed.is_err() {
            ctx.counters.borrow_mut().error("bad frame");
        }
        for r in replies {
            ws.send(r).await.map_err(|e| format!("send: {e}"))?;
        }
        if let Some(result) = done {
            return result;
        }
    }
}

/// One room member for the whole run.
async fn client(ctx: Rc<Ctx>, i: usize) {
    let plan = &ctx.plan;
    let room_idx = plan.room_of(i);
    let room = plan.room_name(room_idx);
    let t = i % plan.targets.len();
    let token = ctx.token(&format!("u{i}"), Role::Attendee, Some(&room));
    let timeout = Duration::from_millis(plan.connect_timeout_ms);
    let t0 = Instant::now();
    let slot = i - plan.first_client;
    let mut member = Member {
        slot,
        room: room_idx,
        poll: plan.api_rooms.get(room_idx).map(|r| r.poll.clone()),
        ..Member::default()
    };
    let opened = tokio::time::timeout(timeout, async {
        let mut ws = ctx.open(t, token.as_deref()).await?;
        join(&ctx, &mut ws, &room, &mut member, false, true).await?;
        Ok::<_, String>(ws)
    })
    .await
    .unwrap_or_else(|_| Err("connect timeout".into()));
    let mut ws = {
        let mut c = ctx.counters.borrow_mut();
        c.settled += 1;
        match opened {
            Ok(ws) => {
                let now = Instant::now();
                c.connected += 1;
                c.joined += 1;
                c.first_connect.get_or_insert(t0);
                c.last_connect = Some(now);
                c.connect_hist
                    .saturating_record(now.duration_since(t0).as_micros().max(1) as u64);
                *c.members_now.entry(room_idx).or_default() += 1;
                // A member that saw no tally yet; one seen during the join is already there.
                if let Some(view @ None) = c.tallies.get_mut(slot) {
                    *view = Some((room_idx, RoomTally::member(0, 0)));
                }
                ws
            }
            Err(e) => {
                c.connect_failed += 1;
                c.error(e);
                return;
            }
        }
    };

    let mut phase = ctx.phase.subscribe();
    // Like a real client, the first heartbeat comes one interval after connecting (Socket.IO's
    // first ping also comes one pingInterval after the handshake), spread over a quarter of an
    // interval so the ramp's clients don't all ping in step.
    let jitter = Duration::from_millis(fastrand::u64(0..PING_EVERY.as_millis() as u64 / 4));
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + PING_EVERY + jitter,
        PING_EVERY,
    );
    // The churn and the vote are one timer each, armed when the run starts.
    let churn_rate = (plan.scenario == Scenario::Chat && plan.churn > 0.0).then_some(plan.churn);
    let churn_gap = || schedule::exponential(fastrand::f64(), plan.churn).min(CHURN_GAP_MAX);
    let churn_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(churn_timer);
    let mut churning = false;
    let vote_window = plan.vote_window().filter(|_| member.poll.is_some());
    let vote_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(vote_timer);
    let mut vote_due_us: Option<u64> = None;
    let mut arm = *phase.borrow_and_update() == Phase::Run;
    loop {
        if std::mem::take(&mut arm) {
            if churn_rate.is_some() {
                churn_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + churn_gap());
                churning = true;
            }
            if let (Some(window), Some((start, start_us))) = (vote_window, ctx.start.get()) {
                // Open loop: the vote is due at this instant whenever it actually leaves.
                let at = schedule::uniform(fastrand::f64(), window);
                vote_timer.as_mut().reset((start + at).into());
                vote_due_us = Some(start_us + at.as_micros() as u64);
            }
        }
        tokio::select! {
            msg = ws.next() => {
                if !on_frame(&ctx, &mut ws, &mut member, msg).await {
                    break;
                }
            }
            _ = ping.tick() => {
                if let Some(p) = ctx.wire.ping() && ws.send(p).await.is_err() {
                    ctx.counters.borrow_mut().close("1006");
                    break;
                }
            }
            () = &mut churn_timer, if churning => {
                // Leave and come back at once, recovering what was missed in between.
                let left = ws.send(ctx.wire.leave(&room)).await;
                let back = match left {
                    Ok(()) => join(&ctx, &mut ws, &room, &mut member, true, false).await,
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = back {
                    ctx.counters.borrow_mut().error(format!("churn: {e}"));
                    break;
                }
                ctx.counters.borrow_mut().rejoins += 1;
                churn_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + churn_gap());
            }
            () = &mut vote_timer, if vote_due_us.is_some() => {
                let Some(api_room) = plan.api_rooms.get(room_idx) else { break };
                let option = &api_room.options[fastrand::usize(..api_room.options.len())];
                member.vote_due_us = vote_due_us.take();
                ctx.counters.borrow_mut().votes_sent += 1;
                if ws.send(ctx.wire.vote(&api_room.poll, option)).await.is_err() {
                    ctx.counters.borrow_mut().close("1006");
                    break;
                }
            }
            changed = phase.changed() => {
                let now = *phase.borrow_and_update();
                if changed.is_err() || now == Phase::Done {
                    break;
                }
                arm = now == Phase::Run;
                churning &= now == Phase::Run;
                if now == Phase::Storm {
                    match storm(&ctx, ws, t, token.as_deref(), &room, &mut member).await {
                        Some(back) => ws = back,
                        None => break,
                    }
                }
            }
        }
    }
}

/// Handles one frame in the run loop; false when the connection is gone.
async fn on_frame(
    ctx: &Ctx,
    ws: &mut Ws,
    member: &mut Member,
    msg: Option<Result<Message, WsError>>,
) -> bool {
    let msg = match msg {
        Some(Ok(m)) => m,
        Some(Err(_)) | None => {
            ctx.counters.borrow_mut().close("1006");
            return false;
        }
    };
    let (data, binary) = match &msg {
        Message::Text(t) => (t.as_bytes(), false),
        Message::Binary(b) => (&b[..], true),
        Message::Close(f) => {
            let code = f.as_ref().map_or(1005, |f| u16::from(f.code));
            ctx.counters.borrow_mut().close(code.to_string());
            return false;
        }
        _ => return true,
    };
    let now = stamp::now_us();
    let mut pong = false;
    let mut gone = false;
    {
        let mut c = ctx.counters.borrow_mut();
        let parsed = ctx.wire.parse(data, binary, |inc| match inc {
            Incoming::SioPing => pong = true,
            Incoming::SioGone => gone = true,
            other => member.event(&mut c, other, now),
        });
        if parsed.is_err() {
            c.error("bad frame");
        }
        if gone {
            c.close("socket.io disconnect");
        }
    }
    if pong && ws.send(Wire::sio_pong()).await.is_err() {
        return false;
    }
    !gone
}

/// Drops the connection and comes back with `recover`; `None` if it never came back.
async fn storm(
    ctx: &Ctx,
    ws: Ws,
    t: usize,
    token: Option<&str>,
    room: &str,
    member: &mut Member,
) -> Option<Ws> {
    // Dropping the stream closes the socket without a close frame, like a lost network.
    drop(ws);
    let dropped_at = Instant::now();
    ctx.counters.borrow_mut().storm.dropped += 1;
    let mut backoff = Duration::from_millis(50);
    while dropped_at.elapsed() < STORM_GIVE_UP {
        let attempt = async {
            let mut ws = ctx.open(t, token).await?;
            let recovered = join(ctx, &mut ws, room, member, true, true).await?;
            Ok::<_, String>((ws, recovered))
        };
        match tokio::time::timeout(Duration::from_secs(30), attempt).await {
            Ok(Ok((ws, recovered))) => {
                let took = dropped_at.elapsed().as_micros() as u64;
                let mut c = ctx.counters.borrow_mut();
                c.storm.back += 1;
                if recovered {
                    c.storm.recovered += 1;
                } else {
                    c.storm.not_recovered += 1;
                }
                c.storm.slowest_us = c.storm.slowest_us.max(took);
                c.rejoin_hist.saturating_record(took.max(1));
                return Some(ws);
            }
            Ok(Err(e)) => ctx.counters.borrow_mut().error(format!("storm: {e}")),
            Err(_) => ctx.counters.borrow_mut().error("storm: timeout"),
        }
        // Back off with jitter, as a real client would after a refusal.
        let wait = backoff.mul_f64(0.5 + fastrand::f64());
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    None
}

/// A publisher: an open-loop schedule of `rate` messages per second over its rooms.
async fn publisher(ctx: Rc<Ctx>, p: usize) {
    let plan = &ctx.plan;
    let rooms = plan.rooms_of_publisher(p);
    if rooms.is_empty() || plan.rate <= 0.0 {
        // Nothing to publish (idle): no connection.
        ctx.counters.borrow_mut().publishers_ready += 1;
        return;
    }
    let t = p % plan.targets.len();
    let token = ctx.token(&format!("pub{p}"), Role::Organizer, None);
    let ws = match ctx.open(t, token.as_deref()).await {
        Ok(ws) => ws,
        Err(e) => {
            ctx.counters.borrow_mut().error(format!("publisher: {e}"));
            ctx.counters.borrow_mut().publishers_ready += 1;
            return;
        }
    };
    let (mut sink, mut stream) = ws.split();
    let wire = ctx.wire;
    // Socket.IO: wait for the namespace connect before emitting.
    if wire.target == Target::Socketio {
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Text(t) = msg else { continue };
            let mut connected = false;
            let _ = wire.parse(t.as_bytes(), false, |inc| match inc {
                Incoming::SioOpen => connected = false,
                Incoming::SioConnected => connected = true,
                _ => {}
            });
            if t.as_str().starts_with('0') && sink.send(Wire::sio_connect()).await.is_err() {
                break;
            }
            if connected {
                break;
            }
        }
    }
    ctx.counters.borrow_mut().publishers_ready += 1;
    // Replies are read (so the server never queues for us) and errors counted; Socket.IO pings
    // are answered through the writer.
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let reader_ctx = ctx.clone();
    tokio::task::spawn_local(async move {
        while let Some(msg) = stream.next().await {
            let Ok(msg) = msg else { break };
            let (data, binary) = match &msg {
                Message::Text(t) => (t.as_bytes(), false),
                Message::Binary(b) => (&b[..], true),
                Message::Close(f) => {
                    let code = f.as_ref().map_or(1005, |f| u16::from(f.code));
                    reader_ctx
                        .counters
                        .borrow_mut()
                        .close(format!("publisher {code}"));
                    break;
                }
                _ => continue,
            };
            let mut c = reader_ctx.counters.borrow_mut();
            let _ = wire.parse(data, binary, |inc| match inc {
                Incoming::Error { code, .. } => c.error(format!("publish: {code}")),
                Incoming::SioPing => {
                    let _ = pong_tx.send(());
                }
                _ => {}
            });
        }
    });
    // Wait for the start, answering Socket.IO pings meanwhile: a ramp can outlast the server's
    // ping timeout.
    let mut phase = ctx.phase.subscribe();
    while *phase.borrow_and_update() == Phase::Ramp {
        tokio::select! {
            changed = phase.changed() => if changed.is_err() { return },
            Some(()) = pong_rx.recv() => { let _ = sink.send(Wire::sio_pong()).await; }
        }
    }
    let Some((start, start_us)) = ctx.start.get() else {
        return;
    };
    let schedule = Schedule::new(
        plan.rate,
        Duration::from_millis(plan.duration_ms),
        p,
        plan.total_publishers,
        plan.sync_publishers,
    );
    let total = schedule.total();
    let mut k: u64 = 0;
    while k < total {
        // Everything due by now goes out at once, each stamped with its own due time.
        let due = schedule.due_by(start.elapsed().as_micros() as u64);
        while k < due {
            let room = rooms[(k % rooms.len() as u64) as usize];
            let intended = start_us + schedule.due_at_us(k);
            let text = stamp::text(k, intended, plan.payload);
            if sink
                .feed(wire.send(&plan.room_name(room), text))
                .await
                .is_err()
            {
                ctx.counters.borrow_mut().error("publish: connection lost");
                return;
            }
            *ctx.counters
                .borrow_mut()
                .sent_per_room
                .entry(room)
                .or_default() += 1;
            k += 1;
        }
        if sink.flush().await.is_err() {
            ctx.counters.borrow_mut().error("publish: connection lost");
            return;
        }
        if k >= total {
            break;
        }
        let next = start + Duration::from_micros(schedule.due_at_us(k));
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            Some(()) = pong_rx.recv() => { let _ = sink.send(Wire::sio_pong()).await; }
        }
    }
    // Keep answering pings until the run ends.
    while pong_rx.recv().await.is_some() {
        let _ = sink.send(Wire::sio_pong()).await;
    }
}

fn emit(line: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn report(ctx: &Ctx) -> WorkerReport {
    let c = ctx.counters.borrow();
    let span = match (c.first_connect, c.last_connect) {
        (Some(a), Some(b)) => b.duration_since(a).as_micros() as u64,
        _ => 0,
    };
    let storm = (ctx.plan.scenario == Scenario::ReconnectStorm).then(|| StormReport {
        dropped: c.storm.dropped,
        back: c.storm.back,
        recovered: c.storm.recovered,
        not_recovered: c.storm.not_recovered,
        replayed: c.storm.replayed,
        slowest_us: c.storm.slowest_us,
        rejoin_hist: stats::encode(&c.rejoin_hist),
    });
    WorkerReport {
        worker: ctx.plan.worker,
        connected: c.connected,
        connect_failed: c.connect_failed,
        joined: c.joined,
        connect_hist: stats::encode(&c.connect_hist),
        connect_span_us: span,
        sent_per_room: c.sent_per_room.clone(),
        members_per_room: c.members_at_start.clone(),
        received: c.received,
        latency_hist: stats::encode(&c.latency_hist),
        gaps: c.gaps,
        reorders: c.reorders,
        rejoins: c.rejoins,
        errors: c.errors,
        error_kinds: c.error_kinds.clone(),
        closes: c.closes.clone(),
        storm,
        votes: ctx.plan.vote_window().map(|_| {
            let mut tallies: BTreeMap<usize, RoomTally> = BTreeMap::new();
            for (room, t) in c.tallies.iter().flatten() {
                tallies.entry(*room).or_default().merge(t);
            }
            VoteReport {
                sent: c.votes_sent,
                acked_per_room: c.votes_acked_per_room.clone(),
                error_kinds: c.vote_error_kinds.clone(),
                latency_hist: stats::encode(&c.vote_hist),
                last_ack_us: c.last_ack_us,
                tallies,
            }
        }),
        cpu_s: crate::procstat::sample(None).map_or(0.0, |s| s.cpu_s),
    }
}

/// Reads its plan from stdin, runs it to the end, then exits the process.
pub(crate) fn run() -> anyhow::Result<()> {
    // A worker never outlives its coordinator: Ctrl-C or a killed coordinator stops the load.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .context("PR_SET_PDEATHSIG")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let plan = lines
            .next_line()
            .await?
            .context("the coordinator sent no plan")?;
        work(serde_json::from_str(&plan).context("worker plan")?, lines).await
    })?;
    // Exiting closes every socket at once; dropping thousands of tasks one by one buys nothing.
    std::process::exit(0)
}

async fn work(
    plan: WorkerPlan,
    mut lines: tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>,
) -> anyhow::Result<()> {
    let signer = match plan.target {
        Target::Evd => Some(
            JwtSettings {
                secret: plan.secret.clone(),
                ..Default::default()
            }
            .signer()?,
        ),
        Target::Socketio => None,
    };
    let mut addrs = Vec::new();
    for t in &plan.targets {
        let url = Wire {
            target: plan.target,
            codec: plan.codec.codec(),
        }
        .url(t);
        let req = url
            .as_str()
            .into_client_request()
            .with_context(|| format!("target {t}"))?;
        let host = req
            .uri()
            .host()
            .context("target host")?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = req.uri().port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .next()
            .with_context(|| format!("resolve {t}"))?;
        addrs.push(addr);
    }
    let (phase, _) = watch::channel(Phase::Ramp);
    let counters = Counters::new(plan.clients, !plan.api_rooms.is_empty());
    let ctx = Rc::new(Ctx {
        wire: Wire {
            target: plan.target,
            codec: plan.codec.codec(),
        },
        plan,
        signer,
        addrs,
        counters: RefCell::new(counters),
        phase,
        start: Cell::new(None),
    });

    // Progress for the coordinator's bars.
    let progress_ctx = ctx.clone();
    tokio::task::spawn_local(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let c = progress_ctx.counters.borrow();
            emit(&serde_json::json!({
                "t": "progress", "connected": c.connected, "settled": c.settled,
                "received": c.received, "back": c.storm.back, "errors": c.errors,
                "votes_acked": c.votes_acked_per_room.values().sum::<u64>(),
            }));
        }
    });

    // Ramp at this worker's share of the rate.
    let plan = &ctx.plan;
    let ramp_start = tokio::time::Instant::now();
    for k in 0..plan.clients {
        if plan.ramp > 0.0 {
            tokio::time::sleep_until(ramp_start + Duration::from_secs_f64(k as f64 / plan.ramp))
                .await;
        }
        tokio::task::spawn_local(client(ctx.clone(), plan.first_client + k));
    }
    for &p in &plan.publishers {
        tokio::task::spawn_local(publisher(ctx.clone(), p));
    }
    let deadline =
        Instant::now() + Duration::from_millis(plan.connect_timeout_ms) + Duration::from_secs(5);
    loop {
        {
            let c = ctx.counters.borrow();
            if c.settled >= plan.clients as u64
                && c.publishers_ready >= plan.publishers.len() as u64
            {
                break;
            }
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    emit(&serde_json::json!({ "t": "ready" }));

    // Wait for the common start.
    let start_ms: u64 = loop {
        match lines.next_line().await? {
            Some(l) => {
                if let Some(ms) = l.strip_prefix("start ").and_then(|m| m.trim().parse().ok()) {
                    break ms;
                }
            }
            None => anyhow::bail!("coordinator went away"),
        }
    };
    let now_us = stamp::now_us();
    let start = Instant::now() + Duration::from_micros((start_ms * 1000).saturating_sub(now_us));
    tokio::time::sleep_until(start.into()).await;
    ctx.start.set(Some((start, start_ms * 1000)));
    {
        let mut c = ctx.counters.borrow_mut();
        c.members_at_start = c.members_now.clone();
    }
    ctx.phase.send_replace(Phase::Run);

    let duration = Duration::from_millis(plan.duration_ms);
    if plan.scenario == Scenario::ReconnectStorm {
        tokio::time::sleep_until((start + duration.mul_f64(0.3)).into()).await;
        ctx.phase.send_replace(Phase::Storm);
    }
    tokio::time::sleep_until((start + duration + Duration::from_millis(plan.drain_ms)).into())
        .await;
    ctx.phase.send_replace(Phase::Done);
    let r = report(&ctx);
    let mut line = serde_json::to_value(&r)?;
    line["t"] = "report".into();
    emit(&line);
    Ok(())
}
