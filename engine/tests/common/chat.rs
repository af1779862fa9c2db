//! Chat through a fault: room members that reconnect and recover on their own, a sender that
//! resends each message (same `client_id`) until it is acknowledged, and the check that nothing
//! acknowledged was lost silently.
//!
//! A member checks as it goes that within an epoch offsets only ever go up by one (in order,
//! exactly once, no gap); a `recovered:false` rejoin is the one declared gap, and from then on
//! it must have every message acknowledged after it.
#![allow(dead_code, unreachable_pub)]

use super::{Client, PATIENCE, jwt, now, room};
use evd_protocol::Codec;
use evd_protocol::auth::{Claims, Role};
use evd_protocol::event::Event;
use evd_protocol::op::{JoinRoom, Op, SendMessage, StreamPosition};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub type Shared<T> = Arc<parking_lot::Mutex<T>>;

/// An organizer's token for `user` in `org`, signed as the test nodes verify.
pub fn organizer_token(user: &str, org: &str) -> String {
    let claims = Claims::new(user, org, Role::Organizer, now(), 3600);
    jwt().signer().unwrap().sign(&claims).unwrap()
}

/// Connects as an organizer of `org`, or `None` if the node is gone, refuses, or drops the
/// connection.
pub async fn try_connect_as(url: &str, user: &str, org: &str) -> Option<Client> {
    Client::connect_opt(url, &organizer_token(user, org), Codec::Json).await
}

/// Sends `op` and waits (at most [`PATIENCE`]) for its reply; `Err` if the connection closes
/// or nothing answers in time.
pub async fn request(client: &mut Client, op: Op) -> Result<Event, ()> {
    let r = client.send(op).await;
    let deadline = Instant::now() + PATIENCE;
    let mut kept = Vec::new();
    let out = loop {
        if Instant::now() > deadline {
            break Err(());
        }
        match client.next_or_close(Duration::from_millis(100)).await {
            Ok(Some(e)) if e.reply_ref() == Some(r) => break Ok(e),
            Ok(Some(e)) => kept.push(e),
            Ok(None) => {}
            Err(_) => break Err(()),
        }
    };
    client.push_front(kept);
    out
}

/// What a member has received so far, readable while it runs.
#[derive(Default)]
pub struct Progress {
    pub got: BTreeSet<String>,
    /// When it last rejoined with `recovered:false`.
    pub lost_at: Option<Instant>,
}

/// A room member that survives faults: on a close it reconnects to one of the live nodes and
/// rejoins with `recover`.
pub struct Member {
    pub name: String,
    org: String,
    room: String,
    client: Client,
    pos: StreamPosition,
    /// Texts received, with when.
    pub got: Vec<(String, Instant)>,
    pub progress: Shared<Progress>,
    /// Rejoins that recovered exactly.
    pub recovered: usize,
    /// How long a rejoin may keep failing before the member gives up (and fails the test).
    patience: Duration,
}

impl Member {
    /// Connects to `url` as `name` and joins `room`.
    pub async fn join(url: &str, name: &str, org: &str, room: &str, patience: Duration) -> Member {
        let mut client = try_connect_as(url, name, org)
            .await
            .unwrap_or_else(|| panic!("{name} connects to {url}"));
        let j = match client.join(room, 0, None).await {
            Event::RoomJoined(j) => j,
            other => panic!("{name} joins {room}: {other:?}"),
        };
        Member {
            name: name.into(),
            org: org.into(),
            room: room.into(),
            client,
            pos: StreamPosition {
                epoch: j.epoch,
                offset: j.offset,
            },
            got: Vec::new(),
            progress: Shared::default(),
            recovered: 0,
            patience,
        }
    }

    fn take(&mut self, offset: u64, text: String) {
        assert_eq!(
            offset,
            self.pos.offset + 1,
            "{}: offset {offset} after {} ({text})",
            self.name,
            self.pos.offset
        );
        self.pos.offset = offset;
        self.progress.lock().got.insert(text.clone());
        self.got.push((text, Instant::now()));
    }

    /// Reads and reconnects until `stop`.
    pub async fn run(mut self, urls: Shared<Vec<String>>, stop: Arc<AtomicBool>) -> Member {
        while !stop.load(Ordering::Relaxed) {
            match self.client.next_or_close(Duration::from_millis(100)).await {
                Ok(Some(Event::MessageReceived(m))) if m.room == self.room => {
                    self.take(m.offset, m.text)
                }
                Ok(_) => {}
                Err(_closed) => self.rejoin(&urls).await,
            }
        }
        self
    }

    async fn rejoin(&mut self, urls: &parking_lot::Mutex<Vec<String>>) {
        let deadline = Instant::now() + self.patience;
        loop {
            assert!(Instant::now() < deadline, "{} could not rejoin", self.name);
            let candidates = urls.lock().clone();
            let url = &candidates[fastrand::usize(..candidates.len())];
            let Some(client) = try_connect_as(url, &self.name, &self.org).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            self.client = client;
            let op = Op::JoinRoom(JoinRoom {
                room: room(&self.room),
                // On `recovered:false` the reply carries the latest messages instead.
                history: 100,
                recover: Some(self.pos.clone()),
            });
            let Ok(Event::RoomJoined(j)) = request(&mut self.client, op).await else {
                // The backend is still failing, or this connection was closed: again.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            if j.recovered {
                self.recovered += 1;
                for m in j.history {
                    self.take(m.offset, m.text);
                }
            } else {
                // A declared gap: start over from the room's latest messages.
                self.progress.lock().lost_at = Some(Instant::now());
                self.pos.offset = j.history.first().map_or(j.offset, |m| m.offset - 1);
                for m in j.history {
                    self.take(m.offset, m.text);
                }
            }
            self.pos = StreamPosition {
                epoch: j.epoch,
                offset: j.offset,
            };
            return;
        }
    }

    /// When it last rejoined with `recovered:false`.
    pub fn lost_at(&self) -> Option<Instant> {
        self.progress.lock().lost_at
    }
}

/// A message the sender had acknowledged.
#[derive(Debug, Clone)]
pub struct Sent {
    pub text: String,
    pub acked_at: Instant,
}

/// Sends `text` until it is acknowledged (same `client_id` each time), reconnecting to `url` as
/// `user` as needed; fails after `patience`.
pub async fn send_until_acked(
    sender: &mut Client,
    url: &str,
    user: &str,
    org: &str,
    room_name: &str,
    text: &str,
    patience: Duration,
) {
    let deadline = Instant::now() + patience;
    loop {
        assert!(Instant::now() < deadline, "{text} was never acknowledged");
        let op = Op::SendMessage(SendMessage {
            room: room(room_name),
            text: text.into(),
            client_id: Some(text.into()),
        });
        match request(sender, op).await {
            Ok(Event::Ack(_)) => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(()) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some(c) = try_connect_as(url, user, org).await {
                    *sender = c;
                }
            }
        }
    }
}

/// What a member must have and has not: every message acknowledged after its last
/// `recovered:false`.
pub fn missing<'a>(p: &Progress, sent: &'a [Sent]) -> Vec<&'a str> {
    sent.iter()
        .filter(|s| p.lost_at.is_none_or(|at| s.acked_at > at))
        .map(|s| s.text.as_str())
        .filter(|t| !p.got.contains(*t))
        .collect()
}

/// Every member has every message acknowledged after its last `recovered:false` rejoin (and
/// in-order, exactly-once delivery was checked as they arrived).
pub fn assert_nothing_lost_silently(members: &[Member], sent: &[Sent]) {
    for m in members {
        let missed = missing(&m.progress.lock(), sent);
        assert!(
            missed.is_empty(),
            "{} silently missed {missed:?} (recovered {} times, lost_at {:?})",
            m.name,
            m.recovered,
            m.lost_at()
        );
    }
}
