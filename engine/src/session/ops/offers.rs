//! `accept_offer` and `decline_offer`: answer a waitlist offer. Accepting issues the ticket
//! atomically within the session's capacity and answers `ACK {ticket}`; declining passes the seat
//! to the next person in line. The store's outbox tells the user (and the next person) with
//! `WAITLIST_UPDATE` / `WAITLIST_OFFER`.

use super::{OpError, OpResult, live};
use crate::conn::session::Session;
use evd_api::store::StoreError;
use evd_protocol::event::{Ack, Event};
use evd_protocol::op::OfferAnswer;
use evd_protocol::{ErrorCode, Ref};

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

pub(super) async fn accept(s: &mut Session, r: Option<Ref>, op: OfferAnswer) -> OpResult {
    let live = live(s)?;
    // Keyed by offer: a client that resends its accept after a reconnect gets the same ticket.
    let key = format!("ws-accept:{}", op.offer);
    let ticket = live
        .store
        .accept_offer(&s.claims.org, &op.offer, &s.claims.sub, Some(&key))
        .await
        .map_err(store_error)?;
    Ok(Some(Event::Ack(Ack {
        r#ref: r,
        ticket: Some(ticket.value.id),
        ..Ack::default()
    })))
}

pub(super) async fn decline(s: &mut Session, r: Option<Ref>, op: OfferAnswer) -> OpResult {
    let live = live(s)?;
    live.store
        .decline_offer(&s.claims.org, &op.offer, &s.claims.sub)
        .await
        .map_err(store_error)?;
    Ok(Some(Event::Ack(Ack {
        r#ref: r,
        ..Ack::default()
    })))
}
