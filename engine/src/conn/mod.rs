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
use evd_protocol::{Codec, Event};
use parking_lot::Mutex;
use queue::{Payload, SendQueue};
use std::fmt;
use std::sync::Arc;
use tokio::sync::Notify;

/// A node-local connection id.
pub type ConnId = u64;

/// State of one connection shared between its tasks and the hub.
pub struct Conn {
    /// Node-local id.
    pub id: ConnId,
    /// The user (`sub`) it belongs to.
    pub user: Arc<str>,
    /// The codec negotiated at the upgrade.
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
    /// A connection with an empty queue of `queue_limit` bytes.
    pub fn new(id: ConnId, user: Arc<str>, codec: Codec, queue_limit: usize) -> Conn {
        Conn {
            id,
            user,
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
            .field("codec", &self.codec)
            .finish()
    }
}

/// Encodes an event for one codec.
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

/// An event encoded at most once per codec, on first use: a broadcast to a room of JSON clients
/// never pays for MessagePack, and 10,000 members share one encoding.
#[derive(Debug)]
pub struct EncodeOnce<'a> {
    event: &'a Event,
    encoded: [Option<Payload>; 2],
}

impl<'a> EncodeOnce<'a> {
    /// Wraps `event`; nothing is encoded yet.
    pub fn new(event: &'a Event) -> Self {
        EncodeOnce {
            event,
            encoded: [None, None],
        }
    }

    /// The encoding for `codec` (a cheap reference-counted clone after the first call).
    pub fn get(&mut self, codec: Codec) -> Payload {
        self.encoded[codec.index()]
            .get_or_insert_with(|| encode(codec, self.event))
            .clone()
    }
}
