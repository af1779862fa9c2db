//! Node snapshots for the admin view: what one node reports about itself ([`NodeSnapshot`]),
//! and the [`StatsBoard`] every node publishes its snapshot on and the admin endpoint reads all
//! of them from.
//!
//! A node publishes every `admin.snapshot_every_ms`, under a time-to-live of
//! `admin.snapshot_ttl_ms`: a node that stops publishing drops out of the view without anyone
//! cleaning up after it. [`overview`] sums the live snapshots into what one org's owner sees.
//!
//! Implementations: [`memory::MemoryBoard`] (one node, the default) and [`redis::RedisBoard`]
//! (shared by every node on a Redis or Redis Cluster broker).

pub mod memory;
pub mod overview;
pub mod redis;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One node's state at one moment, as it publishes it. Compact: the room and org lists are
/// bounded by `admin.snapshot_rooms` and `admin.snapshot_orgs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    /// The node's id.
    pub node: String,
    /// When it was taken, unix ms.
    pub at_ms: i64,
    /// The span the traffic counts cover, ms (the time since the node's previous snapshot).
    pub window_ms: u64,
    /// Open connections, all orgs.
    pub connections: u64,
    /// Rooms with a local member, all orgs, without the private `user:` rooms.
    pub rooms: u64,
    /// Events queued to members in the window, all rooms.
    pub deliveries: u64,
    /// Per-org counts, the orgs with the most connections here first.
    pub orgs: Vec<OrgStat>,
    /// True when some org was left out of `orgs`.
    pub orgs_truncated: bool,
    /// The node's largest rooms by members and its busiest by traffic (`user:` rooms left out).
    pub top_rooms: Vec<RoomStat>,
    /// True when some room was left out of `top_rooms`.
    pub rooms_truncated: bool,
}

/// One org's share of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgStat {
    /// The org.
    pub org: String,
    /// Its open connections here.
    pub connections: u64,
    /// Its rooms with a member here (`user:` rooms left out).
    pub rooms: u64,
}

/// One room on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomStat {
    /// The room's org.
    pub org: String,
    /// The room's name.
    pub room: String,
    /// Local members (connections).
    pub members: u64,
    /// Events queued to its local members in the window.
    pub deliveries: u64,
}

/// The board could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StatsError {
    /// The backend cannot be reached.
    #[error("stats board unavailable: {0}")]
    Unavailable(String),
}

/// Where nodes publish their snapshots. See the module docs.
#[async_trait]
pub trait StatsBoard: Send + Sync + 'static {
    /// Publishes this node's snapshot, replacing its previous one; it lapses after `ttl`.
    async fn publish(&self, snapshot: &NodeSnapshot, ttl: Duration) -> Result<(), StatsError>;
    /// Every node's latest snapshot that has not lapsed.
    async fn read(&self) -> Result<Vec<NodeSnapshot>, StatsError>;
}
