//! One client's membership of its room: the join (fresh, after a churn leave, or recovering
//! after the storm) and what the client counts from each event it receives.

use super::Ctx;
use super::counters::Counters;
use super::frames::Frame;
use super::transport::Ws;
use crate::stamp;
use crate::stats::{OffsetTracker, Order, RoomTally};
use crate::wire::{Incoming, Target, VOTE_REF, Wire};

/// The wait before retrying a vote answered `rate_limited` without a `retry_after_ms`.
const VOTE_RETRY_DEFAULT_MS: u64 = 1000;

/// One client's view of its room.
#[derive(Default)]
pub(super) struct Member {
    tracker: OffsetTracker,
    epoch: Option<String>,
    /// The client's index in this worker, where its view of the tally is kept.
    slot: usize,
    /// The room index.
    room: usize,
    /// The room's poll, when it has one.
    pub(super) poll: Option<String>,
    /// The intended time of the vote awaiting its reply, unix µs.
    pub(super) vote_due_us: Option<u64>,
    /// The vote was sent again after a reconnect, so "already voted" answers it.
    pub(super) vote_resent: bool,
    /// When to send the vote again, after the server answered `rate_limited`.
    pub(super) vote_retry_at: Option<std::time::Instant>,
    /// The largest tally `total` seen.
    max_total: u64,
}

impl Member {
    /// Client `slot` of this worker, a member of room index `room` with its `poll`, if any.
    pub(super) fn new(slot: usize, room: usize, poll: Option<String>) -> Member {
        Member {
            slot,
            room,
            poll,
            ..Member::default()
        }
    }

    /// Counts one event of the run (chat, a vote's reply, a tally); the rest is ignored.
    pub(super) fn event(&mut self, c: &mut Counters, inc: Incoming<'_>, now_us: u64) {
        match inc {
            Incoming::Message { offset, text } => self.message(c, offset, &text, now_us),
            Incoming::Ack {
                r#ref: Some(VOTE_REF),
            } => self.vote_answered(c, now_us),
            Incoming::Error {
                r#ref: Some(VOTE_REF),
                code,
                ..
            } if self.vote_resent && code == "conflict" => self.vote_answered(c, now_us),
            // A busy server asked for the vote again later: a real client retries, and so the
            // vote is still awaiting its answer.
            Incoming::Error {
                r#ref: Some(VOTE_REF),
                code,
                retry_after_ms,
            } if code == "rate_limited" && self.vote_due_us.is_some() => {
                c.vote_retries += 1;
                let wait = retry_after_ms.unwrap_or(VOTE_RETRY_DEFAULT_MS);
                self.vote_retry_at =
                    Some(std::time::Instant::now() + std::time::Duration::from_millis(wait));
            }
            Incoming::Error {
                r#ref: Some(VOTE_REF),
                code,
                ..
            } if self.vote_due_us.is_some() => {
                self.vote_due_us = None;
                *c.vote_error_kinds.entry(code.into_owned()).or_default() += 1;
            }
            Incoming::Error { code, .. } => c.error(code.into_owned()),
            Incoming::PollResults { poll, total }
                if total > self.max_total && self.poll.as_deref() == Some(&*poll) =>
            {
                self.max_total = total;
                if let Some(slot) = c.tallies.get_mut(self.slot) {
                    *slot = Some((self.room, RoomTally::member(total, now_us)));
                }
            }
            _ => {}
        }
    }

    /// Counts the answer to this member's vote, once.
    fn vote_answered(&mut self, c: &mut Counters, now_us: u64) {
        if let Some(due) = self.vote_due_us.take() {
            *c.votes_acked_per_room.entry(self.room).or_default() += 1;
            c.vote_hist
                .saturating_record(now_us.saturating_sub(due).max(1));
            c.last_ack_us = c.last_ack_us.max(now_us);
        }
    }

    /// Counts one chat message; `replayed` ones came in a recovery's `history`.
    pub(super) fn message(
        &mut self,
        c: &mut Counters,
        offset: Option<u64>,
        text: &str,
        now_us: u64,
    ) {
        let Some(st) = stamp::parse(text) else { return };
        c.received += 1;
        c.latency_hist
            .saturating_record(now_us.saturating_sub(st.intended_us).max(1));
        if let Some(o) = offset {
            match self.tracker.see(o) {
                Order::Next => {}
                Order::Gap(n) => c.gaps += n,
                Order::Reorder => c.reorders += 1,
            }
        }
    }
}

/// Reads frames until the join is confirmed, doing the Socket.IO handshake on the way. Returns
/// whether the server recovered the gap (evd `recovered`).
pub(super) async fn join(
    ctx: &Ctx,
    ws: &mut Ws,
    room: &str,
    member: &mut Member,
    recover: bool,
    fresh: bool,
) -> Result<bool, String> {
    let wire = ctx.wire;
    let recover_from = if recover && wire.target == Target::Evd {
        member.epoch.clone().zip(member.tracker.last)
    } else {
        None
    };
    // A fresh Socket.IO connection joins once its namespace connect is answered (below).
    if wire.target != Target::Socketio || !fresh {
        ws.send(wire.join(room, recover_from))
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    loop {
        let (data, binary) = match ws.rx.next().await {
            Ok(Frame::Data { data, binary }) => (data, binary),
            Ok(Frame::Ping(payload)) => {
                ws.tx
                    .pong(payload)
                    .await
                    .map_err(|e| format!("send: {e}"))?;
                continue;
            }
            Ok(Frame::Pong) => continue,
            Ok(Frame::Close(code)) => return Err(format!("join: close {code}")),
            Err(e) => return Err(format!("join: {e}")),
        };
        let mut replies = Vec::new();
        let mut done = None;
        let now = stamp::now_us();
        let parsed = {
            let mut c = ctx.counters.borrow_mut();
            wire.parse(data, binary, |inc| match inc {
                Incoming::SioOpen => replies.push(Wire::sio_connect()),
                Incoming::SioConnected => replies.push(wire.join(room, None)),
                Incoming::SioPing => replies.push(Wire::sio_pong()),
                Incoming::SioGone => done = Some(Err("socket.io refused".to_owned())),
                Incoming::Joined {
                    epoch,
                    offset,
                    recovered,
                    history,
                } => {
                    if !recover {
                        member.tracker.last = offset;
                    }
                    if epoch.is_some() {
                        member.epoch = epoch;
                    }
                    for (o, text) in &history {
                        // Messages that arrived after the join was sent are already counted; a
                        // client drops their replay by offset.
                        if recover && member.tracker.last.is_some_and(|last| *o <= last) {
                            continue;
                        }
                        member.message(&mut c, Some(*o), text, now);
                        if recover {
                            c.storm.replayed += 1;
                        }
                    }
                    done = Some(Ok(recovered));
                }
                Incoming::Error { r#ref, code, .. } if r#ref != Some(VOTE_REF) => {
                    c.error(format!("join: {code}"))
                }
                other => member.event(&mut c, other, now),
            })
        };
        if parsed.is_err() {
            ctx.counters.borrow_mut().error("bad frame");
        }
        for r in replies {
            ws.tx.send(r).await.map_err(|e| format!("send: {e}"))?;
        }
        if let Some(result) = done {
            return result;
        }
    }
}
