//! In-process presence for a single node.

use super::{Presence, PresenceError};
use crate::conn::ConnId;
use crate::room_key::RoomKey;
use async_trait::async_trait;
use evd_protocol::event::{PresenceMember, PresenceSnapshot};
use parking_lot::Mutex;
use smallvec::SmallVec;
use std::collections::HashMap;

const SHARDS: usize = 64;

/// A room's users and each user's connections there: nearly always one, kept inline.
type Users = HashMap<Box<str>, SmallVec<[ConnId; 1]>>;

/// Rooms → users → that user's connections.
pub struct MemoryPresence {
    shards: Box<[Mutex<HashMap<RoomKey, Users>>]>,
}

impl std::fmt::Debug for MemoryPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPresence").finish_non_exhaustive()
    }
}

impl Default for MemoryPresence {
    fn default() -> Self {
        MemoryPresence {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl MemoryPresence {
    fn shard(&self, room: &RoomKey) -> &Mutex<HashMap<RoomKey, Users>> {
        &self.shards[(room.shard_hash() as usize) % SHARDS]
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn add(&self, room: &RoomKey, user: &str, conn: ConnId) -> Result<bool, PresenceError> {
        let mut shard = self.shard(room).lock();
        let conns = shard
            .entry(room.clone())
            .or_default()
            .entry(user.into())
            .or_default();
        let first = conns.is_empty();
        if !conns.contains(&conn) {
            conns.push(conn);
        }
        Ok(first)
    }

    async fn remove(
        &self,
        room: &RoomKey,
        user: &str,
        conn: ConnId,
    ) -> Result<bool, PresenceError> {
        let mut shard = self.shard(room).lock();
        let Some(users) = shard.get_mut(room) else {
            return Ok(false);
        };
        let Some(conns) = users.get_mut(user) else {
            return Ok(false);
        };
        conns.retain(|c| *c != conn);
        let last = conns.is_empty();
        if last {
            users.remove(user);
            if users.is_empty() {
                shard.remove(room);
            }
        }
        Ok(last)
    }

    async fn snapshot(
        &self,
        room: &RoomKey,
        limit: usize,
    ) -> Result<PresenceSnapshot, PresenceError> {
        let shard = self.shard(room).lock();
        let Some(users) = shard.get(room) else {
            return Ok(PresenceSnapshot::default());
        };
        let mut members: Vec<PresenceMember> = users
            .keys()
            .take(limit)
            .map(|u| PresenceMember {
                user: u.to_string(),
            })
            .collect();
        members.sort();
        Ok(PresenceSnapshot {
            count: users.len() as u64,
            members,
        })
    }

    async fn count(&self, room: &RoomKey) -> Result<u64, PresenceError> {
        Ok(self
            .shard(room)
            .lock()
            .get(room)
            .map_or(0, |u| u.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evd_protocol::RoomName;

    #[tokio::test]
    async fn a_user_with_two_connections_is_one_member() {
        let p = MemoryPresence::default();
        let r = RoomKey::new("o1", RoomName::parse("event:E1").unwrap());
        assert!(p.add(&r, "u1", 1).await.unwrap());
        assert!(!p.add(&r, "u1", 2).await.unwrap());
        assert!(p.add(&r, "u2", 3).await.unwrap());
        assert_eq!(p.count(&r).await.unwrap(), 2);
        assert!(
            !p.remove(&r, "u1", 1).await.unwrap(),
            "not the last connection"
        );
        assert_eq!(p.count(&r).await.unwrap(), 2);
        assert!(p.remove(&r, "u1", 2).await.unwrap());
        let snap = p.snapshot(&r, 100).await.unwrap();
        assert_eq!(snap.count, 1);
        assert_eq!(snap.members, vec![PresenceMember { user: "u2".into() }]);
        assert_eq!(p.snapshot(&r, 0).await.unwrap().members.len(), 0);
        assert!(p.remove(&r, "u2", 3).await.unwrap());
        assert_eq!(p.count(&r).await.unwrap(), 0);
    }
}
