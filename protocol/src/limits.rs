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

/// Deepest nesting the decoders accept in a MessagePack frame or broker envelope. The deepest v1
/// value (an envelope relaying a `ROOM_JOINED` with its history) nests about 6 levels. rmp-serde's
/// own limit is 1,024, and 1,024 levels of flattened ops or tagged events (serde buffers each level)
/// overflow a 2 MiB thread stack in a debug build, which aborts the process: a 64 KiB frame of
/// nested one-key maps would do it. serde_json's own limit (128) is low enough already.
pub const MAX_MSGPACK_DEPTH: usize = 32;
