//! Events: CRUD with soft delete, cursor pages, filters and full-text search.

use super::paging::next_cursor;
use super::sql::args;
use super::{Result, SqlStore, StoreError};
use crate::clock::Millis;
use crate::model::{Event, EventStatus, Page, rfc3339};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use tracing::instrument;
use utoipa::ToSchema;

/// A new event.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// Name.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Description.
    #[serde(default)]
    #[schema(max_length = 10000)]
    pub description: String,
    /// Draft unless given.
    #[serde(default = "draft")]
    pub status: EventStatus,
    /// Start (RFC 3339).
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Millis,
    /// End (RFC 3339), not before the start.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: Millis,
}

fn draft() -> EventStatus {
    EventStatus::Draft
}

/// Changes to an event; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventPatch {
    /// Name.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// Description.
    #[schema(max_length = 10000)]
    pub description: Option<String>,
    /// Status.
    pub status: Option<EventStatus>,
    /// Start (RFC 3339).
    #[serde(default, with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<Millis>,
    /// End (RFC 3339).
    #[serde(default, with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<Millis>,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only this status.
    pub status: Option<EventStatus>,
    /// Only events still running at or after this time.
    pub from: Option<Millis>,
    /// Only events starting before this time.
    pub to: Option<Millis>,
    /// Words that must all appear in the name or description.
    pub words: Vec<String>,
    /// Continue after this cursor.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: i64,
}

/// Events of an org.
#[async_trait]
pub trait EventStore {
    /// Creates an event.
    async fn create_event(&self, org: &str, new: &NewEvent) -> Result<Event>;
    /// One event, unless deleted.
    async fn get_event(&self, org: &str, id: &str) -> Result<Event>;
    /// Applies `patch`.
    async fn update_event(&self, org: &str, id: &str, patch: &EventPatch) -> Result<Event>;
    /// Soft-deletes an event and its sessions.
    async fn delete_event(&self, org: &str, id: &str) -> Result<()>;
    /// Events by start time, then id.
    async fn list_events(&self, org: &str, query: &EventQuery) -> Result<Page<Event>>;
}

const EVENT_COLUMNS_SELECT: &str = "select id, org_id, name, description, status, starts_at, \
     ends_at, created_at, updated_at from events where org_id = $1 and id = $2 \
     and deleted_at is null";

fn check_times(starts_at: Millis, ends_at: Millis) -> Result<()> {
    if ends_at < starts_at {
        return Err(StoreError::Invalid {
            field: "ends_at",
            message: "must not be before starts_at".into(),
        });
    }
    Ok(())
}

fn encode_cursor(e: &Event) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", e.starts_at, e.id))
}

fn decode_cursor(cursor: &str) -> Result<(Millis, String)> {
    let bad = || StoreError::Invalid {
        field: "cursor",
        message: "not a cursor this API gave out".into(),
    };
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = raw.split_once(':').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, id.to_owned()))
}

#[async_trait]
impl EventStore for SqlStore {
    #[instrument(skip_all)]
    async fn create_event(&self, org: &str, new: &NewEvent) -> Result<Event> {
        check_times(new.starts_at, new.ends_at)?;
        let now = self.now();
        let mut tx = self.write(org).await?;
        let event = tx
            .fetch_one(
                "insert into events (id, org_id, name, description, status, starts_at, ends_at, \
                 created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                 returning id, org_id, name, description, status, starts_at, ends_at, \
                 created_at, updated_at",
                args![
                    super::new_id(),
                    org,
                    &new.name,
                    &new.description,
                    new.status.as_str(),
                    new.starts_at,
                    new.ends_at,
                    now
                ],
            )
            .await?;
        self.commit(tx, false).await?;
        Ok(event)
    }

    #[instrument(skip_all)]
    async fn get_event(&self, org: &str, id: &str) -> Result<Event> {
        let mut tx = self.read(org).await?;
        tx.fetch_optional(EVENT_COLUMNS_SELECT, args![org, id])
            .await?
            .ok_or(StoreError::NotFound)
    }

    #[instrument(skip_all)]
    async fn update_event(&self, org: &str, id: &str, patch: &EventPatch) -> Result<Event> {
        let mut tx = self.write(org).await?;
        let current: Event = tx
            .fetch_optional(EVENT_COLUMNS_SELECT, args![org, id])
            .await?
            .ok_or(StoreError::NotFound)?;
        let starts_at = patch.starts_at.unwrap_or(current.starts_at);
        let ends_at = patch.ends_at.unwrap_or(current.ends_at);
        check_times(starts_at, ends_at)?;
        let event = tx
            .fetch_one(
                "update events set name = $3, description = $4, status = $5, starts_at = $6, \
                 ends_at = $7, updated_at = $8 where org_id = $1 and id = $2 \
                 returning id, org_id, name, description, status, starts_at, ends_at, \
                 created_at, updated_at",
                args![
                    org,
                    id,
                    patch.name.as_ref().unwrap_or(&current.name),
                    patch.description.as_ref().unwrap_or(&current.description),
                    patch.status.unwrap_or(current.status).as_str(),
                    starts_at,
                    ends_at,
                    self.now()
                ],
            )
            .await?;
        self.commit(tx, false).await?;
        Ok(event)
    }

    #[instrument(skip_all)]
    async fn delete_event(&self, org: &str, id: &str) -> Result<()> {
        let now = self.now();
        let mut tx = self.write(org).await?;
        let deleted = tx
            .execute(
                "update events set deleted_at = $3 where org_id = $1 and id = $2 \
                 and deleted_at is null",
                args![org, id, now],
            )
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        tx.execute(
            "update sessions set deleted_at = $3 where org_id = $1 and event_id = $2 \
             and deleted_at is null",
            args![org, id, now],
        )
        .await?;
        self.commit(tx, false).await
    }

    #[instrument(skip_all)]
    async fn list_events(&self, org: &str, query: &EventQuery) -> Result<Page<Event>> {
        let (after_start, after_id) = match &query.cursor {
            Some(c) => {
                let (at, id) = decode_cursor(c)?;
                (Some(at), Some(id))
            }
            None => (None, None),
        };
        let mut tx = self.read(org).await?;
        let search = if query.words.is_empty() {
            None
        } else if tx.is_postgres() {
            Some(query.words.join(" "))
        } else {
            // FTS5 query syntax: each word quoted, so punctuation can never be an operator.
            Some(
                query
                    .words
                    .iter()
                    .map(|w| format!("\"{}\"", w.replace('"', "")))
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        };
        let sql = tx.pick(
            "select id, org_id, name, description, status, starts_at, ends_at, created_at, \
             updated_at from events where org_id = $1 and deleted_at is null \
             and ($2 is null or status = $2) and ($3 is null or ends_at >= $3) \
             and ($4 is null or starts_at < $4) \
             and ($5 is null or (starts_at, id) > ($5, $6)) \
             and ($7 is null or seq in (select rowid from events_fts where events_fts match $7)) \
             order by starts_at, id limit $8",
            "select id, org_id, name, description, status, starts_at, ends_at, created_at, \
             updated_at from events where org_id = $1 and deleted_at is null \
             and ($2::text is null or status = $2) and ($3::bigint is null or ends_at >= $3) \
             and ($4::bigint is null or starts_at < $4) \
             and ($5::bigint is null or (starts_at, id) > ($5, $6)) \
             and ($7::text is null or search @@ plainto_tsquery('simple', $7)) \
             order by starts_at, id limit $8",
        );
        let mut items: Vec<Event> = tx
            .fetch_all(
                sql,
                args![
                    org,
                    query.status.map(EventStatus::as_str),
                    query.from,
                    query.to,
                    after_start,
                    after_id,
                    search,
                    query.limit + 1
                ],
            )
            .await?;
        let next_cursor = next_cursor(&mut items, query.limit, encode_cursor);
        Ok(Page { items, next_cursor })
    }
}
