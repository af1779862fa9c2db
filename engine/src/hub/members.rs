//! [`Members`]: a room's local members, kept inline while there is one.
//!
//! Every connection has a room of its own (its user's, for direct sends), and that room nearly
//! always has one member: a map for it would be an allocation of about 150 bytes per idle
//! connection. One member sits inline; a second one moves them all into a map, which then stays
//! until the room is gone (a room's last member leaving removes the room).
//!
//! A map also keeps, once a broadcast asks for it, the list of its members on direct sockets
//! ([`Members::direct_list`]), shared by the broadcast's write chunks; any change of membership
//! drops it.

use super::Member;
use crate::conn::{Conn, ConnId};
use std::collections::HashMap;
use std::sync::Arc;

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
    Many(Box<Map>),
}

/// Two or more members.
#[derive(Default)]
pub(super) struct Map {
    by_id: HashMap<ConnId, Member>,
    /// The members on direct sockets, made by [`Members::direct_list`] and dropped on every
    /// insert and remove.
    direct: Option<Arc<Vec<Arc<Conn>>>>,
}

impl Members {
    /// The member for `id`.
    pub(super) fn get_mut(&mut self, id: ConnId) -> Option<&mut Member> {
        match self {
            Members::Empty => None,
            Members::One(m) => (m.conn.id == id).then_some(m),
            Members::Many(map) => map.by_id.get_mut(&id),
        }
    }

    /// Adds `member` (its connection's id must not be a member yet).
    pub(super) fn insert(&mut self, member: Member) {
        match std::mem::take(self) {
            Members::Empty => *self = Members::One(member),
            Members::One(first) => {
                let mut by_id = HashMap::with_capacity(2);
                by_id.insert(first.conn.id, first);
                by_id.insert(member.conn.id, member);
                *self = Members::Many(Box::new(Map {
                    by_id,
                    direct: None,
                }));
            }
            Members::Many(mut map) => {
                map.direct = None;
                map.by_id.insert(member.conn.id, member);
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
            Members::Many(map) => {
                let gone = map.by_id.remove(&id);
                if gone.is_some() {
                    map.direct = None;
                }
                gone
            }
        }
    }

    /// How many.
    pub(super) fn len(&self) -> usize {
        match self {
            Members::Empty => 0,
            Members::One(_) => 1,
            Members::Many(map) => map.by_id.len(),
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
            Members::Many(map) => (None, Some(map.by_id.values())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Every member, in no particular order, to change.
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Member> {
        let (one, many) = match self {
            Members::Empty => (None, None),
            Members::One(m) => (Some(m), None),
            Members::Many(map) => (None, Some(map.by_id.values_mut())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// The members on direct sockets, for a broadcast's writes after the room's lock is let go:
    /// one reference to a list kept until the membership changes, instead of a reference to
    /// each member's connection (two atomic operations on each) per broadcast.
    pub(super) fn direct_list(&mut self) -> Arc<Vec<Arc<Conn>>> {
        let direct = |m: &Member| m.conn.direct.is_some().then(|| Arc::clone(&m.conn));
        match self {
            Members::Empty => Arc::default(),
            Members::One(m) => Arc::new(direct(m).into_iter().collect()),
            Members::Many(map) => {
                let Map {
                    by_id,
                    direct: list,
                } = &mut **map;
                Arc::clone(
                    list.get_or_insert_with(|| {
                        Arc::new(by_id.values().filter_map(direct).collect())
                    }),
                )
            }
        }
    }
}
