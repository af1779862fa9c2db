//! One `Settings` struct for the engine: defaults, then an optional TOML file, then `EVD_*`
//! environment variables.
//!
//! Environment names are `EVD_<FIELD>` for top-level fields and `EVD_<SECTION>_<FIELD>` for
//! fields of a section, e.g. `EVD_LISTEN`, `EVD_JWT_SECRET`, `EVD_LIMITS_QUEUE_MAX_BYTES`.
//! Every limit lives here with the reason for its default.

use evd_api::rate_limit::RateLimitSettings;
use evd_protocol::auth::JwtSettings;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Sections whose fields are reached as `EVD_<SECTION>_<FIELD>`.
const SECTIONS: [&str; 8] = [
    "jwt",
    "broker",
    "tls",
    "limits",
    "history",
    "presence",
    "drain",
    "rate_limit",
];

/// `EVD_*` variables that are not settings: read by the binary or the test suites.
const IGNORED_ENV: [&str; 3] = ["CONFIG", "LOG", "REQUIRE_SERVICES"];

fn map_env_key(key: &figment::value::UncasedStr) -> figment::value::Uncased<'_> {
    let lower = key.as_str().to_ascii_lowercase();
    for section in SECTIONS {
        if let Some(rest) = lower
            .strip_prefix(section)
            .and_then(|r| r.strip_prefix('_'))
        {
            return format!("{section}.{rest}").into();
        }
    }
    lower.into()
}

/// Dotted names of every setting, from the serialized defaults.
fn known_keys() -> Vec<String> {
    let mut keys = Vec::new();
    if let Ok(serde_json::Value::Object(top)) = serde_json::to_value(Settings::default()) {
        for (k, v) in top {
            match v {
                serde_json::Value::Object(section) => {
                    keys.extend(section.keys().map(|f| format!("{k}.{f}")));
                }
                _ => keys.push(k),
            }
        }
    }
    keys
}

/// Everything the engine can be configured with.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// This node's id in `HELLO` and in broker traffic; random when unset.
    pub node_id: Option<String>,
    /// Interval clients must ping within; silence for twice this closes with 4012.
    pub heartbeat_ms: u64,
    /// Presence changes, poll results and question votes are coalesced per room over this tick,
    /// in ms: a burst of 10,000 votes costs a handful of broadcasts, and 200 ms still reads as
    /// live on a screen.
    pub tick_ms: u64,
    /// Token verification.
    pub jwt: JwtSettings,
    /// The SQL store: `sqlite://path` (created, WAL) or `postgres://…`. Also read from plain
    /// `DATABASE_URL`; `EVD_DATABASE_URL` wins.
    pub database_url: String,
    /// Database connections (SQLite: readers; writes share one connection).
    pub pool_size: u32,
    /// How long a waitlist offer holds its seat, seconds.
    pub offer_ttl_secs: u64,
    /// How often lapsed offers are expired and due polls closed, ms.
    pub sweep_interval_ms: u64,
    /// Largest REST request body.
    pub max_body_bytes: usize,
    /// Per-user REST request rate.
    pub rate_limit: RateLimitSettings,
    /// How long a ticket lookup for room access is trusted, ms: a cancelled ticket stops new
    /// joins within this long. A refusal is trusted for one second only, so a fresh ticket
    /// works at once.
    pub ticket_cache_ms: u64,
    /// Serve `wss://` directly when both paths are set.
    pub tls: TlsSettings,
    /// Per-connection and per-node limits.
    pub limits: Limits,
    /// The per-room message window used for `history` and recovery.
    pub history: HistorySettings,
    /// Presence coalescing.
    pub presence: PresenceSettings,
    /// Where rooms fan out between nodes: in memory (one node) or Redis.
    pub broker: BrokerSettings,
    /// Graceful shutdown.
    pub drain: DrainSettings,
    /// Test only: serve `/echo`, a WebSocket echo endpoint on the engine's own connection stack,
    /// for the Autobahn compliance suite. Never enable it in production.
    pub test_echo: bool,
}

/// TLS certificate and key (PEM). Both set: serve TLS; neither: plain TCP.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// Certificate chain, PEM.
    pub cert_path: Option<PathBuf>,
    /// Private key, PEM.
    pub key_path: Option<PathBuf>,
}

/// Named limits. Nothing in the engine grows without one of these bounding it.
#[derive(Clone, PartialEq, Serialize, Deserialize, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Connections one node accepts; more get HTTP 503. Sized for a node with a raised
    /// `ulimit -n`; each idle connection costs a few KiB.
    pub max_connections: usize,
    /// New WebSocket connections per second per client IP (0 = unlimited). Stops a reconnect
    /// loop or a scripted flood from one address; a NAT of many users needs it raised.
    pub conn_rate_per_ip: u32,
    /// Burst allowance for `conn_rate_per_ip`.
    pub conn_burst_per_ip: u32,
    /// Largest client message accepted; bigger closes with 1009. Ops are small; 64 KiB leaves
    /// room for long chat texts while capping what one frame can make the server buffer.
    pub max_message_bytes: usize,
    /// Read buffer per connection. Small on purpose: most connections are idle, and tungstenite
    /// fills the whole buffer on every read, so it is resident for every one of them (its
    /// default is 128 KiB). Client frames are small ops (a chat message with a 64-byte text is
    /// about 150 bytes); a larger one is read in several reads and grows the buffer for its
    /// connection.
    pub read_buffer_bytes: usize,
    /// Outbound queue per connection, in bytes. A client that falls this far behind is closed
    /// with 4008 instead of making the server buffer for it.
    pub queue_max_bytes: usize,
    /// Most bytes packed into one outgoing frame (a JSON or MessagePack array of events).
    pub frame_batch_bytes: usize,
    /// Rooms one connection may be in besides its own `user:` room.
    pub rooms_per_connection: usize,
    /// Ops per second per connection (token bucket refill).
    pub ops_per_sec: u32,
    /// Burst of ops per connection.
    pub ops_burst: u32,
    /// Rate-limited ops a connection may send before it is closed with 4029 for flooding.
    /// Refills at `ops_per_sec / 5`, so only sustained flooding trips it.
    pub flood_strikes: u32,
    /// Malformed frames a connection may send before it is closed with 4500. Refills slowly.
    pub bad_frame_strikes: u32,
    /// Longest chat or question text, in bytes; longer answers `too_large`.
    pub max_text_bytes: usize,
    /// Longest `client_id`, in bytes; longer answers `too_large`.
    pub max_client_id_bytes: usize,
}

/// The per-room message window.
#[derive(Clone, PartialEq, Serialize, Deserialize, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct HistorySettings {
    /// Messages kept per room. Recovery replays at most this many.
    pub size: usize,
    /// How long a message stays in the window, seconds.
    pub ttl_secs: u64,
    /// How long an idle room keeps its epoch and offset after its last message, seconds. After
    /// that the room starts a new epoch and recovering clients get `recovered:false`.
    pub meta_ttl_secs: u64,
    /// `client_id`s remembered per room for idempotency (each at least 5 minutes). Bounds the
    /// memory a burst of unique ids can take.
    pub idempotency_max_keys: usize,
}

/// Presence.
#[derive(Clone, PartialEq, Serialize, Deserialize, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceSettings {
    /// Above this many members a room's `PRESENCE_UPDATE` carries `count` only: listing joins of
    /// a 10,000-member room to 10,000 members costs more than it tells.
    pub full_room_limit: u64,
    /// With the Redis broker: how long a node's members stay listed after its last heartbeat,
    /// ms. A node that dies leaves no ghosts after this (plus one heartbeat, when the sweep
    /// runs); nodes heartbeat every third of it.
    pub ttl_ms: u64,
}

/// The broker between nodes.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSettings {
    /// `memory` (one node, the default), `redis://host:port` (one Redis) or
    /// `redis-cluster://h1:p1,h2:p2,h3:p3` (Redis Cluster seed nodes). Also read from plain
    /// `REDIS_URL`; `EVD_BROKER_URL` wins.
    pub url: String,
    /// How long a room stays subscribed after its last local member left, ms: a member who
    /// leaves and rejoins (a page reload) costs no SSUBSCRIBE/SUNSUBSCRIBE pair.
    pub unsubscribe_delay_ms: u64,
    /// How often each pub/sub connection is probed with a message to itself, and the cluster's
    /// slot map is checked, ms. A subscription that silently died is found within about
    /// `probe_timeout_ms` of it.
    pub probe_interval_ms: u64,
    /// A probe not back within this long marks its connection dead: every room on it is
    /// resubscribed and its gap recovered from history, ms.
    pub probe_timeout_ms: u64,
    /// Longest wait for one Redis command, ms. A command to a primary that just died fails
    /// after this instead of holding the op, so the client gets an error it can retry.
    pub command_timeout_ms: u64,
}

/// Graceful shutdown.
#[derive(Clone, PartialEq, Serialize, Deserialize, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct DrainSettings {
    /// Clients are sent `RECONNECT` and closed with 4001 spread over this many ms, so they do
    /// not all reconnect to the other nodes at once.
    pub grace_ms: u64,
    /// Largest `after_ms` told to a client in `RECONNECT`; each gets a random value up to it.
    pub reconnect_after_max_ms: u64,
    /// How long to wait for a client's close reply after sending a close frame.
    pub close_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            node_id: None,
            heartbeat_ms: evd_protocol::DEFAULT_HEARTBEAT_MS,
            tick_ms: 200,
            jwt: JwtSettings::default(),
            database_url: "sqlite://evd.db".into(),
            pool_size: 8,
            offer_ttl_secs: 600,
            sweep_interval_ms: 1_000,
            max_body_bytes: 64 * 1024,
            rate_limit: RateLimitSettings::default(),
            ticket_cache_ms: 10_000,
            tls: TlsSettings::default(),
            limits: Limits::default(),
            history: HistorySettings::default(),
            presence: PresenceSettings::default(),
            broker: BrokerSettings::default(),
            drain: DrainSettings::default(),
            test_echo: false,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 100_000,
            conn_rate_per_ip: 50,
            conn_burst_per_ip: 100,
            max_message_bytes: 64 * 1024,
            read_buffer_bytes: 512,
            queue_max_bytes: 512 * 1024,
            frame_batch_bytes: 64 * 1024,
            rooms_per_connection: 100,
            ops_per_sec: 50,
            ops_burst: 100,
            flood_strikes: 100,
            bad_frame_strikes: 20,
            max_text_bytes: 4 * 1024,
            max_client_id_bytes: 64,
        }
    }
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            size: 100,
            ttl_secs: 300,
            meta_ttl_secs: 24 * 3600,
            idempotency_max_keys: 10_000,
        }
    }
}

impl Default for PresenceSettings {
    fn default() -> Self {
        PresenceSettings {
            full_room_limit: 1_000,
            ttl_ms: 30_000,
        }
    }
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            url: "memory".into(),
            unsubscribe_delay_ms: 5_000,
            probe_interval_ms: 1_000,
            probe_timeout_ms: 3_000,
            command_timeout_ms: 5_000,
        }
    }
}

impl fmt::Debug for BrokerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerSettings")
            .field("url", &evd_api::store::redact_url(&self.url))
            .field("unsubscribe_delay_ms", &self.unsubscribe_delay_ms)
            .field("probe_interval_ms", &self.probe_interval_ms)
            .field("probe_timeout_ms", &self.probe_timeout_ms)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .finish()
    }
}

impl Default for DrainSettings {
    fn default() -> Self {
        DrainSettings {
            grace_ms: 10_000,
            reconnect_after_max_ms: 2_000,
            close_timeout_ms: 5_000,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // JwtSettings' own Debug redacts the secret.
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("node_id", &self.node_id)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("tick_ms", &self.tick_ms)
            .field("jwt", &self.jwt)
            .field(
                "database_url",
                &evd_api::store::redact_url(&self.database_url),
            )
            .field("pool_size", &self.pool_size)
            .field("offer_ttl_secs", &self.offer_ttl_secs)
            .field("sweep_interval_ms", &self.sweep_interval_ms)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("rate_limit", &self.rate_limit)
            .field("ticket_cache_ms", &self.ticket_cache_ms)
            .field("tls", &self.tls)
            .field("limits", &self.limits)
            .field("history", &self.history)
            .field("presence", &self.presence)
            .field("broker", &self.broker)
            .field("drain", &self.drain)
            .field("test_echo", &self.test_echo)
            .finish()
    }
}

/// Settings could not be loaded or are out of range.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file or an environment variable did not parse.
    #[error("{0}")]
    Parse(#[from] Box<figment::Error>),
    /// A value is out of its allowed range.
    #[error("invalid setting `{field}`: {reason}")]
    Invalid {
        /// Dotted name of the field, e.g. `limits.queue_max_bytes`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Settings {
    /// Defaults, then `file` (TOML) if given, then plain `DATABASE_URL`, then `EVD_*` variables
    /// from the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        let database_url = Env::raw()
            .only(&["DATABASE_URL"])
            .map(|_| "database_url".into());
        let redis_url = Env::raw().only(&["REDIS_URL"]).map(|_| "broker.url".into());
        Self::from_figment(
            Self::figment(file)
                .merge(database_url)
                .merge(redis_url)
                .merge(Self::env()),
        )
    }

    /// The REST API's settings, from the same values.
    pub fn api(&self) -> evd_api::settings::Settings {
        evd_api::settings::Settings {
            listen: self.listen,
            database_url: self.database_url.clone(),
            pool_size: self.pool_size,
            offer_ttl_secs: self.offer_ttl_secs,
            sweep_interval_ms: self.sweep_interval_ms,
            max_body_bytes: self.max_body_bytes,
            rate_limit: self.rate_limit,
            jwt: self.jwt.clone(),
        }
    }

    /// The layered sources without the environment, for callers that add their own.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            fig = fig.merge(Toml::file_exact(path));
        }
        fig
    }

    /// `EVD_*` variables, mapped onto sections (`EVD_LIMITS_OPS_PER_SEC` → `limits.ops_per_sec`).
    /// Only names of real settings are read; [`Settings::unknown_env`] lists the others so the
    /// binary can warn about them (a typo must not pass silently, nor must another tool's
    /// `EVD_*` variable stop the engine from starting).
    pub fn env() -> Env {
        let known = known_keys();
        Env::prefixed("EVD_")
            .map(map_env_key)
            .filter(move |key| known.iter().any(|k| k == key.as_str()))
    }

    /// `EVD_*` variables in the environment that name no setting.
    pub fn unknown_env() -> Vec<String> {
        let known = known_keys();
        std::env::vars()
            .filter_map(|(k, _)| k.strip_prefix("EVD_").map(str::to_owned))
            .filter(|k| !IGNORED_ENV.contains(&k.as_str()))
            // Service URLs of the test suites (EVD_TEST_DATABASE_URL, …).
            .filter(|k| !k.starts_with("TEST_"))
            .filter(|k| !known.contains(&map_env_key(k.as_str().into()).to_string()))
            .map(|k| format!("EVD_{k}"))
            .collect()
    }

    /// Extracts and validates.
    pub fn from_figment(fig: Figment) -> Result<Settings, SettingsError> {
        let s: Settings = fig.extract().map_err(Box::new)?;
        s.validate()?;
        Ok(s)
    }

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
        self.jwt.verifier().map_err(|e| SettingsError::Invalid {
            field: "jwt",
            reason: e.to_string(),
        })?;
        check(self.pool_size > 0, "pool_size", "must be positive")?;
        check(
            self.offer_ttl_secs > 0,
            "offer_ttl_secs",
            "must be positive",
        )?;
        check(
            self.sweep_interval_ms >= 10,
            "sweep_interval_ms",
            "must be at least 10",
        )?;
        check(
            self.max_body_bytes >= 1024,
            "max_body_bytes",
            "must be at least 1024",
        )?;
        check(
            (100..=600_000).contains(&self.ticket_cache_ms),
            "ticket_cache_ms",
            "must be 100 to 600000",
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
            (10..=10_000).contains(&self.tick_ms),
            "tick_ms",
            "must be 10 to 10000",
        )?;
        check(
            self.tls.cert_path.is_some() == self.tls.key_path.is_some(),
            "tls",
            "set both tls.cert_path and tls.key_path, or neither",
        )?;
        if let Some(node) = &self.node_id {
            evd_protocol::room::validate_id(node).map_err(|e| SettingsError::Invalid {
                field: "node_id",
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_are_valid_and_listen_on_loopback_8080() {
        let s = Settings::default();
        s.validate().unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure type
    fn file_then_env_override_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "evd.toml",
                "heartbeat_ms = 5000\n[limits]\nops_per_sec = 7\n[jwt]\nsecret = \"from-file-from-file-from-file-xx\"\n",
            )?;
            jail.set_env("EVD_LIMITS_OPS_PER_SEC", "9");
            jail.set_env("EVD_JWT_SECRET", "from-env-from-env-from-env-from-env");
            jail.set_env("EVD_LISTEN", "127.0.0.1:9999");
            jail.set_env("EVD_HISTORY_TTL_SECS", "60");
            jail.set_env("DATABASE_URL", "postgres://plain@db/evd");
            jail.set_env("EVD_RATE_LIMIT_BURST", "7");
            let s = Settings::load(Some(Path::new("evd.toml"))).expect("loads");
            assert_eq!(s.heartbeat_ms, 5000);
            assert_eq!(s.limits.ops_per_sec, 9);
            assert_eq!(s.history.ttl_secs, 60);
            assert_eq!(s.listen.port(), 9999);
            assert_eq!(s.database_url, "postgres://plain@db/evd");
            assert_eq!(s.rate_limit.burst.get(), 7);
            assert_eq!(s.api().rate_limit.burst.get(), 7);
            assert_eq!(
                s.jwt.secret.as_deref(),
                Some("from-env-from-env-from-env-from-env")
            );
            let debug = format!("{s:?}");
            assert!(
                !debug.contains("from-env"),
                "Debug must redact the secret: {debug}"
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure type
    fn broker_url_from_redis_url_or_evd_broker_url_and_redacted() {
        Jail::expect_with(|jail| {
            assert_eq!(Settings::load(None).expect("loads").broker.url, "memory");
            jail.set_env("REDIS_URL", "redis://:hunter2@r1:6379");
            let s = Settings::load(None).expect("loads");
            assert_eq!(s.broker.url, "redis://:hunter2@r1:6379");
            assert!(
                !format!("{s:?}").contains("hunter2"),
                "the password is redacted"
            );
            jail.set_env("EVD_BROKER_URL", "redis-cluster://h1:7000,h2:7001");
            jail.set_env("EVD_BROKER_PROBE_INTERVAL_MS", "250");
            let s = Settings::load(None).expect("loads");
            assert_eq!(s.broker.url, "redis-cluster://h1:7000,h2:7001");
            assert_eq!(s.broker.probe_interval_ms, 250);
            jail.set_env("EVD_BROKER_URL", "kafka://nope");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("broker.url"), "{err}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure type
    fn bad_values_give_clear_errors() {
        Jail::expect_with(|jail| {
            jail.set_env("EVD_LIMITS_OPS_PER_SEC", "lots");
            let err = Settings::load(None).unwrap_err().to_string().to_lowercase();
            assert!(err.contains("ops_per_sec"), "{err}");
            jail.set_env("EVD_LIMITS_OPS_PER_SEC", "0");
            let err = Settings::load(None).unwrap_err().to_string();
            assert_eq!(
                err,
                "invalid setting `limits.ops_per_sec`: must be positive"
            );
            jail.set_env("EVD_LIMITS_OPS_PER_SEC", "5");
            jail.set_env("EVD_LIMITS_OPS_PER_SECOND", "5");
            jail.set_env("EVD_REQUIRE_SERVICES", "1");
            assert_eq!(Settings::load(None).unwrap().limits.ops_per_sec, 5);
            let unknown = Settings::unknown_env();
            assert!(
                unknown.contains(&"EVD_LIMITS_OPS_PER_SECOND".to_string()),
                "{unknown:?}"
            );
            assert!(
                !unknown
                    .iter()
                    .any(|k| k == "EVD_REQUIRE_SERVICES" || k == "EVD_LIMITS_OPS_PER_SEC"),
                "{unknown:?}"
            );
            jail.create_file("bad.toml", "[limits]\nops_per_second = 5\n")?;
            let err = Settings::load(Some(Path::new("bad.toml")))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("ops_per_second"),
                "unknown keys in the file are refused: {err}"
            );
            jail.create_file("tls.toml", "[tls]\ncert_path = \"c.pem\"\n")?;
            let err = Settings::load(Some(Path::new("tls.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("tls.key_path"), "{err}");
            Ok(())
        });
    }
}
