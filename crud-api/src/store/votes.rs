//! Votes written in batches and counts read for many polls at once: the engine's side of polls.
//!
//! On PostgreSQL a batch costs one statement per org in it (plus the org's `set_config`): the
//! votes go in as arrays, and one statement finds each vote's poll and option, inserts the
//! first valid vote of each user per poll, and returns what became of every vote. SQLite keeps
//! two cheap statements per vote inside the batch's one transaction. Both give each vote the
//! outcome it would have had, had the batch been stored one vote after the other.

use super::sql::{Tx, args};
use super::{Result, SqlStore};
use crate::clock::Millis;
use crate::model::PollStatus;
use std::collections::BTreeMap;

/// One vote, as the engine's batched writer hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// The voter's org.
    pub org: String,
    /// The poll id.
    pub poll: String,
    /// The voter.
    pub user: String,
    /// The option id.
    pub option: String,
}

/// What became of one vote of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Stored; the poll belongs to this session.
    Recorded {
        /// The poll's session (its room is `session:<id>`).
        session: String,
    },
    /// The user had voted in this poll already.
    Duplicate,
    /// No such poll in the org, or no such option in the poll.
    NotFound,
    /// The poll is closed.
    Closed,
}

/// Most polls whose counts one statement reads; a longer list is read in several.
pub const MAX_POLLS_PER_TALLY: usize = 500;

/// Votes per option id, per poll id.
pub type PollTallies = BTreeMap<String, BTreeMap<String, u64>>;

/// A vote's poll as the batch found it: absent fields mean no such poll in the org.
#[derive(sqlx::FromRow)]
struct Found {
    ord: i64,
    session_id: Option<String>,
    status: Option<String>,
    closes_at: Option<Millis>,
    option_found: bool,
    stored: bool,
}

/// One statement for all votes of one org: `$1` org, `$2..$4` polls, users, options, `$5` now,
/// `$6` the store's writer id. Of a user's valid votes for a poll only the first in the batch is
/// tried; the insert goes in key order, so two batches touching the same keys lock them in the
/// same order. The votes stored are added to the writer's own `poll_counts` rows (in key order
/// too), which no other process updates.
const RECORD_PG: &str = "with target as ( \
       select i.ord, i.poll_id, i.user_id, i.option_id, p.session_id, p.status, p.closes_at, \
              exists (select 1 from poll_options o where o.org_id = $1 and o.poll_id = i.poll_id \
                      and o.id = i.option_id) as option_found \
       from unnest($2::text[], $3::text[], $4::text[]) with ordinality \
            as i(poll_id, user_id, option_id, ord) \
       left join polls p on p.org_id = $1 and p.id = i.poll_id \
     ), eligible as ( \
       select distinct on (poll_id, user_id) ord, poll_id, user_id, option_id from target \
       where option_found and status = 'open' and (closes_at is null or closes_at > $5) \
       order by poll_id, user_id, ord \
     ), stored as ( \
       insert into poll_votes (org_id, poll_id, user_id, option_id, created_at) \
       select $1, poll_id, user_id, option_id, $5 from eligible order by poll_id, user_id \
       on conflict do nothing \
       returning poll_id, user_id, option_id \
     ), counted as ( \
       insert into poll_counts (org_id, poll_id, option_id, writer, votes) \
       select $1, poll_id, option_id, $6, count(*) from stored \
       group by poll_id, option_id order by poll_id, option_id \
       on conflict (poll_id, option_id, writer) \
       do update set votes = poll_counts.votes + excluded.votes \
     ) \
     select t.ord, t.session_id, t.status, t.closes_at, t.option_found, \
            (s.poll_id is not null) as stored \
     from target t \
     left join eligible e on e.ord = t.ord \
     left join stored s on s.poll_id = e.poll_id and s.user_id = e.user_id \
     order by t.ord";

fn outcome(found: Found, now: Millis) -> VoteOutcome {
    match found.session_id {
        None => VoteOutcome::NotFound,
        Some(_) if !found.option_found => VoteOutcome::NotFound,
        Some(_)
            if found.status.as_deref() != Some(PollStatus::Open.as_str())
                || found.closes_at.is_some_and(|c| c <= now) =>
        {
            VoteOutcome::Closed
        }
        Some(session) if found.stored => VoteOutcome::Recorded { session },
        Some(_) => VoteOutcome::Duplicate,
    }
}

/// Stores `votes` in one transaction; one outcome per vote, in order.
pub(super) async fn record(store: &SqlStore, votes: &[Vote]) -> Result<Vec<VoteOutcome>> {
    if votes.is_empty() {
        return Ok(Vec::new());
    }
    let now = store.now();
    let mut tx = store.begin_write().await?;
    let outcomes = if tx.is_postgres() {
        record_by_org(store, &mut tx, votes, now).await?
    } else {
        record_one_by_one(store, &mut tx, votes, now).await?
    };
    tx.commit().await?;
    Ok(outcomes)
}

/// PostgreSQL: per org in the batch, its `set_config` and one statement.
async fn record_by_org(
    store: &SqlStore,
    tx: &mut Tx,
    votes: &[Vote],
    now: Millis,
) -> Result<Vec<VoteOutcome>> {
    let mut by_org: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, vote) in votes.iter().enumerate() {
        by_org.entry(vote.org.as_str()).or_default().push(i);
    }
    let mut outcomes: Vec<Option<VoteOutcome>> = vec![None; votes.len()];
    for (org, indexes) in by_org {
        // A generic plan: PostgreSQL otherwise plans the statement anew for each batch (its
        // arrays' lengths change the estimates), ~0.4 ms of a batch of one vote.
        tx.set_org_with_generic_plans(org).await?;
        let column = |f: fn(&Vote) -> &String| -> Vec<String> {
            indexes.iter().map(|&i| f(&votes[i]).clone()).collect()
        };
        let (polls, users, options) = (
            column(|v| &v.poll),
            column(|v| &v.user),
            column(|v| &v.option),
        );
        let Tx::Postgres(pg) = &mut *tx else {
            unreachable!("record_by_org runs on PostgreSQL only")
        };
        let rows: Vec<Found> = sqlx::query_as(RECORD_PG)
            .bind(org)
            .bind(polls)
            .bind(users)
            .bind(options)
            .bind(now)
            .bind(&*store.writer)
            .fetch_all(&mut **pg)
            .await?;
        for found in rows {
            let at = usize::try_from(found.ord - 1)
                .ok()
                .and_then(|k| indexes.get(k).copied())
                .ok_or(sqlx::Error::RowNotFound)?;
            outcomes[at] = Some(outcome(found, now));
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or(VoteOutcome::NotFound))
        .collect())
}

/// SQLite: two statements per vote (three when it is stored); each is a lookup in the local
/// file.
async fn record_one_by_one(
    store: &SqlStore,
    tx: &mut Tx,
    votes: &[Vote],
    now: Millis,
) -> Result<Vec<VoteOutcome>> {
    #[derive(sqlx::FromRow)]
    struct Target {
        session_id: String,
        status: String,
        closes_at: Option<Millis>,
        option_found: i64,
    }
    let mut outcomes = Vec::with_capacity(votes.len());
    for vote in votes {
        let target: Option<Target> = tx
            .fetch_optional(
                "select p.session_id, p.status, p.closes_at, (select count(*) from \
                 poll_options o where o.org_id = $1 and o.poll_id = p.id and o.id = $3) \
                 as option_found from polls p where p.org_id = $1 and p.id = $2",
                args![&vote.org, &vote.poll, &vote.option],
            )
            .await?;
        let found = match target {
            None => Found {
                ord: 0,
                session_id: None,
                status: None,
                closes_at: None,
                option_found: false,
                stored: false,
            },
            Some(t) => {
                let valid = t.option_found > 0
                    && t.status == PollStatus::Open.as_str()
                    && t.closes_at.is_none_or(|c| c > now);
                let stored = valid
                    && tx
                        .execute(
                            "insert into poll_votes (org_id, poll_id, user_id, option_id, \
                             created_at) values ($1, $2, $3, $4, $5) on conflict do nothing",
                            args![&vote.org, &vote.poll, &vote.user, &vote.option, now],
                        )
                        .await?
                        == 1;
                if stored {
                    tx.execute(
                        "insert into poll_counts (org_id, poll_id, option_id, writer, votes) \
                         values ($1, $2, $3, $4, 1) on conflict (poll_id, option_id, writer) \
                         do update set votes = votes + 1",
                        args![&vote.org, &vote.poll, &vote.option, &*store.writer],
                    )
                    .await?;
                }
                Found {
                    ord: 0,
                    session_id: Some(t.session_id),
                    status: Some(t.status),
                    closes_at: t.closes_at,
                    option_found: t.option_found > 0,
                    stored,
                }
            }
        };
        outcomes.push(outcome(found, now));
    }
    Ok(outcomes)
}

/// The committed counts of `polls` of `org`: one read transaction, one statement per
/// [`MAX_POLLS_PER_TALLY`] polls. A poll that is not there (or not the org's) is left out.
pub(super) async fn tallies(store: &SqlStore, org: &str, polls: &[String]) -> Result<PollTallies> {
    #[derive(sqlx::FromRow)]
    struct Count {
        poll_id: String,
        id: String,
        votes: i64,
    }
    let mut out = PollTallies::new();
    if polls.is_empty() {
        return Ok(out);
    }
    let mut tx = store.read(org).await?;
    for chunk in polls.chunks(MAX_POLLS_PER_TALLY) {
        // `= any(array(…))`, not `in (select …)`: PostgreSQL then finds the options by index
        // instead of reading every poll's.
        let sql = tx.pick(
            "select o.poll_id, o.id, coalesce((select sum(c.votes) from poll_counts c \
             where c.poll_id = o.poll_id and c.option_id = o.id), 0) as votes \
             from poll_options o \
             where o.org_id = $1 and o.poll_id in (select value from json_each($2))",
            "select o.poll_id, o.id, coalesce((select sum(c.votes) from poll_counts c \
             where c.poll_id = o.poll_id and c.option_id = o.id), 0)::bigint as votes \
             from poll_options o \
             where o.org_id = $1 and o.poll_id = any(array(select jsonb_array_elements_text($2)))",
        );
        let counts: Vec<Count> = tx
            .fetch_all(sql, args![org, serde_json::json!(chunk)])
            .await?;
        for c in counts {
            out.entry(c.poll_id)
                .or_default()
                .insert(c.id, u64::try_from(c.votes).unwrap_or(0));
        }
    }
    Ok(out)
}
