//! The Redis broker: fanout between nodes over sharded pub/sub, history in a stream per room.
//! This file holds the [`RedisBroker`] type, its shared state and the [`Broker`] impl.
//!
//! Works against one Redis (`redis://`) or a Redis Cluster (`redis-cluster://h1:p1,h2:p2`);
//! `conn` connects.
//!
//! **Keys.** A room's meta hash (`evd:{org room}:m`: epoch, offset, writer's replication id),
//! its stream (`…:s`, capped by `history.size` and `history.ttl_secs`), idempotency keys
//! (`…:m:i:<user>:<client_id>`) and its channel (`evd:{org room}`) share one hash tag, so one Lua
//! script appends, bumps the offset and `SPUBLISH`es atomically (see [`super::lua`], `keys`,
//! `history`).
//!
//! **Subscriptions** (`subscriptions`). One pub/sub client holds a connection per primary. The
//! first local member of a room subscribes (`SSUBSCRIBE`); after the last one leaves the room
//! stays subscribed for `broker.unsubscribe_delay_ms`, which absorbs churn.
//!
//! **Failover** (`repair`). A promoted replica may lack the dead primary's last writes; the
//! scripts notice (the room's meta names the primary's previous replication id) and the node
//! refills the missing tail from the chat archive, keeping the room's epoch.
//!
//! **Continuity** (`recovery`). For every subscribed room the broker remembers the last
//! position it handed to the hub. A chat envelope that skips offsets starts a recovery: later
//! envelopes wait while the gap is read from the stream, then both go out in order. A gap the
//! stream no longer holds, or a new epoch, tells the hub the room [lost](BrokerHandler::lost)
//! continuity: its members are asked to reconnect and recover, and get `recovered:false` rather
//! than a silent gap.
//!
//! **Resilience.** Every room is resubscribed and recovered when
//! - a pub/sub connection reconnects (`delivery`);
//! - the liveness probe fails (`probe`): each node `SPUBLISH`es to a probe channel on every
//!   primary it listens to and expects it back within `broker.probe_timeout_ms`, which catches a
//!   subscription that silently died while the connection looks healthy;
//! - the slot map moves a subscribed room to another primary (slot migration or failover):
//!   Redis drops the shard subscriptions of a moved slot, and the client library may not tell.

mod conn;
mod delivery;
mod history;
mod keys;
mod probe;
mod recovery;
mod repair;
mod subscriptions;

pub use conn::RedisConn;

use super::lua;
use super::{
    Broker, BrokerError, BrokerHandler, ChatArchive, History, HistoryRequest, NewMessage, Published,
};
use crate::metrics::BrokerMetrics;
use crate::room_key::RoomKey;
use crate::settings::{BrokerSettings, HistorySettings};
use crate::shutdown::Shutdown;
use async_trait::async_trait;
use evd_protocol::bus::{Body, Envelope};
use fred::prelude::*;
use fred::types::scripts::Script;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;

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

/// What the broker's tasks share; each submodule adds the methods of its job.
struct Inner {
    node: String,
    conn: RedisConn,
    handler: Arc<dyn BrokerHandler>,
    history: HistorySettings,
    settings: BrokerSettings,
    publish: Script,
    read: Script,
    repair: Script,
    /// The chat archive a failed-over room's history is refilled from (`repair`).
    archive: std::sync::OnceLock<Arc<dyn ChatArchive>>,
    metrics: BrokerMetrics,
    /// Subscribed rooms by channel name. A plain mutex: it is never held across an await, and
    /// the hub's handler only enqueues.
    rooms: Mutex<HashMap<String, RoomSub>>,
    /// Orders one room's subscribe, unsubscribe and resubscribe at Redis.
    sub_locks: Box<[tokio::sync::Mutex<()>]>,
    /// Probe channels, one per primary, and what is in flight on each.
    probes: Mutex<HashMap<String, probe::Probe>>,
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
    /// The channel's cluster slot ([`keys::slot_of`]).
    slot: u16,
    /// The primary the subscriber routed the room's last (re)subscribe to, by its own slot map.
    owner: Option<Server>,
    /// After following a moved slot: when the room is subscribed once more, in case the move
    /// was still in flight and the first resubscribe reached the old owner.
    recheck_at: Option<Instant>,
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
            repair: Script::from_lua(lua::repair()),
            archive: std::sync::OnceLock::new(),
            metrics: BrokerMetrics::new(),
            rooms: Mutex::new(HashMap::new()),
            sub_locks: subscriptions::sub_locks(),
            probes: Mutex::new(HashMap::new()),
        });
        let deliver = delivery::deliver_loop(Arc::clone(&inner), shutdown.stopped());
        shutdown.spawn(deliver);
        let reconnect = delivery::reconnect_loop(Arc::clone(&inner), shutdown.stopped());
        shutdown.spawn(reconnect);
        shutdown.spawn(probe::probe_loop(Arc::clone(&inner), shutdown.stopped()));
        Arc::new(RedisBroker { inner })
    }

    /// Rooms this node holds a subscription for (including pending unsubscribes).
    pub fn subscriptions(&self) -> usize {
        self.inner.rooms.lock().len()
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn ready(&self) -> Result<(), BrokerError> {
        if !self.inner.conn.is_connected() {
            Err(BrokerError::Unavailable("not connected to Redis".into()))
        } else if !self.inner.is_answering() {
            // A stalled connection still looks connected to the client library.
            Err(BrokerError::Unavailable(
                "Redis does not answer: a liveness probe failed".into(),
            ))
        } else {
            Ok(())
        }
    }

    async fn publish(&self, room: &RoomKey, msg: NewMessage) -> Result<Published, BrokerError> {
        self.inner.append(room, msg).await
    }

    async fn broadcast(&self, room: &RoomKey, body: Body) -> Result<(), BrokerError> {
        let inner = &self.inner;
        let envelope = Envelope {
            node: inner.node.clone(),
            body,
        };
        let encoded = envelope.encode().map_err(conn::unavailable)?;
        let sent: Result<i64, _> = inner
            .conn
            .client
            .spublish(room.channel(), keys::other_payload(&encoded))
            .await;
        sent.map(|_| ()).map_err(|e| inner.publish_failed(e))
    }

    async fn history(&self, room: &RoomKey, req: HistoryRequest) -> Result<History, BrokerError> {
        self.inner.read_history(room, &req).await
    }

    async fn subscribe(&self, room: &RoomKey) -> Result<(), BrokerError> {
        self.inner.subscribe(room).await
    }

    async fn unsubscribe(&self, room: &RoomKey) -> Result<(), BrokerError> {
        self.inner.unsubscribe(room);
        Ok(())
    }

    fn set_archive(&self, archive: Arc<dyn ChatArchive>) {
        let _ = self.inner.archive.set(archive);
    }
}
