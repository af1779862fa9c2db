//! Range checks that serde cannot express.

use super::{Settings, SettingsError};

/// The most runtime worker threads a node may ask for: far beyond any machine's cores, low
/// enough that a typo (a port number, say) is refused rather than spawning that many threads.
const MAX_WORKERS: usize = 1024;

impl Settings {
    /// Checks ranges that serde cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        fn check(ok: bool, field: &'static str, reason: &str) -> Result<(), SettingsError> {
            if ok {
                Ok(())
            } else {
                Err(SettingsError::Invalid {
                    field,
                    reason: reason.into(),
                })
            }
        }
        let b = &self.broker;
        check(
            b.url == "memory"
                || [
                    "redis://",
                    "rediss://",
                    "redis-cluster://",
                    "rediss-cluster://",
                ]
                .iter()
                .any(|p| b.url.starts_with(p)),
            "broker.url",
            "must be `memory`, `redis://…` or `redis-cluster://…`",
        )?;
        check(
            b.probe_interval_ms >= 10 && b.probe_timeout_ms > b.probe_interval_ms,
            "broker.probe_timeout_ms",
            "probe_interval_ms must be at least 10 and probe_timeout_ms above it",
        )?;
        check(
            b.command_timeout_ms >= 100,
            "broker.command_timeout_ms",
            "must be at least 100",
        )?;
        check(
            self.presence.ttl_ms >= 300,
            "presence.ttl_ms",
            "must be at least 300",
        )?;
        let l = &self.limits;
        check(
            self.heartbeat_ms >= 1_000,
            "heartbeat_ms",
            "must be at least 1000",
        )?;
        check(
            l.max_connections > 0,
            "limits.max_connections",
            "must be positive",
        )?;
        check(
            (256..=1 << 20).contains(&l.read_buffer_bytes),
            "limits.read_buffer_bytes",
            "must be 256 B to 1 MiB",
        )?;
        check(
            (1024..=64 << 20).contains(&l.max_message_bytes),
            "limits.max_message_bytes",
            "must be 1 KiB to 64 MiB",
        )?;
        check(
            l.queue_max_bytes >= 16 * 1024,
            "limits.queue_max_bytes",
            "must be at least 16 KiB",
        )?;
        check(
            (1024..=l.queue_max_bytes).contains(&l.frame_batch_bytes),
            "limits.frame_batch_bytes",
            "must be 1 KiB to limits.queue_max_bytes",
        )?;
        check(l.ops_per_sec > 0, "limits.ops_per_sec", "must be positive")?;
        check(l.ops_burst > 0, "limits.ops_burst", "must be positive")?;
        check(
            l.flood_strikes > 0,
            "limits.flood_strikes",
            "must be positive",
        )?;
        check(
            l.bad_frame_strikes > 0,
            "limits.bad_frame_strikes",
            "must be positive",
        )?;
        check(
            l.max_text_bytes > 0,
            "limits.max_text_bytes",
            "must be positive",
        )?;
        check(
            l.max_text_bytes < l.max_message_bytes,
            "limits.max_text_bytes",
            "must be below limits.max_message_bytes",
        )?;
        // Keys are checked now, so a bad secret or key file stops the start with its reason.
        self.api
            .jwt
            .verifier()
            .map_err(|e| SettingsError::Invalid {
                field: "jwt",
                reason: e.to_string(),
            })?;
        check(self.api.pool_size > 0, "pool_size", "must be positive")?;
        check(
            self.api.offer_ttl_secs > 0,
            "offer_ttl_secs",
            "must be positive",
        )?;
        check(
            self.api.sweep_interval_ms >= 10,
            "sweep_interval_ms",
            "must be at least 10",
        )?;
        check(
            self.api.max_body_bytes >= 1024,
            "max_body_bytes",
            "must be at least 1024",
        )?;
        check(
            (100..=600_000).contains(&self.ticket_cache_ms),
            "ticket_cache_ms",
            "must be 100 to 600000",
        )?;
        check(
            (1..=86_400).contains(&self.token_expiry_warning_secs),
            "token_expiry_warning_secs",
            "must be 1 to 86400",
        )?;
        check(self.history.size > 0, "history.size", "must be positive")?;
        check(
            self.history.ttl_secs > 0,
            "history.ttl_secs",
            "must be positive",
        )?;
        check(
            self.history.meta_ttl_secs >= self.history.ttl_secs,
            "history.meta_ttl_secs",
            "must be at least history.ttl_secs",
        )?;
        check(
            self.history.idempotency_max_keys > 0,
            "history.idempotency_max_keys",
            "must be positive",
        )?;
        check(
            self.workers <= MAX_WORKERS,
            "workers",
            "must be 0 (one per core) to 1024",
        )?;
        check(
            (10..=10_000).contains(&self.tick_ms),
            "tick_ms",
            "must be 10 to 10000",
        )?;
        check(
            (10..=60_000).contains(&self.tick_max_ms),
            "tick_max_ms",
            "must be 10 to 60000 (at or below tick_ms: the tick never stretches)",
        )?;
        check(
            (1..=60_000).contains(&self.vote_wait_ms),
            "vote_wait_ms",
            "must be 1 to 60000",
        )?;
        check(
            self.tls.cert_path.is_some() == self.tls.key_path.is_some(),
            "tls",
            "set both tls.cert_path and tls.key_path, or neither",
        )?;
        let sio = &self.socketio;
        check(
            (1_000..=600_000).contains(&sio.ping_interval_ms),
            "socketio.ping_interval_ms",
            "must be 1000 to 600000",
        )?;
        check(
            (1_000..=600_000).contains(&sio.ping_timeout_ms),
            "socketio.ping_timeout_ms",
            "must be 1000 to 600000",
        )?;
        check(
            (1_000..=600_000).contains(&sio.connect_timeout_ms),
            "socketio.connect_timeout_ms",
            "must be 1000 to 600000",
        )?;
        check(
            (1024..=l.max_message_bytes).contains(&sio.max_payload),
            "socketio.max_payload",
            "must be 1 KiB to limits.max_message_bytes",
        )?;
        let a = &self.admin;
        check(
            (1..=1_000).contains(&a.top_rooms),
            "admin.top_rooms",
            "must be 1 to 1000",
        )?;
        check(
            (100..=600_000).contains(&a.snapshot_every_ms),
            "admin.snapshot_every_ms",
            "must be 100 to 600000",
        )?;
        check(
            a.snapshot_ttl_ms > a.snapshot_every_ms,
            "admin.snapshot_ttl_ms",
            "must be above admin.snapshot_every_ms",
        )?;
        check(
            (a.top_rooms..=10_000).contains(&a.snapshot_rooms),
            "admin.snapshot_rooms",
            "must be admin.top_rooms to 10000",
        )?;
        check(
            (1..=10_000).contains(&a.snapshot_orgs),
            "admin.snapshot_orgs",
            "must be 1 to 10000",
        )?;
        if let Some(node) = &self.node_id {
            evd_protocol::room::validate_id(node).map_err(|e| SettingsError::Invalid {
                field: "node_id",
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }
}
