//! `ask_question` and `upvote_question`: durable Q&A in session rooms. `QUESTION_ASKED` goes to
//! the room as soon as the question is stored; upvote counts follow as `QUESTION_UPDATED` on the
//! next tick.

use super::{OpError, OpResult, live};
use crate::conn::session::Session;
use evd_api::store::{NewQuestion, Upvote, UpvoteOutcome};
use evd_protocol::event::{Ack, Event};
use evd_protocol::op::{AskQuestion, UpvoteQuestion};
use evd_protocol::{ErrorCode, Ref, RoomKind, RoomName};

pub(super) async fn ask(s: &mut Session, r: Option<Ref>, op: AskQuestion) -> OpResult {
    if op.room.kind() != RoomKind::Session {
        return Err(OpError::new(
            ErrorCode::BadRequest,
            "questions are asked in `session:<id>` rooms",
        ));
    }
    let max = s.node.settings.limits.max_text_bytes;
    if op.text.len() > max {
        return Err(OpError::new(
            ErrorCode::TooLarge,
            format!("`text` is {} bytes; the limit is {max}", op.text.len()),
        ));
    }
    let live = live(s)?;
    s.node.authorizer.can_join(&s.claims, &op.room).await?;
    let q = NewQuestion {
        org: s.claims.org.clone(),
        session: op.room.id().to_owned(),
        user: s.claims.sub.clone(),
        text: op.text,
    };
    match live.ask(q).await? {
        Some(q) => Ok(Some(Event::Ack(Ack {
            r#ref: r,
            question: Some(q.id),
            ..Ack::default()
        }))),
        None => Err(OpError::new(
            ErrorCode::NotFound,
            format!("no session `{}`", op.room.id()),
        )),
    }
}

pub(super) async fn upvote(s: &mut Session, r: Option<Ref>, op: UpvoteQuestion) -> OpResult {
    let live = live(s)?;
    let org = s.claims.org.clone();
    let missing = format!("no question `{}`", op.question);
    let no_question = || OpError::new(ErrorCode::NotFound, missing.clone());
    let session = live
        .question_session(&org, &op.question)
        .await?
        .ok_or_else(no_question)?;
    let room = RoomName::new(RoomKind::Session, &session).map_err(|_| no_question())?;
    s.node.authorizer.can_join(&s.claims, &room).await?;
    match live
        .upvote(Upvote {
            org,
            question: op.question,
            user: s.claims.sub.clone(),
        })
        .await?
    {
        UpvoteOutcome::Recorded { .. } => Ok(Some(Event::Ack(Ack {
            r#ref: r,
            ..Ack::default()
        }))),
        UpvoteOutcome::Duplicate => Err(OpError::new(
            ErrorCode::Conflict,
            "you have already upvoted this question",
        )),
        UpvoteOutcome::NotFound => Err(no_question()),
    }
}
