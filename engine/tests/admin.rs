//! `GET /admin/stats`, the admin view's data, on one node (the in-memory board): an owner sees
//! the connections and rooms the test opened, summed from the node's snapshot, with another
//! org's rooms left out; everyone else is refused. Across nodes on Redis: `tests/cluster.rs`.

mod common;

use common::*;
use evd_engine::stats::overview::Overview;
use evd_protocol::Codec;
use evd_protocol::auth::Role;
use std::time::Instant;

fn admin_settings() -> evd_engine::Settings {
    let mut s = settings();
    s.admin.snapshot_every_ms = 100;
    s.admin.snapshot_ttl_ms = 1_000;
    s
}

async fn get(server: &TestServer, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(server.http("/admin/stats"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// Polls the stats as `token` until `done` holds (the next snapshot is at most one period
/// away), and returns that answer; fails with the last one after [`PATIENCE`].
async fn stats_until(
    server: &TestServer,
    token: &str,
    what: &str,
    done: impl Fn(&Overview) -> bool,
) -> Overview {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let resp = get(server, Some(token)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let v: Overview = resp.json().await.unwrap();
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "never {what}; last: {v:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_owner_sees_the_connections_and_rooms_the_test_opened() {
    let server = TestServer::with(admin_settings()).await;
    let owner = server.token("olivia", "acme", Role::Owner, &[]);
    let mut a = server
        .client("a", "acme", Role::Organizer, Codec::Json)
        .await;
    let mut b = server
        .client("b", "acme", Role::Organizer, Codec::Json)
        .await;
    let mut c = server
        .client("c", "acme", Role::Organizer, Codec::Json)
        .await;
    a.joined("session:S1").await;
    b.joined("session:S1").await;
    c.joined("event:E1").await;
    // Another org on the same node: counted in the node's totals, never listed to acme.
    let mut x = server
        .client("x", "other", Role::Organizer, Codec::Json)
        .await;
    x.joined("session:SECRET").await;

    let v = stats_until(&server, &owner, "showing acme's rooms", |v| {
        v.totals.org_connections == 3 && v.rooms.len() == 2
    })
    .await;
    assert_eq!(v.org, "acme");
    assert_eq!(v.totals.nodes, 1);
    assert_eq!(v.nodes[0].node, server.node.id.as_ref());
    assert_eq!(
        v.totals.connections, 4,
        "every org's connections on the node"
    );
    assert_eq!(v.nodes[0].rooms, 3, "every org's rooms on the node");
    assert_eq!(v.totals.org_rooms, 2);
    let rooms: Vec<(&str, u64, u64)> = v
        .rooms
        .iter()
        .map(|r| (r.room.as_str(), r.members, r.nodes))
        .collect();
    assert_eq!(rooms, [("session:S1", 2, 1), ("event:E1", 1, 1)]);
    assert!(!v.partial);

    // Chat in S1 makes it the busiest room; once quiet, no room is listed as busy.
    for i in 0..5 {
        a.say("session:S1", &format!("m{i}"), None).await;
    }
    let v = stats_until(&server, &owner, "S1 busiest", |v| {
        v.top_traffic.first().map(|r| r.room.as_str()) == Some("session:S1")
    })
    .await;
    assert!(v.top_traffic[0].deliveries_per_sec > 0.0);
    assert!(v.totals.deliveries_per_sec >= v.top_traffic[0].deliveries_per_sec);
    stats_until(&server, &owner, "quiet", |v| v.top_traffic.is_empty()).await;

    // A connection that goes is gone from the next snapshot, and so is its room.
    c.ws.close(None).await.unwrap();
    let v = stats_until(&server, &owner, "c gone", |v| v.totals.org_connections == 2).await;
    assert_eq!(
        v.rooms.iter().map(|r| r.room.as_str()).collect::<Vec<_>>(),
        ["session:S1"]
    );
    assert_eq!(v.totals.org_rooms, 1);
    drop((b, x));
    server.shutdown().await;
}

#[tokio::test]
async fn anyone_but_an_owner_is_refused() {
    let server = TestServer::with(admin_settings()).await;
    let resp = get(&server, None).await;
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");

    let resp = get(&server, Some("not.a.token")).await;
    assert_eq!(resp.status(), 401);

    for role in [Role::Organizer, Role::Attendee] {
        let token = server.token("u1", "acme", role, &[]);
        let resp = get(&server, Some(&token)).await;
        assert_eq!(resp.status(), 403, "{role}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "forbidden");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("owners") && message.contains(role.as_str()),
            "{message}"
        );
    }
    // The token in the query string is not read here (a URL ends up in logs).
    let owner = server.token("olivia", "acme", Role::Owner, &[]);
    let resp = reqwest::get(server.http(&format!("/admin/stats?token={owner}")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(get(&server, Some(&owner)).await.status(), 200);
    server.shutdown().await;
}
