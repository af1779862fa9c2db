//! The sections of the engine's settings (`[limits]`, `[history]`, `[broker]`, …), each with the
//! reason for its defaults.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

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

/// The admin view (`/admin` on the page, `GET /admin/stats`): each node publishes a compact
/// snapshot of its state on the broker, and the endpoint sums the live ones.
#[derive(Clone, PartialEq, Serialize, Deserialize, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Rooms the view lists, by members and by traffic. A screen's worth: the view is for
    /// spotting the big and the busy rooms, not for browsing all of them.
    pub top_rooms: usize,
    /// How often each node publishes its snapshot, ms; also how often the page polls. Two
    /// seconds reads as live on a screen and costs each node one small write per period.
    pub snapshot_every_ms: u64,
    /// A snapshot older than this is dropped, ms: a node that stopped (or lost the broker)
    /// leaves the view after it. Several periods, so one late publish does not flicker a node.
    pub snapshot_ttl_ms: u64,
    /// Rooms one node's snapshot carries (its largest by members, and as many busiest by
    /// traffic), bounding the snapshot's size on a node with many rooms. Summed counts are exact
    /// for every room that is in each of its nodes' lists.
    pub snapshot_rooms: usize,
    /// Orgs one node's snapshot carries connection and room counts for (those with the most
    /// connections there).
    pub snapshot_orgs: usize,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            top_rooms: 10,
            snapshot_every_ms: 2_000,
            snapshot_ttl_ms: 10_000,
            snapshot_rooms: 100,
            snapshot_orgs: 100,
        }
    }
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

/// The Socket.IO endpoint, `/socket.io/` (Engine.IO v4, Socket.IO v5).
#[derive(Clone, PartialEq, Serialize, Deserialize, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct SocketIoSettings {
    /// How often the server pings a Socket.IO client, ms (`pingInterval` in the handshake).
    /// socket.io's own default, so clients tuned for it behave the same.
    pub ping_interval_ms: u64,
    /// How long after a ping the pong may take, ms (`pingTimeout`). A client silent for
    /// `ping_interval_ms + ping_timeout_ms` is closed as on a heartbeat timeout (4012), and the
    /// client gives up on a server silent as long.
    pub ping_timeout_ms: u64,
    /// How long a new connection may take to send its Socket.IO CONNECT, ms; socket.io's
    /// default. Until then it holds a connection slot and nothing else.
    pub connect_timeout_ms: u64,
    /// Largest packet a client may send, bytes (`maxPayload`). Ops are small; this matches
    /// `limits.max_message_bytes` by default and may not exceed it.
    pub max_payload: usize,
}

impl Default for SocketIoSettings {
    fn default() -> Self {
        SocketIoSettings {
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            connect_timeout_ms: 45_000,
            max_payload: 64 * 1024,
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
