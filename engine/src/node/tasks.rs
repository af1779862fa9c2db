//! The node's periodic tasks: the tick that sends coalesced room changes (at a pace that slows
//! while the node is busy), the presence
//! heartbeat, upkeep (gauges, the metrics recorder, the per-IP limiter), and the readiness
//! gauge.

use super::Node;
use super::pace::TickPace;
use crate::room_key::RoomPhase;
use evd_protocol::event::PresenceMember;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often gauges are refreshed and the metrics recorder and IP limiter are tidied.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Upkeep rounds between two trims of the per-IP limiter (a minute at one round a second).
const LIMITER_TRIM_EVERY: u64 = 60;

/// How often the readiness gauge is refreshed: each check is one store round trip, and an
/// alert on it waits minutes.
const READINESS_EVERY: Duration = Duration::from_secs(5);

/// Sends each room's coalesced changes (see [`crate::hub::TickWork`]) once per interval, at the
/// pace [`TickPace`] sets from how late and how long the last interval's ticks were. The tick
/// fires every `tick_ms`; a stretched interval is spread over several ticks, each sending the
/// rooms of one [`RoomPhase`].
pub(super) async fn ticks(node: Arc<Node>) {
    let stopped = node.shutdown.stopped();
    tokio::pin!(stopped);
    let every = Duration::from_millis(node.settings.tick_ms);
    let mut pace = TickPace::new(every, Duration::from_millis(node.settings.tick_max_ms));
    let interval = ::metrics::gauge!(crate::metrics::TICK_INTERVAL);
    let load = ::metrics::histogram!(crate::metrics::TICK_LOAD);
    let mut due = Instant::now() + every;
    // The interval under way: its phases (fixed until it ends), the next phase, and how late
    // and how long its ticks were so far.
    let (mut phases, mut phase) = (pace.phases(), 0);
    let (mut late_sum, mut work_sum) = (Duration::ZERO, Duration::ZERO);
    loop {
        interval.set(pace.interval().as_secs_f64());
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        let started = Instant::now();
        let late = started.saturating_duration_since(due);
        let this = RoomPhase {
            this: phase,
            of: phases,
        };
        for work in node.hub.take_tick(this) {
            let count = if work.presence_changed() {
                node.presence
                    .count(&work.room)
                    .await
                    .inspect_err(
                        |e| tracing::warn!(room = ?work.room, error = %e, "presence count failed"),
                    )
                    .ok()
            } else {
                None
            };
            let room = work.room.clone();
            for event in work.events(count, node.settings.presence.full_room_limit) {
                node.hub.deliver(&room, &event, None);
            }
        }
        let work = started.elapsed();
        load.record((late + work).as_secs_f64());
        (late_sum, work_sum) = (late_sum + late, work_sum + work);
        phase += 1;
        if phase >= phases {
            pace.observe(late_sum, work_sum);
            (phases, phase) = (pace.phases(), 0);
            (late_sum, work_sum) = (Duration::ZERO, Duration::ZERO);
        }
        due = Instant::now() + every;
    }
}

/// Keeps this node's presence alive and announces what its heartbeat found: users that left
/// with a dead node, and this node's users put back after it had been swept.
pub(super) async fn presence_heartbeat(node: Arc<Node>, every: Duration) {
    let stopped = node.shutdown.stopped();
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        for change in node.presence.heartbeat().await {
            let members = |users: Vec<String>| {
                users
                    .into_iter()
                    .map(|user| PresenceMember { user })
                    .collect()
            };
            node.announce(&change.room, members(change.joins), members(change.leaves))
                .await;
        }
    }
}

/// Refreshes gauges and tidies the metrics recorder and the per-IP limiter.
pub(super) async fn upkeep(node: Arc<Node>) {
    let stopped = node.shutdown.stopped();
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        n += 1;
        node.metrics
            .queue_bytes
            .set(node.stats.queued_bytes() as f64);
        if let Some(rss) = resident_memory_bytes() {
            ::metrics::gauge!(crate::metrics::RESIDENT_MEMORY).set(rss as f64);
        }
        node.prometheus.run_upkeep();
        if n.is_multiple_of(LIMITER_TRIM_EVERY)
            && let Some(l) = &node.ip_limiter
        {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// Keeps [`crate::metrics::READY`] current while nobody probes `/readyz`.
pub(super) async fn readiness(node: Arc<Node>) {
    let stopped = node.shutdown.stopped();
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(READINESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        let _ = node.readiness().await;
    }
}

/// The process's resident set from `/proc/self/status` (`VmRSS`, in kB); `None` without `/proc`.
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tevd\nVmPeak:\t  20000 kB\nVmRSS:\t   16800 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(16800 * 1024));
        assert_eq!(parse_vm_rss("Name:\tevd\n"), None);
    }
}
