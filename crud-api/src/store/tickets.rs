//! Tickets: one seat each, never more than the session's capacity.
//!
//! Issuing takes a seat with one conditional update (`issued + held < capacity`), which
//! serializes on the session's row, so concurrent purchases cannot oversell; a check
//! constraint on the table backs it up.

use super::idempotency::{self, KeyUse};
use super::paging::next_cursor;
use super::seats::{load_ticket, offer_seats, ticket_columns};
use super::sessions::load as load_session;
use super::sql::{Tx, args};
use super::{Conflict, Created, Result, SqlStore, StoreError};
use crate::model::{Page, Ticket, TicketStatus};
use async_trait::async_trait;
use evd_protocol::RoomKind;
use evd_protocol::RoomName;
use evd_protocol::auth::Tier;
use tracing::instrument;

/// A request for a ticket.
#[derive(Debug, Clone)]
pub struct IssueTicket<'a> {
    /// The session.
    pub session: &'a str,
    /// Who gets it.
    pub user: &'a str,
    /// VIP or standard.
    pub tier: Tier,
    /// Makes a retry return the first ticket.
    pub idempotency_key: Option<&'a str>,
}

/// Whose tickets a listing holds.
#[derive(Debug, Clone, Copy)]
pub enum TicketsOf<'a> {
    /// One user's, across sessions.
    User(&'a str),
    /// One session's, every holder's (organizers and owners).
    Session(&'a str),
}

/// Tickets of an org.
#[async_trait]
pub trait TicketStore {
    /// Takes a seat. `SoldOut` when none is free, `Duplicate` when the user holds one.
    async fn issue_ticket(&self, org: &str, req: &IssueTicket<'_>) -> Result<Created<Ticket>>;
    /// Gives a seat back and offers it to the next person on the waitlist. With `holder`,
    /// only that user's ticket is found.
    async fn cancel_ticket(&self, org: &str, id: &str, holder: Option<&str>) -> Result<Ticket>;
    /// One ticket. With `holder`, only that user's ticket is found.
    async fn get_ticket(&self, org: &str, id: &str, holder: Option<&str>) -> Result<Ticket>;
    /// A user's or a session's tickets, cancelled ones included, newest last.
    async fn list_tickets(
        &self,
        org: &str,
        of: TicketsOf<'_>,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Page<Ticket>>;
    /// Whether the user holds an active ticket for `session:<id>`, or for any session of
    /// `event:<id>`. Other rooms: false.
    async fn has_ticket_for_room(&self, org: &str, user: &str, room: &RoomName) -> Result<bool>;
}

async fn load(tx: &mut Tx, org: &str, id: &str, holder: Option<&str>) -> Result<Ticket> {
    let ticket = load_ticket(tx, org, id).await?;
    match holder {
        Some(user) if ticket.user_id != user => Err(StoreError::NotFound),
        _ => Ok(ticket),
    }
}

#[async_trait]
impl TicketStore for SqlStore {
    #[instrument(skip_all)]
    async fn issue_ticket(&self, org: &str, req: &IssueTicket<'_>) -> Result<Created<Ticket>> {
        let now = self.now();
        let mut tx = self.write(org).await?;
        let key = req.idempotency_key.map(|key| KeyUse {
            org,
            user: req.user,
            scope: "issue_ticket",
            key,
            request: format!("{}|{}", req.session, req.tier.as_str()),
        });
        if let Some(replay) = idempotency::replay(&mut tx, key.as_ref(), now, load_ticket).await? {
            return Ok(replay);
        }
        let (tickets, offers): (i64, i64) = tx
            .fetch_one(
                "select (select count(*) from tickets where org_id = $1 and session_id = $2 \
                 and user_id = $3 and status = 'active'), \
                 (select count(*) from waitlist_offers where org_id = $1 and session_id = $2 \
                 and user_id = $3 and status = 'open')",
                args![org, req.session, req.user],
            )
            .await?;
        if tickets > 0 {
            return Err(Conflict::Duplicate("a ticket for this session").into());
        }
        if offers > 0 {
            return Err(Conflict::HoldsOffer.into());
        }
        let taken: Option<(String,)> = tx
            .fetch_optional(
                "update sessions set issued = issued + 1 where org_id = $1 and id = $2 \
                 and deleted_at is null and issued + held < capacity returning event_id",
                args![org, req.session],
            )
            .await?;
        let Some((event_id,)) = taken else {
            load_session(&mut tx, org, req.session).await?;
            return Err(Conflict::SoldOut.into());
        };
        let ticket: Ticket = tx
            .fetch_one(
                concat!(
                    "insert into tickets (id, org_id, session_id, event_id, user_id, tier, \
                     status, created_at) values ($1, $2, $3, $4, $5, $6, 'active', $7) \
                     returning ",
                    ticket_columns!()
                ),
                args![
                    super::new_id(),
                    org,
                    req.session,
                    &event_id,
                    req.user,
                    req.tier.as_str(),
                    now
                ],
            )
            .await
            .map_err(|e| StoreError::unique(e, "a ticket for this session"))?;
        // Someone in line who bought a seat directly is no longer waiting.
        tx.execute(
            "update waitlist_entries set status = 'left', updated_at = $4 where org_id = $1 \
             and session_id = $2 and user_id = $3 and status = 'waiting'",
            args![org, req.session, req.user, now],
        )
        .await?;
        if let Some(k) = &key {
            idempotency::record(&mut tx, k, &ticket.id).await?;
        }
        self.commit(tx, false).await?;
        Ok(Created {
            value: ticket,
            created: true,
        })
    }

    #[instrument(skip_all)]
    async fn cancel_ticket(&self, org: &str, id: &str, holder: Option<&str>) -> Result<Ticket> {
        let now = self.now();
        let mut tx = self.write(org).await?;
        let ticket = load(&mut tx, org, id, holder).await?;
        if ticket.status == TicketStatus::Cancelled {
            return Err(Conflict::AlreadyCancelled.into());
        }
        let cancelled = tx
            .execute(
                "update tickets set status = 'cancelled', cancelled_at = $3 \
                 where org_id = $1 and id = $2 and status = 'active'",
                args![org, id, now],
            )
            .await?;
        if cancelled == 0 {
            return Err(Conflict::AlreadyCancelled.into());
        }
        tx.execute(
            "update sessions set issued = issued - 1 where org_id = $1 and id = $2",
            args![org, &ticket.session_id],
        )
        .await?;
        let offers =
            offer_seats(&mut tx, org, &ticket.session_id, 1, now, self.offer_ttl_ms).await?;
        let ticket = load(&mut tx, org, id, None).await?;
        self.commit(tx, !offers.is_empty()).await?;
        Ok(ticket)
    }

    #[instrument(skip_all)]
    async fn get_ticket(&self, org: &str, id: &str, holder: Option<&str>) -> Result<Ticket> {
        let mut tx = self.read(org).await?;
        load(&mut tx, org, id, holder).await
    }

    #[instrument(skip_all)]
    async fn list_tickets(
        &self,
        org: &str,
        of: TicketsOf<'_>,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Page<Ticket>> {
        // One page of an org's tickets whose `$column` is `$2`. Ticket ids are UUIDv7: they sort
        // by creation time.
        macro_rules! page_by {
            ($column:literal) => {
                concat!(
                    "select ",
                    ticket_columns!(),
                    " from tickets where org_id = $1 and ",
                    $column,
                    " = $2 and ($3 is null or id > $3) order by id limit $4"
                )
            };
        }
        let (sql, key) = match of {
            TicketsOf::User(user) => (page_by!("user_id"), user),
            TicketsOf::Session(session) => (page_by!("session_id"), session),
        };
        let mut tx = self.read(org).await?;
        let mut items: Vec<Ticket> = tx
            .fetch_all(sql, args![org, key, cursor, limit + 1])
            .await?;
        let next_cursor = next_cursor(&mut items, limit, |t| t.id.clone());
        Ok(Page { items, next_cursor })
    }

    #[instrument(skip_all)]
    async fn has_ticket_for_room(&self, org: &str, user: &str, room: &RoomName) -> Result<bool> {
        let sql = match room.kind() {
            RoomKind::Session => {
                "select id from tickets where org_id = $1 and user_id = $2 \
                 and session_id = $3 and status = 'active' limit 1"
            }
            RoomKind::Event => {
                "select id from tickets where org_id = $1 and user_id = $2 \
                 and event_id = $3 and status = 'active' limit 1"
            }
            RoomKind::User => return Ok(false),
        };
        let mut tx = self.read(org).await?;
        let found = tx
            .fetch_optional::<(String,)>(sql, args![org, user, room.id()])
            .await?;
        Ok(found.is_some())
    }
}
