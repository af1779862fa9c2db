//! Rooms: tenant isolation, authorization, ordered chat in both codecs, idempotency,
//! recovery and presence.

mod common;

use common::*;
use evd_protocol::auth::Role;
use evd_protocol::event::{Event, PresenceMember, PresenceUpdate};
use evd_protocol::op::StreamPosition;
use evd_protocol::{Codec, ErrorCode};

fn error_code(e: &Event) -> ErrorCode {
    match e {
        Event::Error(err) => err.code,
        other => panic!("expected ERROR, got {other:?}"),
    }
}

fn ack_offset(e: &Event) -> u64 {
    match e {
        Event::Ack(a) => a.offset.expect("send_message ACK carries the offset"),
        other => panic!("expected ACK, got {other:?}"),
    }
}

#[tokio::test]
async fn another_org_never_reads_or_writes_a_room_of_the_same_name() {
    let srv = TestServer::start().await;
    let mut a = srv
        .client("alice", "orgA", Role::Organizer, Codec::Json)
        .await;
    let mut b = srv
        .client("bob", "orgB", Role::Organizer, Codec::Json)
        .await;
    let ja = a.joined("session:S1").await;
    let jb = b.joined("session:S1").await;
    assert_eq!(ja.presence.count, 1);
    assert_eq!(jb.presence.count, 1, "org B's room is a different room");

    assert_eq!(
        ack_offset(&a.say("session:S1", "for A only", None).await),
        1
    );
    assert_eq!(
        ack_offset(&b.say("session:S1", "for B only", None).await),
        1,
        "B's room has its own offsets"
    );
    assert_eq!(a.message().await.text, "for A only");
    assert_eq!(b.message().await.text, "for B only");

    // A sentinel after the other org's message proves it was never delivered.
    a.say("session:S1", "sentinel", None).await;
    assert_eq!(a.message().await.text, "sentinel");
    b.say("session:S1", "sentinel-b", None).await;
    assert_eq!(b.message().await.text, "sentinel-b");

    // B cannot even read A's history by name.
    let Event::RoomJoined(h) = b.join("session:S1", 100, None).await else {
        panic!()
    };
    assert!(
        h.history
            .iter()
            .all(|m| m.text.contains("B") || m.text.ends_with("-b")),
        "{:?}",
        h.history
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn attendees_need_the_room_in_their_claim_and_organizers_do_not() {
    let srv = TestServer::start().await;
    let t = srv.token("att", "o1", Role::Attendee, &["session:S1"]);
    let mut att = Client::connect(&srv.url(), &t, Codec::Json).await;
    assert!(matches!(
        att.join("session:S1", 0, None).await,
        Event::RoomJoined(_)
    ));
    assert_eq!(
        error_code(&att.join("session:S2", 0, None).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        error_code(&att.join("event:E1", 0, None).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        error_code(&att.join("user:someone-else", 0, None).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        error_code(&att.say("session:S2", "hi", None).await),
        ErrorCode::Forbidden,
        "publishing needs the join right"
    );
    let mut org = srv.client("boss", "o1", Role::Organizer, Codec::Json).await;
    assert!(matches!(
        org.join("session:S2", 0, None).await,
        Event::RoomJoined(_)
    ));
    assert!(matches!(
        org.join("event:E1", 0, None).await,
        Event::RoomJoined(_)
    ));
    // Publishing needs the right, not membership.
    let mut owner = srv.client("own", "o1", Role::Owner, Codec::MsgPack).await;
    assert_eq!(
        ack_offset(&owner.say("session:S2", "from outside", None).await),
        1
    );
    assert_eq!(org.message().await.text, "from outside");
    srv.shutdown().await;
}

#[tokio::test]
async fn chat_reaches_every_member_in_offset_order_in_both_codecs() {
    let srv = TestServer::start().await;
    let codecs = [Codec::Json, Codec::MsgPack, Codec::Json, Codec::MsgPack];
    let mut members = srv.members("session:S1", &codecs).await;
    let mut p1 = srv.client("pub1", "o1", Role::Organizer, Codec::Json).await;
    let mut p2 = srv
        .client("pub2", "o1", Role::Organizer, Codec::MsgPack)
        .await;
    const N: usize = 40;
    // Two publishers interleave without waiting for ACKs, so their messages race in the broker.
    for i in 0..N {
        let op = |who: &str| {
            evd_protocol::Op::SendMessage(evd_protocol::op::SendMessage {
                room: room("session:S1"),
                text: format!("{who}-{i}"),
                client_id: None,
            })
        };
        p1.send(op("p1")).await;
        p2.send(op("p2")).await;
    }
    for c in &mut members {
        let mut offsets = Vec::new();
        let mut texts = Vec::new();
        for _ in 0..2 * N {
            let m = c.message().await;
            assert_eq!(m.room, "session:S1");
            assert!(m.ts > 0 && !m.id.is_empty());
            offsets.push(m.offset);
            texts.push(m.text);
        }
        assert_eq!(
            offsets,
            (1..=(2 * N) as u64).collect::<Vec<_>>(),
            "{}: strictly in offset order",
            c.codec
        );
        for who in ["p1", "p2"] {
            let own: Vec<_> = texts
                .iter()
                .filter(|t| t.starts_with(who))
                .cloned()
                .collect();
            assert_eq!(
                own,
                (0..N).map(|i| format!("{who}-{i}")).collect::<Vec<_>>(),
                "per-publisher order"
            );
        }
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn a_resend_with_the_same_client_id_is_delivered_once() {
    let srv = TestServer::start().await;
    let mut m = srv.client("m", "o1", Role::Organizer, Codec::Json).await;
    m.joined("session:S1").await;
    let mut p = srv.client("p", "o1", Role::Organizer, Codec::MsgPack).await;
    let first = ack_offset(&p.say("session:S1", "once", Some("c-1")).await);
    let again = ack_offset(&p.say("session:S1", "once", Some("c-1")).await);
    assert_eq!(
        first, again,
        "the resend is acknowledged with the original offset"
    );
    p.say("session:S1", "after", Some("c-2")).await;
    assert_eq!(m.message().await.text, "once");
    let next = m.message().await;
    assert_eq!(
        (next.text.as_str(), next.offset),
        ("after", first + 1),
        "no second copy in between"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn recover_replays_exactly_the_missed_messages_or_says_it_cannot() {
    let mut s = settings();
    s.history.size = 10;
    let srv = TestServer::with(s).await;
    let mut p = srv.client("p", "o1", Role::Organizer, Codec::Json).await;
    let mut c = srv.client("c", "o1", Role::Organizer, Codec::MsgPack).await;
    let j = c.joined("session:S1").await;
    assert_eq!((j.offset, j.recovered), (0, false));
    for i in 1..=3 {
        p.say("session:S1", &format!("m{i}"), None).await;
    }
    let mut last = 0;
    for _ in 0..3 {
        last = c.message().await.offset;
    }
    let pos = StreamPosition {
        epoch: j.epoch.clone(),
        offset: last,
    };
    drop(c); // disconnect

    for i in 4..=8 {
        p.say("session:S1", &format!("m{i}"), None).await;
    }
    let mut c = srv.client("c", "o1", Role::Organizer, Codec::MsgPack).await;
    let Event::RoomJoined(r) = c.join("session:S1", 0, Some(pos.clone())).await else {
        panic!()
    };
    assert!(r.recovered);
    assert_eq!(r.epoch, j.epoch);
    assert_eq!(r.offset, 8);
    assert_eq!(
        r.history
            .iter()
            .map(|m| m.text.as_str())
            .collect::<Vec<_>>(),
        vec!["m4", "m5", "m6", "m7", "m8"]
    );
    // Live delivery continues right after the recovered ones, without duplicates.
    p.say("session:S1", "m9", None).await;
    assert_eq!(c.message().await.offset, 9);

    // A gap older than the window (size 10) cannot be recovered.
    for i in 10..=25 {
        p.say("session:S1", &format!("m{i}"), None).await;
    }
    let mut d = srv.client("d", "o1", Role::Organizer, Codec::Json).await;
    let Event::RoomJoined(r) = d.join("session:S1", 0, Some(pos)).await else {
        panic!()
    };
    assert!(!r.recovered);
    assert!(r.history.is_empty());
    assert_eq!(r.offset, 25);
    // A changed epoch cannot be recovered either.
    let Event::RoomJoined(r) = d
        .join(
            "session:S1",
            3,
            Some(StreamPosition {
                epoch: "other-epoch".into(),
                offset: 24,
            }),
        )
        .await
    else {
        panic!()
    };
    assert!(!r.recovered);
    assert_eq!(
        r.history.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![23, 24, 25],
        "latest history:n instead"
    );
    // history:n on a plain join.
    let Event::RoomJoined(r) = d.join("session:S1", 2, None).await else {
        panic!()
    };
    assert_eq!(
        r.history.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![24, 25]
    );
    srv.shutdown().await;
}

fn update(e: Event) -> Option<PresenceUpdate> {
    match e {
        Event::PresenceUpdate(u) => Some(u),
        _ => None,
    }
}

fn users(v: &Option<Vec<PresenceMember>>) -> Vec<&str> {
    v.as_ref()
        .expect("full presence")
        .iter()
        .map(|m| m.user.as_str())
        .collect()
}

#[tokio::test]
async fn presence_diffs_for_join_and_leave_and_one_member_per_user() {
    let srv = TestServer::start().await;
    let mut a = srv
        .client("alice", "o1", Role::Organizer, Codec::Json)
        .await;
    a.joined("event:E1").await;
    let u = a.next_where(update).await;
    assert_eq!(
        (u.count, users(&u.joins)),
        (1, vec!["alice"]),
        "the joiner gets its own join too"
    );

    let mut b1 = srv
        .client("bob", "o1", Role::Organizer, Codec::MsgPack)
        .await;
    let jb = b1.joined("event:E1").await;
    assert_eq!(jb.presence.count, 2);
    assert_eq!(
        jb.presence
            .members
            .iter()
            .map(|m| m.user.as_str())
            .collect::<Vec<_>>(),
        vec!["alice", "bob"]
    );
    let u = a.next_where(update).await;
    assert_eq!(
        (u.count, users(&u.joins), users(&u.leaves)),
        (2, vec!["bob"], vec![])
    );

    // Bob's second connection is not a second member and not a join.
    let mut b2 = srv.client("bob", "o1", Role::Organizer, Codec::Json).await;
    let jb2 = b2.joined("event:E1").await;
    assert_eq!(jb2.presence.count, 2);
    // Closing one of Bob's connections is not a leave; a sentinel join proves no update came between.
    drop(b2);
    let mut c = srv
        .client("carol", "o1", Role::Organizer, Codec::Json)
        .await;
    c.joined("event:E1").await;
    let u = a.next_where(update).await;
    assert_eq!(
        (u.count, users(&u.joins), users(&u.leaves)),
        (3, vec!["carol"], vec![])
    );

    // Bob's last connection leaving is a leave.
    assert!(matches!(b1.leave("event:E1").await, Event::RoomLeft(_)));
    let u = a.next_where(update).await;
    assert_eq!((u.count, users(&u.leaves)), (2, vec!["bob"]));
    srv.shutdown().await;
}

#[tokio::test]
async fn big_rooms_get_count_only_presence_and_snapshots_are_capped() {
    let mut s = settings();
    s.presence.full_room_limit = 2;
    let srv = TestServer::with(s).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = srv
            .client(&format!("u{i}"), "o1", Role::Organizer, Codec::Json)
            .await;
        c.joined("event:big").await;
        clients.push(c);
    }
    let u = clients[0]
        .next_where(|e| update(e).filter(|u| u.count == 3))
        .await;
    assert!(
        u.joins.is_none() && u.leaves.is_none(),
        "above the limit only the count is sent"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn the_user_room_is_joined_on_connect_and_private() {
    let srv = TestServer::start().await;
    let mut u = srv.client("u1", "o1", Role::Attendee, Codec::Json).await;
    let mut staff = srv.client("boss", "o1", Role::Owner, Codec::Json).await;
    // Staff may publish to rooms of the org, but a user room only admits its user.
    assert_eq!(
        error_code(&staff.say("user:u1", "psst", None).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        error_code(&staff.join("user:u1", 0, None).await),
        ErrorCode::Forbidden
    );
    // The user's own messages to its room arrive without an explicit join.
    u.say("user:u1", "note to self", None).await;
    assert_eq!(u.message().await.text, "note to self");
    assert_eq!(error_code(&u.leave("user:u1").await), ErrorCode::BadRequest);
    srv.shutdown().await;
}

#[tokio::test]
async fn rooms_per_connection_are_capped() {
    let mut s = settings();
    s.limits.rooms_per_connection = 2;
    let srv = TestServer::with(s).await;
    let mut c = srv.client("u1", "o1", Role::Organizer, Codec::Json).await;
    c.joined("session:a").await;
    c.joined("session:b").await;
    assert_eq!(
        error_code(&c.join("session:c", 0, None).await),
        ErrorCode::Conflict
    );
    c.joined("session:a").await; // re-joining a room it is in is fine
    c.leave("session:a").await;
    c.joined("session:c").await;
    srv.shutdown().await;
}
