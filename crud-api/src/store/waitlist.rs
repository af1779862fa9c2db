//! Waitlists: a line per session, VIP before standard and first come first served within a
//! tier; offers that hold a seat until they expire. The seat bookkeeping behind offers is
//! [`super::seats`]'s.

use super::idempotency::{self, KeyUse};
use super::outbox::push;
use super::seats::{
    OFFER_SELECT, holds_ticket, line_moved, load_ticket, offer_columns, offer_seats, update,
};
use super::sessions::load as load_session;
use super::sql::{Tx, args};
use super::{Conflict, Created, Result, SqlStore, StoreError};
use crate::clock::Millis;
use crate::model::{EntryStatus, Offer, OfferStatus, Ticket, WaitlistEntry};
use async_trait::async_trait;
use evd_protocol::auth::Tier;
use evd_protocol::event::WaitlistStatus;
use tracing::instrument;

/// Most offers one "offer the next N" call makes.
pub const MAX_OFFERS_PER_CALL: i64 = 100;

/// A request to join a waitlist.
#[derive(Debug, Clone)]
pub struct JoinWaitlist<'a> {
    /// The session.
    pub session: &'a str,
    /// Who joins.
    pub user: &'a str,
    /// Their priority.
    pub tier: Tier,
    /// Makes a retry return the first entry.
    pub idempotency_key: Option<&'a str>,
}

/// Waitlists and offers.
#[async_trait]
pub trait WaitlistStore {
    /// Puts the user in line; `Duplicate` if they are in line or hold a ticket.
    async fn join_waitlist(
        &self,
        org: &str,
        req: &JoinWaitlist<'_>,
    ) -> Result<Created<WaitlistEntry>>;
    /// Takes the user out of line; an open offer is declined.
    async fn leave_waitlist(&self, org: &str, session: &str, user: &str) -> Result<()>;
    /// The user's latest entry on the session's waitlist, with their position while waiting.
    async fn waitlist_entry(&self, org: &str, session: &str, user: &str) -> Result<WaitlistEntry>;
    /// Offers free seats to the next `n` people in line; `SoldOut` if no seat is free.
    async fn offer_next(&self, org: &str, session: &str, n: i64) -> Result<Vec<Offer>>;
    /// One offer of the user's.
    async fn get_offer(&self, org: &str, offer: &str, user: &str) -> Result<Offer>;
    /// The user's open offers.
    async fn list_offers(&self, org: &str, user: &str) -> Result<Vec<Offer>>;
    /// The open offers of each of `users` (at most [`MAX_OFFERS_PER_CALL`] each, oldest
    /// first), in one read: the engine's catch-up for a batch of new connections.
    async fn list_offers_of(&self, org: &str, users: &[String]) -> Result<Vec<Offer>>;
    /// Turns the user's open offer into a ticket. A lapsed offer is expired (and the seat
    /// offered on) and answers `OfferExpired`.
    async fn accept_offer(
        &self,
        org: &str,
        offer: &str,
        user: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Created<Ticket>>;
    /// Declines the user's open offer; the seat goes to the next person.
    async fn decline_offer(&self, org: &str, offer: &str, user: &str) -> Result<Offer>;
}

fn priority(tier: Tier) -> i64 {
    match tier {
        Tier::Vip => 0,
        Tier::Standard => 1,
    }
}

async fn position(tx: &mut Tx, org: &str, session: &str, priority: i64, seq: i64) -> Result<i64> {
    let (ahead,): (i64,) = tx
        .fetch_one(
            "select count(*) from waitlist_entries where org_id = $1 and session_id = $2 \
             and status = 'waiting' and (priority < $3 or (priority = $3 and seq < $4))",
            args![org, session, priority, seq],
        )
        .await?;
    Ok(ahead + 1)
}

async fn load_offer(tx: &mut Tx, org: &str, id: &str, user: &str) -> Result<Offer> {
    let offer: Offer = tx
        .fetch_optional(OFFER_SELECT, args![org, id])
        .await?
        .ok_or(StoreError::NotFound)?;
    if offer.user_id != user {
        return Err(StoreError::NotFound);
    }
    Ok(offer)
}

#[async_trait]
impl WaitlistStore for SqlStore {
    #[instrument(skip_all)]
    async fn join_waitlist(
        &self,
        org: &str,
        req: &JoinWaitlist<'_>,
    ) -> Result<Created<WaitlistEntry>> {
        let now = self.now();
        let mut tx = self.write(org).await?;
        load_session(&mut tx, org, req.session).await?;
        let key = req.idempotency_key.map(|key| KeyUse {
            org,
            user: req.user,
            scope: "join_waitlist",
            key,
            request: req.session.to_owned(),
        });
        if let Some(replay) =
            idempotency::replay(&mut tx, key.as_ref(), now, entry_with_position).await?
        {
            return Ok(replay);
        }
        if holds_ticket(&mut tx, org, req.session, req.user).await? {
            return Err(Conflict::Duplicate("a ticket for this session").into());
        }
        let (seq,): (i64,) = tx
            .fetch_one(
                "update sessions set waitlist_seq = waitlist_seq + 1 \
                 where org_id = $1 and id = $2 returning waitlist_seq",
                args![org, req.session],
            )
            .await?;
        let id = super::new_id();
        tx.execute(
            "insert into waitlist_entries (id, org_id, session_id, user_id, tier, priority, seq, \
             status, created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $7, 'waiting', $8, $8)",
            args![
                &id,
                org,
                req.session,
                req.user,
                req.tier.as_str(),
                priority(req.tier),
                seq,
                now
            ],
        )
        .await
        .map_err(|e| StoreError::unique(e, "a waitlist entry for this session"))?;
        if let Some(k) = &key {
            idempotency::record(&mut tx, k, &id).await?;
        }
        let entry = entry_with_position(&mut tx, org, &id).await?;
        let ev = update(req.session, WaitlistStatus::Waiting, entry.position);
        push(&mut tx, org, &format!("user:{}", req.user), &ev, now).await?;
        self.commit(tx, true).await?;
        Ok(Created {
            value: entry,
            created: true,
        })
    }

    #[instrument(skip_all)]
    async fn leave_waitlist(&self, org: &str, session: &str, user: &str) -> Result<()> {
        let now = self.now();
        let mut tx = self.write(org).await?;
        let open: Option<(String, String)> = tx
            .fetch_optional(
                "select id, status from waitlist_entries where org_id = $1 and session_id = $2 \
                 and user_id = $3 and status in ('waiting', 'offered')",
                args![org, session, user],
            )
            .await?;
        let (entry, status) = open.ok_or(StoreError::NotFound)?;
        if status == EntryStatus::Offered.as_str() {
            // Leaving with an offer in hand declines it: the seat goes to the next person.
            let offer: Offer = tx
                .fetch_one(
                    concat!(
                        "select ",
                        offer_columns!(),
                        " from waitlist_offers where org_id = $1 and entry_id = $2 \
                         and status = 'open'"
                    ),
                    args![org, &entry],
                )
                .await?;
            self.decline(&mut tx, org, &offer, now).await?;
        } else {
            tx.execute(
                "update waitlist_entries set status = 'left', updated_at = $3 \
                 where org_id = $1 and id = $2",
                args![org, &entry, now],
            )
            .await?;
            let ev = update(session, WaitlistStatus::Left, None);
            push(&mut tx, org, &format!("user:{user}"), &ev, now).await?;
            line_moved(&mut tx, org, session, now).await?;
        }
        self.commit(tx, true).await
    }

    #[instrument(skip_all)]
    async fn waitlist_entry(&self, org: &str, session: &str, user: &str) -> Result<WaitlistEntry> {
        let mut tx = self.read(org).await?;
        let (id,): (String,) = tx
            .fetch_optional(
                "select id from waitlist_entries where org_id = $1 and session_id = $2 \
                 and user_id = $3 order by seq desc limit 1",
                args![org, session, user],
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        entry_with_position(&mut tx, org, &id).await
    }

    #[instrument(skip_all)]
    async fn offer_next(&self, org: &str, session: &str, n: i64) -> Result<Vec<Offer>> {
        let now = self.now();
        let mut tx = self.write(org).await?;
        let s = load_session(&mut tx, org, session).await?;
        if s.available <= 0 {
            return Err(Conflict::SoldOut.into());
        }
        let offers = offer_seats(
            &mut tx,
            org,
            session,
            n.min(MAX_OFFERS_PER_CALL),
            now,
            self.offer_ttl_ms,
        )
        .await?;
        self.commit(tx, !offers.is_empty()).await?;
        Ok(offers)
    }

    #[instrument(skip_all)]
    async fn get_offer(&self, org: &str, offer: &str, user: &str) -> Result<Offer> {
        let mut tx = self.read(org).await?;
        load_offer(&mut tx, org, offer, user).await
    }

    #[instrument(skip_all)]
    async fn list_offers(&self, org: &str, user: &str) -> Result<Vec<Offer>> {
        let mut tx = self.read(org).await?;
        Ok(tx
            .fetch_all(
                concat!(
                    "select ",
                    offer_columns!(),
                    " from waitlist_offers where org_id = $1 and user_id = $2 \
                     and status = 'open' order by created_at, id limit $3"
                ),
                args![org, user, MAX_OFFERS_PER_CALL],
            )
            .await?)
    }

    #[instrument(skip_all)]
    async fn list_offers_of(&self, org: &str, users: &[String]) -> Result<Vec<Offer>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.read(org).await?;
        // As in `tallies`: `= any(array(…))` lets PostgreSQL find each user's offers by index.
        let sql = tx.pick(
            concat!(
                "select * from (select ",
                offer_columns!(),
                ", row_number() over (partition by user_id order by created_at, id) as nth \
                 from waitlist_offers where org_id = $1 and status = 'open' \
                 and user_id in (select value from json_each($2))) \
                 where nth <= $3 order by user_id, created_at, id"
            ),
            concat!(
                "select * from (select ",
                offer_columns!(),
                ", row_number() over (partition by user_id order by created_at, id) as nth \
                 from waitlist_offers where org_id = $1 and status = 'open' \
                 and user_id = any(array(select jsonb_array_elements_text($2)))) ranked \
                 where nth <= $3 order by user_id, created_at, id"
            ),
        );
        Ok(tx
            .fetch_all(
                sql,
                args![org, serde_json::json!(users), MAX_OFFERS_PER_CALL],
            )
            .await?)
    }

    #[instrument(skip_all)]
    async fn accept_offer(
        &self,
        org: &str,
        offer_id: &str,
        user: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Created<Ticket>> {
        let now = self.now();
        let mut tx = self.write(org).await?;
        let offer = load_offer(&mut tx, org, offer_id, user).await?;
        let key = idempotency_key.map(|key| KeyUse {
            org,
            user,
            scope: "accept_offer",
            key,
            request: offer_id.to_owned(),
        });
        if let Some(replay) = idempotency::replay(&mut tx, key.as_ref(), now, load_ticket).await? {
            return Ok(replay);
        }
        let mut tx = self.answerable(tx, org, &offer, now).await?;
        let (tier, event_id): (String, String) = tx
            .fetch_one(
                "select e.tier, s.event_id from waitlist_offers o \
                 join waitlist_entries e on e.org_id = o.org_id and e.id = o.entry_id \
                 join sessions s on s.org_id = o.org_id and s.id = o.session_id \
                 where o.org_id = $1 and o.id = $2",
                args![org, offer_id],
            )
            .await?;
        tx.execute(
            "update sessions set held = held - 1, issued = issued + 1 \
             where org_id = $1 and id = $2",
            args![org, &offer.session_id],
        )
        .await?;
        let ticket_id = super::new_id();
        tx.execute(
            "insert into tickets (id, org_id, session_id, event_id, user_id, tier, status, \
             offer_id, created_at) values ($1, $2, $3, $4, $5, $6, 'active', $7, $8)",
            args![
                &ticket_id,
                org,
                &offer.session_id,
                &event_id,
                user,
                &tier,
                offer_id,
                now
            ],
        )
        .await
        .map_err(|e| StoreError::unique(e, "a ticket for this session"))?;
        tx.execute(
            "update waitlist_offers set status = 'accepted', answered_at = $3, ticket_id = $4 \
             where org_id = $1 and id = $2",
            args![org, offer_id, now, &ticket_id],
        )
        .await?;
        tx.execute(
            "update waitlist_entries set status = 'accepted', updated_at = $3 where org_id = $1 \
             and id = (select entry_id from waitlist_offers where org_id = $1 and id = $2)",
            args![org, offer_id, now],
        )
        .await?;
        if let Some(k) = &key {
            idempotency::record(&mut tx, k, &ticket_id).await?;
        }
        let ev = update(&offer.session_id, WaitlistStatus::Accepted, None);
        push(&mut tx, org, &format!("user:{user}"), &ev, now).await?;
        let ticket = load_ticket(&mut tx, org, &ticket_id).await?;
        self.commit(tx, true).await?;
        Ok(Created {
            value: ticket,
            created: true,
        })
    }

    #[instrument(skip_all)]
    async fn decline_offer(&self, org: &str, offer_id: &str, user: &str) -> Result<Offer> {
        let now = self.now();
        let mut tx = self.write(org).await?;
        let offer = load_offer(&mut tx, org, offer_id, user).await?;
        let mut tx = self.answerable(tx, org, &offer, now).await?;
        self.decline(&mut tx, org, &offer, now).await?;
        let offer = load_offer(&mut tx, org, offer_id, user).await?;
        self.commit(tx, true).await?;
        Ok(offer)
    }
}

impl SqlStore {
    /// Passes `tx` on while `offer` can still be answered. Otherwise refuses; an open offer
    /// that lapsed unswept is expired first (its seat goes to the next person), after `tx`
    /// is given up.
    async fn answerable(&self, tx: Tx, org: &str, offer: &Offer, now: Millis) -> Result<Tx> {
        match offer.status {
            OfferStatus::Open if offer.expires_at > now => Ok(tx),
            OfferStatus::Open => {
                drop(tx);
                self.expire_offer(org, &offer.id, now).await?;
                Err(Conflict::OfferExpired.into())
            }
            OfferStatus::Expired => Err(Conflict::OfferExpired.into()),
            _ => Err(Conflict::OfferAnswered.into()),
        }
    }
}

async fn entry_with_position(tx: &mut Tx, org: &str, id: &str) -> Result<WaitlistEntry> {
    #[derive(sqlx::FromRow)]
    struct Place {
        session_id: String,
        priority: i64,
        seq: i64,
        status: String,
    }
    let place: Place = tx
        .fetch_optional(
            "select session_id, priority, seq, status from waitlist_entries \
             where org_id = $1 and id = $2",
            args![org, id],
        )
        .await?
        .ok_or(StoreError::NotFound)?;
    let mut entry: WaitlistEntry = tx
        .fetch_one(
            "select id, session_id, user_id, tier, status, cast(null as bigint) as position, \
             created_at from waitlist_entries where org_id = $1 and id = $2",
            args![org, id],
        )
        .await?;
    if place.status == EntryStatus::Waiting.as_str() {
        entry.position =
            Some(position(tx, org, &place.session_id, place.priority, place.seq).await?);
    }
    Ok(entry)
}
