//! `refresh`: a new token for a live connection, answered with `TOKEN_REFRESHED {expires_at}`.
//!
//! The token must verify with the node's key, as at the upgrade, and name the connection's own
//! `sub` and `org`: a connection never changes who it is, since its rooms, presence and `user:`
//! room were set up for that user in that org. Adopting the new claims (and the expiry they
//! set) is the session's, so the op hands them back in [`Reply::Refreshed`].

use super::{Caller, OpResult, Reply};
use crate::clock::Millis;
use crate::session::error::OpError;
use evd_protocol::ErrorCode;
use evd_protocol::auth::Verifier;
use evd_protocol::event::{Event, TokenRefreshed};
use evd_protocol::op::Refresh;

/// Runs `refresh`: verifies the token and checks that it is the same user in the same org.
pub fn apply(op: &Refresh, who: Caller<'_>, verifier: &Verifier) -> OpResult {
    let claims = verifier
        .verify(&op.token)
        .map_err(|e| OpError::new(ErrorCode::Unauthorized, format!("refresh refused: {e}")))?;
    if claims.sub != who.claims.sub {
        return Err(OpError::new(
            ErrorCode::Forbidden,
            "refresh refused: the token is for another user (`sub`); a connection keeps its user",
        ));
    }
    if claims.org != who.claims.org {
        return Err(OpError::new(
            ErrorCode::Forbidden,
            "refresh refused: the token is for another org (`org`); a connection keeps its org",
        ));
    }
    let reply = Event::TokenRefreshed(TokenRefreshed {
        r#ref: who.r#ref,
        expires_at: exp_ms(claims.exp),
    });
    Ok(Reply::Refreshed {
        claims: Box::new(claims),
        reply,
    })
}

/// A token's `exp` (unix seconds) in unix milliseconds, as the wire gives times.
pub fn exp_ms(exp_secs: u64) -> Millis {
    i64::try_from(exp_secs.saturating_mul(1_000)).unwrap_or(Millis::MAX)
}
