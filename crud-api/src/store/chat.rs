//! The chat archive: every message the engine published, paged by room.

use super::orgs::next_cursor;
use super::sql::args;
use super::{Result, SqlStore, StoreError};
use crate::clock::Millis;
use crate::model::{ChatMessage, Page};
use async_trait::async_trait;
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
    /// Its offset in the room.
    pub offset: i64,
    /// When the engine accepted it, unix ms.
    pub ts: Millis,
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
}

#[async_trait]
impl ChatStore for SqlStore {
    #[instrument(skip_all)]
    async fn append_chat_messages(&self, batch: &[NewChatMessage]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let mut current_org: Option<&str> = None;
        for m in batch {
            if current_org != Some(m.org.as_str()) {
                tx.set_org(&m.org).await?;
                current_org = Some(&m.org);
            }
            tx.execute(
                "insert into chat_messages (org_id, room, id, user_id, text, room_offset, ts) \
                 values ($1, $2, $3, $4, $5, $6, $7) on conflict do nothing",
                args![&m.org, &m.room, &m.id, &m.user, &m.text, m.offset, m.ts],
            )
            .await?;
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
}
