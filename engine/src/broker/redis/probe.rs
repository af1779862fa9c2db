//! The liveness probe: each round this node `SPUBLISH`es to a probe channel of its own on every
//! primary it listens to and expects the message back within `broker.probe_timeout_ms`; the
//! rooms on a primary that stays silent are resubscribed. The round also follows the slot map
//! and reaps delayed unsubscribes.

use super::Inner;
use super::keys::value_u64;
use fred::prelude::*;
use fred::types::cluster::ClusterRouting;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Prefix of probe channels; the hash tag holds the node id and a number picking the primary.
pub(super) const PROBE_PREFIX: &str = "evd:probe:";

/// Numbers tried per primary for a probe channel whose slot it owns: with 16,384 slots spread
/// over the primaries, one turns up in the first few thousand.
const PROBE_CHANNEL_TRIES: u32 = 100_000;

/// One probe channel: the primary it lands on and the probe in flight there.
pub(super) struct Probe {
    server: Option<Server>,
    subscribed: bool,
    sent: Option<(u64, Instant)>,
    seq: u64,
    /// Its last probe timed out or could not be sent or subscribed, and none came back since.
    failing: bool,
}

impl Inner {
    /// A probe came back: records its round trip.
    pub(super) fn on_probe(&self, channel: &str, value: &Value) {
        let seq = value_u64(value);
        let mut probes = self.probes.lock();
        if let Some(p) = probes.get_mut(channel)
            && let Some((sent_seq, at)) = p.sent
            && Some(sent_seq) == seq
        {
            self.metrics
                .probe_latency
                .record(at.elapsed().as_secs_f64());
            p.sent = None;
            p.failing = false;
        }
    }

    /// Whether Redis answers: no probe channel is failing. What readiness reports, beside the
    /// client library's connection state.
    pub(super) fn is_answering(&self) -> bool {
        !self.probes.lock().values().any(|p| p.failing)
    }

    /// The pub/sub connection to `server` was re-established: its probe channels subscribe again
    /// and nothing is in flight there.
    pub(super) fn reset_probes(&self, server: &Server) {
        self.probes.lock().values_mut().for_each(|p| {
            if p.server.as_ref().is_none_or(|s| s == server) {
                p.subscribed = false;
                p.sent = None;
            }
        });
    }

    /// The probe channels this node needs: one on every primary (one for a single Redis).
    fn probe_targets(&self) -> Vec<(String, Option<Server>)> {
        let base = format!("{PROBE_PREFIX}{{{}", self.node);
        let Some(state) = self.conn.sub.cached_cluster_state() else {
            return vec![(format!("{base}}}"), None)];
        };
        let mut out = Vec::new();
        for server in state.unique_primary_nodes() {
            for i in 0..PROBE_CHANNEL_TRIES {
                let channel = format!("{base}:{i}}}");
                let slot = ClusterRouting::hash_key(channel.as_bytes());
                if state.get_server(slot) == Some(&server) {
                    out.push((channel, Some(server)));
                    break;
                }
            }
        }
        out
    }

    /// One probe round: checks answers, sends new probes, follows the slot map and reaps
    /// delayed unsubscribes.
    async fn probe_round(self: &Arc<Self>) {
        let timeout = Duration::from_millis(self.settings.probe_timeout_ms);
        if self.conn.clustered {
            self.follow_slot_map().await;
        }
        // Probes: a missing answer means the subscriptions on that primary may be dead.
        let targets = self.probe_targets();
        let mut failed = Vec::new();
        let mut to_subscribe = Vec::new();
        let mut to_send = Vec::new();
        {
            let mut probes = self.probes.lock();
            probes.retain(|ch, _| targets.iter().any(|(t, _)| t == ch));
            for (channel, server) in targets {
                let p = probes.entry(channel.clone()).or_insert(Probe {
                    server: server.clone(),
                    subscribed: false,
                    sent: None,
                    seq: 0,
                    failing: false,
                });
                if let Some((_, at)) = p.sent
                    && at.elapsed() > timeout
                {
                    failed.push(p.server.clone());
                    p.subscribed = false;
                    p.sent = None;
                    p.failing = true;
                }
                if !p.subscribed {
                    to_subscribe.push(channel.clone());
                } else if p.sent.is_none() {
                    p.seq += 1;
                    p.sent = Some((p.seq, Instant::now()));
                    to_send.push((channel, p.seq));
                }
            }
        }
        for channel in to_subscribe {
            let ok = self.conn.sub.ssubscribe(channel.clone()).await.is_ok();
            if let Some(p) = self.probes.lock().get_mut(&channel) {
                p.subscribed = ok;
                p.failing |= !ok;
            }
        }
        for (channel, seq) in to_send {
            let sent: Result<i64, _> = self.conn.client.spublish(channel.clone(), seq).await;
            if sent.is_err()
                && let Some(p) = self.probes.lock().get_mut(&channel)
            {
                // The primary is unreachable right now; the reconnect path resubscribes.
                p.sent = None;
                p.failing = true;
            }
        }
        // Up: both clients connected and every primary's last probe came back in time.
        let up = self.conn.is_connected() && self.is_answering();
        self.metrics.connected.set(if up { 1.0 } else { 0.0 });
        if !failed.is_empty() {
            self.metrics.probe_failures.increment(failed.len() as u64);
            tracing::warn!(?failed, "broker probe timed out; resubscribing");
            let channels =
                self.channels_where(|_, r| failed.iter().any(|s| s.is_none() || *s == r.owner));
            self.resubscribe(channels, "probe").await;
        }
        self.reap_unsubscribes().await;
    }
}

/// Runs a probe round every `broker.probe_interval_ms` until shutdown, then closes the
/// connection.
pub(super) async fn probe_loop(inner: Arc<Inner>, stopped: impl std::future::Future<Output = ()>) {
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(Duration::from_millis(inner.settings.probe_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = tick.tick() => inner.probe_round().await,
        }
    }
    inner.conn.quit().await;
}
