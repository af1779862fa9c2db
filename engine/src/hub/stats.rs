//! What the admin snapshot reads from the hub: each room's local members, and the events fanned
//! out to it since the previous read (each room counts them in a relaxed atomic, so fanout pays
//! one add for this and takes no lock of its own).

use super::Hub;
use crate::room_key::RoomKey;
use crate::stats::{OrgStat, RoomStat};
use evd_protocol::RoomKind;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// This node's rooms, as [`Hub::take_room_stats`] found them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalRooms {
    /// Rooms with a local member, without the private `user:` rooms.
    pub rooms: u64,
    /// Events queued to members since the previous read, all rooms.
    pub deliveries: u64,
    /// Per org, the most connections first; a connection is counted by its `user:` room.
    pub orgs: Vec<OrgStat>,
    /// True when some org was left out of `orgs`.
    pub orgs_truncated: bool,
    /// The largest rooms by members and the busiest by traffic, `user:` rooms left out.
    pub top: Vec<RoomStat>,
    /// True when some room was left out of `top`.
    pub rooms_truncated: bool,
}

impl Hub {
    /// Reads every room's members and takes its traffic count (resetting it), keeping up to
    /// `max_rooms` rooms by each measure and `max_orgs` orgs. Locks one shard at a time, for a
    /// walk over its rooms; meant for a snapshot every few seconds, not for a request path.
    pub fn take_room_stats(&self, max_rooms: usize, max_orgs: usize) -> LocalRooms {
        let mut out = LocalRooms::default();
        // Orgs by index, found by name once per run of rooms of one org: a node's rooms mostly
        // belong to few orgs, and hashing the org's name twice for each room was half the
        // walk. An org's name is copied once per org, not once per room looked at.
        let mut orgs: Vec<OrgStat> = Vec::new();
        let mut org_index: HashMap<Box<str>, usize> = HashMap::new();
        // Keys (a reference count each), not names: only the rooms kept are written out.
        let mut rooms: Vec<(RoomKey, u64, u64)> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            // The org of the room before, borrowed from its key while the shard is locked.
            let mut last: Option<(&str, usize)> = None;
            for (key, room) in &shard.rooms {
                let members = room.members.len() as u64;
                let deliveries = room.traffic.swap(0, Ordering::Relaxed);
                out.deliveries += deliveries;
                let at = match last {
                    Some((name, at)) if name == key.org() => at,
                    _ => {
                        let at = match org_index.get(key.org()) {
                            Some(&at) => at,
                            None => {
                                let at = orgs.len();
                                orgs.push(OrgStat {
                                    org: key.org().to_owned(),
                                    connections: 0,
                                    rooms: 0,
                                });
                                org_index.insert(key.org().into(), at);
                                at
                            }
                        };
                        last = Some((key.org(), at));
                        at
                    }
                };
                let org = &mut orgs[at];
                if key.room().kind() == RoomKind::User {
                    org.connections += members;
                    continue;
                }
                org.rooms += 1;
                out.rooms += 1;
                rooms.push((key.clone(), members, deliveries));
            }
        }
        out.rooms_truncated = rooms.len() > max_rooms;
        let stat = |(key, members, deliveries): (RoomKey, u64, u64)| RoomStat {
            org: key.org().to_owned(),
            room: key.room().to_string(),
            members,
            deliveries,
        };
        out.top = if out.rooms_truncated {
            let by_members = largest(rooms.clone(), max_rooms, |r| r.1);
            let mut by_traffic = largest(rooms, max_rooms, |r| r.2);
            by_traffic.retain(|r| !by_members.iter().any(|m| m.0 == r.0));
            by_members.into_iter().chain(by_traffic).map(stat).collect()
        } else {
            rooms.into_iter().map(stat).collect()
        };
        out.orgs_truncated = orgs.len() > max_orgs;
        out.orgs = largest(orgs, max_orgs, |o| o.connections);
        out
    }
}

/// The `n` items with the largest `measure`, largest first (ties in no particular order).
fn largest<T>(mut items: Vec<T>, n: usize, measure: impl Fn(&T) -> u64) -> Vec<T> {
    items.sort_unstable_by_key(|t| std::cmp::Reverse(measure(t)));
    items.truncate(n);
    items
}
