//! `submit_poll_response`: a durable vote, one per user per poll. The `ACK` follows the commit;
//! the counts reach the room as `POLL_RESULTS` on the next tick.

use super::{Caller, OpResult, Reply, live, may_join_session};
use crate::auth::Authorizer;
use crate::live::Live;
use crate::session::error::OpError;
use evd_api::store::{Vote, VoteOutcome};
use evd_protocol::ErrorCode;
use evd_protocol::event::{Ack, Event};
use evd_protocol::op::SubmitPollResponse;

/// Runs `submit_poll_response`: checks the right to join the poll's session room, then votes.
pub async fn apply(
    op: SubmitPollResponse,
    who: Caller<'_>,
    authorizer: &dyn Authorizer,
    store: Option<&Live>,
) -> OpResult {
    let live = live(store)?;
    let org = who.claims.org.clone();
    let no_poll = || OpError::new(ErrorCode::NotFound, format!("no poll `{}`", op.poll));
    // Voting needs the right to join the poll's session room.
    let session = live.poll_session(&org, &op.poll).await?;
    may_join_session(who, authorizer, session, no_poll).await?;
    let vote = Vote {
        org,
        poll: op.poll,
        user: who.claims.sub.clone(),
        option: op.option,
    };
    match live.vote(vote).await? {
        VoteOutcome::Recorded { .. } => Ok(Reply::Now(Event::Ack(Ack {
            r#ref: who.r#ref,
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
