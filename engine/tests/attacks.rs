//! The attack catalogue in one place: each way in an attacker would try first, and the refusal
//! docs/security.md documents for it (the same list, in the same order). Every refusal is also
//! checked for leaks: an upgrade's 401 body never echoes the token or the key, and another org's
//! data never reaches a socket or a REST answer.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use evd_api::clock::Clock;
use evd_api::store::SqlStore;
use evd_api::test_util::TestDb;
use evd_protocol::auth::{Audience, Claims, JwtAlgorithm, KeySpec, Role, Signer};
use evd_protocol::event::Event;
use evd_protocol::op::{JoinRoom, Op, Ping, Refresh, SubmitPollResponse};
use evd_protocol::{Codec, ErrorCode};
use futures_util::SinkExt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;

/// The key files the protocol crate tests with.
fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/testdata")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).unwrap()
}

fn close_code(f: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> u16 {
    f.map_or(0, |f| f.code.into())
}

/// The upgrade is refused with 401 and a message starting with `message`; the body echoes
/// neither token nor secret.
async fn refused_401(url: &str, token: &str, message: &str, why: &str) {
    let refused = try_connect(url, Some(token), &[], None)
        .await
        .expect_err(why);
    assert_eq!(refused.status, 401, "{why}: {}", refused.body);
    let body: serde_json::Value = serde_json::from_str(&refused.body).expect("JSON body");
    assert_eq!(body["error"], "unauthorized", "{why}");
    let got = body["message"].as_str().unwrap_or_default();
    assert!(got.starts_with(message), "{why}: {got}");
    assert!(!refused.body.contains(SECRET), "{why}: the secret leaked");
    if let Some(sig) = token.rsplit('.').next().filter(|s| s.len() > 8) {
        assert!(!refused.body.contains(sig), "{why}: the token echoed");
    }
}

fn alg_none(claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_string(claims).unwrap());
    format!("{header}.{body}.")
}

/// Catalogue 1–6: forged and stale tokens at the door of an HS256 server with `aud` and `iss`.
#[tokio::test]
async fn forged_expired_and_misaddressed_tokens_are_refused_at_the_upgrade() {
    let mut s = settings();
    s.api.jwt.audience = vec!["evd".into()];
    s.api.jwt.issuer = vec!["https://issuer.example".into()];
    let srv = TestServer::with(s).await;
    let url = srv.url();
    let mut good = Claims::new("u1", "o1", Role::Organizer, now(), 600);
    good.aud = Some(Audience::One("evd".into()));
    good.iss = Some("https://issuer.example".into());
    let signer = srv.node.settings.api.jwt.signer().unwrap();

    let none = alg_none(&good);
    // `none` is no algorithm the token library knows, so the header itself does not parse.
    refused_401(
        &url,
        &none,
        "invalid token: unknown variant `none`",
        "alg none",
    )
    .await;

    let other = Signer::new(KeySpec::Hs256(b"not-the-server-secret-not-the-server")).unwrap();
    let wrong_key = other.sign(&good).unwrap();
    refused_401(&url, &wrong_key, "invalid token signature", "wrong key").await;

    let rsa = Signer::new(KeySpec::Rs256Pem(&read("rs256-private.pem"))).unwrap();
    let rs256 = rsa.sign(&good).unwrap();
    refused_401(
        &url,
        &rs256,
        "token algorithm not accepted",
        "RS256 on HS256",
    )
    .await;
    let ec = Signer::new(KeySpec::Es256Pem(&read("es256-private.pem"))).unwrap();
    let es256 = ec.sign(&good).unwrap();
    refused_401(
        &url,
        &es256,
        "token algorithm not accepted",
        "ES256 on HS256",
    )
    .await;

    let mut expired = good.clone();
    expired.iat = Some(now() - 7_200);
    expired.exp = now() - 3_600;
    let expired = signer.sign(&expired).unwrap();
    refused_401(&url, &expired, "token expired", "expired").await;

    let mut wrong_aud = good.clone();
    wrong_aud.aud = Some(Audience::One("another-service".into()));
    let wrong_aud = signer.sign(&wrong_aud).unwrap();
    refused_401(&url, &wrong_aud, "invalid token audience", "wrong aud").await;
    let mut wrong_iss = good.clone();
    wrong_iss.iss = Some("https://evil.example".into());
    let wrong_iss = signer.sign(&wrong_iss).unwrap();
    refused_401(&url, &wrong_iss, "invalid token issuer", "wrong iss").await;
    let mut no_aud = good.clone();
    no_aud.aud = None;
    let no_aud = signer.sign(&no_aud).unwrap();
    refused_401(
        &url,
        &no_aud,
        "invalid token: missing claim `aud`",
        "no aud",
    )
    .await;

    // The control: the same claims, rightly signed, get in. And a forged token is no better as
    // a `refresh` of a live connection.
    let mut c = Client::connect(&url, &signer.sign(&good).unwrap(), Codec::Json).await;
    for forged in [none, wrong_key, rs256, expired, wrong_aud] {
        let r = c.send(Op::Refresh(Refresh { token: forged })).await;
        match c.reply(r).await {
            Event::Error(e) => assert_eq!(e.code, ErrorCode::Unauthorized, "{e:?}"),
            other => panic!("a forged refresh was taken: {other:?}"),
        }
    }
    assert!(matches!(c.ping().await, Event::Pong(_)));
    srv.shutdown().await;
}

/// Catalogue 3, the reverse: on an RS256 server, an HS256 token "signed" with the server's own
/// public key as the HMAC secret (the classic key confusion).
#[tokio::test]
async fn an_hs256_token_keyed_with_the_rs256_public_key_is_refused() {
    let mut s = settings();
    s.api.jwt.algorithm = JwtAlgorithm::RS256;
    s.api.jwt.secret = None;
    s.api.jwt.public_key_path = Some(testdata("rs256-public.pem"));
    let srv = TestServer::with(s).await;
    let claims = Claims::new("u1", "o1", Role::Owner, now(), 600);
    let confused = Signer::new(KeySpec::Hs256(&read("rs256-public.pem")))
        .unwrap()
        .sign(&claims)
        .unwrap();
    refused_401(
        &srv.url(),
        &confused,
        "token algorithm not accepted",
        "HS256 keyed with the public key",
    )
    .await;
    let real = Signer::new(KeySpec::Rs256Pem(&read("rs256-private.pem")))
        .unwrap()
        .sign(&claims)
        .unwrap();
    Client::connect(&srv.url(), &real, Codec::MsgPack).await;
    srv.shutdown().await;
}

/// Catalogue 7: a token of org B on org A's room names and REST ids, guessed or known.
#[tokio::test]
async fn another_orgs_token_reaches_nothing_of_the_org() {
    let db = TestDb::sqlite();
    let s = settings();
    let store = Arc::new(
        SqlStore::connect(&db.url, &s.api().store_config(), Clock::system())
            .await
            .unwrap(),
    );
    let srv = TestServer::with_store(s, store.clone()).await;
    let (a_owner, event, session) = srv.seed("orga", "alice", 10).await;
    let (poll, options) = srv.create_poll(&a_owner, &session, &["yes", "no"]).await;
    let (b_owner, _, _) = srv.seed("orgb", "mallory", 10).await;

    // REST: every id of org A is "not found" to org B, with nothing of A in the answer.
    for path in [
        format!("/events/{event}"),
        format!("/events/{event}/sessions"),
        format!("/sessions/{session}/tickets"),
        format!("/polls/{poll}"),
        format!("/polls/{poll}/results"),
    ] {
        let (status, body) = srv.get(&path, &b_owner).await;
        assert_eq!(status, 404, "{path}: {body}");
        let text = body.to_string();
        assert!(
            !text.contains("Launch week") && !text.contains("Which?"),
            "{path}: {text}"
        );
    }
    let (status, _) = srv
        .post(
            &format!("/sessions/{session}/tickets"),
            &b_owner,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 404, "buying a seat of org A");

    // WebSocket: the same room name in org B is another room.
    let room = format!("session:{session}");
    let mut alice = Client::connect(
        &srv.url(),
        &srv.token_with("alice", "orga", Role::Organizer, None, &[]),
        Codec::Json,
    )
    .await;
    alice.joined(&room).await;
    alice.say(&room, "org A only", None).await;
    let mut mallory = Client::connect(
        &srv.url(),
        &srv.token_with("mallory", "orgb", Role::Owner, None, &[]),
        Codec::Json,
    )
    .await;
    let r = mallory
        .send(Op::JoinRoom(JoinRoom {
            room: room.parse().unwrap(),
            history: 100,
            recover: None,
        }))
        .await;
    match mallory.reply(r).await {
        Event::RoomJoined(j) => {
            assert_eq!((j.offset, j.history.len()), (0, 0), "org A's history");
            assert_eq!(j.presence.count, 1, "org A's members");
        }
        other => panic!("{other:?}"),
    }
    alice.say(&room, "still org A only", None).await;
    let vote = mallory
        .send(Op::SubmitPollResponse(SubmitPollResponse {
            poll: poll.clone(),
            option: options[0].clone(),
        }))
        .await;
    match mallory.reply(vote).await {
        Event::Error(e) => assert_eq!(e.code, ErrorCode::NotFound, "{e:?}"),
        other => panic!("voted in org A's poll: {other:?}"),
    }
    // Everything mallory received up to a PONG: no message of org A among it.
    let pong = mallory.send(Op::Ping(Ping {})).await;
    loop {
        let e = mallory.next().await;
        assert!(
            !matches!(e, Event::MessageReceived(_)),
            "org A's chat leaked: {e:?}"
        );
        if matches!(&e, Event::Pong(p) if p.r#ref == Some(pong)) {
            break;
        }
    }
    // An attendee of org B without a grant or ticket may not even join the guessed name.
    let mut eve = Client::connect(
        &srv.url(),
        &srv.token_with("eve", "orgb", Role::Attendee, None, &[]),
        Codec::Json,
    )
    .await;
    match eve.join(&room, 0, None).await {
        Event::Error(e) => assert_eq!(e.code, ErrorCode::Forbidden),
        other => panic!("{other:?}"),
    }
    srv.shutdown().await;
    store.close().await;
}

/// Catalogue 8: a frame over `limits.max_message_bytes`, in both codecs, closes with 1009.
#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let srv = TestServer::start().await;
    let over = srv.node.settings.limits.max_message_bytes + 1;
    let mut j = srv.client("u1", "o1", Role::Organizer, Codec::Json).await;
    j.send_raw(Message::Text("x".repeat(over).into())).await;
    assert_eq!(close_code(j.close_frame().await), 1009);
    let mut m = srv
        .client("u2", "o1", Role::Organizer, Codec::MsgPack)
        .await;
    m.send_raw(Message::Binary(vec![0xc0; over].into())).await;
    assert_eq!(close_code(m.close_frame().await), 1009);
    srv.shutdown().await;
}

/// Catalogue 9: a MessagePack frame nested as deep as the size limit allows is a bad frame
/// (it used to overflow a debug build's stack); the connection stays.
#[tokio::test]
async fn a_deeply_nested_frame_is_a_bad_request() {
    let srv = TestServer::start().await;
    let mut m = srv
        .client("u1", "o1", Role::Organizer, Codec::MsgPack)
        .await;
    let nested = [0x81, 0xa2, b'o', b'p'].repeat(srv.node.settings.limits.max_message_bytes / 5);
    m.send_raw(Message::Binary(nested.into())).await;
    match m.next().await {
        Event::Error(e) => assert_eq!(e.code, ErrorCode::BadRequest),
        other => panic!("{other:?}"),
    }
    assert!(matches!(m.ping().await, Event::Pong(_)), "still open");
    srv.shutdown().await;
}

/// Catalogue 10: a frame flood is rate limited, then closed with 4029.
#[tokio::test]
async fn a_frame_flood_is_rate_limited_then_closed_with_4029() {
    let mut s = settings();
    s.limits.ops_per_sec = 10;
    s.limits.ops_burst = 10;
    s.limits.flood_strikes = 5;
    let srv = TestServer::with(s).await;
    let mut c = srv.client("u1", "o1", Role::Attendee, Codec::Json).await;
    for _ in 0..200 {
        if c.ws
            .send(Message::Text(r#"{"op":"ping"}"#.into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let (events, close) = c.events_until_close().await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Error(err) if err.code == ErrorCode::RateLimited)),
        "rate_limited before the close"
    );
    assert_eq!(close_code(close), 4029);
    srv.shutdown().await;
}

/// Catalogue 11: joining many rooms stops at `limits.rooms_per_connection` (`ERROR conflict`),
/// and a client that keeps going is rate limited, then closed with 4029.
#[tokio::test]
async fn a_join_flood_over_many_rooms_is_capped_then_closed_with_4029() {
    let mut s = settings();
    s.limits.rooms_per_connection = 5;
    s.limits.ops_per_sec = 20;
    s.limits.ops_burst = 20;
    s.limits.flood_strikes = 5;
    let srv = TestServer::with(s).await;
    let mut c = srv.client("u1", "o1", Role::Organizer, Codec::Json).await;
    for i in 0..300 {
        let frame = format!(r#"{{"op":"join_room","ref":{i},"room":"event:E{i}"}}"#);
        if c.ws.send(Message::Text(frame.into())).await.is_err() {
            break;
        }
    }
    let (events, close) = c.events_until_close().await;
    let joined = events
        .iter()
        .filter(|e| matches!(e, Event::RoomJoined(j) if j.room.starts_with("event:")))
        .count();
    let code_seen = |code: ErrorCode| {
        events
            .iter()
            .any(|e| matches!(e, Event::Error(err) if err.code == code))
    };
    assert_eq!(joined, 5, "no more rooms than the limit");
    assert!(code_seen(ErrorCode::Conflict), "conflict past the limit");
    assert!(
        code_seen(ErrorCode::RateLimited),
        "rate_limited before the close"
    );
    assert_eq!(close_code(close), 4029);
    srv.shutdown().await;
}
