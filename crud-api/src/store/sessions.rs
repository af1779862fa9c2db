//! Sessions: the agenda of an event, each with its seats.

use super::outbox::push;
use super::sql::{Tx, args};
use super::{Conflict, Result, SqlStore, StoreError};
use crate::clock::Millis;
use crate::model::{Session, rfc3339};
use async_trait::async_trait;
use evd_protocol::event::{Event, SessionUpdated};
use serde::Deserialize;
use tracing::instrument;
use utoipa::ToSchema;

/// Most sessions one event may have, so the agenda is one bounded answer.
pub const MAX_SESSIONS_PER_EVENT: i64 = evd_protocol::MAX_SESSIONS_PER_EVENT as i64;

/// A new session.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    /// Title.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// Seats.
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub capacity: i64,
    /// Start (RFC 3339).
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Millis,
    /// End (RFC 3339), not before the start.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: Millis,
}

/// Changes to a session; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionPatch {
    /// Title.
    #[schema(min_length = 1, max_length = 200)]
    pub title: Option<String>,
    /// Seats; not below the seats taken and held.
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub capacity: Option<i64>,
    /// Start (RFC 3339).
    #[serde(default, with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<Millis>,
    /// End (RFC 3339).
    #[serde(default, with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<Millis>,
}

/// Sessions of an org's events.
#[async_trait]
pub trait SessionStore {
    /// Adds a session to an event.
    async fn create_session(&self, org: &str, event: &str, new: &NewSession) -> Result<Session>;
    /// One session, unless deleted.
    async fn get_session(&self, org: &str, id: &str) -> Result<Session>;
    /// Applies `patch`.
    async fn update_session(&self, org: &str, id: &str, patch: &SessionPatch) -> Result<Session>;
    /// Soft-deletes a session.
    async fn delete_session(&self, org: &str, id: &str) -> Result<()>;
    /// The agenda: an event's sessions by start time.
    async fn list_sessions(&self, org: &str, event: &str) -> Result<Vec<Session>>;
}

pub(crate) const SESSION_SELECT: &str = "select id, org_id, event_id, title, capacity, issued, \
     held, capacity - issued - held as available, starts_at, ends_at, created_at, updated_at \
     from sessions where org_id = $1 and id = $2 and deleted_at is null";

pub(crate) async fn load(tx: &mut Tx, org: &str, id: &str) -> Result<Session> {
    tx.fetch_optional(SESSION_SELECT, args![org, id])
        .await?
        .ok_or(StoreError::NotFound)
}

fn check(capacity: i64, starts_at: Millis, ends_at: Millis) -> Result<()> {
    if capacity < 0 {
        return Err(StoreError::Invalid {
            field: "capacity",
            message: "must not be negative".into(),
        });
    }
    if ends_at < starts_at {
        return Err(StoreError::Invalid {
            field: "ends_at",
            message: "must not be before starts_at".into(),
        });
    }
    Ok(())
}

async fn announce(tx: &mut Tx, s: &Session, deleted: bool, now: Millis) -> Result<()> {
    let room = format!("event:{}", s.event_id);
    let ev = Event::SessionUpdated(SessionUpdated {
        outbox_id: None,
        room: room.clone(),
        session: s.id.clone(),
        title: s.title.clone(),
        capacity: s.capacity,
        available: s.available,
        starts_at: s.starts_at,
        ends_at: s.ends_at,
        deleted,
    });
    push(tx, &s.org_id, &room, &ev, now).await
}

#[async_trait]
impl SessionStore for SqlStore {
    #[instrument(skip_all)]
    async fn create_session(&self, org: &str, event: &str, new: &NewSession) -> Result<Session> {
        check(new.capacity, new.starts_at, new.ends_at)?;
        let now = self.now();
        let mut tx = self.write(org).await?;
        tx.fetch_optional::<(String,)>(
            "select id from events where org_id = $1 and id = $2 and deleted_at is null",
            args![org, event],
        )
        .await?
        .ok_or(StoreError::NotFound)?;
        let (count,): (i64,) = tx
            .fetch_one(
                "select count(*) from sessions where org_id = $1 and event_id = $2 \
                 and deleted_at is null",
                args![org, event],
            )
            .await?;
        if count >= MAX_SESSIONS_PER_EVENT {
            return Err(StoreError::Invalid {
                field: "event",
                message: format!("an event has at most {MAX_SESSIONS_PER_EVENT} sessions"),
            });
        }
        let id = super::new_id();
        tx.execute(
            "insert into sessions (id, org_id, event_id, title, capacity, starts_at, ends_at, \
             created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            args![
                &id,
                org,
                event,
                &new.title,
                new.capacity,
                new.starts_at,
                new.ends_at,
                now
            ],
        )
        .await?;
        let session = load(&mut tx, org, &id).await?;
        announce(&mut tx, &session, false, now).await?;
        self.commit(tx, true).await?;
        Ok(session)
    }

    #[instrument(skip_all)]
    async fn get_session(&self, org: &str, id: &str) -> Result<Session> {
        let mut tx = self.read(org).await?;
        load(&mut tx, org, id).await
    }

    #[instrument(skip_all)]
    async fn update_session(&self, org: &str, id: &str, patch: &SessionPatch) -> Result<Session> {
        let now = self.now();
        let mut tx = self.write(org).await?;
        let current = load(&mut tx, org, id).await?;
        let capacity = patch.capacity.unwrap_or(current.capacity);
        let starts_at = patch.starts_at.unwrap_or(current.starts_at);
        let ends_at = patch.ends_at.unwrap_or(current.ends_at);
        check(capacity, starts_at, ends_at)?;
        if capacity < current.issued + current.held {
            return Err(Conflict::CapacityBelowTaken.into());
        }
        let changed = tx
            .execute(
                "update sessions set title = $3, capacity = $4, starts_at = $5, ends_at = $6, \
                 updated_at = $7 where org_id = $1 and id = $2 and issued + held <= $4",
                args![
                    org,
                    id,
                    patch.title.as_ref().unwrap_or(&current.title),
                    capacity,
                    starts_at,
                    ends_at,
                    now
                ],
            )
            .await?;
        if changed == 0 {
            return Err(Conflict::CapacityBelowTaken.into());
        }
        let session = load(&mut tx, org, id).await?;
        announce(&mut tx, &session, false, now).await?;
        self.commit(tx, true).await?;
        Ok(session)
    }

    #[instrument(skip_all)]
    async fn delete_session(&self, org: &str, id: &str) -> Result<()> {
        let now = self.now();
        let mut tx = self.write(org).await?;
        let session = load(&mut tx, org, id).await?;
        tx.execute(
            "update sessions set deleted_at = $3 where org_id = $1 and id = $2",
            args![org, id, now],
        )
        .await?;
        announce(&mut tx, &session, true, now).await?;
        self.commit(tx, true).await
    }

    #[instrument(skip_all)]
    async fn list_sessions(&self, org: &str, event: &str) -> Result<Vec<Session>> {
        let mut tx = self.read(org).await?;
        Ok(tx
            .fetch_all(
                "select id, org_id, event_id, title, capacity, issued, held, \
                 capacity - issued - held as available, starts_at, ends_at, created_at, \
                 updated_at from sessions where org_id = $1 and event_id = $2 \
                 and deleted_at is null order by starts_at, id limit $3",
                args![org, event, MAX_SESSIONS_PER_EVENT],
            )
            .await?)
    }
}
