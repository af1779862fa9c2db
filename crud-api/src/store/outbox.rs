//! The outbox: rows written in the same transaction as a change that live clients must see,
//! relayed by the engine to a room through the broker.
//!
//! A row names its org, its room (`session:<id>`, `event:<id>` or `user:<id>`), the event's
//! wire name (`kind`) and its payload: the event exactly as clients receive it, `ev` included.
//! Ids increase with every insert; the relay claims unsent rows in id order.
//! On PostgreSQL an insert also sends `NOTIFY evd_outbox`; in one process,
//! [`OutboxStore::outbox_wakeup`] is notified after each commit that wrote rows.

use super::sql::{Tx, args};
use super::{Db, Result, SqlStore};
use crate::clock::Millis;
use async_trait::async_trait;
use evd_protocol::Event;
use sqlx::types::Json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::instrument;

/// One outbox row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OutboxRecord {
    /// Increasing; clients and nodes may dedupe on it.
    pub id: i64,
    /// The org whose room receives it.
    pub org_id: String,
    /// The room, e.g. `session:<id>` or `user:<id>`.
    pub room: String,
    /// The event's wire name, e.g. `POLL_CREATED`.
    pub kind: String,
    /// The event as clients receive it.
    pub payload: Json<serde_json::Value>,
    /// When it was written, unix ms.
    pub created_at: Millis,
}

impl OutboxRecord {
    /// The payload as a protocol event.
    pub fn event(&self) -> Result<Event, serde_json::Error> {
        serde_json::from_value(self.payload.0.clone())
    }
}

/// The unsent part of the outbox, for the relay's backlog gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxBacklog {
    /// Rows not yet sent.
    pub rows: i64,
    /// When the oldest of them was written, unix ms; `None` when none waits.
    pub oldest_created_at: Option<Millis>,
}

/// What the engine's relay needs.
#[async_trait]
pub trait OutboxStore {
    /// Claims up to `limit` unsent rows of every org, in id order, for `lease`: until then no
    /// other claim returns them. Rows not marked sent within the lease are claimed again.
    async fn claim_outbox(&self, limit: i64, lease: Duration) -> Result<Vec<OutboxRecord>>;
    /// Marks rows as delivered.
    async fn mark_outbox_sent(&self, ids: &[i64]) -> Result<()>;
    /// Rows of every org with an id above `after`, sent or not, in id order.
    async fn list_outbox(&self, after: i64, limit: i64) -> Result<Vec<OutboxRecord>>;
    /// Deletes up to `limit` rows sent before `sent_before` (unix ms); returns how many.
    async fn prune_outbox(&self, sent_before: Millis, limit: i64) -> Result<u64>;
    /// Counts the unsent rows of every org and finds the oldest.
    async fn outbox_backlog(&self) -> Result<OutboxBacklog>;
    /// Notified after every commit in this process that wrote outbox rows.
    fn outbox_wakeup(&self) -> Arc<Notify>;
}

/// Adds a protocol event for `room` of `org`.
pub(crate) async fn push(
    tx: &mut Tx,
    org: &str,
    room: &str,
    event: &Event,
    now: Millis,
) -> Result<()> {
    let payload = serde_json::to_value(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let kind = event.name();
    tx.execute(
        "insert into outbox (org_id, room, kind, payload, created_at) values ($1, $2, $3, $4, $5)",
        args![org, room, kind, payload, now],
    )
    .await?;
    Ok(())
}

const RELAY: &str = "app.outbox_relay";

impl SqlStore {
    /// A read-only transaction (SQLite: on the reader pool) that may see every org's rows.
    async fn begin_relay_read(&self) -> Result<Tx> {
        let mut tx = match &self.db {
            Db::Sqlite { read, .. } => Tx::Sqlite(read.begin().await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        };
        tx.set_local(RELAY, "on").await?;
        Ok(tx)
    }
}

#[async_trait]
impl OutboxStore for SqlStore {
    #[instrument(skip_all)]
    async fn claim_outbox(&self, limit: i64, lease: Duration) -> Result<Vec<OutboxRecord>> {
        let now = self.now();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let mut tx = self.begin_write().await?;
        tx.set_local(RELAY, "on").await?;
        let sql = tx.pick(
            "update outbox set claimed_until = $1 where id in (\
                select id from outbox where sent_at is null \
                and (claimed_until is null or claimed_until < $2) order by id limit $3) \
             returning id, org_id, room, kind, payload, created_at",
            "update outbox set claimed_until = $1 where id in (\
                select id from outbox where sent_at is null \
                and (claimed_until is null or claimed_until < $2) order by id limit $3 \
                for update skip locked) \
             returning id, org_id, room, kind, payload, created_at",
        );
        let mut rows: Vec<OutboxRecord> = tx.fetch_all(sql, args![until, now, limit]).await?;
        tx.commit().await?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    #[instrument(skip_all)]
    async fn mark_outbox_sent(&self, ids: &[i64]) -> Result<()> {
        let now = self.now();
        let mut tx = self.begin_write().await?;
        tx.set_local(RELAY, "on").await?;
        for id in ids {
            tx.execute(
                "update outbox set sent_at = $1 where id = $2",
                args![now, *id],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    #[instrument(skip_all)]
    async fn prune_outbox(&self, sent_before: Millis, limit: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        tx.set_local(RELAY, "on").await?;
        let n = tx
            .execute(
                "delete from outbox where id in (\
                    select id from outbox where sent_at is not null and sent_at < $1 \
                    order by id limit $2)",
                args![sent_before, limit],
            )
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    #[instrument(skip_all)]
    async fn list_outbox(&self, after: i64, limit: i64) -> Result<Vec<OutboxRecord>> {
        let mut tx = self.begin_write().await?;
        tx.set_local(RELAY, "on").await?;
        let rows = tx
            .fetch_all(
                "select id, org_id, room, kind, payload, created_at from outbox \
                 where id > $1 order by id limit $2",
                args![after, limit],
            )
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    #[instrument(skip_all)]
    async fn outbox_backlog(&self) -> Result<OutboxBacklog> {
        // Both read the partial index on unsent rows; ids grow with `created_at`.
        let mut tx = self.begin_relay_read().await?;
        let (rows,): (i64,) = tx
            .fetch_one("select count(*) from outbox where sent_at is null", vec![])
            .await?;
        let oldest: Option<(Millis,)> = tx
            .fetch_optional(
                "select created_at from outbox where sent_at is null order by id limit 1",
                vec![],
            )
            .await?;
        tx.commit().await?;
        Ok(OutboxBacklog {
            rows,
            oldest_created_at: oldest.map(|(at,)| at),
        })
    }

    fn outbox_wakeup(&self) -> Arc<Notify> {
        self.outbox_wakeup.clone()
    }
}
