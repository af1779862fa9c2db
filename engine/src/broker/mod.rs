//! The [`Broker`]: room fanout between nodes, and each room's recent history.
//!
//! Shaped after Centrifuge's split. `publish` puts a chat message in the room's history and
//! returns its position; `broadcast` sends an ephemeral envelope (presence, poll results) with
//! no history; `history` reads the window; `subscribe`/`unsubscribe` say which rooms this node
//! has members in. Envelopes come back through the node's [`BrokerHandler`] in publish order
//! per room.
//!
//! Implementations: [`memory::MemoryBroker`] (single node, the default) and
//! [`redis::RedisBroker`] (Redis or Redis Cluster, sharded pub/sub, for many nodes).

pub(crate) mod lua;
pub mod memory;
pub mod redis;

use crate::room_key::RoomKey;
use async_trait::async_trait;
use evd_protocol::bus::{Body, Envelope};
use evd_protocol::event::ChatMessage;
use evd_protocol::op::StreamPosition;
use std::time::Duration;

/// Idempotency keys live at least this long, whatever the history window (PROTOCOL.md).
const MIN_IDEMPOTENCY_TTL: Duration = Duration::from_secs(300);

/// A fresh epoch for a room whose history starts over.
fn new_epoch() -> String {
    let mut s = String::with_capacity(8);
    for _ in 0..8 {
        s.push(fastrand::alphanumeric());
    }
    s
}

/// Receives every envelope for rooms this node subscribed to, in order per room.
///
/// Called from the broker's delivery path: it must not block or await. The hub implements it.
pub trait BrokerHandler: Send + Sync + 'static {
    /// One envelope for `room`.
    fn handle(&self, room: &RoomKey, envelope: &Envelope);

    /// The broker could not keep `room`'s chat continuous (its history was lost, or a gap is no
    /// longer in the window): local members must reconnect and recover, so they get
    /// `recovered:false` instead of a silent gap. Must not block.
    fn lost(&self, room: &RoomKey) {
        let _ = room;
    }
}

/// A chat message before the broker gives it an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Server-generated id.
    pub id: String,
    /// Author.
    pub user: String,
    /// Text.
    pub text: String,
    /// Accepted at, unix ms.
    pub ts: i64,
    /// The client's idempotency key, unique per room and user.
    pub client_id: Option<String>,
}

/// Where a publish landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The room's epoch.
    pub epoch: String,
    /// The message's offset (the original one for a duplicate).
    pub offset: u64,
    /// True when `client_id` was seen before: nothing was stored or broadcast.
    pub duplicate: bool,
    /// For a duplicate, the original message's id and time, when the broker still knows them:
    /// the resend archives the original (the archive skips an id it holds), so a message whose
    /// first archive write failed is archived by its resend.
    pub original: Option<Original>,
}

/// The id and accept time of the message a duplicate `client_id` named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// The original's server-generated id.
    pub id: String,
    /// When the original was accepted, unix ms.
    pub ts: i64,
}

/// What to read from a room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryRequest {
    /// The latest `n` messages (0 for just the position).
    Latest(usize),
    /// Everything after this position, if the window still holds all of it.
    Since(StreamPosition),
}

/// A history read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The room's current epoch.
    pub epoch: String,
    /// The room's latest offset.
    pub offset: u64,
    /// Messages, oldest first.
    pub messages: Vec<ChatMessage>,
    /// For [`HistoryRequest::Since`]: the epoch matched and `messages` is every message after
    /// the position. Always true for [`HistoryRequest::Latest`].
    pub complete: bool,
}

/// A broker operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The backend cannot be reached or refused the operation.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// The durable record of a room's chat (the store's archive), which a broker refills its history
/// from when its own copy lost the last writes (a Redis replica promoted before it had them).
#[async_trait]
pub trait ChatArchive: Send + Sync + 'static {
    /// `room`'s archived messages of `epoch` after `after`, in offset order, at most `limit`.
    async fn since(
        &self,
        room: &RoomKey,
        epoch: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, BrokerError>;
}

/// Room fanout and history. See the module docs.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Appends a chat message to the room's history and delivers it to every subscribed node.
    async fn publish(&self, room: &RoomKey, msg: NewMessage) -> Result<Published, BrokerError>;
    /// Delivers an ephemeral envelope body (no history, no offset) to every subscribed node.
    async fn broadcast(&self, room: &RoomKey, body: Body) -> Result<(), BrokerError>;
    /// Reads the room's history window.
    async fn history(&self, room: &RoomKey, req: HistoryRequest) -> Result<History, BrokerError>;
    /// This node has its first member in `room`.
    async fn subscribe(&self, room: &RoomKey) -> Result<(), BrokerError>;
    /// This node's last member left `room`.
    async fn unsubscribe(&self, room: &RoomKey) -> Result<(), BrokerError>;
    /// Whether the backend is reachable now, for `/readyz`. Costs no round trip.
    async fn ready(&self) -> Result<(), BrokerError> {
        Ok(())
    }
    /// Plugs in the chat archive the broker may refill its history from. A broker whose history
    /// cannot lose writes behind its back (the in-memory one) ignores it.
    fn set_archive(&self, archive: std::sync::Arc<dyn ChatArchive>) {
        let _ = archive;
    }
}
