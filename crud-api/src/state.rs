//! What every handler shares: the store, the token verifier, the membership cache, the rate
//! limiter and the body limit; and the origins the router answers CORS for.

use crate::cors::CorsSettings;
use crate::membership::MembershipCache;
use crate::rate_limit::RateLimiter;
use crate::settings::Settings;
use crate::store::Store;
use evd_protocol::auth::{JwtConfigError, Verifier};
use std::sync::Arc;
use std::time::Duration;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The system of record.
    pub store: Arc<dyn Store>,
    /// Checks bearer tokens.
    pub verifier: Arc<Verifier>,
    /// Per-user request buckets.
    pub rate_limiter: Arc<RateLimiter>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Other origins that may call the API; [`app`](crate::app) answers CORS for them.
    pub cors: Arc<CorsSettings>,
    /// Members' current roles, which cap their tokens'.
    pub membership: MembershipCache,
}

impl AppState {
    /// State for `settings`, over `store`.
    pub fn new(store: Arc<dyn Store>, settings: &Settings) -> Result<AppState, JwtConfigError> {
        Ok(AppState {
            membership: MembershipCache::new(
                Arc::clone(&store),
                Duration::from_secs(settings.membership_cache_secs),
                settings.membership_cache_entries,
            ),
            store,
            verifier: Arc::new(settings.jwt.verifier()?),
            rate_limiter: Arc::new(RateLimiter::new(settings.rate_limit)),
            max_body_bytes: settings.max_body_bytes,
            cors: Arc::new(settings.cors.clone()),
        })
    }
}
