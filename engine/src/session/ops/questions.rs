//! `ask_question` and `upvote_question`: durable Q&A in session rooms. `QUESTION_ASKED` goes to
//! the room as soon as the question is stored; upvote counts follow as `QUESTION_UPDATED` on the
//! next tick.

use super::{Caller, OpResult, Reply, live, may_join_session};
use crate::auth::Authorizer;
use crate::live::Live;
use crate::session::error::OpError;
use crate::settings::Limits;
use evd_api::store::{NewQuestion, Upvote, UpvoteOutcome};
use evd_protocol::event::{Ack, Event};
use evd_protocol::op::{AskQuestion, UpvoteQuestion};
use evd_protocol::{ErrorCode, RoomKind};

/// Runs `ask_question`: a session room, a text within `limits.max_text_bytes`, the right to
/// join the room.
pub async fn ask(
    op: AskQuestion,
    who: Caller<'_>,
    authorizer: &dyn Authorizer,
    store: Option<&Live>,
    limits: &Limits,
) -> OpResult {
    if op.room.kind() != RoomKind::Session {
        return Err(OpError::new(
            ErrorCode::BadRequest,
            "questions are asked in `session:<id>` rooms",
        ));
    }
    let max = limits.max_text_bytes;
    if op.text.len() > max {
        return Err(OpError::new(
            ErrorCode::TooLarge,
            format!("`text` is {} bytes; the limit is {max}", op.text.len()),
        ));
    }
    let live = live(store)?;
    authorizer.can_join(who.claims, &op.room).await?;
    let q = NewQuestion {
        org: who.claims.org.clone(),
        session: op.room.id().to_owned(),
        user: who.claims.sub.clone(),
        text: op.text,
    };
    match live.ask(q).await? {
        Some(q) => Ok(Reply::Now(Event::Ack(Ack {
            r#ref: who.r#ref,
            question: Some(q.id),
            ..Ack::default()
        }))),
        None => Err(OpError::new(
            ErrorCode::NotFound,
            format!("no session `{}`", op.room.id()),
        )),
    }
}

/// Runs `upvote_question`: the right to join the question's session room, one upvote per user.
pub async fn upvote(
    op: UpvoteQuestion,
    who: Caller<'_>,
    authorizer: &dyn Authorizer,
    store: Option<&Live>,
) -> OpResult {
    let live = live(store)?;
    let org = who.claims.org.clone();
    let missing = format!("no question `{}`", op.question);
    let no_question = || OpError::new(ErrorCode::NotFound, missing.clone());
    let session = live.question_session(&org, &op.question).await?;
    may_join_session(who, authorizer, session, no_question).await?;
    match live
        .upvote(Upvote {
            org,
            question: op.question,
            user: who.claims.sub.clone(),
        })
        .await?
    {
        UpvoteOutcome::Recorded { .. } => Ok(Reply::Now(Event::Ack(Ack {
            r#ref: who.r#ref,
            ..Ack::default()
        }))),
        UpvoteOutcome::Duplicate => Err(OpError::new(
            ErrorCode::Conflict,
            "you have already upvoted this question",
        )),
        UpvoteOutcome::NotFound => Err(no_question()),
    }
}
