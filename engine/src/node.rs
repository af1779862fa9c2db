//! The [`Node`]: one engine process's hub, broker, presence, authorizer and limits, and the room
//! orchestration every op shares (enter a room, leave it, open and close a connection).
//!
//! Following Centrifuge, only the first local member of a room subscribes at the broker and the
//! last one unsubscribes; a striped async lock per room orders those steps, so a second joiner
//! never reads history before the room's subscription is in place.

use crate::access::TicketAuthorizer;
use crate::auth::{Authorizer, ClaimsAuthorizer};
use crate::broker::memory::MemoryBroker;
use crate::broker::{Broker, BrokerError, BrokerHandler};
use crate::clock::unix_ms;
use crate::conn::queue::{Outbound, QueueStats};
use crate::conn::{Conn, encode};
use crate::hub::Hub;
use crate::live::Live;
use crate::metrics::{self, Metrics};
use crate::presence::Presence;
use crate::presence::memory::MemoryPresence;
use crate::room_key::RoomKey;
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use evd_api::store::SqlStore;
use evd_protocol::auth::{Claims, JwtConfigError, Verifier};
use evd_protocol::bus::Body;
use evd_protocol::event::{Hello, PollResults, PresenceMember, PresenceUpdate, QuestionUpdated};
use evd_protocol::{Codec, Event, RoomKind, RoomName};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Stripes of the per-room subscribe lock; collisions only serialize two rooms' joins briefly.
const ROOM_LOCK_STRIPES: usize = 256;

/// How often gauges are refreshed and the metrics recorder and IP limiter are tidied.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Store lookups of a new connection's open offers running at once. A reconnect storm of
/// 20,000 clients then queues here instead of flooding the database.
const OFFER_CATCHUP_CONCURRENCY: usize = 16;

/// Builds a broker once the node's hub (its handler) exists.
pub type BrokerFactory =
    Box<dyn FnOnce(&str, Arc<dyn BrokerHandler>, &Shutdown) -> Arc<dyn Broker> + Send>;

/// An engine node. See the module docs.
pub struct Node {
    /// This node's id.
    pub id: Arc<str>,
    /// Its settings.
    pub settings: Arc<Settings>,
    /// Token verification.
    pub verifier: Verifier,
    /// Local rooms and fanout.
    pub hub: Arc<Hub>,
    /// Fanout between nodes and history.
    pub broker: Arc<dyn Broker>,
    /// Room membership by user.
    pub presence: Arc<dyn Presence>,
    /// Who may join which room.
    pub authorizer: Arc<dyn Authorizer>,
    /// Store-backed live features (polls, Q&A, the archive, offers); `None` without a store.
    pub live: Option<Live>,
    /// Metric handles.
    pub metrics: Arc<Metrics>,
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
    /// Drain and stop.
    pub shutdown: Shutdown,
    /// Outbound queue accounting.
    pub stats: Arc<QueueStats>,
    next_conn: AtomicU64,
    open_conns: Arc<AtomicUsize>,
    ip_limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    room_locks: Box<[tokio::sync::Mutex<()>]>,
    offer_catchup: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A node could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The token settings are unusable.
    #[error("jwt: {0}")]
    Jwt(#[from] JwtConfigError),
    /// Settings out of range.
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
}

/// Plugs in the parts that have more than one implementation.
pub struct NodeBuilder {
    settings: Settings,
    store: Option<Arc<SqlStore>>,
    broker: Option<BrokerFactory>,
    presence: Option<Arc<dyn Presence>>,
    authorizer: Option<Arc<dyn Authorizer>>,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl NodeBuilder {
    /// Backs the live features with the store, relays its outbox, and checks tickets for room
    /// access.
    pub fn store(mut self, store: Arc<SqlStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Uses another broker (the default is in-memory).
    pub fn broker(mut self, factory: BrokerFactory) -> Self {
        self.broker = Some(factory);
        self
    }

    /// Uses another presence backend (the default is in-memory).
    pub fn presence(mut self, presence: Arc<dyn Presence>) -> Self {
        self.presence = Some(presence);
        self
    }

    /// Uses another authorizer (the default reads the claims only).
    pub fn authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.authorizer = Some(authorizer);
        self
    }

    /// Builds the node and starts its background tasks on `shutdown`.
    pub fn build(self, shutdown: Shutdown) -> Result<Arc<Node>, NodeError> {
        let settings = self.settings;
        settings.validate()?;
        let verifier = settings.api.jwt.verifier()?;
        let prometheus = metrics::install();
        let metrics = Metrics::new();
        let id: Arc<str> = settings
            .node_id
            .clone()
            .unwrap_or_else(random_node_id)
            .into();
        let stats = Arc::new(QueueStats::default());
        let shards = std::thread::available_parallelism().map_or(4, |n| n.get() * 4);
        let hub = Arc::new(Hub::new(shards, Arc::clone(&stats), metrics.clone()));
        let handler: Arc<dyn BrokerHandler> = hub.clone();
        let broker = match self.broker {
            Some(factory) => factory(&id, handler, &shutdown),
            None => {
                // One node, nothing to lose contact with.
                ::metrics::gauge!(metrics::BROKER_CONNECTED).set(1.0);
                let b = MemoryBroker::new(&id, settings.history.clone(), handler);
                b.spawn_sweeper(&shutdown);
                b
            }
        };
        let ip_limiter = NonZeroU32::new(settings.limits.conn_rate_per_ip).map(|rate| {
            let burst = NonZeroU32::new(settings.limits.conn_burst_per_ip).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let (live, store_authorizer) = match self.store {
            Some(sql) => {
                let postgres = sql.postgres_pool().cloned();
                let store: Arc<dyn evd_api::store::Store> = sql;
                crate::relay::spawn(Arc::clone(&store), postgres, Arc::clone(&broker), &shutdown);
                let grant_ttl = Duration::from_millis(settings.ticket_cache_ms);
                let authorizer: Arc<dyn Authorizer> =
                    Arc::new(TicketAuthorizer::new(Arc::clone(&store), grant_ttl));
                let live = Live::spawn(store, Arc::clone(&broker), &shutdown);
                (Some(live), Some(authorizer))
            }
            None => (None, None),
        };
        let authorizer = self
            .authorizer
            .or(store_authorizer)
            .unwrap_or_else(|| Arc::new(ClaimsAuthorizer));
        let node = Arc::new(Node {
            id,
            settings: Arc::new(settings),
            verifier,
            hub,
            broker,
            presence: self
                .presence
                .unwrap_or_else(|| Arc::new(MemoryPresence::default())),
            authorizer,
            live,
            metrics: Arc::new(metrics),
            prometheus,
            shutdown: shutdown.clone(),
            stats,
            next_conn: AtomicU64::new(1),
            open_conns: Arc::new(AtomicUsize::new(0)),
            ip_limiter,
            room_locks: (0..ROOM_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            offer_catchup: Arc::new(tokio::sync::Semaphore::new(OFFER_CATCHUP_CONCURRENCY)),
        });
        shutdown.spawn(ticks(Arc::clone(&node)));
        if let Some(every) = node.presence.heartbeat_every() {
            shutdown.spawn(presence_heartbeat(Arc::clone(&node), every));
        }
        shutdown.spawn(upkeep(Arc::clone(&node)));
        Ok(node)
    }
}

/// A random node id, `n-` and six letters.
pub fn random_node_id() -> String {
    let mut s = String::from("n-");
    for _ in 0..6 {
        s.push(fastrand::lowercase());
    }
    s
}

/// Why an upgrade was refused before it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node is draining.
    Draining,
    /// Too many new connections from this IP.
    RateLimited {
        /// When to retry.
        retry_after: Duration,
    },
    /// The node holds `limits.max_connections`.
    Full,
}

/// Holds one of the node's connection slots; released on drop.
#[derive(Debug)]
pub struct ConnPermit {
    open: Arc<AtomicUsize>,
    connections: ::metrics::Gauge,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.connections.decrement(1.0);
    }
}

/// A room operation failed in the backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RoomError {
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl Node {
    /// Whether this node can serve: its broker connected and its store (if any) answering.
    /// The error says which is not.
    pub async fn check_ready(&self) -> Result<(), String> {
        self.broker.ready().await.map_err(|e| e.to_string())?;
        if let Some(live) = &self.live {
            live.store
                .check()
                .await
                .map_err(|e| format!("store unavailable: {e}"))?;
        }
        Ok(())
    }

    /// A builder with the in-memory broker and presence and the claims authorizer.
    pub fn builder(settings: Settings) -> NodeBuilder {
        NodeBuilder {
            settings,
            store: None,
            broker: None,
            presence: None,
            authorizer: None,
        }
    }

    /// The single-node default.
    pub fn new(settings: Settings, shutdown: Shutdown) -> Result<Arc<Node>, NodeError> {
        Node::builder(settings).build(shutdown)
    }

    /// Open WebSocket connections.
    pub fn connections(&self) -> usize {
        self.open_conns.load(Ordering::Relaxed)
    }

    /// Checks drain state, the per-IP rate and capacity, in that order, and takes a slot.
    pub fn admit(&self, ip: IpAddr) -> Result<ConnPermit, Refusal> {
        if self.shutdown.is_draining() {
            return Err(Refusal::Draining);
        }
        if let Some(limiter) = &self.ip_limiter
            && let Err(not_until) = limiter.check_key(&ip)
        {
            let retry_after =
                not_until.wait_time_from(governor::clock::Clock::now(limiter.clock()));
            return Err(Refusal::RateLimited { retry_after });
        }
        let max = self.settings.limits.max_connections;
        if self.open_conns.fetch_add(1, Ordering::Relaxed) >= max {
            self.open_conns.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::Full);
        }
        self.metrics.connections.increment(1.0);
        Ok(ConnPermit {
            open: Arc::clone(&self.open_conns),
            connections: self.metrics.connections.clone(),
        })
    }

    fn room_lock(&self, room: &RoomKey) -> &tokio::sync::Mutex<()> {
        &self.room_locks[(room.shard_hash() as usize) % self.room_locks.len()]
    }

    /// Creates a connection: queues `HELLO` first, then joins the user's own room.
    pub async fn open_conn(&self, claims: &Claims, codec: Codec) -> Result<Arc<Conn>, RoomError> {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(
            id,
            claims.sub.as_str().into(),
            codec,
            self.settings.limits.queue_max_bytes,
        ));
        self.metrics.accepted.increment(1);
        let hello = Event::Hello(Hello {
            conn: id.to_string(),
            node: self.id.to_string(),
            user: claims.sub.clone(),
            heartbeat_ms: self.settings.heartbeat_ms,
            server_time: unix_ms(),
        });
        self.hub.send(&conn, &hello);
        let own = RoomName::user(&claims.sub).expect("sub was validated with the token");
        let key = RoomKey::new(&claims.org, own);
        self.enter(&conn, claims, &key).await?;
        self.hub.activate(&key, &conn, None, 0);
        self.catch_up_offers(&conn, claims);
        Ok(conn)
    }

    /// Sends a new connection the user's open waitlist offers, so an offer made while the user
    /// was offline (or between two connections) is not missed. Runs beside the connection.
    fn catch_up_offers(&self, conn: &Arc<Conn>, claims: &Claims) {
        let Some(live) = &self.live else { return };
        let (store, hub, limit) = (
            Arc::clone(&live.store),
            Arc::clone(&self.hub),
            Arc::clone(&self.offer_catchup),
        );
        let (conn, org, user) = (Arc::clone(conn), claims.org.clone(), claims.sub.clone());
        self.shutdown.spawn(async move {
            let Ok(_slot) = limit.acquire_owned().await else {
                return;
            };
            let offers = match store.list_offers(&org, &user).await {
                Ok(offers) => offers,
                Err(e) => return tracing::warn!(error = %e, "open offers lookup failed"),
            };
            let now = unix_ms();
            for o in offers.into_iter().filter(|o| o.expires_at > now) {
                let event = Event::WaitlistOffer(evd_protocol::event::WaitlistOffer {
                    offer: o.id,
                    session: o.session_id,
                    expires_at: o.expires_at,
                    outbox_id: None,
                });
                hub.send(&conn, &event);
            }
        });
    }

    /// Leaves every room of a closing connection.
    pub async fn close_conn(&self, conn: &Conn) {
        for room in conn.rooms() {
            self.exit(conn, &room).await;
        }
    }

    /// Adds `conn` to `room` (joining state), subscribing at the broker for the first local
    /// member and announcing the user's presence if this is their first connection there.
    /// The caller answers and then calls [`Hub::activate`].
    pub async fn enter(
        &self,
        conn: &Arc<Conn>,
        claims: &Claims,
        room: &RoomKey,
    ) -> Result<crate::hub::Joined, RoomError> {
        let joined = {
            let _order = self.room_lock(room).lock().await;
            let joined = self.hub.join(room, conn);
            if joined.first_local
                && let Err(e) = self.broker.subscribe(room).await
            {
                self.metrics.broker_error("subscribe");
                self.hub.leave(room, conn);
                return Err(e.into());
            }
            joined
        };
        if !joined.rejoin && tracks_presence(room) {
            match self.presence.add(room, &claims.sub, conn.id).await {
                Ok(true) => {
                    self.announce(
                        room,
                        vec![PresenceMember {
                            user: claims.sub.clone(),
                        }],
                        vec![],
                    )
                    .await
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(?room, error = %e, "presence add failed"),
            }
        }
        Ok(joined)
    }

    /// Removes `conn` from `room`; false if it was not a member.
    pub async fn exit(&self, conn: &Conn, room: &RoomKey) -> bool {
        {
            let _order = self.room_lock(room).lock().await;
            let Some(left) = self.hub.leave(room, conn) else {
                return false;
            };
            if left.last_local
                && let Err(e) = self.broker.unsubscribe(room).await
            {
                self.metrics.broker_error("unsubscribe");
                tracing::warn!(?room, error = %e, "unsubscribe failed");
            }
        }
        if tracks_presence(room) {
            match self.presence.remove(room, &conn.user, conn.id).await {
                Ok(true) => {
                    self.announce(
                        room,
                        vec![],
                        vec![PresenceMember {
                            user: conn.user.to_string(),
                        }],
                    )
                    .await
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(?room, error = %e, "presence remove failed"),
            }
        }
        true
    }

    async fn announce(
        &self,
        room: &RoomKey,
        joins: Vec<PresenceMember>,
        leaves: Vec<PresenceMember>,
    ) {
        if let Err(e) = self
            .broker
            .broadcast(room, Body::Presence { joins, leaves })
            .await
        {
            self.metrics.broker_error("broadcast");
            tracing::warn!(?room, error = %e, "presence broadcast failed");
        }
    }

    /// Queues a direct event to one connection.
    pub fn send(&self, conn: &Conn, event: &Event) {
        self.hub.send(conn, event);
    }

    /// The queue item for a direct event.
    pub fn reply_item(conn: &Conn, event: &Event) -> Outbound {
        Outbound {
            payload: encode(conn.codec, event),
            published_at: None,
        }
    }
}

/// `user:` rooms are private: one member by definition, so no presence is kept for them.
pub fn tracks_presence(room: &RoomKey) -> bool {
    room.room().kind() != RoomKind::User
}

/// Sends each room's coalesced changes once per tick: `PRESENCE_UPDATE`, `POLL_RESULTS`,
/// `QUESTION_UPDATED`.
async fn ticks(node: Arc<Node>) {
    let stopped = node.shutdown.stopped();
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(Duration::from_millis(node.settings.tick_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        for work in node.hub.take_tick() {
            let room_name = work.room.room().to_string();
            if work.presence_changed() {
                match node.presence.count(&work.room).await {
                    Ok(count) => {
                        let full = count <= node.settings.presence.full_room_limit;
                        let update = PresenceUpdate {
                            room: room_name.clone(),
                            count,
                            joins: full.then_some(work.joins),
                            leaves: full.then_some(work.leaves),
                        };
                        node.hub
                            .deliver(&work.room, &Event::PresenceUpdate(update), None);
                    }
                    Err(e) => {
                        tracing::warn!(room = ?work.room, error = %e, "presence count failed")
                    }
                }
            }
            for (poll, counts) in work.polls {
                let total = counts.values().sum();
                let results = PollResults {
                    room: room_name.clone(),
                    poll,
                    counts,
                    total,
                };
                node.hub
                    .deliver(&work.room, &Event::PollResults(results), None);
            }
            for (question, votes) in work.questions {
                let update = QuestionUpdated {
                    outbox_id: None,
                    room: room_name.clone(),
                    question,
                    votes,
                    hidden: None,
                };
                node.hub
                    .deliver(&work.room, &Event::QuestionUpdated(update), None);
            }
        }
    }
}

/// Keeps this node's presence alive and announces what its heartbeat found: users that left
/// with a dead node, and this node's users put back after it had been swept.
async fn presence_heartbeat(node: Arc<Node>, every: Duration) {
    let stopped = node.shutdown.stopped();
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        for change in node.presence.heartbeat().await {
            let members = |users: Vec<String>| {
                users
                    .into_iter()
                    .map(|user| PresenceMember { user })
                    .collect()
            };
            node.announce(&change.room, members(change.joins), members(change.leaves))
                .await;
        }
    }
}

/// Refreshes gauges and tidies the metrics recorder and the per-IP limiter.
async fn upkeep(node: Arc<Node>) {
    let stopped = node.shutdown.stopped();
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        n += 1;
        node.metrics
            .queue_bytes
            .set(node.stats.queued_bytes() as f64);
        node.prometheus.run_upkeep();
        if n.is_multiple_of(60)
            && let Some(l) = &node.ip_limiter
        {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}
