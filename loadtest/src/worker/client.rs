//! A client: connects and joins its room during the ramp, then, until the run ends, reads what
//! the room sends, sends its heartbeat, and when the scenario says so churns, votes once, and
//! goes through the reconnect storm. With `--reconnect` it comes back after losing its
//! connection, and resends a vote that got no answer.
//!
//! Timers are per event, not per tick: a chat client sleeps until its next churn (a Poisson
//! process) and its vote, so 100,000 idle clients cause no wakeups between them.
//!
//! The receive path is kept lean, since a client spends its run receiving: the wait for the
//! worker's next phase is one future for the whole phase (not a fresh watch registration per
//! frame), and every frame that one read brought is handled before the client waits again.

use super::counters::ABNORMAL_CLOSE;
use super::frames::{Frame, ReadError};
use super::member::{Member, join};
use super::storm::{Cause, come_back, storm};
use super::transport::{Writer, Ws};
use super::{Ctx, Phase};
use crate::plan::Scenario;
use crate::schedule;
use crate::stamp;
use crate::stats::RoomTally;
use crate::wire::{Incoming, Wire};
use evd_protocol::auth::Role;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often an evd client sends its heartbeat; the engine's default `heartbeat_ms` is 25 s.
const PING_EVERY: Duration = Duration::from_secs(20);
/// Longest wait for a churn: an exponential gap is unbounded, a timer is not.
const CHURN_GAP_MAX: Duration = Duration::from_secs(24 * 3600);

/// One room member for the whole run.
pub(super) async fn client(ctx: Rc<Ctx>, i: usize) {
    let plan = &ctx.plan;
    let room_idx = plan.room_of(i);
    let room = plan.room_name(room_idx);
    let t = i % plan.targets.len();
    let token = ctx.net.token(&format!("u{i}"), Role::Attendee, Some(&room));
    let timeout = Duration::from_millis(plan.connect_timeout_ms);
    let t0 = Instant::now();
    let slot = i - plan.first_client;
    let mut member = Member::new(
        slot,
        room_idx,
        plan.api_rooms.get(room_idx).map(|r| r.poll.clone()),
    );
    let opened = tokio::time::timeout(timeout, async {
        let mut ws = ctx.net.open(t, token.as_deref()).await?;
        join(&ctx, &mut ws, &room, &mut member, false, true).await?;
        Ok::<_, String>(ws)
    })
    .await
    .unwrap_or_else(|_| Err("connect timeout".into()));
    let mut ws = {
        let mut c = ctx.counters.borrow_mut();
        c.settled += 1;
        match opened {
            Ok(ws) => {
                let now = Instant::now();
                c.connected += 1;
                c.joined += 1;
                c.first_connect.get_or_insert(t0);
                c.last_connect = Some(now);
                c.connect_hist
                    .saturating_record(now.duration_since(t0).as_micros().max(1) as u64);
                *c.members_now.entry(room_idx).or_default() += 1;
                // A member that saw no tally yet; one seen during the join is already there.
                if let Some(view @ None) = c.tallies.get_mut(slot) {
                    *view = Some((room_idx, RoomTally::member(0, 0)));
                }
                ws
            }
            Err(e) => {
                c.connect_failed += 1;
                c.error(e);
                return;
            }
        }
    };

    let mut phase = ctx.phase.subscribe();
    let mut arm = *phase.borrow_and_update() == Phase::Run;
    let phase_change = next_phase(phase);
    tokio::pin!(phase_change);
    // Like a real client, the first heartbeat comes one interval after connecting (Socket.IO's
    // first ping also comes one pingInterval after the handshake), spread over a quarter of an
    // interval so the ramp's clients don't all ping in step.
    let jitter = Duration::from_millis(fastrand::u64(0..PING_EVERY.as_millis() as u64 / 4));
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + PING_EVERY + jitter,
        PING_EVERY,
    );
    // The churn and the vote are one timer each, armed when the run starts.
    let churn_rate = (plan.scenario == Scenario::Chat && plan.churn > 0.0).then_some(plan.churn);
    let churn_gap = || schedule::exponential(fastrand::f64(), plan.churn).min(CHURN_GAP_MAX);
    let churn_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(churn_timer);
    let mut churning = false;
    let vote_window = plan.vote_window().filter(|_| member.poll.is_some());
    let vote_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(vote_timer);
    let mut vote_due_us: Option<u64> = None;
    // The vote is to be sent again when the timer fires (the server said `rate_limited`).
    let mut vote_retry = false;
    loop {
        if std::mem::take(&mut arm) {
            if churn_rate.is_some() {
                churn_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + churn_gap());
                churning = true;
            }
            if let (Some(window), Some((start, start_us))) = (vote_window, ctx.start.get()) {
                // Open loop: the vote is due at this instant whenever it actually leaves.
                let at = schedule::uniform(fastrand::f64(), window);
                vote_timer.as_mut().reset((start + at).into());
                vote_due_us = Some(start_us + at.as_micros() as u64);
            }
        }
        let mut lost = false;
        tokio::select! {
            read = ws.rx.next() => {
                lost = !on_frame(&ctx, &mut ws.tx, &mut member, read).await;
                // The rest of what the read brought, without going back to the select.
                while !lost {
                    let Some(read) = ws.rx.buffered().transpose() else {
                        break;
                    };
                    lost = !on_frame(&ctx, &mut ws.tx, &mut member, read).await;
                }
            }
            _ = ping.tick() => {
                if let Some(p) = ctx.wire.ping() && ws.send(p).await.is_err() {
                    ctx.counters.borrow_mut().close(ABNORMAL_CLOSE);
                    lost = true;
                }
            }
            () = &mut churn_timer, if churning => {
                // Leave and come back at once, recovering what was missed in between.
                let left = ws.send(ctx.wire.leave(&room)).await;
                let back = match left {
                    Ok(()) => join(&ctx, &mut ws, &room, &mut member, true, false).await,
                    Err(e) => Err(e.to_string()),
                };
                churn_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + churn_gap());
                match back {
                    Ok(recovered) => {
                        let mut c = ctx.counters.borrow_mut();
                        c.rejoins += 1;
                        c.rejoins_not_recovered += u64::from(!recovered);
                    }
                    Err(e) => {
                        ctx.counters.borrow_mut().error(format!("churn: {e}"));
                        lost = true;
                    }
                }
            }
            () = &mut vote_timer, if vote_due_us.is_some() || vote_retry => {
                if !std::mem::take(&mut vote_retry) {
                    // The first try; a retry keeps the first try's due time, so the vote's
                    // latency includes every wait the server asked for.
                    member.vote_due_us = vote_due_us.take();
                    ctx.counters.borrow_mut().votes_sent += 1;
                }
                if !send_vote(&ctx, &mut ws, room_idx).await {
                    ctx.counters.borrow_mut().close(ABNORMAL_CLOSE);
                    lost = true;
                }
            }
            (now, rx) = &mut phase_change => {
                phase_change.set(next_phase(rx));
                let Some(now) = now.filter(|&now| now != Phase::Done) else {
                    break;
                };
                arm = now == Phase::Run;
                churning &= now == Phase::Run;
                if now == Phase::Storm {
                    match storm(&ctx, ws, t, token.as_deref(), &room, &mut member).await {
                        Some(back) => ws = back,
                        None => break,
                    }
                }
            }
        }
        if let Some(at) = member.vote_retry_at.take() {
            vote_timer.as_mut().reset(at.into());
            vote_retry = true;
        }
        if lost {
            if !plan.reconnect || *ctx.phase.borrow() == Phase::Done {
                break;
            }
            match come_back(&ctx, Cause::Lost, t, token.as_deref(), &room, &mut member).await {
                Some(back) => ws = back,
                None => break,
            }
            // A vote sent on the lost connection may or may not have been committed: send it
            // again, and take "already voted" for its answer.
            if member.vote_due_us.is_some() {
                member.vote_resent = true;
                if !send_vote(&ctx, &mut ws, room_idx).await {
                    ctx.counters.borrow_mut().close(ABNORMAL_CLOSE);
                    break;
                }
            }
        }
    }
}

/// The worker's next phase, once it changes (`None` once the worker is gone), and the receiver
/// back for the next wait.
async fn next_phase(mut rx: watch::Receiver<Phase>) -> (Option<Phase>, watch::Receiver<Phase>) {
    let now = match rx.changed().await {
        Ok(()) => Some(*rx.borrow_and_update()),
        Err(_) => None,
    };
    (now, rx)
}

/// Votes for a random option of the room's poll; false when the connection is gone.
async fn send_vote(ctx: &Ctx, ws: &mut Ws, room_idx: usize) -> bool {
    let Some(api_room) = ctx.plan.api_rooms.get(room_idx) else {
        return true;
    };
    let option = &api_room.options[fastrand::usize(..api_room.options.len())];
    ws.send(ctx.wire.vote(&api_room.poll, option)).await.is_ok()
}

/// Handles one frame in the run loop; false when the connection is gone.
async fn on_frame(
    ctx: &Ctx,
    tx: &mut Writer,
    member: &mut Member,
    read: Result<Frame<'_>, ReadError>,
) -> bool {
    let (data, binary) = match read {
        Ok(Frame::Data { data, binary }) => (data, binary),
        Ok(Frame::Ping(payload)) => return tx.pong(payload).await.is_ok(),
        Ok(Frame::Pong) => return true,
        Ok(Frame::Close(code)) => {
            ctx.counters.borrow_mut().close(code.to_string());
            return false;
        }
        Err(_) => {
            ctx.counters.borrow_mut().close(ABNORMAL_CLOSE);
            return false;
        }
    };
    let now = stamp::now_us();
    let mut pong = false;
    let mut gone = false;
    {
        let mut c = ctx.counters.borrow_mut();
        let parsed = ctx.wire.parse(data, binary, |inc| match inc {
            Incoming::SioPing => pong = true,
            Incoming::SioGone => gone = true,
            other => member.event(&mut c, other, now),
        });
        if parsed.is_err() {
            c.error("bad frame");
        }
        if gone {
            c.close("socket.io disconnect");
        }
    }
    if pong && tx.send(Wire::sio_pong()).await.is_err() {
        return false;
    }
    !gone
}
