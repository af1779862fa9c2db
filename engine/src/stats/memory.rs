//! [`MemoryBoard`]: the stats board of a single node, a map in this process.

use super::{NodeSnapshot, StatsBoard, StatsError};
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Snapshots by node, each with the moment it lapses. With one node there is one entry; the map
/// is keyed anyway so the board behaves as the shared one does.
#[derive(Debug, Default)]
pub struct MemoryBoard {
    /// A plain mutex: held for a map operation, never across an await.
    snapshots: Mutex<HashMap<String, (Instant, NodeSnapshot)>>,
}

#[async_trait]
impl StatsBoard for MemoryBoard {
    async fn publish(&self, snapshot: &NodeSnapshot, ttl: Duration) -> Result<(), StatsError> {
        let lapses = Instant::now() + ttl;
        let mut map = self.snapshots.lock();
        map.retain(|_, (at, _)| *at > Instant::now());
        map.insert(snapshot.node.clone(), (lapses, snapshot.clone()));
        Ok(())
    }

    async fn read(&self) -> Result<Vec<NodeSnapshot>, StatsError> {
        let now = Instant::now();
        Ok(self
            .snapshots
            .lock()
            .values()
            .filter(|(at, _)| *at > now)
            .map(|(_, s)| s.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(node: &str) -> NodeSnapshot {
        NodeSnapshot {
            node: node.into(),
            at_ms: 0,
            window_ms: 1_000,
            connections: 1,
            rooms: 0,
            deliveries: 0,
            orgs: vec![],
            orgs_truncated: false,
            top_rooms: vec![],
            rooms_truncated: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_replaces_the_last_and_lapses_after_its_ttl() {
        let b = MemoryBoard::default();
        let ttl = Duration::from_secs(10);
        b.publish(&snap("n1"), ttl).await.unwrap();
        let mut second = snap("n1");
        second.connections = 7;
        b.publish(&second, ttl).await.unwrap();
        assert_eq!(b.read().await.unwrap(), vec![second]);
        tokio::time::advance(ttl).await;
        assert_eq!(b.read().await.unwrap(), vec![]);
    }
}
