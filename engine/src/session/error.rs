//! [`OpError`]: why an op failed, and how each lower layer's error becomes one. It becomes
//! `ERROR {ref, code, message}` on the wire.

use crate::auth::AuthzError;
use crate::broker::BrokerError;
use crate::live::LiveError;
use crate::node::RoomError;
use evd_protocol::event::Event;
use evd_protocol::{ErrorCode, Ref};

/// `retry_after_ms` when the store's write queue is full: about one group commit's round trip
/// under load, long enough for the queue to have moved.
pub const BUSY_RETRY_AFTER_MS: u64 = 1_000;

/// Why an op failed; becomes `ERROR {ref, code, message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    /// The error code.
    pub code: ErrorCode,
    /// Text for the client.
    pub message: String,
    /// With `rate_limited`.
    pub retry_after_ms: Option<u64>,
}

impl OpError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> OpError {
        OpError {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// The `ERROR` event for this error.
    pub fn into_event(self, r#ref: Option<Ref>) -> Event {
        Event::Error(evd_protocol::event::ErrorEvent {
            r#ref,
            code: self.code,
            message: self.message,
            retry_after_ms: self.retry_after_ms,
        })
    }
}

impl From<AuthzError> for OpError {
    fn from(e: AuthzError) -> Self {
        match e {
            AuthzError::Forbidden(_) => OpError::new(ErrorCode::Forbidden, e.to_string()),
            AuthzError::Unavailable(_) => {
                tracing::warn!(error = %e, "authorizer unavailable");
                OpError::new(ErrorCode::Internal, "authorization is unavailable; retry")
            }
        }
    }
}

impl From<RoomError> for OpError {
    fn from(e: RoomError) -> Self {
        tracing::warn!(error = %e, "room operation failed");
        OpError::new(ErrorCode::Internal, "the broker is unavailable; retry")
    }
}

impl From<LiveError> for OpError {
    fn from(e: LiveError) -> Self {
        match e {
            LiveError::Busy => OpError {
                code: ErrorCode::RateLimited,
                message: e.to_string(),
                retry_after_ms: Some(BUSY_RETRY_AFTER_MS),
            },
            LiveError::Unavailable => {
                OpError::new(ErrorCode::Internal, "the store is unavailable; retry")
            }
        }
    }
}

impl From<BrokerError> for OpError {
    fn from(e: BrokerError) -> Self {
        OpError::from(RoomError::from(e))
    }
}
