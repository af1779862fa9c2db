//! Prometheus metrics, all prefixed `evd_`.
//!
//! The recorder is process-global (the `metrics` crate's design), installed once by the first
//! node; [`Metrics`] holds pre-registered handles so the per-delivery paths do no name lookups.

use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// Open connections, by `protocol` (`evd`, `socketio`).
pub const CONNECTIONS: &str = "evd_connections";
/// Connections accepted (upgraded, or for Socket.IO connected), by `protocol`.
pub const CONNECTIONS_ACCEPTED: &str = "evd_connections_accepted_total";
/// Connections closed, by `reason` and `protocol`.
pub const CONNECTIONS_CLOSED: &str = "evd_connections_closed_total";
/// Upgrade requests refused before the upgrade, by `reason`.
pub const CONNECTIONS_REJECTED: &str = "evd_connections_rejected_total";
/// Rooms with at least one local member.
pub const ROOMS: &str = "evd_rooms";
/// Successful `join_room` ops (and automatic `user:` joins).
pub const ROOM_JOINS: &str = "evd_room_joins_total";
/// Client ops received, by `op` and `protocol`.
pub const OPS: &str = "evd_ops_total";
/// `ERROR` replies, by `code`.
pub const OP_ERRORS: &str = "evd_op_errors_total";
/// Events queued to connections, by `event`.
pub const EVENTS_OUT: &str = "evd_events_out_total";
/// Room broadcasts handed to member queues (one per member per event).
pub const DELIVERIES: &str = "evd_deliveries_total";
/// Time from the hub receiving a publication to the writer handing it to the socket.
pub const FANOUT_LATENCY: &str = "evd_fanout_latency_seconds";
/// Queued events dropped because their connection was closed as a slow consumer.
pub const QUEUE_DROPS: &str = "evd_queue_dropped_total";
/// Connections closed with 4008 because their outbound queue went over its limit.
pub const SLOW_CONSUMER_CLOSES: &str = "evd_slow_consumer_closes_total";
/// Bytes waiting in all outbound queues.
pub const QUEUE_BYTES: &str = "evd_queue_bytes";
/// WebSocket frames written.
pub const FRAMES_OUT: &str = "evd_frames_out_total";
/// Payload bytes written.
pub const BYTES_OUT: &str = "evd_bytes_out_total";
/// Broker operations that failed, by `op`.
pub const BROKER_ERRORS: &str = "evd_broker_errors_total";
/// The broker operations counted in [`BROKER_ERRORS`], pre-registered at zero.
const BROKER_ERROR_OPS: [&str; 5] = [
    "subscribe",
    "unsubscribe",
    "broadcast",
    "publish",
    "resubscribe",
];

/// 1 while the broker is up: its connections are open and every pub/sub connection answered its
/// last liveness probe in time (always 1 in memory).
pub const BROKER_CONNECTED: &str = "evd_broker_connected";
/// Rooms re-subscribed at the broker, by `reason` (`reconnect`, `probe`, `slot_moved`, `lagged`).
pub const BROKER_RESUBSCRIBES: &str = "evd_broker_resubscribes_total";
/// Publishes and broadcasts the broker refused or could not reach.
pub const BROKER_PUBLISH_ERRORS: &str = "evd_broker_publish_errors_total";
/// Liveness probes not answered in time (each resubscribes its primary's rooms).
pub const BROKER_PROBE_FAILURES: &str = "evd_broker_probe_failures_total";
/// Round trip of a liveness probe through a pub/sub connection.
pub const BROKER_PROBE_LATENCY: &str = "evd_broker_probe_latency_seconds";
/// From a chat message being accepted to this node receiving it from the broker.
pub const BROKER_LAG: &str = "evd_broker_lag_seconds";
/// Gaps in a room's stream filled from history.
pub const BROKER_RECOVERIES: &str = "evd_broker_recoveries_total";
/// Rooms whose continuity was lost (new epoch, or a gap history no longer held): their local
/// members were asked to reconnect and recover.
pub const BROKER_CONTINUITY_LOST: &str = "evd_broker_continuity_lost_total";
/// Rooms whose history this node repaired after their Redis primary failed over.
pub const BROKER_REPAIRS: &str = "evd_broker_repairs_total";
/// Rooms this node is subscribed to at the broker.
pub const BROKER_SUBSCRIPTIONS: &str = "evd_broker_subscriptions";
/// Why rooms are re-subscribed; pre-registered so a dashboard has the series before the first.
const RESUBSCRIBE_REASONS: [&str; 5] =
    ["reconnect", "probe", "slot_moved", "slot_recheck", "lagged"];

/// `limits.max_connections` of this node, so "connections near the limit" is one division.
pub const CONNECTIONS_MAX: &str = "evd_connections_max";
/// 1 while `/readyz` would answer 200 (not draining, broker connected, store answering),
/// refreshed every few seconds by the node's readiness task.
pub const READY: &str = "evd_ready";
/// The process's resident set (`VmRSS` of `/proc/self/status`; absent where there is no
/// `/proc`), for memory per connection.
pub const RESIDENT_MEMORY: &str = "evd_process_resident_memory_bytes";

/// Outbox rows relayed to their rooms.
pub const OUTBOX_RELAYED: &str = "evd_outbox_relayed_total";
/// Outbox relay failures, by `stage` (`claim`, `decode`, `publish`, `mark`).
pub const OUTBOX_RELAY_ERRORS: &str = "evd_outbox_relay_errors_total";
/// The relay's failure stages, pre-registered at zero.
pub const OUTBOX_RELAY_STAGES: [&str; 4] = ["claim", "decode", "publish", "mark"];
/// From an outbox row being written to the relay publishing it.
pub const OUTBOX_RELAY_LAG: &str = "evd_outbox_relay_lag_seconds";
/// Outbox rows not yet sent, of every org (the same figure on every node: the outbox is shared).
pub const OUTBOX_PENDING: &str = "evd_outbox_pending";
/// Age of the oldest unsent outbox row, 0 when none waits.
pub const OUTBOX_OLDEST_PENDING_AGE: &str = "evd_outbox_oldest_pending_age_seconds";

/// Writes per committed group-commit batch, by `writer` (`votes`, `questions`, `upvotes`,
/// `archive`).
pub const GROUP_COMMIT_BATCH: &str = "evd_group_commit_batch_size";
/// From a write being queued to its batch's commit ending, by `writer`.
pub const GROUP_COMMIT_WAIT: &str = "evd_group_commit_wait_seconds";
/// Writes refused (`rate_limited`) because the writer's queue stayed full or they were not
/// taken into a commit by their deadline (`vote_wait_ms`), by `writer`.
pub const GROUP_COMMIT_BUSY: &str = "evd_group_commit_busy_total";
/// The tick's current interval (between `tick_ms` and `tick_max_ms`).
pub const TICK_INTERVAL: &str = "evd_tick_interval_seconds";
/// Per tick, how late its timer fired plus how long its sending took: the load that sets the
/// tick's pace.
pub const TICK_LOAD: &str = "evd_tick_load_seconds";

/// Events whose counters are pre-registered.
const EVENT_NAMES: [&str; 18] = [
    "HELLO",
    "ROOM_JOINED",
    "ROOM_LEFT",
    "ACK",
    "PONG",
    "MESSAGE_RECEIVED",
    "PRESENCE_UPDATE",
    "POLL_RESULTS",
    "POLL_CREATED",
    "POLL_CLOSED",
    "QUESTION_ASKED",
    "QUESTION_UPDATED",
    "WAITLIST_OFFER",
    "WAITLIST_UPDATE",
    "ERROR",
    "RECONNECT",
    "TOKEN_REFRESHED",
    "TOKEN_EXPIRING",
];

/// Latency buckets (seconds) for every `*_seconds` histogram: fine below the 100 ms target.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Buckets of [`GROUP_COMMIT_BATCH`]: powers of two up to the writers' largest batch (512).
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder (once per process) and returns the handle `/metrics` renders.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("evd_http_request_duration_seconds".into()),
                    &evd_api::telemetry::HTTP_DURATION_BUCKETS,
                )
                .expect("static buckets are valid")
                .set_buckets_for_metric(Matcher::Full(GROUP_COMMIT_BATCH.into()), &BATCH_BUCKETS)
                .expect("static buckets are valid")
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            evd_api::telemetry::describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_gauge!(CONNECTIONS, "Open connections, by protocol.");
    describe_counter!(CONNECTIONS_ACCEPTED, "Connections accepted, by protocol.");
    describe_counter!(
        CONNECTIONS_CLOSED,
        "Connections closed, by reason and protocol."
    );
    describe_counter!(CONNECTIONS_REJECTED, "Upgrade requests refused, by reason.");
    describe_gauge!(ROOMS, "Rooms with at least one local member.");
    describe_counter!(ROOM_JOINS, "Room joins.");
    describe_counter!(OPS, "Client ops received, by op and protocol.");
    describe_counter!(OP_ERRORS, "ERROR replies, by code.");
    describe_counter!(EVENTS_OUT, "Events queued to connections, by event.");
    describe_counter!(DELIVERIES, "Room broadcasts queued to members.");
    describe_histogram!(
        FANOUT_LATENCY,
        metrics::Unit::Seconds,
        "Time from the hub receiving a publication to the writer handing it to the socket, one \
         sample per connection written; a broadcast's chunk of direct writes shares the time its \
         last write ended."
    );
    describe_counter!(
        QUEUE_DROPS,
        "Queued events dropped when a slow consumer was closed."
    );
    describe_counter!(
        SLOW_CONSUMER_CLOSES,
        "Connections closed with 4008 (slow consumer)."
    );
    describe_gauge!(QUEUE_BYTES, "Bytes waiting in all outbound queues.");
    describe_counter!(FRAMES_OUT, "WebSocket frames written.");
    describe_counter!(BYTES_OUT, "Payload bytes written.");
    describe_counter!(BROKER_ERRORS, "Broker operations that failed, by op.");
    describe_gauge!(BROKER_CONNECTED, "1 while the broker connections are up.");
    describe_counter!(BROKER_RESUBSCRIBES, "Rooms re-subscribed, by reason.");
    describe_counter!(BROKER_PUBLISH_ERRORS, "Publishes the broker failed.");
    describe_counter!(
        BROKER_PROBE_FAILURES,
        "Liveness probes not answered in time."
    );
    describe_histogram!(
        BROKER_PROBE_LATENCY,
        metrics::Unit::Seconds,
        "Round trip of a pub/sub liveness probe."
    );
    describe_histogram!(
        BROKER_LAG,
        metrics::Unit::Seconds,
        "From a chat message being accepted to its arrival from the broker."
    );
    describe_counter!(BROKER_RECOVERIES, "Gaps filled from history.");
    describe_counter!(
        BROKER_CONTINUITY_LOST,
        "Rooms whose members were asked to reconnect and recover."
    );
    describe_counter!(
        BROKER_REPAIRS,
        "Rooms repaired from the chat archive after a Redis failover."
    );
    describe_gauge!(BROKER_SUBSCRIPTIONS, "Rooms subscribed at the broker.");
    describe_gauge!(CONNECTIONS_MAX, "limits.max_connections of this node.");
    describe_gauge!(READY, "1 while the node is ready (what /readyz answers).");
    describe_gauge!(
        RESIDENT_MEMORY,
        metrics::Unit::Bytes,
        "Resident memory of the process."
    );
    describe_counter!(OUTBOX_RELAYED, "Outbox rows relayed to their rooms.");
    describe_counter!(OUTBOX_RELAY_ERRORS, "Outbox relay failures, by stage.");
    describe_histogram!(
        OUTBOX_RELAY_LAG,
        metrics::Unit::Seconds,
        "From an outbox row being written to the relay publishing it."
    );
    describe_gauge!(OUTBOX_PENDING, "Outbox rows not yet sent, of every org.");
    describe_gauge!(
        OUTBOX_OLDEST_PENDING_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest unsent outbox row (0 when none waits)."
    );
    describe_histogram!(
        GROUP_COMMIT_BATCH,
        "Writes per group-commit batch, by writer."
    );
    describe_histogram!(
        GROUP_COMMIT_WAIT,
        metrics::Unit::Seconds,
        "From a write being queued to its batch's commit ending, by writer."
    );
    describe_counter!(
        GROUP_COMMIT_BUSY,
        "Writes refused because the writer's queue stayed full or their deadline passed, by writer."
    );
    describe_gauge!(
        TICK_INTERVAL,
        metrics::Unit::Seconds,
        "How often each room's coalesced changes go out (tick_ms while calm, up to tick_max_ms while busy, spread over that many ticks)."
    );
    describe_histogram!(
        TICK_LOAD,
        metrics::Unit::Seconds,
        "Per tick, its timer's lateness plus its sending time."
    );
}

/// Handles of the Redis broker.
#[derive(Debug, Clone)]
pub struct BrokerMetrics {
    /// [`BROKER_CONNECTED`].
    pub connected: Gauge,
    /// [`BROKER_PUBLISH_ERRORS`].
    pub publish_errors: Counter,
    /// [`BROKER_PROBE_FAILURES`].
    pub probe_failures: Counter,
    /// [`BROKER_PROBE_LATENCY`].
    pub probe_latency: Histogram,
    /// [`BROKER_LAG`].
    pub lag: Histogram,
    /// [`BROKER_RECOVERIES`].
    pub recoveries: Counter,
    /// [`BROKER_CONTINUITY_LOST`].
    pub lost: Counter,
    /// [`BROKER_SUBSCRIPTIONS`].
    pub subscriptions: Gauge,
    /// [`BROKER_REPAIRS`].
    pub repairs: Counter,
}

impl BrokerMetrics {
    /// Registers the handles.
    pub fn new() -> BrokerMetrics {
        for reason in RESUBSCRIBE_REASONS {
            counter!(BROKER_RESUBSCRIBES, "reason" => reason).increment(0);
        }
        BrokerMetrics {
            connected: gauge!(BROKER_CONNECTED),
            publish_errors: counter!(BROKER_PUBLISH_ERRORS),
            probe_failures: counter!(BROKER_PROBE_FAILURES),
            probe_latency: histogram!(BROKER_PROBE_LATENCY),
            lag: histogram!(BROKER_LAG),
            recoveries: counter!(BROKER_RECOVERIES),
            lost: counter!(BROKER_CONTINUITY_LOST),
            subscriptions: gauge!(BROKER_SUBSCRIPTIONS),
            repairs: counter!(BROKER_REPAIRS),
        }
    }

    /// Counts a resubscribed room.
    pub fn resubscribe(&self, reason: &'static str) {
        counter!(BROKER_RESUBSCRIBES, "reason" => reason).increment(1);
    }

    /// Counts a failed broker operation.
    pub fn errors(&self, op: &'static str) {
        counter!(BROKER_ERRORS, "op" => op).increment(1);
    }
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics::new()
    }
}

/// Pre-registered handles for the hot paths.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// [`ROOMS`].
    pub rooms: Gauge,
    /// [`ROOM_JOINS`].
    pub joins: Counter,
    /// [`DELIVERIES`].
    pub deliveries: Counter,
    /// [`FANOUT_LATENCY`].
    pub fanout_latency: Histogram,
    /// [`QUEUE_DROPS`].
    pub queue_drops: Counter,
    /// [`SLOW_CONSUMER_CLOSES`].
    pub slow_consumer_closes: Counter,
    /// [`QUEUE_BYTES`].
    pub queue_bytes: Gauge,
    /// [`FRAMES_OUT`].
    pub frames_out: Counter,
    /// [`BYTES_OUT`].
    pub bytes_out: Counter,
    /// [`OPS`] for `ping` on evd's protocol, resolved once: the heartbeat is the most frequent
    /// op, and a labelled lookup per ping costs more than the ping.
    pub evd_pings: Counter,
    /// Shared: every connection's writer holds a clone of these handles.
    events_out: Arc<HashMap<&'static str, Counter>>,
}

impl Metrics {
    /// Registers the handles; call after [`install`].
    pub fn new() -> Metrics {
        for op in BROKER_ERROR_OPS {
            counter!(BROKER_ERRORS, "op" => op).increment(0);
        }
        Metrics {
            rooms: gauge!(ROOMS),
            joins: counter!(ROOM_JOINS),
            deliveries: counter!(DELIVERIES),
            fanout_latency: histogram!(FANOUT_LATENCY),
            queue_drops: counter!(QUEUE_DROPS),
            slow_consumer_closes: counter!(SLOW_CONSUMER_CLOSES),
            queue_bytes: gauge!(QUEUE_BYTES),
            frames_out: counter!(FRAMES_OUT),
            bytes_out: counter!(BYTES_OUT),
            evd_pings: counter!(OPS, "op" => "ping", "protocol" => "evd"),
            events_out: Arc::new(
                EVENT_NAMES
                    .iter()
                    .map(|&n| (n, counter!(EVENTS_OUT, "event" => n)))
                    .collect(),
            ),
        }
    }

    /// Counts `n` events named `event` queued to connections.
    pub fn event_out(&self, event: &'static str, n: u64) {
        match self.events_out.get(event) {
            Some(c) => c.increment(n),
            None => counter!(EVENTS_OUT, "event" => event).increment(n),
        }
    }

    /// The open-connections gauge of one `protocol` (`evd`, `socketio`).
    pub fn connections(&self, protocol: &'static str) -> Gauge {
        gauge!(CONNECTIONS, "protocol" => protocol)
    }

    /// Counts an accepted connection.
    pub fn accepted(&self, protocol: &'static str) {
        counter!(CONNECTIONS_ACCEPTED, "protocol" => protocol).increment(1);
    }

    /// Counts a closed connection.
    pub fn closed(&self, reason: &'static str, protocol: &'static str) {
        counter!(CONNECTIONS_CLOSED, "reason" => reason, "protocol" => protocol).increment(1);
    }

    /// Counts a refused upgrade.
    pub fn rejected(&self, reason: &'static str) {
        counter!(CONNECTIONS_REJECTED, "reason" => reason).increment(1);
    }

    /// Counts an op received over `protocol`.
    pub fn op(&self, op: &'static str, protocol: &'static str) {
        counter!(OPS, "op" => op, "protocol" => protocol).increment(1);
    }

    /// Counts an `ERROR` reply.
    pub fn op_error(&self, code: &'static str) {
        counter!(OP_ERRORS, "code" => code).increment(1);
    }

    /// Counts a broker failure.
    pub fn broker_error(&self, op: &'static str) {
        counter!(BROKER_ERRORS, "op" => op).increment(1);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
