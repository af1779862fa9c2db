//! Who is calling: the bearer token, verified with the same [`evd_protocol::auth`] code the
//! engine uses, its role capped by the caller's current membership of the org
//! ([`crate::membership`]), and the caller's per-user rate limit.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use evd_protocol::auth::{AuthError, Claims, Role};

/// The verified caller, with the role their membership allows now. Everything they do is scoped
/// to `claims.org`.
#[derive(Debug, Clone)]
pub struct Caller(pub Claims);

impl Caller {
    /// The caller's org.
    pub fn org(&self) -> &str {
        &self.0.org
    }

    /// The caller's user id.
    pub fn user(&self) -> &str {
        &self.0.sub
    }

    /// Organizers and owners manage the org.
    pub fn is_staff(&self) -> bool {
        self.0.role.is_staff()
    }

    /// Refuses attendees.
    pub fn require_staff(&self) -> Result<(), ApiError> {
        if self.is_staff() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this needs the organizer or owner role",
            ))
        }
    }

    /// Refuses all but owners.
    pub fn require_owner(&self) -> Result<(), ApiError> {
        if self.0.role == Role::Owner {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this needs the owner role"))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized(AuthError::Missing.to_string()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| ApiError::Unauthorized(AuthError::Missing.to_string()))?;
        let claims = state
            .verifier
            .verify(token)
            .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
        state.rate_limiter.check(&claims.org, &claims.sub)?;
        let claims = state.membership.cap(claims).await.map_err(ApiError::from)?;
        Ok(Caller(claims))
    }
}
