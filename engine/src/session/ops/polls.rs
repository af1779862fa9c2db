//! `submit_poll_response`: a durable vote, one per user per poll. The `ACK` follows the commit;
//! the counts reach the room as `POLL_RESULTS` on the next tick.

use super::{OpError, OpResult, live};
use crate::conn::session::Session;
use evd_api::store::{Vote, VoteOutcome};
use evd_protocol::event::{Ack, Event};
use evd_protocol::op::SubmitPollResponse;
use evd_protocol::{ErrorCode, Ref, RoomKind, RoomName};

pub(super) async fn handle(s: &mut Session, r: Option<Ref>, op: SubmitPollResponse) -> OpResult {
    let live = live(s)?;
    let org = s.claims.org.clone();
    let no_poll = || OpError::new(ErrorCode::NotFound, format!("no poll `{}`", op.poll));
    let session = live
        .poll_session(&org, &op.poll)
        .await?
        .ok_or_else(no_poll)?;
    let room = RoomName::new(RoomKind::Session, &session).map_err(|_| no_poll())?;
    // Voting needs the right to join the poll's session room.
    s.node.authorizer.can_join(&s.claims, &room).await?;
    let vote = Vote {
        org,
        poll: op.poll,
        user: s.claims.sub.clone(),
        option: op.option,
    };
    match live.vote(vote).await? {
        VoteOutcome::Recorded { .. } => Ok(Some(Event::Ack(Ack {
            r#ref: r,
            ..Ack::default()
        }))),
        VoteOutcome::Duplicate => Err(OpError::new(
            ErrorCode::Conflict,
            "you have already voted in this poll",
        )),
        VoteOutcome::NotFound => Err(OpError::new(ErrorCode::NotFound, "no such poll or option")),
        VoteOutcome::Closed => Err(OpError::new(ErrorCode::Conflict, "the poll is closed")),
    }
}
