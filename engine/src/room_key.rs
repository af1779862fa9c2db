//! [`RoomKey`]: a room as the engine knows it, the token's org plus the room name.
//!
//! Tenant isolation is structural: every map, queue and broker channel is keyed by `RoomKey`,
//! never by the bare name, so `session:S1` of org A and of org B never meet.

use evd_protocol::RoomName;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// An org-scoped room. Cloning is a reference-count bump.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RoomKey(Arc<Inner>);

#[derive(PartialEq, Eq, Hash)]
struct Inner {
    org: Box<str>,
    room: RoomName,
}

impl RoomKey {
    /// The key for `room` in `org`.
    pub fn new(org: &str, room: RoomName) -> RoomKey {
        RoomKey(Arc::new(Inner {
            org: org.into(),
            room,
        }))
    }

    /// The org.
    pub fn org(&self) -> &str {
        &self.0.org
    }

    /// The room name as clients see it.
    pub fn room(&self) -> &RoomName {
        &self.0.room
    }

    /// Whether `other` is this very key (one allocation), not only an equal one.
    #[cfg(test)]
    pub fn is_same(&self, other: &RoomKey) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// A stable hash, used to pick hub and broker shards.
    pub fn shard_hash(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    /// The broker channel: org and room inside one Redis hash tag, so a room's channel and keys
    /// share a cluster slot. Ids cannot contain braces or spaces (see `evd_protocol::room`), so
    /// the space separates org and room unambiguously.
    pub fn channel(&self) -> String {
        format!("evd:{{{} {}}}", self.0.org, self.0.room)
    }
}

impl fmt::Debug for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0.org, self.0.room)
    }
}

/// A share of the rooms, for periodic work spread over several rounds: rooms are given one of
/// `of` phases by a hash of their key, and a round of phase `this` handles those rooms. A busy
/// node's tick sends each room's changes every `of` ticks, a share per tick: the sending comes
/// in even steps rather than in one burst per interval that would hold up the chat messages
/// behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomPhase {
    /// This round's phase, below `of`.
    pub this: u64,
    /// The number of phases; 1 is every room.
    pub of: u64,
}

impl RoomPhase {
    /// Every room.
    pub const ALL: RoomPhase = RoomPhase { this: 0, of: 1 };

    /// Whether a round of this phase handles `room`. The upper half of the key's hash picks the phase, so
    /// the phase does not follow the hub shard (its lower bits).
    pub fn takes(&self, room: &RoomKey) -> bool {
        self.of <= 1 || (room.shard_hash() >> 32) % self.of == self.this
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_in_two_orgs_is_two_rooms() {
        let a = RoomKey::new("orgA", RoomName::parse("session:S1").unwrap());
        let b = RoomKey::new("orgB", RoomName::parse("session:S1").unwrap());
        assert_ne!(a, b);
        assert_ne!(a.channel(), b.channel());
        assert_eq!(a.channel(), "evd:{orgA session:S1}");
        assert_eq!(a, a.clone());
    }
}
