//! Votes: what one worker's clients saw of their rooms' polls, and how the coordinator merges
//! every worker's votes and checks each room's final tally against the votes acknowledged in it.

use super::{WorkerReport, add_map, decode, histogram};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the members of one room saw of its poll's tally, over one worker's members.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RoomTally {
    /// Members of the room.
    pub(crate) members: u64,
    /// The largest `total` any of them saw in `POLL_RESULTS`.
    pub(crate) max_total: u64,
    /// Members that saw `max_total`.
    pub(crate) at_max: u64,
    /// When the last of those saw `max_total` first, unix µs.
    pub(crate) last_at_max_us: u64,
}

impl RoomTally {
    /// One member that saw at most `total`, first at `at_us`.
    pub(crate) fn member(total: u64, at_us: u64) -> RoomTally {
        RoomTally {
            members: 1,
            max_total: total,
            at_max: 1,
            last_at_max_us: at_us,
        }
    }

    /// Adds the members of `other` (another worker's, or one more member).
    pub(crate) fn merge(&mut self, other: &RoomTally) {
        self.members += other.members;
        if other.max_total > self.max_total {
            self.max_total = other.max_total;
            self.at_max = other.at_max;
            self.last_at_max_us = other.last_at_max_us;
        } else if other.max_total == self.max_total {
            self.at_max += other.at_max;
            self.last_at_max_us = self.last_at_max_us.max(other.last_at_max_us);
        }
    }
}

/// Votes of one worker's clients (chat or poll-burst with `--api`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct VoteReport {
    /// Votes sent.
    pub(crate) sent: u64,
    /// Votes answered `rate_limited` and sent again (not counted in `sent`).
    #[serde(default)]
    pub(crate) retries: u64,
    /// Votes answered `ACK`, per room index.
    pub(crate) acked_per_room: BTreeMap<usize, u64>,
    /// Votes answered `ERROR`, by code.
    pub(crate) error_kinds: BTreeMap<String, u64>,
    /// `ACK` receive time minus intended vote time, µs (base64 V2 histogram).
    pub(crate) latency_hist: String,
    /// When the last `ACK` came, unix µs.
    pub(crate) last_ack_us: u64,
    /// What the members saw of their room's tally, per room index.
    pub(crate) tallies: BTreeMap<usize, RoomTally>,
}

/// Every worker's votes merged, with the tally check per room.
#[derive(Debug)]
pub(crate) struct VotesMerged {
    pub(crate) sent: u64,
    pub(crate) retries: u64,
    pub(crate) acked: u64,
    pub(crate) errors: u64,
    pub(crate) error_kinds: BTreeMap<String, u64>,
    pub(crate) latency: Histogram<u64>,
    pub(crate) last_ack_us: u64,
    /// Rooms with members or votes.
    pub(crate) rooms_checked: u64,
    /// Rooms whose largest tally seen equals the votes acked in it.
    pub(crate) rooms_tally_ok: u64,
    /// The rooms that failed the check: (room index, largest total seen, votes acked).
    pub(crate) mismatches: Vec<(usize, u64, u64)>,
    /// Members that never saw their room's largest tally.
    pub(crate) members_missed_final: u64,
    /// When the last member to see its room's final tally saw it, unix µs (0: no tally seen).
    pub(crate) converged_us: u64,
}

/// Merges the workers' votes; `None` when no worker voted.
pub(crate) fn merge_votes(reports: &[WorkerReport]) -> anyhow::Result<Option<VotesMerged>> {
    let mut any = false;
    let mut m = VotesMerged {
        sent: 0,
        retries: 0,
        acked: 0,
        errors: 0,
        error_kinds: BTreeMap::new(),
        latency: histogram(),
        last_ack_us: 0,
        rooms_checked: 0,
        rooms_tally_ok: 0,
        mismatches: Vec::new(),
        members_missed_final: 0,
        converged_us: 0,
    };
    let mut acked_per_room = BTreeMap::new();
    let mut tallies: BTreeMap<usize, RoomTally> = BTreeMap::new();
    for v in reports.iter().filter_map(|r| r.votes.as_ref()) {
        any = true;
        m.sent += v.sent;
        m.retries += v.retries;
        add_map(&mut m.error_kinds, &v.error_kinds);
        add_map(&mut acked_per_room, &v.acked_per_room);
        m.latency.add(decode(&v.latency_hist)?)?;
        m.last_ack_us = m.last_ack_us.max(v.last_ack_us);
        for (room, t) in &v.tallies {
            tallies.entry(*room).or_default().merge(t);
        }
    }
    if !any {
        return Ok(None);
    }
    m.acked = acked_per_room.values().sum();
    m.errors = m.error_kinds.values().sum();
    let mut rooms: Vec<usize> = tallies
        .keys()
        .chain(acked_per_room.keys())
        .copied()
        .collect();
    rooms.sort_unstable();
    rooms.dedup();
    for room in rooms {
        let t = tallies.get(&room).copied().unwrap_or_default();
        let acked = acked_per_room.get(&room).copied().unwrap_or(0);
        m.rooms_checked += 1;
        if t.max_total == acked {
            m.rooms_tally_ok += 1;
        } else {
            m.mismatches.push((room, t.max_total, acked));
        }
        if t.max_total > 0 {
            m.members_missed_final += t.members - t.at_max;
            m.converged_us = m.converged_us.max(t.last_at_max_us);
        } else {
            // Nobody saw a tally: a room without votes has nothing to see.
            m.members_missed_final += if acked > 0 { t.members } else { 0 };
        }
    }
    Ok(Some(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::encode;

    fn voter(
        sent: u64,
        acked: &[(usize, u64)],
        tallies: &[(usize, RoomTally)],
        errors: &[(&str, u64)],
    ) -> WorkerReport {
        let empty = encode(&histogram());
        WorkerReport {
            connect_hist: empty.clone(),
            latency_hist: empty.clone(),
            votes: Some(VoteReport {
                sent,
                retries: 0,
                acked_per_room: acked.iter().copied().collect(),
                error_kinds: errors.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect(),
                latency_hist: empty,
                last_ack_us: 0,
                tallies: tallies.iter().copied().collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn room_tallies_merge_by_the_largest_total() {
        let mut t = RoomTally::member(3, 100);
        t.merge(&RoomTally::member(5, 300));
        t.merge(&RoomTally::member(5, 200));
        t.merge(&RoomTally::member(4, 900));
        assert_eq!(
            t,
            RoomTally {
                members: 4,
                max_total: 5,
                at_max: 2,
                last_at_max_us: 300
            }
        );
    }

    #[test]
    fn the_tally_check_compares_each_room_with_its_acked_votes_across_workers() {
        // Room 0: 3 acked over two workers, both workers' members saw 3 (ok). Room 1: 2 acked
        // but the tally never went past 1 (a lost update). Room 2: no votes, no tally (ok).
        let w0 = voter(
            3,
            &[(0, 2), (1, 1)],
            &[
                (0, RoomTally::member(3, 1_500)),
                (1, RoomTally::member(1, 900)),
                (2, RoomTally::member(0, 0)),
            ],
            &[],
        );
        let mut two_members = RoomTally::member(3, 1_200);
        two_members.merge(&RoomTally::member(2, 800));
        let w1 = voter(
            3,
            &[(0, 1), (1, 1)],
            &[(0, two_members)],
            &[("conflict", 1)],
        );
        let v = merge_votes(&[w0, w1]).unwrap().unwrap();
        assert_eq!((v.sent, v.acked, v.errors), (6, 5, 1));
        assert_eq!(v.rooms_checked, 3);
        assert_eq!(v.rooms_tally_ok, 2);
        assert_eq!(v.mismatches, vec![(1, 1, 2)]);
        assert_eq!(v.members_missed_final, 1);
        assert_eq!(v.converged_us, 1_500);
        assert!(merge_votes(&[WorkerReport::default()]).unwrap().is_none());
    }
}
