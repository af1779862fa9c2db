//! The in-process broker: a single node's rooms, history windows and idempotency keys.
//!
//! Publishing holds the room's shard lock while it assigns the offset and hands the envelope to
//! the handler, so every member sees a room's messages in offset order. The handler only
//! enqueues (it never awaits), which keeps that lock short.
//!
//! Over 450 lines only with its unit tests (the last 170).

use super::{
    Broker, BrokerError, BrokerHandler, History, HistoryRequest, NewMessage, Original, Published,
};
use super::{MIN_IDEMPOTENCY_TTL, new_epoch};
use crate::room_key::RoomKey;
use crate::settings::HistorySettings;
use crate::shutdown::Shutdown;
use async_trait::async_trait;
use evd_protocol::bus::{Body, Envelope};
use evd_protocol::event::ChatMessage;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Shards of the room map; a power of two well above the core count so publishes to different
/// rooms rarely share a lock.
const SHARDS: usize = 64;

/// How often expired messages and idle rooms are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The single-node broker.
pub struct MemoryBroker {
    node: String,
    shards: Box<[Mutex<Shard>]>,
    handler: Arc<dyn BrokerHandler>,
    opts: HistorySettings,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shard {
    streams: HashMap<RoomKey, Stream>,
    /// Rooms this node has members in; their streams are never swept, so a live room's epoch
    /// does not change under its members.
    subscribed: HashSet<RoomKey>,
}

impl Shard {
    /// `room`'s stream, created if missing, pruned to the window at `now`.
    fn stream(&mut self, room: &RoomKey, now: Instant, opts: &HistorySettings) -> &mut Stream {
        let stream = self
            .streams
            .entry(room.clone())
            .or_insert_with(|| Stream::new(now));
        stream.prune(now, opts);
        stream
    }
}

/// One room's position, window and idempotency keys.
struct Stream {
    epoch: String,
    offset: u64,
    messages: VecDeque<(ChatMessage, Instant)>,
    /// `(user, client_id)` → the offset, the original and when it was published.
    idempotency: HashMap<(String, String), (u64, Original, Instant)>,
    idempotency_order: VecDeque<((String, String), Instant)>,
    last_active: Instant,
}

impl Stream {
    fn new(now: Instant) -> Stream {
        Stream {
            epoch: new_epoch(),
            offset: 0,
            messages: VecDeque::new(),
            idempotency: HashMap::new(),
            idempotency_order: VecDeque::new(),
            last_active: now,
        }
    }

    fn prune(&mut self, now: Instant, opts: &HistorySettings) {
        let ttl = Duration::from_secs(opts.ttl_secs);
        while self
            .messages
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) > ttl)
        {
            self.messages.pop_front();
        }
        while self.messages.len() > opts.size {
            self.messages.pop_front();
        }
        let idem_ttl = ttl.max(MIN_IDEMPOTENCY_TTL);
        while let Some((key, at)) = self.idempotency_order.front() {
            let expired = now.duration_since(*at) > idem_ttl;
            if !expired && self.idempotency_order.len() <= opts.idempotency_max_keys {
                break;
            }
            if self
                .idempotency
                .get(key)
                .is_some_and(|(_, _, seen)| seen == at)
            {
                self.idempotency.remove(key);
            }
            self.idempotency_order.pop_front();
        }
    }

    /// The oldest offset still held, or `offset + 1` when the window is empty.
    fn first_held(&self) -> u64 {
        self.messages
            .front()
            .map_or(self.offset + 1, |(m, _)| m.offset)
    }
}

impl MemoryBroker {
    /// A broker delivering to `handler`. Call [`MemoryBroker::spawn_sweeper`] to bound memory
    /// over time.
    pub fn new(
        node: &str,
        opts: HistorySettings,
        handler: Arc<dyn BrokerHandler>,
    ) -> Arc<MemoryBroker> {
        Arc::new(MemoryBroker {
            node: node.to_owned(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            handler,
            opts,
        })
    }

    /// Periodically drops expired messages and idle unsubscribed rooms.
    pub fn spawn_sweeper(self: &Arc<Self>, shutdown: &Shutdown) {
        let me = Arc::clone(self);
        let stopped = shutdown.stopped();
        shutdown.spawn(async move {
            tokio::pin!(stopped);
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => me.sweep(Instant::now()),
                }
            }
        });
    }

    /// One sweep pass.
    pub fn sweep(&self, now: Instant) {
        let meta_ttl = Duration::from_secs(self.opts.meta_ttl_secs);
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let Shard {
                streams,
                subscribed,
            } = &mut *shard;
            streams.retain(|key, stream| {
                stream.prune(now, &self.opts);
                subscribed.contains(key) || now.duration_since(stream.last_active) <= meta_ttl
            });
        }
    }

    /// Rooms with a stream (for tests and metrics).
    pub fn rooms(&self) -> usize {
        self.shards.iter().map(|s| s.lock().streams.len()).sum()
    }

    fn shard(&self, room: &RoomKey) -> &Mutex<Shard> {
        &self.shards[(room.shard_hash() as usize) % SHARDS]
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, room: &RoomKey, msg: NewMessage) -> Result<Published, BrokerError> {
        let now = Instant::now();
        let mut shard = self.shard(room).lock();
        let stream = shard.stream(room, now, &self.opts);
        stream.last_active = now;
        let idem_key = msg.client_id.map(|c| (msg.user.clone(), c));
        if let Some(key) = &idem_key
            && let Some((offset, original, _)) = stream.idempotency.get(key)
        {
            return Ok(Published {
                epoch: stream.epoch.clone(),
                offset: *offset,
                duplicate: true,
                original: Some(original.clone()),
            });
        }
        stream.offset += 1;
        let message = ChatMessage {
            room: room.room().to_string(),
            offset: stream.offset,
            id: msg.id,
            user: msg.user,
            text: msg.text,
            ts: msg.ts,
        };
        if let Some(key) = idem_key {
            let original = Original {
                id: message.id.clone(),
                ts: message.ts,
            };
            stream
                .idempotency
                .insert(key.clone(), (stream.offset, original, now));
            stream.idempotency_order.push_back((key, now));
        }
        stream.messages.push_back((message.clone(), now));
        stream.prune(now, &self.opts);
        let published = Published {
            epoch: stream.epoch.clone(),
            offset: stream.offset,
            duplicate: false,
            original: None,
        };
        let envelope = Envelope {
            node: self.node.clone(),
            body: Body::Chat {
                epoch: published.epoch.clone(),
                message,
            },
        };
        // Delivered under the lock: offsets reach the hub in order.
        self.handler.handle(room, &envelope);
        Ok(published)
    }

    async fn broadcast(&self, room: &RoomKey, body: Body) -> Result<(), BrokerError> {
        let envelope = Envelope {
            node: self.node.clone(),
            body,
        };
        let _order = self.shard(room).lock();
        self.handler.handle(room, &envelope);
        Ok(())
    }

    async fn history(&self, room: &RoomKey, req: HistoryRequest) -> Result<History, BrokerError> {
        let now = Instant::now();
        let mut shard = self.shard(room).lock();
        let stream = shard.stream(room, now, &self.opts);
        let mut h = History {
            epoch: stream.epoch.clone(),
            offset: stream.offset,
            messages: Vec::new(),
            complete: true,
        };
        match req {
            HistoryRequest::Latest(n) => {
                let skip = stream.messages.len().saturating_sub(n);
                h.messages = stream
                    .messages
                    .iter()
                    .skip(skip)
                    .map(|(m, _)| m.clone())
                    .collect();
            }
            HistoryRequest::Since(pos) => {
                h.complete = pos.epoch == stream.epoch
                    && pos.offset <= stream.offset
                    && stream.first_held() <= pos.offset + 1;
                if h.complete {
                    h.messages = stream
                        .messages
                        .iter()
                        .filter(|(m, _)| m.offset > pos.offset)
                        .map(|(m, _)| m.clone())
                        .collect();
                }
            }
        }
        Ok(h)
    }

    async fn subscribe(&self, room: &RoomKey) -> Result<(), BrokerError> {
        self.shard(room).lock().subscribed.insert(room.clone());
        Ok(())
    }

    async fn unsubscribe(&self, room: &RoomKey) -> Result<(), BrokerError> {
        let mut shard = self.shard(room).lock();
        shard.subscribed.remove(room);
        if let Some(stream) = shard.streams.get_mut(room) {
            // The idle clock starts when the last member leaves.
            stream.last_active = Instant::now();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evd_protocol::RoomName;
    use evd_protocol::op::StreamPosition;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(RoomKey, Envelope)>>);
    impl BrokerHandler for Recorder {
        fn handle(&self, room: &RoomKey, envelope: &Envelope) {
            self.0.lock().push((room.clone(), envelope.clone()));
        }
    }

    fn key(org: &str, room: &str) -> RoomKey {
        RoomKey::new(org, RoomName::parse(room).unwrap())
    }

    fn msg(text: &str, client_id: Option<&str>) -> NewMessage {
        NewMessage {
            id: format!("id-{text}"),
            user: "u1".into(),
            text: text.into(),
            ts: 0,
            client_id: client_id.map(str::to_owned),
        }
    }

    fn opts(size: usize, ttl_secs: u64) -> HistorySettings {
        HistorySettings {
            size,
            ttl_secs,
            meta_ttl_secs: ttl_secs * 10,
            idempotency_max_keys: 1000,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn offsets_increase_and_history_is_bounded_by_count() {
        let rec = Arc::new(Recorder::default());
        let b = MemoryBroker::new("n1", opts(3, 60), rec.clone());
        let r = key("o1", "session:S1");
        for i in 1..=5 {
            let p = b.publish(&r, msg(&i.to_string(), None)).await.unwrap();
            assert_eq!(p.offset, i);
        }
        assert_eq!(rec.0.lock().len(), 5);
        let h = b.history(&r, HistoryRequest::Latest(10)).await.unwrap();
        assert_eq!(
            h.messages.iter().map(|m| m.offset).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(h.offset, 5);
        let since = |offset| {
            HistoryRequest::Since(StreamPosition {
                epoch: h.epoch.clone(),
                offset,
            })
        };
        let ok = b.history(&r, since(2)).await.unwrap();
        assert!(ok.complete);
        assert_eq!(
            ok.messages.iter().map(|m| m.offset).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert!(
            !b.history(&r, since(1)).await.unwrap().complete,
            "offset 2 is gone"
        );
        let none = b.history(&r, since(5)).await.unwrap();
        assert!(none.complete && none.messages.is_empty());
        assert!(
            !b.history(&r, since(6)).await.unwrap().complete,
            "a future offset cannot be recovered"
        );
        let other_epoch = HistoryRequest::Since(StreamPosition {
            epoch: "nope".into(),
            offset: 4,
        });
        assert!(!b.history(&r, other_epoch).await.unwrap().complete);
    }

    #[tokio::test(start_paused = true)]
    async fn history_expires_by_age() {
        let b = MemoryBroker::new("n1", opts(100, 10), Arc::new(Recorder::default()));
        let r = key("o1", "session:S1");
        b.publish(&r, msg("old", None)).await.unwrap();
        tokio::time::advance(Duration::from_secs(11)).await;
        b.publish(&r, msg("new", None)).await.unwrap();
        let h = b.history(&r, HistoryRequest::Latest(10)).await.unwrap();
        assert_eq!(
            h.messages
                .iter()
                .map(|m| m.text.as_str())
                .collect::<Vec<_>>(),
            vec!["new"]
        );
        let pos = StreamPosition {
            epoch: h.epoch,
            offset: 0,
        };
        assert!(
            !b.history(&r, HistoryRequest::Since(pos))
                .await
                .unwrap()
                .complete
        );
    }

    #[tokio::test(start_paused = true)]
    async fn client_id_is_idempotent_for_at_least_five_minutes() {
        let rec = Arc::new(Recorder::default());
        let b = MemoryBroker::new("n1", opts(1, 10), rec.clone());
        let r = key("o1", "session:S1");
        let first = b.publish(&r, msg("a", Some("c1"))).await.unwrap();
        b.publish(&r, msg("b", None)).await.unwrap(); // pushes "a" out of the window
        tokio::time::advance(Duration::from_secs(299)).await;
        let again = b.publish(&r, msg("a", Some("c1"))).await.unwrap();
        assert!(again.duplicate);
        assert_eq!(again.offset, first.offset);
        assert_eq!(rec.0.lock().len(), 2, "a duplicate is not broadcast");
        let other_user = NewMessage {
            user: "u2".into(),
            ..msg("a", Some("c1"))
        };
        assert!(
            !b.publish(&r, other_user).await.unwrap().duplicate,
            "keys are per user"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!b.publish(&r, msg("a", Some("c1"))).await.unwrap().duplicate);
    }

    #[tokio::test(start_paused = true)]
    async fn rooms_are_per_org_and_idle_rooms_get_a_new_epoch() {
        let b = MemoryBroker::new("n1", opts(10, 10), Arc::new(Recorder::default()));
        let a = key("A", "session:S1");
        let bb = key("B", "session:S1");
        b.publish(&a, msg("x", None)).await.unwrap();
        assert_eq!(
            b.history(&bb, HistoryRequest::Latest(10))
                .await
                .unwrap()
                .messages
                .len(),
            0
        );
        let epoch = b
            .history(&a, HistoryRequest::Latest(0))
            .await
            .unwrap()
            .epoch;
        b.subscribe(&a).await.unwrap();
        tokio::time::advance(Duration::from_secs(1000)).await;
        b.sweep(Instant::now());
        assert_eq!(
            b.history(&a, HistoryRequest::Latest(0))
                .await
                .unwrap()
                .epoch,
            epoch,
            "subscribed rooms keep their epoch"
        );
        b.unsubscribe(&a).await.unwrap();
        tokio::time::advance(Duration::from_secs(101)).await;
        b.sweep(Instant::now());
        let h = b.history(&a, HistoryRequest::Latest(0)).await.unwrap();
        assert_ne!(h.epoch, epoch);
        assert_eq!(h.offset, 0);
    }
}
