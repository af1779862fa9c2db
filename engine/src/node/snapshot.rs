//! The node's admin snapshot: every `admin.snapshot_every_ms` it reads its connections and
//! rooms ([`crate::hub::Hub::take_room_stats`]) and publishes them on the stats board under
//! `admin.snapshot_ttl_ms`, where `GET /admin/stats` sums every node's.

use super::Node;
use crate::clock::unix_ms;
use crate::stats::NodeSnapshot;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

impl Node {
    /// This node's snapshot now, with the traffic since `since` (taken: the next snapshot
    /// counts from here).
    pub fn take_snapshot(&self, since: Instant) -> NodeSnapshot {
        let a = &self.settings.admin;
        let rooms = self.hub.take_room_stats(a.snapshot_rooms, a.snapshot_orgs);
        NodeSnapshot {
            node: self.id.to_string(),
            at_ms: unix_ms(),
            window_ms: u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
            connections: self.connections() as u64,
            rooms: rooms.rooms,
            deliveries: rooms.deliveries,
            orgs: rooms.orgs,
            orgs_truncated: rooms.orgs_truncated,
            top_rooms: rooms.top,
            rooms_truncated: rooms.rooms_truncated,
        }
    }
}

/// Publishes this node's snapshot once per period until shutdown. A failed publish is logged
/// and the next period tries again; the node drops out of the view if failures outlast the ttl.
pub(super) async fn publish(node: Arc<Node>) {
    let a = &node.settings.admin;
    let (every, ttl) = (
        Duration::from_millis(a.snapshot_every_ms),
        Duration::from_millis(a.snapshot_ttl_ms),
    );
    let stopped = node.shutdown.stopped();
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since = Instant::now();
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        let snapshot = node.take_snapshot(since);
        since = Instant::now();
        if let Err(e) = node.board.publish(&snapshot, ttl).await {
            tracing::warn!(error = %e, "admin snapshot not published");
        }
    }
}
