//! The [`Hub`]: which local connections are in which room, and fanout to them.
//!
//! Rooms are hashed onto shards, each a short-held mutex over its rooms, so joins and
//! broadcasts in different rooms rarely contend. Membership is two indexes kept in step by the
//! methods here: room → connections (in the shard) and connection → rooms (in [`Conn`]).
//!
//! A broadcast is encoded once per wire and codec in use ([`EncodeOnce`]: evd's JSON and
//! MessagePack, Socket.IO's two parsers) and the same bytes are pushed to every member's queue;
//! pushing never waits, so one slow client cannot hold a room back.
//!
//! **Ticks.** Presence changes, poll tallies and question votes are coalesced per room and
//! sent once per tick: see [`tick`].
//!
//! **Joining.** Between adding a member and sending its `ROOM_JOINED` the node reads history;
//! messages published meanwhile are held in the member's join buffer and released by
//! [`Hub::activate`] right after the reply, minus those the reply's history already holds. So a
//! joiner sees every message after its `offset` exactly once, in order.

mod members;
mod stats;
mod tick;

use members::Members;
pub use stats::LocalRooms;
use tick::Changes;
pub use tick::TickWork;

use crate::broker::BrokerHandler;
use crate::conn::direct::Tally;
use crate::conn::queue::{Outbound, Push, QueueStats};
use crate::conn::{Conn, EncodeOnce};
use crate::metrics::Metrics;
use crate::room_key::RoomKey;
use evd_protocol::bus::{Body, Envelope};
use evd_protocol::{CloseCode, Event};
use parking_lot::Mutex;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;

/// Most events held for one member while its join is in flight. A join takes a few
/// milliseconds; a room busier than this in that time has the joiner closed as a slow consumer
/// (it reconnects and recovers).
const JOIN_BUFFER_MAX: usize = 1024;

/// Largest `after_ms` in the `RECONNECT` sent when a room lost continuity: spreads the
/// members' reconnects over a second.
const RESYNC_RECONNECT_MAX_MS: u64 = 1_000;

/// Outbox ids remembered for de-duplication: the relay is at-least-once, and a row relayed
/// twice arrives within seconds of the first copy.
const SEEN_OUTBOX_IDS: usize = 10_000;

/// Local room membership and fanout.
pub struct Hub {
    shards: Box<[Mutex<Shard>]>,
    stats: Arc<QueueStats>,
    /// Shared with the broadcast's chunk tasks: one reference count per chunk, not a clone of
    /// every handle.
    metrics: Arc<Metrics>,
    /// Outbox rows already delivered here, oldest first (bounded by [`SEEN_OUTBOX_IDS`]).
    seen_outbox: Mutex<(HashSet<i64>, VecDeque<i64>)>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shard {
    rooms: HashMap<RoomKey, Room>,
    /// Rooms with changes for the next tick.
    dirty: HashSet<RoomKey>,
}

#[derive(Default)]
struct Room {
    /// Its local members; one inline, as in every connection's own `user:` room.
    members: Members,
    /// Presence, poll and question changes, made on first use. Boxed because every connection
    /// has a room of its own (the user's, for offers) that never has any, and each room sits
    /// inline in its shard's table: this keeps that entry at 56 bytes instead of about 350.
    changes: Option<Box<Changes>>,
    /// Events queued to members since the admin snapshot last looked ([`Hub::take_room_stats`]).
    /// A relaxed atomic: one add per fanout, whatever lock the fanout holds.
    traffic: AtomicU64,
}

impl Room {
    fn changes(&mut self) -> &mut Changes {
        self.changes.get_or_insert_with(Box::default)
    }
}

struct Member {
    conn: Arc<Conn>,
    /// `Some` while the join is in flight: events wait here instead of the queue. Boxed, as it
    /// is `None` for all but a moment, and a room of 10,000 keeps 10,000 members inline.
    #[allow(clippy::box_collection)]
    joining: Option<Box<Vec<Held>>>,
    /// The offset the join reply reported: chat at or below it is already the client's. A
    /// broker filling a gap from history (after a lost subscription) may deliver such messages
    /// again to members who joined meanwhile; this keeps them exactly-once.
    floor: u64,
}

struct Held {
    offset: Option<u64>,
    item: Outbound,
}

/// A broadcast's writes are split into chunks of this many members, written in parallel by the
/// runtime's workers: one thread writing 10,000 sockets takes as long as a message interval at
/// 10/s, and the kernel's share of a write (the loopback or NIC path) is most of its cost.
/// Small chunks, all of them tasks, let a node that falls behind write less often: a chunk that
/// runs late finds the next messages queued too and sends them in the same write (at 100/s to
/// 10,000 this halved the CPU per delivery; 1,024 with the first chunk inline fell behind).
const FLUSH_CHUNK: usize = 256;

/// Writes every connection in `conns`: a room wider than one chunk as chunk tasks any idle
/// worker takes (the publisher's task does none of it), a narrower one on this thread. The
/// chunks share the list.
fn flush_all(conns: Arc<Vec<Arc<Conn>>>, metrics: &Arc<Metrics>) {
    let n = conns.len();
    if n > FLUSH_CHUNK
        && let Ok(rt) = tokio::runtime::Handle::try_current()
    {
        for start in (0..n).step_by(FLUSH_CHUNK) {
            let end = (start + FLUSH_CHUNK).min(n);
            let (conns, metrics) = (Arc::clone(&conns), Arc::clone(metrics));
            rt.spawn(async move { flush_chunk(&conns[start..end], &metrics) });
        }
        return;
    }
    flush_chunk(&conns, metrics);
}

/// Writes a chunk of members, recording the write metrics once for the chunk.
fn flush_chunk(conns: &[Arc<Conn>], metrics: &Metrics) {
    let mut tally = Tally::default();
    for conn in conns {
        conn.flush_counted(&mut tally);
    }
    tally.record(metrics);
}

/// Result of [`Hub::join`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    /// The room had no local member before: subscribe at the broker.
    pub first_local: bool,
    /// The connection was already a member (a repeated join, e.g. to recover).
    pub rejoin: bool,
}

/// Result of [`Hub::leave`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Left {
    /// The room has no local member now: unsubscribe at the broker.
    pub last_local: bool,
}

impl Hub {
    /// A hub with `shards` shards (about cores × 4).
    pub fn new(shards: usize, stats: Arc<QueueStats>, metrics: Metrics) -> Hub {
        Hub {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            stats,
            metrics: Arc::new(metrics),
            seen_outbox: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    fn shard(&self, room: &RoomKey) -> &Mutex<Shard> {
        &self.shards[(room.shard_hash() as usize) % self.shards.len()]
    }

    /// Adds `conn` to `room` in the joining state.
    pub fn join(&self, room: &RoomKey, conn: &Arc<Conn>) -> Joined {
        let mut shard = self.shard(room).lock();
        // The connection keeps the room's own key, not the caller's copy: a room of 100 then
        // holds one key, not 100.
        let (key, r, first_local) = match shard.rooms.entry(room.clone()) {
            Entry::Occupied(e) => (e.key().clone(), e.into_mut(), false),
            Entry::Vacant(e) => (room.clone(), e.insert(Room::default()), true),
        };
        let rejoin = match r.members.get_mut(conn.id) {
            Some(m) => {
                m.joining = Some(Box::default());
                true
            }
            None => {
                r.members.insert(Member {
                    conn: Arc::clone(conn),
                    joining: Some(Box::default()),
                    floor: 0,
                });
                false
            }
        };
        drop(shard);
        if first_local {
            self.metrics.rooms.increment(1.0);
        }
        if !rejoin {
            conn.rooms.lock().push(key);
            self.metrics.joins.increment(1);
        }
        Joined {
            first_local,
            rejoin,
        }
    }

    /// Sends the join reply (if any), then what arrived during the join with offsets after
    /// `after_offset`, and switches the member to live delivery.
    pub fn activate(
        &self,
        room: &RoomKey,
        conn: &Conn,
        reply: Option<Outbound>,
        after_offset: u64,
    ) {
        let mut shard = self.shard(room).lock();
        let held = shard
            .rooms
            .get_mut(room)
            .and_then(|r| r.members.get_mut(conn.id))
            .and_then(|m| {
                m.floor = after_offset;
                m.joining.take()
            });
        // Under the shard lock, so no broadcast can slip between the reply and the held events.
        if let Some(reply) = reply {
            self.push(conn, reply);
        }
        for h in held.into_iter().flat_map(|h| *h) {
            if h.offset.is_none_or(|o| o > after_offset) {
                self.push(conn, h.item);
            }
        }
    }

    /// Removes `conn` from `room`; `None` if it was not a member.
    pub fn leave(&self, room: &RoomKey, conn: &Conn) -> Option<Left> {
        let mut shard = self.shard(room).lock();
        let r = shard.rooms.get_mut(room)?;
        r.members.remove(conn.id)?;
        let last_local = r.members.is_empty();
        if last_local {
            shard.rooms.remove(room);
            shard.dirty.remove(room);
        }
        drop(shard);
        if last_local {
            self.metrics.rooms.decrement(1.0);
        }
        conn.rooms.lock().retain(|k| k != room);
        Some(Left { last_local })
    }

    /// Queues `event` to every member of `room`. `offset` is set for chat messages, so a joining
    /// member's buffer can drop what its history already has.
    pub fn deliver(&self, room: &RoomKey, event: &Event, offset: Option<u64>) {
        self.fan_out(room, EncodeOnce::new(event), offset);
    }

    /// Queues a chat message published at `offset` of `epoch` to every member of `room`.
    pub fn deliver_chat(&self, room: &RoomKey, event: &Event, epoch: &str, offset: u64) {
        self.fan_out(room, EncodeOnce::chat(event, epoch), Some(offset));
    }

    fn fan_out(&self, room: &RoomKey, mut encoded: EncodeOnce<'_>, offset: Option<u64>) {
        let event = encoded.event();
        let now = Instant::now();
        let mut delivered = 0u64;
        let mut shard = self.shard(room).lock();
        let Some(r) = shard.rooms.get_mut(room) else {
            return;
        };
        // Members on direct sockets are written after the lock is let go: the queues hold the
        // order, and joins to the shard's rooms need not wait for the writes. A wide room lists
        // them once for every broadcast until its membership changes (`direct_list`).
        let wide = r.members.len() > FLUSH_CHUNK;
        let mut to_flush: Vec<Arc<Conn>> = Vec::new();
        for member in r.members.values_mut() {
            if member.joining.is_none() && offset.is_some_and(|o| o <= member.floor) {
                continue;
            }
            let item = Outbound {
                payload: encoded.get(&member.conn),
                published_at: Some(now),
            };
            match &mut member.joining {
                Some(held) if held.len() < JOIN_BUFFER_MAX => held.push(Held { offset, item }),
                Some(_) => {
                    self.stats_close(&member.conn, CloseCode::SlowConsumer);
                }
                None => {
                    if self.queue(&member.conn, item) {
                        delivered += 1;
                        if !wide && member.conn.direct.is_some() {
                            to_flush.push(Arc::clone(&member.conn));
                        }
                    }
                }
            }
        }
        r.traffic.fetch_add(delivered, Ordering::Relaxed);
        let to_flush = if wide && delivered > 0 {
            r.members.direct_list()
        } else {
            Arc::new(to_flush)
        };
        drop(shard);
        if !to_flush.is_empty() {
            flush_all(to_flush, &self.metrics);
        }
        self.metrics.deliveries.increment(delivered);
        self.metrics.event_out(event.name(), delivered);
    }

    /// Queues a direct event (a reply) to one connection.
    pub fn send(&self, conn: &Conn, event: &Event) {
        self.send_at(conn, event, None);
    }

    /// Queues a chat message of `epoch` to one connection (a recovery's replay).
    pub fn send_chat(&self, conn: &Conn, event: &Event, epoch: &str) {
        self.send_at(conn, event, Some(epoch));
    }

    fn send_at(&self, conn: &Conn, event: &Event, epoch: Option<&str>) {
        let item = Outbound {
            payload: crate::conn::encode_at(conn.wire, conn.codec, event, epoch),
            published_at: None,
        };
        if self.push(conn, item) {
            self.metrics.event_out(event.name(), 1);
        }
    }

    /// Pushes to a queue, writes it on a direct socket, and accounts for a slow consumer; true
    /// if queued.
    fn push(&self, conn: &Conn, item: Outbound) -> bool {
        let queued = self.queue(conn, item);
        conn.flush();
        queued
    }

    /// Pushes to a queue without writing, and accounts for a slow consumer; true if queued.
    fn queue(&self, conn: &Conn, item: Outbound) -> bool {
        match conn.queue.push(item, &self.stats) {
            Push::Queued => true,
            Push::Overflow { dropped } => {
                self.metrics.slow_consumer_closes.increment(1);
                self.metrics.queue_drops.increment(dropped as u64);
                tracing::info!(conn = conn.id, user = %conn.user, "slow consumer closed (4008)");
                false
            }
            Push::Closed => false,
        }
    }

    fn stats_close(&self, conn: &Conn, code: CloseCode) {
        let dropped = conn.close(code, false, &self.stats);
        if code == CloseCode::SlowConsumer {
            self.metrics.slow_consumer_closes.increment(1);
            self.metrics.queue_drops.increment(dropped as u64);
        }
    }

    /// True the first time an outbox id is seen (recently).
    fn first_sight(&self, outbox_id: i64) -> bool {
        let mut seen = self.seen_outbox.lock();
        let (set, order) = &mut *seen;
        if !set.insert(outbox_id) {
            return false;
        }
        order.push_back(outbox_id);
        if order.len() > SEEN_OUTBOX_IDS
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }

    /// Local members of `room`.
    pub fn members(&self, room: &RoomKey) -> usize {
        self.shard(room)
            .lock()
            .rooms
            .get(room)
            .map_or(0, |r| r.members.len())
    }

    /// The local members of `room` (for a `user:` room, that user's connections here).
    pub fn local_conns(&self, room: &RoomKey) -> Vec<Arc<Conn>> {
        self.shard(room)
            .lock()
            .rooms
            .get(room)
            .map(|r| r.members.values().map(|m| Arc::clone(&m.conn)).collect())
            .unwrap_or_default()
    }

    /// Rooms with a local member.
    pub fn rooms(&self) -> usize {
        self.shards.iter().map(|s| s.lock().rooms.len()).sum()
    }
}

impl BrokerHandler for Hub {
    fn handle(&self, room: &RoomKey, envelope: &Envelope) {
        match &envelope.body {
            Body::Chat { epoch, message } => {
                let offset = message.offset;
                let event = Event::MessageReceived(message.clone());
                self.deliver_chat(room, &event, epoch, offset);
            }
            Body::Presence { joins, leaves } => self.record_presence(room, joins, leaves),
            Body::Event { event, outbox_id } => {
                if outbox_id.is_none_or(|id| self.first_sight(id)) {
                    self.deliver(room, event, None);
                }
            }
            Body::PollTally { poll, counts } => self.record_poll(room, poll, counts),
            Body::QuestionVotes { question, votes } => self.record_question(room, question, *votes),
        }
    }

    /// Asks every local member of `room` to reconnect (`RECONNECT`, then 4001 once the queue
    /// has flushed): their rejoin with `recover` gets the gap or `recovered:false`.
    fn lost(&self, room: &RoomKey) {
        let members: Vec<Arc<Conn>> = self
            .shard(room)
            .lock()
            .rooms
            .get(room)
            .map(|r| r.members.values().map(|m| Arc::clone(&m.conn)).collect())
            .unwrap_or_default();
        tracing::info!(
            ?room,
            members = members.len(),
            "room lost continuity; members reconnect"
        );
        for conn in members {
            let after_ms = fastrand::u64(0..=RESYNC_RECONNECT_MAX_MS);
            self.send(
                &conn,
                &Event::Reconnect(evd_protocol::event::Reconnect {
                    after_ms,
                    reason: "resync".into(),
                }),
            );
            conn.close(CloseCode::ShuttingDown, true, &self.stats);
        }
    }
}

#[cfg(test)]
mod tests;
