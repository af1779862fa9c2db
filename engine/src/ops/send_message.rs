//! `send_message`: publish a chat message to a room one may join, answer `ACK {offset}`.
//!
//! Membership is not needed, only the right to join. A resend with a known `client_id` is
//! answered with the original offset and not broadcast again.

use super::{OpError, OpResult};
use crate::broker::NewMessage;
use crate::clock::unix_ms;
use crate::conn::session::Session;
use crate::node::RoomError;
use crate::room_key::RoomKey;
use evd_api::store::NewChatMessage;
use evd_protocol::event::{Ack, Event};
use evd_protocol::op::SendMessage;
use evd_protocol::{ErrorCode, Ref};

pub(super) async fn handle(s: &mut Session, r: Option<Ref>, op: SendMessage) -> OpResult {
    let limits = &s.node.settings.limits;
    if op.text.len() > limits.max_text_bytes {
        return Err(OpError::new(
            ErrorCode::TooLarge,
            format!(
                "`text` is {} bytes; the limit is {}",
                op.text.len(),
                limits.max_text_bytes
            ),
        ));
    }
    if op
        .client_id
        .as_ref()
        .is_some_and(|c| c.len() > limits.max_client_id_bytes)
    {
        return Err(OpError::new(
            ErrorCode::TooLarge,
            format!(
                "`client_id` is longer than {} bytes",
                limits.max_client_id_bytes
            ),
        ));
    }
    s.node.authorizer.can_join(&s.claims, &op.room).await?;
    let key = RoomKey::new(&s.claims.org, op.room);
    let msg = NewMessage {
        id: uuid::Uuid::now_v7().to_string(),
        user: s.claims.sub.clone(),
        text: op.text,
        ts: unix_ms(),
        client_id: op.client_id,
    };
    let archived = s.node.live.as_ref().map(|_| NewChatMessage {
        org: s.claims.org.clone(),
        room: key.room().to_string(),
        id: msg.id.clone(),
        user: msg.user.clone(),
        text: msg.text.clone(),
        offset: 0,
        ts: msg.ts,
    });
    let published = s.node.broker.publish(&key, msg).await.map_err(|e| {
        s.node.metrics.broker_error("publish");
        OpError::from(RoomError::from(e))
    })?;
    let ack = Event::Ack(Ack {
        r#ref: r,
        offset: Some(published.offset),
        ..Ack::default()
    });
    // With a store, the ACK follows the archive's commit. The session goes on to the next op
    // meanwhile; the ACK keeps its place among the replies. A resend (known `client_id`) was
    // archived the first time.
    if let (Some(live), Some(mut entry)) = (&s.node.live, archived)
        && !published.duplicate
    {
        entry.offset = i64::try_from(published.offset).unwrap_or(i64::MAX);
        let committed = live.archive(entry).await.map_err(|e| {
            tracing::warn!(error = %e, "a delivered message was not archived");
            not_archived()
        })?;
        let metrics = s.node.metrics.clone();
        s.reply_later(Box::pin(async move {
            match committed.await {
                Ok(()) => ack,
                Err(e) => {
                    tracing::warn!(error = %e, "a delivered message was not archived");
                    metrics.op_error(ErrorCode::Internal.as_str());
                    not_archived().into_event(r)
                }
            }
        }))
        .await;
        return Ok(None);
    }
    Ok(Some(ack))
}

fn not_archived() -> OpError {
    OpError::new(
        ErrorCode::Internal,
        "the message was delivered but not archived; resend it with the same client_id",
    )
}
