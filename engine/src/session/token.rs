//! When a connection's token runs out: `TOKEN_EXPIRING` a configured time before its `exp`, and
//! the close with 4501 once `exp` is past by `jwt.leeway_secs` (the clock skew the upgrade
//! forgave too). A `refresh` replaces the clock with one for the new token.
//!
//! This is two instants in the session, not a task or a timer of its own: the read loop already
//! sleeps until its heartbeat deadline, and it now wakes at whichever comes first.

use super::ops::refresh::exp_ms;
use crate::clock::{Millis, unix_ms};
use std::time::Duration;
use tokio::time::Instant;

/// A token's `exp` further away than this is treated as this far away: tokio's own "far
/// future", and far beyond any connection's life, so the instant arithmetic cannot overflow.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// What is due when the session wakes for its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenDue {
    /// Send `TOKEN_EXPIRING` with this `expires_at` (unix ms).
    Warn(Millis),
    /// The token is past its `exp` and the leeway: close with 4501.
    Expired,
}

/// One token's deadlines. See the module docs.
#[derive(Debug, Clone)]
pub struct TokenClock {
    /// The token's `exp`, unix ms, as the client is told.
    expires_at: Millis,
    /// When to send `TOKEN_EXPIRING`; `None` once sent.
    warn_at: Option<Instant>,
    /// When to close with 4501.
    close_at: Instant,
}

impl TokenClock {
    /// The deadlines of a token with `exp` (unix seconds), read against the wall clock now.
    pub fn new(exp_secs: u64, warning: Duration, leeway: Duration) -> TokenClock {
        let expires_at = exp_ms(exp_secs);
        let left = u64::try_from(expires_at.saturating_sub(unix_ms())).unwrap_or(0);
        let left = Duration::from_millis(left).min(FAR_FUTURE);
        let now = Instant::now();
        let exp = now + left;
        TokenClock {
            expires_at,
            // A token with less than twice the warning left is warned of at half its remaining
            // life: warned at once, a client that keeps getting such tokens would refresh in a
            // loop.
            warn_at: Some(exp - warning.min(left / 2)),
            close_at: exp + leeway,
        }
    }

    /// The next instant something is due.
    pub fn due(&self) -> Instant {
        self.warn_at.unwrap_or(self.close_at)
    }

    /// What is due at `now`, if anything; a warning is given once.
    pub fn fire(&mut self, now: Instant) -> Option<TokenDue> {
        if now >= self.close_at {
            return Some(TokenDue::Expired);
        }
        match self.warn_at {
            Some(at) if now >= at => {
                self.warn_at = None;
                Some(TokenDue::Warn(self.expires_at))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WARNING: Duration = Duration::from_secs(60);
    const LEEWAY: Duration = Duration::from_secs(30);

    fn in_secs(secs: i64) -> u64 {
        u64::try_from(unix_ms() / 1_000 + secs).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn warns_once_before_exp_then_expires_after_the_leeway() {
        let exp = in_secs(600);
        let mut clock = TokenClock::new(exp, WARNING, LEEWAY);
        let start = Instant::now();
        assert_eq!(clock.fire(start), None);
        let warn_at = clock.due();
        // exp is whole seconds, so up to a second nearer than 600 s.
        let before_exp = warn_at - start;
        assert!(
            before_exp > Duration::from_secs(538) && before_exp <= Duration::from_secs(540),
            "{before_exp:?}"
        );
        assert_eq!(clock.fire(warn_at), Some(TokenDue::Warn(exp_ms(exp))));
        assert_eq!(clock.fire(warn_at), None, "warned once");
        let close_at = clock.due();
        assert_eq!(close_at - warn_at, WARNING + LEEWAY);
        assert_eq!(clock.fire(close_at - Duration::from_millis(1)), None);
        assert_eq!(clock.fire(close_at), Some(TokenDue::Expired));
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_with_less_than_twice_the_warning_left_is_warned_of_at_half_its_life() {
        let exp = in_secs(10);
        let mut clock = TokenClock::new(exp, WARNING, LEEWAY);
        let now = Instant::now();
        let warn_at = clock.due();
        // 9 to 10 s left, so the warning comes after 4.5 to 5 s.
        assert!(
            warn_at - now > Duration::from_millis(4_400) && warn_at - now <= Duration::from_secs(5),
            "{:?}",
            warn_at - now
        );
        assert_eq!(clock.fire(now), None);
        assert_eq!(clock.fire(warn_at), Some(TokenDue::Warn(exp_ms(exp))));
        let close_at = clock.due();
        assert_eq!(close_at - warn_at, (warn_at - now) + LEEWAY);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_token_and_a_far_one_stay_in_range() {
        let now = Instant::now();
        let mut past = TokenClock::new(in_secs(-100), WARNING, LEEWAY);
        assert_eq!(past.fire(now + LEEWAY), Some(TokenDue::Expired));
        let far = TokenClock::new(u64::MAX, WARNING, LEEWAY);
        assert!(far.due() > now + Duration::from_secs(365 * 24 * 3600));
    }
}
