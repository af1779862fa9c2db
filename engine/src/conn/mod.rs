//! One client connection: its shared state ([`Conn`]), its outbound [`queue`], its [`writer`]
//! task and its [`session`] (the reader that runs ops).
//!
//! Each connection is two tasks. The session reads frames and runs ops one at a time; the
//! writer drains the queue into the socket. They are split so a client that stops reading
//! blocks only its own writer, and the session can still enforce heartbeats and limits.

pub mod queue;
pub mod writer;

use crate::room_key::RoomKey;
use axum::extract::ws::Utf8Bytes;
use evd_protocol::socketio::{self, Parser};
use evd_protocol::{Codec, Event};
use parking_lot::Mutex;
use queue::{Payload, SendQueue};
use std::fmt;
use std::sync::Arc;
use tokio::sync::Notify;

/// A node-local connection id.
pub type ConnId = u64;

/// The protocol a connection speaks. With its [`Codec`] it decides what an event's bytes look
/// like: the hub encodes each event once per (wire, codec) in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Wire {
    /// evd's own protocol at `/ws`.
    #[default]
    Evd,
    /// Socket.IO v5 over Engine.IO v4 at `/socket.io/`; the codec names its parser (JSON is
    /// the default parser, MessagePack `socket.io-msgpack-parser`).
    SocketIo,
}

impl Wire {
    /// The `protocol` label of the connection and op metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Wire::Evd => "evd",
            Wire::SocketIo => "socketio",
        }
    }

    const fn index(self) -> usize {
        match self {
            Wire::Evd => 0,
            Wire::SocketIo => 1,
        }
    }
}

/// State of one connection shared between its tasks and the hub.
pub struct Conn {
    /// Node-local id.
    pub id: ConnId,
    /// The user (`sub`) it belongs to.
    pub user: Arc<str>,
    /// The protocol it speaks.
    pub wire: Wire,
    /// The codec negotiated at the upgrade (for Socket.IO, its parser).
    pub codec: Codec,
    /// Encoded events waiting for the writer.
    pub queue: SendQueue,
    /// The connection → rooms index, the other half of the hub's room → connections index.
    /// Changed only by `Hub` methods, so the two always agree.
    pub(crate) rooms: Mutex<Vec<RoomKey>>,
    /// Notified once when the writer task ends, so the session stops waiting for frames.
    pub(crate) writer_done: Notify,
}

impl Conn {
    /// A connection of evd's own protocol with an empty queue of `queue_limit` bytes.
    pub fn new(id: ConnId, user: Arc<str>, codec: Codec, queue_limit: usize) -> Conn {
        Conn::on_wire(id, user, Wire::Evd, codec, queue_limit)
    }

    /// A connection speaking `wire` with an empty queue of `queue_limit` bytes.
    pub fn on_wire(
        id: ConnId,
        user: Arc<str>,
        wire: Wire,
        codec: Codec,
        queue_limit: usize,
    ) -> Conn {
        Conn {
            id,
            user,
            wire,
            codec,
            queue: SendQueue::new(queue_limit),
            rooms: Mutex::new(Vec::new()),
            writer_done: Notify::new(),
        }
    }

    /// Rooms this connection is in, its `user:` room included.
    pub fn rooms(&self) -> Vec<RoomKey> {
        self.rooms.lock().clone()
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("wire", &self.wire)
            .field("codec", &self.codec)
            .finish()
    }
}

/// Encodes an event for one connection.
pub fn encode_for(conn: &Conn, event: &Event) -> Payload {
    encode_at(conn.wire, conn.codec, event, None)
}

/// Encodes an event for one wire and codec; a chat message published in `epoch` carries its
/// position on Socket.IO, the offset socket.io-client recovers from.
pub fn encode_at(wire: Wire, codec: Codec, event: &Event, epoch: Option<&str>) -> Payload {
    match wire {
        Wire::Evd => encode(codec, event),
        Wire::SocketIo => {
            let parser = match codec {
                Codec::Json => Parser::Json,
                Codec::MsgPack => Parser::MsgPack,
            };
            socketio_payload(socketio::encode_event_at(parser, event, epoch))
        }
    }
}

/// A Socket.IO packet as a queue payload.
pub fn socketio_payload(p: socketio::Payload) -> Payload {
    match p {
        socketio::Payload::Text(t) => Payload::Text(Utf8Bytes::from(t)),
        socketio::Payload::Binary(b) => Payload::Binary(b),
    }
}

/// Encodes an event for one codec of evd's own protocol.
pub fn encode(codec: Codec, event: &Event) -> Payload {
    match codec {
        Codec::Json => {
            let text =
                serde_json::to_string(event).expect("protocol events always serialize to JSON");
            Payload::Text(Utf8Bytes::from(text))
        }
        Codec::MsgPack => Payload::Binary(
            codec
                .encode(event)
                .expect("protocol events always serialize to MessagePack"),
        ),
    }
}

/// Encodings an event can need: every (wire, codec) pair.
const ENCODINGS: usize = 4;

/// An event encoded at most once per wire and codec, on first use: a broadcast to a room of
/// JSON clients never pays for MessagePack or Socket.IO, and 10,000 members share one encoding.
#[derive(Debug)]
pub struct EncodeOnce<'a> {
    event: &'a Event,
    /// The epoch a chat message was published in.
    epoch: Option<&'a str>,
    encoded: [Option<Payload>; ENCODINGS],
}

impl<'a> EncodeOnce<'a> {
    /// Wraps `event`; nothing is encoded yet.
    pub fn new(event: &'a Event) -> Self {
        EncodeOnce {
            event,
            epoch: None,
            encoded: [const { None }; ENCODINGS],
        }
    }

    /// Wraps a chat message published in `epoch`; nothing is encoded yet.
    pub fn chat(event: &'a Event, epoch: &'a str) -> Self {
        EncodeOnce {
            epoch: Some(epoch),
            ..EncodeOnce::new(event)
        }
    }

    /// The event.
    pub fn event(&self) -> &'a Event {
        self.event
    }

    /// The encoding for `conn` (a cheap reference-counted clone after the first call).
    pub fn get(&mut self, conn: &Conn) -> Payload {
        let (wire, codec) = (conn.wire, conn.codec);
        self.encoded[wire.index() * Codec::ALL.len() + codec.index()]
            .get_or_insert_with(|| encode_at(wire, codec, self.event, self.epoch))
            .clone()
    }
}
