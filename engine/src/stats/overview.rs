//! [`Overview`]: the admin view's answer for one org, summed from every live node's snapshot.
//!
//! Nodes and their totals are the deployment's (an owner operates the nodes their org runs on);
//! rooms are the org's own, never another org's. A room on several nodes is one row with its
//! members and traffic summed over them.

use super::{NodeSnapshot, RoomStat};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What `GET /admin/stats` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// The org the rooms are of (the token's).
    pub org: String,
    /// How often nodes publish, ms: the view is at most about this old.
    pub snapshot_every_ms: u64,
    /// Every live node, by id.
    pub nodes: Vec<NodeView>,
    /// Sums over `nodes`.
    pub totals: Totals,
    /// The org's largest rooms by members, at most `admin.top_rooms`.
    pub rooms: Vec<RoomView>,
    /// The org's busiest rooms by deliveries per second, at most `admin.top_rooms`; rooms with
    /// no traffic are left out.
    pub top_traffic: Vec<RoomView>,
    /// True when a node left rooms or orgs out of its snapshot: the room lists and the org's
    /// room count are then lower bounds.
    pub partial: bool,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Its id.
    pub node: String,
    /// When its snapshot was taken, unix ms.
    pub at_ms: i64,
    /// Its open connections, all orgs.
    pub connections: u64,
    /// Its rooms with a member, all orgs (`user:` rooms left out).
    pub rooms: u64,
    /// Events it queued to members per second, all rooms, over its last window.
    pub deliveries_per_sec: f64,
    /// The org's connections on it.
    pub org_connections: u64,
    /// The org's rooms with a member on it.
    pub org_rooms: u64,
}

/// Sums over the nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Live nodes.
    pub nodes: u64,
    /// Connections, all orgs.
    pub connections: u64,
    /// Deliveries per second, all orgs.
    pub deliveries_per_sec: f64,
    /// The org's connections.
    pub org_connections: u64,
    /// The org's distinct rooms with a member on some node.
    pub org_rooms: u64,
}

/// One of the org's rooms, over every node it has members on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomView {
    /// The room's name.
    pub room: String,
    /// Members (connections), all nodes.
    pub members: u64,
    /// Nodes it has members on.
    pub nodes: u64,
    /// Events queued to its members per second, all nodes.
    pub deliveries_per_sec: f64,
}

fn per_sec(count: u64, window_ms: u64) -> f64 {
    let rate = count as f64 * 1_000.0 / window_ms.max(1) as f64;
    (rate * 10.0).round() / 10.0
}

impl Overview {
    /// `org`'s view of `snapshots`, listing up to `top` rooms by each measure.
    pub fn build(
        org: &str,
        mut snapshots: Vec<NodeSnapshot>,
        top: usize,
        snapshot_every_ms: u64,
    ) -> Overview {
        snapshots.sort_by(|a, b| a.node.cmp(&b.node));
        let mut partial = false;
        let mut rooms: BTreeMap<&str, RoomView> = BTreeMap::new();
        let mut nodes = Vec::with_capacity(snapshots.len());
        let mut largest_org_rooms = 0;
        for s in &snapshots {
            let mine = s.orgs.iter().find(|o| o.org == org);
            partial |= s.rooms_truncated || (s.orgs_truncated && mine.is_none());
            let (org_connections, org_rooms) = mine.map_or((0, 0), |o| (o.connections, o.rooms));
            largest_org_rooms = largest_org_rooms.max(org_rooms);
            nodes.push(NodeView {
                node: s.node.clone(),
                at_ms: s.at_ms,
                connections: s.connections,
                rooms: s.rooms,
                deliveries_per_sec: per_sec(s.deliveries, s.window_ms),
                org_connections,
                org_rooms,
            });
            for RoomStat {
                room,
                members,
                deliveries,
                ..
            } in s.top_rooms.iter().filter(|r| r.org == org)
            {
                let v = rooms.entry(room).or_insert_with(|| RoomView {
                    room: room.clone(),
                    members: 0,
                    nodes: 0,
                    deliveries_per_sec: 0.0,
                });
                v.members += members;
                v.nodes += 1;
                v.deliveries_per_sec += per_sec(*deliveries, s.window_ms);
            }
        }
        let totals = Totals {
            nodes: nodes.len() as u64,
            connections: nodes.iter().map(|n| n.connections).sum(),
            deliveries_per_sec: per_sec_sum(nodes.iter().map(|n| n.deliveries_per_sec)),
            org_connections: nodes.iter().map(|n| n.org_connections).sum(),
            org_rooms: (rooms.len() as u64).max(largest_org_rooms),
        };
        let rooms: Vec<RoomView> = rooms.into_values().collect();
        let mut by_members = rooms.clone();
        by_members.sort_by(|a, b| b.members.cmp(&a.members).then(a.room.cmp(&b.room)));
        by_members.truncate(top);
        let mut by_traffic: Vec<RoomView> = rooms
            .into_iter()
            .filter(|r| r.deliveries_per_sec > 0.0)
            .collect();
        by_traffic.sort_by(|a, b| {
            b.deliveries_per_sec
                .total_cmp(&a.deliveries_per_sec)
                .then(a.room.cmp(&b.room))
        });
        by_traffic.truncate(top);
        Overview {
            org: org.to_owned(),
            snapshot_every_ms,
            nodes,
            totals,
            rooms: by_members,
            top_traffic: by_traffic,
            partial,
        }
    }
}

fn per_sec_sum(rates: impl Iterator<Item = f64>) -> f64 {
    (rates.sum::<f64>() * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::OrgStat;

    fn room(org: &str, room: &str, members: u64, deliveries: u64) -> RoomStat {
        RoomStat {
            org: org.into(),
            room: room.into(),
            members,
            deliveries,
        }
    }

    fn node(id: &str, orgs: Vec<OrgStat>, top_rooms: Vec<RoomStat>) -> NodeSnapshot {
        NodeSnapshot {
            node: id.into(),
            at_ms: 1,
            window_ms: 2_000,
            connections: orgs.iter().map(|o| o.connections).sum(),
            rooms: top_rooms.len() as u64,
            deliveries: top_rooms.iter().map(|r| r.deliveries).sum(),
            orgs,
            orgs_truncated: false,
            top_rooms,
            rooms_truncated: false,
        }
    }

    fn org(org: &str, connections: u64, rooms: u64) -> OrgStat {
        OrgStat {
            org: org.into(),
            connections,
            rooms,
        }
    }

    #[test]
    fn rooms_are_summed_across_nodes_and_other_orgs_stay_out() {
        let a = node(
            "n-a",
            vec![org("o1", 3, 2), org("o2", 5, 1)],
            vec![
                room("o1", "session:S1", 2, 40),
                room("o1", "event:E1", 1, 0),
                room("o2", "session:SECRET", 5, 100),
            ],
        );
        let b = node(
            "n-b",
            vec![org("o1", 2, 1)],
            vec![room("o1", "session:S1", 2, 20)],
        );
        let v = Overview::build("o1", vec![b, a], 10, 2_000);
        assert_eq!(
            v.nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(),
            ["n-a", "n-b"]
        );
        assert_eq!(v.totals.nodes, 2);
        assert_eq!(v.totals.connections, 10, "every org's, on the nodes");
        assert_eq!(v.totals.org_connections, 5);
        assert_eq!(v.totals.org_rooms, 2, "S1 on two nodes is one room");
        assert_eq!(v.totals.deliveries_per_sec, 80.0);
        let s1 = &v.rooms[0];
        assert_eq!(
            (
                s1.room.as_str(),
                s1.members,
                s1.nodes,
                s1.deliveries_per_sec
            ),
            ("session:S1", 4, 2, 30.0)
        );
        assert_eq!(v.rooms[1].room, "event:E1");
        assert!(
            v.rooms
                .iter()
                .chain(&v.top_traffic)
                .all(|r| r.room != "session:SECRET"),
            "another org's rooms are not shown"
        );
        assert_eq!(
            v.top_traffic
                .iter()
                .map(|r| r.room.as_str())
                .collect::<Vec<_>>(),
            ["session:S1"],
            "rooms without traffic are not among the busiest"
        );
        assert!(!v.partial);
    }

    #[test]
    fn lists_are_cut_at_top_and_truncated_snapshots_mark_the_view_partial() {
        let mut a = node(
            "n-a",
            vec![org("o1", 3, 5)],
            (0..3)
                .map(|i| room("o1", &format!("session:S{i}"), i + 1, 10 * (3 - i)))
                .collect(),
        );
        a.rooms_truncated = true;
        let v = Overview::build("o1", vec![a], 2, 2_000);
        assert_eq!(
            v.rooms.iter().map(|r| r.room.as_str()).collect::<Vec<_>>(),
            ["session:S2", "session:S1"]
        );
        assert_eq!(
            v.top_traffic
                .iter()
                .map(|r| r.room.as_str())
                .collect::<Vec<_>>(),
            ["session:S0", "session:S1"]
        );
        assert!(v.partial);
        assert_eq!(
            v.totals.org_rooms, 5,
            "the node's own count when its list is cut"
        );
    }
}
