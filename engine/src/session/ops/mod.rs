//! Client ops, one file each. Each op gets the request's [`Caller`] and only the node parts it
//! uses (the broker, the authorizer, the store-backed [`Live`], the limits), the way a
//! mini-redis command gets only the `Db`; it returns a [`Reply`] and never sees the session.
//! Joining and leaving are the node's room orchestration, so those two get the node.
//!
//! Ops run one at a time per connection, in the order the client sent them (the session's
//! dispatch), so a client never sees replies out of order. One exception keeps a fast publisher
//! from waiting on the store: `send_message` publishes in order and answers
//! [`Reply::Later`], an `ACK` that follows the archive's commit while the next `send_message`
//! runs. Any other op first waits for those ACKs, and every reply queues behind them, so the
//! order of replies still holds.

pub mod join_room;
pub mod leave_room;
pub mod offers;
pub mod polls;
pub mod questions;
pub mod refresh;
pub mod send_message;

use super::error::OpError;
use crate::auth::Authorizer;
use crate::conn::Conn;
use crate::live::Live;
use evd_protocol::auth::Claims;
use evd_protocol::event::Event;
use evd_protocol::{ErrorCode, Ref, RoomKind, RoomName};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Who sent an op: the connection, its verified token, and the op's `ref`.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The connection.
    pub conn: &'a Arc<Conn>,
    /// Its verified token.
    pub claims: &'a Claims,
    /// The op's `ref`, echoed in its reply.
    pub r#ref: Option<Ref>,
}

/// A reply that is ready later.
pub type PendingReply = Pin<Box<dyn Future<Output = Event> + Send + Sync>>;

/// What an op answers.
pub enum Reply {
    /// This reply, now.
    Now(Event),
    /// A reply that is ready later (an `ACK` behind a commit); it keeps its place in order.
    Later(PendingReply),
    /// The op queued its reply itself (`ROOM_JOINED`, released with the join buffer).
    Sent,
    /// `refresh` succeeded: the session adopts these claims, then sends `reply`.
    Refreshed {
        /// The new token's claims (boxed: they are large beside the other variants).
        claims: Box<Claims>,
        /// `TOKEN_REFRESHED`.
        reply: Event,
    },
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Now(e) => f.debug_tuple("Now").field(&e.name()).finish(),
            Reply::Later(_) => f.write_str("Later"),
            Reply::Sent => f.write_str("Sent"),
            Reply::Refreshed { .. } => f.write_str("Refreshed"),
        }
    }
}

/// What an op returns.
pub type OpResult = Result<Reply, OpError>;

/// The node's store-backed features, or the documented `not_found` when it runs without a store.
fn live(live: Option<&Live>) -> Result<&Live, OpError> {
    live.ok_or_else(|| {
        OpError::new(
            ErrorCode::NotFound,
            "polls, questions and offers need the store; this node runs without one",
        )
    })
}

/// The checks an op on a stored item (a poll, a question) makes first: the item's `session`
/// as looked up (`None`: the item is unknown, `not_found`), made its session room, and the
/// caller's right to join that room.
async fn may_join_session(
    who: Caller<'_>,
    authorizer: &dyn Authorizer,
    session: Option<String>,
    not_found: impl Fn() -> OpError,
) -> Result<(), OpError> {
    let session = session.ok_or_else(&not_found)?;
    let room = RoomName::new(RoomKind::Session, &session).map_err(|_| not_found())?;
    authorizer.can_join(who.claims, &room).await?;
    Ok(())
}
