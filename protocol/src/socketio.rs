//! Socket.IO v5 over Engine.IO v4: the packet format `socket.io-client` speaks, mapped onto
//! this crate's ops and events. Bytes in, [`Inbound`] out; [`Event`] in, packet bytes out. No I/O.
//!
//! Over a WebSocket every Engine.IO packet is one frame: a type digit (`0` open, `1` close,
//! `2` ping, `3` pong, `4` message, `5` upgrade, `6` noop) and its data. A message carries one
//! Socket.IO packet: a type digit (`0` CONNECT, `1` DISCONNECT, `2` EVENT, `3` ACK,
//! `4` CONNECT_ERROR), an optional namespace (`/admin,`), an optional ack id, then JSON:
//!
//! ```text
//! 40{"token":"…"}                   CONNECT to `/` with its auth
//! 421["join_room","session:S1"]     EVENT with ack id 1
//! 42["MESSAGE_RECEIVED",{…}]        EVENT from the server
//! 431[{"ev":"ROOM_JOINED",…}]       ACK of id 1
//! ```
//!
//! **Mapping.** An EVENT's name is an op's name and its first argument the op's fields, or for
//! ops that name one thing (`join_room`, `leave_room`, `upvote_question`, `accept_offer`,
//! `decline_offer`) that thing as a bare string. Its ack id becomes the op's `ref`. Every server
//! event goes out as an EVENT named as its `ev`, with the native object as its one argument;
//! a reply to an op with a `ref` goes out as the ACK of that id instead. Binary packets
//! (attachments) are refused: no op carries binary data.
//!
//! The `socket.io-msgpack-parser` variant ([`Parser::MsgPack`]) carries the same Socket.IO
//! packet as one MessagePack map `{type, nsp, data, id?}` in a binary frame, with no Engine.IO
//! type prefix.

use crate::codec::{DecodeError, DecodeErrorKind};
use crate::event::Event;
use crate::op::{Ref, Request, StreamPosition};
use crate::room::RoomName;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The Engine.IO protocol revision served (`EIO=4`).
pub const ENGINE_IO_VERSION: &str = "4";

/// The only namespace served.
pub const NAMESPACE: &str = "/";

/// The server's Engine.IO ping.
pub const PING: &str = "2";

/// The Engine.IO packet that ends a session.
pub const CLOSE: &str = "1";

/// The Socket.IO DISCONNECT of namespace `/`, inside an Engine.IO message: the client does not
/// reconnect on its own after it.
pub const DISCONNECT: &str = "41";

/// Which Socket.IO parser the client uses; fixed per server in socket.io, chosen per connection
/// here by the frame type of its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Parser {
    /// The default parser: JSON in text frames.
    #[default]
    Json,
    /// `socket.io-msgpack-parser`: MessagePack maps in binary frames.
    MsgPack,
}

/// One packet from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// Engine.IO ping; `probe` during a transport upgrade (answer `3probe`).
    Ping {
        /// The ping carried `probe`.
        probe: bool,
    },
    /// Engine.IO pong, the answer to the server's ping.
    Pong,
    /// Engine.IO close.
    Close,
    /// Engine.IO upgrade (the last step of a transport upgrade) or noop.
    Upgrade,
    /// Socket.IO CONNECT to `nsp`, with the `auth` the client passed (an object, or none).
    Connect {
        /// The namespace.
        nsp: String,
        /// `auth` from the client's options.
        auth: Option<Map<String, Value>>,
    },
    /// Socket.IO DISCONNECT.
    Disconnect,
    /// Socket.IO EVENT, as an op.
    Request(Request),
    /// Socket.IO ACK from the client (the server asks for none): ignored.
    ClientAck,
}

fn bad(r#ref: Option<Ref>, message: impl Into<String>) -> DecodeError {
    DecodeError::new(r#ref, DecodeErrorKind::Invalid, message)
}

fn malformed(message: impl Into<String>) -> DecodeError {
    DecodeError::new(None, DecodeErrorKind::Malformed, message)
}

/// Decodes one text frame (the default parser).
pub fn decode_text(frame: &str) -> Result<Inbound, DecodeError> {
    let mut chars = frame.chars();
    match chars.next() {
        Some('1') => Ok(Inbound::Close),
        Some('2') => Ok(Inbound::Ping {
            probe: chars.as_str() == "probe",
        }),
        Some('3') => Ok(Inbound::Pong),
        Some('5' | '6') => Ok(Inbound::Upgrade),
        Some('4') => decode_socket_packet(chars.as_str()),
        _ => Err(malformed("not an Engine.IO packet")),
    }
}

/// Decodes one Socket.IO packet of the default parser (the data of an Engine.IO message).
fn decode_socket_packet(packet: &str) -> Result<Inbound, DecodeError> {
    let kind = packet.as_bytes().first().copied();
    let mut rest = packet.get(1..).unwrap_or("");
    if matches!(kind, Some(b'5' | b'6')) {
        return Err(bad(None, "binary attachments are not supported"));
    }
    let mut nsp = NAMESPACE;
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        nsp = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits > 0 {
        Some(
            rest[..digits]
                .parse::<Ref>()
                .map_err(|_| malformed("ack id out of range"))?,
        )
    } else {
        None
    };
    rest = &rest[digits..];
    let data = || -> Result<Option<Value>, DecodeError> {
        if rest.is_empty() {
            return Ok(None);
        }
        serde_json::from_str(rest).map(Some).map_err(|e| {
            DecodeError::new(id, DecodeErrorKind::Malformed, format!("invalid JSON: {e}"))
        })
    };
    match kind {
        Some(b'0') => Ok(Inbound::Connect {
            nsp: nsp.to_owned(),
            auth: auth(data()?)?,
        }),
        Some(b'1') => Ok(Inbound::Disconnect),
        Some(b'2') => {
            check_nsp(nsp, id)?;
            request(data()?.unwrap_or(Value::Null), id).map(Inbound::Request)
        }
        Some(b'3') => Ok(Inbound::ClientAck),
        _ => Err(malformed("not a Socket.IO packet")),
    }
}

fn check_nsp(nsp: &str, id: Option<Ref>) -> Result<(), DecodeError> {
    if nsp == NAMESPACE {
        Ok(())
    } else {
        Err(bad(id, format!("namespace {nsp} is not served; use /")))
    }
}

fn auth(data: Option<Value>) -> Result<Option<Map<String, Value>>, DecodeError> {
    match data {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(bad(None, "CONNECT auth must be an object")),
    }
}

/// The field an op's bare-string argument fills: `emit('join_room', 'session:S1')`.
fn bare_field(op: &str) -> Option<&'static str> {
    match op {
        "join_room" | "leave_room" => Some("room"),
        "upvote_question" => Some("question"),
        "accept_offer" | "decline_offer" => Some("offer"),
        _ => None,
    }
}

/// An EVENT's arguments (`[name, fields?]`) and ack id as a validated request.
fn request(args: Value, id: Option<Ref>) -> Result<Request, DecodeError> {
    let Value::Array(args) = args else {
        return Err(bad(id, "an EVENT carries an array: [name, …args]"));
    };
    let mut args = args.into_iter();
    let Some(Value::String(name)) = args.next() else {
        return Err(bad(id, "an EVENT's first element is its name"));
    };
    let mut fields = match args.next() {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(Value::String(s)) => match bare_field(&name) {
            Some(field) => Map::from_iter([(field.to_owned(), Value::String(s))]),
            None => return Err(bad(id, format!("`{name}` takes an object of fields"))),
        },
        Some(_) => return Err(bad(id, format!("`{name}` takes an object of fields"))),
    };
    // The ack id is the only correlation a Socket.IO client has; a `ref` of its own would
    // make the reply an ACK of an id it never asked for.
    fields.remove("ref");
    if let Some(id) = id {
        fields.insert("ref".into(), Value::from(id));
    }
    fields.insert("op".into(), Value::String(name));
    let req: Request = serde_json::from_value(Value::Object(fields))
        .map_err(|e| bad(id, format!("invalid op: {e}")))?;
    req.op.validate().map_err(|msg| bad(id, msg))?;
    Ok(req)
}

/// The Engine.IO open packet's fields.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake<'a> {
    /// The Engine.IO session id.
    pub sid: &'a str,
    /// Transports the client may upgrade to.
    pub upgrades: &'a [&'a str],
    /// How often the server pings, ms.
    pub ping_interval: u64,
    /// How long the server waits for the pong, ms.
    pub ping_timeout: u64,
    /// Largest payload the server accepts, bytes.
    pub max_payload: usize,
}

/// The Engine.IO open packet, the first frame of a session.
pub fn open_packet(h: &Handshake<'_>) -> String {
    let json = serde_json::to_string(h).expect("a handshake always serializes");
    format!("0{json}")
}

/// The CONNECT reply of namespace `/` with the Socket.IO session id and the recovery id `pid`
/// (socket.io-client 4.6+ sends it back on reconnect, with the offset of the last event).
pub fn connect_ok(parser: Parser, sid: &str, pid: &str) -> Payload {
    let data = serde_json::json!({ "sid": sid, "pid": pid });
    match parser {
        Parser::Json => Payload::Text(format!("40{data}")),
        Parser::MsgPack => Payload::Binary(msgpack_packet(0, Some(&data), None)),
    }
}

/// A CONNECT_ERROR of namespace `nsp` that `socket.io-client` surfaces as `connect_error`
/// with `err.message`.
pub fn connect_error(parser: Parser, nsp: &str, message: &str) -> Payload {
    let data = serde_json::json!({ "message": message });
    match parser {
        Parser::Json if nsp == NAMESPACE => Payload::Text(format!("44{data}")),
        Parser::Json => Payload::Text(format!("44{nsp},{data}")),
        Parser::MsgPack => Payload::Binary(msgpack_packet_nsp(4, nsp, Some(&data), None)),
    }
}

/// The DISCONNECT of namespace `/`: socket.io-client then stays disconnected (reason
/// `io server disconnect`) instead of reconnecting on its own.
pub fn disconnect(parser: Parser) -> Payload {
    match parser {
        Parser::Json => Payload::Text(DISCONNECT.to_owned()),
        Parser::MsgPack => Payload::Binary(msgpack_packet::<()>(1, None, None)),
    }
}

/// A packet ready for a frame: text for the default parser, binary for MessagePack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
}

/// An event as a Socket.IO packet in an Engine.IO message: the ACK of its `ref` when it is a
/// reply to an op with one, an EVENT named as its `ev` otherwise.
pub fn encode_event(parser: Parser, event: &Event) -> Payload {
    encode_event_at(parser, event, None)
}

/// [`encode_event`]; a chat message published in `epoch` also carries its position as a last
/// string argument, which socket.io-client keeps as the offset to recover from ([`position`]).
pub fn encode_event_at(parser: Parser, event: &Event, epoch: Option<&str>) -> Payload {
    let ack = event.reply_ref().filter(|r| *r >= 0);
    let at = match (event, epoch) {
        (Event::MessageReceived(m), Some(epoch)) if ack.is_none() => {
            Some(position(epoch, m.offset, &m.room))
        }
        _ => None,
    };
    match parser {
        Parser::Json => {
            let json = serde_json::to_string(event).expect("events always serialize to JSON");
            Payload::Text(match (ack, at) {
                (Some(id), _) => format!("43{id}[{json}]"),
                (None, Some(at)) => {
                    format!("42[\"{}\",{json},{}]", event.name(), Value::String(at))
                }
                (None, None) => format!("42[\"{}\",{json}]", event.name()),
            })
        }
        Parser::MsgPack => Payload::Binary(match (ack, at) {
            (Some(id), _) => msgpack_packet(3, Some(&(event,)), Some(id)),
            (None, Some(at)) => msgpack_packet(2, Some(&(event.name(), event, at)), None),
            (None, None) => msgpack_packet(2, Some(&(event.name(), event)), None),
        }),
    }
}

/// A chat message's position as a Socket.IO offset: `<epoch>:<offset>:<room>` (an epoch is
/// alphanumeric, so the first two colons split it).
pub fn position(epoch: &str, offset: u64, room: &str) -> String {
    format!("{epoch}:{offset}:{room}")
}

/// The room and position a Socket.IO offset names, if it is one of [`position`]'s.
pub fn parse_position(s: &str) -> Option<(RoomName, StreamPosition)> {
    let mut parts = s.splitn(3, ':');
    let epoch = parts.next().filter(|e| !e.is_empty())?;
    let offset = parts.next()?.parse().ok()?;
    let room = parts.next()?.parse().ok()?;
    Some((
        room,
        StreamPosition {
            epoch: epoch.to_owned(),
            offset,
        },
    ))
}

/// `socket.io-msgpack-parser`'s packet: `{type, nsp, data?, id?}`.
#[derive(Serialize, Deserialize)]
struct MsgPackPacket<D> {
    r#type: u8,
    #[serde(default = "root")]
    nsp: String,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    data: Option<D>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<Ref>,
}

fn root() -> String {
    NAMESPACE.to_owned()
}

fn msgpack_packet<D: Serialize>(kind: u8, data: Option<&D>, id: Option<Ref>) -> Bytes {
    msgpack_packet_nsp(kind, NAMESPACE, data, id)
}

fn msgpack_packet_nsp<D: Serialize>(
    kind: u8,
    nsp: &str,
    data: Option<&D>,
    id: Option<Ref>,
) -> Bytes {
    let packet = MsgPackPacket {
        r#type: kind,
        nsp: nsp.to_owned(),
        data,
        id,
    };
    Bytes::from(rmp_serde::to_vec_named(&packet).expect("packets always serialize to MessagePack"))
}

/// Decodes one binary frame of `socket.io-msgpack-parser`.
pub fn decode_msgpack(frame: &[u8]) -> Result<Inbound, DecodeError> {
    let packet: MsgPackPacket<Value> = rmp_serde::from_slice(frame)
        .map_err(|e| malformed(format!("invalid MessagePack packet: {e}")))?;
    let id = packet.id;
    match packet.r#type {
        0 => Ok(Inbound::Connect {
            nsp: packet.nsp,
            auth: auth(packet.data)?,
        }),
        1 => Ok(Inbound::Disconnect),
        2 => {
            check_nsp(&packet.nsp, id)?;
            request(packet.data.unwrap_or(Value::Null), id).map(Inbound::Request)
        }
        3 => Ok(Inbound::ClientAck),
        _ => Err(malformed("not a Socket.IO packet")),
    }
}

#[cfg(test)]
mod tests;
