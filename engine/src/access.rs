//! [`TicketAuthorizer`]: room access from the claims, else from the attendee's tickets.
//!
//! The claims' role is first capped by the user's current membership of the org
//! ([`MembershipCache`]): an organizer removed from the org joins as an attendee would.
//!
//! The claims decide when they can (own `user:` room; staff; the `rooms` grant, which stays the
//! fast path). Otherwise an attendee may join `session:<id>` holding a ticket for it, or
//! `event:<id>` holding a ticket for any of its sessions. Answers are cached: a grant for
//! `ticket_cache_ms`, so a cancelled ticket stops new joins within that bound; a refusal for one
//! second, so a ticket bought a moment ago works at once.

use crate::auth::{Authorizer, AuthzError, ClaimsAuthorizer};
use async_trait::async_trait;
use evd_api::membership::MembershipCache;
use evd_api::store::Store;
use evd_protocol::RoomName;
use evd_protocol::auth::Claims;
use moka::future::Cache;
use std::sync::Arc;
use std::time::Duration;

/// Cached answers; a keynote's audience joining at once is that many entries.
const CACHE_ENTRIES: u64 = 200_000;
/// How long a refusal is trusted.
const REFUSAL_TTL: Duration = Duration::from_secs(1);

type Key = (String, String, String);

/// Claims first, then tickets from the store, cached.
pub struct TicketAuthorizer {
    store: Arc<dyn Store>,
    membership: MembershipCache,
    granted: Cache<Key, ()>,
    refused: Cache<Key, ()>,
}

impl std::fmt::Debug for TicketAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketAuthorizer").finish_non_exhaustive()
    }
}

impl TicketAuthorizer {
    /// Grants are trusted for `grant_ttl`; roles are capped by `membership`.
    pub fn new(
        store: Arc<dyn Store>,
        membership: MembershipCache,
        grant_ttl: Duration,
    ) -> TicketAuthorizer {
        TicketAuthorizer {
            store,
            membership,
            granted: Cache::builder()
                .max_capacity(CACHE_ENTRIES)
                .time_to_live(grant_ttl)
                .build(),
            refused: Cache::builder()
                .max_capacity(CACHE_ENTRIES)
                .time_to_live(REFUSAL_TTL)
                .build(),
        }
    }
}

#[async_trait]
impl Authorizer for TicketAuthorizer {
    async fn can_join(&self, claims: &Claims, room: &RoomName) -> Result<(), AuthzError> {
        let capped;
        let claims = if claims.role.is_staff() {
            capped = self
                .membership
                .cap(claims.clone())
                .await
                .map_err(|e| AuthzError::Unavailable(e.to_string()))?;
            &capped
        } else {
            claims
        };
        match ClaimsAuthorizer::decide(claims, room) {
            Some(true) => return Ok(()),
            Some(false) => return Err(AuthzError::Forbidden(room.to_string())),
            None => {}
        }
        let key = (claims.org.clone(), claims.sub.clone(), room.to_string());
        if self.granted.contains_key(&key) {
            return Ok(());
        }
        if self.refused.contains_key(&key) {
            return Err(AuthzError::Forbidden(room.to_string()));
        }
        match self
            .store
            .has_ticket_for_room(&claims.org, &claims.sub, room)
            .await
        {
            Ok(true) => {
                self.granted.insert(key, ()).await;
                Ok(())
            }
            Ok(false) => {
                self.refused.insert(key, ()).await;
                Err(AuthzError::Forbidden(room.to_string()))
            }
            Err(e) => Err(AuthzError::Unavailable(e.to_string())),
        }
    }
}
