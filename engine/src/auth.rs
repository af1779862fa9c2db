//! Who may connect, and who may join or publish to which room.
//!
//! Authentication happens once, before the upgrade: the token comes from
//! `Authorization: Bearer` or `?token=`. Authorization of rooms is the [`Authorizer`] trait, so
//! a store-backed ticket check can wrap the claims-only [`ClaimsAuthorizer`].

use async_trait::async_trait;
use axum::http::HeaderMap;
use evd_protocol::auth::{AuthError, Claims, Verifier};
use evd_protocol::{RoomKind, RoomName};

/// Finds the token in the `Authorization` header or the `token` query parameter.
pub fn token_from_request<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Option<std::borrow::Cow<'a, str>> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(std::borrow::Cow::Borrowed(t.trim()));
        }
    }
    let query = query?;
    form_urlencoded_token(query)
}

fn form_urlencoded_token(query: &str) -> Option<std::borrow::Cow<'_, str>> {
    // JWTs are base64url plus dots, so they never need decoding; anything that does is not a
    // JWT and fails verification with a clear message.
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(std::borrow::Cow::Borrowed)
}

/// Verifies the request's token.
pub fn authenticate(
    verifier: &Verifier,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Claims, AuthError> {
    let token = token_from_request(headers, query).ok_or(AuthError::Missing)?;
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    verifier.verify(&token)
}

/// Why a room was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    /// The holder may not join or publish to this room.
    #[error("not allowed in {0}")]
    Forbidden(String),
    /// The check itself failed (e.g. the store is unreachable).
    #[error("authorization check failed: {0}")]
    Unavailable(String),
}

/// Decides who may join, and so publish to, a room of their org. The org boundary is not its
/// concern: rooms are keyed by the token's org before this is asked.
#[async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// Whether `claims` may join `room` in `claims.org`.
    async fn can_join(&self, claims: &Claims, room: &RoomName) -> Result<(), AuthzError>;
}

/// The rules that need no lookup: own `user:` room; organizers and owners anywhere in their org;
/// attendees where their `rooms` claim says.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClaimsAuthorizer;

impl ClaimsAuthorizer {
    /// The claims-only decision; `None` means "not by the claims alone".
    pub fn decide(claims: &Claims, room: &RoomName) -> Option<bool> {
        match room.kind() {
            RoomKind::User => Some(room.id() == claims.sub),
            _ if claims.role.is_staff() => Some(true),
            _ if claims.grants_room(room.as_str()) => Some(true),
            _ => None,
        }
    }
}

#[async_trait]
impl Authorizer for ClaimsAuthorizer {
    async fn can_join(&self, claims: &Claims, room: &RoomName) -> Result<(), AuthzError> {
        match Self::decide(claims, room) {
            Some(true) => Ok(()),
            _ => Err(AuthzError::Forbidden(room.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evd_protocol::auth::Role;

    fn claims(role: Role, rooms: &[&str]) -> Claims {
        let mut c = Claims::new("u1", "o1", role, 0, 60);
        c.rooms = Some(rooms.iter().map(|r| r.to_string()).collect());
        c
    }

    fn room(s: &str) -> RoomName {
        RoomName::parse(s).unwrap()
    }

    #[tokio::test]
    async fn claims_rules() {
        let a = ClaimsAuthorizer;
        let att = claims(Role::Attendee, &["session:S1"]);
        assert!(a.can_join(&att, &room("session:S1")).await.is_ok());
        assert!(a.can_join(&att, &room("session:S2")).await.is_err());
        assert!(a.can_join(&att, &room("event:E1")).await.is_err());
        assert!(a.can_join(&att, &room("user:u1")).await.is_ok());
        assert!(a.can_join(&att, &room("user:u2")).await.is_err());
        let org = claims(Role::Organizer, &[]);
        assert!(a.can_join(&org, &room("session:S9")).await.is_ok());
        assert!(
            a.can_join(&org, &room("user:u2")).await.is_err(),
            "user rooms are private even to staff"
        );
        assert!(
            a.can_join(&claims(Role::Owner, &[]), &room("event:E1"))
                .await
                .is_ok()
        );
    }

    #[test]
    fn token_sources() {
        let mut h = HeaderMap::new();
        assert_eq!(
            token_from_request(&h, Some("a=1&token=abc.def.ghi")).as_deref(),
            Some("abc.def.ghi")
        );
        assert_eq!(token_from_request(&h, Some("a=1")), None);
        h.insert("authorization", "Bearer xyz".parse().unwrap());
        assert_eq!(
            token_from_request(&h, Some("token=abc")).as_deref(),
            Some("xyz")
        );
    }
}
