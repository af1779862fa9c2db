//! `send_message`: publish a chat message to a room one may join, answer `ACK {offset}`.
//!
//! Membership is not needed, only the right to join. A resend with a known `client_id` is
//! answered with the original offset and not broadcast again.
//!
//! With a store, an `ACK` means the message is published *and* in the chat archive, with its
//! epoch and offset: a Redis failover refills what the promoted replica lacks from there. A
//! resend archives the original again before its `ACK` (the archive skips an id it holds), so a
//! message whose archive write failed is archived by the resend the error asked for.

use super::{Caller, OpResult, Reply};
use crate::auth::Authorizer;
use crate::broker::{Broker, NewMessage};
use crate::clock::unix_ms;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::room_key::RoomKey;
use crate::session::error::OpError;
use crate::settings::Limits;
use evd_api::store::NewChatMessage;
use evd_protocol::ErrorCode;
use evd_protocol::event::{Ack, Event};
use evd_protocol::op::SendMessage;
use std::sync::Arc;

/// Runs `send_message`: checks sizes and the right to join, publishes, and with a store answers
/// an `ACK` that follows the archive's commit.
pub async fn apply(
    op: SendMessage,
    who: Caller<'_>,
    authorizer: &dyn Authorizer,
    broker: &dyn Broker,
    store: Option<&Live>,
    limits: &Limits,
    metrics: &Arc<Metrics>,
) -> OpResult {
    let r = who.r#ref;
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
    authorizer.can_join(who.claims, &op.room).await?;
    let key = RoomKey::new(&who.claims.org, op.room);
    let msg = NewMessage {
        id: uuid::Uuid::now_v7().to_string(),
        user: who.claims.sub.clone(),
        text: op.text,
        ts: unix_ms(),
        client_id: op.client_id,
    };
    let archived = store.map(|_| NewChatMessage {
        org: who.claims.org.clone(),
        room: key.room().to_string(),
        id: msg.id.clone(),
        user: msg.user.clone(),
        text: msg.text.clone(),
        epoch: String::new(),
        offset: 0,
        ts: msg.ts,
    });
    let published = broker.publish(&key, msg).await.map_err(|e| {
        metrics.broker_error("publish");
        OpError::from(e)
    })?;
    let ack = Event::Ack(Ack {
        r#ref: r,
        offset: Some(published.offset),
        ..Ack::default()
    });
    // With a store, the ACK follows the archive's commit. The session goes on to the next op
    // meanwhile; the ACK keeps its place among the replies. A resend (known `client_id`) is
    // archived again under the original's id and time, when the broker still knows them.
    let original = match (published.duplicate, published.original) {
        (false, _) => None,
        (true, Some(o)) => Some(o),
        (true, None) => return Ok(Reply::Now(ack)),
    };
    if let (Some(live), Some(mut entry)) = (store, archived) {
        if let Some(o) = original {
            entry.id = o.id;
            entry.ts = o.ts;
        }
        entry.epoch = published.epoch;
        entry.offset = i64::try_from(published.offset).unwrap_or(i64::MAX);
        let committed = live.archive(entry).await.map_err(|e| {
            tracing::warn!(error = %e, "a delivered message was not archived");
            not_archived()
        })?;
        let metrics = Arc::clone(metrics);
        return Ok(Reply::Later(Box::pin(async move {
            match committed.await {
                Ok(()) => ack,
                Err(e) => {
                    tracing::warn!(error = %e, "a delivered message was not archived");
                    metrics.op_error(ErrorCode::Internal.as_str());
                    not_archived().into_event(r)
                }
            }
        })));
    }
    Ok(Reply::Now(ack))
}

fn not_archived() -> OpError {
    OpError::new(
        ErrorCode::Internal,
        "the message was delivered but not archived; resend it with the same client_id",
    )
}
