//! [`Members`]: a room's local members, kept inline while there is one.
//!
//! Every connection has a room of its own (its user's, for direct sends), and that room nearly
//! always has one member: a map for it would be an allocation of about 150 bytes per idle
//! connection. One member sits inline; a second one moves them all into a map, which then stays
//! until the room is gone (a room's last member leaving removes the room).

use super::Member;
use crate::conn::ConnId;
use std::collections::HashMap;

/// A room's local members by connection id. See the module docs.
#[derive(Default)]
pub(super) enum Members {
    /// No member (a room just made).
    #[default]
    Empty,
    /// One member, inline.
    One(Member),
    /// Two or more (or once two): a map, boxed so a room stays small in its shard's table
    /// (where every connection's own room sits too).
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<ConnId, Member>>),
}

impl Members {
    /// The member for `id`.
    pub(super) fn get_mut(&mut self, id: ConnId) -> Option<&mut Member> {
        match self {
            Members::Empty => None,
            Members::One(m) => (m.conn.id == id).then_some(m),
            Members::Many(map) => map.get_mut(&id),
        }
    }

    /// Adds `member` (its connection's id must not be a member yet).
    pub(super) fn insert(&mut self, member: Member) {
        match std::mem::take(self) {
            Members::Empty => *self = Members::One(member),
            Members::One(first) => {
                let mut map = HashMap::with_capacity(2);
                map.insert(first.conn.id, first);
                map.insert(member.conn.id, member);
                *self = Members::Many(Box::new(map));
            }
            Members::Many(mut map) => {
                map.insert(member.conn.id, member);
                *self = Members::Many(map);
            }
        }
    }

    /// Removes the member for `id`; `None` if it was not one.
    pub(super) fn remove(&mut self, id: ConnId) -> Option<Member> {
        match self {
            Members::Empty => None,
            Members::One(m) if m.conn.id != id => None,
            Members::One(_) => match std::mem::take(self) {
                Members::One(m) => Some(m),
                other => {
                    *self = other;
                    None
                }
            },
            Members::Many(map) => map.remove(&id),
        }
    }

    /// How many.
    pub(super) fn len(&self) -> usize {
        match self {
            Members::Empty => 0,
            Members::One(_) => 1,
            Members::Many(map) => map.len(),
        }
    }

    /// True when there is none.
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every member, in no particular order.
    pub(super) fn values(&self) -> impl Iterator<Item = &Member> {
        let (one, many) = match self {
            Members::Empty => (None, None),
            Members::One(m) => (Some(m), None),
            Members::Many(map) => (None, Some(map.values())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Every member, in no particular order, to change.
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Member> {
        let (one, many) = match self {
            Members::Empty => (None, None),
            Members::One(m) => (Some(m), None),
            Members::Many(map) => (None, Some(map.values_mut())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}
