//! `leave_room`: leave and answer `ROOM_LEFT`. Leaving a room one is not in is not an error.

use super::{OpError, OpResult};
use crate::conn::session::Session;
use crate::room_key::RoomKey;
use evd_protocol::event::{Event, RoomLeft};
use evd_protocol::op::LeaveRoom;
use evd_protocol::{ErrorCode, Ref, RoomKind};

pub(super) async fn handle(s: &mut Session, r: Option<Ref>, op: LeaveRoom) -> OpResult {
    if op.room.kind() == RoomKind::User && op.room.id() == s.claims.sub {
        return Err(OpError::new(
            ErrorCode::BadRequest,
            "your own user room cannot be left: offers and notices arrive there",
        ));
    }
    let key = RoomKey::new(&s.claims.org, op.room.clone());
    s.node.exit(&s.conn, &key).await;
    Ok(Some(Event::RoomLeft(RoomLeft {
        r#ref: r,
        room: op.room.to_string(),
    })))
}
