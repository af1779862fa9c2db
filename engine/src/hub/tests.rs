//! The hub's unit tests: membership indexes, the join buffer, tick coalescing, outbox de-duplication.

use super::*;
use crate::conn::testing::direct_conn;
use crate::room_key::RoomPhase;
use evd_protocol::event::PresenceMember;
use evd_protocol::event::{ChatMessage, Pong};
use evd_protocol::{Codec, RoomName};
use std::collections::BTreeMap;

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
            crate::conn::queue::Payload::Text(t) => c.codec.decode_events(t.as_bytes()).unwrap(),
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

/// Every connection has a room of its own with one member, so a room's size in its shard's
/// table and its member kept inline are memory per idle connection.
#[test]
fn a_room_of_one_is_small_and_joiners_share_the_rooms_key() {
    // Measured in a test build: 48 (64 with the member map inline, plus its heap table).
    let room = std::mem::size_of::<Room>();
    assert!(room <= 48, "a room is {room} bytes");
    let h = hub();
    let (a, b, c) = (
        conn(1, Codec::Json),
        conn(2, Codec::Json),
        conn(3, Codec::Json),
    );
    // Three equal keys, made apart as three joins' ops make them.
    let (ka, kb, kc) = (key("event:E1"), key("event:E1"), key("event:E1"));
    h.join(&ka, &a);
    h.join(&kb, &b);
    h.join(&kc, &c);
    assert!(a.rooms()[0].is_same(&ka));
    assert!(
        b.rooms()[0].is_same(&ka),
        "the second joiner keeps the room's key"
    );
    assert!(c.rooms()[0].is_same(&ka));
    assert_eq!(h.members(&ka), 3);
    // From three members down to one and none, the room's bookkeeping stays right.
    h.leave(&kb, &b);
    h.leave(&ka, &a);
    assert_eq!(h.members(&kc), 1);
    assert_eq!(h.local_conns(&kc).len(), 1);
    assert_eq!(h.leave(&kc, &c), Some(Left { last_local: true }));
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
        std::mem::size_of::<Room>() <= 48,
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
    let work = h.take_tick(RoomPhase::ALL);
    assert_eq!(work.len(), 1);
    assert_eq!(
        (work[0].joins.clone(), work[0].leaves.clone()),
        (vec![m("u1")], vec![m("u3")])
    );
    assert!(h.take_tick(RoomPhase::ALL).is_empty());
    h.record_presence(&key("event:nobody-here"), &[m("u1")], &[]);
    assert!(
        h.take_tick(RoomPhase::ALL).is_empty(),
        "rooms without local members are ignored"
    );
    h.record_presence(&r, &[m("u4")], &[m("u4")]);
    assert!(
        h.take_tick(RoomPhase::ALL).is_empty(),
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
    let work = h.take_tick(RoomPhase::ALL);
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].polls, vec![("p1".to_string(), counts(5, 2))]);
    assert_eq!(work[0].questions, vec![("q1".to_string(), 2)]);
    h.record_poll(&r, "p1", &counts(5, 2));
    h.record_question(&r, "q1", 2);
    assert!(
        h.take_tick(RoomPhase::ALL).is_empty(),
        "nothing new, nothing sent"
    );
}

#[test]
fn a_phased_tick_takes_each_changed_room_once_per_interval_and_spreads_them() {
    let h = hub();
    let a = conn(1, Codec::Json);
    let rooms: Vec<RoomKey> = (0..200).map(|i| key(&format!("session:S{i}"))).collect();
    let counts = |n: u64| BTreeMap::from([("a".to_string(), n)]);
    for r in &rooms {
        h.join(r, &a);
        h.record_poll(r, "p1", &counts(1));
    }
    let of = 8;
    let mut taken = Vec::new();
    let mut per_phase = Vec::new();
    for this in 0..of {
        let work = h.take_tick(RoomPhase { this, of });
        assert!(
            work.iter().all(|w| RoomPhase { this, of }.takes(&w.room)),
            "a tick takes only its own phase's rooms"
        );
        per_phase.push(work.len());
        taken.extend(work.into_iter().map(|w| w.room));
    }
    taken.sort_by_key(|r| r.room().to_string());
    let mut want = rooms.clone();
    want.sort_by_key(|r| r.room().to_string());
    assert_eq!(taken, want, "every changed room, each once: {per_phase:?}");
    assert!(
        per_phase.iter().all(|&n| (10..=40).contains(&n)),
        "200 rooms over 8 phases come in shares near 25: {per_phase:?}"
    );
    // A room changed again waits for its own phase, then goes out with its latest state.
    let r = &rooms[0];
    let mine = (0..of)
        .find(|&this| RoomPhase { this, of }.takes(r))
        .expect("some phase takes it");
    h.record_poll(r, "p1", &counts(2));
    h.record_poll(r, "p1", &counts(3));
    let other = (mine + 1) % of;
    assert!(h.take_tick(RoomPhase { this: other, of }).is_empty());
    let work = h.take_tick(RoomPhase { this: mine, of });
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].polls, vec![("p1".to_string(), counts(3))]);
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

/// The bytes of the one payload waiting in `c`'s queue, and where they live.
fn only_payload(h: &Hub, c: &Conn) -> (Vec<u8>, usize) {
    let t = c.queue.take(usize::MAX, &h.stats);
    assert_eq!(t.items.len(), 1);
    match &t.items[0].payload {
        crate::conn::queue::Payload::Text(t) => {
            (t.as_bytes().to_vec(), t.as_bytes().as_ptr() as usize)
        }
        crate::conn::queue::Payload::Binary(b) => (b.to_vec(), b.as_ptr() as usize),
    }
}

#[test]
fn a_broadcast_is_encoded_once_per_wire_and_codec_and_shared_by_its_members() {
    use crate::conn::Wire;
    let h = hub();
    let sio = |id| {
        Arc::new(Conn::on_wire(
            id,
            format!("u{id}").into(),
            Wire::SocketIo,
            Codec::Json,
            1 << 20,
        ))
    };
    let (s1, s2, native) = (sio(1), sio(2), conn(3, Codec::Json));
    let r = key("session:S1");
    for c in [&s1, &s2, &native] {
        h.join(&r, c);
        h.activate(&r, c, None, 0);
    }
    h.deliver_chat(&r, &chat(7), "Ep0ch", 7);
    let (b1, at1) = only_payload(&h, &s1);
    let (b2, at2) = only_payload(&h, &s2);
    let (bn, atn) = only_payload(&h, &native);
    assert_eq!(at1, at2, "the Socket.IO members share one encoding");
    assert_ne!(at1, atn);
    let text = String::from_utf8(b1).unwrap();
    assert!(text.starts_with(r#"42["MESSAGE_RECEIVED",{"#), "{text}");
    assert!(text.ends_with(r#","Ep0ch:7:session:S1"]"#), "{text}");
    assert_eq!(b2, text.as_bytes());
    let native_events = Codec::Json.decode_events(&bn).unwrap();
    assert_eq!(
        native_events,
        vec![chat(7)],
        "the native member gets evd's own frame"
    );
}

#[test]
fn room_stats_count_members_and_take_each_rooms_traffic() {
    let h = hub();
    let (a, b) = (conn(1, Codec::Json), conn(2, Codec::Json));
    let big = key("session:S1");
    let busy = key("session:S2");
    let own = key("user:u1");
    for (room, c) in [(&big, &a), (&big, &b), (&busy, &a), (&own, &a)] {
        h.join(room, c);
        h.activate(room, c, None, 0);
    }
    let ev = || chat(1);
    h.deliver(&big, &ev(), None);
    for _ in 0..3 {
        h.deliver(&busy, &ev(), None);
    }
    let s = h.take_room_stats(10, 10);
    assert_eq!(s.rooms, 2, "the user: room is not listed");
    assert_eq!(s.deliveries, 2 + 3);
    assert_eq!(s.orgs.len(), 1);
    assert_eq!((s.orgs[0].connections, s.orgs[0].rooms), (1, 2));
    let find = |s: &LocalRooms, r: &str| {
        s.top
            .iter()
            .find(|x| x.room == r)
            .map(|x| (x.members, x.deliveries))
    };
    assert_eq!(find(&s, "session:S1"), Some((2, 2)));
    assert_eq!(find(&s, "session:S2"), Some((1, 3)));
    assert!(!s.rooms_truncated);

    // The counts were taken: the next read starts from zero.
    let s = h.take_room_stats(10, 10);
    assert_eq!(s.deliveries, 0);
    assert_eq!(find(&s, "session:S2"), Some((1, 0)));

    // With room for one per measure: the largest (S1) and the busiest (S2).
    h.deliver(&busy, &ev(), None);
    let s = h.take_room_stats(1, 10);
    assert!(s.rooms_truncated);
    assert_eq!(find(&s, "session:S1"), Some((2, 0)));
    assert_eq!(find(&s, "session:S2"), Some((1, 1)));
}

#[test]
fn room_stats_count_each_org_apart_whatever_order_the_rooms_come_in() {
    // Many rooms of three orgs over four shards: the walk meets the orgs interleaved, so an org
    // remembered from the previous room must not take the next org's counts.
    let h = hub();
    let c = conn(1, Codec::Json);
    let orgs = ["o1", "o2", "o3"];
    for n in 0..60 {
        let org = orgs[n % 3];
        let room = RoomKey::new(org, RoomName::parse(&format!("session:S{n}")).unwrap());
        h.join(&room, &c);
        h.activate(&room, &c, None, 0);
    }
    for (n, org) in orgs.iter().enumerate() {
        for u in 0..=n {
            let own = RoomKey::new(org, RoomName::parse(&format!("user:u{u}")).unwrap());
            h.join(&own, &c);
            h.activate(&own, &c, None, 0);
        }
    }
    let s = h.take_room_stats(100, 10);
    assert_eq!(s.rooms, 60);
    let mut got: Vec<(String, u64, u64)> = s
        .orgs
        .iter()
        .map(|o| (o.org.clone(), o.connections, o.rooms))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("o1".into(), 1, 20),
            ("o2".into(), 2, 20),
            ("o3".into(), 3, 20)
        ]
    );
    assert_eq!(s.orgs[0].org, "o3", "the most connections first");
}

/// Reads from `client` until `needle` has arrived, or fails after a few seconds.
async fn read_until(client: &mut tokio::net::TcpStream, needle: &str) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let found = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "the socket closed");
            got.extend_from_slice(&buf[..n]);
            if got.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return;
            }
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "{needle} never arrived; got {}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn a_wide_room_writes_to_members_that_joined_after_its_flush_list_was_made() {
    let h = hub();
    let r = key("session:S1");
    // Wider than one flush chunk, so the room keeps a shared list of its direct members.
    for id in 0..=FLUSH_CHUNK as u64 {
        let c = conn(10_000 + id, Codec::Json);
        h.join(&r, &c);
        h.activate(&r, &c, None, 0);
    }
    let (first, mut first_client) = direct_conn(1, Arc::clone(&h.stats)).await;
    h.join(&r, &first);
    h.activate(&r, &first, None, 0);
    h.deliver_chat(&r, &chat(1), "E", 1);
    read_until(&mut first_client, r#""offset":1"#).await;

    // The list was made by that broadcast; a member joining now must be written to as well.
    let (late, mut late_client) = direct_conn(2, Arc::clone(&h.stats)).await;
    h.join(&r, &late);
    h.activate(&r, &late, None, 0);
    h.deliver_chat(&r, &chat(2), "E", 2);
    read_until(&mut late_client, r#""offset":2"#).await;
    read_until(&mut first_client, r#""offset":2"#).await;

    // A member that left gets nothing more, and the others still get everything.
    h.leave(&r, &first);
    h.deliver_chat(&r, &chat(3), "E", 3);
    read_until(&mut late_client, r#""offset":3"#).await;
    assert_eq!(first.queue.bytes(), 0);
}
