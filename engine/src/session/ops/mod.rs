//! Client ops, one file each. [`dispatch`] runs one decoded op and queues its reply.
//!
//! Ops run one at a time per connection, in the order the client sent them, so a client never
//! sees replies out of order. One exception keeps a fast publisher from waiting on the store:
//! `send_message` publishes in order and then queues its `ACK` to follow the archive's commit
//! while the next `send_message` runs. Any other op first waits for those ACKs, and every reply
//! queues behind them ([`Session::reply`]), so the order of replies still holds.

mod join_room;
mod leave_room;
mod offers;
mod polls;
mod questions;
mod send_message;

use crate::auth::AuthzError;
use crate::conn::session::Session;
use crate::live::{Live, LiveError};
use crate::node::RoomError;
use evd_protocol::event::{Event, Pong};
use evd_protocol::{ErrorCode, Op, Ref, Request};

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
                retry_after_ms: Some(1_000),
            },
            LiveError::Unavailable => {
                OpError::new(ErrorCode::Internal, "the store is unavailable; retry")
            }
        }
    }
}

/// The node's store-backed features, or the documented `not_found` when it runs without a store.
fn live(s: &Session) -> Result<&Live, OpError> {
    s.node.live.as_ref().ok_or_else(|| {
        OpError::new(
            ErrorCode::NotFound,
            "polls, questions and offers need the store; this node runs without one",
        )
    })
}

/// What an op returns: a reply to queue, or `None` when it queued its reply itself.
pub type OpResult = Result<Option<Event>, OpError>;

/// Runs one op and queues its reply or `ERROR`.
pub async fn dispatch(s: &mut Session, req: Request) {
    let r = req.r#ref;
    s.node.metrics.op(req.op.name());
    if !matches!(req.op, Op::SendMessage(_)) {
        s.flush_replies().await;
    }
    let result = match req.op {
        Op::JoinRoom(op) => join_room::handle(s, r, op).await,
        Op::LeaveRoom(op) => leave_room::handle(s, r, op).await,
        Op::SendMessage(op) => send_message::handle(s, r, op).await,
        Op::Ping(_) => Ok(Some(Event::Pong(Pong { r#ref: r }))),
        Op::SubmitPollResponse(op) => polls::handle(s, r, op).await,
        Op::AskQuestion(op) => questions::ask(s, r, op).await,
        Op::UpvoteQuestion(op) => questions::upvote(s, r, op).await,
        Op::AcceptOffer(op) => offers::accept(s, r, op).await,
        Op::DeclineOffer(op) => offers::decline(s, r, op).await,
    };
    match result {
        Ok(Some(event)) => s.reply(event),
        Ok(None) => {}
        Err(e) => s.send_error(r, e),
    }
}
