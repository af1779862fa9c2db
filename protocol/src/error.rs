//! The `code` of an `ERROR` event.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an op failed. An `ERROR` never closes the connection by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame could not be decoded, or a field is missing, mistyped or out of range.
    BadRequest,
    /// The connection's token no longer authorizes it.
    Unauthorized,
    /// The token's holder may not do this (join or publish to this room, ...).
    Forbidden,
    /// The poll, question or offer does not exist (or is another org's).
    NotFound,
    /// Too many ops; retry after `retry_after_ms`.
    RateLimited,
    /// The op conflicts with current state: a second vote, a full room list, an answered offer.
    Conflict,
    /// A field is longer than the server accepts.
    TooLarge,
    /// The server failed; the op may be retried.
    Internal,
}

impl ErrorCode {
    /// Every code, for docs and exhaustive tests.
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::RateLimited,
        ErrorCode::Conflict,
        ErrorCode::TooLarge,
        ErrorCode::Internal,
    ];

    /// The wire name, also used as a metrics label.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
