//! Live features backed by the store: durable votes, questions, upvotes and the chat archive.
//!
//! Every write goes through a [`GroupCommit`], so a burst of 10,000 votes is a few transactions,
//! and the client's `ACK` is sent after its write committed. A vote not taken into a commit
//! within `vote_wait_ms` is answered "busy" (`rate_limited`) and never committed. A failed chat
//! archive batch is tried again a few times before its messages are answered with an error; the
//! archive is also what a Redis broker refills a failed-over room's history from
//! ([`StoreArchive`]). After a vote or upvote batch commits, the node broadcasts the affected
//! polls' and questions' committed counts on the broker ([`Body::PollTally`] through
//! [`Tallies`], after the votes are answered; [`Body::QuestionVotes`]); every node merges them
//! by maximum and sends `POLL_RESULTS` / `QUESTION_UPDATED` once per tick. New connections'
//! open waitlist offers are read the same way, batched: one read for many connections.

use crate::broker::{Broker, BrokerError, ChatArchive};
use crate::group_commit::{GroupCommit, SubmitError};
use crate::room_key::RoomKey;
use crate::shutdown::Shutdown;
use crate::tallies::Tallies;
use async_trait::async_trait;
use evd_api::model::Offer;
use evd_api::store::{
    NewChatMessage, NewQuestion, Store, StoreError, Upvote, UpvoteOutcome, Vote, VoteOutcome,
};
use evd_protocol::bus::Body;
use evd_protocol::event::{ChatMessage, Event, Question, QuestionAsked};
use evd_protocol::{RoomKind, RoomName};
use moka::future::Cache;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Writes waiting per writer; beyond it callers wait (up to [`SUBMIT_WAIT`]).
const QUEUE: usize = 10_000;
/// Most writes per transaction: large enough that a burst is a handful of commits, small
/// enough that one commit stays short.
const MAX_BATCH: usize = 512;
/// How long an op waits for room in a full writer queue before answering "busy".
const SUBMIT_WAIT: Duration = Duration::from_secs(5);
/// How long the chat archive gathers after a first message before it commits. A chat message
/// is delivered before it is archived and its publisher does not wait for the ACK, so this
/// delays only the ACK; in return, 1,000 messages a second become about 100 transactions
/// instead of 1,000. Every commit is a trip to the store's thread and, on SQLite, a WAL write
/// of each of the table's four b-trees: `bench/ab.sh` (rooms, 1,000 messages a second) measured
/// 18.3 -> 14.3 us of server CPU per delivery going from 2 to 10 ms, at +0.25 ms delivery p99
/// (fewer wake-ups leave the workers parked longer).
const ARCHIVE_LINGER: Duration = Duration::from_millis(10);
/// How long the votes writer gathers after a first vote before it commits. A vote's `ACK`
/// waits for its commit, so this is added to it; in return a steady 100 votes a second per
/// node are a commit every 20 ms with a few votes each instead of one commit per vote (the
/// statement log of a 100k poll run: 15,422 vote batches for 20,000 votes). A full batch
/// (`MAX_BATCH`) commits without waiting.
const VOTE_LINGER: Duration = Duration::from_millis(20);
/// How long the offer catch-up gathers new connections before it reads their open waitlist
/// offers in one statement. Every connection is looked up once, as it opens; during a ramp of
/// 1,000 connections a second, one read transaction each was most of the database's
/// transactions. The offers arrive this much later, after the `HELLO`.
const OFFER_LINGER: Duration = Duration::from_millis(50);
/// Tries per chat archive batch: a transient store error (a dropped connection, a failover of
/// the database) costs a delayed `ACK`, not an error the client must resend on.
const ARCHIVE_ATTEMPTS: u32 = 3;
/// The wait before the second try; it doubles for each later one.
const ARCHIVE_RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Poll → session and question → session never change; cache them to authorize votes and
/// upvotes without a query each.
const LOOKUP_CACHE: u64 = 100_000;
const LOOKUP_TTL: Duration = Duration::from_secs(3600);

/// A write failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    /// The store failed.
    #[error("the store is unavailable")]
    Unavailable,
    /// The writer's queue stayed full, or the write was not taken into a commit in time.
    #[error("the server is busy; retry")]
    Busy,
}

impl From<SubmitError> for LiveError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Busy | SubmitError::Expired => LiveError::Busy,
            SubmitError::Stopped => LiveError::Unavailable,
        }
    }
}

type Outcome<T> = Result<T, LiveError>;

/// The store-backed side of a node.
pub struct Live {
    /// The system of record.
    pub store: Arc<dyn Store>,
    votes: GroupCommit<Vote, Outcome<VoteOutcome>>,
    /// How long a vote may wait to be taken into a commit before it is answered "busy".
    vote_wait: Duration,
    questions: GroupCommit<NewQuestion, Outcome<Option<evd_api::model::Question>>>,
    upvotes: GroupCommit<Upvote, Outcome<UpvoteOutcome>>,
    archive: GroupCommit<NewChatMessage, Outcome<()>>,
    /// Open offer reads for new connections, by (org, user); a read batched like a write.
    offers: GroupCommit<(String, String), Outcome<Vec<Offer>>>,
    poll_sessions: Cache<(String, String), String>,
    question_sessions: Cache<(String, String), String>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn each<T, R: Clone>(items: &[T], r: R) -> Vec<R> {
    vec![r; items.len()]
}

fn failed(what: &str, e: &StoreError) -> LiveError {
    tracing::warn!(error = %e, "{what} batch failed");
    LiveError::Unavailable
}

fn session_room(org: &str, session: &str) -> Option<RoomKey> {
    RoomName::new(RoomKind::Session, session)
        .ok()
        .map(|r| RoomKey::new(org, r))
}

impl Live {
    /// Starts the writers on `shutdown`; a vote waits at most `vote_wait` to be taken into a
    /// commit.
    pub fn spawn(
        store: Arc<dyn Store>,
        broker: Arc<dyn Broker>,
        shutdown: &Shutdown,
        vote_wait: Duration,
    ) -> Live {
        let writer = Writers {
            shutdown,
            store: &store,
            broker: &broker,
        };
        let tallies = Tallies::spawn(Arc::clone(&store), Arc::clone(&broker), shutdown);
        let votes = writer.spawn("votes", VOTE_LINGER, move |store, _, batch| {
            commit_votes(store, tallies.clone(), batch)
        });
        let questions = writer.spawn("questions", Duration::ZERO, commit_questions);
        let upvotes = writer.spawn("upvotes", Duration::ZERO, commit_upvotes);
        let archive = writer.spawn("archive", ARCHIVE_LINGER, commit_archive);
        let offers = writer.spawn("offers", OFFER_LINGER, |store, _, batch| {
            read_offers(store, batch)
        });
        broker.set_archive(Arc::new(StoreArchive(Arc::clone(&store))));
        let cache = || {
            Cache::builder()
                .max_capacity(LOOKUP_CACHE)
                .time_to_live(LOOKUP_TTL)
                .build()
        };
        Live {
            store,
            votes,
            vote_wait,
            questions,
            upvotes,
            archive,
            offers,
            poll_sessions: cache(),
            question_sessions: cache(),
        }
    }

    /// Records a vote; answers after the commit, or [`LiveError::Busy`] when the vote was not
    /// taken into a commit within `vote_wait` (it is then not recorded).
    pub async fn vote(&self, vote: Vote) -> Outcome<VoteOutcome> {
        self.votes.submit_within(vote, self.vote_wait).await?
    }

    /// Stores a question; `None` if the session does not exist.
    pub async fn ask(&self, q: NewQuestion) -> Outcome<Option<evd_api::model::Question>> {
        self.questions.submit(q).await?
    }

    /// Records an upvote.
    pub async fn upvote(&self, u: Upvote) -> Outcome<UpvoteOutcome> {
        self.upvotes.submit(u).await?
    }

    /// Queues a chat message for the archive and returns a future of its commit, so the caller
    /// can go on (the message is archived whether or not the future is awaited).
    pub async fn archive(
        &self,
        m: NewChatMessage,
    ) -> Outcome<impl Future<Output = Outcome<()>> + Send + 'static> {
        let committed = self.archive.enqueue(m).await?;
        Ok(async move { committed.await? })
    }

    /// The user's open waitlist offers, read with those of the other connections that opened
    /// within [`OFFER_LINGER`]. The future owns what it needs, so a task can run it. A lookup
    /// that finds the queue full waits for room again (each wait is bounded, and so is the
    /// queue): a reconnect storm delays the catch-up but never skips it.
    pub fn open_offers(
        &self,
        org: &str,
        user: &str,
    ) -> impl Future<Output = Outcome<Vec<Offer>>> + Send + 'static {
        let (offers, key) = (self.offers.clone(), (org.to_owned(), user.to_owned()));
        async move {
            loop {
                match offers.submit(key.clone()).await {
                    Err(SubmitError::Busy) => continue,
                    other => return other?,
                }
            }
        }
    }

    /// The session a poll belongs to; `None` if there is no such poll in the org.
    pub async fn poll_session(&self, org: &str, poll: &str) -> Outcome<Option<String>> {
        let key = (org.to_owned(), poll.to_owned());
        if let Some(s) = self.poll_sessions.get(&key).await {
            return Ok(Some(s));
        }
        match self.store.get_poll(org, poll).await {
            Ok(p) => {
                self.poll_sessions.insert(key, p.session_id.clone()).await;
                Ok(Some(p.session_id))
            }
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(failed("poll lookup", &e)),
        }
    }

    /// The session a question belongs to; `None` if there is no such question in the org.
    pub async fn question_session(&self, org: &str, question: &str) -> Outcome<Option<String>> {
        let key = (org.to_owned(), question.to_owned());
        if let Some(s) = self.question_sessions.get(&key).await {
            return Ok(Some(s));
        }
        match self.store.get_question(org, question).await {
            Ok(q) => {
                self.question_sessions
                    .insert(key, q.session_id.clone())
                    .await;
                Ok(Some(q.session_id))
            }
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(failed("question lookup", &e)),
        }
    }
}

/// What every writer is built from: the task owner, the store it commits to, and the broker it
/// announces committed counts on.
struct Writers<'a> {
    shutdown: &'a Shutdown,
    store: &'a Arc<dyn Store>,
    broker: &'a Arc<dyn Broker>,
}

impl Writers<'_> {
    /// A group-commit writer named `name` whose `commit` writes one batch and answers each
    /// item; `linger` is how long it gathers after a first item.
    fn spawn<T, R, F, Fut>(
        &self,
        name: &'static str,
        linger: Duration,
        commit: F,
    ) -> GroupCommit<T, R>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(Arc<dyn Store>, Arc<dyn Broker>, Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (store, broker) = (Arc::clone(self.store), Arc::clone(self.broker));
        GroupCommit::spawn(
            self.shutdown,
            name,
            QUEUE,
            MAX_BATCH,
            SUBMIT_WAIT,
            linger,
            move |batch| commit(Arc::clone(&store), Arc::clone(&broker), batch),
        )
    }
}

/// Commits votes, then marks each touched poll for its committed tally to be announced.
async fn commit_votes(
    store: Arc<dyn Store>,
    tallies: Tallies,
    batch: Vec<Vote>,
) -> Vec<Outcome<VoteOutcome>> {
    let outcomes = match store.record_votes(&batch).await {
        Ok(o) => o,
        Err(e) => return each(&batch, Err(failed("vote", &e))),
    };
    tallies.mark(batch.iter().zip(&outcomes).filter_map(|(v, o)| match o {
        VoteOutcome::Recorded { session } => Some((v.org.clone(), v.poll.clone(), session.clone())),
        _ => None,
    }));
    outcomes.into_iter().map(Ok).collect()
}

/// Reads the open offers of a batch of (org, user), one statement per org, and answers each
/// with its own; a failed read fails that org's lookups.
async fn read_offers(
    store: Arc<dyn Store>,
    batch: Vec<(String, String)>,
) -> Vec<Outcome<Vec<Offer>>> {
    let mut by_org: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (org, user) in &batch {
        by_org.entry(org).or_default().push(user.clone());
    }
    // Per org, each user's offers, or the org's failed read.
    let mut read: BTreeMap<&str, Outcome<BTreeMap<String, Vec<Offer>>>> = BTreeMap::new();
    for (org, mut users) in by_org {
        users.sort_unstable();
        users.dedup();
        let outcome = store.list_offers_of(org, &users).await.map(|offers| {
            let mut of_user: BTreeMap<String, Vec<Offer>> = BTreeMap::new();
            for o in offers {
                of_user.entry(o.user_id.clone()).or_default().push(o);
            }
            of_user
        });
        read.insert(org, outcome.map_err(|e| failed("open offers", &e)));
    }
    batch
        .iter()
        .map(|(org, user)| match &read[org.as_str()] {
            // A user with two new connections in the batch gets the offers on both.
            Ok(of_user) => Ok(of_user.get(user).cloned().unwrap_or_default()),
            Err(e) => Err(e.clone()),
        })
        .collect()
}

/// Commits questions, then broadcasts `QUESTION_ASKED` for each one created.
async fn commit_questions(
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    batch: Vec<NewQuestion>,
) -> Vec<Outcome<Option<evd_api::model::Question>>> {
    let created = match store.create_questions(&batch).await {
        Ok(c) => c,
        Err(e) => return each(&batch, Err(failed("question", &e))),
    };
    for (q, org) in created.iter().zip(batch.iter().map(|b| &b.org)) {
        let Some(q) = q else { continue };
        let Some(room) = session_room(org, &q.session_id) else {
            continue;
        };
        let event = Event::QuestionAsked(QuestionAsked {
            room: room.room().to_string(),
            question: Question {
                id: q.id.clone(),
                user: q.user_id.clone(),
                text: q.text.clone(),
                votes: 0,
            },
        });
        let body = Body::Event {
            event,
            outbox_id: None,
        };
        if let Err(e) = broker.broadcast(&room, body).await {
            tracing::warn!(error = %e, "QUESTION_ASKED broadcast failed");
        }
    }
    created.into_iter().map(Ok).collect()
}

/// Commits upvotes, then broadcasts each touched question's highest committed count.
async fn commit_upvotes(
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    batch: Vec<Upvote>,
) -> Vec<Outcome<UpvoteOutcome>> {
    let outcomes = match store.upvote_questions(&batch).await {
        Ok(o) => o,
        Err(e) => return each(&batch, Err(failed("upvote", &e))),
    };
    // The last outcome per question has its highest count.
    let mut latest: BTreeMap<(&str, &str), (&str, i64)> = BTreeMap::new();
    for (u, o) in batch.iter().zip(&outcomes) {
        if let UpvoteOutcome::Recorded { session, votes } = o {
            let slot = latest
                .entry((u.org.as_str(), u.question.as_str()))
                .or_insert((session, *votes));
            slot.1 = slot.1.max(*votes);
        }
    }
    for ((org, question), (session, votes)) in latest {
        let Some(room) = session_room(org, session) else {
            continue;
        };
        let body = Body::QuestionVotes {
            question: question.to_owned(),
            votes: votes.max(0) as u64,
        };
        if let Err(e) = broker.broadcast(&room, body).await {
            tracing::warn!(error = %e, "question votes broadcast failed");
        }
    }
    outcomes.into_iter().map(Ok).collect()
}

/// Appends chat messages to the archive, trying [`ARCHIVE_ATTEMPTS`] times (an insert of ids
/// already archived is skipped, so a try that committed unseen is harmless to repeat).
async fn commit_archive(
    store: Arc<dyn Store>,
    _broker: Arc<dyn Broker>,
    batch: Vec<NewChatMessage>,
) -> Vec<Outcome<()>> {
    let mut backoff = ARCHIVE_RETRY_BACKOFF;
    let mut attempt = 1;
    loop {
        match store.append_chat_messages(&batch).await {
            Ok(()) => return each(&batch, Ok(())),
            Err(e) if attempt >= ARCHIVE_ATTEMPTS => {
                return each(&batch, Err(failed("chat archive", &e)));
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "chat archive batch failed; trying again");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
        }
    }
}

/// The store's chat archive as the broker reads it ([`ChatArchive`]).
struct StoreArchive(Arc<dyn Store>);

#[async_trait]
impl ChatArchive for StoreArchive {
    async fn since(
        &self,
        room: &RoomKey,
        epoch: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, BrokerError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .0
            .chat_since(room.org(), room.room().as_ref(), epoch, after, limit)
            .await
            .map_err(|e| BrokerError::Unavailable(format!("chat archive: {e}")))?;
        Ok(rows
            .into_iter()
            .map(|m| ChatMessage {
                room: m.room,
                offset: u64::try_from(m.offset).unwrap_or_default(),
                id: m.id,
                user: m.user_id,
                text: m.text,
                ts: m.ts,
            })
            .collect())
    }
}
