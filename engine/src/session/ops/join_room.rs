//! `join_room`: authorize, enter, read history (or recover), answer `ROOM_JOINED`.

use super::{OpError, OpResult};
use crate::broker::HistoryRequest;
use crate::conn::session::Session;
use crate::node::{Node, tracks_presence};
use crate::room_key::RoomKey;
use evd_protocol::event::{Event, PresenceMember, PresenceSnapshot, RoomJoined};
use evd_protocol::op::JoinRoom;
use evd_protocol::{ErrorCode, MAX_PRESENCE_SNAPSHOT, Ref};

pub(super) async fn handle(s: &mut Session, r: Option<Ref>, op: JoinRoom) -> OpResult {
    s.node.authorizer.can_join(&s.claims, &op.room).await?;
    let key = RoomKey::new(&s.claims.org, op.room.clone());
    let rooms = s.conn.rooms();
    if !rooms.contains(&key) && rooms.len() > s.node.settings.limits.rooms_per_connection {
        // `rooms` includes the connection's own user room, hence `>`.
        return Err(OpError::new(
            ErrorCode::Conflict,
            format!(
                "room limit reached: at most {} rooms per connection",
                s.node.settings.limits.rooms_per_connection
            ),
        ));
    }
    s.node.enter(&s.conn, &s.claims, &key).await?;
    match answer(s, r, &op, &key).await {
        Ok(()) => Ok(None),
        Err(e) => {
            // A failed join leaves the connection outside the room, never half in it.
            s.node.exit(&s.conn, &key).await;
            Err(e)
        }
    }
}

async fn answer(s: &Session, r: Option<Ref>, op: &JoinRoom, key: &RoomKey) -> Result<(), OpError> {
    let node = &s.node;
    let latest = HistoryRequest::Latest(op.history as usize);
    let (history, recovered) = match &op.recover {
        Some(pos) => {
            let h = node
                .broker
                .history(key, HistoryRequest::Since(pos.clone()))
                .await
                .map_err(broker)?;
            if h.complete {
                (h, true)
            } else {
                (
                    node.broker.history(key, latest).await.map_err(broker)?,
                    false,
                )
            }
        }
        None => (
            node.broker.history(key, latest).await.map_err(broker)?,
            false,
        ),
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
                user: s.claims.sub.clone(),
            }],
        }
    };
    let after_offset = history.offset;
    let reply = Event::RoomJoined(RoomJoined {
        r#ref: r,
        room: op.room.to_string(),
        epoch: history.epoch,
        offset: history.offset,
        recovered,
        presence,
        history: history.messages,
    });
    node.hub.activate(
        key,
        &s.conn,
        Some(Node::reply_item(&s.conn, &reply)),
        after_offset,
    );
    node.metrics.event_out("ROOM_JOINED", 1);
    Ok(())
}

fn broker(e: crate::broker::BrokerError) -> OpError {
    OpError::from(crate::node::RoomError::from(e))
}
