//! Wall-clock time for the engine: what goes on the wire (`ts`, `server_time`) and what the
//! relay and the broker compare against message stamps. The bottom layer: it imports nothing of
//! the engine, so every module may use it.

pub use evd_api::clock::{Clock, ManualClock, Millis};

/// Now, in unix milliseconds.
pub fn unix_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
