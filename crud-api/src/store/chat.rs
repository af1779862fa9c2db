//! The chat archive: every message the engine published, paged by room.

use super::paging::next_cursor;
use super::sql::{Arg, args, execute_sqlite};
use super::{Db, Result, SqlStore, StoreError};
use crate::clock::Millis;
use crate::model::{ChatMessage, Page};
use async_trait::async_trait;
use std::sync::LazyLock;
use tracing::instrument;

/// A published message to archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChatMessage {
    /// The org.
    pub org: String,
    /// The room.
    pub room: String,
    /// The server-generated id; archiving the same id twice stores it once.
    pub id: String,
    /// The author.
    pub user: String,
    /// The text.
    pub text: String,
    /// Its epoch in the room: with `offset`, its position (unique within the epoch).
    pub epoch: String,
    /// Its offset in the room.
    pub offset: i64,
    /// When the engine accepted it, unix ms.
    pub ts: Millis,
}

/// Parameters per archived row.
const COLUMNS: usize = 8;

/// The most rows one insert statement carries ([`COLUMNS`] parameters each). Larger batches take
/// several statements; so only this many statement texts exist, and each backend's
/// per-connection statement cache keeps them all.
const ROWS_PER_INSERT: usize = 32;

/// `insert ... values (...), (...)` for 1 to [`ROWS_PER_INSERT`] rows.
static INSERTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    (1..=ROWS_PER_INSERT)
        .map(|rows| {
            let values: Vec<String> = (0..rows)
                .map(|r| {
                    let p: Vec<String> = (1..=COLUMNS)
                        .map(|c| format!("${}", r * COLUMNS + c))
                        .collect();
                    format!("({})", p.join(", "))
                })
                .collect();
            format!(
                "insert into chat_messages \
                 (org_id, room, id, user_id, text, epoch, room_offset, ts) \
                 values {} on conflict do nothing",
                values.join(", ")
            )
        })
        .collect()
});

/// The statement and parameters that insert `rows` (at most [`ROWS_PER_INSERT`]).
fn insert_rows(rows: &[NewChatMessage]) -> (&'static str, Vec<Arg>) {
    let sql = INSERTS[rows.len() - 1].as_str();
    let mut params = Vec::with_capacity(rows.len() * COLUMNS);
    for m in rows {
        params.extend(args![
            &m.org, &m.room, &m.id, &m.user, &m.text, &m.epoch, m.offset, m.ts
        ]);
    }
    (sql, params)
}

/// The archive.
#[async_trait]
pub trait ChatStore {
    /// Archives a batch in one transaction. Ids already archived are skipped.
    async fn append_chat_messages(&self, batch: &[NewChatMessage]) -> Result<()>;
    /// A room's messages, newest first, older than `before` (a cursor from a previous page).
    async fn chat_history(
        &self,
        org: &str,
        room: &str,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Page<ChatMessage>>;
    /// A room's messages of `epoch` after offset `after`, in offset order, at most `limit`: what
    /// a node refills a room's Redis history with after a failover.
    async fn chat_since(
        &self,
        org: &str,
        room: &str,
        epoch: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ChatMessage>>;
}

#[async_trait]
impl ChatStore for SqlStore {
    #[instrument(skip_all)]
    async fn append_chat_messages(&self, batch: &[NewChatMessage]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // Every statement is a trip to the database (on SQLite, to its worker thread and
        // back), so a batch goes in as few multi-row inserts as it can.
        if let Db::Sqlite { write, .. } = &self.db
            && batch.len() <= ROWS_PER_INSERT
        {
            // One statement needs no transaction: a single trip, plus the pool's own.
            let (sql, args) = insert_rows(batch);
            execute_sqlite(write, sql, args).await?;
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        // PostgreSQL's row-level security sees one org per statement; keep the batch's order.
        for run in batch.chunk_by(|a, b| a.org == b.org) {
            tx.set_org(&run[0].org).await?;
            for rows in run.chunks(ROWS_PER_INSERT) {
                let (sql, args) = insert_rows(rows);
                tx.execute(sql, args).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    #[instrument(skip_all)]
    async fn chat_history(
        &self,
        org: &str,
        room: &str,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Page<ChatMessage>> {
        let before: Option<i64> = match before {
            Some(c) => Some(c.parse().map_err(|_| StoreError::Invalid {
                field: "before",
                message: "not a cursor this API gave out".into(),
            })?),
            None => None,
        };
        let mut tx = self.read(org).await?;
        let mut items: Vec<ChatMessage> = tx
            .fetch_all(
                "select id, room, user_id, text, room_offset, ts, seq from chat_messages \
                 where org_id = $1 and room = $2 and ($3 is null or seq < $3) \
                 order by seq desc limit $4",
                args![org, room, before, limit + 1],
            )
            .await?;
        let next_cursor = next_cursor(&mut items, limit, |m| m.seq.to_string());
        Ok(Page { items, next_cursor })
    }

    #[instrument(skip_all)]
    async fn chat_since(
        &self,
        org: &str,
        room: &str,
        epoch: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ChatMessage>> {
        let mut tx = self.read(org).await?;
        let items = tx
            .fetch_all(
                "select id, room, user_id, text, room_offset, ts, seq from chat_messages \
                 where org_id = $1 and room = $2 and epoch = $3 and room_offset > $4 \
                 order by room_offset limit $5",
                args![org, room, epoch, after, limit],
            )
            .await?;
        Ok(items)
    }
}
