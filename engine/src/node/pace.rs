//! [`TickPace`]: how long the tick waits next, from how busy the node was on the last one.
//!
//! A busy node is one whose tick timer fires late (its runtime's queues are long) or whose
//! tick took long to send. Then every room's `POLL_RESULTS` and `PRESENCE_UPDATE` go out less
//! often: the interval doubles, up to `tick_max_ms`. A calm tick halves it again, down to
//! `tick_ms`. Between the two thresholds it stays, so the pace does not flap. Changes keep
//! accumulating in the rooms meanwhile, so a slower tick sends the same last state, later.
//!
//! The tick itself keeps firing every `tick_ms`: a stretched interval is spread over
//! [`TickPace::phases`] ticks, each sending its share of the rooms, and the load observed is
//! that of one whole interval (all its ticks).

use std::time::Duration;

/// The tick's interval and the rule that moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TickPace {
    min: Duration,
    max: Duration,
    now: Duration,
}

impl TickPace {
    /// A pace between `min` (the calm interval, `tick_ms`) and `max` (`tick_max_ms`).
    pub(super) fn new(min: Duration, max: Duration) -> TickPace {
        TickPace {
            min,
            max: max.max(min),
            now: min,
        }
    }

    /// How often each room's changes go out.
    pub(super) fn interval(&self) -> Duration {
        self.now
    }

    /// The ticks (of `min` each) one interval is spread over: each sends the rooms of one
    /// phase ([`crate::room_key::RoomPhase`]). 1 while calm.
    pub(super) fn phases(&self) -> u64 {
        let ratio = self.now.as_nanos() / self.min.as_nanos().max(1);
        u64::try_from(ratio).unwrap_or(u64::MAX).max(1)
    }

    /// Takes the last tick's load, `late` (how long after its due time the timer fired) plus
    /// `work` (how long its sending took), and returns the next interval. Busy: the load is
    /// more than half the interval; calm: less than an eighth.
    pub(super) fn observe(&mut self, late: Duration, work: Duration) -> Duration {
        let load = late + work;
        if load > self.now / 2 {
            self.now = (self.now * 2).min(self.max);
        } else if load < self.now / 8 {
            self.now = (self.now / 2).max(self.min);
        }
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_busy_node_slows_the_tick_up_to_the_ceiling_and_a_calm_one_speeds_it_back() {
        let mut pace = TickPace::new(ms(200), ms(2_000));
        assert_eq!(pace.interval(), ms(200));
        // Timer 150 ms late: busy.
        assert_eq!(pace.observe(ms(150), ms(0)), ms(400));
        // Sending took 300 ms: busy.
        assert_eq!(pace.observe(ms(0), ms(300)), ms(800));
        assert_eq!(pace.observe(ms(300), ms(200)), ms(1_600));
        assert_eq!(pace.observe(ms(2_000), ms(0)), ms(2_000), "capped");
        assert_eq!(pace.observe(ms(5_000), ms(0)), ms(2_000), "capped");
        // Between an eighth and a half of the interval: unchanged.
        assert_eq!(pace.observe(ms(300), ms(100)), ms(2_000));
        // Calm ticks: halves, down to the floor.
        assert_eq!(pace.observe(ms(10), ms(10)), ms(1_000));
        assert_eq!(pace.observe(ms(0), ms(1)), ms(500));
        assert_eq!(pace.observe(ms(0), ms(1)), ms(250));
        assert_eq!(pace.observe(ms(0), ms(1)), ms(200), "floored");
        assert_eq!(pace.observe(ms(0), ms(0)), ms(200));
        assert_eq!(pace.phases(), 1);
    }

    #[test]
    fn a_stretched_interval_is_spread_over_as_many_ticks() {
        let mut pace = TickPace::new(ms(200), ms(2_000));
        assert_eq!(pace.phases(), 1);
        pace.observe(ms(150), ms(0));
        assert_eq!(pace.phases(), 2);
        pace.observe(ms(300), ms(0));
        pace.observe(ms(600), ms(0));
        assert_eq!((pace.interval(), pace.phases()), (ms(1_600), 8));
        pace.observe(ms(1_000), ms(0));
        assert_eq!((pace.interval(), pace.phases()), (ms(2_000), 10));
    }

    #[test]
    fn a_ceiling_at_the_floor_keeps_the_tick_fixed() {
        let mut pace = TickPace::new(ms(200), ms(200));
        assert_eq!(pace.observe(ms(10_000), ms(10_000)), ms(200));
        let mut pace = TickPace::new(ms(200), ms(100));
        assert_eq!(
            pace.observe(ms(10_000), ms(0)),
            ms(200),
            "max below min is min"
        );
    }
}
