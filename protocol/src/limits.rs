//! The protocol's fixed limits and defaults, shared by the engine, the REST API and the load
//! harness.

/// Largest `history:n` a client may ask for in `join_room`.
pub const MAX_HISTORY_REQUEST: u32 = 100;

/// Most members listed in the presence snapshot of `ROOM_JOINED`; `count` is always exact.
pub const MAX_PRESENCE_SNAPSHOT: usize = 100;

/// Default heartbeat interval announced in `HELLO`.
pub const DEFAULT_HEARTBEAT_MS: u64 = 25_000;

/// Most sessions one event may have in the REST API, so an event's agenda is one bounded
/// answer; the load harness splits its rooms over events by it.
pub const MAX_SESSIONS_PER_EVENT: usize = 500;
