//! `join_room`: authorize, enter, read history (or recover), answer `ROOM_JOINED`.

use super::{Caller, OpResult, Reply};
use crate::broker::HistoryRequest;
use crate::node::{Node, tracks_presence};
use crate::room_key::RoomKey;
use crate::session::error::OpError;
use evd_protocol::ErrorCode;
use evd_protocol::MAX_PRESENCE_SNAPSHOT;
use evd_protocol::event::{Event, PresenceMember, PresenceSnapshot, RoomJoined};
use evd_protocol::op::JoinRoom;

/// Runs `join_room` through the node's room orchestration; the reply is queued with the join
/// buffer's release ([`Reply::Sent`]).
pub async fn apply(op: JoinRoom, who: Caller<'_>, rooms: &Node) -> OpResult {
    rooms.authorizer.can_join(who.claims, &op.room).await?;
    let key = RoomKey::new(&who.claims.org, op.room.clone());
    let joined = who.conn.rooms();
    let max = rooms.settings.limits.rooms_per_connection;
    if !joined.contains(&key) && joined.len() > max {
        // `joined` includes the connection's own user room, hence `>`.
        return Err(OpError::new(
            ErrorCode::Conflict,
            format!("room limit reached: at most {max} rooms per connection"),
        ));
    }
    rooms.enter(who.conn, who.claims, &key).await?;
    match answer(&op, who, rooms, &key).await {
        Ok(()) => Ok(Reply::Sent),
        Err(e) => {
            // A failed join leaves the connection outside the room, never half in it.
            rooms.exit(who.conn, &key).await;
            Err(e)
        }
    }
}

async fn answer(op: &JoinRoom, who: Caller<'_>, node: &Node, key: &RoomKey) -> Result<(), OpError> {
    let latest = HistoryRequest::Latest(op.history as usize);
    let (history, recovered) = match &op.recover {
        Some(pos) => {
            let h = node
                .broker
                .history(key, HistoryRequest::Since(pos.clone()))
                .await?;
            if h.complete {
                (h, true)
            } else {
                (node.broker.history(key, latest).await?, false)
            }
        }
        None => (node.broker.history(key, latest).await?, false),
    };
    let presence = if tracks_presence(key) {
        node.presence
            .snapshot(key, MAX_PRESENCE_SNAPSHOT)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "presence snapshot failed");
                OpError::new(ErrorCode::Internal, "presence is unavailable; retry")
            })?
    } else {
        PresenceSnapshot {
            count: 1,
            members: vec![PresenceMember {
                user: who.claims.sub.clone(),
            }],
        }
    };
    let after_offset = history.offset;
    let reply = Event::RoomJoined(RoomJoined {
        r#ref: who.r#ref,
        room: op.room.to_string(),
        epoch: history.epoch,
        offset: history.offset,
        recovered,
        presence,
        history: history.messages,
    });
    node.hub.activate(
        key,
        who.conn,
        Some(Node::reply_item(who.conn, &reply)),
        after_offset,
    );
    node.metrics.event_out("ROOM_JOINED", 1);
    Ok(())
}
