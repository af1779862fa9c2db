//! What a worker counts, how it travels to the coordinator (JSON with base64 V2 histograms),
//! and how the coordinator merges it.

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Highest value a latency histogram holds, µs (one hour); larger samples saturate to it.
const HIST_MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("static histogram bounds are valid")
}

/// Serializes a histogram (V2, uncompressed) as base64.
pub(crate) fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut buf)
        .expect("serializing into a Vec cannot fail");
    B64.encode(buf)
}

/// The inverse of [`encode`].
pub(crate) fn decode(s: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = B64.decode(s).context("histogram base64")?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .context("histogram V2")
}

/// Per-connection order tracking for one room, from the offsets the server assigns.
#[derive(Debug, Default, Clone)]
pub(crate) struct OffsetTracker {
    /// The highest offset seen (or the room's offset when joined); `None` until known.
    pub(crate) last: Option<u64>,
}

/// What one offset tells about order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// The next offset.
    Next,
    /// Offsets were skipped: this many messages are missing.
    Gap(u64),
    /// At or below the highest offset seen: late or duplicated.
    Reorder,
}

impl OffsetTracker {
    /// Records `offset` and says how it relates to what came before.
    pub(crate) fn see(&mut self, offset: u64) -> Order {
        match self.last {
            None => {
                self.last = Some(offset);
                Order::Next
            }
            Some(last) if offset == last + 1 => {
                self.last = Some(offset);
                Order::Next
            }
            Some(last) if offset > last + 1 => {
                self.last = Some(offset);
                Order::Gap(offset - last - 1)
            }
            Some(_) => Order::Reorder,
        }
    }
}

/// Reconnect-storm figures of one worker.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct StormReport {
    /// Clients dropped at the storm.
    pub(crate) dropped: u64,
    /// Clients connected and joined again.
    pub(crate) back: u64,
    /// Rejoins answered `recovered:true`.
    pub(crate) recovered: u64,
    /// Rejoins answered `recovered:false` (history lost).
    pub(crate) not_recovered: u64,
    /// Messages replayed in `history` by the recovering joins.
    pub(crate) replayed: u64,
    /// Longest time from the drop to a client's rejoin, µs.
    pub(crate) slowest_us: u64,
    /// Drop → rejoin time per client, µs (base64 V2 histogram).
    pub(crate) rejoin_hist: String,
}

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

/// Everything a worker reports at the end, one JSON line on stdout.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct WorkerReport {
    pub(crate) worker: usize,
    pub(crate) connected: u64,
    pub(crate) connect_failed: u64,
    pub(crate) joined: u64,
    /// Time from starting the connection to the join being confirmed, µs.
    pub(crate) connect_hist: String,
    /// Wall time over which this worker's connections were made, µs.
    pub(crate) connect_span_us: u64,
    /// Messages sent by this worker's publishers, per room index.
    pub(crate) sent_per_room: BTreeMap<usize, u64>,
    /// Joined members of this worker, per room index, when the measurement started.
    pub(crate) members_per_room: BTreeMap<usize, u64>,
    /// Stamped messages received (including those replayed by recovery).
    pub(crate) received: u64,
    /// Receive time minus intended send time, µs.
    pub(crate) latency_hist: String,
    /// Offsets skipped and never filled.
    pub(crate) gaps: u64,
    /// Offsets at or below one already seen.
    pub(crate) reorders: u64,
    /// Churn leaves answered by a rejoin.
    pub(crate) rejoins: u64,
    pub(crate) errors: u64,
    pub(crate) error_kinds: BTreeMap<String, u64>,
    /// Server-initiated closes by close code (1006: dropped without a close frame).
    pub(crate) closes: BTreeMap<String, u64>,
    pub(crate) storm: Option<StormReport>,
    /// Votes and tallies, when the clients vote.
    pub(crate) votes: Option<VoteReport>,
    /// This worker's own CPU time (user + system), seconds.
    pub(crate) cpu_s: f64,
}

/// Every worker's report merged.
#[derive(Debug)]
pub(crate) struct Merged {
    pub(crate) connected: u64,
    pub(crate) connect_failed: u64,
    pub(crate) joined: u64,
    pub(crate) connect: Histogram<u64>,
    pub(crate) connect_span_us: u64,
    pub(crate) sent: u64,
    /// Σ over rooms of messages sent to the room × members of the room.
    pub(crate) expected: u64,
    pub(crate) received: u64,
    pub(crate) latency: Histogram<u64>,
    pub(crate) gaps: u64,
    pub(crate) reorders: u64,
    pub(crate) rejoins: u64,
    pub(crate) errors: u64,
    pub(crate) error_kinds: BTreeMap<String, u64>,
    pub(crate) closes: BTreeMap<String, u64>,
    pub(crate) storm: Option<(StormReport, Histogram<u64>)>,
    pub(crate) cpu_s: f64,
}

fn add_map<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// Merges the workers' reports: counters add up, histograms merge, and the expected deliveries
/// are computed per room from all publishers and all members together.
pub(crate) fn merge(reports: &[WorkerReport]) -> anyhow::Result<Merged> {
    let mut connect = histogram();
    let mut latency = histogram();
    let mut sent_per_room = BTreeMap::new();
    let mut members_per_room = BTreeMap::new();
    let mut m = Merged {
        connected: 0,
        connect_failed: 0,
        joined: 0,
        connect: histogram(),
        connect_span_us: 0,
        sent: 0,
        expected: 0,
        received: 0,
        latency: histogram(),
        gaps: 0,
        reorders: 0,
        rejoins: 0,
        errors: 0,
        error_kinds: BTreeMap::new(),
        closes: BTreeMap::new(),
        storm: None,
        cpu_s: 0.0,
    };
    let mut storm: Option<(StormReport, Histogram<u64>)> = None;
    for r in reports {
        m.connected += r.connected;
        m.connect_failed += r.connect_failed;
        m.joined += r.joined;
        m.connect_span_us = m.connect_span_us.max(r.connect_span_us);
        connect.add(decode(&r.connect_hist)?)?;
        latency.add(decode(&r.latency_hist)?)?;
        add_map(&mut sent_per_room, &r.sent_per_room);
        add_map(&mut members_per_room, &r.members_per_room);
        m.received += r.received;
        m.gaps += r.gaps;
        m.reorders += r.reorders;
        m.rejoins += r.rejoins;
        m.errors += r.errors;
        add_map(&mut m.error_kinds, &r.error_kinds);
        add_map(&mut m.closes, &r.closes);
        m.cpu_s += r.cpu_s;
        if let Some(s) = &r.storm {
            let (acc, hist) = storm.get_or_insert_with(|| (StormReport::default(), histogram()));
            acc.dropped += s.dropped;
            acc.back += s.back;
            acc.recovered += s.recovered;
            acc.not_recovered += s.not_recovered;
            acc.replayed += s.replayed;
            acc.slowest_us = acc.slowest_us.max(s.slowest_us);
            hist.add(decode(&s.rejoin_hist)?)?;
        }
    }
    m.sent = sent_per_room.values().sum();
    m.expected = sent_per_room
        .iter()
        .map(|(room, sent)| sent * members_per_room.get(room).copied().unwrap_or(0))
        .sum();
    m.connect = connect;
    m.latency = latency;
    m.storm = storm;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_survive_the_trip_and_merge() {
        let mut a = histogram();
        let mut b = histogram();
        for v in 1..=1000 {
            a.record(v).unwrap();
        }
        b.record(1_000_000).unwrap();
        let ra = WorkerReport {
            latency_hist: encode(&a),
            connect_hist: encode(&histogram()),
            ..Default::default()
        };
        let rb = WorkerReport {
            latency_hist: encode(&b),
            connect_hist: encode(&histogram()),
            ..Default::default()
        };
        let m = merge(&[ra, rb]).unwrap();
        assert_eq!(m.latency.len(), 1001);
        assert_eq!(m.latency.max(), b.max());
        assert_eq!(
            m.latency.value_at_quantile(0.5),
            a.value_at_quantile(0.5005)
        );
    }

    #[test]
    fn expected_deliveries_are_per_room_across_workers() {
        let empty = encode(&histogram());
        let w0 = WorkerReport {
            connect_hist: empty.clone(),
            latency_hist: empty.clone(),
            sent_per_room: BTreeMap::from([(0, 10), (1, 5)]),
            members_per_room: BTreeMap::from([(0, 3)]),
            received: 30,
            ..Default::default()
        };
        let w1 = WorkerReport {
            connect_hist: empty.clone(),
            latency_hist: empty,
            members_per_room: BTreeMap::from([(0, 1), (1, 2)]),
            received: 20,
            closes: BTreeMap::from([("4008".into(), 1)]),
            ..Default::default()
        };
        let m = merge(&[w0, w1]).unwrap();
        assert_eq!(m.sent, 15);
        assert_eq!(m.expected, 10 * 4 + 5 * 2);
        assert_eq!(m.received, 50);
        assert_eq!(m.closes["4008"], 1);
    }

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

    #[test]
    fn offsets_count_gaps_and_reorders() {
        let mut t = OffsetTracker { last: Some(4) };
        assert_eq!(t.see(5), Order::Next);
        assert_eq!(t.see(8), Order::Gap(2));
        assert_eq!(t.see(7), Order::Reorder);
        assert_eq!(t.see(8), Order::Reorder);
        assert_eq!(t.see(9), Order::Next);
        let mut fresh = OffsetTracker::default();
        assert_eq!(fresh.see(17), Order::Next);
        assert_eq!(fresh.see(18), Order::Next);
    }
}
