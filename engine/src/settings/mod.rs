//! One `Settings` struct for the engine: defaults, then an optional TOML file, then `EVD_*`
//! environment variables.
//!
//! Environment names are `EVD_<FIELD>` for top-level fields and `EVD_<SECTION>_<FIELD>` for
//! fields of a section, e.g. `EVD_LISTEN`, `EVD_JWT_SECRET`, `EVD_LIMITS_QUEUE_MAX_BYTES`.
//! Every limit lives here with the reason for its default; the REST API's settings (the store,
//! tokens, REST limits) are crud-api's own type, embedded as its field `api`.

use evd_api::settings::Settings as ApiSettings;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

mod load;
mod sections;
#[cfg(test)]
mod tests;
mod validate;

pub use sections::{
    AdminSettings, BrokerSettings, DrainSettings, HistorySettings, Limits, PresenceSettings,
    SocketIoSettings, TlsSettings,
};

/// Everything the engine can be configured with.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// This node's id in `HELLO` and in broker traffic; random when unset.
    pub node_id: Option<String>,
    /// Runtime worker threads; 0 means one per CPU core. Nodes that share a machine should
    /// split its cores (`scripts/cluster.sh` gives each of N nodes cores ÷ N, at least one):
    /// more busy threads than cores only adds context switches.
    pub workers: usize,
    /// Interval clients must ping within; silence for twice this closes with 4012.
    pub heartbeat_ms: u64,
    /// Presence changes, poll results and question votes are coalesced per room over this tick,
    /// in ms: a burst of 10,000 votes costs a handful of broadcasts, and 200 ms still reads as
    /// live on a screen.
    pub tick_ms: u64,
    /// The longest the tick stretches to when the node is busy, ms. A tick whose timer fired
    /// late or whose sending took long doubles the next interval (up to this); a tick that is
    /// neither halves it again (down to `tick_ms`). Changes keep accumulating meanwhile, so a
    /// longer tick costs freshness, never the last state: a room's last change always goes out.
    /// The tick keeps firing every `tick_ms` and spreads a longer interval over its ticks, each
    /// sending a share of the rooms. Two seconds still shows a tally move while a crowd votes.
    pub tick_max_ms: u64,
    /// How long a vote may wait to be taken into a commit before it is answered `rate_limited`
    /// with `retry_after_ms` instead, ms; such a vote is not recorded, and its retry is a first
    /// vote. Half a second keeps a vote's `ACK` within a second when the store or the node
    /// falls behind, rather than queueing for tens of seconds.
    pub vote_wait_ms: u64,
    /// The REST API's settings, crud-api's own type: `database_url`, `pool_size`,
    /// `offer_ttl_secs`, `sweep_interval_ms`, `max_body_bytes`, `[rate_limit]` and `[jwt]` (token
    /// verification, for the engine too). They are top-level keys of the same file and `EVD_*`
    /// variables, read as `evd-api` reads them (see the `load` module). Its `listen` is this
    /// struct's: the API is served on the engine's address, so [`Settings::api()`] is the way to
    /// hand it on.
    #[serde(skip)]
    pub api: ApiSettings,
    /// How long a ticket lookup for room access is trusted, ms: a cancelled ticket stops new
    /// joins within this long. A refusal is trusted for one second only, so a fresh ticket
    /// works at once.
    pub ticket_cache_ms: u64,
    /// A connection is sent `TOKEN_EXPIRING` this many seconds before its token's `exp` (at half
    /// the token's remaining life when that is sooner), so its client can `refresh` in time. A minute covers a client's token round trip to its
    /// backend even on a slow phone network, yet is short beside the minutes a token lives.
    pub token_expiry_warning_secs: u64,
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
    /// The Socket.IO endpoint.
    pub socketio: SocketIoSettings,
    /// The admin view's snapshots and bounds.
    pub admin: AdminSettings,
    /// Test only: serve `/echo`, a WebSocket echo endpoint on the engine's own connection stack,
    /// for the Autobahn compliance suite. Never enable it in production.
    pub test_echo: bool,
}

impl Default for Settings {
    fn default() -> Self {
        let listen = SocketAddr::from(([127, 0, 0, 1], 8080));
        Settings {
            listen,
            node_id: None,
            workers: 0,
            heartbeat_ms: evd_protocol::DEFAULT_HEARTBEAT_MS,
            tick_ms: 200,
            tick_max_ms: 2_000,
            vote_wait_ms: 500,
            api: ApiSettings {
                listen,
                ..ApiSettings::default()
            },
            ticket_cache_ms: 10_000,
            token_expiry_warning_secs: 60,
            tls: TlsSettings::default(),
            limits: Limits::default(),
            history: HistorySettings::default(),
            presence: PresenceSettings::default(),
            broker: BrokerSettings::default(),
            drain: DrainSettings::default(),
            socketio: SocketIoSettings::default(),
            admin: AdminSettings::default(),
            test_echo: false,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The API's own Debug redacts the database password and the JWT secret.
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("node_id", &self.node_id)
            .field("workers", &self.workers)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("tick_ms", &self.tick_ms)
            .field("tick_max_ms", &self.tick_max_ms)
            .field("vote_wait_ms", &self.vote_wait_ms)
            .field("api", &self.api)
            .field("ticket_cache_ms", &self.ticket_cache_ms)
            .field("token_expiry_warning_secs", &self.token_expiry_warning_secs)
            .field("tls", &self.tls)
            .field("limits", &self.limits)
            .field("history", &self.history)
            .field("presence", &self.presence)
            .field("broker", &self.broker)
            .field("drain", &self.drain)
            .field("socketio", &self.socketio)
            .field("admin", &self.admin)
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
    /// The REST API's settings, listening where the engine listens.
    pub fn api(&self) -> ApiSettings {
        ApiSettings {
            listen: self.listen,
            ..self.api.clone()
        }
    }

    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
}
