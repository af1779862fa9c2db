//! What a worker reports, how it travels to the coordinator (JSON with base64 V2 histograms),
//! and how the coordinator merges the reports. Order tracking and votes have their own files.

mod order;
mod votes;

pub(crate) use order::{OffsetTracker, Order};
pub(crate) use votes::{RoomTally, VoteReport, VotesMerged, merge_votes};

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
    /// Churn rejoins answered `recovered:false`.
    #[serde(default)]
    pub(crate) rejoins_not_recovered: u64,
    pub(crate) errors: u64,
    pub(crate) error_kinds: BTreeMap<String, u64>,
    /// Server-initiated closes by close code (1006: dropped without a close frame).
    pub(crate) closes: BTreeMap<String, u64>,
    pub(crate) storm: Option<StormReport>,
    /// Connections the server closed or lost and how they came back, with `--reconnect`.
    #[serde(default)]
    pub(crate) reconnects: Option<StormReport>,
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
    pub(crate) rejoins_not_recovered: u64,
    pub(crate) errors: u64,
    pub(crate) error_kinds: BTreeMap<String, u64>,
    pub(crate) closes: BTreeMap<String, u64>,
    pub(crate) storm: Option<(StormReport, Histogram<u64>)>,
    pub(crate) reconnects: Option<(StormReport, Histogram<u64>)>,
    pub(crate) cpu_s: f64,
}

/// Adds one worker's storm or reconnect figures to the sum so far.
fn add_storm(
    into: &mut Option<(StormReport, Histogram<u64>)>,
    s: &StormReport,
) -> anyhow::Result<()> {
    let (acc, hist) = into.get_or_insert_with(|| (StormReport::default(), histogram()));
    acc.dropped += s.dropped;
    acc.back += s.back;
    acc.recovered += s.recovered;
    acc.not_recovered += s.not_recovered;
    acc.replayed += s.replayed;
    acc.slowest_us = acc.slowest_us.max(s.slowest_us);
    hist.add(decode(&s.rejoin_hist)?)?;
    Ok(())
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
        rejoins_not_recovered: 0,
        errors: 0,
        error_kinds: BTreeMap::new(),
        closes: BTreeMap::new(),
        storm: None,
        reconnects: None,
        cpu_s: 0.0,
    };
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
        m.rejoins_not_recovered += r.rejoins_not_recovered;
        m.errors += r.errors;
        add_map(&mut m.error_kinds, &r.error_kinds);
        add_map(&mut m.closes, &r.closes);
        m.cpu_s += r.cpu_s;
        if let Some(s) = &r.storm {
            add_storm(&mut m.storm, s)?;
        }
        if let Some(s) = &r.reconnects {
            add_storm(&mut m.reconnects, s)?;
        }
    }
    m.sent = sent_per_room.values().sum();
    m.expected = sent_per_room
        .iter()
        .map(|(room, sent)| sent * members_per_room.get(room).copied().unwrap_or(0))
        .sum();
    m.connect = connect;
    m.latency = latency;
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
}
