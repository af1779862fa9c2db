//! The reconnect storm for one client: drop the connection like a lost network, then come back
//! with `recover`, backing off as a real client would, and count how it went.

use super::Ctx;
use super::member::{Member, join};
use super::transport::Ws;
use std::time::{Duration, Instant};

/// How long a client keeps trying to come back after the storm.
const STORM_GIVE_UP: Duration = Duration::from_secs(120);
/// Longest one reconnect attempt (connect and join) may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// The first back-off after a failed attempt, before jitter.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// The back-off doubles up to this, so a refused client still retries every few seconds.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Drops the connection and comes back with `recover`; `None` if it never came back.
pub(super) async fn storm(
    ctx: &Ctx,
    ws: Ws,
    t: usize,
    token: Option<&str>,
    room: &str,
    member: &mut Member,
) -> Option<Ws> {
    // Dropping the stream closes the socket without a close frame, like a lost network.
    drop(ws);
    let dropped_at = Instant::now();
    ctx.counters.borrow_mut().storm.dropped += 1;
    let mut backoff = BACKOFF_FIRST;
    while dropped_at.elapsed() < STORM_GIVE_UP {
        let attempt = async {
            let mut ws = ctx.net.open(t, token).await?;
            let recovered = join(ctx, &mut ws, room, member, true, true).await?;
            Ok::<_, String>((ws, recovered))
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
            Ok(Ok((ws, recovered))) => {
                let took = dropped_at.elapsed().as_micros() as u64;
                let mut c = ctx.counters.borrow_mut();
                c.storm.back += 1;
                if recovered {
                    c.storm.recovered += 1;
                } else {
                    c.storm.not_recovered += 1;
                }
                c.storm.slowest_us = c.storm.slowest_us.max(took);
                c.rejoin_hist.saturating_record(took.max(1));
                return Some(ws);
            }
            Ok(Err(e)) => ctx.counters.borrow_mut().error(format!("storm: {e}")),
            Err(_) => ctx.counters.borrow_mut().error("storm: timeout"),
        }
        // Back off with jitter, as a real client would after a refusal.
        let wait = backoff.mul_f64(0.5 + fastrand::f64());
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    None
}
