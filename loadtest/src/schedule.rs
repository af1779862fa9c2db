//! When things happen: the publishers' open-loop send times, the gaps between a client's churn
//! rejoins, and the instant a client votes. Pure arithmetic, so the worker's timing can be tested
//! without a clock.

use std::time::Duration;

/// The open-loop schedule of one publisher: message `k` is due at `phase + k × interval` after
/// the start, whatever happened to the messages before it.
///
/// Publisher `p` of `n` is offset by `p / n` of an interval, so `n` publishers at `rate` each
/// send one message every `interval / n` together instead of `n` at once every `interval`. The
/// synchronized schedule (every phase 0) is the worst case, a burst per interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Schedule {
    /// Offset of message 0 from the start, µs.
    phase_us: f64,
    /// Time between two messages, µs.
    interval_us: f64,
    /// Messages in the run.
    total: u64,
}

impl Schedule {
    /// The schedule of publisher `p` of `publishers`, at `rate` messages per second for
    /// `duration`. `sync` gives every publisher phase 0. The count does not depend on the phase:
    /// `⌊rate × duration⌋`, the last one due before the end of the duration.
    pub(crate) fn new(
        rate: f64,
        duration: Duration,
        p: usize,
        publishers: usize,
        sync: bool,
    ) -> Schedule {
        if rate <= 0.0 {
            return Schedule {
                phase_us: 0.0,
                interval_us: f64::INFINITY,
                total: 0,
            };
        }
        let interval_us = 1e6 / rate;
        let phase_us = if sync || publishers == 0 {
            0.0
        } else {
            (p % publishers) as f64 / publishers as f64 * interval_us
        };
        Schedule {
            phase_us,
            interval_us,
            total: (rate * duration.as_secs_f64()).floor() as u64,
        }
    }

    /// Messages in the run.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// When message `k` is due, µs after the start.
    pub(crate) fn due_at_us(&self, k: u64) -> u64 {
        (self.phase_us + k as f64 * self.interval_us) as u64
    }

    /// How many messages are due `elapsed_us` after the start (those with `due_at_us ≤
    /// elapsed_us`), at most [`Schedule::total`]. A publisher that is behind sends them all at
    /// once, each stamped with its own due time.
    pub(crate) fn due_by(&self, elapsed_us: u64) -> u64 {
        if self.total == 0 || elapsed_us < self.due_at_us(0) {
            return 0;
        }
        // Saturates at 0 when the float lands just below the phase.
        let k = ((elapsed_us as f64 - self.phase_us) / self.interval_us).floor() as u64;
        // The float division may land one off the integer `due_at_us`; that one decides.
        let k = if self.due_at_us(k + 1) <= elapsed_us {
            k + 1
        } else if k > 0 && self.due_at_us(k) > elapsed_us {
            k - 1
        } else {
            k
        };
        (k + 1).min(self.total)
    }
}

/// A gap of a Poisson process with `rate_per_s` events per second (exponential, mean
/// `1 / rate_per_s`), from `u` uniform in `[0, 1)`. A client that churns at this rate leaves
/// and rejoins as often on average as one that rolls `rate_per_s` once a second, without a
/// timer that wakes every client every second.
pub(crate) fn exponential(u: f64, rate_per_s: f64) -> Duration {
    if rate_per_s <= 0.0 {
        return Duration::MAX;
    }
    // 1 - u is in (0, 1], so the logarithm is finite.
    Duration::from_secs_f64(-(1.0 - u).ln() / rate_per_s)
}

/// A uniformly random instant in `[0, window)` from `u` uniform in `[0, 1)`.
pub(crate) fn uniform(u: f64, window: Duration) -> Duration {
    window.mul_f64(u.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_S: Duration = Duration::from_secs(10);

    #[test]
    fn publishers_are_spread_over_one_interval() {
        let due0: Vec<u64> = (0..4)
            .map(|p| Schedule::new(2.0, TEN_S, p, 4, false).due_at_us(0))
            .collect();
        assert_eq!(due0, [0, 125_000, 250_000, 375_000]);
        let s = Schedule::new(2.0, TEN_S, 3, 4, false);
        assert_eq!(s.due_at_us(1), 875_000);
        // The phase wraps for ids beyond the count, as publisher ids are global.
        assert_eq!(Schedule::new(2.0, TEN_S, 5, 4, false).due_at_us(0), 125_000);
    }

    #[test]
    fn synchronized_publishers_share_one_schedule() {
        for p in 0..4 {
            let s = Schedule::new(2.0, TEN_S, p, 4, true);
            assert_eq!(s.due_at_us(0), 0);
            assert_eq!(s.due_at_us(3), 1_500_000);
        }
    }

    #[test]
    fn the_count_is_the_same_for_every_phase_and_ends_before_the_duration() {
        for rate in [0.3, 1.0, 7.0, 100.0] {
            let counts: Vec<u64> = (0..10)
                .map(|p| Schedule::new(rate, TEN_S, p, 10, false))
                .map(|s| {
                    assert!(s.due_at_us(s.total() - 1) < 10_000_000, "rate {rate}");
                    s.total()
                })
                .collect();
            let sync = Schedule::new(rate, TEN_S, 0, 10, true).total();
            assert!(counts.iter().all(|&n| n == sync), "rate {rate}: {counts:?}");
            assert_eq!(sync, (rate * 10.0).floor() as u64);
        }
        assert_eq!(Schedule::new(0.0, TEN_S, 0, 1, false).total(), 0);
    }

    #[test]
    fn due_counts_match_the_due_times() {
        let s = Schedule::new(3.0, TEN_S, 1, 3, false);
        assert_eq!(s.due_by(0), 0);
        let first = s.due_at_us(0);
        assert_eq!(first, 111_111);
        assert_eq!(s.due_by(first - 1), 0);
        assert_eq!(s.due_by(first), 1);
        for k in 0..s.total() {
            let at = s.due_at_us(k);
            assert_eq!(s.due_by(at), k + 1, "k {k}");
            if at > 0 {
                assert_eq!(s.due_by(at - 1), k, "k {k}");
            }
        }
        // Late: everything due so far at once, never more than the total.
        assert_eq!(s.due_by(60_000_000), s.total());
    }

    #[test]
    fn exponential_gaps_have_the_churn_mean() {
        let mut rng = fastrand::Rng::with_seed(7);
        let rate = 0.05;
        let n = 200_000;
        let sum: f64 = (0..n)
            .map(|_| exponential(rng.f64(), rate).as_secs_f64())
            .sum();
        let mean = sum / n as f64;
        // The standard error of the mean is 20 s / √200,000 ≈ 0.045 s.
        assert!((mean - 20.0).abs() < 0.3, "mean {mean}");
        assert_eq!(exponential(0.0, rate), Duration::ZERO);
        assert_eq!(exponential(0.5, 0.0), Duration::MAX);
        // The median of an exponential is ln 2 / rate.
        let median = exponential(0.5, rate).as_secs_f64();
        assert!((median - 2f64.ln() / rate).abs() < 1e-9);
    }

    #[test]
    fn uniform_instants_stay_in_the_window() {
        let w = Duration::from_secs(1);
        assert_eq!(uniform(0.0, w), Duration::ZERO);
        assert_eq!(uniform(0.25, w), Duration::from_millis(250));
        assert!(uniform(0.999_999, w) < w);
    }
}
