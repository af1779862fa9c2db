//! Several `evd engine` nodes on Redis: chat and presence across nodes, and faults survived (an
//! engine node killed, a Redis primary killed, a slot migrated under an active room).
//!
//! Needs Redis. `EVD_TEST_REDIS_CLUSTER` names a running cluster (e.g.
//! `redis-cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002` from
//! `scripts/redis-cluster.sh start`) and `EVD_TEST_REDIS_URL` a standalone Redis. The fault tests
//! that hurt Redis start clusters of their own with the same script on other ports, so they
//! never disturb the shared one. Without the variables the suite is skipped, unless
//! `EVD_REQUIRE_SERVICES=1`, when that is a failure.
//!
//! Every test uses its own org, so its rooms are its own even on a shared cluster.

mod common;

use common::*;
use evd_engine::Shutdown;
use evd_engine::broker::redis::{RedisBroker, RedisConn};
use evd_engine::broker::{Broker, BrokerHandler, HistoryRequest, NewMessage};
use evd_engine::room_key::RoomKey;
use evd_engine::settings::{BrokerSettings, HistorySettings};
use evd_protocol::Codec;
use evd_protocol::auth::{Claims, Role};
use evd_protocol::bus::{Body, Envelope};
use evd_protocol::event::{Event, RoomJoined};
use evd_protocol::op::{JoinRoom, Op, SendMessage, StreamPosition};
use fred::prelude::{ClientLike, HashesInterface, KeysInterface, PubsubInterface};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Generous bound on anything that should converge (delivery after a fault, presence expiry).
const CONVERGE: Duration = Duration::from_secs(45);

/// The presence ttl the test nodes run with.
const PRESENCE_TTL_MS: u64 = 3_000;

/// How often the test nodes publish their admin snapshot, and how long one lives.
const ADMIN_SNAPSHOT_EVERY_MS: u64 = 200;
const ADMIN_SNAPSHOT_TTL_MS: u64 = 2_000;

fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("EVD_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{var} must be set when EVD_REQUIRE_SERVICES=1")
        }
        _ => {
            eprintln!("skipped: {var} is not set");
            None
        }
    }
}

fn org() -> String {
    format!("t{}", fastrand::u64(..))
}

fn token(user: &str, org: &str) -> String {
    let claims = Claims::new(user, org, Role::Organizer, now(), 3600);
    jwt().signer().unwrap().sign(&claims).unwrap()
}

/// One `evd engine` node on `broker`, named `id`, over an in-memory store.
async fn start_engine(broker: &str, id: &str) -> Evd {
    start_node(broker, id, "engine", "sqlite::memory:").await
}

/// One `evd` node on `broker`, named `id`: `mode` is `engine` or `serve` (with the REST API);
/// `db` the store. Its log is echoed, each line marked with `id`.
async fn start_node(broker: &str, id: &str, mode: &str, db: &str) -> Evd {
    let mut cmd = evd_command(db);
    cmd.env("EVD_BROKER_URL", broker)
        .env("EVD_NODE_ID", id)
        .env("EVD_TICK_MS", "20")
        .env("EVD_LIMITS_CONN_RATE_PER_IP", "0")
        .env("EVD_DRAIN_GRACE_MS", "200")
        .env("EVD_PRESENCE_TTL_MS", PRESENCE_TTL_MS.to_string())
        .env("EVD_BROKER_PROBE_INTERVAL_MS", "200")
        .env("EVD_BROKER_PROBE_TIMEOUT_MS", "1000")
        .env("EVD_BROKER_UNSUBSCRIBE_DELAY_MS", "300")
        .env("EVD_BROKER_COMMAND_TIMEOUT_MS", "1000")
        .env(
            "EVD_ADMIN_SNAPSHOT_EVERY_MS",
            ADMIN_SNAPSHOT_EVERY_MS.to_string(),
        )
        .env(
            "EVD_ADMIN_SNAPSHOT_TTL_MS",
            ADMIN_SNAPSHOT_TTL_MS.to_string(),
        )
        .env("EVD_LOG", "info,fred=warn")
        .args([mode, "--listen", "127.0.0.1:0"]);
    Evd::spawn(cmd, Some(id)).await
}

async fn engines(broker: &str, n: usize) -> Vec<Evd> {
    let tag = fastrand::u32(..);
    let mut out = Vec::new();
    for i in 0..n {
        out.push(start_engine(broker, &format!("n{i}-{tag}")).await);
    }
    out
}

async fn connect(url: &str, user: &str, org: &str) -> Client {
    Client::connect(url, &token(user, org), Codec::Json).await
}

fn joined(e: Event) -> RoomJoined {
    match e {
        Event::RoomJoined(j) => j,
        other => panic!("expected ROOM_JOINED, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Chat and presence across nodes.

async fn chat_reaches_every_member_in_order_once(broker: &str) {
    let org = org();
    let nodes = engines(broker, 3).await;
    let room = "session:S1";
    // Two members per node; one sender on each node.
    let mut members = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for j in 0..2 {
            let mut c = connect(&node.url, &format!("u{i}{j}"), &org).await;
            let j = joined(c.join(room, 0, None).await);
            assert_eq!(j.offset, 0);
            members.push(c);
        }
    }
    let per_sender = 15;
    let mut acked = Vec::new();
    for k in 0..per_sender {
        for (i, m) in members.iter_mut().enumerate().step_by(2) {
            let text = format!("m{i}-{k}");
            match m.say(room, &text, Some(&text)).await {
                Event::Ack(a) => acked.push((a.offset.unwrap(), text)),
                other => panic!("send: {other:?}"),
            }
        }
    }
    acked.sort();
    let total = acked.len() as u64;
    assert_eq!(
        acked.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "offsets are dense"
    );
    for (n, m) in members.iter_mut().enumerate() {
        let mut got = Vec::new();
        while got.len() < acked.len() {
            let msg = m.message().await;
            got.push((msg.offset, msg.text));
        }
        assert_eq!(
            got, acked,
            "member {n}: every message, in offset order, once"
        );
        // Nothing more arrives: no duplicates trailing behind.
        while let Ok(Some(e)) = m.next_or_close(Duration::from_millis(300)).await {
            assert!(
                !matches!(e, Event::MessageReceived(_)),
                "member {n} got more than it should: {e:?}"
            );
        }
    }
    for node in &nodes {
        let text = node.metrics().await;
        assert_eq!(metric(&text, "evd_broker_connected", ""), 1.0, "{text}");
        assert!(metric(&text, "evd_broker_subscriptions", "") >= 1.0);
        assert_eq!(metric(&text, "evd_broker_publish_errors_total", ""), 0.0);
    }
}

#[tokio::test]
async fn cluster_chat_reaches_every_member_in_order_once() {
    let Some(url) = service("EVD_TEST_REDIS_CLUSTER") else {
        return;
    };
    chat_reaches_every_member_in_order_once(&url).await;
}

#[tokio::test]
async fn standalone_chat_reaches_every_member_in_order_once() {
    let Some(url) = service("EVD_TEST_REDIS_URL") else {
        return;
    };
    chat_reaches_every_member_in_order_once(&url).await;
}

#[tokio::test]
async fn presence_spans_nodes_and_counts_a_user_once() {
    let Some(url) = service("EVD_TEST_REDIS_CLUSTER") else {
        return;
    };
    let org = org();
    let nodes = engines(&url, 3).await;
    let room = "event:E1";
    let mut a0 = connect(&nodes[0].url, "alice", &org).await;
    let mut a1 = connect(&nodes[1].url, "alice", &org).await;
    let mut b2 = connect(&nodes[2].url, "bob", &org).await;
    joined(a0.join(room, 0, None).await);
    joined(a1.join(room, 0, None).await);
    joined(b2.join(room, 0, None).await);
    let mut obs = connect(&nodes[1].url, "olga", &org).await;
    let j = joined(obs.join(room, 0, None).await);
    assert_eq!(
        j.presence.count, 3,
        "alice once, bob, olga: {:?}",
        j.presence
    );
    let users: Vec<&str> = j.presence.members.iter().map(|m| m.user.as_str()).collect();
    assert_eq!(users, ["alice", "bob", "olga"]);

    // Alice closes one of her two connections: not a leave.
    assert!(matches!(a0.leave(room).await, Event::RoomLeft(_)));
    let j = joined(obs.join(room, 0, None).await);
    assert_eq!(j.presence.count, 3);
    // Her last one: a leave, seen on every node, once.
    assert!(matches!(a1.leave(room).await, Event::RoomLeft(_)));
    for (who, c) in [("olga", &mut obs), ("bob", &mut b2)] {
        let update = c
            .next_where(|e| match e {
                Event::PresenceUpdate(u) if u.leaves.as_ref().is_some_and(|l| !l.is_empty()) => {
                    Some(u)
                }
                _ => None,
            })
            .await;
        assert_eq!(update.count, 2, "{who}: {update:?}");
        let leaves: Vec<&str> = update
            .leaves
            .iter()
            .flatten()
            .map(|m| m.user.as_str())
            .collect();
        assert_eq!(leaves, ["alice"], "{who}");
    }
    // A join announced once reaches each member as one update, not one per node.
    let mut dave = connect(&nodes[0].url, "dave", &org).await;
    joined(dave.join(room, 0, None).await);
    for (who, c) in [("olga", &mut obs), ("bob", &mut b2)] {
        let mut updates = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(Event::PresenceUpdate(u))) =
                c.next_or_close(Duration::from_millis(100)).await
                && u.joins.iter().flatten().any(|m| m.user == "dave")
            {
                assert_eq!(u.count, 3, "{who}: {u:?}");
                updates += 1;
            }
        }
        assert_eq!(updates, 1, "{who} saw dave join once");
    }
}

/// Records what the broker delivers.
#[derive(Default)]
struct Recorder(parking_lot::Mutex<Vec<u64>>);

impl BrokerHandler for Recorder {
    fn handle(&self, _room: &RoomKey, envelope: &Envelope) {
        if let Body::Chat { message, .. } = &envelope.body {
            self.0.lock().push(message.offset);
        }
    }
}

/// Broker settings for the standalone Redis at `EVD_TEST_REDIS_URL`; `None` when it is unset.
fn standalone() -> Option<BrokerSettings> {
    Some(BrokerSettings {
        url: service("EVD_TEST_REDIS_URL")?,
        ..BrokerSettings::default()
    })
}

/// A broker on the standalone Redis, a second handle on its clients, and what it delivers.
async fn standalone_broker(
    node: &str,
    settings: BrokerSettings,
    history: HistorySettings,
    shutdown: &Shutdown,
) -> (Arc<RedisBroker>, RedisConn, Arc<Recorder>) {
    let conn = RedisConn::connect(&settings).await.unwrap();
    let clients = conn.clone();
    let rec = Arc::new(Recorder::default());
    let broker = RedisBroker::start(node, conn, history, settings, rec.clone(), shutdown);
    (broker, clients, rec)
}

#[tokio::test]
async fn standalone_history_idempotency_and_epochs() {
    let Some(settings) = standalone() else {
        return;
    };
    let history = HistorySettings {
        size: 3,
        ..HistorySettings::default()
    };
    let shutdown = Shutdown::new();
    let (broker, conn, rec) = standalone_broker("t", settings, history, &shutdown).await;
    let client = conn.client.clone();
    let room = RoomKey::new(&org(), evd_protocol::RoomName::parse("session:S1").unwrap());
    broker.subscribe(&room).await.unwrap();
    let msg = |text: &str, client_id: Option<&str>| NewMessage {
        id: text.into(),
        user: "u1".into(),
        text: text.into(),
        ts: 0,
        client_id: client_id.map(str::to_owned),
    };
    for i in 1..=4u64 {
        let p = broker
            .publish(&room, msg(&format!("m{i}"), Some(&format!("c{i}"))))
            .await
            .unwrap();
        assert_eq!((p.offset, p.duplicate), (i, false));
    }
    let again = broker.publish(&room, msg("m1", Some("c1"))).await.unwrap();
    assert_eq!(
        (again.offset, again.duplicate),
        (1, true),
        "a resend is acknowledged, not stored"
    );
    let h = broker
        .history(&room, HistoryRequest::Latest(10))
        .await
        .unwrap();
    let epoch = h.epoch.clone();
    assert_eq!(h.offset, 4);
    assert_eq!(
        h.messages.iter().map(|m| m.offset).collect::<Vec<_>>(),
        [2, 3, 4],
        "capped at 3"
    );
    let since = |offset| {
        HistoryRequest::Since(StreamPosition {
            epoch: epoch.clone(),
            offset,
        })
    };
    let h = broker.history(&room, since(2)).await.unwrap();
    assert!(h.complete);
    assert_eq!(
        h.messages
            .iter()
            .map(|m| m.text.as_str())
            .collect::<Vec<_>>(),
        ["m3", "m4"]
    );
    assert!(
        !broker.history(&room, since(0)).await.unwrap().complete,
        "offset 1 is gone"
    );
    assert!(
        !broker.history(&room, since(5)).await.unwrap().complete,
        "no future offsets"
    );
    // Delivered to the subscriber in order, once.
    let deadline = Instant::now() + PATIENCE;
    while rec.0.lock().len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*rec.0.lock(), [1, 2, 3, 4]);

    let meta = format!("{}:m", room.channel());
    // Keys that moved here by slot migration (written by another primary) keep their history.
    let _: () = client
        .hset(&meta, ("r", "some-other-primarys-replication-id"))
        .await
        .unwrap();
    assert!(broker.history(&room, since(3)).await.unwrap().complete);
    // Written by the primary this one replaced (its previous replication id): the last writes may
    // be missing, so a new epoch starts.
    let info: String = client
        .info(Some(fred::types::InfoKind::Replication))
        .await
        .unwrap();
    let replid2 = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("master_replid2:"))
        .unwrap()
        .to_owned();
    let _: () = client.hset(&meta, ("r", replid2)).await.unwrap();
    let h = broker.history(&room, since(3)).await.unwrap();
    assert!(!h.complete);
    assert_ne!(h.epoch, epoch);
    assert_eq!(h.offset, 0);
    let epoch2 = h.epoch;
    // A flush (or expiry): a new epoch again.
    let _: () = client.del(&meta).await.unwrap();
    let p = broker.publish(&room, msg("fresh", None)).await.unwrap();
    assert_eq!(p.offset, 1);
    assert_ne!(p.epoch, epoch2);
    shutdown.stop();
}

#[tokio::test]
async fn a_redis_broker_is_ready_only_while_connected() {
    let Some(settings) = standalone() else {
        return;
    };
    let shutdown = Shutdown::new();
    let (broker, clients, _) =
        standalone_broker("t", settings, HistorySettings::default(), &shutdown).await;
    broker.ready().await.unwrap();
    clients.quit().await;
    let err = broker.ready().await.unwrap_err();
    assert!(err.to_string().contains("not connected"), "{err}");
    shutdown.stop();
}

#[tokio::test]
async fn standalone_probe_catches_subscriptions_that_silently_died() {
    let Some(settings) = standalone() else {
        return;
    };
    let settings = BrokerSettings {
        probe_interval_ms: 100,
        probe_timeout_ms: 500,
        ..settings
    };
    let shutdown = Shutdown::new();
    let node = format!("probe-{}", fastrand::u32(..));
    let (broker, behind_its_back, rec) =
        standalone_broker(&node, settings, HistorySettings::default(), &shutdown).await;
    let room = RoomKey::new(&org(), evd_protocol::RoomName::parse("session:S1").unwrap());
    broker.subscribe(&room).await.unwrap();
    let msg = |i: u64| NewMessage {
        id: i.to_string(),
        user: "u1".into(),
        text: i.to_string(),
        ts: 0,
        client_id: None,
    };
    let wait_for = |n: usize| {
        let rec = Arc::clone(&rec);
        async move {
            let deadline = Instant::now() + PATIENCE;
            while rec.0.lock().len() < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            rec.0.lock().clone()
        }
    };
    for i in 1..=3 {
        broker.publish(&room, msg(i)).await.unwrap();
    }
    assert_eq!(wait_for(3).await, [1, 2, 3]);
    // The broker subscribes its probe channel on its first probe round. Unsubscribing before
    // that would leave the probe alive and only the room dead, which is not the failure under
    // test (a connection whose subscriptions all died), so wait for the probe's subscription.
    let probe_channel = format!("evd:probe:{{{node}}}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply: Vec<fred::types::Value> = behind_its_back
            .client
            .pubsub_shardnumsub(probe_channel.clone())
            .await
            .unwrap();
        if reply.get(1).and_then(fred::types::Value::as_i64) == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the probe never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The connection stays up, but its subscriptions are gone and nobody told the broker.
    behind_its_back
        .sub
        .sunsubscribe(vec![room.channel(), probe_channel])
        .await
        .unwrap();
    for i in 4..=6 {
        broker.publish(&room, msg(i)).await.unwrap();
    }
    // The probe times out, the room is resubscribed and its gap read from history.
    assert_eq!(wait_for(6).await, [1, 2, 3, 4, 5, 6]);
    broker.publish(&room, msg(7)).await.unwrap();
    assert_eq!(wait_for(7).await, [1, 2, 3, 4, 5, 6, 7], "live again");
    shutdown.stop();
}

/// Poll results are absolute tallies merged by maximum: each vote reaches each member as at
/// most one `POLL_RESULTS`, however many nodes relay it, and the relayed `POLL_CREATED` arrives
/// once. Needs PostgreSQL too (the nodes share the store).
#[tokio::test]
async fn poll_results_across_nodes_do_not_multiply() {
    let Some(url) = service("EVD_TEST_REDIS_CLUSTER") else {
        return;
    };
    let Some(db) = evd_api::test_util::TestDb::postgres("cluster").await else {
        return;
    };
    let tag = fastrand::u32(..);
    let mut nodes = vec![start_node(&url, &format!("p0-{tag}"), "serve", &db.url).await];
    for i in 1..3 {
        nodes.push(start_node(&url, &format!("p{i}-{tag}"), "serve", &db.url).await);
    }
    let api = nodes[0].remote();
    let org = org();
    let (owner, _event, session) = api.seed(&org, "olive", 100).await;
    let room = format!("session:{session}");
    let mut members = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for j in 0..2 {
            // Attendees with a grant: the org exists, so an organizer's token would be capped
            // by a membership these users do not have.
            let token = api.token_with(&format!("m{i}{j}"), &org, Role::Attendee, None, &[&room]);
            let mut c = Client::connect(&node.url, &token, Codec::Json).await;
            joined(c.join(&room, 0, None).await);
            members.push(c);
        }
    }
    let (poll, options) = api.create_poll(&owner, &session, &["red", "blue"]).await;
    let votes = [(0, &options[0]), (2, &options[1]), (4, &options[0])];
    for (m, option) in votes {
        let op = Op::SubmitPollResponse(evd_protocol::op::SubmitPollResponse {
            poll: poll.clone(),
            option: option.clone(),
        });
        assert!(matches!(
            request(&mut members[m], op).await,
            Ok(Event::Ack(_))
        ));
    }
    let want: std::collections::BTreeMap<String, u64> =
        [(options[0].clone(), 2), (options[1].clone(), 1)].into();
    for (n, c) in members.iter_mut().enumerate() {
        let (mut created, mut results, mut done) = (0, Vec::new(), None::<Instant>);
        let deadline = Instant::now() + CONVERGE;
        while done.is_none_or(|at| at.elapsed() < Duration::from_millis(500)) {
            assert!(Instant::now() < deadline, "member {n}: {results:?}");
            match c.next_or_close(Duration::from_millis(100)).await {
                Ok(Some(Event::PollCreated(p))) if p.poll.id == poll => created += 1,
                Ok(Some(Event::PollResults(r))) if r.poll == poll => {
                    if r.counts == want {
                        done.get_or_insert_with(Instant::now);
                    }
                    results.push(r.counts);
                }
                Ok(_) => {}
                Err(close) => panic!("member {n} closed: {close:?}"),
            }
        }
        assert_eq!(created, 1, "member {n}: POLL_CREATED once");
        assert!(
            results.len() <= votes.len(),
            "member {n}: at most one update per vote, not one per node: {results:?}"
        );
        for pair in results.windows(2) {
            assert!(
                pair[0]
                    .iter()
                    .all(|(k, v)| pair[1].get(k).is_some_and(|w| w >= v)),
                "member {n}: tallies never go back: {results:?}"
            );
        }
    }
}

/// An organizer's disconnect closes the user's sockets on every node (`DISCONNECTED`, then 4504),
/// and its ban refuses their reconnect on either node until it ends; then they are let back in.
/// Needs PostgreSQL too (the nodes share the store, whose outbox tells every node).
#[tokio::test]
async fn a_disconnect_closes_a_users_sockets_on_every_node_and_its_ban_holds_on_each() {
    let Some(url) = service("EVD_TEST_REDIS_CLUSTER") else {
        return;
    };
    let Some(db) = evd_api::test_util::TestDb::postgres("cluster").await else {
        return;
    };
    let tag = fastrand::u32(..);
    let nodes = [
        start_node(&url, &format!("d0-{tag}"), "serve", &db.url).await,
        start_node(&url, &format!("d1-{tag}"), "serve", &db.url).await,
    ];
    let api = nodes[0].remote();
    let org = org();
    let (owner, _event, _session) = api.seed(&org, "olive", 10).await;
    let troll = api.token_with("troll", &org, Role::Attendee, None, &[]);
    let mut socks = Vec::new();
    for node in &nodes {
        socks.push(Client::connect(&node.url, &troll, Codec::Json).await);
    }
    let mut bystander = Client::connect(
        &nodes[1].url,
        &api.token_with("ann", &org, Role::Attendee, None, &[]),
        Codec::Json,
    )
    .await;

    let (status, body) = api
        .rest(
            reqwest::Method::POST,
            &format!("/orgs/{org}/users/troll/disconnect"),
            &owner,
            Some(serde_json::json!({"reason": "abuse", "ban_secs": 3})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let until = body["banned_until"].as_i64().unwrap();
    for (n, c) in socks.iter_mut().enumerate() {
        let (events, close) = c.events_until_close().await;
        assert!(
            events.iter().any(|e| matches!(e,
                Event::Disconnected(d) if d.reason.as_deref() == Some("abuse")
                    && d.banned_until == Some(until))),
            "node {n}: {events:?}"
        );
        assert_eq!(
            close.map(|f| u16::from(f.code)),
            Some(evd_protocol::CloseCode::Disconnected.code()),
            "node {n}"
        );
    }
    assert!(matches!(
        request(&mut bystander, Op::Ping(evd_protocol::op::Ping {})).await,
        Ok(Event::Pong(_))
    ));
    for node in &nodes {
        let refused = try_connect(&node.url, Some(&troll), &[], None)
            .await
            .expect_err("banned on every node");
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert!(refused.body.contains("\"banned\""), "{}", refused.body);
    }
    let wait = u64::try_from(until - evd_engine::clock::unix_ms()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait + 200)).await;
    for node in &nodes {
        let mut back = Client::connect(&node.url, &troll, Codec::Json).await;
        assert!(matches!(
            request(&mut back, Op::Ping(evd_protocol::op::Ping {})).await,
            Ok(Event::Pong(_))
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// The admin view across nodes.

/// `GET /admin/stats` on `node` as `token`, until `done` holds; fails with the last answer after
/// [`CONVERGE`].
async fn admin_stats_until(
    node: &Evd,
    token: &str,
    what: &str,
    done: impl Fn(&evd_engine::stats::overview::Overview) -> bool,
) -> evd_engine::stats::overview::Overview {
    let url = format!("http://{}/admin/stats", node.addr());
    let deadline = Instant::now() + CONVERGE;
    loop {
        let resp = reqwest::Client::new()
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: evd_engine::stats::overview::Overview = resp.json().await.unwrap();
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "never {what}; last: {v:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn admin_stats_show_every_node_and_sum_their_rooms() {
    let Some(url) = service("EVD_TEST_REDIS_CLUSTER") else {
        return;
    };
    let org = org();
    let mut nodes = engines(&url, 2).await;
    let owner = jwt()
        .signer()
        .unwrap()
        .sign(&Claims::new("olive", &org, Role::Owner, now(), 3600))
        .unwrap();
    // session:S1 has two members on n0 and one on n1; event:E1 one on n1.
    let mut clients = Vec::new();
    for (n, user, room) in [
        (0, "a", "session:S1"),
        (0, "b", "session:S1"),
        (1, "c", "session:S1"),
        (1, "d", "event:E1"),
    ] {
        let mut c = connect(&nodes[n].url, user, &org).await;
        joined(c.join(room, 0, None).await);
        clients.push(c);
    }
    let ids: Vec<String> = clients.iter().map(|c| c.hello.node.clone()).collect();
    let (n0, n1) = (ids[0].clone(), ids[2].clone());
    assert_ne!(n0, n1);
    let mine = |v: &evd_engine::stats::overview::Overview, id: &str| {
        v.nodes
            .iter()
            .find(|n| n.node == id)
            .map(|n| (n.org_connections, n.org_rooms))
    };
    for node in &nodes {
        // Other tests share the cluster: their nodes are listed too, their orgs' rooms are not.
        let v = admin_stats_until(node, &owner, "both nodes with the org's counts", |v| {
            mine(v, &n0) == Some((2, 1)) && mine(v, &n1) == Some((2, 2))
        })
        .await;
        assert!(v.totals.nodes >= 2);
        assert_eq!(v.totals.org_connections, 4, "summed over the nodes");
        assert_eq!(v.totals.org_rooms, 2, "S1 on two nodes is one room");
        let rooms: Vec<(&str, u64, u64)> = v
            .rooms
            .iter()
            .map(|r| (r.room.as_str(), r.members, r.nodes))
            .collect();
        assert_eq!(rooms, [("session:S1", 3, 2), ("event:E1", 1, 1)]);
    }

    // A message in S1 is delivered on both nodes: the room's traffic is theirs summed.
    clients[0].say("session:S1", "hello", None).await;
    admin_stats_until(&nodes[0], &owner, "S1 busy", |v| {
        v.top_traffic
            .iter()
            .any(|r| r.room == "session:S1" && r.nodes == 2)
    })
    .await;

    // A node that dies stops publishing: it leaves the view once its snapshot lapses.
    nodes[1].kill().await;
    let v = admin_stats_until(&nodes[0], &owner, "n1 gone", |v| mine(v, &n1).is_none()).await;
    assert_eq!(v.totals.org_connections, 2);
    assert_eq!(
        v.rooms
            .iter()
            .map(|r| (r.room.as_str(), r.members))
            .collect::<Vec<_>>(),
        [("session:S1", 2)]
    );
}

// ---------------------------------------------------------------------------------------------
// Faults.

/// What a member has received so far, readable while it runs.
#[derive(Default)]
struct Progress {
    got: BTreeSet<String>,
    lost_at: Option<Instant>,
}

type Shared<T> = Arc<parking_lot::Mutex<T>>;

/// Sends `op` and waits for its reply; `Err` if the connection closes first.
async fn request(client: &mut Client, op: Op) -> Result<Event, ()> {
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

/// Connects, or `None` if the node is gone or drops the connection.
async fn try_connect_to(url: &str, user: &str, org: &str) -> Option<Client> {
    Client::connect_opt(url, &token(user, org), Codec::Json).await
}

/// A room member that survives faults: on `RECONNECT` or a close it reconnects to a live node
/// and rejoins with `recover`. It checks, as it goes, that within an epoch offsets only ever go
/// up by one (in order, exactly once, no gap).
struct Member {
    name: String,
    org: String,
    room: String,
    client: Client,
    pos: StreamPosition,
    /// Texts received, with when.
    got: Vec<(String, Instant)>,
    progress: Shared<Progress>,
    recovered: usize,
    /// `RECONNECT` events received.
    reconnects: usize,
}

impl Member {
    async fn join(url: &str, name: &str, org: &str, room: &str) -> Member {
        let mut client = connect(url, name, org).await;
        let j = joined(client.join(room, 0, None).await);
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
            reconnects: 0,
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
    async fn run(mut self, urls: Shared<Vec<String>>, stop: Arc<AtomicBool>) -> Member {
        while !stop.load(Ordering::Relaxed) {
            match self.client.next_or_close(Duration::from_millis(100)).await {
                Ok(Some(Event::MessageReceived(m))) if m.room == self.room => {
                    self.take(m.offset, m.text)
                }
                Ok(Some(Event::Reconnect(_))) => self.reconnects += 1,
                Ok(_) => {}
                Err(_closed) => self.rejoin(&urls).await,
            }
        }
        self
    }

    async fn rejoin(&mut self, urls: &parking_lot::Mutex<Vec<String>>) {
        let deadline = Instant::now() + CONVERGE;
        loop {
            assert!(Instant::now() < deadline, "{} could not rejoin", self.name);
            let candidates = urls.lock().clone();
            let url = &candidates[fastrand::usize(..candidates.len())];
            let Some(client) = try_connect_to(url, &self.name, &self.org).await else {
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
                // The broker is still failing over, or this connection was closed: again.
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

    fn lost_at(&self) -> Option<Instant> {
        self.progress.lock().lost_at
    }
}

/// Sends `text` until it is acknowledged (same `client_id` each time), reconnecting as needed.
async fn send_until_acked(sender: &mut Client, url: &str, org: &str, room_name: &str, text: &str) {
    let deadline = Instant::now() + CONVERGE;
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
                if let Some(c) = try_connect_to(url, "sender", org).await {
                    *sender = c;
                }
            }
        }
    }
}

struct Sent {
    text: String,
    acked_at: Instant,
}

/// What a member must have: every message acknowledged after its last `recovered:false`.
fn missing<'a>(p: &Progress, sent: &'a [Sent]) -> Vec<&'a str> {
    sent.iter()
        .filter(|s| p.lost_at.is_none_or(|at| s.acked_at > at))
        .map(|s| s.text.as_str())
        .filter(|t| !p.got.contains(*t))
        .collect()
}

/// Runs two members on each of `urls`, sends `before` messages, runs `fault`, sends `after`
/// more, and waits (bounded) until every member has what it must have. Returns the members,
/// what was sent and when the fault happened.
async fn chat_through_fault<F: std::future::Future<Output = ()>>(
    urls: Vec<String>,
    sender_url: &str,
    org: &str,
    room: &str,
    before: usize,
    after: usize,
    fault: impl FnOnce() -> F,
) -> (Vec<Member>, Vec<Sent>, Instant) {
    let live = Shared::new(parking_lot::Mutex::new(urls.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut progress = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        for j in 0..2 {
            let m = Member::join(url, &format!("m{i}{j}"), org, room).await;
            progress.push(Arc::clone(&m.progress));
            tasks.push(tokio::spawn(m.run(Arc::clone(&live), Arc::clone(&stop))));
        }
    }
    let mut sender = connect(sender_url, "sender", org).await;
    let mut sent = Vec::new();
    for k in 0..before {
        let text = format!("before-{k}");
        send_until_acked(&mut sender, sender_url, org, room, &text).await;
        sent.push(Sent {
            text,
            acked_at: Instant::now(),
        });
    }
    let fault_at = Instant::now();
    fault().await;
    for k in 0..after {
        let text = format!("after-{k}");
        send_until_acked(&mut sender, sender_url, org, room, &text).await;
        sent.push(Sent {
            text,
            acked_at: Instant::now(),
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + CONVERGE;
    while Instant::now() < deadline
        && progress
            .iter()
            .any(|p| !missing(&p.lock(), &sent).is_empty())
    {
        assert!(!tasks.iter().any(|t| t.is_finished()), "a member failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A moment more, so a duplicate or stray message would still be caught by `take`.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut members = Vec::new();
    for t in tasks {
        members.push(t.await.unwrap());
    }
    (members, sent, fault_at)
}

/// Every member has every message acknowledged after its last `recovered:false` rejoin (and
/// in-order, exactly-once delivery was checked as they arrived).
fn assert_nothing_lost_silently(members: &[Member], sent: &[Sent]) {
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

#[tokio::test]
async fn engine_node_loss_members_vanish_and_clients_recover_exactly_what_they_missed() {
    let Some(url) = service("EVD_TEST_REDIS_CLUSTER") else {
        return;
    };
    let org = org();
    let mut nodes = engines(&url, 3).await;
    let room = "session:S1";
    let mut watcher = connect(&nodes[0].url, "watcher", &org).await;
    joined(watcher.join(room, 0, None).await);
    let mut victim = connect(&nodes[2].url, "victim", &org).await;
    let j = joined(victim.join(room, 0, None).await);
    let mut sender = connect(&nodes[1].url, "sender", &org).await;
    for k in 0..3 {
        assert!(matches!(
            sender.say(room, &format!("seen-{k}"), None).await,
            Event::Ack(_)
        ));
    }
    let mut pos = StreamPosition {
        epoch: j.epoch,
        offset: j.offset,
    };
    for _ in 0..3 {
        pos.offset = victim.message().await.offset;
    }
    let count = joined(watcher.join(room, 0, None).await).presence.count;
    assert_eq!(count, 2, "the watcher and the victim");

    nodes[2].kill().await;
    let killed = Instant::now();
    // Its member leaves presence once the ttl has passed (announced like any leave).
    let update = tokio::time::timeout(
        CONVERGE,
        watcher.next_where(|e| match e {
            Event::PresenceUpdate(u)
                if u.leaves
                    .as_ref()
                    .is_some_and(|l| l.iter().any(|m| m.user == "victim")) =>
            {
                Some(u)
            }
            _ => None,
        }),
    )
    .await
    .expect("the dead node's member leaves");
    assert_eq!(update.count, 1);
    eprintln!(
        "dead node's member left presence after {:.2}s (ttl {:.1}s)",
        killed.elapsed().as_secs_f64(),
        PRESENCE_TTL_MS as f64 / 1000.0
    );
    let snap = joined(watcher.join(room, 0, None).await).presence;
    assert_eq!(snap.count, 1);
    assert!(snap.members.iter().all(|m| m.user != "victim"));

    // Messages while the victim is away; it comes back on another node and recovers them.
    let mut missed = Vec::new();
    for k in 0..4 {
        let text = format!("missed-{k}");
        match sender.say(room, &text, None).await {
            Event::Ack(a) => missed.push((a.offset.unwrap(), text)),
            other => panic!("{other:?}"),
        }
    }
    let mut back = connect(&nodes[0].url, "victim", &org).await;
    let j = joined(back.join(room, 0, Some(pos)).await);
    assert!(j.recovered);
    let recovered: Vec<(u64, String)> = j.history.into_iter().map(|m| (m.offset, m.text)).collect();
    assert_eq!(recovered, missed, "exactly what it missed");
    // And live delivery resumes after them.
    assert!(matches!(
        sender.say(room, "live", None).await,
        Event::Ack(_)
    ));
    let m = back.message().await;
    assert_eq!(
        (m.offset, m.text.as_str()),
        (missed.last().unwrap().0 + 1, "live")
    );
}

/// A primary: port, node id, slot ranges.
type Primary = (u16, String, Vec<(u16, u16)>);

/// A cluster of this test's own, started and stopped with `scripts/redis-cluster.sh`.
struct OwnCluster {
    base: u16,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/redis-cluster.sh")
}

/// The port bases tried for a test's own cluster. A cluster takes the six ports from its base
/// and, for its bus, the six from base + 10,000: all of them stay below Linux's ephemeral range
/// (32768 and up), where the engines' own client connections could take them.
const OWN_CLUSTER_BASES: std::ops::Range<u16> = 20_000..22_700;

/// Tries at finding a base whose ports are all free.
const OWN_CLUSTER_TRIES: usize = 200;

/// A port base whose twelve ports nothing listens on now: concurrent test runs (or another
/// checkout's) each get their own cluster instead of colliding on a fixed one.
fn free_cluster_base() -> u16 {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    for _ in 0..OWN_CLUSTER_TRIES {
        let base = fastrand::u16(OWN_CLUSTER_BASES) / 10 * 10;
        if (0..6).all(|i| free(base + i) && free(base + 10_000 + i)) {
            return base;
        }
    }
    panic!("no free port base for a Redis Cluster in {OWN_CLUSTER_BASES:?}");
}

impl OwnCluster {
    /// A six-process cluster of the test's own, on a free port base.
    fn start_free() -> OwnCluster {
        OwnCluster::start(free_cluster_base())
    }

    fn start(base: u16) -> OwnCluster {
        let out = std::process::Command::new(script())
            .args(["start", &base.to_string()])
            .output()
            .expect("run scripts/redis-cluster.sh");
        assert!(
            out.status.success(),
            "cluster start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        OwnCluster { base }
    }

    fn url(&self) -> String {
        let b = self.base;
        format!(
            "redis-cluster://127.0.0.1:{b},127.0.0.1:{},127.0.0.1:{}",
            b + 1,
            b + 2
        )
    }

    fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Primaries: (port, node id, slot ranges).
    fn primaries(&self) -> Vec<Primary> {
        let ports = self.base..self.base + 6;
        for port in ports {
            let nodes = self.cli(port, &["cluster", "nodes"]);
            if nodes.is_empty() {
                continue;
            }
            return nodes
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    if !f.get(2)?.contains("master") || f.get(2)?.contains("fail") {
                        return None;
                    }
                    let port: u16 = f[1].split(['@', ':']).nth(1)?.parse().ok()?;
                    let ranges = f[8..]
                        .iter()
                        .filter(|r| !r.starts_with('['))
                        .filter_map(|r| {
                            let (a, b) = r.split_once('-').unwrap_or((r, r));
                            Some((a.parse().ok()?, b.parse().ok()?))
                        })
                        .collect();
                    Some((port, f[0].to_owned(), ranges))
                })
                .collect();
        }
        panic!("no cluster node answers")
    }

    /// The live primary serving `slot` now, if one does (none between a primary's failure and
    /// its replica's promotion).
    fn primary_of(&self, slot: u16) -> Option<Primary> {
        self.primaries()
            .into_iter()
            .find(|(_, _, r)| r.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
    }

    fn owner(&self, slot: u16) -> (u16, String) {
        self.primary_of(slot)
            .map(|(p, id, _)| (p, id))
            .expect("slot has an owner")
    }

    /// The port of the primary serving `slot` now, if any.
    fn serving(&self, slot: u16) -> Option<u16> {
        self.primary_of(slot).map(|(p, _, _)| p)
    }

    fn slot(&self, key: &str) -> u16 {
        self.cli(self.base, &["cluster", "keyslot", key])
            .parse()
            .unwrap()
    }

    fn pid(&self, port: u16) -> String {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::read_to_string(root.join(format!(".cluster/{}/{port}.pid", self.base)))
            .unwrap()
            .trim()
            .to_owned()
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(script())
            .args(["stop", &self.base.to_string()])
            .output();
    }
}

fn channel(org: &str, room: &str) -> String {
    format!("evd:{{{org} {room}}}")
}

#[tokio::test]
async fn redis_primary_loss_fanout_resumes_and_nothing_is_lost_silently() {
    let Some(_) = service("EVD_TEST_REDIS_CLUSTER") else {
        return;
    };
    let cluster = OwnCluster::start_free();
    let org = org();
    let room = "session:S1";
    let nodes = engines(&cluster.url(), 3).await;
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let slot = cluster.slot(&channel(&org, room));
    let (port, _) = cluster.owner(slot);
    let pid = cluster.pid(port);
    let (members, sent, killed) =
        chat_through_fault(urls, &nodes[0].url, &org, room, 10, 40, || async {
            let ok = kill(&pid, "9").await;
            assert!(ok, "SIGKILL the primary of slot {slot} on port {port}");
        })
        .await;
    assert_nothing_lost_silently(&members, &sent);
    let mut resubscribed = 0.0;
    for node in &nodes {
        let text = node.metrics().await;
        resubscribed += metric(&text, "evd_broker_resubscribes_total", "");
        assert_eq!(
            metric(&text, "evd_broker_connected", ""),
            1.0,
            "reconnected: {text}"
        );
    }
    assert!(resubscribed > 0.0, "the metrics show the resubscribes");
    // The pause: from the kill until every member had a message sent after it.
    let first_after = sent
        .iter()
        .position(|s| s.text == "after-0")
        .expect("sent after the kill");
    let after: BTreeSet<&str> = sent[first_after..]
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    let pause = members
        .iter()
        .map(|m| {
            m.got
                .iter()
                .find(|(t, _)| after.contains(t.as_str()))
                .map_or(CONVERGE, |(_, at)| at.duration_since(killed))
        })
        .max()
        .unwrap();
    let lost: Vec<&str> = members
        .iter()
        .filter(|m| m.lost_at().is_some())
        .map(|m| m.name.as_str())
        .collect();
    eprintln!(
        "redis primary SIGKILL: fanout paused {:.2}s; {} of {} members got recovered:false ({lost:?})",
        pause.as_secs_f64(),
        lost.len(),
        members.len()
    );
}

#[tokio::test]
async fn slot_migration_under_an_active_room_keeps_delivering() {
    let Some(_) = service("EVD_TEST_REDIS_CLUSTER") else {
        return;
    };
    let cluster = OwnCluster::start_free();
    let org = org();
    let room = "session:S1";
    let nodes = engines(&cluster.url(), 3).await;
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let slot = cluster.slot(&channel(&org, room));
    let (src_port, src_id) = cluster.owner(slot);
    let (dst_port, dst_id) = cluster
        .primaries()
        .into_iter()
        .find(|(p, _, _)| *p != src_port)
        .map(|(p, id, _)| (p, id))
        .unwrap();
    let all_primaries: Vec<u16> = cluster.primaries().iter().map(|(p, _, _)| *p).collect();
    let s = slot.to_string();
    let (members, sent, _) =
        chat_through_fault(urls, &nodes[1].url, &org, room, 10, 30, || async {
            // The resharding steps of `redis-cli --cluster reshard`, for one slot.
            cluster.cli(dst_port, &["cluster", "setslot", &s, "importing", &src_id]);
            cluster.cli(src_port, &["cluster", "setslot", &s, "migrating", &dst_id]);
            let keys = cluster.cli(src_port, &["cluster", "getkeysinslot", &s, "1000"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            assert!(!keys.is_empty(), "the room's keys live in slot {s}");
            let dst = dst_port.to_string();
            let mut args = vec!["migrate", "127.0.0.1", &dst, "", "0", "5000", "KEYS"];
            args.extend(keys);
            let out = cluster.cli(src_port, &args);
            assert!(
                out.contains("OK") || out.contains("NOKEY"),
                "migrate: {out}"
            );
            for p in [dst_port, src_port].iter().chain(&all_primaries) {
                cluster.cli(*p, &["cluster", "setslot", &s, "node", &dst_id]);
            }
            assert_eq!(cluster.owner(slot).0, dst_port, "the slot moved");
        })
        .await;
    assert_nothing_lost_silently(&members, &sent);
    for node in &nodes {
        let text = node.metrics().await;
        assert!(
            metric(&text, "evd_broker_resubscribes_total", "slot_moved") >= 1.0,
            "each node followed the slot: {text}"
        );
    }
    let lost = members.iter().filter(|m| m.lost_at().is_some()).count();
    assert_eq!(
        lost, 0,
        "a migration keeps the history: every member recovers its gap"
    );
    let per_member: HashMap<&str, usize> = members
        .iter()
        .map(|m| (m.name.as_str(), m.got.len()))
        .collect();
    eprintln!("slot {slot} moved {src_port} -> {dst_port}; delivered per member: {per_member:?}");
}

/// The issue's operator run, bounded: 2 `evd serve` nodes on a 3 + 3 cluster and one
/// PostgreSQL, 30 rooms with one member on each node, one sender at 5 messages/s per room, each
/// message resent with its `client_id` until acknowledged; the primary holding the most rooms
/// is SIGKILLed under chat and its replica takes over. Nobody is asked to reconnect, nobody gets
/// `recovered:false`, no offset is skipped (checked per member as messages arrive), and every
/// acknowledged message reaches every member. Prints the longest pause in deliveries.
#[tokio::test]
async fn redis_failover_under_chat_loses_nothing_acknowledged_and_reconnects_nobody() {
    const ROOMS: usize = 30;
    const PER_ROOM_EVERY: Duration = Duration::from_millis(200);
    const BEFORE: Duration = Duration::from_secs(4);
    const AFTER: Duration = Duration::from_secs(12);
    let Some(_) = service("EVD_TEST_REDIS_CLUSTER") else {
        return;
    };
    let Some(db) = evd_api::test_util::TestDb::postgres("cluster").await else {
        return;
    };
    let cluster = OwnCluster::start_free();
    let org = org();
    let tag = fastrand::u32(..);
    let nodes = vec![
        start_node(&cluster.url(), &format!("f0-{tag}"), "serve", &db.url).await,
        start_node(&cluster.url(), &format!("f1-{tag}"), "serve", &db.url).await,
    ];
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let rooms: Vec<String> = (0..ROOMS).map(|i| format!("session:F{i}")).collect();
    // The victim: the primary that owns the most of these rooms.
    let owners: Vec<u16> = rooms
        .iter()
        .map(|r| cluster.owner(cluster.slot(&channel(&org, r))).0)
        .collect();
    let victim = *owners
        .iter()
        .max_by_key(|p| owners.iter().filter(|o| o == p).count())
        .unwrap();
    let pid = cluster.pid(victim);
    let affected = owners.iter().filter(|p| **p == victim).count();
    let victim_slot = cluster.slot(&channel(
        &org,
        &rooms[owners.iter().position(|p| *p == victim).unwrap()],
    ));

    let live = Shared::new(parking_lot::Mutex::new(urls.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut members = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        for (i, url) in urls.iter().enumerate() {
            let m = Member::join(url, &format!("m{i}-{r}"), &org, room).await;
            let progress = Arc::clone(&m.progress);
            members.push((
                r,
                progress,
                tokio::spawn(m.run(Arc::clone(&live), Arc::clone(&stop))),
            ));
        }
    }
    let sending = Arc::new(AtomicBool::new(true));
    let mut senders = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        let (url, org, room) = (urls[r % 2].clone(), org.clone(), room.clone());
        let sending = Arc::clone(&sending);
        senders.push(tokio::spawn(async move {
            let mut sender = connect(&url, "sender", &org).await;
            let mut sent = Vec::new();
            let mut tick = tokio::time::interval(PER_ROOM_EVERY);
            let mut k = 0;
            while sending.load(Ordering::Relaxed) {
                tick.tick().await;
                let text = format!("{room}/{k}");
                send_until_acked(&mut sender, &url, &org, &room, &text).await;
                sent.push(Sent {
                    text,
                    acked_at: Instant::now(),
                });
                k += 1;
            }
            sent
        }));
    }
    tokio::time::sleep(BEFORE).await;
    assert!(kill(&pid, "9").await, "SIGKILL the primary on {victim}");
    let killed = Instant::now();
    // When Redis itself had a new primary for the victim's slots: the part of the pause that is
    // Redis's failure detection and election, not the engine's.
    let mut promoted = None;
    while killed.elapsed() < AFTER {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if promoted.is_none() && cluster.serving(victim_slot).is_some_and(|p| p != victim) {
            promoted = Some(killed.elapsed());
        }
    }
    sending.store(false, Ordering::Relaxed);
    let mut sent: Vec<Vec<Sent>> = Vec::new();
    for s in senders {
        sent.push(s.await.unwrap());
    }
    let deadline = Instant::now() + CONVERGE;
    while Instant::now() < deadline
        && members
            .iter()
            .any(|(r, p, _)| !missing(&p.lock(), &sent[*r]).is_empty())
    {
        assert!(
            !members.iter().any(|(_, _, t)| t.is_finished()),
            "a member failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut done = Vec::new();
    for (r, _, t) in members {
        done.push((r, t.await.unwrap()));
    }
    let acked: usize = sent.iter().map(Vec::len).sum();
    let undelivered: usize = done
        .iter()
        .map(|(r, m)| missing(&m.progress.lock(), &sent[*r]).len())
        .sum();
    let reconnects: usize = done.iter().map(|(_, m)| m.reconnects).sum();
    let rejoins: usize = done.iter().map(|(_, m)| m.recovered).sum();
    let lost: Vec<&str> = done
        .iter()
        .filter(|(_, m)| m.lost_at().is_some())
        .map(|(_, m)| m.name.as_str())
        .collect();
    // The longest pause: between consecutive deliveries to one member, while the sender ran;
    // and when it ended.
    let (pause, pause_end) = done
        .iter()
        .flat_map(|(_, m)| {
            m.got
                .windows(2)
                .map(|w| (w[1].1.duration_since(w[0].1), w[1].1))
                .collect::<Vec<_>>()
        })
        .max()
        .unwrap_or((Duration::ZERO, killed));
    let promoted_at = promoted.map(|p| killed + p);
    let breakdown = match promoted_at {
        Some(at) => format!(
            "Redis promoted the replica {:.2}s after the kill; deliveries resumed {:.2}s after \
             the promotion",
            (at - killed).as_secs_f64(),
            pause_end.saturating_duration_since(at).as_secs_f64()
        ),
        None => "the promotion was not seen".to_owned(),
    };
    let mut repairs = 0.0;
    for node in &nodes {
        repairs += metric(&node.metrics().await, "evd_broker_repairs_total", "");
    }
    eprintln!(
        "redis failover under chat: primary {victim} held {affected} of {ROOMS} rooms; {acked} \
         messages acknowledged, {undelivered} undelivered; {reconnects} RECONNECT, {} \
         recovered:false, {rejoins} rejoins; {repairs} room repairs; longest delivery pause \
         {:.2}s ({breakdown}; killed {:.1}s before the end)",
        lost.len(),
        pause.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(
        undelivered, 0,
        "every acknowledged message reached every member"
    );
    assert_eq!(reconnects, 0, "nobody was asked to reconnect");
    assert!(lost.is_empty(), "recovered:false for {lost:?}");
}

/// A primary flushed (its history gone for good, on its replica too): exactly the members of
/// the rooms on it are told `recovered:false`; every other room keeps its continuity.
#[tokio::test]
async fn a_flushed_primary_costs_exactly_its_rooms_their_recovery() {
    const ROOMS: usize = 12;
    let Some(_) = service("EVD_TEST_REDIS_CLUSTER") else {
        return;
    };
    let cluster = OwnCluster::start_free();
    let org = org();
    let nodes = engines(&cluster.url(), 2).await;
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let rooms: Vec<String> = (0..ROOMS).map(|i| format!("session:X{i}")).collect();
    let owners: Vec<u16> = rooms
        .iter()
        .map(|r| cluster.owner(cluster.slot(&channel(&org, r))).0)
        .collect();
    let flushed = owners[0];
    let live = Shared::new(parking_lot::Mutex::new(urls.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (r, room) in rooms.iter().enumerate() {
        for (i, url) in urls.iter().enumerate() {
            let m = Member::join(url, &format!("m{i}-{r}"), &org, room).await;
            let progress = Arc::clone(&m.progress);
            let task = tokio::spawn(m.run(Arc::clone(&live), Arc::clone(&stop)));
            tasks.push((r, progress, task));
        }
    }
    let mut sender = connect(&urls[0], "sender", &org).await;
    let mut sent: Vec<Vec<Sent>> = (0..ROOMS).map(|_| Vec::new()).collect();
    let mut say = async |sent: &mut Vec<Vec<Sent>>, phase: &str| {
        for (r, room) in rooms.iter().enumerate() {
            let text = format!("{room}/{phase}");
            send_until_acked(&mut sender, &urls[0], &org, room, &text).await;
            sent[r].push(Sent {
                text,
                acked_at: Instant::now(),
            });
        }
    };
    say(&mut sent, "before").await;
    assert_eq!(cluster.cli(flushed, &["flushall"]), "OK");
    for k in 0..3 {
        say(&mut sent, &format!("after-{k}")).await;
    }
    let deadline = Instant::now() + CONVERGE;
    while Instant::now() < deadline
        && tasks
            .iter()
            .any(|(r, p, _)| !missing(&p.lock(), &sent[*r]).is_empty())
    {
        assert!(
            !tasks.iter().any(|(_, _, t)| t.is_finished()),
            "a member failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lost_rooms = BTreeSet::new();
    for (r, _, t) in tasks {
        let m = t.await.unwrap();
        let missed = missing(&m.progress.lock(), &sent[r]);
        assert!(missed.is_empty(), "{} silently missed {missed:?}", m.name);
        if m.lost_at().is_some() {
            lost_rooms.insert(r);
        }
    }
    let expected: BTreeSet<usize> = (0..ROOMS).filter(|r| owners[*r] == flushed).collect();
    eprintln!("flushed primary {flushed}: rooms told recovered:false {lost_rooms:?}");
    assert_eq!(
        lost_rooms, expected,
        "exactly the rooms on the flushed primary"
    );
}

/// Users join while their room's primary is failing over (their presence adds fail): once it is
/// over, presence holds every member, on both nodes, and a late joiner sees them all.
#[tokio::test]
async fn presence_is_complete_after_a_failover() {
    let Some(_) = service("EVD_TEST_REDIS_CLUSTER") else {
        return;
    };
    let cluster = OwnCluster::start_free();
    let org = org();
    let name = "session:P1";
    let nodes = engines(&cluster.url(), 2).await;
    let (port, _) = cluster.owner(cluster.slot(&channel(&org, name)));
    let mut clients = Vec::new();
    let mut users = BTreeSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let user = format!("early{i}");
        let mut c = connect(&node.url, &user, &org).await;
        joined(c.join(name, 0, None).await);
        clients.push(c);
        users.insert(user);
    }
    assert!(kill(&cluster.pid(port), "9").await);
    let killed = Instant::now();
    // Joins during the failover: each is retried until it is answered.
    for k in 0..3 {
        for (i, node) in nodes.iter().enumerate() {
            let user = format!("during{i}{k}");
            let op = || {
                Op::JoinRoom(JoinRoom {
                    room: room(name),
                    history: 0,
                    recover: None,
                })
            };
            let deadline = Instant::now() + CONVERGE;
            // A connection may be refused or closed while the cluster fails over: again.
            let c = loop {
                assert!(Instant::now() < deadline, "{user} never joined");
                if let Some(mut c) = try_connect_to(&node.url, &user, &org).await
                    && let Ok(Event::RoomJoined(_)) = request(&mut c, op()).await
                {
                    break c;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            clients.push(c);
            users.insert(user);
        }
    }
    let deadline = Instant::now() + CONVERGE;
    loop {
        let op = Op::JoinRoom(JoinRoom {
            room: room(name),
            history: 0,
            recover: None,
        });
        let mut late = try_connect_to(&nodes[0].url, "late", &org).await;
        let reply = match &mut late {
            Some(c) => request(c, op).await,
            None => Err(()),
        };
        if let Ok(Event::RoomJoined(j)) = reply {
            let seen: BTreeSet<String> = j.presence.members.into_iter().map(|m| m.user).collect();
            let want: BTreeSet<String> = users.iter().cloned().chain(["late".into()]).collect();
            if seen == want && j.presence.count == want.len() as u64 {
                eprintln!(
                    "presence complete {:.2}s after the primary's SIGKILL ({} members)",
                    killed.elapsed().as_secs_f64(),
                    want.len()
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "presence after the failover: {seen:?}, want {want:?}"
            );
        }
        drop(late);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(clients);
}
