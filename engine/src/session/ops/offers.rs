//! `accept_offer` and `decline_offer`: answer a waitlist offer. Accepting issues the ticket
//! atomically within the session's capacity and answers `ACK {ticket}`; declining passes the seat
//! to the next person in line. The store's outbox tells the user (and the next person) with
//! `WAITLIST_UPDATE` / `WAITLIST_OFFER`.

use super::{Caller, OpResult, Reply, live};
use crate::live::Live;
use crate::session::error::OpError;
use evd_api::store::StoreError;
use evd_protocol::ErrorCode;
use evd_protocol::event::{Ack, Event};
use evd_protocol::op::OfferAnswer;

fn store_error(e: StoreError) -> OpError {
    match e {
        StoreError::NotFound => OpError::new(ErrorCode::NotFound, "no such offer for you"),
        StoreError::Conflict(c) => OpError::new(ErrorCode::Conflict, c.to_string()),
        StoreError::Invalid { .. } => OpError::new(ErrorCode::BadRequest, e.to_string()),
        other => {
            tracing::warn!(error = %other, "offer answer failed");
            OpError::new(ErrorCode::Internal, "the store is unavailable; retry")
        }
    }
}

/// Runs `accept_offer` against the store.
pub async fn accept(op: OfferAnswer, who: Caller<'_>, store: Option<&Live>) -> OpResult {
    let live = live(store)?;
    // Keyed by offer: a client that resends its accept after a reconnect gets the same ticket.
    let key = format!("ws-accept:{}", op.offer);
    let ticket = live
        .store
        .accept_offer(&who.claims.org, &op.offer, &who.claims.sub, Some(&key))
        .await
        .map_err(store_error)?;
    Ok(Reply::Now(Event::Ack(Ack {
        r#ref: who.r#ref,
        ticket: Some(ticket.value.id),
        ..Ack::default()
    })))
}

/// Runs `decline_offer` against the store.
pub async fn decline(op: OfferAnswer, who: Caller<'_>, store: Option<&Live>) -> OpResult {
    let live = live(store)?;
    live.store
        .decline_offer(&who.claims.org, &op.offer, &who.claims.sub)
        .await
        .map_err(store_error)?;
    Ok(Reply::Now(Event::Ack(Ack {
        r#ref: who.r#ref,
        ..Ack::default()
    })))
}
