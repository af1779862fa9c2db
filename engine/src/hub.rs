//! The [`Hub`]: which local connections are in which room, and fanout to them.
//!
//! Rooms are hashed onto shards, each a short-held mutex over its rooms, so joins and
//! broadcasts in different rooms rarely contend. Membership is two indexes kept in step by the
//! methods here: room → connections (in the shard) and connection → rooms (in [`Conn`]).
//!
//! A broadcast is encoded once per codec in use ([`EncodeOnce`]) and the same bytes are pushed
//! to every member's queue; pushing never waits, so one slow client cannot hold a room back.
//!
//! **Ticks.** Presence changes, poll tallies and question votes are not sent when they arrive:
//! they accumulate per room and [`Hub::take_tick`] hands each changed room's net state to the
//! node's tick, which sends one `PRESENCE_UPDATE`, `POLL_RESULTS` or `QUESTION_UPDATED` per room
//! and item per tick. Tallies are absolute counts merged by maximum, so the order and number of
//! copies in which they arrive from other nodes do not matter.
//!
//! **Joining.** Between adding a member and sending its `ROOM_JOINED` the node reads history;
//! messages published meanwhile are held in the member's join buffer and released by
//! [`Hub::activate`] right after the reply, minus those the reply's history already holds. So a
//! joiner sees every message after its `offset` exactly once, in order.

use crate::broker::BrokerHandler;
use crate::conn::queue::{Outbound, Push, QueueStats};
use crate::conn::{Conn, ConnId, EncodeOnce};
use crate::metrics::Metrics;
use crate::room_key::RoomKey;
use evd_protocol::bus::{Body, Envelope};
use evd_protocol::event::PresenceMember;
use evd_protocol::{CloseCode, Event};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
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
    metrics: Metrics,
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
    members: HashMap<ConnId, Member>,
    /// Presence, poll and question changes, made on first use. Boxed because every connection
    /// has a room of its own (the user's, for offers) that never has any, and each room sits
    /// inline in its shard's table: this keeps that entry at 56 bytes instead of about 350.
    changes: Option<Box<Changes>>,
}

impl Room {
    fn changes(&mut self) -> &mut Changes {
        self.changes.get_or_insert_with(Box::default)
    }
}

#[derive(Default)]
struct Changes {
    /// Net presence change per user since the last tick: +1 joined, -1 left.
    presence_diff: HashMap<String, i32>,
    /// Latest known counts per poll, kept while the room has local members so a late or
    /// duplicate tally can never make them go back.
    polls: HashMap<String, BTreeMap<String, u64>>,
    /// Polls whose counts changed since the last tick.
    polls_dirty: HashSet<String>,
    /// Latest known upvotes per question.
    questions: HashMap<String, u64>,
    /// Questions whose votes changed since the last tick.
    questions_dirty: HashSet<String>,
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

/// One room's coalesced changes since the last tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickWork {
    /// The room.
    pub room: RoomKey,
    /// Users who joined.
    pub joins: Vec<PresenceMember>,
    /// Users who left.
    pub leaves: Vec<PresenceMember>,
    /// Polls whose counts changed, with their counts.
    pub polls: Vec<(String, BTreeMap<String, u64>)>,
    /// Questions whose votes changed, with their votes.
    pub questions: Vec<(String, u64)>,
}

impl TickWork {
    /// True when presence changed.
    pub fn presence_changed(&self) -> bool {
        !self.joins.is_empty() || !self.leaves.is_empty()
    }
}

impl Hub {
    /// A hub with `shards` shards (about cores × 4).
    pub fn new(shards: usize, stats: Arc<QueueStats>, metrics: Metrics) -> Hub {
        Hub {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            stats,
            metrics,
            seen_outbox: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    fn shard(&self, room: &RoomKey) -> &Mutex<Shard> {
        &self.shards[(room.shard_hash() as usize) % self.shards.len()]
    }

    /// Adds `conn` to `room` in the joining state.
    pub fn join(&self, room: &RoomKey, conn: &Arc<Conn>) -> Joined {
        let mut shard = self.shard(room).lock();
        let first_local = !shard.rooms.contains_key(room);
        let r = shard.rooms.entry(room.clone()).or_default();
        let rejoin = match r.members.get_mut(&conn.id) {
            Some(m) => {
                m.joining = Some(Box::default());
                true
            }
            None => {
                r.members.insert(
                    conn.id,
                    Member {
                        conn: Arc::clone(conn),
                        joining: Some(Box::default()),
                        floor: 0,
                    },
                );
                false
            }
        };
        drop(shard);
        if first_local {
            self.metrics.rooms.increment(1.0);
        }
        if !rejoin {
            conn.rooms.lock().push(room.clone());
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
            .and_then(|r| r.members.get_mut(&conn.id))
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
        r.members.remove(&conn.id)?;
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
        let now = Instant::now();
        let mut encoded = EncodeOnce::new(event);
        let mut delivered = 0u64;
        let mut shard = self.shard(room).lock();
        let Some(r) = shard.rooms.get_mut(room) else {
            return;
        };
        for member in r.members.values_mut() {
            if member.joining.is_none() && offset.is_some_and(|o| o <= member.floor) {
                continue;
            }
            let item = Outbound {
                payload: encoded.get(member.conn.codec),
                published_at: Some(now),
            };
            match &mut member.joining {
                Some(held) if held.len() < JOIN_BUFFER_MAX => held.push(Held { offset, item }),
                Some(_) => {
                    self.stats_close(&member.conn, CloseCode::SlowConsumer);
                }
                None => {
                    if self.push(&member.conn, item) {
                        delivered += 1;
                    }
                }
            }
        }
        drop(shard);
        self.metrics.deliveries.increment(delivered);
        self.metrics.event_out(event.name(), delivered);
    }

    /// Queues a direct event (a reply) to one connection.
    pub fn send(&self, conn: &Conn, event: &Event) {
        let item = Outbound {
            payload: crate::conn::encode(conn.codec, event),
            published_at: None,
        };
        if self.push(conn, item) {
            self.metrics.event_out(event.name(), 1);
        }
    }

    /// Pushes to a queue and accounts for a slow consumer; true if queued.
    fn push(&self, conn: &Conn, item: Outbound) -> bool {
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
        let dropped = conn.queue.close(code, false, &self.stats);
        if code == CloseCode::SlowConsumer {
            self.metrics.slow_consumer_closes.increment(1);
            self.metrics.queue_drops.increment(dropped as u64);
        }
    }

    /// Records presence changes from the broker, to be sent on the next tick.
    fn record_presence(&self, room: &RoomKey, joins: &[PresenceMember], leaves: &[PresenceMember]) {
        self.with_room(room, |r| {
            let r = r.changes();
            for m in joins {
                *r.presence_diff.entry(m.user.clone()).or_default() += 1;
            }
            for m in leaves {
                *r.presence_diff.entry(m.user.clone()).or_default() -= 1;
            }
            true
        });
    }

    /// Merges a poll tally (per option, the larger count wins).
    fn record_poll(&self, room: &RoomKey, poll: &str, counts: &BTreeMap<String, u64>) {
        self.with_room(room, |r| {
            let r = r.changes();
            let known = r.polls.entry(poll.to_owned()).or_default();
            let mut changed = false;
            for (option, &n) in counts {
                let slot = known.entry(option.clone()).or_default();
                if n > *slot {
                    *slot = n;
                    changed = true;
                }
            }
            if changed {
                r.polls_dirty.insert(poll.to_owned());
            }
            changed
        });
    }

    /// Merges a question's upvotes (the larger count wins).
    fn record_question(&self, room: &RoomKey, question: &str, votes: u64) {
        self.with_room(room, |r| {
            let r = r.changes();
            let slot = r.questions.entry(question.to_owned()).or_default();
            if votes > *slot {
                *slot = votes;
                r.questions_dirty.insert(question.to_owned());
                return true;
            }
            false
        });
    }

    /// Runs `f` on `room` if it has local members; marks it for the next tick when `f` says it
    /// changed something.
    fn with_room(&self, room: &RoomKey, f: impl FnOnce(&mut Room) -> bool) {
        let mut shard = self.shard(room).lock();
        let Some(r) = shard.rooms.get_mut(room) else {
            return;
        };
        if f(r) {
            shard.dirty.insert(room.clone());
        }
    }

    /// Takes every room's coalesced changes since the last call. Presence changes that cancel
    /// out (a quick leave and rejoin) are dropped.
    pub fn take_tick(&self) -> Vec<TickWork> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let Shard { rooms, dirty } = &mut *shard;
            for room in dirty.drain() {
                let Some(r) = rooms.get_mut(&room).and_then(|r| r.changes.as_deref_mut()) else {
                    continue;
                };
                let mut work = TickWork {
                    room,
                    joins: Vec::new(),
                    leaves: Vec::new(),
                    polls: Vec::new(),
                    questions: Vec::new(),
                };
                for (user, n) in r.presence_diff.drain() {
                    match n {
                        1.. => work.joins.push(PresenceMember { user }),
                        ..0 => work.leaves.push(PresenceMember { user }),
                        0 => {}
                    }
                }
                work.joins.sort();
                work.leaves.sort();
                for poll in r.polls_dirty.drain() {
                    if let Some(counts) = r.polls.get(&poll) {
                        work.polls.push((poll, counts.clone()));
                    }
                }
                for q in r.questions_dirty.drain() {
                    if let Some(&votes) = r.questions.get(&q) {
                        work.questions.push((q, votes));
                    }
                }
                if work.presence_changed() || !work.polls.is_empty() || !work.questions.is_empty() {
                    out.push(work);
                }
            }
        }
        out
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

    /// Rooms with a local member.
    pub fn rooms(&self) -> usize {
        self.shards.iter().map(|s| s.lock().rooms.len()).sum()
    }
}

impl BrokerHandler for Hub {
    fn handle(&self, room: &RoomKey, envelope: &Envelope) {
        match &envelope.body {
            Body::Chat { message, .. } => {
                let offset = message.offset;
                self.deliver(room, &Event::MessageReceived(message.clone()), Some(offset));
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
            conn.queue.close(CloseCode::ShuttingDown, true, &self.stats);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evd_protocol::event::{ChatMessage, Pong};
    use evd_protocol::{Codec, RoomName};

    fn hub() -> Hub {
        Hub::new(4, Arc::new(QueueStats::default()), Metrics::new())
    }

    fn conn(id: u64, codec: Codec) -> Arc<Conn> {
        Arc::new(Conn::new(id, format!("u{id}").into(), codec, 1 << 20))
    }

    fn key(room: &str) -> RoomKey {
        RoomKey::new("o1", RoomName::parse(room).unwrap())
    }

    fn chat(offset: u64) -> Event {
        Event::MessageReceived(ChatMessage {
            room: "session:S1".into(),
            offset,
            id: offset.to_string(),
            user: "u".into(),
            text: "t".into(),
            ts: 0,
        })
    }

    fn drain(h: &Hub, c: &Conn) -> Vec<Event> {
        let t = c.queue.take(usize::MAX, &h.stats);
        t.items
            .into_iter()
            .flat_map(|o| match o.payload {
                crate::conn::queue::Payload::Text(t) => {
                    c.codec.decode_events(t.as_bytes()).unwrap()
                }
                crate::conn::queue::Payload::Binary(b) => c.codec.decode_events(&b).unwrap(),
            })
            .collect()
    }

    fn reply() -> Event {
        Event::Pong(Pong { r#ref: Some(1) })
    }

    #[test]
    fn both_indexes_agree_and_first_last_are_reported() {
        let h = hub();
        let (a, b) = (conn(1, Codec::Json), conn(2, Codec::MsgPack));
        let r = key("session:S1");
        assert_eq!(
            h.join(&r, &a),
            Joined {
                first_local: true,
                rejoin: false
            }
        );
        assert_eq!(
            h.join(&r, &b),
            Joined {
                first_local: false,
                rejoin: false
            }
        );
        assert_eq!(
            h.join(&r, &a),
            Joined {
                first_local: false,
                rejoin: true
            }
        );
        assert_eq!(a.rooms(), vec![r.clone()]);
        assert_eq!(h.members(&r), 2);
        assert_eq!(h.leave(&r, &a), Some(Left { last_local: false }));
        assert_eq!(h.leave(&r, &a), None);
        assert!(a.rooms().is_empty());
        assert_eq!(h.leave(&r, &b), Some(Left { last_local: true }));
        assert_eq!(h.rooms(), 0);
    }

    #[test]
    fn joining_members_get_the_reply_first_then_only_newer_messages() {
        let h = hub();
        let (a, b) = (conn(1, Codec::Json), conn(2, Codec::MsgPack));
        let r = key("session:S1");
        h.join(&r, &a);
        h.activate(
            &r,
            &a,
            Some(Outbound {
                payload: crate::conn::encode(a.codec, &reply()),
                published_at: None,
            }),
            0,
        );
        drain(&h, &a);
        h.join(&r, &b);
        h.deliver(&r, &chat(1), Some(1)); // before b's history read: in its history
        h.deliver(&r, &chat(2), Some(2)); // after it: must follow the reply
        assert!(
            drain(&h, &b).is_empty(),
            "nothing reaches a joining member's queue"
        );
        h.activate(
            &r,
            &b,
            Some(Outbound {
                payload: crate::conn::encode(b.codec, &reply()),
                published_at: None,
            }),
            1,
        );
        let got = drain(&h, &b);
        assert_eq!(got, vec![reply(), chat(2)]);
        assert_eq!(
            drain(&h, &a),
            vec![chat(1), chat(2)],
            "active members get everything, in order"
        );
        // A member that joined at offset 3 while the broker's subscription was down: the
        // broker's gap fill later delivers 3 (new to the others) and 4; it gets only 4.
        let c = conn(3, Codec::Json);
        h.join(&r, &c);
        h.activate(&r, &c, None, 3);
        h.deliver(&r, &chat(3), Some(3));
        h.deliver(&r, &chat(4), Some(4));
        assert_eq!(
            drain(&h, &c),
            vec![chat(4)],
            "nothing at or below its join offset"
        );
    }

    #[test]
    fn rooms_and_members_stay_small_inline() {
        // Every connection has its own user room, so a room's entry in its shard's table is
        // paid per connection, and a member's per member of every room. The rarely used state
        // lives behind boxes; this keeps it there.
        assert!(
            std::mem::size_of::<Room>() <= 56,
            "{}",
            std::mem::size_of::<Room>()
        );
        assert!(
            std::mem::size_of::<Member>() <= 24,
            "{}",
            std::mem::size_of::<Member>()
        );
    }

    #[test]
    fn presence_diffs_coalesce_and_cancel() {
        let h = hub();
        let a = conn(1, Codec::Json);
        let r = key("event:E1");
        h.join(&r, &a);
        let m = |u: &str| PresenceMember { user: u.into() };
        h.record_presence(&r, &[m("u1"), m("u2")], &[]);
        h.record_presence(&r, &[], &[m("u2"), m("u3")]);
        let work = h.take_tick();
        assert_eq!(work.len(), 1);
        assert_eq!(
            (work[0].joins.clone(), work[0].leaves.clone()),
            (vec![m("u1")], vec![m("u3")])
        );
        assert!(h.take_tick().is_empty());
        h.record_presence(&key("event:nobody-here"), &[m("u1")], &[]);
        assert!(
            h.take_tick().is_empty(),
            "rooms without local members are ignored"
        );
        h.record_presence(&r, &[m("u4")], &[m("u4")]);
        assert!(
            h.take_tick().is_empty(),
            "a change that cancels out is not sent"
        );
    }

    #[test]
    fn tallies_merge_by_maximum_and_coalesce_per_tick() {
        let h = hub();
        let a = conn(1, Codec::Json);
        let r = key("session:S1");
        h.join(&r, &a);
        let counts = |a: u64, b: u64| BTreeMap::from([("a".to_string(), a), ("b".to_string(), b)]);
        h.record_poll(&r, "p1", &counts(3, 1));
        h.record_poll(&r, "p1", &counts(5, 1));
        h.record_poll(&r, "p1", &counts(4, 2)); // a late copy for a, newer for b
        h.record_question(&r, "q1", 2);
        h.record_question(&r, "q1", 1);
        let work = h.take_tick();
        assert_eq!(work.len(), 1);
        assert_eq!(work[0].polls, vec![("p1".to_string(), counts(5, 2))]);
        assert_eq!(work[0].questions, vec![("q1".to_string(), 2)]);
        h.record_poll(&r, "p1", &counts(5, 2));
        h.record_question(&r, "q1", 2);
        assert!(h.take_tick().is_empty(), "nothing new, nothing sent");
    }

    #[test]
    fn relayed_outbox_rows_are_delivered_once() {
        let h = hub();
        let a = conn(1, Codec::Json);
        let r = key("session:S1");
        h.join(&r, &a);
        h.activate(&r, &a, None, 0);
        let ev = Event::Pong(Pong { r#ref: None });
        let env = |id| Envelope {
            node: "n".into(),
            body: Body::Event {
                event: ev.clone(),
                outbox_id: Some(id),
            },
        };
        h.handle(&r, &env(7));
        h.handle(&r, &env(7));
        h.handle(&r, &env(8));
        assert_eq!(drain(&h, &a).len(), 2);
    }
}
