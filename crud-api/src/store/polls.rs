//! Polls of a session, their options and votes (one per user per poll).

use super::outbox::push;
use super::sessions::load as load_session;
use super::sql::{Tx, args};
use super::votes::{self, PollTallies, Vote, VoteOutcome};
use super::{Conflict, Result, SqlStore, StoreError};
use crate::clock::Millis;
use crate::model::{OptionCount, Poll, PollOption, PollResults, rfc3339};
use async_trait::async_trait;
use evd_protocol::event::{self, Event, PollClosed, PollCreated};
use serde::Deserialize;
use std::collections::BTreeMap;
use tracing::instrument;
use utoipa::ToSchema;

/// Most options a poll may have: more do not fit a phone screen.
pub const MAX_POLL_OPTIONS: usize = 20;

/// Most polls listed for one session.
pub const MAX_POLLS_PER_SESSION: i64 = 200;

/// A new poll.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPoll {
    /// The question.
    #[schema(min_length = 1, max_length = 500)]
    pub question: String,
    /// The options' texts, in display order (2 to 20).
    #[schema(min_items = 2, max_items = 20)]
    pub options: Vec<String>,
    /// When voting ends by itself (RFC 3339); absent: when an organizer closes it.
    #[serde(default, with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closes_at: Option<Millis>,
}

/// Polls.
#[async_trait]
pub trait PollStore {
    /// Opens a poll in a session.
    async fn create_poll(&self, org: &str, session: &str, new: &NewPoll, by: &str) -> Result<Poll>;
    /// A session's polls, oldest first.
    async fn list_polls(&self, org: &str, session: &str) -> Result<Vec<Poll>>;
    /// One poll.
    async fn get_poll(&self, org: &str, id: &str) -> Result<Poll>;
    /// Closes a poll and returns its final counts.
    async fn close_poll(&self, org: &str, id: &str) -> Result<PollResults>;
    /// The counts so far.
    async fn poll_results(&self, org: &str, id: &str) -> Result<PollResults>;
    /// Stores a batch of votes in one transaction; one outcome per vote, in order.
    async fn record_votes(&self, votes: &[Vote]) -> Result<Vec<VoteOutcome>>;
    /// The committed counts of many polls of an org, read together; a poll not found is left
    /// out.
    async fn poll_tallies(&self, org: &str, polls: &[String]) -> Result<PollTallies>;
}

const POLL_SELECT: &str = "select id, session_id, question, status, closes_at, created_by, \
     created_at, closed_at from polls where org_id = $1 and id = $2";

async fn with_options(tx: &mut Tx, org: &str, mut poll: Poll) -> Result<Poll> {
    poll.options = tx
        .fetch_all(
            "select id, text from poll_options where org_id = $1 and poll_id = $2 order by position",
            args![org, &poll.id],
        )
        .await?;
    Ok(poll)
}

async fn load(tx: &mut Tx, org: &str, id: &str) -> Result<Poll> {
    let poll = tx
        .fetch_optional(POLL_SELECT, args![org, id])
        .await?
        .ok_or(StoreError::NotFound)?;
    with_options(tx, org, poll).await
}

async fn results(tx: &mut Tx, org: &str, id: &str) -> Result<PollResults> {
    let poll: Poll = tx
        .fetch_optional(POLL_SELECT, args![org, id])
        .await?
        .ok_or(StoreError::NotFound)?;
    let options: Vec<OptionCount> = tx
        .fetch_all(
            "select o.id, o.text, cast(coalesce((select sum(c.votes) from poll_counts c \
             where c.poll_id = o.poll_id and c.option_id = o.id), 0) as bigint) as votes \
             from poll_options o where o.org_id = $1 and o.poll_id = $2 order by o.position",
            args![org, id],
        )
        .await?;
    Ok(PollResults {
        poll_id: poll.id,
        status: poll.status,
        total: options.iter().map(|o| o.votes).sum(),
        options,
    })
}

/// Closes an open poll in `tx` and writes `POLL_CLOSED` with the final counts.
pub(crate) async fn close(tx: &mut Tx, org: &str, id: &str, now: Millis) -> Result<PollResults> {
    let poll: Poll = tx
        .fetch_optional(POLL_SELECT, args![org, id])
        .await?
        .ok_or(StoreError::NotFound)?;
    let closed = tx
        .execute(
            "update polls set status = 'closed', closed_at = $3 where org_id = $1 and id = $2 \
             and status = 'open'",
            args![org, id, now],
        )
        .await?;
    if closed == 0 {
        return Err(Conflict::PollClosed.into());
    }
    let results = results(tx, org, id).await?;
    let counts: BTreeMap<String, u64> = results
        .options
        .iter()
        .map(|o| (o.id.clone(), u64::try_from(o.votes).unwrap_or(0)))
        .collect();
    let room = format!("session:{}", poll.session_id);
    let ev = Event::PollClosed(PollClosed {
        outbox_id: None,
        room: room.clone(),
        poll: id.to_owned(),
        counts,
        total: u64::try_from(results.total).unwrap_or(0),
    });
    push(tx, org, &room, &ev, now).await?;
    Ok(results)
}

fn invalid(field: &'static str, message: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field,
        message: message.into(),
    }
}

#[async_trait]
impl PollStore for SqlStore {
    #[instrument(skip_all)]
    async fn create_poll(&self, org: &str, session: &str, new: &NewPoll, by: &str) -> Result<Poll> {
        if !(2..=MAX_POLL_OPTIONS).contains(&new.options.len()) {
            return Err(invalid(
                "options",
                format!("give 2 to {MAX_POLL_OPTIONS} options"),
            ));
        }
        let now = self.now();
        if new.closes_at.is_some_and(|t| t <= now) {
            return Err(invalid("closes_at", "must be in the future"));
        }
        let mut tx = self.write(org).await?;
        load_session(&mut tx, org, session).await?;
        let id = super::new_id();
        tx.execute(
            "insert into polls (id, org_id, session_id, question, status, closes_at, created_by, \
             created_at) values ($1, $2, $3, $4, 'open', $5, $6, $7)",
            args![&id, org, session, &new.question, new.closes_at, by, now],
        )
        .await?;
        for (position, text) in (0i64..).zip(&new.options) {
            tx.execute(
                "insert into poll_options (id, org_id, poll_id, position, text) \
                 values ($1, $2, $3, $4, $5)",
                args![super::new_id(), org, &id, position, text],
            )
            .await?;
        }
        let poll = load(&mut tx, org, &id).await?;
        let room = format!("session:{session}");
        let ev = Event::PollCreated(PollCreated {
            outbox_id: None,
            room: room.clone(),
            poll: event::Poll {
                id: poll.id.clone(),
                question: poll.question.clone(),
                options: poll
                    .options
                    .iter()
                    .map(|o: &PollOption| event::PollOption {
                        id: o.id.clone(),
                        text: o.text.clone(),
                    })
                    .collect(),
                closes_at: poll.closes_at,
            },
        });
        push(&mut tx, org, &room, &ev, now).await?;
        self.commit(tx, true).await?;
        Ok(poll)
    }

    #[instrument(skip_all)]
    async fn list_polls(&self, org: &str, session: &str) -> Result<Vec<Poll>> {
        let mut tx = self.read(org).await?;
        let polls: Vec<Poll> = tx
            .fetch_all(
                "select id, session_id, question, status, closes_at, created_by, created_at, \
                 closed_at from polls where org_id = $1 and session_id = $2 \
                 order by created_at, id limit $3",
                args![org, session, MAX_POLLS_PER_SESSION],
            )
            .await?;
        let mut out = Vec::with_capacity(polls.len());
        for poll in polls {
            out.push(with_options(&mut tx, org, poll).await?);
        }
        Ok(out)
    }

    #[instrument(skip_all)]
    async fn get_poll(&self, org: &str, id: &str) -> Result<Poll> {
        let mut tx = self.read(org).await?;
        load(&mut tx, org, id).await
    }

    #[instrument(skip_all)]
    async fn close_poll(&self, org: &str, id: &str) -> Result<PollResults> {
        let mut tx = self.write(org).await?;
        let results = close(&mut tx, org, id, self.now()).await?;
        self.commit(tx, true).await?;
        Ok(results)
    }

    #[instrument(skip_all)]
    async fn poll_results(&self, org: &str, id: &str) -> Result<PollResults> {
        let mut tx = self.read(org).await?;
        results(&mut tx, org, id).await
    }

    #[instrument(skip_all)]
    async fn record_votes(&self, votes: &[Vote]) -> Result<Vec<VoteOutcome>> {
        votes::record(self, votes).await
    }

    #[instrument(skip_all)]
    async fn poll_tallies(&self, org: &str, polls: &[String]) -> Result<PollTallies> {
        votes::tallies(self, org, polls).await
    }
}
