//! Bans: an organizer's disconnect may refuse a user's new connections to an org until a time.
//!
//! The store holds them. Every connection asks, so a node answers from a snapshot of each org's
//! bans in force, read with one query per org and trusted for the membership cache time;
//! concurrent first askers of one org share that one read (thousands of clients reconnecting
//! after a restart cost one query per org, not one per client). An org with more than
//! [`MAX_SNAPSHOT_BANS`] bans in force has no snapshot: it is asked per (org, user), each answer
//! cached likewise. A `DISCONNECTED` relayed to this node records its ban at once, in a small
//! cache of its own consulted first, so a banned user's reconnect is refused here the moment the
//! disconnect arrives, whatever the snapshot says. A store that cannot answer lets the connection
//! in, logged once per failed read.

use crate::clock::unix_ms;
use evd_api::store::{AccessStore, StoreError};
use moka::future::Cache;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The most bans in force an org's snapshot holds; an org with more is asked per (org, user).
pub const MAX_SNAPSHOT_BANS: usize = 10_000;

/// Where bans are read: the store (an `Arc<dyn Store>` coerces to it), or a test's stand-in.
pub type BanStore = Arc<dyn AccessStore + Send + Sync>;

/// One org's bans in force, as last read.
#[derive(Clone)]
enum Snapshot {
    /// Every ban in force: user, end (unix ms).
    All(Arc<HashMap<String, i64>>),
    /// More than the snapshot limit: ask per user.
    TooMany,
}

/// Bans by org (a snapshot), by (org, user) for an org too large to snapshot, and as relayed.
pub struct Bans {
    store: BanStore,
    limit: usize,
    snapshots: Cache<String, Snapshot>,
    ends: Cache<(String, String), Option<i64>>,
    noted: Cache<(String, String), i64>,
}

impl std::fmt::Debug for Bans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bans").finish_non_exhaustive()
    }
}

impl Bans {
    /// Reads bans from `store`, trusting each answer for `ttl`, at most `max_entries` held in
    /// each of its caches (a snapshot weighs one plus its bans, so an org's snapshot holds at
    /// most `max_entries - 1` bans even when that is below [`MAX_SNAPSHOT_BANS`]).
    pub fn new(store: BanStore, ttl: Duration, max_entries: u64) -> Bans {
        Bans::with_limit(store, ttl, max_entries, MAX_SNAPSHOT_BANS)
    }

    /// [`Bans::new`] with at most `limit` bans in an org's snapshot.
    fn with_limit(store: BanStore, ttl: Duration, max_entries: u64, limit: usize) -> Bans {
        // A snapshot heavier than the whole cache would never be kept, and read again each time.
        let fits = usize::try_from(max_entries.saturating_sub(1)).unwrap_or(usize::MAX);
        let limit = limit.min(fits);
        Bans {
            store,
            limit,
            snapshots: Cache::builder()
                .max_capacity(max_entries)
                .weigher(|_, s: &Snapshot| match s {
                    Snapshot::All(bans) => u32::try_from(bans.len()).unwrap_or(u32::MAX - 1) + 1,
                    Snapshot::TooMany => 1,
                })
                .time_to_live(ttl)
                .build(),
            ends: per_user(ttl, max_entries),
            noted: per_user(ttl, max_entries),
        }
    }

    /// The end (unix ms) of `user`'s ban from `org` if one is in force. A store that cannot
    /// answer lets the connection in: a database outage must not lock everyone out.
    pub async fn banned_until(&self, org: &str, user: &str) -> Option<i64> {
        let key = (org.to_owned(), user.to_owned());
        let end = match self.noted.get(&key).await {
            // A relayed ban replaces whatever was read before it.
            Some(end) => Some(end),
            None => match self.snapshot(org).await? {
                Snapshot::All(bans) => bans.get(user).copied(),
                Snapshot::TooMany => self
                    .ends
                    .try_get_with(key, self.read_one(org, user))
                    .await
                    .ok()?,
            },
        };
        end.filter(|&end| end > unix_ms())
    }

    /// `org`'s snapshot, read once for every concurrent caller; `None` if the read failed.
    async fn snapshot(&self, org: &str) -> Option<Snapshot> {
        let read = async {
            let bans = self
                .store
                .bans_in_force(org, self.limit)
                .await
                .inspect_err(
                    |e| tracing::warn!(org, error = %e, "ban lookup failed; connections let in"),
                )?;
            Ok::<_, StoreError>(if bans.len() > self.limit {
                Snapshot::TooMany
            } else {
                Snapshot::All(Arc::new(bans.into_iter().collect()))
            })
        };
        self.snapshots.try_get_with(org.to_owned(), read).await.ok()
    }

    /// One user's ban, for an org too large to snapshot.
    async fn read_one(&self, org: &str, user: &str) -> Result<Option<i64>, StoreError> {
        self.store.banned_until(org, user).await.inspect_err(
            |e| tracing::warn!(org, error = %e, "ban lookup failed; connection let in"),
        )
    }

    /// Records a ban relayed from the store.
    pub async fn note(&self, org: &str, user: &str, until: i64) {
        self.noted
            .insert((org.to_owned(), user.to_owned()), until)
            .await;
    }
}

/// A cache by (org, user) of `max_entries` at most, each kept for `ttl`.
fn per_user<V: Clone + Send + Sync + 'static>(
    ttl: Duration,
    max_entries: u64,
) -> Cache<(String, String), V> {
    Cache::builder()
        .max_capacity(max_entries)
        .time_to_live(ttl)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use evd_api::clock::Millis;
    use evd_api::store::{Disconnect, Membership, Result};
    use evd_protocol::auth::Role;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Bans in memory, counting the reads of each kind; `fail` makes every read fail.
    #[derive(Default)]
    struct Counting {
        bans: Mutex<Vec<(String, String, i64)>>,
        org_reads: AtomicUsize,
        user_reads: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Counting {
        fn ban(&self, org: &str, user: &str, until: i64) {
            self.bans
                .lock()
                .unwrap()
                .push((org.into(), user.into(), until));
        }
        fn check(&self) -> Result<()> {
            if self.fail.load(Ordering::SeqCst) {
                Err(StoreError::Invalid {
                    field: "test",
                    message: "down".into(),
                })
            } else {
                Ok(())
            }
        }
    }

    /// What the calls the bans never make answer.
    fn not_a_ban_read<T>() -> Result<T> {
        Err(StoreError::Invalid {
            field: "test",
            message: "not a ban read".into(),
        })
    }

    #[async_trait::async_trait]
    impl AccessStore for Counting {
        async fn membership(&self, _: &str, _: &str) -> Result<Membership> {
            not_a_ban_read()
        }
        async fn disconnect_user(
            &self,
            _: &str,
            _: &str,
            _: &Disconnect,
        ) -> Result<Option<Millis>> {
            not_a_ban_read()
        }
        async fn banned_until(&self, org: &str, user: &str) -> Result<Option<Millis>> {
            self.user_reads.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            self.check()?;
            let now = unix_ms();
            let bans = self.bans.lock().unwrap();
            Ok(bans
                .iter()
                .find(|(o, u, until)| o == org && u == user && *until > now)
                .map(|b| b.2))
        }
        async fn bans_in_force(&self, org: &str, limit: usize) -> Result<Vec<(String, Millis)>> {
            self.org_reads.fetch_add(1, Ordering::SeqCst);
            // With the clock paused, this ends only when every concurrent caller is waiting.
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.check()?;
            let now = unix_ms();
            let mut found: Vec<_> = self
                .bans
                .lock()
                .unwrap()
                .iter()
                .filter(|(o, _, until)| o == org && *until > now)
                .map(|(_, u, until)| (u.clone(), *until))
                .collect();
            found.sort();
            found.truncate(limit + 1);
            Ok(found)
        }
        async fn enroll(&self, _: &str, _: &str, _: Role) -> Result<()> {
            not_a_ban_read()
        }
    }

    const TTL: Duration = Duration::from_secs(60);

    fn bans(store: &Arc<Counting>, limit: usize) -> Bans {
        Bans::with_limit(Arc::clone(store) as BanStore, TTL, 100_000, limit)
    }

    // Paused time: the store's read completes only once every caller is waiting on it.
    #[tokio::test(start_paused = true)]
    async fn one_read_answers_every_reconnecting_user_of_an_org() {
        let store = Arc::new(Counting::default());
        let until = unix_ms() + 60_000;
        store.ban("acme", "user-7", until);
        store.ban("other", "user-8", until);
        let bans = bans(&store, 100);
        let asks = (0..2_000).map(|i| {
            let bans = &bans;
            async move { (i, bans.banned_until("acme", &format!("user-{i}")).await) }
        });
        let answers = futures_util::future::join_all(asks).await;
        for (i, end) in answers {
            assert_eq!(end, (i == 7).then_some(until), "user-{i}");
        }
        assert_eq!(store.org_reads.load(Ordering::SeqCst), 1);
        assert_eq!(store.user_reads.load(Ordering::SeqCst), 0);
        // Another org is another snapshot, and its bans stay its own.
        assert_eq!(bans.banned_until("other", "user-7").await, None);
        assert_eq!(bans.banned_until("other", "user-8").await, Some(until));
        assert_eq!(store.org_reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_org_past_the_limit_is_asked_per_user() {
        let store = Arc::new(Counting::default());
        let until = unix_ms() + 60_000;
        for user in ["a", "b", "c"] {
            store.ban("acme", user, until);
        }
        let bans = bans(&store, 2);
        assert_eq!(bans.banned_until("acme", "b").await, Some(until));
        assert_eq!(bans.banned_until("acme", "b").await, Some(until));
        assert_eq!(bans.banned_until("acme", "z").await, None);
        assert_eq!(store.org_reads.load(Ordering::SeqCst), 1);
        // Each user once: their answer is cached too.
        assert_eq!(store.user_reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_relayed_ban_holds_at_once_whatever_the_snapshot_says() {
        let store = Arc::new(Counting::default());
        let bans = bans(&store, 100);
        assert_eq!(bans.banned_until("acme", "troll").await, None);
        let until = unix_ms() + 60_000;
        bans.note("acme", "troll", until).await;
        assert_eq!(bans.banned_until("acme", "troll").await, Some(until));
        assert_eq!(bans.banned_until("acme", "ann").await, None);
        // An ended one refuses nothing.
        bans.note("acme", "ann", unix_ms() - 1).await;
        assert_eq!(bans.banned_until("acme", "ann").await, None);
        assert_eq!(store.org_reads.load(Ordering::SeqCst), 1);
    }

    // Paused time: the store's read completes only once every caller is waiting on it.
    #[tokio::test(start_paused = true)]
    async fn a_store_that_cannot_answer_lets_everyone_in_and_is_asked_again_later() {
        let store = Arc::new(Counting::default());
        store.ban("acme", "troll", unix_ms() + 60_000);
        store.fail.store(true, Ordering::SeqCst);
        let bans = bans(&store, 100);
        let asks = (0..500).map(|_| bans.banned_until("acme", "troll"));
        let answers = futures_util::future::join_all(asks).await;
        assert!(answers.iter().all(Option::is_none));
        // The concurrent callers shared one failed read.
        assert_eq!(store.org_reads.load(Ordering::SeqCst), 1);
        store.fail.store(false, Ordering::SeqCst);
        assert!(bans.banned_until("acme", "troll").await.is_some());
        assert_eq!(store.org_reads.load(Ordering::SeqCst), 2);
    }
}
