//! [`Presence`]: who is in a room, per user.
//!
//! Several connections of one user are one member: `add` reports a join only for the user's
//! first connection in the room, `remove` a leave only for the last. The node turns those into
//! presence diffs on the broker, so every node can coalesce them per tick.
//!
//! Implementations: [`memory::MemoryPresence`] (one node) and [`redis::RedisPresence`] (shared
//! by every node: per-room hashes, kept alive by each node's heartbeat).

pub mod memory;
pub mod redis;

use crate::conn::ConnId;
use crate::room_key::RoomKey;
use async_trait::async_trait;
use evd_protocol::event::PresenceSnapshot;
use std::time::Duration;

/// A presence operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PresenceError {
    /// The backend cannot be reached.
    #[error("presence unavailable: {0}")]
    Unavailable(String),
}

/// Room membership by user. See the module docs.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Adds a connection of `user`; true if the user was not present before.
    async fn add(&self, room: &RoomKey, user: &str, conn: ConnId) -> Result<bool, PresenceError>;
    /// Removes a connection of `user`; true if it was the user's last one.
    async fn remove(&self, room: &RoomKey, user: &str, conn: ConnId)
    -> Result<bool, PresenceError>;
    /// The member count and up to `limit` members.
    async fn snapshot(
        &self,
        room: &RoomKey,
        limit: usize,
    ) -> Result<PresenceSnapshot, PresenceError>;
    /// The member count.
    async fn count(&self, room: &RoomKey) -> Result<u64, PresenceError>;
    /// How often the node must call [`Presence::heartbeat`]; `None` if it needs none.
    fn heartbeat_every(&self) -> Option<Duration> {
        None
    }
    /// Keeps this node's members alive and removes those of nodes that stopped heartbeating.
    /// Returns the changes for the node to announce: users that left with a dead node, and
    /// users this node put back after it had itself been swept (it paused past the ttl).
    async fn heartbeat(&self) -> Vec<HeartbeatChange> {
        Vec::new()
    }
}

/// Presence changes found by a heartbeat, for one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatChange {
    /// The room.
    pub room: RoomKey,
    /// Users present again.
    pub joins: Vec<String>,
    /// Users gone.
    pub leaves: Vec<String>,
}
