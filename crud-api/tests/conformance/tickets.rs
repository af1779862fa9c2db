//! Tickets: capacity under concurrency, idempotent retries, tiers, cancel, list.

use crate::common::TestApp;
use axum::http::{Method, StatusCode};
use evd_api::on_both_backends;
use evd_protocol::auth::{Role, Tier};
use serde_json::json;
use std::sync::Arc;

on_both_backends!(
    "conformance", crate::common::TestApp::new;
    two_hundred_buyers_for_fifty_seats_get_fifty_tickets,
    retries_with_one_idempotency_key_make_one_ticket,
    tickets_issue_list_cancel,
    vip_tickets_need_a_vip_token,
    engine_checks_tickets_for_rooms,
);

async fn two_hundred_buyers_for_fifty_seats_get_fifty_tickets(app: TestApp) {
    let (_, _, session) = app.seed("acme", "alice", 50).await;
    let app = Arc::new(app);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let app = app.clone();
        let session = session.clone();
        tasks.spawn(async move {
            let token = app.token(&format!("buyer-{i}"), "acme", Role::Attendee);
            app.post(&format!("/sessions/{session}/tickets"), &token, json!({}))
                .await
        });
    }
    let (mut created, mut sold_out) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (status, body) = done.unwrap();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                assert_eq!(body["code"], "sold_out");
                sold_out += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created, sold_out), (50, 150));
    let owner = app.token("alice", "acme", Role::Owner);
    let (_, s) = app.get(&format!("/sessions/{session}"), &owner).await;
    assert_eq!(
        (s["issued"].as_i64(), s["available"].as_i64()),
        (Some(50), Some(0))
    );
}

async fn retries_with_one_idempotency_key_make_one_ticket(app: TestApp) {
    let (owner, _, session) = app.seed("acme", "alice", 10).await;
    // Bob is an organizer too (his organizer token below is capped by his membership).
    let (status, _) = app
        .post(
            "/orgs/acme/members",
            &owner,
            json!({"user_id": "bob", "role": "organizer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let app = Arc::new(app);
    let token = app.token("bob", "acme", Role::Attendee);
    let path = format!("/sessions/{session}/tickets");
    // Sequential retries.
    let (first, _, a) = app
        .call_with_headers(
            Method::POST,
            &path,
            &token,
            Some(json!({})),
            &[("idempotency-key", "k-1")],
        )
        .await;
    let (again, headers, b) = app
        .call_with_headers(
            Method::POST,
            &path,
            &token,
            Some(json!({})),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!((first, again), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(a["id"], b["id"]);
    // The same key for another request is refused.
    let (status, _, body) = app
        .call_with_headers(
            Method::POST,
            &path,
            &token,
            Some(json!({"tier": "standard", "user_id": "bob"})),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "same request, spelled out: {body}");
    let (status, _, body) = app
        .call_with_headers(
            Method::POST,
            &path,
            &app.token("bob", "acme", Role::Organizer),
            Some(json!({"tier": "vip"})),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("idempotency_key_reused"))
    );
    // Concurrent retries of a new buyer.
    let carol = app.token("carol", "acme", Role::Attendee);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (app, path, carol) = (app.clone(), path.clone(), carol.clone());
        tasks.spawn(async move {
            app.call_with_headers(
                Method::POST,
                &path,
                &carol,
                Some(json!({})),
                &[("idempotency-key", "carol-once")],
            )
            .await
        });
    }
    let mut ids = std::collections::HashSet::new();
    while let Some(done) = tasks.join_next().await {
        let (status, _, body) = done.unwrap();
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "{status} {body}"
        );
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    let (_, mine) = app.get("/tickets", &carol).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    let (status, _, _) = app
        .call_with_headers(
            Method::POST,
            &path,
            &carol,
            Some(json!({})),
            &[("idempotency-key", "")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn tickets_issue_list_cancel(app: TestApp) {
    let (owner, event, session) = app.seed("acme", "alice", 1).await;
    let bob = app.token("bob", "acme", Role::Attendee);
    let (status, ticket) = app
        .post(&format!("/sessions/{session}/tickets"), &bob, json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ticket}");
    assert_eq!(
        (
            ticket["tier"].as_str(),
            ticket["status"].as_str(),
            ticket["event_id"].as_str()
        ),
        (Some("standard"), Some("active"), Some(event.as_str()))
    );
    let id = ticket["id"].as_str().unwrap();
    let (status, body) = app
        .post(&format!("/sessions/{session}/tickets"), &bob, json!({}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("duplicate"))
    );
    let carol = app.token("carol", "acme", Role::Attendee);
    let (status, body) = app
        .post(&format!("/sessions/{session}/tickets"), &carol, json!({}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("sold_out"))
    );
    // Attendees see and cancel their own tickets only.
    let (status, _) = app.get(&format!("/tickets/{id}"), &carol).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post(&format!("/tickets/{id}/cancel"), &carol, json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get(&format!("/tickets/{id}"), &owner).await;
    assert_eq!(status, StatusCode::OK);
    let (_, mine) = app.get("/tickets", &bob).await;
    assert_eq!(mine["items"][0]["id"], id);
    let (_, theirs) = app.get("/tickets", &carol).await;
    assert_eq!(theirs["items"].as_array().unwrap().len(), 0);
    // Organizers list a session's tickets, every holder's; attendees may not.
    let (status, all) = app
        .get(&format!("/sessions/{session}/tickets"), &owner)
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let holders: Vec<_> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(holders, ["bob"]);
    let (status, body) = app.get(&format!("/sessions/{session}/tickets"), &bob).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = app.get("/sessions/nope/tickets", &owner).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, cancelled) = app
        .call(Method::POST, &format!("/tickets/{id}/cancel"), &bob, None)
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    let (status, body) = app
        .call(Method::POST, &format!("/tickets/{id}/cancel"), &bob, None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_cancelled"))
    );
    // The seat is free again.
    let (status, _) = app
        .post(&format!("/sessions/{session}/tickets"), &carol, json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // Staff issue for others.
    let (status, _) = app
        .post(
            &format!("/sessions/{session}/tickets"),
            &bob,
            json!({"user_id": "dave"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app
        .patch(
            &format!("/sessions/{session}"),
            &owner,
            json!({"capacity": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, t) = app
        .post(
            &format!("/sessions/{session}/tickets"),
            &owner,
            json!({"user_id": "dave", "tier": "vip"}),
        )
        .await;
    assert_eq!(
        (status, t["user_id"].as_str(), t["tier"].as_str()),
        (StatusCode::CREATED, Some("dave"), Some("vip"))
    );
    let (status, body) = app
        .patch(
            &format!("/sessions/{session}"),
            &owner,
            json!({"capacity": 1}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("capacity_below_taken"))
    );
    // Paging.
    let (_, page) = app.get("/tickets?limit=1", &bob).await;
    assert_eq!(page["next_cursor"], serde_json::Value::Null);
}

async fn vip_tickets_need_a_vip_token(app: TestApp) {
    let (_, _, session) = app.seed("acme", "alice", 5).await;
    let standard = app.token("bob", "acme", Role::Attendee);
    let (status, _) = app
        .post(
            &format!("/sessions/{session}/tickets"),
            &standard,
            json!({"tier": "vip"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let vip = app.token_with_tier("carol", "acme", Role::Attendee, Some(Tier::Vip));
    let (status, t) = app
        .post(&format!("/sessions/{session}/tickets"), &vip, json!({}))
        .await;
    assert_eq!(
        (status, t["tier"].as_str()),
        (StatusCode::CREATED, Some("vip"))
    );
}

async fn engine_checks_tickets_for_rooms(app: TestApp) {
    use evd_api::store::TicketStore;
    use evd_protocol::RoomName;
    let (owner, event, session) = app.seed("acme", "alice", 5).await;
    let (_, other) = app
        .post(
            &format!("/events/{event}/sessions"),
            &owner,
            json!({
            "title": "Other", "capacity": 5,
            "starts_at": "2026-12-02T09:00:00Z", "ends_at": "2026-12-02T10:00:00Z"}),
        )
        .await;
    let other = other["id"].as_str().unwrap();
    let bob = app.token("bob", "acme", Role::Attendee);
    let (_, ticket) = app
        .post(&format!("/sessions/{session}/tickets"), &bob, json!({}))
        .await;
    let room = |s: &str| RoomName::parse(s).unwrap();
    let has = |r: RoomName, org: &'static str, user: &'static str| {
        let store = app.store.clone();
        async move { store.has_ticket_for_room(org, user, &r).await.unwrap() }
    };
    assert!(has(room(&format!("session:{session}")), "acme", "bob").await);
    assert!(has(room(&format!("event:{event}")), "acme", "bob").await);
    assert!(!has(room(&format!("session:{other}")), "acme", "bob").await);
    assert!(!has(room(&format!("session:{session}")), "acme", "carol").await);
    assert!(!has(room(&format!("session:{session}")), "other-org", "bob").await);
    assert!(!has(room("user:bob"), "acme", "bob").await);
    app.call(
        Method::POST,
        &format!("/tickets/{}/cancel", ticket["id"].as_str().unwrap()),
        &bob,
        None,
    )
    .await;
    assert!(!has(room(&format!("event:{event}")), "acme", "bob").await);
}
