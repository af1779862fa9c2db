//! The system of record: one [`Store`] contract, implemented by [`SqlStore`] on SQLite (the
//! default: a file in WAL mode) and on PostgreSQL (with row-level security).
//!
//! Tenant isolation:
//! - **PostgreSQL.** The pool runs as the role `evd_app` (`set role` on every connection),
//!   which owns no table and cannot bypass row-level security; every table has `FORCE ROW
//!   LEVEL SECURITY` and a policy on `app.current_org_id`, which each transaction sets with
//!   `set_config(…, true)`. The queries name the org too, so the policies are a second wall.
//! - **SQLite.** Every query names the org (`where org_id = $1`).
//!
//! Writes that live clients must see (a poll opened or closed, a waitlist offer or update, a
//! session changed, a question hidden) add an [`outbox`] row in the same transaction.
//!
//! Long (about 480 lines) because it is the store's face: the contract traits every backend
//! implements, the pools, and the transaction helpers every store file uses.

mod access;
mod chat;
mod events;
mod idempotency;
mod orgs;
pub mod outbox;
mod paging;
mod polls;
mod questions;
mod seats;
mod sessions;
pub(crate) mod sql;
mod sweep;
mod tickets;
mod votes;
mod waitlist;

pub use access::{AccessStore, Disconnect, Membership};
pub use chat::{ChatStore, NewChatMessage};
pub use events::{EventPatch, EventQuery, EventStore, NewEvent};
pub use idempotency::{
    KEY_TTL_MS as IDEMPOTENCY_KEY_TTL_MS, MAX_KEY_LEN as MAX_IDEMPOTENCY_KEY_LEN,
};
pub use orgs::{NewOrg, OrgStore};
pub use outbox::{OutboxBacklog, OutboxRecord, OutboxStore};
pub use polls::{MAX_POLL_OPTIONS, MAX_POLLS_PER_SESSION, NewPoll, PollStore};
pub use questions::{MAX_QUESTIONS_PER_PAGE, NewQuestion, QuestionStore, Upvote, UpvoteOutcome};
pub use seats::POSITION_NOTICES;
pub use sessions::{MAX_SESSIONS_PER_EVENT, NewSession, SessionPatch, SessionStore};
pub use sweep::{SweepReport, Sweeper};
pub use tickets::{IssueTicket, TicketStore, TicketsOf};
pub use votes::{MAX_POLLS_PER_TALLY, PollTallies, Vote, VoteOutcome};
pub use waitlist::{JoinWaitlist, MAX_OFFERS_PER_CALL, WaitlistStore};

use crate::clock::{Clock, Millis};
use sql::Tx;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Connection, Executor};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The PostgreSQL role the application runs as (created by the migrations).
pub const APP_ROLE: &str = "evd_app";

/// How long a SQLite connection waits for another process's write lock before giving up.
/// Only another process (a second `evd` on the same file) can hold it: in one process all
/// writes go through one connection.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request waits for a pooled connection before it fails with 503-like errors.
pub const POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the database answers, for readiness probes.
#[async_trait::async_trait]
pub trait Health {
    /// One round trip to the database.
    async fn check(&self) -> Result<()>;
}

#[async_trait::async_trait]
impl Health for SqlStore {
    async fn check(&self) -> Result<()> {
        self.ping().await
    }
}

/// Declares [`Store`] as the sum of its parts and implements it for every type that has them
/// all, so the two lists of parts cannot drift apart.
macro_rules! store_of {
    ($($part:path),+ $(,)?) => {
        /// The whole store, as the REST API and the engine use it.
        pub trait Store: $($part +)+ {}

        impl<T> Store for T where T: $($part +)+ {}
    };
}

store_of!(
    Health,
    OrgStore,
    AccessStore,
    EventStore,
    SessionStore,
    TicketStore,
    WaitlistStore,
    PollStore,
    QuestionStore,
    ChatStore,
    OutboxStore,
    Sweeper,
    fmt::Debug,
    Send,
    Sync,
);

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row in this org (or it is deleted).
    #[error("not found")]
    NotFound,
    /// The write contradicts what is stored.
    #[error("{0}")]
    Conflict(Conflict),
    /// A value is not acceptable given what is stored (HTTP 422).
    #[error("{field}: {message}")]
    Invalid {
        /// The request field at fault.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL names no supported database.
    #[error("unsupported database url `{0}`: use sqlite://… or postgres://…")]
    UnsupportedUrl(String),
}

/// The ways a write can conflict with the stored state (HTTP 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// No free seat in the session.
    #[error("the session is sold out")]
    SoldOut,
    /// The row exists already.
    #[error("{0} already exists")]
    Duplicate(&'static str),
    /// The offer has lapsed.
    #[error("the offer has expired")]
    OfferExpired,
    /// The offer was already accepted or declined.
    #[error("the offer was already answered")]
    OfferAnswered,
    /// The user holds an open offer for this session: accept it instead.
    #[error("you hold an open offer for this session; accept it instead")]
    HoldsOffer,
    /// The poll no longer takes changes.
    #[error("the poll is closed")]
    PollClosed,
    /// A capacity below the seats already taken.
    #[error("capacity is below the seats already taken or held")]
    CapacityBelowTaken,
    /// An org must keep an owner.
    #[error("an org must keep at least one owner")]
    LastOwner,
    /// The same idempotency key was used for a different request.
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    /// The ticket is cancelled already.
    #[error("the ticket is already cancelled")]
    AlreadyCancelled,
}

impl StoreError {
    /// A unique violation becomes `Duplicate(what)`; anything else stays itself.
    pub(crate) fn unique(e: sqlx::Error, what: &'static str) -> StoreError {
        match e.as_database_error() {
            Some(db) if db.is_unique_violation() => StoreError::Conflict(Conflict::Duplicate(what)),
            _ => StoreError::Database(e),
        }
    }
}

impl From<Conflict> for StoreError {
    fn from(c: Conflict) -> StoreError {
        StoreError::Conflict(c)
    }
}

/// Store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a write with an `Idempotency-Key` returns: the resource, and whether this call made it
/// (`false` for a replay).
#[derive(Debug, Clone, PartialEq)]
pub struct Created<T> {
    /// The resource.
    pub value: T,
    /// True when this call created it.
    pub created: bool,
}

/// Connection and policy settings of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Most connections in the pool (for SQLite: the read pool; writes use one connection).
    pub pool_size: u32,
    /// How long a waitlist offer holds its seat.
    pub offer_ttl: Duration,
    /// Run the migrations on connect.
    pub migrate: bool,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            pool_size: 8,
            offer_ttl: Duration::from_secs(10 * 60),
            migrate: true,
        }
    }
}

#[derive(Debug, Clone)]
enum Db {
    /// SQLite allows one writer at a time; one write connection queues writers in the pool
    /// instead of making them spin on the file lock. Readers use their own pool (WAL).
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
    },
    Postgres(PgPool),
}

/// The SQL store on SQLite or PostgreSQL.
#[derive(Clone)]
pub struct SqlStore {
    db: Db,
    clock: Clock,
    offer_ttl_ms: Millis,
    outbox_wakeup: Arc<Notify>,
    /// This store's own rows of `poll_counts`: a random id per connect, so processes storing
    /// votes for one poll never update the same count row.
    writer: Arc<str>,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend())
            .field("offer_ttl_ms", &self.offer_ttl_ms)
            .finish_non_exhaustive()
    }
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Opens the store at `url` (`sqlite://path`, `sqlite::memory:`, `postgres://…`), runs the
/// migrations when `config.migrate` is set, and returns it ready for use.
pub async fn connect(url: &str, config: &StoreConfig, clock: Clock) -> Result<Arc<SqlStore>> {
    SqlStore::connect(url, config, clock).await.map(Arc::new)
}

impl SqlStore {
    /// See [`connect`].
    pub async fn connect(url: &str, config: &StoreConfig, clock: Clock) -> Result<SqlStore> {
        // Boxed as `Send` here, so callers can spawn the futures that await this one.
        let db = if url.starts_with("sqlite:") {
            send(connect_sqlite(url, config)).await?
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            send(connect_postgres(url, config)).await?
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        Ok(SqlStore {
            db,
            clock,
            offer_ttl_ms: i64::try_from(config.offer_ttl.as_millis()).unwrap_or(i64::MAX),
            outbox_wakeup: Arc::new(Notify::new()),
            writer: uuid::Uuid::now_v7().simple().to_string().into(),
        })
    }

    /// The database it runs on.
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// The PostgreSQL pool (as `evd_app`), for tests that check the policies directly.
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.db {
            Db::Postgres(pool) => Some(pool),
            Db::Sqlite { .. } => None,
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        match &self.db {
            Db::Sqlite { read, .. } => send(async { read.acquire().await?.ping().await }).await?,
            Db::Postgres(pool) => send(async { pool.acquire().await?.ping().await }).await?,
        }
        Ok(())
    }

    /// Closes the pools: new acquires are refused at once, then it waits for those in use.
    pub async fn close(&self) {
        match &self.db {
            // Both at once: each refuses new acquires on its first poll, so nothing (a
            // readiness check on the read pool, say) is served while the writer drains.
            Db::Sqlite { write, read } => {
                futures_util::future::join(send(write.close()), send(read.close())).await;
            }
            Db::Postgres(pool) => send(pool.close()).await,
        }
    }

    pub(crate) fn now(&self) -> Millis {
        self.clock.now()
    }

    /// A write transaction scoped to `org`.
    pub(crate) async fn write(&self, org: &str) -> Result<Tx> {
        let mut tx = self.begin_write().await?;
        tx.set_org(org).await?;
        Ok(tx)
    }

    /// A read-only transaction scoped to `org`.
    pub(crate) async fn read(&self, org: &str) -> Result<Tx> {
        let mut tx = match &self.db {
            Db::Sqlite { read, .. } => Tx::Sqlite(read.begin().await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        };
        tx.set_org(org).await?;
        Ok(tx)
    }

    /// A write transaction with no org yet; callers set one per batch item, or a flag of a
    /// cross-org task.
    pub(crate) async fn begin_write(&self) -> Result<Tx> {
        Ok(match &self.db {
            Db::Sqlite { write, .. } => Tx::Sqlite(write.begin_with("begin immediate").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Commits `tx` and, if it wrote outbox rows, wakes the in-process relay.
    pub(crate) async fn commit(&self, tx: Tx, wrote_outbox: bool) -> Result<()> {
        tx.commit().await?;
        if wrote_outbox {
            self.outbox_wakeup.notify_waiters();
            self.outbox_wakeup.notify_one();
        }
        Ok(())
    }
}

async fn connect_sqlite(url: &str, config: &StoreConfig) -> Result<Db> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT);
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    // The connections live in this process, so the pool's liveness ping before each use
    // (a trip to the connection's worker thread) buys nothing.
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
        // An in-memory database lives as long as its connection.
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options.clone())
        .await?;
    if config.migrate {
        SQLITE_MIGRATIONS.run(&write).await?;
    }
    // An in-memory database exists only on its one connection: read through it too.
    let read = if in_memory {
        write.clone()
    } else {
        SqlitePoolOptions::new()
            .max_connections(config.pool_size.max(1))
            .test_before_acquire(false)
            .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
            .connect_with(options.read_only(true))
            .await?
    };
    Ok(Db::Sqlite { write, read })
}

async fn connect_postgres(url: &str, config: &StoreConfig) -> Result<Db> {
    let options = PgConnectOptions::from_str(url)?;
    if config.migrate {
        // Migrations run as the connecting user, who owns the tables; the pool does not.
        let owner = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        POSTGRES_MIGRATIONS.run(&owner).await?;
        owner.close().await;
    }
    let pool = PgPoolOptions::new()
        .max_connections(config.pool_size.max(1))
        .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("set role evd_app").await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    Ok(Db::Postgres(pool))
}

/// Erases a future's type behind `Send`. Without it, rustc cannot prove that futures
/// awaiting sqlx's pool futures are `Send` for every lifetime, and refuses to spawn them.
fn send<'a, T>(
    fut: impl std::future::Future<Output = T> + Send + 'a,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>> {
    Box::pin(fut)
}

/// `url` with its password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:<redacted>@{host}{tail}")
            } else {
                url.to_owned()
            }
        }
        None => url.to_owned(),
    }
}

/// A new id: a UUIDv7, so ids sort by creation time and index well.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_the_password_only() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/evd?sslmode=require"),
            "postgres://app:<redacted>@db:5432/evd?sslmode=require"
        );
        assert_eq!(redact_url("postgres://app@db/evd"), "postgres://app@db/evd");
        assert_eq!(redact_url("sqlite://evd.db"), "sqlite://evd.db");
    }
}
