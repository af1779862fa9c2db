//! Per-user rate limits: one token bucket per (org, user).

use crate::error::ApiError;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Governor};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests between two sweeps of idle buckets, so the map of users stays bounded by the
/// users active in the last moments rather than every user ever seen.
pub const IDLE_SWEEP_EVERY: u64 = 10_000;

/// Per-user request rate (`[rate_limit]`, `EVD_RATE_LIMIT__*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Sustained requests per second per user. A dashboard polls a few times a second; a
    /// script importing an agenda does tens.
    pub per_second: NonZeroU32,
    /// Requests a user may send at once above the sustained rate.
    pub burst: NonZeroU32,
}

impl Default for RateLimitSettings {
    fn default() -> RateLimitSettings {
        RateLimitSettings {
            per_second: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// The buckets of every user.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Governor<(String, String), DefaultKeyedStateStore<(String, String)>, DefaultClock>,
    checks: AtomicU64,
}

impl RateLimiter {
    /// Buckets with `settings`.
    pub fn new(settings: RateLimitSettings) -> RateLimiter {
        RateLimiter {
            buckets: Governor::keyed(
                Quota::per_second(settings.per_second).allow_burst(settings.burst),
            ),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one request from the user's bucket.
    pub fn check(&self, org: &str, user: &str) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % IDLE_SWEEP_EVERY == IDLE_SWEEP_EVERY - 1 {
            self.buckets.retain_recent();
        }
        self.buckets
            .check_key(&(org.to_owned(), user.to_owned()))
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.buckets.clock().now());
                ApiError::RateLimited {
                    retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                }
            })
    }
}
