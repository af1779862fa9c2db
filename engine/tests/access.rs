//! Revocation and organizer disconnects end to end, on one node with the store and the REST API
//! mounted, on SQLite and (when configured) on PostgreSQL: a removed or demoted organizer gets
//! 403 on REST and is taken out of the rooms they may no longer join; a disconnect closes the
//! user's sockets with 4504 after `DISCONNECTED`, and a ban refuses their reconnect until it ends.
//! The same across two nodes is in `cluster.rs`.

mod common;

use common::*;
use evd_api::clock::Clock;
use evd_api::store::SqlStore;
use evd_api::test_util::TestDb;
use evd_protocol::Codec;
use evd_protocol::auth::Role;
use evd_protocol::event::{Disconnected, Event, MembershipChanged, RoomLeft};
use evd_protocol::{CloseCode, ErrorCode};
use reqwest::Method;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

evd_api::on_both_backends!(
    "end-to-end";
    a_removed_organizer_gets_403_and_leaves_the_rooms_they_may_no_longer_join,
    a_demoted_organizer_keeps_only_the_rooms_their_tickets_allow,
    a_disconnect_closes_the_users_sockets_and_a_ban_refuses_them_until_it_ends,
);

async fn start(db: TestDb) -> (TestServer, Arc<SqlStore>, TestDb) {
    let mut s = settings();
    s.api.rate_limit.per_second = 10_000.try_into().unwrap();
    s.api.rate_limit.burst = 10_000.try_into().unwrap();
    let store = Arc::new(
        SqlStore::connect(&db.url, &s.api().store_config(), Clock::system())
            .await
            .expect("store"),
    );
    (TestServer::with_store(s, store.clone()).await, store, db)
}

/// Waits for an event `pick` accepts; panics on a close first.
async fn expect<T>(c: &mut Client, what: &str, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no {what} in time");
        match c.next_or_close(Duration::from_millis(100)).await {
            Ok(Some(e)) => {
                if let Some(t) = pick(e) {
                    return t;
                }
            }
            Ok(None) => {}
            Err(close) => panic!("closed before {what}: {close:?}"),
        }
    }
}

fn revoked(room: &str) -> impl FnMut(Event) -> Option<RoomLeft> + '_ {
    move |e| match e {
        Event::RoomLeft(l) if l.room == room => Some(l),
        _ => None,
    }
}

async fn a_removed_organizer_gets_403_and_leaves_the_rooms_they_may_no_longer_join(db: TestDb) {
    let (srv, store, _db) = start(db).await;
    let (owner, event, session) = srv.seed("acme", "olive", 10).await;
    let (status, _) = srv
        .post(
            "/orgs/acme/members",
            &owner,
            json!({"user_id": "bob", "role": "organizer"}),
        )
        .await;
    assert_eq!(status, 201);
    let bob = srv.token_with("bob", "acme", Role::Organizer, None, &[]);
    let new_event = json!({"name": "Side event", "status": "draft",
        "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-01T18:00:00Z"});
    let (status, _) = srv.post("/events", &bob, new_event.clone()).await;
    assert_eq!(status, 201, "a member organizer manages the org");

    let mut sock = Client::connect(&srv.url(), &bob, Codec::Json).await;
    let session_room = format!("session:{session}");
    let event_room = format!("event:{event}");
    sock.joined(&session_room).await;
    sock.joined(&event_room).await;
    let mut olive = Client::connect(&srv.url(), &owner, Codec::MsgPack).await;
    olive.joined(&session_room).await;

    let (status, _) = srv
        .rest(Method::DELETE, "/orgs/acme/members/bob", &owner, None)
        .await;
    assert_eq!(status, 204);

    // REST: the same token is now an attendee's.
    let (status, body) = srv.post("/events", &bob, new_event).await;
    assert_eq!(status, 403, "{body}");
    // The socket: told, and out of both rooms (no ticket, no grant).
    let changed = expect(&mut sock, "MEMBERSHIP_CHANGED", |e| match e {
        Event::MembershipChanged(m) => Some(m),
        _ => None,
    })
    .await;
    assert_eq!(
        changed,
        MembershipChanged {
            user: "bob".into(),
            role: None,
            outbox_id: changed.outbox_id,
        }
    );
    for room in [&session_room, &event_room] {
        let left = expect(&mut sock, "ROOM_LEFT", revoked(room)).await;
        assert_eq!(
            (left.r#ref, left.reason.as_deref()),
            (None, Some("revoked"))
        );
    }
    // Messages of the room no longer reach it, and it may not come back.
    olive.say(&session_room, "after bob left", None).await;
    match sock.join(&session_room, 0, None).await {
        Event::Error(e) => assert_eq!(e.code, ErrorCode::Forbidden),
        other => panic!("rejoin after removal: {other:?}"),
    }
    assert!(matches!(sock.ping().await, Event::Pong(_)));
    while let Ok(Some(e)) = sock.next_or_close(Duration::from_millis(200)).await {
        assert!(!matches!(e, Event::MessageReceived(_)), "{e:?}");
    }
    // The owner, untouched, still is in the room.
    assert!(matches!(olive.ping().await, Event::Pong(_)));
    srv.shutdown().await;
    store.close().await;
}

async fn a_demoted_organizer_keeps_only_the_rooms_their_tickets_allow(db: TestDb) {
    let (srv, store, _db) = start(db).await;
    let (owner, _event, session) = srv.seed("acme", "olive", 10).await;
    let (_, other) = srv
        .post(
            &format!("/events/{_event}/sessions"),
            &owner,
            json!({"title": "Workshop", "capacity": 5,
                   "starts_at": "2026-12-02T09:00:00Z", "ends_at": "2026-12-02T10:00:00Z"}),
        )
        .await;
    let other = other["id"].as_str().unwrap().to_owned();
    srv.post(
        "/orgs/acme/members",
        &owner,
        json!({"user_id": "bob", "role": "organizer"}),
    )
    .await;
    let bob = srv.token_with("bob", "acme", Role::Organizer, None, &[]);
    // Bob holds a ticket for the keynote, not for the workshop.
    let (status, _) = srv
        .post(&format!("/sessions/{session}/tickets"), &bob, json!({}))
        .await;
    assert_eq!(status, 201);
    let mut sock = Client::connect(&srv.url(), &bob, Codec::MsgPack).await;
    let (keynote, workshop) = (format!("session:{session}"), format!("session:{other}"));
    sock.joined(&keynote).await;
    sock.joined(&workshop).await;

    let (status, body) = srv
        .rest(
            Method::PATCH,
            "/orgs/acme/members/bob",
            &owner,
            Some(json!({"role": "attendee"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let changed = expect(&mut sock, "MEMBERSHIP_CHANGED", |e| match e {
        Event::MembershipChanged(m) => Some(m),
        _ => None,
    })
    .await;
    assert_eq!(changed.role, Some(Role::Attendee));
    expect(&mut sock, "ROOM_LEFT of the workshop", revoked(&workshop)).await;
    // The keynote stays: an attendee with its ticket may be there.
    match sock.join(&keynote, 0, None).await {
        Event::RoomJoined(j) => assert_eq!(j.room, keynote),
        other => panic!("{other:?}"),
    }
    let (status, _) = srv
        .rest(Method::GET, "/orgs/acme/members", &bob, None)
        .await;
    assert_eq!(status, 403);
    srv.shutdown().await;
    store.close().await;
}

async fn a_disconnect_closes_the_users_sockets_and_a_ban_refuses_them_until_it_ends(db: TestDb) {
    let (srv, store, _db) = start(db).await;
    let (owner, _event, _session) = srv.seed("acme", "olive", 10).await;
    let troll = srv.token_with("troll", "acme", Role::Attendee, None, &[]);
    let mut a = Client::connect(&srv.url(), &troll, Codec::Json).await;
    let mut b = Client::connect(&srv.url(), &troll, Codec::MsgPack).await;
    let mut bystander = Client::connect(
        &srv.url(),
        &srv.token_with("ann", "acme", Role::Attendee, None, &[]),
        Codec::Json,
    )
    .await;

    // Attendees may not disconnect anyone; bad bodies are named.
    let (status, _) = srv
        .post("/orgs/acme/users/ann/disconnect", &troll, json!({}))
        .await;
    assert_eq!(status, 403);
    let (status, body) = srv
        .post(
            "/orgs/acme/users/troll/disconnect",
            &owner,
            json!({"ban_secs": 0}),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    let (status, body) = srv
        .post(
            "/orgs/acme/users/troll/disconnect",
            &owner,
            json!({"reason": "spamming the chat", "ban_secs": 2}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let until = body["banned_until"].as_i64().expect("banned_until");
    for c in [&mut a, &mut b] {
        let (events, close) = c.events_until_close().await;
        let d: Vec<&Disconnected> = events
            .iter()
            .filter_map(|e| match e {
                Event::Disconnected(d) => Some(d),
                _ => None,
            })
            .collect();
        assert_eq!(d.len(), 1, "{events:?}");
        assert_eq!(d[0].reason.as_deref(), Some("spamming the chat"));
        assert_eq!(d[0].banned_until, Some(until));
        assert_eq!(
            close.map(|f| u16::from(f.code)),
            Some(CloseCode::Disconnected.code())
        );
    }
    assert!(matches!(bystander.ping().await, Event::Pong(_)));

    // Banned: refused at the door, with how long.
    let refused = try_connect(&srv.url(), Some(&troll), &[], None)
        .await
        .expect_err("a banned user is refused");
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("\"banned\""), "{}", refused.body);
    // Another org's user of the same name is not banned.
    let elsewhere = srv.token_with("troll", "other-org", Role::Attendee, None, &[]);
    Client::connect(&srv.url(), &elsewhere, Codec::Json).await;

    // Once the ban ends, they are let back in.
    let wait = u64::try_from(until - evd_engine::clock::unix_ms()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait + 100)).await;
    let mut back = Client::connect(&srv.url(), &troll, Codec::Json).await;
    assert!(matches!(back.ping().await, Event::Pong(_)));
    srv.shutdown().await;
    store.close().await;
}
