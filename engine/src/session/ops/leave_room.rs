//! `leave_room`: leave and answer `ROOM_LEFT`. Leaving a room one is not in is not an error.

use super::{Caller, OpResult, Reply};
use crate::node::Node;
use crate::room_key::RoomKey;
use crate::session::error::OpError;
use evd_protocol::event::{Event, RoomLeft};
use evd_protocol::op::LeaveRoom;
use evd_protocol::{ErrorCode, RoomKind};

/// Runs `leave_room` through the node's room orchestration.
pub async fn apply(op: LeaveRoom, who: Caller<'_>, rooms: &Node) -> OpResult {
    if op.room.kind() == RoomKind::User && op.room.id() == who.claims.sub {
        return Err(OpError::new(
            ErrorCode::BadRequest,
            "your own user room cannot be left: offers and notices arrive there",
        ));
    }
    let key = RoomKey::new(&who.claims.org, op.room.clone());
    rooms.exit(who.conn, &key).await;
    Ok(Reply::Now(Event::RoomLeft(RoomLeft {
        r#ref: who.r#ref,
        room: op.room.to_string(),
        reason: None,
    })))
}
