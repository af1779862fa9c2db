//! The wire protocols the harness speaks: evd v1 (JSON or MessagePack, batched array frames),
//! Socket.IO v4 over Engine.IO v4 WebSocket, and the uWebSockets.js peer's plain JSON ops,
//! reduced to what a scenario needs.
//! This file is the target and the ops a client sends; `incoming` reads what comes back.
//!
//! Incoming frames are read with a lean view of the events (only the fields the harness uses),
//! because at saturation the harness decodes as many events per second as the server sends.

mod incoming;

pub(crate) use incoming::Incoming;

use evd_protocol::op::{
    JoinRoom, LeaveRoom, Ping, SendMessage, StreamPosition, SubmitPollResponse,
};
use evd_protocol::{Codec, Op, Request, RoomName};
use tokio_tungstenite::tungstenite::Message;

/// Which server the harness drives.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Target {
    /// The evd engine at `/ws`, authenticated with minted tokens.
    Evd,
    /// A Socket.IO v4 server at `/socket.io/` (Engine.IO v4 over WebSocket).
    Socketio,
    /// The uWebSockets.js peer (`bench/peers/uws`) at `/ws`: one JSON object per frame,
    /// `join_room` and `send_message` only, no token.
    Uws,
}

/// The `ref` of a client's join, so its `ROOM_JOINED` (or Socket.IO ack) is recognized.
const JOIN_REF: i64 = 1;
/// The `ref` of a client's vote, so its `ACK` or `ERROR` is recognized. A client votes once.
pub(crate) const VOTE_REF: i64 = 2;

/// `room` as the protocol's room name.
fn room_name(room: &str) -> RoomName {
    RoomName::parse(room).expect("the harness makes valid room names")
}

/// A client's wire: the target and, for evd, the codec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wire {
    pub(crate) target: Target,
    pub(crate) codec: Codec,
}

impl Wire {
    /// The URL to open for `base` (`ws://host:port` or `http://host:port`).
    pub(crate) fn url(&self, base: &str) -> String {
        let base = base.trim_end_matches('/');
        let base = if let Some(rest) = base.strip_prefix("http") {
            format!("ws{rest}")
        } else {
            base.to_owned()
        };
        match self.target {
            Target::Evd | Target::Uws => format!("{base}/ws"),
            Target::Socketio => format!("{base}/socket.io/?EIO=4&transport=websocket"),
        }
    }

    fn evd(&self, op: Op, r#ref: Option<i64>) -> Message {
        let req = Request { r#ref, op };
        let bytes = self
            .codec
            .encode(&req)
            .expect("protocol types always encode");
        match self.codec {
            Codec::Json => Message::Text(
                String::from_utf8(bytes.to_vec())
                    .expect("JSON is UTF-8")
                    .into(),
            ),
            Codec::MsgPack => Message::Binary(bytes),
        }
    }

    /// Join `room`, recovering from `recover` when given.
    pub(crate) fn join(&self, room: &str, recover: Option<(String, u64)>) -> Message {
        match self.target {
            Target::Evd => self.evd(
                Op::JoinRoom(JoinRoom {
                    room: room_name(room),
                    history: 0,
                    recover: recover.map(|(epoch, offset)| StreamPosition { epoch, offset }),
                }),
                Some(JOIN_REF),
            ),
            // Ack id 0 marks the join; the peer calls the ack after joining.
            Target::Socketio => Message::Text(
                format!("420[\"join_room\",{}]", serde_json::json!({ "room": room })).into(),
            ),
            Target::Uws => Message::Text(
                serde_json::json!({ "op": "join_room", "room": room, "ref": JOIN_REF })
                    .to_string()
                    .into(),
            ),
        }
    }

    /// Leave `room`.
    pub(crate) fn leave(&self, room: &str) -> Message {
        match self.target {
            Target::Evd => self.evd(
                Op::LeaveRoom(LeaveRoom {
                    room: room_name(room),
                }),
                None,
            ),
            Target::Socketio => Message::Text(
                format!("42[\"leave_room\",{}]", serde_json::json!({ "room": room })).into(),
            ),
            // The peer has no leave (plan::check keeps churn away from it); it counts this as a
            // bad frame and ignores it.
            Target::Uws => Message::Text(
                serde_json::json!({ "op": "leave_room", "room": room })
                    .to_string()
                    .into(),
            ),
        }
    }

    /// Publish `text` to `room`.
    pub(crate) fn send(&self, room: &str, text: String) -> Message {
        match self.target {
            Target::Evd => self.evd(
                Op::SendMessage(SendMessage {
                    room: room_name(room),
                    text,
                    client_id: None,
                }),
                None,
            ),
            Target::Socketio => Message::Text(
                format!(
                    "42[\"send_message\",{}]",
                    serde_json::json!({ "room": room, "text": text })
                )
                .into(),
            ),
            Target::Uws => Message::Text(
                serde_json::json!({ "op": "send_message", "room": room, "text": text })
                    .to_string()
                    .into(),
            ),
        }
    }

    /// Vote for `option` in `poll` (evd only), with [`VOTE_REF`].
    pub(crate) fn vote(&self, poll: &str, option: &str) -> Message {
        self.evd(
            Op::SubmitPollResponse(SubmitPollResponse {
                poll: poll.to_owned(),
                option: option.to_owned(),
            }),
            Some(VOTE_REF),
        )
    }

    /// The application heartbeat (evd); Socket.IO clients answer the server's pings instead,
    /// and uWS pings at the WebSocket level, which the client library answers.
    pub(crate) fn ping(&self) -> Option<Message> {
        match self.target {
            Target::Evd => Some(self.evd(Op::Ping(Ping {}), None)),
            Target::Socketio | Target::Uws => None,
        }
    }

    /// Socket.IO namespace connect, sent after the Engine.IO open packet.
    pub(crate) fn sio_connect() -> Message {
        Message::Text("40".into())
    }

    /// Engine.IO pong.
    pub(crate) fn sio_pong() -> Message {
        Message::Text("3".into())
    }
}

#[cfg(test)]
mod tests;
