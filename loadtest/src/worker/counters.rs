//! What a worker counts while it runs, and how the counts become its progress lines and its
//! final report.

use crate::plan::{Scenario, WorkerPlan};
use crate::stats::{self, RoomTally, StormReport, VoteReport, WorkerReport};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Instant;

/// The close reported for a connection lost without a close frame (RFC 6455, 7.1.5).
pub(super) const ABNORMAL_CLOSE: &str = "1006";

/// How this worker's clients came back: after the reconnect storm, or after losing their
/// connection (`--reconnect`).
pub(super) struct StormCounters {
    pub(super) dropped: u64,
    pub(super) back: u64,
    pub(super) recovered: u64,
    pub(super) not_recovered: u64,
    pub(super) replayed: u64,
    pub(super) slowest_us: u64,
    /// Drop → rejoin time per client, µs.
    pub(super) rejoin_hist: Histogram<u64>,
}

impl StormCounters {
    fn new() -> StormCounters {
        StormCounters {
            dropped: 0,
            back: 0,
            recovered: 0,
            not_recovered: 0,
            replayed: 0,
            slowest_us: 0,
            rejoin_hist: stats::histogram(),
        }
    }

    fn report(&self) -> StormReport {
        StormReport {
            dropped: self.dropped,
            back: self.back,
            recovered: self.recovered,
            not_recovered: self.not_recovered,
            replayed: self.replayed,
            slowest_us: self.slowest_us,
            rejoin_hist: stats::encode(&self.rejoin_hist),
        }
    }
}

/// Everything a worker counts, shared by its clients and publishers (one thread, no locks).
pub(super) struct Counters {
    pub(super) connected: u64,
    pub(super) connect_failed: u64,
    pub(super) joined: u64,
    /// Clients that joined or gave up: the ramp is over when this reaches the client count.
    pub(super) settled: u64,
    pub(super) publishers_ready: u64,
    pub(super) first_connect: Option<Instant>,
    pub(super) last_connect: Option<Instant>,
    pub(super) connect_hist: Histogram<u64>,
    pub(super) latency_hist: Histogram<u64>,
    pub(super) members_now: BTreeMap<usize, u64>,
    pub(super) members_at_start: BTreeMap<usize, u64>,
    pub(super) sent_per_room: BTreeMap<usize, u64>,
    pub(super) received: u64,
    pub(super) gaps: u64,
    pub(super) reorders: u64,
    /// Churn leaves answered by a rejoin.
    pub(super) rejoins: u64,
    /// Churn rejoins answered `recovered:false`.
    pub(super) rejoins_not_recovered: u64,
    pub(super) errors: u64,
    pub(super) error_kinds: BTreeMap<String, u64>,
    pub(super) closes: BTreeMap<String, u64>,
    pub(super) storm: StormCounters,
    /// Connections the server closed or lost, and how they came back (`--reconnect`).
    pub(super) lost: StormCounters,
    pub(super) votes_sent: u64,
    /// Votes answered `rate_limited` and sent again.
    pub(super) vote_retries: u64,
    pub(super) votes_acked_per_room: BTreeMap<usize, u64>,
    pub(super) vote_error_kinds: BTreeMap<String, u64>,
    pub(super) vote_hist: Histogram<u64>,
    pub(super) last_ack_us: u64,
    /// Per client of this worker (by local index): its room and what it saw of the room's
    /// tally; `None` until it joined, and for every client when rooms have no polls.
    pub(super) tallies: Vec<Option<(usize, RoomTally)>>,
}

impl Counters {
    /// Nothing counted yet, for `clients` clients; `polls` when their rooms have polls.
    pub(super) fn new(clients: usize, polls: bool) -> Counters {
        Counters {
            connected: 0,
            connect_failed: 0,
            joined: 0,
            settled: 0,
            publishers_ready: 0,
            first_connect: None,
            last_connect: None,
            connect_hist: stats::histogram(),
            latency_hist: stats::histogram(),
            members_now: BTreeMap::new(),
            members_at_start: BTreeMap::new(),
            sent_per_room: BTreeMap::new(),
            received: 0,
            gaps: 0,
            reorders: 0,
            rejoins: 0,
            rejoins_not_recovered: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
            closes: BTreeMap::new(),
            storm: StormCounters::new(),
            lost: StormCounters::new(),
            votes_sent: 0,
            vote_retries: 0,
            votes_acked_per_room: BTreeMap::new(),
            vote_error_kinds: BTreeMap::new(),
            vote_hist: stats::histogram(),
            last_ack_us: 0,
            tallies: if polls {
                vec![None; clients]
            } else {
                Vec::new()
            },
        }
    }

    /// Counts one error of `kind`.
    pub(super) fn error(&mut self, kind: impl Into<String>) {
        self.errors += 1;
        *self.error_kinds.entry(kind.into()).or_default() += 1;
    }

    /// Counts one close with `code`.
    pub(super) fn close(&mut self, code: impl Into<String>) {
        *self.closes.entry(code.into()).or_default() += 1;
    }

    /// The `progress` line for the coordinator's bars.
    pub(super) fn progress(&self) -> serde_json::Value {
        serde_json::json!({
            "t": "progress", "connected": self.connected, "settled": self.settled,
            "received": self.received, "back": self.storm.back + self.lost.back, "errors": self.errors,
            "votes_acked": self.votes_acked_per_room.values().sum::<u64>(),
        })
    }

    /// The final report of the worker that ran `plan`.
    pub(super) fn report(&self, plan: &WorkerPlan) -> WorkerReport {
        let c = self;
        let span = match (c.first_connect, c.last_connect) {
            (Some(a), Some(b)) => b.duration_since(a).as_micros() as u64,
            _ => 0,
        };
        let storm = (plan.scenario == Scenario::ReconnectStorm).then(|| c.storm.report());
        let reconnects = plan.reconnect.then(|| c.lost.report());
        WorkerReport {
            worker: plan.worker,
            connected: c.connected,
            connect_failed: c.connect_failed,
            joined: c.joined,
            connect_hist: stats::encode(&c.connect_hist),
            connect_span_us: span,
            sent_per_room: c.sent_per_room.clone(),
            members_per_room: c.members_at_start.clone(),
            received: c.received,
            latency_hist: stats::encode(&c.latency_hist),
            gaps: c.gaps,
            reorders: c.reorders,
            rejoins: c.rejoins,
            rejoins_not_recovered: c.rejoins_not_recovered,
            errors: c.errors,
            error_kinds: c.error_kinds.clone(),
            closes: c.closes.clone(),
            storm,
            reconnects,
            votes: plan.vote_window().map(|_| {
                let mut tallies: BTreeMap<usize, RoomTally> = BTreeMap::new();
                for (room, t) in c.tallies.iter().flatten() {
                    tallies.entry(*room).or_default().merge(t);
                }
                VoteReport {
                    sent: c.votes_sent,
                    retries: c.vote_retries,
                    acked_per_room: c.votes_acked_per_room.clone(),
                    error_kinds: c.vote_error_kinds.clone(),
                    latency_hist: stats::encode(&c.vote_hist),
                    last_ack_us: c.last_ack_us,
                    tallies,
                }
            }),
            cpu_s: crate::procstat::sample(None).map_or(0.0, |s| s.cpu_s),
        }
    }
}
