//! Live features end to end: real WebSocket clients and real REST calls against an engine with
//! the store and the REST API mounted, on SQLite and (when configured) on PostgreSQL.

mod common;

use common::*;
use evd_api::clock::{Clock, ManualClock};
use evd_api::store::{SqlStore, Sweeper};
use evd_api::test_util::TestDb;
use evd_protocol::Codec;
use evd_protocol::auth::{Role, Tier};
use evd_protocol::event::{Event, PollResults, QuestionUpdated, WaitlistOffer, WaitlistStatus};
use evd_protocol::op::{
    AskQuestion, OfferAnswer, Op, Ping, SendMessage, SubmitPollResponse, UpvoteQuestion,
};
use evd_protocol::{ErrorCode, RoomName};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

// Each test runs on SQLite, and on PostgreSQL when `EVD_TEST_DATABASE_URL` is set.
evd_api::on_both_backends!(
    "end-to-end";
    polls_reach_every_member_and_close_with_the_stored_counts,
    room_access_follows_tickets,
    questions_are_asked_upvoted_and_hidden,
    chat_is_archived_beyond_the_window,
    a_message_whose_archive_failed_is_archived_by_its_resend,
    pipelined_messages_are_acknowledged_in_order_after_their_archive,
    waitlist_offers_move_down_the_line,
    open_offers_reach_the_connections_their_users_open_later,
    an_offer_committed_while_no_engine_runs_is_delivered_after_one_starts,
    a_burst_of_ten_thousand_votes_is_counted_exactly,
    a_vote_acknowledged_before_a_crash_is_kept,
    readyz_fails_while_the_store_does_not_answer,
    a_vote_the_store_cannot_take_in_time_is_rate_limited_and_not_recorded,
    the_last_tally_reaches_every_member_when_the_tick_is_slow,
);

struct Live {
    srv: TestServer,
    store: Arc<SqlStore>,
    clock: ManualClock,
    _db: TestDb,
}

fn live_settings() -> evd_engine::Settings {
    let mut s = settings();
    s.api.rate_limit.per_second = 10_000.try_into().unwrap();
    s.api.rate_limit.burst = 10_000.try_into().unwrap();
    s.tick_ms = 50;
    s
}

async fn start(db: TestDb, s: evd_engine::Settings) -> Live {
    let (clock, manual) = Clock::manual(evd_engine::clock::unix_ms());
    let store = Arc::new(
        SqlStore::connect(&db.url, &s.api().store_config(), clock)
            .await
            .expect("store"),
    );
    let srv = TestServer::with_store(s, store.clone()).await;
    Live {
        srv,
        store,
        clock: manual,
        _db: db,
    }
}

impl Live {
    async fn stop(self) {
        self.srv.shutdown().await;
        self.store.close().await;
    }
}

impl Client {
    async fn vote(&mut self, poll: &str, option: &str) -> Event {
        let r = self
            .send(Op::SubmitPollResponse(SubmitPollResponse {
                poll: poll.into(),
                option: option.into(),
            }))
            .await;
        self.reply(r).await
    }

    async fn ask(&mut self, room: &str, text: &str) -> Event {
        let r = self
            .send(Op::AskQuestion(AskQuestion {
                room: RoomName::parse(room).unwrap(),
                text: text.into(),
            }))
            .await;
        self.reply(r).await
    }

    async fn upvote(&mut self, question: &str) -> Event {
        let r = self
            .send(Op::UpvoteQuestion(UpvoteQuestion {
                question: question.into(),
            }))
            .await;
        self.reply(r).await
    }

    async fn accept(&mut self, offer: &str) -> Event {
        let r = self
            .send(Op::AcceptOffer(OfferAnswer {
                offer: offer.into(),
            }))
            .await;
        self.reply(r).await
    }

    async fn decline(&mut self, offer: &str) -> Event {
        let r = self
            .send(Op::DeclineOffer(OfferAnswer {
                offer: offer.into(),
            }))
            .await;
        self.reply(r).await
    }

    async fn offer(&mut self) -> WaitlistOffer {
        self.next_where(|e| match e {
            Event::WaitlistOffer(o) => Some(o),
            _ => None,
        })
        .await
    }
}

fn code(e: &Event) -> ErrorCode {
    match e {
        Event::Error(err) => err.code,
        other => panic!("expected ERROR, got {other:?}"),
    }
}

fn is_ack(e: &Event) -> bool {
    matches!(e, Event::Ack(_))
}

/// A poll's stored results as option id → votes.
fn votes_by_option(results: &serde_json::Value) -> BTreeMap<String, u64> {
    results["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_owned(),
                o["votes"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn attendee(srv: &TestServer, user: &str, org: &str, codec: Codec) -> Client {
    Client::connect(
        &srv.url(),
        &srv.token(user, org, Role::Attendee, &[]),
        codec,
    )
    .await
}

async fn polls_reach_every_member_and_close_with_the_stored_counts(db: TestDb) {
    let live = start(db, live_settings()).await;
    let srv = &live.srv;
    let (owner, _event, session) = srv.seed("acme", "olive", 100).await;
    let room = format!("session:{session}");
    let mut members = Vec::new();
    for (user, codec) in [
        ("ann", Codec::Json),
        ("bob", Codec::MsgPack),
        ("cat", Codec::Json),
    ] {
        let mut c = attendee(srv, user, "acme", codec).await;
        srv.buy(&srv.token(user, "acme", Role::Attendee, &[]), &session)
            .await;
        assert!(
            matches!(c.join(&room, 0, None).await, Event::RoomJoined(_)),
            "a ticket opens the room"
        );
        members.push(c);
    }

    // REST create → POLL_CREATED in the session room, relayed from the outbox.
    let (poll, options) = srv.create_poll(&owner, &session, &["red", "blue"]).await;
    for c in &mut members {
        let created = c
            .next_where(|e| match e {
                Event::PollCreated(p) => Some(p),
                _ => None,
            })
            .await;
        assert_eq!(created.poll.id, poll);
        assert_eq!(created.room, room);
        assert_eq!(
            created
                .poll
                .options
                .iter()
                .map(|o| o.id.clone())
                .collect::<Vec<_>>(),
            options
        );
        assert!(
            created.outbox_id.is_some(),
            "relayed events carry their outbox id"
        );
    }

    // Durable votes: ACK after the commit; one per user; unknown options and polls refused.
    let (red, blue) = (&options[0], &options[1]);
    assert!(is_ack(&members[0].vote(&poll, red).await));
    assert!(is_ack(&members[1].vote(&poll, blue).await));
    assert!(is_ack(&members[2].vote(&poll, red).await));
    assert_eq!(
        code(&members[0].vote(&poll, blue).await),
        ErrorCode::Conflict,
        "a second vote"
    );
    let mut dan = attendee(srv, "dan", "acme", Codec::Json).await;
    srv.buy(&srv.token("dan", "acme", Role::Attendee, &[]), &session)
        .await;
    assert_eq!(
        code(&dan.vote(&poll, "no-such-option").await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(&dan.vote("no-such-poll", red).await),
        ErrorCode::NotFound
    );
    let mut outsider = attendee(srv, "eve", "acme", Codec::Json).await;
    assert_eq!(
        code(&outsider.vote(&poll, red).await),
        ErrorCode::Forbidden,
        "voting needs the room right"
    );

    // POLL_RESULTS converge on the committed counts.
    let expect = BTreeMap::from([(red.clone(), 2), (blue.clone(), 1)]);
    for c in &mut members {
        let results = c
            .next_where(|e| match e {
                Event::PollResults(r) if r.total == 3 => Some(r),
                _ => None,
            })
            .await;
        assert_eq!(
            results,
            PollResults {
                room: room.clone(),
                poll: poll.clone(),
                counts: expect.clone(),
                total: 3
            }
        );
    }

    // REST close → POLL_CLOSED with exactly the stored counts.
    let (status, closed) = srv
        .post(&format!("/polls/{poll}/close"), &owner, json!({}))
        .await;
    assert_eq!(status, 200, "{closed}");
    let (_, stored) = srv.get(&format!("/polls/{poll}/results"), &owner).await;
    let stored = votes_by_option(&stored);
    assert_eq!(stored, expect);
    for c in &mut members {
        let closed = c
            .next_where(|e| match e {
                Event::PollClosed(p) => Some(p),
                _ => None,
            })
            .await;
        assert_eq!(
            (&closed.counts, closed.total, &closed.poll),
            (&stored, 3, &poll)
        );
    }
    assert_eq!(
        code(&dan.vote(&poll, red).await),
        ErrorCode::Conflict,
        "the poll is closed"
    );
    drop((members, dan, outsider));
    live.stop().await;
}

async fn room_access_follows_tickets(db: TestDb) {
    let mut s = live_settings();
    s.ticket_cache_ms = 100;
    // The test re-joins in a loop until the cancellation shows.
    s.limits.ops_per_sec = 100_000;
    s.limits.ops_burst = 100_000;
    let live = start(db, s).await;
    let srv = &live.srv;
    let (owner, event, session) = srv.seed("acme", "olive", 10).await;
    let other_session = srv.add_session(&owner, &event, 10).await;

    let mut nobody = attendee(srv, "nobody", "acme", Codec::Json).await;
    assert_eq!(
        code(&nobody.join(&format!("session:{session}"), 0, None).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(&nobody.join(&format!("event:{event}"), 0, None).await),
        ErrorCode::Forbidden
    );

    let holder_token = srv.token("hal", "acme", Role::Attendee, &[]);
    let ticket = srv.buy(&holder_token, &session).await;
    let mut hal = Client::connect(&srv.url(), &holder_token, Codec::Json).await;
    assert!(matches!(
        hal.join(&format!("session:{session}"), 0, None).await,
        Event::RoomJoined(_)
    ));
    assert!(
        matches!(
            hal.join(&format!("event:{event}"), 0, None).await,
            Event::RoomJoined(_)
        ),
        "a ticket for any session opens the event room"
    );
    assert_eq!(
        code(&hal.join(&format!("session:{other_session}"), 0, None).await),
        ErrorCode::Forbidden,
        "not another session"
    );
    // The same ids in another org mean nothing.
    let mut stranger = attendee(srv, "hal", "other-org", Codec::Json).await;
    assert_eq!(
        code(&stranger.join(&format!("session:{session}"), 0, None).await),
        ErrorCode::Forbidden
    );

    // A cancelled ticket stops new joins within the cache bound (100 ms here).
    let (status, body) = srv
        .post(
            &format!("/tickets/{ticket}/cancel"),
            &holder_token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let refused = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Event::Error(e) = hal.join(&format!("session:{session}"), 0, None).await {
                break e.code;
            }
            hal.leave(&format!("session:{session}")).await;
        }
    })
    .await
    .expect("the cancellation takes effect within the cache bound");
    assert_eq!(refused, ErrorCode::Forbidden);

    // The `rooms` claim stays a fast path without any ticket.
    let granted = srv.token(
        "gus",
        "acme",
        Role::Attendee,
        &[&format!("session:{other_session}")],
    );
    let mut gus = Client::connect(&srv.url(), &granted, Codec::MsgPack).await;
    assert!(matches!(
        gus.join(&format!("session:{other_session}"), 0, None).await,
        Event::RoomJoined(_)
    ));
    drop((nobody, hal, stranger, gus));
    live.stop().await;
}

async fn questions_are_asked_upvoted_and_hidden(db: TestDb) {
    let live = start(db, live_settings()).await;
    let srv = &live.srv;
    let (owner, event, session) = srv.seed("acme", "olive", 10).await;
    let room = format!("session:{session}");
    let mut clients = Vec::new();
    for user in ["ann", "bob", "cat"] {
        let token = srv.token(user, "acme", Role::Attendee, &[]);
        srv.buy(&token, &session).await;
        let mut c = Client::connect(&srv.url(), &token, Codec::Json).await;
        c.joined(&room).await;
        clients.push(c);
    }
    let q = match clients[0].ask(&room, "Will the slides be shared?").await {
        Event::Ack(a) => a.question.expect("ACK carries the question id"),
        other => panic!("{other:?}"),
    };
    for c in &mut clients {
        let asked = c
            .next_where(|e| match e {
                Event::QuestionAsked(a) => Some(a),
                _ => None,
            })
            .await;
        assert_eq!(
            (
                asked.question.id.as_str(),
                asked.question.user.as_str(),
                asked.question.votes
            ),
            (q.as_str(), "ann", 0)
        );
    }
    assert!(is_ack(&clients[1].upvote(&q).await));
    assert!(is_ack(&clients[2].upvote(&q).await));
    assert_eq!(
        code(&clients[1].upvote(&q).await),
        ErrorCode::Conflict,
        "one upvote per user"
    );
    assert_eq!(
        code(&clients[1].upvote("no-such-question").await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(
            &clients[1]
                .ask(&format!("event:{event}"), "wrong room")
                .await
        ),
        ErrorCode::BadRequest
    );
    for c in &mut clients {
        c.next_where(|e| match e {
            Event::QuestionUpdated(u) if u.question == q && u.votes == 2 && u.hidden.is_none() => {
                Some(())
            }
            _ => None,
        })
        .await;
    }
    let (status, body) = srv
        .post(&format!("/questions/{q}/hide"), &owner, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    for c in &mut clients {
        let hidden: QuestionUpdated = c
            .next_where(|e| match e {
                Event::QuestionUpdated(u) if u.hidden == Some(true) => Some(u),
                _ => None,
            })
            .await;
        assert_eq!((hidden.question.as_str(), hidden.votes), (q.as_str(), 2));
    }
    drop(clients);
    live.stop().await;
}

async fn chat_is_archived_beyond_the_window(db: TestDb) {
    let mut s = live_settings();
    s.history.size = 3;
    let live = start(db, s).await;
    let srv = &live.srv;
    let (owner, _event, session) = srv.seed("acme", "olive", 10).await;
    let room = format!("session:{session}");
    let mut c = Client::connect(&srv.url(), &owner, Codec::MsgPack).await;
    for i in 1..=7 {
        assert!(is_ack(
            &c.say(&room, &format!("m{i}"), Some(&format!("c{i}"))).await
        ));
    }
    assert!(
        is_ack(&c.say(&room, "m7", Some("c7")).await),
        "a resend is acknowledged"
    );
    let Event::RoomJoined(j) = c.join(&room, 100, None).await else {
        panic!()
    };
    assert_eq!(j.history.len(), 3, "the broker keeps only its window");
    // REST pages the archive, newest first, beyond the window; the resend was stored once.
    let mut texts = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/rooms/{room}/messages?limit=3&before={c}"),
            None => format!("/rooms/{room}/messages?limit=3"),
        };
        let (status, page) = srv.get(&path, &owner).await;
        assert_eq!(status, 200, "{page}");
        for m in page["items"].as_array().unwrap() {
            texts.push((
                m["offset"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    texts.reverse();
    assert_eq!(
        texts,
        (1..=7).map(|i| (i, format!("m{i}"))).collect::<Vec<_>>()
    );
    drop(c);
    live.stop().await;
}

/// Makes the archive refuse every message whose text starts with `poison` (a trigger in the
/// database itself, so the engine runs unchanged), or accept them again.
async fn poison_archive(db_url: &str, on: bool) {
    let sql: &[&'static str] = match (db_url.starts_with("postgres"), on) {
        (true, true) => &[
            "create function evd_poison() returns trigger language plpgsql as $$ \
             begin if new.text like 'poison%' then raise exception 'injected'; end if; \
             return new; end $$",
            "create trigger evd_poison before insert on chat_messages \
             for each row execute function evd_poison()",
        ],
        (true, false) => &[
            "drop trigger evd_poison on chat_messages",
            "drop function evd_poison",
        ],
        (false, true) => &["create trigger evd_poison before insert on chat_messages \
             when new.text like 'poison%' begin select raise(abort, 'injected'); end"],
        (false, false) => &["drop trigger evd_poison"],
    };
    for q in sql {
        if db_url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(db_url).await.unwrap();
            sqlx::query(*q).execute(&pool).await.unwrap();
            pool.close().await;
        } else {
            let pool = sqlx::SqlitePool::connect(db_url).await.unwrap();
            sqlx::query(*q).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

/// The archive fails (every try the engine makes): the message was published but the sender
/// gets an error, not an `ACK`. Its resend with the same `client_id` is a duplicate for the
/// broker, but it archives the original before it is acknowledged: the archive then holds every
/// acknowledged message, once, at its offset, with its original id.
async fn a_message_whose_archive_failed_is_archived_by_its_resend(db: TestDb) {
    let url = db.url.clone();
    let live = start(db, live_settings()).await;
    let srv = &live.srv;
    let (owner, _event, session) = srv.seed("acme", "olive", 10).await;
    let room = format!("session:{session}");
    let mut c = Client::connect(&srv.url(), &owner, Codec::Json).await;
    let mut watcher = Client::connect(&srv.url(), &owner, Codec::Json).await;
    watcher.join(&room, 0, None).await;
    assert!(is_ack(&c.say(&room, "before", Some("b")).await));
    poison_archive(&url, true).await;
    match c.say(&room, "poison-1", Some("p1")).await {
        Event::Error(e) => assert_eq!(e.code, ErrorCode::Internal, "{e:?}"),
        other => panic!("the archive failed, yet: {other:?}"),
    }
    let delivered = watcher.message().await;
    assert_eq!(delivered.text, "before");
    let delivered = watcher.message().await;
    assert_eq!(delivered.text, "poison-1", "it was published");
    poison_archive(&url, false).await;
    let Event::Ack(ack) = c.say(&room, "poison-1", Some("p1")).await else {
        panic!("the resend is acknowledged")
    };
    assert_eq!(ack.offset, Some(delivered.offset), "as the original");
    assert!(is_ack(&c.say(&room, "after", Some("a")).await));
    let (status, page) = srv.get(&format!("/rooms/{room}/messages"), &owner).await;
    assert_eq!(status, 200, "{page}");
    let archived: Vec<(u64, String, String)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|m| {
            (
                m["offset"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_owned(),
                m["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let texts: Vec<&str> = archived.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(
        texts,
        ["before", "poison-1", "after"],
        "once each, in order"
    );
    assert_eq!(
        (archived[1].0, archived[1].2.as_str()),
        (delivered.offset, delivered.id.as_str()),
        "at the offset and under the id its members saw"
    );
    drop((c, watcher));
    live.stop().await;
}

/// A publisher that sends without waiting: each `send_message` publishes at once and its ACK
/// follows the archive's commit, while later ops run. The replies still come in the ops' order,
/// an immediate reply (an error, a pong) waits behind the ACKs before it, and every message is
/// archived.
async fn pipelined_messages_are_acknowledged_in_order_after_their_archive(db: TestDb) {
    let s = live_settings();
    let too_long = s.limits.max_text_bytes + 1;
    let live = start(db, s).await;
    let srv = &live.srv;
    let (owner, _event, session) = srv.seed("acme", "olive", 10).await;
    let name = format!("session:{session}");
    let mut c = Client::connect(&srv.url(), &owner, Codec::Json).await;
    let say = |text: String| {
        Op::SendMessage(SendMessage {
            room: room(&name),
            text,
            client_id: None,
        })
    };
    let mut refs = Vec::new();
    for i in 1..=40 {
        refs.push(c.send(say(format!("m{i}"))).await);
    }
    let refused = c.send(say("x".repeat(too_long))).await;
    for i in 41..=50 {
        refs.push(c.send(say(format!("m{i}"))).await);
    }
    let ping = c.send(Op::Ping(Ping {})).await;
    let mut replies = Vec::new();
    while replies.len() < 52 {
        let e = c.next().await;
        if e.reply_ref().is_some() {
            replies.push(e);
        }
    }
    let order: Vec<i64> = replies.iter().filter_map(Event::reply_ref).collect();
    let mut want = refs[..40].to_vec();
    want.push(refused);
    want.extend(&refs[40..]);
    want.push(ping);
    assert_eq!(order, want, "replies in the order of the ops");
    let offsets: Vec<u64> = replies
        .iter()
        .filter_map(|e| match e {
            Event::Ack(a) => a.offset,
            _ => None,
        })
        .collect();
    assert_eq!(offsets, (1..=50).collect::<Vec<u64>>());
    assert_eq!(code(&replies[40]), ErrorCode::TooLarge);
    assert!(matches!(replies[51], Event::Pong(_)));
    // Every ACKed message is in the archive.
    let (status, page) = srv
        .get(&format!("/rooms/{name}/messages?limit=100"), &owner)
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 50, "{page}");
    drop(c);
    live.stop().await;
}

async fn waitlist_offers_move_down_the_line(db: TestDb) {
    let live = start(db, live_settings()).await;
    let srv = &live.srv;
    let (owner, _event, session) = srv.seed("acme", "olive", 1).await;
    let holder = srv.token("hal", "acme", Role::Attendee, &[]);
    let seat = srv.buy(&holder, &session).await;
    let mut line = Vec::new();
    for (user, tier) in [
        ("bob", None),
        ("vic", Some(Tier::Vip)),
        ("lou", None),
        ("wes", None),
        ("xen", None),
    ] {
        let token = srv.token_with(user, "acme", Role::Attendee, tier, &[]);
        let client = Client::connect(&srv.url(), &token, Codec::Json).await;
        let (status, body) = srv
            .post(&format!("/sessions/{session}/waitlist"), &token, json!({}))
            .await;
        assert_eq!(status, 201, "{body}");
        line.push((token, client));
    }
    let [
        (bob_t, mut bob),
        (_, mut vic),
        (_, mut lou),
        (_, mut wes),
        (_, mut xen),
    ] = <[(String, Client); 5]>::try_from(line).unwrap_or_else(|_| unreachable!());

    // A cancelled ticket offers the seat: VIP first, although Bob joined earlier.
    let (status, body) = srv
        .post(&format!("/tickets/{seat}/cancel"), &holder, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let to_vic = vic.offer().await;
    assert_eq!(to_vic.session, session);
    assert!(to_vic.outbox_id.is_some());
    // The others hear their new place in line.
    let update = bob
        .next_where(|e| match e {
            Event::WaitlistUpdate(u) if u.position == Some(1) => Some(u),
            _ => None,
        })
        .await;
    assert_eq!(
        (update.session.as_str(), update.status),
        (session.as_str(), WaitlistStatus::Waiting)
    );

    // Declining passes the seat to the next in line; an answered offer cannot be taken.
    assert!(is_ack(&vic.decline(&to_vic.offer).await));
    assert_eq!(code(&vic.accept(&to_vic.offer).await), ErrorCode::Conflict);
    let to_bob = bob.offer().await;
    assert_eq!(
        code(&lou.accept(&to_bob.offer).await),
        ErrorCode::NotFound,
        "offers are personal"
    );
    let ticket = match bob.accept(&to_bob.offer).await {
        Event::Ack(a) => a.ticket.expect("ACK carries the ticket"),
        other => panic!("{other:?}"),
    };
    match bob.accept(&to_bob.offer).await {
        Event::Ack(a) => assert_eq!(
            a.ticket.as_deref(),
            Some(ticket.as_str()),
            "a resent accept gets the same ticket"
        ),
        other => panic!("{other:?}"),
    }
    let (_, mine) = srv.get("/tickets", &bob_t).await;
    assert!(
        mine["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == ticket.as_str()),
        "{mine}"
    );

    // An offer left to lapse moves on to the next person by itself.
    let (status, _) = srv
        .post(&format!("/tickets/{ticket}/cancel"), &bob_t, json!({}))
        .await;
    assert_eq!(status, 200);
    let to_lou = lou.offer().await;
    live.clock
        .advance(live.srv.node.settings.api.offer_ttl_secs as i64 * 1000 + 1);
    live.store.sweep(100).await.unwrap();
    let to_wes = wes.offer().await;
    assert_ne!(to_wes.offer, to_lou.offer);
    assert_eq!(
        code(&lou.accept(&to_lou.offer).await),
        ErrorCode::Conflict,
        "the offer has lapsed"
    );

    // An organizer who adds a seat offers it to the next person.
    let (status, body) = srv
        .rest(
            reqwest::Method::PATCH,
            &format!("/sessions/{session}"),
            &owner,
            Some(json!({"capacity": 2})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = srv
        .post(
            &format!("/sessions/{session}/waitlist/offers"),
            &owner,
            json!({"count": 1}),
        )
        .await;
    assert!(status < 300, "{status} {body}");
    let to_xen = xen.offer().await;
    assert_eq!(to_xen.session, session);
    assert!(matches!(xen.accept(&to_xen.offer).await, Event::Ack(_)));
    drop((bob, vic, lou, wes, xen));
    live.stop().await;
}

/// The catch-up lookups of connections opened together are one read: each connection still
/// gets its own user's open offers, and only those.
async fn open_offers_reach_the_connections_their_users_open_later(db: TestDb) {
    let live = start(db, live_settings()).await;
    let srv = &live.srv;
    let (_owner, _event, session) = srv.seed("acme", "olive", 2).await;
    let holders = [
        srv.token("hal", "acme", Role::Attendee, &[]),
        srv.token("ian", "acme", Role::Attendee, &[]),
    ];
    let mut seats = Vec::new();
    for h in &holders {
        seats.push(srv.buy(h, &session).await);
    }
    // Three in line, none of them connected; two seats free up, so Amy and Ben get offers.
    let tokens: Vec<String> = ["amy", "ben", "cal"]
        .iter()
        .map(|u| srv.token(u, "acme", Role::Attendee, &[]))
        .collect();
    for t in &tokens {
        let (status, body) = srv
            .post(&format!("/sessions/{session}/waitlist"), t, json!({}))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    for (h, seat) in holders.iter().zip(&seats) {
        let (status, body) = srv
            .post(&format!("/tickets/{seat}/cancel"), h, json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let mut offer_of = Vec::new();
    for t in &tokens {
        let (status, page) = srv.get("/offers", t).await;
        assert_eq!(status, 200, "{page}");
        let ids: Vec<String> = page
            .as_array()
            .expect("a list of offers")
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect();
        offer_of.push(ids);
    }
    assert_eq!(offer_of[0].len(), 1, "{offer_of:?}");
    assert_eq!(offer_of[1].len(), 1, "{offer_of:?}");
    assert!(offer_of[2].is_empty(), "{offer_of:?}");

    // Amy twice, Ben and Cal: four connections at once.
    let url = srv.url();
    let (amy, amy_again, ben, mut cal) = tokio::join!(
        Client::connect(&url, &tokens[0], Codec::Json),
        Client::connect(&url, &tokens[0], Codec::Json),
        Client::connect(&url, &tokens[1], Codec::Json),
        Client::connect(&url, &tokens[2], Codec::MsgPack),
    );
    for (mut client, want) in [
        (amy, &offer_of[0]),
        (amy_again, &offer_of[0]),
        (ben, &offer_of[1]),
    ] {
        let got = client.offer().await;
        assert_eq!(&vec![got.offer], want);
        assert_eq!(got.session, session);
    }
    // Cal has no offer: none comes within several batching windows.
    let quiet_until = tokio::time::Instant::now() + std::time::Duration::from_millis(500);
    loop {
        let left = quiet_until.saturating_duration_since(tokio::time::Instant::now());
        match cal.next_or_close(left).await {
            Ok(Some(Event::WaitlistOffer(o))) => panic!("Cal got someone's offer: {o:?}"),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(close) => panic!("closed: {close:?}"),
        }
    }
    live.stop().await;
}

async fn an_offer_committed_while_no_engine_runs_is_delivered_after_one_starts(db: TestDb) {
    let s = live_settings();
    // Only the REST API runs (`evd api`): the offer is committed with its outbox row.
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api_listener.local_addr().unwrap();
    let mut api_settings = s.api();
    api_settings.database_url = db.url.clone();
    let stop_api = tokio_util::sync::CancellationToken::new();
    let api = tokio::spawn(evd_api::run(api_listener, api_settings, stop_api.clone()));
    let base = format!("http://{api_addr}/api/v1");
    let signer = s.api.jwt.signer().unwrap();
    let token = |user: &str, role: Role| {
        signer
            .sign(&evd_protocol::auth::Claims::new(
                user,
                "acme",
                role,
                now(),
                3600,
            ))
            .unwrap()
    };
    let http = reqwest::Client::new();
    let post = |path: String, t: String, body: serde_json::Value| {
        let req = http
            .post(format!("{base}{path}"))
            .bearer_auth(t)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let owner = token("olive", Role::Owner);
    assert_eq!(
        post(
            "/orgs".into(),
            owner.clone(),
            json!({"id": "acme", "name": "acme"})
        )
        .await
        .0,
        201
    );
    let (_, event) = post(
        "/events".into(),
        owner.clone(),
        json!({"name": "E", "description": "", "status": "published",
               "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-03T18:00:00Z"}),
    )
    .await;
    let event = event["id"].as_str().unwrap().to_owned();
    let (_, session) = post(
        format!("/events/{event}/sessions"),
        owner.clone(),
        json!({"title": "S", "capacity": 1, "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-01T10:00:00Z"}),
    )
    .await;
    let session = session["id"].as_str().unwrap().to_owned();
    let (_, t) = post(
        format!("/sessions/{session}/tickets"),
        token("hal", Role::Attendee),
        json!({}),
    )
    .await;
    let seat = t["id"].as_str().unwrap().to_owned();
    assert!(
        post(
            format!("/sessions/{session}/waitlist"),
            token("bob", Role::Attendee),
            json!({})
        )
        .await
        .0 < 300
    );
    assert_eq!(
        post(
            format!("/tickets/{seat}/cancel"),
            token("hal", Role::Attendee),
            json!({})
        )
        .await
        .0,
        200
    );
    stop_api.cancel();
    api.await.unwrap().unwrap();
    assert!(
        unsent_outbox_rows(&db.url).await > 0,
        "the offer waits in the outbox"
    );

    // An engine starts over the same database: the row is relayed and Bob gets his offer.
    let live = start(db, s).await;
    let mut bob = Client::connect(
        &live.srv.url(),
        &live.srv.token("bob", "acme", Role::Attendee, &[]),
        Codec::Json,
    )
    .await;
    let offer = bob.offer().await;
    assert_eq!(offer.session, session);
    let relayed = tokio::time::timeout(PATIENCE, async {
        while unsent_outbox_rows(&live._db.url).await > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(relayed.is_ok(), "the relay marks the rows sent");
    assert!(matches!(bob.accept(&offer.offer).await, Event::Ack(_)));
    drop(bob);
    live.stop().await;
}

/// Rows not yet relayed, read with the test's own connection (the owner role, not `evd_app`).
async fn unsent_outbox_rows(url: &str) -> i64 {
    use sqlx::Connection;
    let sql = "select count(*) from outbox where sent_at is null";
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
    }
}

async fn a_burst_of_ten_thousand_votes_is_counted_exactly(db: TestDb) {
    const CLIENTS: usize = 1_000;
    const POLLS: usize = 10;
    let mut s = live_settings();
    s.tick_ms = 100;
    // This test counts every vote of a burst through to its `ACK`; the deadline that answers
    // votes `rate_limited` under overload has its own test.
    s.vote_wait_ms = 60_000;
    let tick = std::time::Duration::from_millis(s.tick_ms);
    let live = start(db, s).await;
    let srv = &live.srv;
    let (owner, _event, session) = srv.seed("acme", "olive", 10).await;
    let room = format!("session:{session}");
    let mut polls = Vec::new();
    for _ in 0..POLLS {
        polls.push(srv.create_poll(&owner, &session, &["a", "b", "c"]).await);
    }
    // 1,000 attendees (granted the room by their token) in the session room.
    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let token = srv.token(&format!("u{i}"), "acme", Role::Attendee, &[&room]);
        let codec = if i % 2 == 0 {
            Codec::Json
        } else {
            Codec::MsgPack
        };
        let mut c = Client::connect(&srv.url(), &token, codec).await;
        c.joined(&room).await;
        clients.push(c);
    }
    // Every client casts one vote in each poll, all sent at once: 10,000 votes within a second.
    let start_votes = std::time::Instant::now();
    let polls = Arc::new(polls);
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let polls = Arc::clone(&polls);
        tasks.push(tokio::spawn(async move {
            let mut refs = Vec::new();
            for (poll, options) in polls.iter() {
                let op = Op::SubmitPollResponse(SubmitPollResponse {
                    poll: poll.clone(),
                    option: options[i % 3].clone(),
                });
                refs.push(c.send(op).await);
            }
            for r in refs {
                let reply = c.reply(r).await;
                assert!(is_ack(&reply), "{reply:?}");
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.expect("all votes acknowledged"));
    }
    let sent_within = start_votes.elapsed();
    // Exact, durable counts: 334/333/333 per poll.
    let mut expected = Vec::new();
    for (poll, options) in polls.iter() {
        let (_, stored) = srv.get(&format!("/polls/{poll}/results"), &owner).await;
        let counts = votes_by_option(&stored);
        let want: BTreeMap<String, u64> = options
            .iter()
            .enumerate()
            .map(|(k, o)| (o.clone(), ((CLIENTS - k) as u64).div_ceil(3)))
            .collect();
        assert_eq!(counts, want, "nothing lost or double-counted in {poll}");
        expected.push((poll.clone(), counts));
    }
    // Every member ends on the exact counts, having received at most one POLL_RESULTS per poll
    // per tick.
    let elapsed_ticks =
        |since: std::time::Instant| (since.elapsed().as_millis() / tick.as_millis()) as usize + 2;
    for c in clients.iter_mut().step_by(97) {
        let mut per_poll: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        while per_poll
            .values()
            .filter(|(_, total)| *total == CLIENTS as u64)
            .count()
            < POLLS
        {
            if let Event::PollResults(r) = c.next().await {
                let slot = per_poll.entry(r.poll.clone()).or_default();
                slot.0 += 1;
                slot.1 = r.total;
                let want = &expected.iter().find(|(p, _)| *p == r.poll).unwrap().1;
                assert!(
                    r.counts.iter().all(|(o, n)| n <= &want[o]),
                    "never above the stored count"
                );
                if r.total == CLIENTS as u64 {
                    assert_eq!(&r.counts, want, "the final POLL_RESULTS is exact");
                }
            }
        }
        let limit = elapsed_ticks(start_votes);
        assert!(
            per_poll.values().all(|(n, _)| *n <= limit),
            "{per_poll:?} in {limit} ticks"
        );
    }
    eprintln!("10,000 votes sent and acknowledged in {sent_within:?}");
    drop(clients);
    live.stop().await;
}

/// Starts `evd serve` over `url`.
async fn spawn_evd(url: &str) -> Evd {
    let mut cmd = evd_command(url);
    cmd.env("EVD_LIMITS_CONN_RATE_PER_IP", "0")
        .args(["serve", "--listen", "127.0.0.1:0"]);
    Evd::spawn(cmd, None).await
}

async fn a_vote_acknowledged_before_a_crash_is_kept(db: TestDb) {
    let mut first = spawn_evd(&db.url).await;
    let remote = first.remote();
    let (owner, _event, session) = remote.seed("acme", "olive", 10).await;
    let (poll, options) = remote.create_poll(&owner, &session, &["yes", "no"]).await;
    let token = remote.token_with(
        "ann",
        "acme",
        Role::Attendee,
        None,
        &[&format!("session:{session}")],
    );
    let mut ann = Client::connect(&first.url, &token, Codec::Json).await;
    assert!(is_ack(&ann.vote(&poll, &options[1]).await));
    // SIGKILL right after the ACK: no drain, no flush.
    assert!(first.signal("KILL").await);
    first.child.wait().await.unwrap();
    drop(ann);

    let mut second = spawn_evd(&db.url).await;
    let remote = second.remote();
    let (status, results) = remote.get(&format!("/polls/{poll}/results"), &owner).await;
    assert_eq!(status, 200, "{results}");
    assert_eq!(results["total"], 1, "{results}");
    let no = results["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == options[1].as_str())
        .unwrap();
    assert_eq!(no["votes"], 1);
    second.signal("TERM").await;
    tokio::time::timeout(PATIENCE, second.child.wait())
        .await
        .expect("drains and exits")
        .unwrap();
}

async fn readyz_fails_while_the_store_does_not_answer(db: TestDb) {
    let live = start(db, live_settings()).await;
    let readyz = || async {
        let r = reqwest::get(live.srv.http("/readyz")).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(readyz().await, (200, "ready".to_owned()));
    // Closing refuses new acquires at once, then waits for the connections in use (on
    // PostgreSQL the outbox relay holds one until the engine stops): not awaited here.
    let store = live.store.clone();
    let closing = tokio::spawn(async move { store.close().await });
    let (status, body) = readyz().await;
    assert_eq!(status, 503);
    assert!(body.starts_with("store unavailable"), "{body}");
    live.stop().await;
    closing.await.unwrap();
}

/// Holds the store's write lock for votes from another connection until the returned guard is
/// sent `()`: on PostgreSQL a lock on `poll_votes` that blocks inserts, on SQLite an open write
/// transaction (the engine's next write waits for it, up to the busy timeout).
async fn stall_votes(db_url: &str) -> tokio::sync::oneshot::Sender<()> {
    use sqlx::Connection;
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (locked_tx, locked) = tokio::sync::oneshot::channel();
    let url = db_url.to_owned();
    tokio::spawn(async move {
        if url.starts_with("postgres") {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query("begin").execute(&mut c).await.unwrap();
            sqlx::query("lock table poll_votes in exclusive mode")
                .execute(&mut c)
                .await
                .unwrap();
            locked_tx.send(()).unwrap();
            let _ = released.await;
            sqlx::query("rollback").execute(&mut c).await.unwrap();
        } else {
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("begin immediate")
                .execute(&mut c)
                .await
                .unwrap();
            locked_tx.send(()).unwrap();
            let _ = released.await;
            sqlx::query("rollback").execute(&mut c).await.unwrap();
        }
    });
    locked.await.unwrap();
    release
}

/// A stalled store: the vote in flight waits for its commit, but the vote queued behind it is
/// answered `rate_limited` with `retry_after_ms` once `vote_wait_ms` has passed, not after the
/// stall. It is never recorded; its retry after the stall is a first vote, `ACK`ed, and the
/// members' last `POLL_RESULTS` has both votes.
async fn a_vote_the_store_cannot_take_in_time_is_rate_limited_and_not_recorded(db: TestDb) {
    let mut s = live_settings();
    s.vote_wait_ms = 200;
    let url = db.url.clone();
    let live = start(db, s).await;
    let srv = &live.srv;
    let (owner, _event, session) = srv.seed("acme", "olive", 10).await;
    let room = format!("session:{session}");
    let (poll, options) = srv.create_poll(&owner, &session, &["yes", "no"]).await;
    let mut voters = Vec::new();
    for user in ["ann", "bob"] {
        let token = srv.token(user, "acme", Role::Attendee, &[&room]);
        let mut c = Client::connect(&srv.url(), &token, Codec::Json).await;
        c.joined(&room).await;
        voters.push(c);
    }
    let [mut ann, mut bob] = <[Client; 2]>::try_from(voters).ok().unwrap();

    let release = stall_votes(&url).await;
    // Ann's vote is taken into a commit, which waits for the lock. A batch's size is recorded
    // before its commit, so the count rising says Ann's vote is in one.
    let batches = || async {
        metric(
            &srv.metrics().await,
            "evd_group_commit_batch_size_count",
            "writer=\"votes\"",
        )
    };
    let batches_before = batches().await;
    let ann_ref = ann
        .send(Op::SubmitPollResponse(SubmitPollResponse {
            poll: poll.clone(),
            option: options[0].clone(),
        }))
        .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while batches().await <= batches_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Ann's vote was never taken into a batch"
        );
        tokio::task::yield_now().await;
    }
    // Bob's vote queues behind it and is refused at its deadline, the stall still on.
    let refused = bob.vote(&poll, &options[1]).await;
    match &refused {
        Event::Error(e) => {
            assert_eq!(e.code, ErrorCode::RateLimited, "{refused:?}");
            assert!(e.retry_after_ms.is_some_and(|ms| ms > 0), "{refused:?}");
        }
        other => panic!("expected rate_limited, got {other:?}"),
    }
    release.send(()).unwrap();
    assert!(
        is_ack(&ann.reply(ann_ref).await),
        "the vote in flight commits"
    );
    let (_, stored) = srv.get(&format!("/polls/{poll}/results"), &owner).await;
    assert_eq!(
        stored["total"], 1,
        "the refused vote was not recorded: {stored}"
    );

    // The retry is a first vote.
    let retried = bob.vote(&poll, &options[1]).await;
    assert!(is_ack(&retried), "{retried:?}");
    let (_, stored) = srv.get(&format!("/polls/{poll}/results"), &owner).await;
    assert_eq!(
        votes_by_option(&stored).values().sum::<u64>(),
        2,
        "{stored}"
    );
    let last = ann
        .next_where(|e| match e {
            Event::PollResults(r) if r.total == 2 => Some(r),
            _ => None,
        })
        .await;
    assert_eq!(last.counts, votes_by_option(&stored));
    drop((ann, bob));
    live.stop().await;
}

/// With the tick at its slowest (`tick_ms` = `tick_max_ms` = 1 s, as on a busy node), votes
/// cast together are coalesced, and every member still ends on the stored counts: the last
/// change always goes out, and no `POLL_RESULTS` goes back.
async fn the_last_tally_reaches_every_member_when_the_tick_is_slow(db: TestDb) {
    const VOTERS: usize = 6;
    let mut s = live_settings();
    s.tick_ms = 1_000;
    s.tick_max_ms = 1_000;
    let live = start(db, s).await;
    let srv = &live.srv;
    let (owner, _event, session) = srv.seed("acme", "olive", 10).await;
    let room = format!("session:{session}");
    let (poll, options) = srv.create_poll(&owner, &session, &["a", "b", "c"]).await;
    let mut members = Vec::new();
    for i in 0..VOTERS {
        let token = srv.token(&format!("u{i}"), "acme", Role::Attendee, &[&room]);
        let mut c = Client::connect(&srv.url(), &token, Codec::Json).await;
        c.joined(&room).await;
        members.push(c);
    }
    let mut refs = Vec::new();
    for (i, c) in members.iter_mut().enumerate() {
        let op = Op::SubmitPollResponse(SubmitPollResponse {
            poll: poll.clone(),
            option: options[i % options.len()].clone(),
        });
        refs.push(c.send(op).await);
    }
    for (c, r) in members.iter_mut().zip(refs) {
        let reply = c.reply(r).await;
        assert!(is_ack(&reply), "{reply:?}");
    }
    let (_, stored) = srv.get(&format!("/polls/{poll}/results"), &owner).await;
    let want = votes_by_option(&stored);
    assert_eq!(want.values().sum::<u64>(), VOTERS as u64, "{stored}");
    for c in &mut members {
        let mut last_total = 0;
        loop {
            let Event::PollResults(r) = c.next().await else {
                continue;
            };
            assert!(r.total >= last_total, "a tally never goes back");
            last_total = r.total;
            if r.total == VOTERS as u64 {
                assert_eq!(
                    r.counts, want,
                    "the last POLL_RESULTS has the stored counts"
                );
                break;
            }
        }
    }
    drop(members);
    live.stop().await;
}
