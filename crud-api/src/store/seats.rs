//! Seat and offer bookkeeping that tickets and waitlists share: the ticket and offer rows a
//! seat hangs on, offering free seats to the front of a line, and ending offers.
//!
//! Seats: `sessions.issued` counts active tickets and `sessions.held` open offers. A purchase
//! needs `issued + held < capacity`; an offer moves a free seat into `held`, and accepting it
//! moves that seat to `issued`, so an accept never competes with purchases and never
//! oversells. Decline, expiry and ticket cancellation free a seat and offer it to the next
//! person in the same transaction.

use super::outbox::push;
use super::sql::{Tx, args};
use super::{Conflict, Result, SqlStore, StoreError};
use crate::clock::Millis;
use crate::model::{EntryStatus, Offer, OfferStatus, Ticket};
use evd_protocol::event::{
    Event, WaitlistOffer, WaitlistStatus, WaitlistUpdate as WaitlistUpdateEvent,
};

/// How many people at the front of a line are told their new position when it moves.
/// Those further back learn it when they ask; telling everyone would cost a row per person
/// per movement.
pub const POSITION_NOTICES: i64 = 50;

/// The columns an [`Offer`] is read from, as a literal for `concat!`.
macro_rules! offer_columns {
    () => {
        "id, session_id, user_id, status, expires_at, created_at, answered_at, ticket_id"
    };
}
pub(super) use offer_columns;

/// The columns a [`Ticket`] is read from, as a literal for `concat!`.
macro_rules! ticket_columns {
    () => {
        "id, org_id, session_id, event_id, user_id, tier, status, offer_id, created_at, \
         cancelled_at"
    };
}
pub(super) use ticket_columns;

pub(super) const OFFER_SELECT: &str = concat!(
    "select ",
    offer_columns!(),
    " from waitlist_offers where org_id = $1 and id = $2"
);

const TICKET_SELECT: &str = concat!(
    "select ",
    ticket_columns!(),
    " from tickets where org_id = $1 and id = $2"
);

/// One ticket, whoever holds it.
pub(super) async fn load_ticket(tx: &mut Tx, org: &str, id: &str) -> Result<Ticket> {
    tx.fetch_optional(TICKET_SELECT, args![org, id])
        .await?
        .ok_or(StoreError::NotFound)
}

/// Whether the user holds an active ticket for the session.
pub(super) async fn holds_ticket(
    tx: &mut Tx,
    org: &str,
    session: &str,
    user: &str,
) -> Result<bool> {
    Ok(tx
        .fetch_optional::<(String,)>(
            "select id from tickets where org_id = $1 and session_id = $2 and user_id = $3 \
             and status = 'active'",
            args![org, session, user],
        )
        .await?
        .is_some())
}

#[derive(Debug, sqlx::FromRow)]
struct Line {
    id: String,
    user_id: String,
}

/// The first `n` people waiting in the session's line, in order.
async fn front_of_line(tx: &mut Tx, org: &str, session: &str, n: i64) -> Result<Vec<Line>> {
    Ok(tx
        .fetch_all(
            "select id, user_id from waitlist_entries where org_id = $1 \
             and session_id = $2 and status = 'waiting' order by priority, seq limit $3",
            args![org, session, n],
        )
        .await?)
}

/// A `WAITLIST_UPDATE` for the user's stream.
pub(super) fn update(session: &str, status: WaitlistStatus, position: Option<i64>) -> Event {
    Event::WaitlistUpdate(WaitlistUpdateEvent {
        outbox_id: None,
        session: session.to_owned(),
        status,
        position: position.and_then(|p| u64::try_from(p).ok()),
    })
}

/// Tells the front of the line its positions after it moved.
pub(super) async fn line_moved(tx: &mut Tx, org: &str, session: &str, now: Millis) -> Result<()> {
    let front = front_of_line(tx, org, session, POSITION_NOTICES).await?;
    for (i, entry) in (1i64..).zip(&front) {
        let ev = update(session, WaitlistStatus::Waiting, Some(i));
        push(tx, org, &format!("user:{}", entry.user_id), &ev, now).await?;
    }
    Ok(())
}

/// Offers up to `n` free seats to the front of the line, in `tx`.
pub(super) async fn offer_seats(
    tx: &mut Tx,
    org: &str,
    session: &str,
    n: i64,
    now: Millis,
    ttl: Millis,
) -> Result<Vec<Offer>> {
    let line = front_of_line(tx, org, session, n).await?;
    let mut offers = Vec::with_capacity(line.len());
    for entry in line {
        let held = tx
            .execute(
                "update sessions set held = held + 1 where org_id = $1 and id = $2 \
                 and issued + held < capacity",
                args![org, session],
            )
            .await?;
        if held == 0 {
            break;
        }
        let offer: Offer = tx
            .fetch_one(
                concat!(
                    "insert into waitlist_offers (id, org_id, session_id, entry_id, user_id, \
                     status, expires_at, created_at) values ($1, $2, $3, $4, $5, 'open', $6, $7) \
                     returning ",
                    offer_columns!()
                ),
                args![
                    super::new_id(),
                    org,
                    session,
                    &entry.id,
                    &entry.user_id,
                    now.saturating_add(ttl),
                    now
                ],
            )
            .await?;
        tx.execute(
            "update waitlist_entries set status = 'offered', updated_at = $3 \
             where org_id = $1 and id = $2",
            args![org, &entry.id, now],
        )
        .await?;
        let ev = Event::WaitlistOffer(WaitlistOffer {
            outbox_id: None,
            offer: offer.id.clone(),
            session: session.to_owned(),
            expires_at: offer.expires_at,
        });
        push(tx, org, &format!("user:{}", entry.user_id), &ev, now).await?;
        offers.push(offer);
    }
    if !offers.is_empty() {
        line_moved(tx, org, session, now).await?;
    }
    Ok(offers)
}

/// Ends an open offer without a ticket (declined or expired): frees its seat, ends the
/// entry, tells the user, and offers the seat to the next person.
async fn end_offer(
    tx: &mut Tx,
    org: &str,
    offer: &Offer,
    status: OfferStatus,
    now: Millis,
    ttl: Millis,
) -> Result<()> {
    let (entry_status, wire) = match status {
        OfferStatus::Declined => (EntryStatus::Declined, WaitlistStatus::Declined),
        _ => (EntryStatus::Expired, WaitlistStatus::Expired),
    };
    let ended = tx
        .execute(
            "update waitlist_offers set status = $3, answered_at = $4 \
             where org_id = $1 and id = $2 and status = 'open'",
            args![org, &offer.id, status.as_str(), now],
        )
        .await?;
    if ended == 0 {
        return Err(Conflict::OfferAnswered.into());
    }
    tx.execute(
        "update waitlist_entries set status = $3, updated_at = $4 where org_id = $1 \
         and id = (select entry_id from waitlist_offers where org_id = $1 and id = $2)",
        args![org, &offer.id, entry_status.as_str(), now],
    )
    .await?;
    tx.execute(
        "update sessions set held = held - 1 where org_id = $1 and id = $2",
        args![org, &offer.session_id],
    )
    .await?;
    let ev = update(&offer.session_id, wire, None);
    push(tx, org, &format!("user:{}", offer.user_id), &ev, now).await?;
    offer_seats(tx, org, &offer.session_id, 1, now, ttl).await?;
    Ok(())
}

impl SqlStore {
    /// Declines an open offer in `tx`: its seat goes to the next person.
    pub(super) async fn decline(
        &self,
        tx: &mut Tx,
        org: &str,
        offer: &Offer,
        now: Millis,
    ) -> Result<()> {
        end_offer(
            tx,
            org,
            offer,
            OfferStatus::Declined,
            now,
            self.offer_ttl_ms,
        )
        .await
    }

    /// Expires an open offer that is due, in a transaction of its own. False when it was
    /// answered or swept meanwhile.
    pub(crate) async fn expire_offer(&self, org: &str, id: &str, now: Millis) -> Result<bool> {
        let mut tx = self.write(org).await?;
        let offer: Option<Offer> = tx.fetch_optional(OFFER_SELECT, args![org, id]).await?;
        let Some(offer) = offer else { return Ok(false) };
        if offer.status != OfferStatus::Open || offer.expires_at > now {
            return Ok(false);
        }
        end_offer(
            &mut tx,
            org,
            &offer,
            OfferStatus::Expired,
            now,
            self.offer_ttl_ms,
        )
        .await?;
        self.commit(tx, true).await?;
        Ok(true)
    }
}
