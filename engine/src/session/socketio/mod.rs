//! A Socket.IO connection's opening, on its link before the connection exists: the Engine.IO
//! open packet, then the client's Socket.IO CONNECT (its parser is the frame type it arrives
//! in), the token check, and `CONNECT` or `CONNECT_ERROR`. After that the connection is an
//! ordinary one ([`super::reader::run_link`]) that speaks [`Wire::SocketIo`].
//!
//! The link is a WebSocket, or [`polling`]: Engine.IO's HTTP long-polling, which a client may
//! later upgrade to a WebSocket in place. Nothing here outlives the opening: no task, no buffer
//! beyond one frame.

pub mod polling;

use crate::broker::HistoryRequest;
use crate::conn::{Wire, socketio_payload};
use crate::node::{ConnPermit, Node};
use crate::room_key::RoomKey;
use axum::extract::ws::{Message, WebSocket};
use evd_protocol::RoomName;
use evd_protocol::auth::Claims;
use evd_protocol::op::StreamPosition;
use evd_protocol::socketio::{self, Handshake, Inbound, Parser};
use evd_protocol::{CloseCode, Codec};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

/// Frames a client may send before its CONNECT (Engine.IO pongs, noops); more closes the socket:
/// a client that keeps talking without connecting is not a Socket.IO client.
const MAX_FRAMES_BEFORE_CONNECT: usize = 16;

/// Length of a Socket.IO session id (URL-safe characters, about 120 bits).
const SID_LEN: usize = 20;

/// How long the refusal (`CONNECT_ERROR` and the close) may take to send.
const REFUSAL_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// A fresh session id.
pub fn new_sid() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..SID_LEN)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// Opens a Socket.IO connection on an upgraded WebSocket; `upgrade_token` is the token of the
/// upgrade request (bearer header or `token` query), used when the CONNECT carries none.
pub async fn run(
    node: Arc<Node>,
    socket: WebSocket,
    upgrade_token: Option<String>,
    permit: ConnPermit,
) {
    let (sink, stream) = socket.split();
    open(node, sink, stream, new_sid(), &[], upgrade_token, permit).await;
}

/// Opens a Socket.IO connection `sid` on a link (a WebSocket's halves, or a polling link that
/// may upgrade to the `upgrades` named).
pub async fn open<Si, St>(
    node: Arc<Node>,
    mut sink: Si,
    mut stream: St,
    sid: String,
    upgrades: &'static [&'static str],
    upgrade_token: Option<String>,
    permit: ConnPermit,
) where
    Si: Sink<Message> + Unpin + Send + 'static,
    Si::Error: Display + Send,
    St: Stream<Item = Result<Message, axum::Error>> + Unpin + Send + 'static,
{
    let sio = &node.settings.socketio;
    let open = socketio::open_packet(&Handshake {
        sid: &sid,
        upgrades,
        ping_interval: sio.ping_interval_ms,
        ping_timeout: sio.ping_timeout_ms,
        max_payload: sio.max_payload,
    });
    if sink.send(Message::Text(open.into())).await.is_err() {
        node.metrics.closed("client_gone", Wire::SocketIo.label());
        return;
    }
    let limit = Duration::from_millis(sio.connect_timeout_ms);
    let connect = tokio::time::timeout(limit, wait_connect(&mut sink, &mut stream)).await;
    let (parser, auth) = match connect {
        Ok(Some(c)) => c,
        Ok(None) => {
            node.metrics.closed("client_gone", Wire::SocketIo.label());
            return;
        }
        Err(_) => {
            node.metrics
                .closed("connect_timeout", Wire::SocketIo.label());
            close(&mut sink, CloseCode::Normal).await;
            return;
        }
    };
    let recovery = auth.as_ref().and_then(recovery_point);
    let claims = match verify(&node, auth, upgrade_token) {
        Ok(c) => c,
        Err(message) => {
            node.metrics.rejected("unauthorized");
            let refusal = socketio::connect_error(parser, socketio::NAMESPACE, &message);
            let _ = tokio::time::timeout(REFUSAL_SEND_TIMEOUT, sink.send(frame(refusal))).await;
            close(&mut sink, CloseCode::TokenExpired).await;
            return;
        }
    };
    if let Some(bans) = &node.bans
        && let Some(until) = bans.banned_until(&claims.org, &claims.sub).await
    {
        node.metrics.rejected("banned");
        let message = format!("banned: an organizer banned this user from the org until {until}");
        let refusal = socketio::connect_error(parser, socketio::NAMESPACE, &message);
        let _ = tokio::time::timeout(REFUSAL_SEND_TIMEOUT, sink.send(frame(refusal))).await;
        close(&mut sink, CloseCode::Disconnected).await;
        return;
    }
    // The client's `pid` comes back (so `socket.recovered` is true) only when the room still
    // holds every message after its offset; otherwise it gets a new one and rejoins itself.
    let recover = match recovery {
        Some((pid, room, pos)) => {
            let key = RoomKey::new(&claims.org, room);
            Box::pin(recoverable(&node, &claims, &key, &pos))
                .await
                .then_some((pid, key, pos))
        }
        None => None,
    };
    let pid = recover
        .as_ref()
        .map_or_else(new_sid, |(pid, ..)| pid.clone());
    let ok = socketio::connect_ok(parser, &sid, &pid);
    if sink.send(frame(ok)).await.is_err() {
        node.metrics.closed("client_gone", Wire::SocketIo.label());
        return;
    }
    let codec = match parser {
        Parser::Json => Codec::Json,
        Parser::MsgPack => Codec::MsgPack,
    };
    let recover = recover.map(|(_, key, pos)| (key, pos));
    super::reader::run_link(
        node,
        sink,
        stream,
        claims,
        Wire::SocketIo,
        codec,
        permit,
        recover,
    )
    .await;
}

/// The `pid` and the position a reconnecting client's CONNECT carries (socket.io-client 4.6+
/// adds them to its `auth`), when the offset is a position this server gave out.
fn recovery_point(
    auth: &serde_json::Map<String, serde_json::Value>,
) -> Option<(String, RoomName, StreamPosition)> {
    let pid = auth.get("pid")?.as_str()?;
    let (room, pos) = socketio::parse_position(auth.get("offset")?.as_str()?)?;
    Some((pid.to_owned(), room, pos))
}

/// Whether `claims` may rejoin `room` and its history holds everything after `pos`.
async fn recoverable(node: &Node, claims: &Claims, room: &RoomKey, pos: &StreamPosition) -> bool {
    if node.authorizer.can_join(claims, room.room()).await.is_err() {
        return false;
    }
    let since = HistoryRequest::Since(pos.clone());
    matches!(node.broker.history(room, since).await, Ok(h) if h.complete)
}

/// Reads until the CONNECT to `/`; answers a CONNECT to another namespace with its
/// `CONNECT_ERROR`. `None` when the client left or broke the rules first.
async fn wait_connect<Si, St>(
    sink: &mut Si,
    stream: &mut St,
) -> Option<(Parser, Option<serde_json::Map<String, serde_json::Value>>)>
where
    Si: Sink<Message> + Unpin,
    St: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    for _ in 0..MAX_FRAMES_BEFORE_CONNECT {
        let (parser, packet) = match stream.next().await?.ok()? {
            Message::Text(t) => (Parser::Json, socketio::decode_text(t.as_str())),
            Message::Binary(b) => (Parser::MsgPack, socketio::decode_msgpack(&b)),
            Message::Close(_) => return None,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        match packet {
            Ok(Inbound::Connect { nsp, auth }) if nsp == socketio::NAMESPACE => {
                return Some((parser, auth));
            }
            Ok(Inbound::Connect { nsp, .. }) => {
                let refusal = socketio::connect_error(parser, &nsp, "Invalid namespace");
                sink.send(frame(refusal)).await.ok()?;
            }
            Ok(Inbound::Close) => return None,
            _ => {}
        }
    }
    None
}

/// The claims of the CONNECT's `auth.token`, or else of the upgrade's token; the refusal's
/// message otherwise.
fn verify(
    node: &Node,
    auth: Option<serde_json::Map<String, serde_json::Value>>,
    upgrade_token: Option<String>,
) -> Result<Claims, String> {
    let from_auth = auth
        .as_ref()
        .and_then(|a| a.get("token"))
        .and_then(|t| t.as_str())
        .map(str::to_owned);
    let token = from_auth
        .or(upgrade_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "unauthorized: no token (pass auth: { token })".to_owned())?;
    node.verifier
        .verify(&token)
        .map_err(|e| format!("unauthorized: {e}"))
}

fn frame(p: socketio::Payload) -> Message {
    match socketio_payload(p) {
        crate::conn::queue::Payload::Text(t) => Message::Text(t),
        crate::conn::queue::Payload::Binary(b) => Message::Binary(b),
    }
}

async fn close<Si: Sink<Message> + Unpin>(sink: &mut Si, code: CloseCode) {
    let close = Message::Close(Some(axum::extract::ws::CloseFrame {
        code: code.code(),
        reason: code.reason().into(),
    }));
    let _ = tokio::time::timeout(REFUSAL_SEND_TIMEOUT, sink.send(close)).await;
}
