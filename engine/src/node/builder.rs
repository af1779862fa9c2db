//! Building a [`Node`]: the parts with more than one implementation (broker, presence,
//! authorizer, store) plugged in, defaults for the rest, and the node's background tasks started.

use super::bans::Bans;
use super::revocation::{self, ControlTap};
use super::staff::StaffConns;
use super::{Node, ROOM_LOCK_STRIPES, snapshot, tasks};
use crate::access::TicketAuthorizer;
use crate::auth::{Authorizer, ClaimsAuthorizer};
use crate::broker::memory::MemoryBroker;
use crate::broker::{Broker, BrokerHandler};
use crate::conn::queue::QueueStats;
use crate::hub::Hub;
use crate::live::Live;
use crate::metrics::{self, Metrics};
use crate::presence::Presence;
use crate::presence::memory::MemoryPresence;
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::stats::StatsBoard;
use crate::stats::memory::MemoryBoard;
use evd_api::membership::MembershipCache;
use evd_api::store::SqlStore;
use evd_protocol::auth::JwtConfigError;
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

/// Hub shards per core: enough that joins and broadcasts in different rooms rarely meet on one
/// shard's lock, few enough that a tick's walk over every shard stays short.
const HUB_SHARDS_PER_CORE: usize = 4;

/// Builds a broker once the node's hub (its handler) exists.
pub type BrokerFactory =
    Box<dyn FnOnce(&str, Arc<dyn BrokerHandler>, &Shutdown) -> Arc<dyn Broker> + Send>;

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
    board: Option<Arc<dyn StatsBoard>>,
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

    /// Uses another stats board for the admin view (the default is in-memory).
    pub fn board(mut self, board: Arc<dyn StatsBoard>) -> Self {
        self.board = Some(board);
        self
    }

    /// Builds the node and starts its background tasks on `shutdown`.
    pub fn build(self, shutdown: Shutdown) -> Result<Arc<Node>, NodeError> {
        let settings = self.settings;
        settings.validate()?;
        let verifier = settings.api.jwt.verifier()?;
        let prometheus = metrics::install();
        let metrics = Metrics::new();
        ::metrics::gauge!(metrics::CONNECTIONS_MAX).set(settings.limits.max_connections as f64);
        let id: Arc<str> = settings
            .node_id
            .clone()
            .unwrap_or_else(random_node_id)
            .into();
        let stats = Arc::new(QueueStats::default());
        let shards = std::thread::available_parallelism()
            .map_or(HUB_SHARDS_PER_CORE, |n| n.get() * HUB_SHARDS_PER_CORE);
        let hub = Arc::new(Hub::new(shards, Arc::clone(&stats), metrics.clone()));
        let (tap, access_changes) = ControlTap::new(Arc::clone(&hub));
        let handler: Arc<dyn BrokerHandler> = Arc::new(tap);
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
        let (live, store_authorizer, membership, bans) = match self.store {
            Some(sql) => {
                let postgres = sql.postgres_pool().cloned();
                let store: Arc<dyn evd_api::store::Store> = sql;
                crate::relay::spawn(Arc::clone(&store), postgres, Arc::clone(&broker), &shutdown);
                let grant_ttl = Duration::from_millis(settings.ticket_cache_ms);
                let access_ttl = Duration::from_secs(settings.api.membership_cache_secs);
                let entries = settings.api.membership_cache_entries;
                let membership = MembershipCache::new(Arc::clone(&store), access_ttl, entries);
                let bans = Bans::new(store.clone(), access_ttl, entries);
                let authorizer: Arc<dyn Authorizer> = Arc::new(TicketAuthorizer::new(
                    Arc::clone(&store),
                    membership.clone(),
                    grant_ttl,
                ));
                let vote_wait = Duration::from_millis(settings.vote_wait_ms);
                let live = Live::spawn(store, Arc::clone(&broker), &shutdown, vote_wait);
                (Some(live), Some(authorizer), Some(membership), Some(bans))
            }
            None => (None, None, None, None),
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
            board: self
                .board
                .unwrap_or_else(|| Arc::new(MemoryBoard::default())),
            live,
            membership,
            bans,
            staff: StaffConns::default(),
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
        });
        shutdown.spawn(tasks::ticks(Arc::clone(&node)));
        shutdown.spawn(revocation::run(Arc::clone(&node), access_changes));
        if let Some(every) = node.presence.heartbeat_every() {
            shutdown.spawn(tasks::presence_heartbeat(Arc::clone(&node), every));
        }
        shutdown.spawn(tasks::upkeep(Arc::clone(&node)));
        shutdown.spawn(tasks::readiness(Arc::clone(&node)));
        shutdown.spawn(snapshot::publish(Arc::clone(&node)));
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

impl Node {
    /// A builder with the in-memory broker and presence and the claims authorizer.
    pub fn builder(settings: Settings) -> NodeBuilder {
        NodeBuilder {
            settings,
            store: None,
            broker: None,
            presence: None,
            authorizer: None,
            board: None,
        }
    }

    /// The single-node default.
    pub fn new(settings: Settings, shutdown: Shutdown) -> Result<Arc<Node>, NodeError> {
        Node::builder(settings).build(shutdown)
    }
}
