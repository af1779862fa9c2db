//! One client connection: its shared state ([`Conn`]), its outbound [`queue`], and how the
//! queue reaches the socket: written [`direct`]ly by whoever queued (plain TCP; read by
//! [`direct_read`]), or drained by a [`writer`] task (behind TLS, Socket.IO polling links).
//!
//! The session (the reader that runs ops) is the connection's one task. A client that stops
//! reading never blocks anyone else: pushes only queue, and the bytes a full socket did not
//! take wait for a short-lived task of their own.

pub mod direct;
pub mod direct_read;
pub mod done;
pub mod queue;
#[cfg(test)]
pub(crate) mod testing;
pub mod writer;

use crate::room_key::RoomKey;
use axum::extract::ws::Utf8Bytes;
use direct::{Direct, Tally};
use done::Done;
use evd_protocol::socketio::{self, Parser};
use evd_protocol::{Codec, Event};
use parking_lot::Mutex;
use queue::{Outbound, Payload, Push, QueueStats, SendQueue};
use smallvec::SmallVec;
use std::fmt;
use std::sync::Arc;

/// Rooms a connection keeps without a heap allocation: its own `user:` room and one more.
const INLINE_ROOMS: usize = 2;

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
///
/// `repr(C)`, in this order: what a broadcast touches for each member (the protocol, the queue,
/// the direct write side) comes first and together, so a delivery reads a few adjacent cache
/// lines of the connection instead of lines spread over its whole size.
#[repr(C)]
pub struct Conn {
    /// The protocol it speaks.
    pub wire: Wire,
    /// The codec negotiated at the upgrade (for Socket.IO, its parser).
    pub codec: Codec,
    /// Encoded events waiting for the writer.
    pub queue: SendQueue,
    /// On a plain TCP socket, the write side: queued events are written by whoever queued
    /// them ([`direct`]). `None`: a [`writer`] task drains the queue. Held inline, not behind
    /// a pointer of its own: a broadcast touches each member's queue and socket, and one
    /// allocation is one cache miss fewer per delivery.
    pub(crate) direct: Option<Direct>,
    /// Node-local id.
    pub id: ConnId,
    /// The user (`sub`) it belongs to.
    pub user: Arc<str>,
    /// This connection, for the write task a full direct socket starts.
    me: std::sync::Weak<Conn>,
    /// The connection → rooms index, the other half of the hub's room → connections index.
    /// Changed only by `Hub` methods, so the two always agree. Its own `user:` room and one
    /// more (most connections' whole list) are kept inline.
    pub(crate) rooms: Mutex<SmallVec<[RoomKey; INLINE_ROOMS]>>,
    /// Set once the writer side is done (its close frame out, or the socket failed), so the
    /// session stops waiting for frames.
    pub(crate) writer_done: Done,
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
        Conn::build(
            std::sync::Weak::new(),
            id,
            user,
            wire,
            codec,
            queue_limit,
            None,
        )
    }

    /// [`Conn::on_wire`], written directly to a plain TCP socket when `direct` is given.
    pub fn with_direct(
        id: ConnId,
        user: Arc<str>,
        wire: Wire,
        codec: Codec,
        queue_limit: usize,
        direct: Option<Direct>,
    ) -> Arc<Conn> {
        Arc::new_cyclic(|me| Conn::build(me.clone(), id, user, wire, codec, queue_limit, direct))
    }

    fn build(
        me: std::sync::Weak<Conn>,
        id: ConnId,
        user: Arc<str>,
        wire: Wire,
        codec: Codec,
        queue_limit: usize,
        direct: Option<Direct>,
    ) -> Conn {
        Conn {
            me,
            id,
            user,
            wire,
            codec,
            queue: SendQueue::new(queue_limit),
            rooms: Mutex::new(SmallVec::new()),
            writer_done: Done::default(),
            direct,
        }
    }

    /// Queues `item` and, on a direct socket, writes what is queued now.
    pub fn push(&self, item: Outbound, stats: &QueueStats) -> Push {
        let pushed = self.queue.push(item, stats);
        self.flush();
        pushed
    }

    /// Starts closing (see [`SendQueue::close`]) and, on a direct socket, writes what is
    /// left and the close frame now. Returns the number of items dropped.
    pub fn close(&self, code: evd_protocol::CloseCode, flush: bool, stats: &QueueStats) -> usize {
        let dropped = self.queue.close(code, flush, stats);
        self.flush();
        dropped
    }

    /// On a direct socket, writes what is queued (see [`Direct::flush`]); otherwise nothing,
    /// as the push already woke the writer task.
    pub fn flush(&self) {
        if let Some(d) = &self.direct {
            let mut tally = Tally::default();
            self.flush_counted(&mut tally);
            tally.record(d.metrics());
        }
    }

    /// [`Conn::flush`], adding what it wrote to `tally`, which the caller records once for a
    /// run of connections (a broadcast's chunk).
    pub fn flush_counted(&self, tally: &mut Tally) {
        if let Some(d) = &self.direct
            && d.flush(&self.queue, self.codec, &self.writer_done, tally)
        {
            self.start_pump(d);
        }
    }

    /// On a direct socket, writes a frame the WebSocket layer made (see [`Direct::write_raw`]).
    pub fn write_raw(&self, bytes: &[u8]) {
        if let Some(d) = &self.direct
            && d.write_raw(bytes)
        {
            self.start_pump(d);
        }
    }

    /// The connection is over: a direct socket writes nothing more and its pump stops.
    pub fn abandon(&self) {
        if let Some(d) = &self.direct {
            d.abandon();
        }
    }

    /// Starts the task that writes the rest once a full socket drains.
    fn start_pump(&self, d: &Direct) {
        let runtime = tokio::runtime::Handle::try_current();
        match (self.me.upgrade(), runtime) {
            (Some(me), Ok(rt)) => {
                rt.spawn(async move {
                    if let Some(d) = &me.direct {
                        d.pump(&me.queue, me.codec, &me.writer_done).await;
                    }
                });
            }
            // Being dropped, or no runtime: nothing will drain it.
            _ => d.abandon(),
        }
    }

    /// Rooms this connection is in, its `user:` room included.
    pub fn rooms(&self) -> Vec<RoomKey> {
        self.rooms.lock().to_vec()
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
