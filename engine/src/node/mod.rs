//! The [`Node`]: one engine process's hub, broker, presence, authorizer and limits, and the room
//! orchestration every op shares (enter a room, leave it, open and close a connection).
//!
//! Following Centrifuge, only the first local member of a room subscribes at the broker and the
//! last one unsubscribes; a striped async lock per room orders those steps, so a second joiner
//! never reads history before the room's subscription is in place.

mod admission;
pub mod bans;
mod builder;
mod offers;
mod pace;
pub mod revocation;
mod snapshot;
pub mod staff;
mod tasks;

pub use admission::{ConnPermit, Refusal};
pub use builder::{BrokerFactory, NodeBuilder, NodeError, random_node_id};

use crate::auth::Authorizer;
use crate::broker::{Broker, BrokerError};
use crate::clock::unix_ms;
use crate::conn::direct::Direct;
use crate::conn::queue::{Outbound, QueueStats};
use crate::conn::{Conn, Wire, encode_for, socketio_payload};
use crate::hub::Hub;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::room_key::RoomKey;
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::stats::StatsBoard;
use evd_api::membership::MembershipCache;
use evd_protocol::auth::{Claims, Verifier};
use evd_protocol::bus::Body;
use evd_protocol::event::{Hello, PresenceMember};
use evd_protocol::socketio::{Parser, disconnect};
use evd_protocol::{CloseCode, Codec, Event, RoomKind, RoomName};
use governor::DefaultKeyedRateLimiter;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Stripes of the per-room subscribe lock; collisions only serialize two rooms' joins briefly.
const ROOM_LOCK_STRIPES: usize = 256;

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
    /// Where this node publishes its snapshot for the admin view, and reads every node's.
    pub board: Arc<dyn StatsBoard>,
    /// Store-backed live features (polls, Q&A, the archive, offers); `None` without a store.
    pub live: Option<Live>,
    /// Members' current roles, which cap their tokens' (shared with the authorizer); `None`
    /// without a store.
    pub membership: Option<MembershipCache>,
    /// Organizers' bans, checked at the upgrade; `None` without a store.
    pub bans: Option<bans::Bans>,
    /// Staff connections' tokens, for re-checking their rooms when a membership changes.
    pub staff: staff::StaffConns,
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
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A room operation failed in the backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RoomError {
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// A connection that could not open: why, and the connection itself, whose socket still
/// carries the close that tells the client.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct OpenFailed {
    /// What failed.
    pub error: RoomError,
    /// The connection, already out of every room.
    pub conn: Arc<Conn>,
}

/// How long a readiness check waits for the store to answer.
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Node {
    /// What `/readyz` answers and [`crate::metrics::READY`] shows: not draining, then
    /// [`Node::check_ready`] within [`READY_TIMEOUT`]. The error says why not.
    pub async fn readiness(&self) -> Result<(), String> {
        let ready = if self.shutdown.is_draining() {
            Err("draining".to_owned())
        } else {
            match tokio::time::timeout(READY_TIMEOUT, self.check_ready()).await {
                Ok(r) => r,
                Err(_) => Err(format!("store: no answer in {READY_TIMEOUT:?}")),
            }
        };
        ::metrics::gauge!(crate::metrics::READY).set(if ready.is_ok() { 1.0 } else { 0.0 });
        ready
    }

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

    /// Open WebSocket connections.
    pub fn connections(&self) -> usize {
        self.open_conns.load(Ordering::Relaxed)
    }

    fn room_lock(&self, room: &RoomKey) -> &tokio::sync::Mutex<()> {
        &self.room_locks[(room.shard_hash() as usize) % self.room_locks.len()]
    }

    /// Creates a connection (written through `direct` when given, else by a writer task):
    /// queues `HELLO` first, then joins the user's own room.
    pub async fn open_conn(
        &self,
        claims: &Claims,
        wire: Wire,
        codec: Codec,
        direct: Option<Direct>,
    ) -> Result<Arc<Conn>, OpenFailed> {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let conn = Conn::with_direct(
            id,
            claims.sub.as_str().into(),
            wire,
            codec,
            self.settings.limits.queue_max_bytes,
            direct,
        );
        self.metrics.accepted(wire.label());
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
        if let Err(error) = self.enter(&conn, claims, &key).await {
            return Err(OpenFailed { error, conn });
        }
        self.hub.activate(&key, &conn, None, 0);
        self.catch_up_offers(&conn, claims);
        Ok(conn)
    }

    /// Rejoins `room` for a connection that is not yet live, from `pos`: the messages after it
    /// are queued as `MESSAGE_RECEIVED` (no `ROOM_JOINED`: the client did not ask), then live
    /// delivery follows without a gap or a repeat. False, and out of the room, when the room no
    /// longer holds everything after `pos`.
    pub async fn rejoin(
        &self,
        conn: &Arc<Conn>,
        claims: &Claims,
        room: &RoomKey,
        pos: evd_protocol::op::StreamPosition,
    ) -> Result<bool, RoomError> {
        if self.authorizer.can_join(claims, room.room()).await.is_err() {
            return Ok(false);
        }
        self.enter(conn, claims, room).await?;
        let history = match self
            .broker
            .history(room, crate::broker::HistoryRequest::Since(pos))
            .await
        {
            Ok(h) if h.complete => h,
            other => {
                self.exit(conn, room).await;
                return other.map(|_| false).map_err(RoomError::from);
            }
        };
        for message in history.messages {
            self.hub
                .send_chat(conn, &Event::MessageReceived(message), &history.epoch);
        }
        self.hub.activate(room, conn, None, history.offset);
        Ok(true)
    }

    /// Starts closing `conn` with `code`; with `flush`, queued events go out first. A Socket.IO
    /// client told not to reconnect (a code from 4500 up) gets a DISCONNECT first, which its
    /// client obeys; a close frame alone would have it reconnect.
    pub fn close_with(&self, conn: &Conn, code: CloseCode, flush: bool) {
        if flush && conn.wire == Wire::SocketIo && !code.should_reconnect() {
            let parser = match conn.codec {
                Codec::Json => Parser::Json,
                Codec::MsgPack => Parser::MsgPack,
            };
            let item = Outbound {
                payload: socketio_payload(disconnect(parser)),
                published_at: None,
            };
            let _ = conn.queue.push(item, &self.stats);
        }
        let dropped = conn.close(code, flush, &self.stats);
        self.metrics.queue_drops.increment(dropped as u64);
    }

    /// Leaves every room of a closing connection.
    pub async fn close_conn(&self, conn: &Conn) {
        self.staff.forget(conn.id);
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
            payload: encode_for(conn, event),
            published_at: None,
        }
    }
}

/// `user:` rooms are private: one member by definition, so no presence is kept for them.
pub fn tracks_presence(room: &RoomKey) -> bool {
    room.room().kind() != RoomKind::User
}
