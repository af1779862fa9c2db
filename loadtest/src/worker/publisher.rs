//! A publisher: one connection that sends stamped messages to its rooms on an open-loop
//! schedule, reads (and counts errors in) what comes back, and answers pings (Socket.IO and
//! WebSocket).

use super::frames::Frame;
use super::transport::Ws;
use super::{Ctx, Phase};
use crate::schedule::Schedule;
use crate::stamp;
use crate::wire::{Incoming, Target, Wire};
use evd_protocol::auth::Role;
use std::rc::Rc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// The first back-off before a publisher reconnects (`--reconnect`), before jitter.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// The back-off doubles up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A publisher: an open-loop schedule of `rate` messages per second over its rooms. With
/// `--reconnect` it reconnects after losing its connection and goes on with the schedule, the
/// late messages stamped with their due times.
pub(super) async fn publisher(ctx: Rc<Ctx>, p: usize) {
    let plan = &ctx.plan;
    let rooms = plan.rooms_of_publisher(p);
    if rooms.is_empty() || plan.rate <= 0.0 {
        // Nothing to publish (idle): no connection.
        ctx.counters.borrow_mut().publishers_ready += 1;
        return;
    }
    let mut k: u64 = 0;
    let mut ready = false;
    let mut backoff = BACKOFF_FIRST;
    loop {
        let outcome = session(&ctx, p, &rooms, &mut k, &mut ready).await;
        let done = *ctx.phase.borrow() == Phase::Done;
        if outcome == Session::Finished || !plan.reconnect || done {
            if !ready {
                ctx.counters.borrow_mut().publishers_ready += 1;
            }
            return;
        }
        if outcome == Session::Connected {
            backoff = BACKOFF_FIRST;
        }
        tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64())).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// How one connection of a publisher ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// The schedule is done (or the run ended).
    Finished,
    /// The connection was lost after it was up.
    Connected,
    /// The connection could not be made.
    Refused,
}

/// One connection of publisher `p`: connects, says ready once, and publishes from message `k`
/// on until the schedule is done or the connection is lost.
async fn session(
    ctx: &Rc<Ctx>,
    p: usize,
    rooms: &[usize],
    k: &mut u64,
    ready: &mut bool,
) -> Session {
    let plan = &ctx.plan;
    let t = p % plan.targets.len();
    let token = ctx
        .net
        .token(&crate::plan::publisher_user(p), Role::Organizer, None);
    let ws = match ctx.net.open(t, token.as_deref()).await {
        Ok(ws) => ws,
        Err(e) => {
            ctx.counters.borrow_mut().error(format!("publisher: {e}"));
            return Session::Refused;
        }
    };
    let Ws { mut rx, mut tx } = ws;
    let wire = ctx.wire;
    // Socket.IO: wait for the namespace connect before emitting.
    if wire.target == Target::Socketio {
        loop {
            let text = match rx.next().await {
                Ok(Frame::Data {
                    data,
                    binary: false,
                }) => data,
                Ok(Frame::Ping(payload)) => {
                    if tx.pong(payload).await.is_err() {
                        break;
                    }
                    continue;
                }
                Ok(Frame::Data { .. } | Frame::Pong) => continue,
                Ok(Frame::Close(_)) | Err(_) => break,
            };
            let mut connected = false;
            let _ = wire.parse(text, false, |inc| match inc {
                Incoming::SioOpen => connected = false,
                Incoming::SioConnected => connected = true,
                _ => {}
            });
            if text.starts_with(b"0") && tx.send(Wire::sio_connect()).await.is_err() {
                break;
            }
            if connected {
                break;
            }
        }
    }
    if !std::mem::replace(ready, true) {
        ctx.counters.borrow_mut().publishers_ready += 1;
    }
    // Replies are read (so the server never queues for us) and errors counted; pings (Socket.IO
    // and WebSocket) are answered through the writer.
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
    let reader_ctx = ctx.clone();
    tokio::task::spawn_local(async move {
        loop {
            let (data, binary) = match rx.next().await {
                Ok(Frame::Data { data, binary }) => (data, binary),
                Ok(Frame::Ping(payload)) => {
                    let _ = pong_tx.send(Message::Pong(Bytes::copy_from_slice(payload)));
                    continue;
                }
                Ok(Frame::Pong) => continue,
                Ok(Frame::Close(code)) => {
                    reader_ctx
                        .counters
                        .borrow_mut()
                        .close(format!("publisher {code}"));
                    break;
                }
                Err(_) => break,
            };
            let mut c = reader_ctx.counters.borrow_mut();
            let _ = wire.parse(data, binary, |inc| match inc {
                Incoming::Error { code, .. } => c.error(format!("publish: {code}")),
                Incoming::SioPing => {
                    let _ = pong_tx.send(Wire::sio_pong());
                }
                _ => {}
            });
        }
    });
    // Wait for the start, answering Socket.IO pings meanwhile: a ramp can outlast the server's
    // ping timeout.
    let mut phase = ctx.phase.subscribe();
    while *phase.borrow_and_update() == Phase::Ramp {
        tokio::select! {
            changed = phase.changed() => if changed.is_err() { return Session::Finished },
            Some(pong) = pong_rx.recv() => { let _ = tx.send(pong).await; }
        }
    }
    let Some((start, start_us)) = ctx.start.get() else {
        return Session::Finished;
    };
    let schedule = Schedule::new(
        plan.rate,
        Duration::from_millis(plan.duration_ms),
        p,
        plan.total_publishers,
        plan.sync_publishers,
    );
    let total = schedule.total();
    while *k < total {
        // Everything due by now goes out at once, each stamped with its own due time.
        let due = schedule.due_by(start.elapsed().as_micros() as u64);
        while *k < due {
            let room = rooms[(*k % rooms.len() as u64) as usize];
            let intended = start_us + schedule.due_at_us(*k);
            let text = stamp::text(*k, intended, plan.payload);
            tx.feed(&wire.send(&plan.room_name(room), text));
            *ctx.counters
                .borrow_mut()
                .sent_per_room
                .entry(room)
                .or_default() += 1;
            *k += 1;
        }
        if tx.flush().await.is_err() {
            ctx.counters.borrow_mut().error("publish: connection lost");
            return Session::Connected;
        }
        if *k >= total {
            break;
        }
        let next = start + Duration::from_micros(schedule.due_at_us(*k));
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            pong = pong_rx.recv() => match pong {
                Some(pong) => { let _ = tx.send(pong).await; }
                // The reader ended: the connection is gone.
                None => {
                    ctx.counters.borrow_mut().error("publish: connection lost");
                    return Session::Connected;
                }
            }
        }
    }
    // Keep answering pings until the run ends.
    while let Some(pong) = pong_rx.recv().await {
        let _ = tx.send(pong).await;
    }
    Session::Finished
}
