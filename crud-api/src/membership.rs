//! The membership cache: a token's role capped by the member's current role, looked up in the
//! store and trusted for `membership_cache_secs`. So removing a member or lowering their role
//! takes effect within that time, without a lookup per request: an attendee token is never
//! looked up (nothing is below attendee), and a staff token once per cache time.
//!
//! The REST API caps every caller with it; the engine caps room access with its own instance and
//! forgets a user's entry when their `MEMBERSHIP_CHANGED` arrives.

use crate::store::{Membership, Store, StoreError};
use evd_protocol::auth::{Claims, Role};
use moka::future::Cache;
use std::sync::Arc;
use std::time::Duration;

/// Current memberships by (org, user), each trusted for a bounded time.
#[derive(Clone)]
pub struct MembershipCache {
    store: Arc<dyn Store>,
    /// Bounded by `membership_cache_entries`; an evicted entry costs one lookup.
    entries: Cache<(String, String), Membership>,
}

impl std::fmt::Debug for MembershipCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipCache").finish_non_exhaustive()
    }
}

impl MembershipCache {
    /// Looks memberships up in `store`, trusting each for `ttl`, at most `max_entries` held.
    pub fn new(store: Arc<dyn Store>, ttl: Duration, max_entries: u64) -> MembershipCache {
        MembershipCache {
            store,
            entries: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// `claims` with the role the membership allows now.
    pub async fn cap(&self, mut claims: Claims) -> Result<Claims, StoreError> {
        if claims.role == Role::Attendee {
            return Ok(claims);
        }
        let membership = self.membership(&claims.org, &claims.sub).await?;
        claims.role = membership.cap(claims.role);
        Ok(claims)
    }

    /// `user`'s membership of `org`, from the cache or the store.
    pub async fn membership(&self, org: &str, user: &str) -> Result<Membership, StoreError> {
        let key = (org.to_owned(), user.to_owned());
        if let Some(m) = self.entries.get(&key).await {
            return Ok(m);
        }
        let m = self.store.membership(org, user).await?;
        self.entries.insert(key, m).await;
        Ok(m)
    }

    /// Drops what is known of `user` in `org`: the next check reads the store.
    pub async fn forget(&self, org: &str, user: &str) {
        self.entries
            .invalidate(&(org.to_owned(), user.to_owned()))
            .await;
    }
}
