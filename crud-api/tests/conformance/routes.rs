//! Orgs, members, events, sessions; errors; tenant scoping through the API.

use crate::common::TestApp;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use evd_api::on_both_backends;
use evd_protocol::auth::Role;
use serde_json::json;

on_both_backends!(
    "conformance", crate::common::TestApp::new;
    org_creator_becomes_owner_and_manages_members,
    another_orgs_ids_answer_404,
    events_crud_with_soft_delete,
    event_list_filters_pages_and_searches,
    attendees_see_published_events_only,
    sessions_form_an_ordered_agenda_and_reach_the_outbox,
    errors_are_problem_documents,
    a_removed_or_demoted_member_gets_403_within_the_cache_time,
    disconnects_are_for_staff_and_record_their_ban,
    bans_in_force_lists_an_orgs_current_bans_up_to_one_past_the_limit,
    foreign_keys_refuse_rows_of_an_org_that_does_not_exist,
);

async fn org_creator_becomes_owner_and_manages_members(app: TestApp) {
    let owner = app.token("alice", "acme", Role::Owner);
    let (status, org) = app
        .post("/orgs", &owner, json!({"id": "acme", "name": "Acme"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{org}");
    let (status, _) = app
        .post("/orgs", &owner, json!({"id": "acme", "name": "Again"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = app.get("/orgs/acme", &owner).await;
    assert_eq!(
        (status, body["name"].as_str()),
        (StatusCode::OK, Some("Acme"))
    );

    let (_, members) = app.get("/orgs/acme/members", &owner).await;
    assert_eq!(members["items"][0]["user_id"], "alice");
    assert_eq!(members["items"][0]["role"], "owner");

    let (status, m) = app
        .post(
            "/orgs/acme/members",
            &owner,
            json!({"user_id": "bob", "role": "attendee"}),
        )
        .await;
    assert_eq!(
        (status, m["role"].as_str()),
        (StatusCode::CREATED, Some("attendee"))
    );
    let (status, _) = app
        .post(
            "/orgs/acme/members",
            &owner,
            json!({"user_id": "bob", "role": "attendee"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, m) = app
        .patch(
            "/orgs/acme/members/bob",
            &owner,
            json!({"role": "organizer"}),
        )
        .await;
    assert_eq!(
        (status, m["role"].as_str()),
        (StatusCode::OK, Some("organizer"))
    );

    // Attendees cannot manage members; organizers cannot either.
    let attendee = app.token("carol", "acme", Role::Attendee);
    let (status, _) = app.get("/orgs/acme/members", &attendee).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let organizer = app.token("bob", "acme", Role::Organizer);
    let (status, _) = app
        .post(
            "/orgs/acme/members",
            &organizer,
            json!({"user_id": "x", "role": "owner"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The last owner stays.
    let (status, body) = app
        .patch(
            "/orgs/acme/members/alice",
            &owner,
            json!({"role": "attendee"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("last_owner"))
    );
    let (status, _) = app.delete("/orgs/acme/members/alice", &owner).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Paging by user id.
    let (_, page) = app.get("/orgs/acme/members?limit=1", &owner).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) = app
        .get(
            &format!("/orgs/acme/members?limit=1&cursor={cursor}"),
            &owner,
        )
        .await;
    assert_eq!(page["items"][0]["user_id"], "bob");

    let (status, _) = app.delete("/orgs/acme/members/bob", &owner).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.delete("/orgs/acme/members/bob", &owner).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn another_orgs_ids_answer_404(app: TestApp) {
    let (_, event_b, session_b) = app.seed("org-b", "bea", 5).await;
    let b_buyer = app.token("bob", "org-b", Role::Attendee);
    let (_, ticket_b) = app
        .post(
            &format!("/sessions/{session_b}/tickets"),
            &b_buyer,
            json!({}),
        )
        .await;
    let ticket_b = ticket_b["id"].as_str().unwrap().to_owned();
    let (_, poll_b) = app
        .post(
            &format!("/sessions/{session_b}/polls"),
            &app.token("bea", "org-b", Role::Owner),
            json!({"question": "?", "options": ["a", "b"]}),
        )
        .await;
    let poll_b = poll_b["id"].as_str().unwrap().to_owned();

    let (a, _, _) = app.seed("org-a", "ann", 5).await;
    for path in [
        "/orgs/org-b".to_owned(),
        "/orgs/org-b/members".to_owned(),
        format!("/events/{event_b}"),
        format!("/events/{event_b}/sessions"),
        format!("/sessions/{session_b}"),
        format!("/tickets/{ticket_b}"),
        format!("/polls/{poll_b}"),
        format!("/polls/{poll_b}/results"),
        format!("/sessions/{session_b}/polls"),
        format!("/sessions/{session_b}/questions"),
    ] {
        let (status, body) = app.get(&path, &a).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}: {body}");
    }
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/events/{event_b}"),
            Some(json!({"name": "mine"})),
        ),
        (Method::DELETE, format!("/events/{event_b}"), None),
        (
            Method::PATCH,
            format!("/sessions/{session_b}"),
            Some(json!({"capacity": 1})),
        ),
        (Method::DELETE, format!("/sessions/{session_b}"), None),
        (
            Method::POST,
            format!("/sessions/{session_b}/tickets"),
            Some(json!({})),
        ),
        (Method::POST, format!("/tickets/{ticket_b}/cancel"), None),
        (
            Method::POST,
            format!("/sessions/{session_b}/waitlist"),
            None,
        ),
        (
            Method::POST,
            format!("/sessions/{session_b}/waitlist/offers"),
            Some(json!({"count": 1})),
        ),
        (
            Method::POST,
            format!("/events/{event_b}/sessions"),
            Some(json!({
            "title": "x", "capacity": 1,
            "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-01T10:00:00Z"})),
        ),
        (
            Method::POST,
            format!("/sessions/{session_b}/polls"),
            Some(json!({"question": "?", "options": ["a", "b"]})),
        ),
        (Method::POST, format!("/polls/{poll_b}/close"), None),
        (
            Method::PATCH,
            "/orgs/org-b/members/bea".to_owned(),
            Some(json!({"role": "attendee"})),
        ),
        (Method::DELETE, "/orgs/org-b/members/bea".to_owned(), None),
    ] {
        let (status, answer) = app.call(method.clone(), &path, &a, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
    }
    // Nothing of org B changed.
    let b_owner = app.token("bea", "org-b", Role::Owner);
    let (status, event) = app.get(&format!("/events/{event_b}"), &b_owner).await;
    assert_eq!(
        (status, event["name"].as_str()),
        (StatusCode::OK, Some("Launch week"))
    );
    let (_, session) = app.get(&format!("/sessions/{session_b}"), &b_owner).await;
    assert_eq!(
        (session["capacity"].as_i64(), session["issued"].as_i64()),
        (Some(5), Some(1))
    );
    let (_, poll) = app.get(&format!("/polls/{poll_b}"), &b_owner).await;
    assert_eq!(poll["status"], "open");
}

async fn events_crud_with_soft_delete(app: TestApp) {
    let (owner, event, _) = app.seed("acme", "alice", 10).await;
    let (status, updated) = app
        .patch(
            &format!("/events/{event}"),
            &owner,
            json!({"name": "Launch week 2", "status": "cancelled"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        (updated["name"].as_str(), updated["status"].as_str()),
        (Some("Launch week 2"), Some("cancelled"))
    );
    let (status, body) = app
        .patch(
            &format!("/events/{event}"),
            &owner,
            json!({"ends_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("ends_at"))
    );

    let attendee = app.token("bob", "acme", Role::Attendee);
    let (status, _) = app.delete(&format!("/events/{event}"), &attendee).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.delete(&format!("/events/{event}"), &owner).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(&format!("/events/{event}"), &owner).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.delete(&format!("/events/{event}"), &owner).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = app.get("/events", &owner).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

async fn event_list_filters_pages_and_searches(app: TestApp) {
    let owner = app.token("alice", "acme", Role::Owner);
    app.post("/orgs", &owner, json!({"id": "acme", "name": "Acme"}))
        .await;
    let specs = [
        (
            "Rust meetup",
            "ownership and borrowing",
            "published",
            "2026-12-01",
        ),
        ("Jazz night", "live quartet", "published", "2026-12-05"),
        ("Rust conference", "async and tokio", "draft", "2026-12-10"),
        ("Book club", "novels, Rust-free", "published", "2027-01-15"),
        ("Cancelled gig", "nope", "cancelled", "2026-12-20"),
    ];
    for (name, description, status, day) in specs {
        let (s, body) = app
            .post(
                "/events",
                &owner,
                json!({
                    "name": name, "description": description, "status": status,
                    "starts_at": format!("{day}T18:00:00Z"), "ends_at": format!("{day}T22:00:00Z"),
                }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Pages in start order.
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/events?limit=2&cursor={c}"),
            None => "/events?limit=2".to_owned(),
        };
        let (status, page) = app.get(&path, &owner).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(names(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "Rust meetup",
            "Jazz night",
            "Rust conference",
            "Cancelled gig",
            "Book club"
        ]
    );

    let (_, page) = app.get("/events?status=published", &owner).await;
    assert_eq!(names(&page), ["Rust meetup", "Jazz night", "Book club"]);
    let (_, page) = app
        .get(
            "/events?from=2026-12-04T00:00:00Z&to=2026-12-31T00:00:00Z",
            &owner,
        )
        .await;
    assert_eq!(
        names(&page),
        ["Jazz night", "Rust conference", "Cancelled gig"]
    );
    let (_, page) = app.get("/events?q=rust", &owner).await;
    assert_eq!(
        names(&page),
        ["Rust meetup", "Rust conference", "Book club"]
    );
    let (_, page) = app.get("/events?q=RUST%20tokio", &owner).await;
    assert_eq!(names(&page), ["Rust conference"]);
    let (_, page) = app
        .get("/events?q=rust&status=published&limit=1", &owner)
        .await;
    assert_eq!(names(&page), ["Rust meetup"]);
    // Operators of either search syntax are plain text here.
    let (status, page) = app
        .get("/events?q=%22rust%22%20OR%20*%20%26%20!", &owner)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");

    for bad in [
        "limit=0",
        "limit=201",
        "from=yesterday",
        "status=open",
        "cursor=zzz",
        "q=%21%21",
        "unknown=1",
    ] {
        let (status, body) = app.get(&format!("/events?{bad}"), &owner).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
}

async fn attendees_see_published_events_only(app: TestApp) {
    let (owner, published, session) = app.seed("acme", "alice", 10).await;
    let (_, draft) = app
        .post("/events", &owner, json!({
            "name": "Secret", "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-01T10:00:00Z"}))
        .await;
    assert_eq!(draft["status"], "draft");
    let draft = draft["id"].as_str().unwrap();
    let attendee = app.token("bob", "acme", Role::Attendee);
    let (_, list) = app.get("/events", &attendee).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], published.as_str());
    let (_, list) = app.get("/events?status=draft", &attendee).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let (status, _) = app.get(&format!("/events/{draft}"), &attendee).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .get(&format!("/events/{draft}/sessions"), &attendee)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get(&format!("/sessions/{session}"), &attendee).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .post("/events", &attendee, json!({"name": "x", "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-01T10:00:00Z"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn sessions_form_an_ordered_agenda_and_reach_the_outbox(app: TestApp) {
    let (owner, event, keynote) = app.seed("acme", "alice", 10).await;
    for (title, start) in [
        ("Closing", "2026-12-01T17:00:00Z"),
        ("Workshop", "2026-12-01T11:00:00Z"),
    ] {
        let (status, _) = app
            .post(&format!("/events/{event}/sessions"), &owner, json!({
                "title": title, "capacity": 30, "starts_at": start, "ends_at": "2026-12-01T18:00:00Z"}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, agenda) = app.get(&format!("/events/{event}/sessions"), &owner).await;
    let titles: Vec<&str> = agenda
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Keynote", "Workshop", "Closing"]);

    let (status, s) = app
        .patch(
            &format!("/sessions/{keynote}"),
            &owner,
            json!({"capacity": 12, "title": "Opening keynote"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(
        (s["capacity"].as_i64(), s["available"].as_i64()),
        (Some(12), Some(12))
    );
    let (status, body) = app
        .patch(
            &format!("/sessions/{keynote}"),
            &owner,
            json!({"capacity": -1}),
        )
        .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("capacity"))
    );
    let (status, _) = app.delete(&format!("/sessions/{keynote}"), &owner).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(&format!("/sessions/{keynote}"), &owner).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    use evd_api::store::OutboxStore;
    let rows = app.store.list_outbox(0, 100).await.unwrap();
    let for_keynote: Vec<_> = rows
        .iter()
        .filter(|r| r.payload.0["session"] == keynote.as_str())
        .collect();
    assert_eq!(for_keynote.len(), 3, "create, update, delete");
    assert!(
        for_keynote
            .iter()
            .all(|r| r.kind == "SESSION_UPDATED" && r.room == format!("event:{event}"))
    );
    assert_eq!(for_keynote[2].payload.0["deleted"], true);
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
}

async fn errors_are_problem_documents(app: TestApp) {
    let (owner, _, session) = app.seed("acme", "alice", 10).await;
    // No token.
    let req = Request::get("/api/v1/events").body(Body::empty()).unwrap();
    let (status, headers, body) = app.send(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(
        (body["status"].as_u64(), body["code"].as_str()),
        (Some(401), Some("unauthorized"))
    );
    // A bad token.
    let (status, _) = app.get("/events", "not.a.jwt").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Bad JSON, wrong content type, wrong shape.
    let req = Request::post("/api/v1/events")
        .header("authorization", format!("Bearer {owner}"))
        .header("content-type", "application/json")
        .body(Body::from("{\"name\":"))
        .unwrap();
    let (status, headers, _) = app.send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["content-type"], "application/problem+json");
    let req = Request::post("/api/v1/events")
        .header("authorization", format!("Bearer {owner}"))
        .body(Body::from("name=x"))
        .unwrap();
    assert_eq!(app.send(req).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) = app
        .post(
            "/events",
            &owner,
            json!({"name": "", "starts_at": "soon", "ends_at": "2026-12-01T10:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "starts_at");
    let (status, body) = app
        .post(
            "/events",
            &owner,
            json!({"starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-01T10:00:00Z"}),
        )
        .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("name"))
    );
    let (status, body) = app
        .post("/events", &owner, json!({"name": " ", "description": "x".repeat(10_001), "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-01T10:00:00Z"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "description"]);
    // Too large.
    let huge = json!({"name": "x".repeat(70_000), "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-01T10:00:00Z"});
    let (status, _) = app.post("/events", &owner, huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Unknown ids and routes.
    let (status, body) = app.get("/sessions/nope", &owner).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = app
        .post(
            &format!("/sessions/{session}/waitlist/offers"),
            &owner,
            json!({"count": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // A request id on every answer.
    let (_, headers, _) = app
        .call_with_headers(Method::GET, "/events", &owner, None, &[])
        .await;
    assert!(headers.contains_key("x-request-id"));
    let (_, headers, _) = app
        .call_with_headers(
            Method::GET,
            "/events",
            &owner,
            None,
            &[("x-request-id", "abc-123")],
        )
        .await;
    assert_eq!(headers["x-request-id"], "abc-123");
}

async fn a_removed_or_demoted_member_gets_403_within_the_cache_time(app: TestApp) {
    let owner = app.token("alice", "acme", Role::Owner);
    app.post("/orgs", &owner, json!({"id": "acme", "name": "Acme"}))
        .await;
    for user in ["bob", "dan"] {
        let (status, _) = app
            .post(
                "/orgs/acme/members",
                &owner,
                json!({"user_id": user, "role": "organizer"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    // A second API process over the same store: it hears of no change but through its cache.
    let cache_secs = 1;
    let other = evd_api::app(
        evd_api::AppState::new(
            app.store.clone(),
            &evd_api::settings::Settings {
                membership_cache_secs: cache_secs,
                ..crate::common::settings()
            },
        )
        .unwrap(),
    );
    let members_of = |token: String| {
        Request::builder()
            .uri("/api/v1/orgs/acme/members")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let status_on_other = |token: String| {
        let other = other.clone();
        async move {
            tower::ServiceExt::oneshot(other, members_of(token))
                .await
                .unwrap()
                .status()
        }
    };
    let bob = app.token("bob", "acme", Role::Organizer);
    let dan = app.token("dan", "acme", Role::Organizer);
    assert_eq!(status_on_other(bob.clone()).await, StatusCode::OK);
    assert_eq!(status_on_other(dan.clone()).await, StatusCode::OK);

    let (status, _) = app.delete("/orgs/acme/members/bob", &owner).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .patch(
            "/orgs/acme/members/dan",
            &owner,
            json!({"role": "attendee"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The process that made the change knows at once.
    assert_eq!(
        app.get("/orgs/acme/members", &bob).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/orgs/acme/members", &dan).await.0,
        StatusCode::FORBIDDEN
    );
    // The other within its cache time (polled, with slack for a slow machine).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(cache_secs + 5);
    for token in [bob, dan] {
        loop {
            let status = status_on_other(token.clone()).await;
            if status == StatusCode::FORBIDDEN {
                break;
            }
            assert_eq!(status, StatusCode::OK);
            assert!(
                std::time::Instant::now() < deadline,
                "still allowed after the cache time"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    // The owner is untouched; an org the store does not know keeps its tokens' roles.
    assert_eq!(
        app.get("/orgs/acme/members", &owner).await.0,
        StatusCode::OK
    );
}

async fn disconnects_are_for_staff_and_record_their_ban(app: TestApp) {
    use evd_api::store::{AccessStore, OutboxStore};
    let (owner, _, _) = app.seed("acme", "alice", 5).await;
    let attendee = app.token("carol", "acme", Role::Attendee);
    let path = "/orgs/acme/users/troll/disconnect";
    assert_eq!(
        app.post(path, &attendee, json!({})).await.0,
        StatusCode::FORBIDDEN
    );
    for bad in [
        json!({"ban_secs": 0}),
        json!({"ban_secs": 2_592_001}),
        json!({"reason": "x".repeat(201)}),
        json!({"why": "?"}),
    ] {
        let (status, body) = app.post(path, &owner, bad.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    // Another org's path is another org.
    let (status, _) = app
        .post("/orgs/org-b/users/troll/disconnect", &owner, json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = app.post(path, &owner, json!({"reason": "spam"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"user_id": "troll"}));
    assert_eq!(app.store.banned_until("acme", "troll").await.unwrap(), None);

    let (status, body) = app
        .post(path, &owner, json!({"reason": "spam", "ban_secs": 60}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let until = crate::common::START_MS + 60_000;
    assert_eq!(body["banned_until"], until);
    assert_eq!(
        app.store.banned_until("acme", "troll").await.unwrap(),
        Some(until)
    );
    assert_eq!(app.store.banned_until("acme", "ann").await.unwrap(), None);
    app.clock.advance(61_000);
    assert_eq!(app.store.banned_until("acme", "troll").await.unwrap(), None);

    // Both reached the user's room through the outbox.
    let rows = app.store.list_outbox(0, 100).await.unwrap();
    let sent: Vec<_> = rows
        .iter()
        .filter(|r| r.kind == "DISCONNECTED")
        .map(|r| (r.room.as_str(), r.payload.0["banned_until"].as_i64()))
        .collect();
    assert_eq!(sent, [("user:troll", None), ("user:troll", Some(until))]);
}

async fn bans_in_force_lists_an_orgs_current_bans_up_to_one_past_the_limit(app: TestApp) {
    use evd_api::store::{AccessStore, Disconnect};
    use std::time::Duration;
    let store = &app.store;
    for org in ["acme", "other"] {
        store.enroll(org, "alice", Role::Owner).await.unwrap();
    }
    assert_eq!(store.bans_in_force("acme", 10).await.unwrap(), []);
    let ban = |secs| Disconnect {
        by: "alice".into(),
        reason: None,
        ban: Some(Duration::from_secs(secs)),
    };
    let start = crate::common::START_MS;
    // A short ban that will have ended, and a disconnect with no ban at all.
    store
        .disconnect_user("acme", "brief", &ban(10))
        .await
        .unwrap();
    let no_ban = Disconnect {
        ban: None,
        ..ban(1)
    };
    store
        .disconnect_user("acme", "kicked", &no_ban)
        .await
        .unwrap();
    app.clock.advance(11_000);
    let now = start + 11_000;
    for (user, secs) in [("dave", 60), ("bob", 120), ("carl", 90)] {
        store
            .disconnect_user("acme", user, &ban(secs))
            .await
            .unwrap();
    }
    store
        .disconnect_user("other", "eve", &ban(30))
        .await
        .unwrap();
    let acme = vec![
        ("bob".to_owned(), now + 120_000),
        ("carl".to_owned(), now + 90_000),
        ("dave".to_owned(), now + 60_000),
    ];
    // Ordered by user; the ended ban is not listed; each org sees only its own.
    assert_eq!(store.bans_in_force("acme", 10).await.unwrap(), acme);
    assert_eq!(store.bans_in_force("acme", 3).await.unwrap(), acme);
    assert_eq!(
        store.bans_in_force("other", 10).await.unwrap(),
        [("eve".to_owned(), now + 30_000)]
    );
    assert_eq!(store.bans_in_force("nobody", 10).await.unwrap(), []);
    // More than the limit: one row past it, so the caller knows.
    assert_eq!(store.bans_in_force("acme", 2).await.unwrap(), acme);
    assert_eq!(store.bans_in_force("acme", 1).await.unwrap(), acme[..2]);
    assert_eq!(store.bans_in_force("acme", 0).await.unwrap(), acme[..1]);
    app.clock.advance(61_000);
    assert_eq!(store.bans_in_force("acme", 10).await.unwrap(), acme[..2]);
}

async fn foreign_keys_refuse_rows_of_an_org_that_does_not_exist(app: TestApp) {
    use evd_api::store::{AccessStore, Disconnect, StoreError};
    // A staff token of an org that was never created writes nothing.
    let ghost = app.token("gus", "ghost", Role::Organizer);
    let (status, body) = app
        .post(
            "/events",
            &ghost,
            json!({"name": "Orphan", "status": "draft",
                   "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-01T10:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("org"), "{body}");
    let (_, page) = app.get("/events", &ghost).await;
    assert_eq!(page["items"], json!([]));
    // The outbox and the bans refer to their org too.
    let d = Disconnect {
        by: "gus".into(),
        reason: None,
        ban: Some(std::time::Duration::from_secs(60)),
    };
    match app.store.disconnect_user("ghost", "troll", &d).await {
        Err(StoreError::Database(e)) => assert!(
            e.as_database_error()
                .is_some_and(|d| d.is_foreign_key_violation()),
            "{e}"
        ),
        other => panic!("an orphan ban was written: {other:?}"),
    }
    let d = Disconnect { ban: None, ..d };
    assert!(
        app.store
            .disconnect_user("ghost", "troll", &d)
            .await
            .is_err()
    );
    // Once the org exists, the same writes go through.
    app.post("/orgs", &ghost, json!({"id": "ghost", "name": "Ghost"}))
        .await;
    assert!(
        app.store
            .disconnect_user("ghost", "troll", &d)
            .await
            .is_ok()
    );
}
