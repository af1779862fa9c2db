//! Questions of a session and their upvotes (one per user per question).

use super::outbox::push;
use super::sql::{Tx, args};
use super::{Result, SqlStore, StoreError};
use crate::model::Question;
use async_trait::async_trait;
use evd_protocol::event::{Event, QuestionUpdated};
use tracing::instrument;

/// Most questions one list returns.
pub const MAX_QUESTIONS_PER_PAGE: i64 = 200;

/// A question to store, as the engine's batched writer hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQuestion {
    /// The asker's org.
    pub org: String,
    /// The session.
    pub session: String,
    /// Who asks.
    pub user: String,
    /// The text.
    pub text: String,
}

/// One upvote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upvote {
    /// The voter's org.
    pub org: String,
    /// The question id.
    pub question: String,
    /// The voter.
    pub user: String,
}

/// What became of one upvote of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpvoteOutcome {
    /// Counted.
    Recorded {
        /// The question's session.
        session: String,
        /// Its votes now.
        votes: i64,
    },
    /// The user had upvoted it already.
    Duplicate,
    /// No such question in the org.
    NotFound,
}

/// Questions.
#[async_trait]
pub trait QuestionStore {
    /// Stores a batch of questions in one transaction; `None` where the session is unknown.
    async fn create_questions(&self, batch: &[NewQuestion]) -> Result<Vec<Option<Question>>>;
    /// Stores a batch of upvotes in one transaction; one outcome per upvote, in order.
    async fn upvote_questions(&self, batch: &[Upvote]) -> Result<Vec<UpvoteOutcome>>;
    /// A session's questions, most upvoted first; hidden ones only when asked for.
    async fn list_questions(
        &self,
        org: &str,
        session: &str,
        include_hidden: bool,
        limit: i64,
    ) -> Result<Vec<Question>>;
    /// One question.
    async fn get_question(&self, org: &str, id: &str) -> Result<Question>;
    /// Hides a question from attendees and tells the room.
    async fn hide_question(&self, org: &str, id: &str) -> Result<Question>;
}

const QUESTION_SELECT: &str = "select id, session_id, user_id, text, votes, hidden, created_at \
     from questions where org_id = $1 and id = $2";

async fn load(tx: &mut Tx, org: &str, id: &str) -> Result<Question> {
    tx.fetch_optional(QUESTION_SELECT, args![org, id])
        .await?
        .ok_or(StoreError::NotFound)
}

#[async_trait]
impl QuestionStore for SqlStore {
    #[instrument(skip_all)]
    async fn create_questions(&self, batch: &[NewQuestion]) -> Result<Vec<Option<Question>>> {
        let now = self.now();
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(batch.len());
        for q in batch {
            tx.set_org(&q.org).await?;
            let session = tx
                .fetch_optional::<(String,)>(
                    "select id from sessions where org_id = $1 and id = $2 and deleted_at is null",
                    args![&q.org, &q.session],
                )
                .await?;
            if session.is_none() {
                out.push(None);
                continue;
            }
            let question = tx
                .fetch_one(
                    "insert into questions (id, org_id, session_id, user_id, text, created_at) \
                     values ($1, $2, $3, $4, $5, $6) \
                     returning id, session_id, user_id, text, votes, hidden, created_at",
                    args![super::new_id(), &q.org, &q.session, &q.user, &q.text, now],
                )
                .await?;
            out.push(Some(question));
        }
        tx.commit().await?;
        Ok(out)
    }

    #[instrument(skip_all)]
    async fn upvote_questions(&self, batch: &[Upvote]) -> Result<Vec<UpvoteOutcome>> {
        let now = self.now();
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(batch.len());
        for u in batch {
            tx.set_org(&u.org).await?;
            let Some(question) = tx
                .fetch_optional::<Question>(QUESTION_SELECT, args![&u.org, &u.question])
                .await?
            else {
                out.push(UpvoteOutcome::NotFound);
                continue;
            };
            let stored = tx
                .execute(
                    "insert into question_upvotes (org_id, question_id, user_id, created_at) \
                     values ($1, $2, $3, $4) on conflict do nothing",
                    args![&u.org, &u.question, &u.user, now],
                )
                .await?;
            if stored == 0 {
                out.push(UpvoteOutcome::Duplicate);
                continue;
            }
            let (votes,): (i64,) = tx
                .fetch_one(
                    "update questions set votes = votes + 1 where org_id = $1 and id = $2 \
                     returning votes",
                    args![&u.org, &u.question],
                )
                .await?;
            out.push(UpvoteOutcome::Recorded {
                session: question.session_id,
                votes,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    #[instrument(skip_all)]
    async fn list_questions(
        &self,
        org: &str,
        session: &str,
        include_hidden: bool,
        limit: i64,
    ) -> Result<Vec<Question>> {
        let mut tx = self.read(org).await?;
        Ok(tx
            .fetch_all(
                "select id, session_id, user_id, text, votes, hidden, created_at from questions \
                 where org_id = $1 and session_id = $2 and ($3 or hidden = false) \
                 order by votes desc, created_at, id limit $4",
                args![
                    org,
                    session,
                    include_hidden,
                    limit.min(MAX_QUESTIONS_PER_PAGE)
                ],
            )
            .await?)
    }

    #[instrument(skip_all)]
    async fn get_question(&self, org: &str, id: &str) -> Result<Question> {
        let mut tx = self.read(org).await?;
        load(&mut tx, org, id).await
    }

    #[instrument(skip_all)]
    async fn hide_question(&self, org: &str, id: &str) -> Result<Question> {
        let now = self.now();
        let mut tx = self.write(org).await?;
        load(&mut tx, org, id).await?;
        tx.execute(
            "update questions set hidden = true where org_id = $1 and id = $2",
            args![org, id],
        )
        .await?;
        let question = load(&mut tx, org, id).await?;
        let room = format!("session:{}", question.session_id);
        let ev = Event::QuestionUpdated(QuestionUpdated {
            outbox_id: None,
            room: room.clone(),
            question: question.id.clone(),
            votes: u64::try_from(question.votes).unwrap_or(0),
            hidden: Some(true),
        });
        push(&mut tx, org, &room, &ev, now).await?;
        self.commit(tx, true).await?;
        Ok(question)
    }
}
