//! Waitlists with an injected clock: order, offers, expiry, accepts racing purchases.

use crate::common::{OFFER_TTL, TestApp};
use axum::http::{Method, StatusCode};
use evd_api::on_both_backends;
use evd_api::store::{OutboxStore, Sweeper};
use evd_protocol::auth::{Role, Tier};
use serde_json::{Value, json};
use std::sync::Arc;

on_both_backends!(
    "conformance", crate::common::TestApp::new;
    vip_goes_before_standard_and_each_tier_is_first_come_first_served,
    an_expired_offer_moves_to_the_next_person,
    accepting_after_expiry_answers_409,
    a_cancelled_ticket_produces_an_offer_and_its_outbox_row,
    declining_and_leaving_move_the_line,
    offer_accepts_racing_purchases_never_oversell,
    accept_retries_with_one_key_make_one_ticket,
);

const TTL_MS: i64 = OFFER_TTL.as_millis() as i64;

fn token(app: &TestApp, user: &str, tier: Tier) -> String {
    app.token_with_tier(user, "acme", Role::Attendee, Some(tier))
}

async fn join(app: &TestApp, session: &str, user: &str, tier: Tier) -> Value {
    let (status, entry) = app
        .call(
            Method::POST,
            &format!("/sessions/{session}/waitlist"),
            &token(app, user, tier),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    entry
}

async fn offer(app: &TestApp, owner: &str, session: &str, n: i64) -> Vec<Value> {
    let (status, offers) = app
        .post(
            &format!("/sessions/{session}/waitlist/offers"),
            owner,
            json!({"count": n}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{offers}");
    offers.as_array().unwrap().clone()
}

/// Sets the session's capacity (frees seats for offers); the answer is not checked.
async fn set_capacity(app: &TestApp, owner: &str, session: &str, capacity: i64) {
    app.patch(
        &format!("/sessions/{session}"),
        owner,
        json!({"capacity": capacity}),
    )
    .await;
}

fn users(offers: &[Value]) -> Vec<&str> {
    offers
        .iter()
        .map(|o| o["user_id"].as_str().unwrap())
        .collect()
}

/// A full session of `capacity` seats, taken by `seat-0…`, with a waitlist; returns the owner
/// token and the session id.
async fn full_session(app: &TestApp, capacity: i64) -> (String, String) {
    let (owner, _, session) = app.seed("acme", "alice", capacity).await;
    for i in 0..capacity {
        let t = app.token(&format!("seat-{i}"), "acme", Role::Attendee);
        let (status, _) = app
            .post(&format!("/sessions/{session}/tickets"), &t, json!({}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    (owner, session)
}

async fn vip_goes_before_standard_and_each_tier_is_first_come_first_served(app: TestApp) {
    let (owner, session) = full_session(&app, 0).await;
    for (user, tier) in [
        ("s1", Tier::Standard),
        ("v1", Tier::Vip),
        ("s2", Tier::Standard),
        ("v2", Tier::Vip),
    ] {
        join(&app, &session, user, tier).await;
        app.clock.advance(1);
    }
    let positions = [
        ("v1", Tier::Vip, 1),
        ("v2", Tier::Vip, 2),
        ("s1", Tier::Standard, 3),
        ("s2", Tier::Standard, 4),
    ];
    for (user, tier, position) in positions {
        let (_, me) = app
            .get(
                &format!("/sessions/{session}/waitlist/me"),
                &token(&app, user, tier),
            )
            .await;
        assert_eq!(
            (me["status"].as_str(), me["position"].as_i64()),
            (Some("waiting"), Some(position)),
            "{user}"
        );
    }
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/sessions/{session}/waitlist"),
            &token(&app, "s1", Tier::Standard),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("duplicate"))
    );
    // No seat: nothing to offer.
    let (status, body) = app
        .post(
            &format!("/sessions/{session}/waitlist/offers"),
            &owner,
            json!({"count": 1}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("sold_out"))
    );
    set_capacity(&app, &owner, &session, 3).await;
    assert_eq!(
        users(&offer(&app, &owner, &session, 10).await),
        ["v1", "v2", "s1"]
    );
    let (_, me) = app
        .get(
            &format!("/sessions/{session}/waitlist/me"),
            &token(&app, "s2", Tier::Standard),
        )
        .await;
    assert_eq!(me["position"], 1);
    let (_, s) = app.get(&format!("/sessions/{session}"), &owner).await;
    assert_eq!(
        (s["held"].as_i64(), s["available"].as_i64()),
        (Some(3), Some(0))
    );
    // Held seats are not for sale.
    let (status, _) = app
        .post(
            &format!("/sessions/{session}/tickets"),
            &app.token("late", "acme", Role::Attendee),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // The holder of an offer takes it rather than buying.
    let (status, body) = app
        .post(
            &format!("/sessions/{session}/tickets"),
            &token(&app, "v1", Tier::Vip),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("holds_offer"))
    );
}

async fn an_expired_offer_moves_to_the_next_person(app: TestApp) {
    let (owner, session) = full_session(&app, 0).await;
    join(&app, &session, "first", Tier::Standard).await;
    join(&app, &session, "second", Tier::Standard).await;
    set_capacity(&app, &owner, &session, 1).await;
    let offers = offer(&app, &owner, &session, 1).await;
    assert_eq!(users(&offers), ["first"]);
    // Not yet due.
    app.clock.advance(TTL_MS - 1);
    assert_eq!(app.store.sweep(100).await.unwrap().offers_expired, 0);
    app.clock.advance(1);
    assert_eq!(app.store.sweep(100).await.unwrap().offers_expired, 1);
    let (_, me) = app
        .get(
            &format!("/sessions/{session}/waitlist/me"),
            &token(&app, "first", Tier::Standard),
        )
        .await;
    assert_eq!(me["status"], "expired");
    let (_, theirs) = app
        .get("/offers", &token(&app, "second", Tier::Standard))
        .await;
    assert_eq!(users(theirs.as_array().unwrap()), ["second"]);
    let rows = app.store.list_outbox(0, 1000).await.unwrap();
    let last: Vec<(&str, &str)> = rows
        .iter()
        .rev()
        .take(2)
        .map(|r| (r.room.as_str(), r.kind.as_str()))
        .collect();
    assert!(
        last.contains(&("user:second", "WAITLIST_OFFER")),
        "{last:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.room == "user:first" && r.payload.0["status"] == "expired")
    );
}

async fn accepting_after_expiry_answers_409(app: TestApp) {
    let (owner, session) = full_session(&app, 0).await;
    join(&app, &session, "first", Tier::Standard).await;
    join(&app, &session, "second", Tier::Standard).await;
    set_capacity(&app, &owner, &session, 1).await;
    let id = offer(&app, &owner, &session, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.clock.advance(TTL_MS);
    // Not swept yet: the accept itself notices.
    let first = token(&app, "first", Tier::Standard);
    let (status, body) = app
        .call(Method::POST, &format!("/offers/{id}/accept"), &first, None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("offer_expired"))
    );
    let (status, _) = app
        .call(Method::POST, &format!("/offers/{id}/accept"), &first, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // And the seat went on to the next person.
    let (_, theirs) = app
        .get("/offers", &token(&app, "second", Tier::Standard))
        .await;
    assert_eq!(users(theirs.as_array().unwrap()), ["second"]);
    let (_, s) = app.get(&format!("/sessions/{session}"), &owner).await;
    assert_eq!(
        (s["issued"].as_i64(), s["held"].as_i64()),
        (Some(0), Some(1))
    );
}

async fn a_cancelled_ticket_produces_an_offer_and_its_outbox_row(app: TestApp) {
    let (_, session) = full_session(&app, 1).await;
    let waiting = join(&app, &session, "waiter", Tier::Standard).await;
    assert_eq!(waiting["position"], 1);
    let seat = app.token("seat-0", "acme", Role::Attendee);
    let (_, mine) = app.get("/tickets", &seat).await;
    let ticket = mine["items"][0]["id"].as_str().unwrap();
    let before = app
        .store
        .list_outbox(0, 1000)
        .await
        .unwrap()
        .last()
        .map_or(0, |r| r.id);
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/tickets/{ticket}/cancel"),
            &seat,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let waiter = token(&app, "waiter", Tier::Standard);
    let (_, offers) = app.get("/offers", &waiter).await;
    let offer = &offers[0];
    assert_eq!(offer["status"], "open");
    let rows = app.store.list_outbox(before, 100).await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.kind == "WAITLIST_OFFER")
        .expect("an offer row");
    assert_eq!(
        (row.org_id.as_str(), row.room.as_str()),
        ("acme", "user:waiter")
    );
    match row.event().unwrap() {
        evd_protocol::Event::WaitlistOffer(o) => {
            assert_eq!(
                (o.offer.as_str(), o.session.as_str()),
                (offer["id"].as_str().unwrap(), session.as_str())
            );
            assert_eq!(o.expires_at, crate::common::START_MS + TTL_MS);
        }
        other => panic!("{other:?}"),
    }
    // Accepting takes the held seat.
    let id = offer["id"].as_str().unwrap();
    let (status, one) = app.get(&format!("/offers/{id}"), &waiter).await;
    assert_eq!(
        (status, one["session_id"].as_str()),
        (StatusCode::OK, Some(session.as_str()))
    );
    let (status, _) = app.get(&format!("/offers/{id}"), &seat).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, ticket) = app
        .call(Method::POST, &format!("/offers/{id}/accept"), &waiter, None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ticket}");
    assert_eq!(ticket["offer_id"], id);
    let (_, me) = app
        .get(&format!("/sessions/{session}/waitlist/me"), &waiter)
        .await;
    assert_eq!(me["status"], "accepted");
    let (status, body) = app
        .call(Method::POST, &format!("/offers/{id}/accept"), &waiter, None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("offer_answered"))
    );
    let (status, _) = app
        .call(Method::POST, &format!("/offers/{id}/accept"), &seat, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "someone else's offer");
}

async fn declining_and_leaving_move_the_line(app: TestApp) {
    let (owner, session) = full_session(&app, 0).await;
    for user in ["a", "b", "c"] {
        join(&app, &session, user, Tier::Standard).await;
    }
    set_capacity(&app, &owner, &session, 1).await;
    let id = offer(&app, &owner, &session, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // b leaves the line; a declines; the seat goes to c.
    let (status, _) = app
        .delete(
            &format!("/sessions/{session}/waitlist/me"),
            &token(&app, "b", Tier::Standard),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .delete(
            &format!("/sessions/{session}/waitlist/me"),
            &token(&app, "b", Tier::Standard),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, c) = app
        .get(
            &format!("/sessions/{session}/waitlist/me"),
            &token(&app, "c", Tier::Standard),
        )
        .await;
    assert_eq!(c["position"], 1);
    let a = token(&app, "a", Tier::Standard);
    let (status, declined) = app
        .call(Method::POST, &format!("/offers/{id}/decline"), &a, None)
        .await;
    assert_eq!(
        (status, declined["status"].as_str()),
        (StatusCode::OK, Some("declined"))
    );
    let (status, _) = app
        .call(Method::POST, &format!("/offers/{id}/decline"), &a, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let c = token(&app, "c", Tier::Standard);
    let (_, offers) = app.get("/offers", &c).await;
    assert_eq!(users(offers.as_array().unwrap()), ["c"]);
    // Leaving with an offer declines it and frees the seat.
    let (status, _) = app
        .delete(&format!("/sessions/{session}/waitlist/me"), &c)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, s) = app.get(&format!("/sessions/{session}"), &owner).await;
    assert_eq!(
        (s["held"].as_i64(), s["available"].as_i64()),
        (Some(0), Some(1))
    );
    let rows = app.store.list_outbox(0, 1000).await.unwrap();
    assert!(rows.iter().any(|r| r.room == "user:c"
        && r.kind == "WAITLIST_UPDATE"
        && r.payload.0["position"] == 1));
}

async fn offer_accepts_racing_purchases_never_oversell(app: TestApp) {
    const CAPACITY: i64 = 10;
    let (owner, session) = full_session(&app, 0).await;
    for i in 0..5 {
        join(&app, &session, &format!("w{i}"), Tier::Standard).await;
    }
    set_capacity(&app, &owner, &session, CAPACITY).await;
    let offers = offer(&app, &owner, &session, 5).await;
    assert_eq!(offers.len(), 5);
    let app = Arc::new(app);
    let mut tasks = tokio::task::JoinSet::new();
    for o in offers {
        let app = app.clone();
        tasks.spawn(async move {
            let user = o["user_id"].as_str().unwrap().to_owned();
            let t = app.token(&user, "acme", Role::Attendee);
            app.call(
                Method::POST,
                &format!("/offers/{}/accept", o["id"].as_str().unwrap()),
                &t,
                None,
            )
            .await
            .0
        });
    }
    for i in 0..30 {
        let (app, session) = (app.clone(), session.clone());
        tasks.spawn(async move {
            let t = app.token(&format!("buyer-{i}"), "acme", Role::Attendee);
            app.post(&format!("/sessions/{session}/tickets"), &t, json!({}))
                .await
                .0
        });
    }
    let mut created = 0;
    while let Some(status) = tasks.join_next().await {
        match status.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, CAPACITY);
    let (_, s) = app.get(&format!("/sessions/{session}"), &owner).await;
    assert_eq!(
        (s["issued"].as_i64(), s["held"].as_i64()),
        (Some(CAPACITY), Some(0))
    );
    // Every offer holder got their seat: the offers held them.
    for i in 0..5 {
        let t = app.token(&format!("w{i}"), "acme", Role::Attendee);
        let (_, mine) = app.get("/tickets", &t).await;
        assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    }
}

async fn accept_retries_with_one_key_make_one_ticket(app: TestApp) {
    let (_, session) = full_session(&app, 1).await;
    join(&app, &session, "w", Tier::Standard).await;
    let seat = app.token("seat-0", "acme", Role::Attendee);
    let (_, mine) = app.get("/tickets", &seat).await;
    app.call(
        Method::POST,
        &format!(
            "/tickets/{}/cancel",
            mine["items"][0]["id"].as_str().unwrap()
        ),
        &seat,
        None,
    )
    .await;
    let w = token(&app, "w", Tier::Standard);
    let (_, offers) = app.get("/offers", &w).await;
    let path = format!("/offers/{}/accept", offers[0]["id"].as_str().unwrap());
    let (s1, _, t1) = app
        .call_with_headers(
            Method::POST,
            &path,
            &w,
            None,
            &[("idempotency-key", "acc-1")],
        )
        .await;
    let (s2, _, t2) = app
        .call_with_headers(
            Method::POST,
            &path,
            &w,
            None,
            &[("idempotency-key", "acc-1")],
        )
        .await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(t1["id"], t2["id"]);
    // Joining with a key replays too.
    let (_, session2) = {
        let (o, _, s) = app.seed("acme2", "owner2", 0).await;
        (o, s)
    };
    let x = app.token("x", "acme2", Role::Attendee);
    let path = format!("/sessions/{session2}/waitlist");
    let (s1, _, e1) = app
        .call_with_headers(Method::POST, &path, &x, None, &[("idempotency-key", "j")])
        .await;
    let (s2, _, e2) = app
        .call_with_headers(Method::POST, &path, &x, None, &[("idempotency-key", "j")])
        .await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(e1["id"], e2["id"]);
}
