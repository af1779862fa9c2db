//! The Redis broker: fanout between nodes over sharded pub/sub, history in a stream per room.
//!
//! Works against one Redis (`redis://`) or a Redis Cluster (`redis-cluster://h1:p1,h2:p2`).
//!
//! **Keys.** A room's meta hash (`evd:{org room}:m`: epoch, offset, writer's replication id),
//! its stream (`…:s`, capped by `history.size` and `history.ttl_secs`), idempotency keys
//! (`…:m:i:<user>:<client_id>`) and its channel (`evd:{org room}`) share one hash tag, so one Lua
//! script appends, bumps the offset and `SPUBLISH`es atomically (see [`super::lua`]).
//!
//! **Subscriptions.** One pub/sub client holds a connection per primary. The first local member
//! of a room subscribes (`SSUBSCRIBE`); after the last one leaves the room stays subscribed for
//! `broker.unsubscribe_delay_ms`, which absorbs churn.
//!
//! **Continuity.** For every subscribed room the broker remembers the last position it handed
//! to the hub. A chat envelope that skips offsets starts a recovery: later envelopes wait while
//! the gap is read from the stream, then both go out in order. A gap the stream no longer holds,
//! or a new epoch, tells the hub the room [lost](BrokerHandler::lost) continuity: its members
//! are asked to reconnect and recover, and get `recovered:false` rather than a silent gap.
//!
//! **Resilience.** Every room is resubscribed and recovered when
//! - a pub/sub connection reconnects;
//! - the liveness probe fails: each node `SPUBLISH`es to a probe channel on every primary it
//!   listens to and expects it back within `broker.probe_timeout_ms`, which catches a
//!   subscription that silently died while the connection looks healthy;
//! - the slot map moves a subscribed room to another primary (slot migration or failover):
//!   Redis drops the shard subscriptions of a moved slot, and the client library may not tell.

use super::lua;
use super::{Broker, BrokerError, BrokerHandler, History, HistoryRequest, NewMessage, Published};
use crate::metrics::BrokerMetrics;
use crate::room_key::RoomKey;
use crate::settings::{BrokerSettings, HistorySettings};
use crate::shutdown::Shutdown;
use async_trait::async_trait;
use bytes::Bytes;
use evd_protocol::bus::{Body, Envelope};
use evd_protocol::event::ChatMessage;
use fred::prelude::*;
use fred::types::Message;
use fred::types::cluster::ClusterRouting;
use fred::types::scripts::Script;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// Idempotency keys live at least this long, whatever the history window (PROTOCOL.md).
const MIN_IDEMPOTENCY_TTL: Duration = Duration::from_secs(300);

/// Envelopes held for one room while its gap is read from history. A room busier than this
/// during a recovery loses continuity instead (its members reconnect and recover).
const RECOVERY_BUFFER_MAX: usize = 10_000;

/// Pub/sub messages buffered between the connection and the delivery task. A burst above this
/// while the task is behind counts as a lost subscription: every room recovers from history.
/// fred preallocates this many slots for each of its eight event channels, so it is memory too
/// (about 5 MiB here); the command client keeps fred's small default.
const MESSAGE_BUFFER: usize = 4_096;

/// Stripes of the per-room subscription lock: orders `SSUBSCRIBE`/`SUNSUBSCRIBE` of one room.
const SUB_LOCK_STRIPES: usize = 64;

/// Rooms resubscribed at once after a reconnect or a failed probe.
const RESUBSCRIBE_CONCURRENCY: usize = 32;

/// A failed recovery read is retried after this long.
const RECOVERY_RETRY: Duration = Duration::from_millis(250);

/// What a recovery read led to.
enum Recovery {
    Done,
    /// Envelopes that waited still have a gap: read again.
    Again,
    /// The read failed: wait and read again.
    Retry,
}

/// A connected Redis: one client for commands, one for pub/sub.
#[derive(Clone)]
pub struct RedisConn {
    /// Commands: scripts, history, presence, probes.
    pub client: Client,
    /// Sharded subscriptions (a connection per primary in a cluster).
    pub sub: Client,
    /// True for a cluster URL.
    pub clustered: bool,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("clustered", &self.clustered)
            .finish_non_exhaustive()
    }
}

/// fred's cluster URL is `redis-cluster://h1:p1?node=h2:p2&node=h3:p3`; we also accept the
/// comma list `redis-cluster://h1:p1,h2:p2,h3:p3`.
fn fred_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((a, h)) => (format!("{a}@"), h),
        None => (String::new(), rest),
    };
    let (hosts, query) = match hosts.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (hosts, None),
    };
    let mut parts = hosts.split(',');
    let first = parts.next().unwrap_or_default();
    let mut params: Vec<String> = parts
        .map(|h| match h.contains(':') {
            true => format!("node={h}"),
            false => format!("node={h}:6379"),
        })
        .collect();
    if let Some(q) = query {
        params.push(q.to_owned());
    }
    if params.is_empty() {
        format!("{scheme}://{auth}{first}")
    } else {
        format!("{scheme}://{auth}{first}?{}", params.join("&"))
    }
}

impl RedisConn {
    /// Connects both clients to `settings.url`.
    pub async fn connect(settings: &BrokerSettings) -> Result<RedisConn, BrokerError> {
        let url = fred_url(&settings.url);
        let config = Config::from_url(&url).map_err(unavailable)?;
        let clustered = config.server.is_clustered();
        let timeout = Duration::from_millis(settings.command_timeout_ms);
        let build = |pubsub: bool| {
            let mut config = config.clone();
            if pubsub {
                // The pub/sub client. RESP3 lets its connections carry ordinary commands too.
                config.version = fred::types::RespVersion::RESP3;
            }
            Builder::from_config(config)
                .with_performance_config(|p| {
                    p.default_command_timeout = timeout;
                    if pubsub {
                        p.broadcast_channel_capacity = MESSAGE_BUFFER;
                    }
                })
                .with_connection_config(|c| {
                    c.connection_timeout = timeout;
                    c.internal_command_timeout = timeout;
                    c.max_command_attempts = 3;
                    c.max_redirections = 10;
                })
                // Never give up: a node outlives any Redis outage and resumes after it.
                .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
                .build()
                .map_err(unavailable)
        };
        let client = build(false)?;
        let sub = build(true)?;
        client.init().await.map_err(unavailable)?;
        sub.init().await.map_err(unavailable)?;
        Ok(RedisConn {
            client,
            sub,
            clustered,
        })
    }

    /// Whether both clients are connected now (fred's state; no round trip).
    pub fn is_connected(&self) -> bool {
        self.client.is_connected() && self.sub.is_connected()
    }

    /// Closes both clients.
    pub async fn quit(&self) {
        let _ = self.sub.quit().await;
        let _ = self.client.quit().await;
    }
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

/// The Redis broker. See the module docs.
pub struct RedisBroker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

struct Inner {
    node: String,
    conn: RedisConn,
    handler: Arc<dyn BrokerHandler>,
    history: HistorySettings,
    settings: BrokerSettings,
    publish: Script,
    read: Script,
    metrics: BrokerMetrics,
    /// Subscribed rooms by channel name. A plain mutex: it is never held across an await, and
    /// the hub's handler only enqueues.
    rooms: Mutex<HashMap<String, RoomSub>>,
    /// Orders one room's subscribe, unsubscribe and resubscribe at Redis.
    sub_locks: Box<[tokio::sync::Mutex<()>]>,
    /// Probe channels, one per primary, and what is in flight on each.
    probes: Mutex<HashMap<String, Probe>>,
}

/// One subscribed room.
struct RoomSub {
    key: RoomKey,
    /// The node has local members; false while the delayed unsubscribe is pending.
    wanted: bool,
    /// When the delayed unsubscribe is due.
    unsubscribe_at: Option<Instant>,
    /// The last position handed to the hub.
    last: Option<(String, u64)>,
    /// `Some` while a gap is read from history: chat envelopes wait here, in arrival order.
    recovering: Option<Vec<(String, u64, Envelope)>>,
    /// The primary that owned the room's slot when it was (re)subscribed.
    owner: Option<Server>,
}

struct Probe {
    server: Option<Server>,
    subscribed: bool,
    sent: Option<(u64, Instant)>,
    seq: u64,
}

impl RedisBroker {
    /// A broker for `node` over `conn`, delivering to `handler`. Starts its delivery, probe and
    /// reconnect tasks on `shutdown`.
    pub fn start(
        node: &str,
        conn: RedisConn,
        history: HistorySettings,
        settings: BrokerSettings,
        handler: Arc<dyn BrokerHandler>,
        shutdown: &Shutdown,
    ) -> Arc<RedisBroker> {
        let inner = Arc::new(Inner {
            node: node.to_owned(),
            conn,
            handler,
            history,
            settings,
            publish: Script::from_lua(lua::publish()),
            read: Script::from_lua(lua::history()),
            metrics: BrokerMetrics::new(),
            rooms: Mutex::new(HashMap::new()),
            sub_locks: (0..SUB_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            probes: Mutex::new(HashMap::new()),
        });
        shutdown.spawn(deliver_loop(Arc::clone(&inner), shutdown.stopped()));
        shutdown.spawn(reconnect_loop(Arc::clone(&inner), shutdown.stopped()));
        shutdown.spawn(probe_loop(Arc::clone(&inner), shutdown.stopped()));
        Arc::new(RedisBroker { inner })
    }

    /// Rooms this node holds a subscription for (including pending unsubscribes).
    pub fn subscriptions(&self) -> usize {
        self.inner.rooms.lock().len()
    }
}

/// The primary owning `channel`'s slot in `state` (`None` for a single Redis).
fn owner_in(state: Option<&ClusterRouting>, channel: &str) -> Option<Server> {
    state?
        .get_server(ClusterRouting::hash_key(channel.as_bytes()))
        .cloned()
}

fn meta_key(room: &RoomKey) -> String {
    format!("{}:m", room.channel())
}

fn stream_key(room: &RoomKey) -> String {
    format!("{}:s", room.channel())
}

fn new_epoch() -> String {
    let mut s = String::with_capacity(8);
    for _ in 0..8 {
        s.push(fastrand::alphanumeric());
    }
    s
}

/// Decodes a history body: the envelope with the offset and epoch the script assigned.
fn chat_envelope(epoch: &str, offset: u64, body: &[u8]) -> Option<Envelope> {
    let mut env = Envelope::decode(body).ok()?;
    match &mut env.body {
        Body::Chat { epoch: e, message } => {
            *e = epoch.to_owned();
            message.offset = offset;
        }
        _ => return None,
    }
    Some(env)
}

/// An integer reply, a numeric string or numeric bytes.
fn value_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| std::str::from_utf8(v.as_bytes()?).ok()?.parse().ok())
}

fn chat_message(env: Envelope) -> Option<ChatMessage> {
    match env.body {
        Body::Chat { message, .. } => Some(message),
        _ => None,
    }
}

/// A pub/sub payload: `C<epoch>\n<offset>\n<envelope>` for chat (the script fills in the
/// position), `E<envelope>` for everything else.
enum Payload<'a> {
    Chat(&'a str, u64, &'a [u8]),
    Other(&'a [u8]),
}

fn parse_payload(bytes: &[u8]) -> Option<Payload<'_>> {
    match bytes.split_first()? {
        (b'C', rest) => {
            let mut it = rest.splitn(3, |b| *b == b'\n');
            let epoch = std::str::from_utf8(it.next()?).ok()?;
            let offset = std::str::from_utf8(it.next()?).ok()?.parse().ok()?;
            Some(Payload::Chat(epoch, offset, it.next()?))
        }
        (b'E', rest) => Some(Payload::Other(rest)),
        _ => None,
    }
}

impl Inner {
    fn sub_lock(&self, room: &RoomKey) -> &tokio::sync::Mutex<()> {
        &self.sub_locks[(room.shard_hash() as usize) % self.sub_locks.len()]
    }

    fn owner_of(&self, channel: &str) -> Option<Server> {
        owner_in(self.conn.client.cached_cluster_state().as_ref(), channel)
    }

    async fn read_history(
        &self,
        room: &RoomKey,
        req: &HistoryRequest,
    ) -> Result<History, BrokerError> {
        let (mode, a, b) = match req {
            HistoryRequest::Latest(n) => ("L", n.to_string(), String::new()),
            HistoryRequest::Since(pos) => ("S", pos.offset.to_string(), pos.epoch.clone()),
        };
        let args: Vec<Value> = vec![
            new_epoch().into(),
            mode.into(),
            a.into(),
            b.into(),
            (self.history.ttl_secs * 1000).to_string().into(),
            self.history.size.to_string().into(),
        ];
        let out: Vec<Value> = self
            .read
            .evalsha_with_reload(
                &self.conn.client,
                vec![meta_key(room), stream_key(room)],
                args,
            )
            .await
            .map_err(unavailable)?;
        let bad = || BrokerError::Unavailable("unexpected history reply".into());
        let epoch = out.first().and_then(|v| v.as_string()).ok_or_else(bad)?;
        let offset = out.get(1).and_then(value_u64).ok_or_else(bad)?;
        let complete = out.get(2).and_then(value_u64).ok_or_else(bad)? == 1;
        let mut messages = Vec::with_capacity(out.len().saturating_sub(3) / 2);
        for pair in out.get(3..).unwrap_or_default().chunks(2) {
            let [o, body] = pair else { return Err(bad()) };
            let o = value_u64(o).ok_or_else(bad)?;
            let env = body
                .as_bytes()
                .and_then(|b| chat_envelope(&epoch, o, b))
                .ok_or_else(bad)?;
            messages.extend(chat_message(env));
        }
        Ok(History {
            epoch,
            offset,
            messages,
            complete,
        })
    }

    /// Hands one pub/sub message to the hub, keeping each room's chat in offset order.
    fn on_message(self: &Arc<Self>, msg: Message) {
        let channel = &*msg.channel;
        if channel.starts_with(PROBE_PREFIX) {
            return self.on_probe(channel, &msg.value);
        }
        let Some(bytes) = msg.value.as_bytes() else {
            return;
        };
        let Some(payload) = parse_payload(bytes) else {
            tracing::warn!(channel, "unreadable broker payload");
            return;
        };
        let mut rooms = self.rooms.lock();
        let Some(room) = rooms.get_mut(channel) else {
            return;
        };
        match payload {
            Payload::Other(body) => match Envelope::decode(body) {
                Ok(env) => self.handler.handle(&room.key, &env),
                Err(e) => tracing::warn!(channel, error = %e, "undecodable envelope"),
            },
            Payload::Chat(epoch, offset, body) => {
                let Some(env) = chat_envelope(epoch, offset, body) else {
                    return tracing::warn!(channel, "undecodable chat envelope");
                };
                if let Body::Chat { message, .. } = &env.body {
                    let lag = crate::clock::unix_ms().saturating_sub(message.ts);
                    self.metrics.lag.record(lag as f64 / 1000.0);
                }
                if self.accept_chat(room, epoch.to_owned(), offset, env) {
                    self.spawn_recovery(channel.to_owned());
                }
            }
        }
    }

    /// Delivers a chat envelope in order; true if a recovery must start.
    fn accept_chat(&self, room: &mut RoomSub, epoch: String, offset: u64, env: Envelope) -> bool {
        if let Some(held) = &mut room.recovering {
            if held.len() >= RECOVERY_BUFFER_MAX {
                tracing::warn!(room = ?room.key, "recovery buffer full; room lost continuity");
                room.recovering = None;
                room.last = Some((epoch, offset));
                self.lost(&room.key);
            } else {
                held.push((epoch, offset, env));
            }
            return false;
        }
        match &mut room.last {
            Some((e, last)) if *e == epoch => {
                if offset <= *last {
                    // Already delivered (an overlap after a recovery).
                    false
                } else if offset == *last + 1 {
                    *last = offset;
                    self.handler.handle(&room.key, &env);
                    false
                } else {
                    room.recovering = Some(vec![(epoch, offset, env)]);
                    true
                }
            }
            Some(_) => {
                // A new epoch: the history this node's members saw is gone.
                room.last = Some((epoch, offset));
                self.lost(&room.key);
                false
            }
            None => {
                room.last = Some((epoch, offset));
                self.handler.handle(&room.key, &env);
                false
            }
        }
    }

    fn lost(&self, room: &RoomKey) {
        self.metrics.lost.increment(1);
        self.handler.lost(room);
    }

    fn spawn_recovery(self: &Arc<Self>, channel: String) {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.recover(channel).await });
    }

    /// Reads a room's gap from history and releases what waited meanwhile, in order.
    async fn recover(self: Arc<Self>, channel: String) {
        loop {
            let (key, last) = {
                let rooms = self.rooms.lock();
                let Some(room) = rooms.get(&channel) else {
                    return;
                };
                if room.recovering.is_none() {
                    return;
                }
                (room.key.clone(), room.last.clone())
            };
            let Some((epoch, offset)) = last else {
                // Nothing delivered yet: there is no gap to fill, only order to keep.
                if let Some(room) = self.rooms.lock().get_mut(&channel) {
                    self.release(room, Vec::new());
                }
                return;
            };
            let pos = evd_protocol::op::StreamPosition { epoch, offset };
            let read = self.read_history(&key, &HistoryRequest::Since(pos)).await;
            match self.finish_recovery(&channel, &key, offset, read) {
                Recovery::Done => return,
                Recovery::Again => continue,
                Recovery::Retry => tokio::time::sleep(RECOVERY_RETRY).await,
            }
        }
    }

    /// Applies a recovery read: fills the gap, or declares the room lost.
    fn finish_recovery(
        &self,
        channel: &str,
        key: &RoomKey,
        from: u64,
        read: Result<History, BrokerError>,
    ) -> Recovery {
        let mut rooms = self.rooms.lock();
        let Some(room) = rooms.get_mut(channel) else {
            return Recovery::Done;
        };
        let h = match read {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(room = ?key, error = %e, "recovery read failed; retrying");
                return Recovery::Retry;
            }
        };
        if h.complete {
            self.metrics.recoveries.increment(1);
            let envs = h
                .messages
                .into_iter()
                .map(|message| {
                    let offset = message.offset;
                    let env = Envelope {
                        node: self.node.clone(),
                        body: Body::Chat {
                            epoch: h.epoch.clone(),
                            message,
                        },
                    };
                    (h.epoch.clone(), offset, env)
                })
                .collect();
            return self.again_if(self.release(room, envs));
        }
        if from == 0 && h.offset == 0 {
            // A new epoch, but nothing was ever published in either: nothing to miss (a `user:`
            // room whose primary failed over, say).
            room.last = Some((h.epoch, 0));
            return self.again_if(self.release(room, Vec::new()));
        }
        tracing::info!(room = ?key, "gap no longer in history; room lost continuity");
        room.recovering = None;
        room.last = Some((h.epoch, h.offset));
        self.lost(key);
        Recovery::Done
    }

    fn again_if(&self, again: bool) -> Recovery {
        if again {
            Recovery::Again
        } else {
            Recovery::Done
        }
    }

    /// Ends a recovery: delivers `from_history` then what waited, skipping what was already
    /// delivered. True if the waiting envelopes still have a gap (recover again).
    fn release(&self, room: &mut RoomSub, from_history: Vec<(String, u64, Envelope)>) -> bool {
        let held = room.recovering.take().unwrap_or_default();
        for (epoch, offset, env) in from_history.into_iter().chain(held) {
            // Once a gap reopens, accept_chat keeps the rest waiting for the next read.
            self.accept_chat(room, epoch, offset, env);
        }
        room.recovering.is_some()
    }

    /// (Re)subscribes `channels` and recovers each one's gap.
    async fn resubscribe(self: &Arc<Self>, channels: Vec<String>, reason: &'static str) {
        if channels.is_empty() {
            return;
        }
        tracing::info!(rooms = channels.len(), reason, "resubscribing");
        use futures_util::StreamExt;
        futures_util::stream::iter(channels)
            .for_each_concurrent(RESUBSCRIBE_CONCURRENCY, |channel| async move {
                let key = match self.rooms.lock().get(&channel) {
                    Some(r) => r.key.clone(),
                    None => return,
                };
                let _order = self.sub_lock(&key).lock().await;
                if !self.rooms.lock().contains_key(&channel) {
                    return;
                }
                if let Err(e) = self.conn.sub.ssubscribe(channel.clone()).await {
                    self.metrics.errors("resubscribe");
                    tracing::warn!(room = ?key, error = %e, "resubscribe failed");
                    return;
                }
                self.metrics.resubscribe(reason);
                let owner = self.owner_of(&channel);
                let start = {
                    let mut rooms = self.rooms.lock();
                    let Some(room) = rooms.get_mut(&channel) else {
                        return;
                    };
                    room.owner = owner;
                    if room.recovering.is_none() {
                        room.recovering = Some(Vec::new());
                        true
                    } else {
                        false
                    }
                };
                if start {
                    Arc::clone(self).recover(channel).await;
                }
            })
            .await;
    }

    fn all_channels(&self) -> Vec<String> {
        self.rooms.lock().keys().cloned().collect()
    }

    fn on_probe(&self, channel: &str, value: &Value) {
        let seq = value_u64(value);
        let mut probes = self.probes.lock();
        if let Some(p) = probes.get_mut(channel)
            && let Some((sent_seq, at)) = p.sent
            && Some(sent_seq) == seq
        {
            self.metrics
                .probe_latency
                .record(at.elapsed().as_secs_f64());
            p.sent = None;
        }
    }

    /// The probe channels this node needs: one on every primary (one for a single Redis).
    fn probe_targets(&self) -> Vec<(String, Option<Server>)> {
        let base = format!("{PROBE_PREFIX}{{{}", self.node);
        let Some(state) = self.conn.sub.cached_cluster_state() else {
            return vec![(format!("{base}}}"), None)];
        };
        let mut out = Vec::new();
        for server in state.unique_primary_nodes() {
            for i in 0..100_000u32 {
                let channel = format!("{base}:{i}}}");
                let slot = ClusterRouting::hash_key(channel.as_bytes());
                if state.get_server(slot) == Some(&server) {
                    out.push((channel, Some(server)));
                    break;
                }
            }
        }
        out
    }

    /// One probe round: checks answers, sends new probes, follows the slot map and reaps
    /// delayed unsubscribes.
    async fn probe_round(self: &Arc<Self>) {
        let timeout = Duration::from_millis(self.settings.probe_timeout_ms);
        // Follow the slot map: rooms whose slot moved must subscribe at the new owner.
        if self.conn.clustered {
            if let Err(e) = self.conn.client.sync_cluster().await {
                tracing::debug!(error = %e, "cluster sync failed");
            }
            let state = self.conn.client.cached_cluster_state();
            let moved: Vec<String> = {
                let rooms = self.rooms.lock();
                rooms
                    .iter()
                    .filter(|(ch, r)| owner_in(state.as_ref(), ch) != r.owner)
                    .map(|(ch, _)| ch.clone())
                    .collect()
            };
            if !moved.is_empty() {
                let _ = self.conn.sub.sync_cluster().await;
                self.resubscribe(moved, "slot_moved").await;
            }
        }
        // Probes: a missing answer means the subscriptions on that primary may be dead.
        let targets = self.probe_targets();
        let mut failed = Vec::new();
        let mut to_subscribe = Vec::new();
        let mut to_send = Vec::new();
        {
            let mut probes = self.probes.lock();
            probes.retain(|ch, _| targets.iter().any(|(t, _)| t == ch));
            for (channel, server) in targets {
                let p = probes.entry(channel.clone()).or_insert(Probe {
                    server: server.clone(),
                    subscribed: false,
                    sent: None,
                    seq: 0,
                });
                if let Some((_, at)) = p.sent
                    && at.elapsed() > timeout
                {
                    failed.push(p.server.clone());
                    p.subscribed = false;
                    p.sent = None;
                }
                if !p.subscribed {
                    to_subscribe.push(channel.clone());
                } else if p.sent.is_none() {
                    p.seq += 1;
                    p.sent = Some((p.seq, Instant::now()));
                    to_send.push((channel, p.seq));
                }
            }
        }
        for channel in to_subscribe {
            if self.conn.sub.ssubscribe(channel.clone()).await.is_ok()
                && let Some(p) = self.probes.lock().get_mut(&channel)
            {
                p.subscribed = true;
            }
        }
        for (channel, seq) in to_send {
            let sent: Result<i64, _> = self.conn.client.spublish(channel.clone(), seq).await;
            if sent.is_err()
                && let Some(p) = self.probes.lock().get_mut(&channel)
            {
                // The primary is unreachable right now; the reconnect path resubscribes.
                p.sent = None;
            }
        }
        // Up: both clients connected and every primary answered its probe in time.
        let up = self.conn.is_connected() && failed.is_empty();
        self.metrics.connected.set(if up { 1.0 } else { 0.0 });
        if !failed.is_empty() {
            self.metrics.probe_failures.increment(failed.len() as u64);
            tracing::warn!(?failed, "broker probe timed out; resubscribing");
            let channels: Vec<String> = {
                let rooms = self.rooms.lock();
                rooms
                    .iter()
                    .filter(|(_, r)| failed.iter().any(|s| s.is_none() || *s == r.owner))
                    .map(|(ch, _)| ch.clone())
                    .collect()
            };
            self.resubscribe(channels, "probe").await;
        }
        self.reap_unsubscribes().await;
    }

    async fn reap_unsubscribes(&self) {
        let now = Instant::now();
        let due: Vec<(String, RoomKey)> = {
            let rooms = self.rooms.lock();
            rooms
                .iter()
                .filter(|(_, r)| !r.wanted && r.unsubscribe_at.is_some_and(|at| at <= now))
                .map(|(ch, r)| (ch.clone(), r.key.clone()))
                .collect()
        };
        for (channel, key) in due {
            let _order = self.sub_lock(&key).lock().await;
            let gone = {
                let mut rooms = self.rooms.lock();
                match rooms.get(&channel) {
                    Some(r) if !r.wanted && r.unsubscribe_at.is_some_and(|at| at <= now) => {
                        rooms.remove(&channel);
                        true
                    }
                    _ => false,
                }
            };
            if gone && let Err(e) = self.conn.sub.sunsubscribe(channel).await {
                tracing::debug!(room = ?key, error = %e, "sunsubscribe failed");
            }
        }
        self.metrics
            .subscriptions
            .set(self.rooms.lock().len() as f64);
    }
}

/// Prefix of probe channels; the hash tag holds the node id and a number picking the primary.
const PROBE_PREFIX: &str = "evd:probe:";

async fn deliver_loop(inner: Arc<Inner>, stopped: impl std::future::Future<Output = ()>) {
    let mut rx = inner.conn.sub.message_rx();
    tokio::pin!(stopped);
    loop {
        let msg = tokio::select! {
            _ = &mut stopped => return,
            msg = rx.recv() => msg,
        };
        match msg {
            Ok(msg) => inner.on_message(msg),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    skipped = n,
                    "broker delivery fell behind; recovering every room"
                );
                let me = Arc::clone(&inner);
                tokio::spawn(async move {
                    let all = me.all_channels();
                    me.resubscribe(all, "lagged").await;
                });
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn reconnect_loop(inner: Arc<Inner>, stopped: impl std::future::Future<Output = ()>) {
    let mut rx = inner.conn.sub.reconnect_rx();
    tokio::pin!(stopped);
    loop {
        let server = tokio::select! {
            _ = &mut stopped => return,
            s = rx.recv() => s,
        };
        match server {
            Ok(server) => {
                tracing::info!(%server, "pub/sub connection re-established");
                inner.probes.lock().values_mut().for_each(|p| {
                    if p.server.as_ref().is_none_or(|s| *s == server) {
                        p.subscribed = false;
                        p.sent = None;
                    }
                });
                let state = inner.conn.client.cached_cluster_state();
                let channels: Vec<String> = {
                    let rooms = inner.rooms.lock();
                    rooms
                        .iter()
                        .filter(|(ch, r)| {
                            r.owner.as_ref().is_none_or(|o| *o == server)
                                || owner_in(state.as_ref(), ch).as_ref() == Some(&server)
                        })
                        .map(|(ch, _)| ch.clone())
                        .collect()
                };
                inner.resubscribe(channels, "reconnect").await;
            }
            Err(RecvError::Lagged(_)) => {
                let all = inner.all_channels();
                inner.resubscribe(all, "reconnect").await;
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn probe_loop(inner: Arc<Inner>, stopped: impl std::future::Future<Output = ()>) {
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(Duration::from_millis(inner.settings.probe_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = tick.tick() => inner.probe_round().await,
        }
    }
    inner.conn.quit().await;
}

#[async_trait]
impl Broker for RedisBroker {
    async fn ready(&self) -> Result<(), BrokerError> {
        if self.inner.conn.is_connected() {
            Ok(())
        } else {
            Err(BrokerError::Unavailable("not connected to Redis".into()))
        }
    }

    async fn publish(&self, room: &RoomKey, msg: NewMessage) -> Result<Published, BrokerError> {
        let inner = &self.inner;
        let idem = msg
            .client_id
            .as_ref()
            .map(|c| format!("{}:{}{}", msg.user.len(), msg.user, c))
            .unwrap_or_default();
        let envelope = Envelope {
            node: inner.node.clone(),
            body: Body::Chat {
                epoch: String::new(),
                message: ChatMessage {
                    room: room.room().to_string(),
                    offset: 0,
                    id: msg.id,
                    user: msg.user,
                    text: msg.text,
                    ts: msg.ts,
                },
            },
        };
        let body = envelope.encode().map_err(unavailable)?;
        let ttl = Duration::from_secs(inner.history.ttl_secs);
        let args: Vec<Value> = vec![
            new_epoch().into(),
            idem.into(),
            Value::Bytes(body),
            inner.history.size.to_string().into(),
            ttl.as_millis().to_string().into(),
            ttl.max(MIN_IDEMPOTENCY_TTL).as_millis().to_string().into(),
            (inner.history.meta_ttl_secs * 1000).to_string().into(),
            room.channel().into(),
        ];
        let out: Result<Vec<Value>, _> = inner
            .publish
            .evalsha_with_reload(
                &inner.conn.client,
                vec![meta_key(room), stream_key(room)],
                args,
            )
            .await;
        let out = out.map_err(|e| {
            inner.metrics.publish_errors.increment(1);
            unavailable(e)
        })?;
        match out.as_slice() {
            [epoch, offset, dup] => Ok(Published {
                epoch: epoch.as_string().unwrap_or_default(),
                offset: value_u64(offset).unwrap_or_default(),
                duplicate: value_u64(dup) == Some(1),
            }),
            _ => Err(BrokerError::Unavailable("unexpected publish reply".into())),
        }
    }

    async fn broadcast(&self, room: &RoomKey, body: Body) -> Result<(), BrokerError> {
        let inner = &self.inner;
        let envelope = Envelope {
            node: inner.node.clone(),
            body,
        };
        let encoded = envelope.encode().map_err(unavailable)?;
        let mut payload = Vec::with_capacity(encoded.len() + 1);
        payload.push(b'E');
        payload.extend_from_slice(&encoded);
        let sent: Result<i64, _> = inner
            .conn
            .client
            .spublish(room.channel(), Bytes::from(payload))
            .await;
        sent.map(|_| ()).map_err(|e| {
            inner.metrics.publish_errors.increment(1);
            unavailable(e)
        })
    }

    async fn history(&self, room: &RoomKey, req: HistoryRequest) -> Result<History, BrokerError> {
        self.inner.read_history(room, &req).await
    }

    async fn subscribe(&self, room: &RoomKey) -> Result<(), BrokerError> {
        let inner = &self.inner;
        let channel = room.channel();
        let _order = inner.sub_lock(room).lock().await;
        if let Some(r) = inner.rooms.lock().get_mut(&channel) {
            // Still subscribed: the delayed unsubscribe had not run yet.
            r.wanted = true;
            r.unsubscribe_at = None;
            return Ok(());
        }
        inner.rooms.lock().insert(
            channel.clone(),
            RoomSub {
                key: room.clone(),
                wanted: true,
                unsubscribe_at: None,
                last: None,
                recovering: None,
                owner: inner.owner_of(&channel),
            },
        );
        if let Err(e) = inner.conn.sub.ssubscribe(channel.clone()).await {
            inner.rooms.lock().remove(&channel);
            return Err(unavailable(e));
        }
        // The position once subscribed: later messages arrive here. Earlier ones are the
        // joiner's history (read after this returns), so they are not delivered live.
        let pos = match inner.read_history(room, &HistoryRequest::Latest(0)).await {
            Ok(pos) => pos,
            Err(e) => {
                inner.rooms.lock().remove(&channel);
                let _ = inner.conn.sub.sunsubscribe(channel).await;
                return Err(e);
            }
        };
        if let Some(r) = inner.rooms.lock().get_mut(&channel) {
            match &r.last {
                Some((epoch, offset)) if *epoch == pos.epoch && *offset >= pos.offset => {}
                _ => r.last = Some((pos.epoch, pos.offset)),
            }
        }
        inner
            .metrics
            .subscriptions
            .set(inner.rooms.lock().len() as f64);
        Ok(())
    }

    async fn unsubscribe(&self, room: &RoomKey) -> Result<(), BrokerError> {
        let inner = &self.inner;
        let delay = Duration::from_millis(inner.settings.unsubscribe_delay_ms);
        if let Some(r) = inner.rooms.lock().get_mut(&room.channel()) {
            r.wanted = false;
            r.unsubscribe_at = Some(Instant::now() + delay);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_accept_a_comma_list() {
        assert_eq!(
            fred_url("redis-cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"),
            "redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001&node=127.0.0.1:7002"
        );
        assert_eq!(fred_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            fred_url("redis-cluster://u:p@h1:1,h2:2"),
            "redis-cluster://u:p@h1:1?node=h2:2"
        );
        assert_eq!(
            fred_url("redis-cluster://h1,h2,h3"),
            "redis-cluster://h1?node=h2:6379&node=h3:6379",
            "ports default to 6379"
        );
        let config = Config::from_url(&fred_url("redis-cluster://h1,h2:7001")).unwrap();
        assert!(config.server.is_clustered());
    }

    #[test]
    fn payloads_parse() {
        let Some(Payload::Chat(e, o, b)) = parse_payload(b"Cabc\n12\n\x81\x01") else {
            panic!("chat payload");
        };
        assert_eq!((e, o, b), ("abc", 12, &b"\x81\x01"[..]));
        assert!(matches!(
            parse_payload(b"Exyz"),
            Some(Payload::Other(b"xyz"))
        ));
        assert!(parse_payload(b"").is_none());
        assert!(parse_payload(b"Cnope").is_none());
    }
}
