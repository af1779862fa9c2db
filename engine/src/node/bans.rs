//! Bans: an organizer's disconnect may refuse a user's new connections to an org until a time.
//! The store holds them; this caches each (org, user) answer for the membership cache time, and
//! a `DISCONNECTED` relayed to this node records its ban at once, so a banned user's reconnect is
//! refused here the moment the disconnect arrives.

use crate::clock::unix_ms;
use evd_api::store::Store;
use moka::future::Cache;
use std::sync::Arc;
use std::time::Duration;

/// Bans by (org, user): the end of one, or `None` for none, as last read.
pub struct Bans {
    store: Arc<dyn Store>,
    ends: Cache<(String, String), Option<i64>>,
}

impl std::fmt::Debug for Bans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bans").finish_non_exhaustive()
    }
}

impl Bans {
    /// Reads bans from `store`, trusting each answer for `ttl`, at most `max_entries` held.
    pub fn new(store: Arc<dyn Store>, ttl: Duration, max_entries: u64) -> Bans {
        Bans {
            store,
            ends: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The end (unix ms) of `user`'s ban from `org` if one is in force. A store that cannot
    /// answer lets the connection in (logged): a database outage must not lock everyone out.
    pub async fn banned_until(&self, org: &str, user: &str) -> Option<i64> {
        let key = (org.to_owned(), user.to_owned());
        let end = match self.ends.get(&key).await {
            Some(end) => end,
            None => match self.store.banned_until(org, user).await {
                Ok(end) => {
                    self.ends.insert(key, end).await;
                    end
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ban lookup failed; connection let in");
                    None
                }
            },
        };
        end.filter(|&end| end > unix_ms())
    }

    /// Records a ban relayed from the store.
    pub async fn note(&self, org: &str, user: &str, until: i64) {
        self.ends
            .insert((org.to_owned(), user.to_owned()), Some(until))
            .await;
    }
}
