//! Coming back after losing a connection: the reconnect storm drops every client's connection
//! like a lost network, and with `--reconnect` a client whose connection the server closed or
//! lost comes back too. Either way the client reconnects and rejoins with `recover`, backing off
//! as a real client would, and counts how it went.

use super::Ctx;
use super::counters::{Counters, StormCounters};
use super::member::{Member, join};
use super::transport::Ws;
use std::time::{Duration, Instant};

/// How long a client keeps trying to come back.
const STORM_GIVE_UP: Duration = Duration::from_secs(120);
/// Longest one reconnect attempt (connect and join) may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// The first back-off after a failed attempt, before jitter.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// The back-off doubles up to this, so a refused client still retries every few seconds.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why a client is coming back, and so where its figures are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// The scenario's reconnect storm dropped it.
    Storm,
    /// The server closed or lost the connection (`--reconnect`).
    Lost,
}

impl Cause {
    /// The prefix of this cause's error kinds.
    fn name(self) -> &'static str {
        match self {
            Cause::Storm => "storm",
            Cause::Lost => "reconnect",
        }
    }

    fn counters(self, c: &mut Counters) -> &mut StormCounters {
        match self {
            Cause::Storm => &mut c.storm,
            Cause::Lost => &mut c.lost,
        }
    }
}

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
    come_back(ctx, Cause::Storm, t, token, room, member).await
}

/// Reconnects to target `t` and rejoins `room` with `recover`, retrying with back-off for up to
/// [`STORM_GIVE_UP`]; `None` if it never came back.
pub(super) async fn come_back(
    ctx: &Ctx,
    cause: Cause,
    t: usize,
    token: Option<&str>,
    room: &str,
    member: &mut Member,
) -> Option<Ws> {
    let dropped_at = Instant::now();
    cause.counters(&mut ctx.counters.borrow_mut()).dropped += 1;
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
                let s = cause.counters(&mut c);
                s.back += 1;
                if recovered {
                    s.recovered += 1;
                } else {
                    s.not_recovered += 1;
                }
                s.slowest_us = s.slowest_us.max(took);
                s.rejoin_hist.saturating_record(took.max(1));
                return Some(ws);
            }
            Ok(Err(e)) => ctx
                .counters
                .borrow_mut()
                .error(format!("{}: {e}", cause.name())),
            Err(_) => ctx
                .counters
                .borrow_mut()
                .error(format!("{}: timeout", cause.name())),
        }
        // Back off with jitter, as a real client would after a refusal.
        let wait = backoff.mul_f64(0.5 + fastrand::f64());
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    None
}
