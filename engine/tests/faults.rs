//! Faults on the links between an `evd serve` node and its backends, injected by a TCP proxy
//! ([`common::proxy`]): added latency, a stall (connections accepted, nothing answered), resets,
//! and a slow trickle, each on the Redis link and on the PostgreSQL link.
//!
//! Two nodes share one standalone Redis and one database: node `a` reaches one of them through
//! the proxy, node `b` both directly. Two members and a sender on each node chat in one room;
//! each sender resends each message (same `client_id`) until it is acknowledged, so messages
//! acknowledged on `b` while `a`'s link is down are a gap `a`'s members must get back. The fault
//! is switched on for a few seconds and off again, and the test checks that
//! - delivery resumes after the fault (`a` acknowledges messages again, everyone gets them);
//! - over a stalled link, or a reset Redis link, `a` acknowledges nothing;
//! - every member either recovered exactly (no gap, no duplicate, in order) or was told
//!   `recovered:false`, and nothing acknowledged was lost silently; and as the history holds
//!   everything sent during the fault, nobody is told `recovered:false`;
//! - `/readyz` on `a` answered every probe in bounded time and told the truth: 200 before the
//!   fault, 503 while a stall or reset made the link useless, 200 once the link works again.
//!
//! Standalone Redis only: a Redis Cluster can't be proxied this simply, because `CLUSTER SLOTS`
//! hands the engine the primaries' real addresses and it then connects around the proxy.
//!
//! Needs `EVD_TEST_REDIS_URL` and `EVD_TEST_DATABASE_URL`; without them the tests are skipped,
//! unless `EVD_REQUIRE_SERVICES=1`, when that is a failure.

mod common;

use common::chat::{
    Member, Progress, Sent, Shared, assert_nothing_lost_silently, missing, send_until_acked,
    try_connect_as,
};
use common::proxy::{Fault, FaultProxy};
use common::*;
use evd_api::test_util::TestDb;
use evd_engine::node::READY_TIMEOUT;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Bound on anything that should converge after a fault is lifted (reconnects, recovery).
const CONVERGE: Duration = Duration::from_secs(30);

/// How long each fault stays on: longer than the nodes' command and probe timeouts and the
/// readiness check's own timeout, so a stall or a reset matters.
const FAULT_FOR: Duration = Duration::from_secs(6);

/// How long a node may take to notice a useless link: its broker probe timeout (1 s) and probe
/// interval (0.2 s) with room to spare. The store check needs no time to notice: it times out.
const NOTICE: Duration = Duration::from_millis(1_500);

/// How often the test asks `/readyz`, and how long it waits for an answer: readiness gives up
/// on the store after [`READY_TIMEOUT`], so an answer later than this is a hang.
const READYZ_EVERY: Duration = Duration::from_millis(100);
const READYZ_WAIT: Duration = Duration::from_secs(4);

/// Probes of `/readyz` in flight at most: two, so a slow answer does not leave a gap of
/// [`READY_TIMEOUT`] between answers, and the probes take no more than two of the node's
/// database connections (a load balancer probes as gently).
const READYZ_IN_FLIGHT: usize = 2;

/// The rooms' history, in messages: enough to hold everything sent while a fault is on, so
/// every gap can be filled from it and nobody need be told `recovered:false`.
const HISTORY: usize = 1_000;

/// A readiness probe sent this long before the fault was answered before it began, even on a
/// loaded machine.
const BEFORE_SETTLED: Duration = Duration::from_secs(1);

/// Messages acknowledged before the fault, and after it is lifted, at the least.
const BEFORE: usize = 5;
const AFTER: usize = 10;

/// The added latency: well below the nodes' timeouts, so the link is slow but works.
const LATENCY: Duration = Duration::from_millis(150);

/// The trickle: a few bytes at a time, slow enough that requests straddle many pieces.
const TRICKLE: Fault = Fault::Trickle {
    bytes: 64,
    every: Duration::from_millis(10),
};

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

/// Which backend link the proxy sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Redis,
    Database,
}

/// The `host:port` of a `scheme://[user@]host:port[/…]` URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").expect("a URL").1;
    let rest = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    rest.rsplit_once('@').map_or(rest, |(_, hostport)| hostport)
}

/// `url` pointed at `addr` instead of its own host and port.
fn via(url: &str, addr: SocketAddr) -> String {
    url.replacen(authority(url), &addr.to_string(), 1)
}

async fn resolve(url: &str) -> SocketAddr {
    tokio::net::lookup_host(authority(url))
        .await
        .unwrap()
        .next()
        .unwrap()
}

/// One `evd serve` node on `broker` and `db`, named `id`, with short broker timeouts; its log is
/// echoed, each line marked with `id`.
async fn start_node(broker: &str, db: &str, id: &str) -> Evd {
    let mut cmd = evd_command(db);
    cmd.env("EVD_BROKER_URL", broker)
        .env("EVD_NODE_ID", id)
        .env("EVD_TICK_MS", "20")
        .env("EVD_LIMITS_CONN_RATE_PER_IP", "0")
        .env("EVD_DRAIN_GRACE_MS", "200")
        .env("EVD_BROKER_PROBE_INTERVAL_MS", "200")
        .env("EVD_BROKER_PROBE_TIMEOUT_MS", "1000")
        .env("EVD_BROKER_UNSUBSCRIBE_DELAY_MS", "300")
        .env("EVD_BROKER_COMMAND_TIMEOUT_MS", "1000")
        .env("EVD_HISTORY_SIZE", HISTORY.to_string())
        .env("EVD_LOG", "info,fred=warn,sqlx=warn")
        .args(["serve", "--listen", "127.0.0.1:0"]);
    Evd::spawn(cmd, Some(id)).await
}

/// `/readyz` answers by when they were asked: the status, or `None` when none came within
/// [`READYZ_WAIT`].
type Readiness = Shared<Vec<(Instant, Option<u16>)>>;

/// Asks `/readyz` at `addr` every [`READYZ_EVERY`] (at most [`READYZ_IN_FLIGHT`] at once)
/// until `stop`; returns once every probe has its answer (each waits at most [`READYZ_WAIT`]).
fn watch_readyz(addr: SocketAddr, stop: Arc<AtomicBool>) -> (Readiness, JoinHandle<()>) {
    let seen = Readiness::default();
    let out = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(READYZ_WAIT)
            .build()
            .unwrap();
        let url = format!("http://{addr}/readyz");
        let mut probes = tokio::task::JoinSet::new();
        while !stop.load(Ordering::Relaxed) {
            while probes.len() >= READYZ_IN_FLIGHT {
                probes.join_next().await;
            }
            let (http, url, out) = (http.clone(), url.clone(), Arc::clone(&out));
            probes.spawn(async move {
                let at = Instant::now();
                let status = http
                    .get(&url)
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status().as_u16());
                out.lock().push((at, status));
            });
            tokio::time::sleep(READYZ_EVERY).await;
            while probes.try_join_next().is_some() {}
        }
        while probes.join_next().await.is_some() {}
        out.lock().sort_by_key(|(at, _)| *at);
    });
    (seen, task)
}

/// Two members and a sender on every node, all in one room.
struct Chat {
    members: Vec<JoinHandle<Member>>,
    progress: Vec<Shared<Progress>>,
    /// What each node's sender had acknowledged, by node.
    sent: Vec<Shared<Vec<Sent>>>,
    senders: Vec<JoinHandle<()>>,
    stop_sending: Arc<AtomicBool>,
    stop_members: Arc<AtomicBool>,
}

impl Chat {
    async fn start(urls: &[String], org: &str, room: &str) -> Chat {
        let live = Shared::new(parking_lot::Mutex::new(urls.to_vec()));
        let stop_members = Arc::new(AtomicBool::new(false));
        let stop_sending = Arc::new(AtomicBool::new(false));
        let (mut members, mut progress) = (Vec::new(), Vec::new());
        for (i, url) in urls.iter().enumerate() {
            for j in 0..2 {
                let m = Member::join(url, &format!("m{i}{j}"), org, room, CONVERGE).await;
                progress.push(Arc::clone(&m.progress));
                members.push(tokio::spawn(
                    m.run(Arc::clone(&live), Arc::clone(&stop_members)),
                ));
            }
        }
        let (mut sent, mut senders) = (Vec::new(), Vec::new());
        for (i, url) in urls.iter().enumerate() {
            let acked: Shared<Vec<Sent>> = Shared::default();
            sent.push(Arc::clone(&acked));
            let (url, org, room) = (url.clone(), org.to_owned(), room.to_owned());
            let stop = Arc::clone(&stop_sending);
            let user = format!("sender{i}");
            senders.push(tokio::spawn(async move {
                let mut client = try_connect_as(&url, &user, &org)
                    .await
                    .expect("the sender connects");
                let mut k = 0;
                while !stop.load(Ordering::Relaxed) {
                    let text = format!("{user}-{k}");
                    send_until_acked(&mut client, &url, &user, &org, &room, &text, CONVERGE).await;
                    acked.lock().push(Sent {
                        text,
                        acked_at: Instant::now(),
                    });
                    k += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }));
        }
        Chat {
            members,
            progress,
            sent,
            senders,
            stop_sending,
            stop_members,
        }
    }

    /// Waits until the sender on node `node` had `n` messages acknowledged after `since`; fails
    /// after [`CONVERGE`].
    async fn acked_after(&self, node: usize, since: Instant, n: usize, what: &str) {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let count = self.sent[node]
                .lock()
                .iter()
                .filter(|s| s.acked_at > since)
                .count();
            if count >= n {
                return;
            }
            assert!(
                !self.senders.iter().any(|s| s.is_finished()),
                "a sender failed"
            );
            assert!(
                Instant::now() < deadline,
                "{what}: only {count} of {n} messages acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops sending, waits (bounded) until every member has what it must have, stops them.
    /// Returns the members and what each node's sender had acknowledged.
    async fn finish(self) -> (Vec<Member>, Vec<Vec<Sent>>) {
        self.stop_sending.store(true, Ordering::Relaxed);
        for s in self.senders {
            tokio::time::timeout(CONVERGE, s)
                .await
                .expect("a sender stops")
                .expect("a sender did not fail");
        }
        let by_node: Vec<Vec<Sent>> = self.sent.iter().map(|s| s.lock().clone()).collect();
        let sent = by_node.concat();
        let deadline = Instant::now() + CONVERGE;
        while Instant::now() < deadline
            && self
                .progress
                .iter()
                .any(|p| !missing(&p.lock(), &sent).is_empty())
        {
            assert!(
                !self.members.iter().any(|t| t.is_finished()),
                "a member failed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A moment more, so a duplicate or stray message would still be caught.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.stop_members.store(true, Ordering::Relaxed);
        let mut members = Vec::new();
        for t in self.members {
            members.push(
                tokio::time::timeout(CONVERGE, t)
                    .await
                    .expect("a member stops")
                    .expect("a member saw its messages in order, once"),
            );
        }
        (members, by_node)
    }
}

/// What `/readyz` must have said while the fault was on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// 200 throughout: the link is slow but works.
    Ready,
    /// 503 from when the node can have noticed ([`NOTICE`]) until the last probe that cannot
    /// have seen the link come back ([`READY_TIMEOUT`] before the fault is lifted): the link
    /// was useless.
    NotReady,
    /// Either: whether a trickle is too slow depends on how much the node sends.
    Either,
}

/// The scenario: chat, `fault` on `link` for [`FAULT_FOR`], lifted, chat again; then the checks
/// in the module docs.
async fn through_fault(link: Link, fault: Fault, expect: Expect) {
    let Some(redis) = service("EVD_TEST_REDIS_URL") else {
        return;
    };
    let Some(db) = TestDb::postgres("faults").await else {
        return;
    };
    let upstream = match link {
        Link::Redis => resolve(&redis).await,
        Link::Database => resolve(&db.url).await,
    };
    let proxy = FaultProxy::start(upstream).await;
    let (a_redis, a_db) = match link {
        Link::Redis => (via(&redis, proxy.addr()), db.url.clone()),
        Link::Database => (redis.clone(), via(&db.url, proxy.addr())),
    };
    let tag = fastrand::u32(..);
    let mut a = start_node(&a_redis, &a_db, &format!("a-{tag}")).await;
    let mut b = start_node(&redis, &db.url, &format!("b-{tag}")).await;
    let deadline = Instant::now() + PATIENCE;
    while proxy.connections() == 0 {
        assert!(
            Instant::now() < deadline,
            "node a's {link:?} link goes through the proxy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let org = format!("t{}", fastrand::u64(..));
    let room = "session:S1";

    let stop_readyz = Arc::new(AtomicBool::new(false));
    let (readyz, readyz_task) = watch_readyz(a.addr(), Arc::clone(&stop_readyz));
    let urls = vec![a.url.clone(), b.url.clone()];
    let chat = Chat::start(&urls, &org, room).await;
    let started = Instant::now();
    chat.acked_after(0, started, BEFORE, "before the fault")
        .await;

    // Long enough before the fault that readiness was seen settled, beyond the probes still in
    // flight when it starts (see BEFORE_SETTLED).
    tokio::time::sleep_until((started + BEFORE_SETTLED * 2).into()).await;
    let on = Instant::now();
    proxy.set(fault);
    tokio::time::sleep(FAULT_FOR).await;
    proxy.set(Fault::None);
    let off = Instant::now();
    eprintln!("{link:?} {fault:?}: on for {FAULT_FOR:?}, lifted");

    // Delivery resumes: node a acknowledges messages again, and every member gets them (and
    // those node b acknowledged meanwhile).
    chat.acked_after(0, off, AFTER, "after the fault").await;
    let (members, by_node) = chat.finish().await;
    let sent = by_node.concat();
    assert_nothing_lost_silently(&members, &sent);

    // Readiness is back, and stays.
    let deadline = Instant::now() + CONVERGE;
    while readyz
        .lock()
        .last()
        .is_none_or(|(at, s)| *at < off || *s != Some(200))
    {
        assert!(Instant::now() < deadline, "/readyz never said 200 again");
        tokio::time::sleep(READYZ_EVERY).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_readyz.store(true, Ordering::Relaxed);
    tokio::time::timeout(CONVERGE, readyz_task)
        .await
        .expect("the readiness watcher stops")
        .unwrap();
    let seen = readyz.lock().clone();
    let unanswered = seen.iter().filter(|(_, s)| s.is_none()).count();
    assert_eq!(
        unanswered, 0,
        "/readyz must answer within {READYZ_WAIT:?}; {unanswered} probes got nothing"
    );
    let status = |from: Instant, to: Instant| -> Vec<u16> {
        seen.iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .filter_map(|(_, s)| *s)
            .collect()
    };
    // Probes sent just before the fault can meet it (a store check caught by a stall): only
    // those sent BEFORE_SETTLED earlier must say 200.
    let before = status(started, on - BEFORE_SETTLED);
    assert!(
        !before.is_empty() && before.iter().all(|s| *s == 200),
        "ready before the fault: {before:?}"
    );
    // From the first probe after the fault that said 200 and was never contradicted after.
    let back = seen
        .iter()
        .rposition(|(at, s)| *at < off || *s != Some(200))
        .and_then(|i| seen.get(i + 1))
        .map(|(at, _)| *at)
        .expect("probes after the fault");
    let during = status(on, off);
    match expect {
        Expect::Ready => assert!(
            during.iter().all(|s| *s == 200),
            "a slow link that works is no reason to be unready: {during:?}"
        ),
        Expect::NotReady => {
            let useless = status(on + NOTICE, off - READY_TIMEOUT);
            assert!(
                !useless.is_empty() && useless.iter().all(|s| *s == 503),
                "the {link:?} link was useless and /readyz must say so: {useless:?} \
                 (all through the fault: {during:?})"
            );
        }
        Expect::Either => {}
    }
    // The fault did bite: over a stalled link neither a publish (Redis) nor the archive's commit
    // (the database) can complete, nor a publish over a reset Redis link, so no ACK. (Over a
    // reset database link a resend of a message published before is acknowledged as a
    // duplicate without reaching the archive: issue 20 item 3.)
    let acked_during = by_node[0]
        .iter()
        .filter(|s| s.acked_at > on + NOTICE && s.acked_at < off)
        .count();
    if fault == Fault::Stall || (fault == Fault::Reset && link == Link::Redis) {
        assert_eq!(
            acked_during, 0,
            "acknowledged while the {link:?} link was useless"
        );
    }

    let lost: Vec<&str> = members
        .iter()
        .filter(|m| m.lost_at().is_some())
        .map(|m| m.name.as_str())
        .collect();
    assert!(
        lost.is_empty(),
        "the history held every gap, yet {lost:?} were told recovered:false"
    );
    let recovered: usize = members.iter().map(|m| m.recovered).sum();
    // After a reset node a resubscribed its room and filled the gap from the history itself;
    // after a stall the subscription's connection survives and Redis delivers what it held back.
    let resubscribes = metric(&a.metrics().await, "evd_broker_resubscribes_total", "");
    if link == Link::Redis && fault == Fault::Reset {
        assert!(
            resubscribes >= 1.0,
            "node a resubscribed after the {fault:?}"
        );
    }
    let not_ready = during.iter().filter(|s| **s == 503).count();
    eprintln!(
        "{link:?} {fault:?}: {} acknowledged ({acked_during} by node a while the fault was on); \
         {recovered} exact recoveries by rejoining, {resubscribes} resubscribes on node a; \
         recovered:false for {lost:?}; /readyz 503 in {not_ready} \
         of {} probes during the fault, 200 again {:.2}s after it",
        sent.len(),
        during.len(),
        back.duration_since(off).as_secs_f64()
    );
    a.kill().await;
    b.kill().await;
    proxy.stop().await;
}

#[tokio::test]
async fn redis_latency() {
    through_fault(Link::Redis, Fault::Latency(LATENCY), Expect::Ready).await;
}

#[tokio::test]
async fn redis_stall() {
    through_fault(Link::Redis, Fault::Stall, Expect::NotReady).await;
}

#[tokio::test]
async fn redis_reset() {
    through_fault(Link::Redis, Fault::Reset, Expect::NotReady).await;
}

#[tokio::test]
async fn redis_trickle() {
    through_fault(Link::Redis, TRICKLE, Expect::Either).await;
}

#[tokio::test]
async fn database_latency() {
    through_fault(Link::Database, Fault::Latency(LATENCY), Expect::Ready).await;
}

#[tokio::test]
async fn database_stall() {
    through_fault(Link::Database, Fault::Stall, Expect::NotReady).await;
}

#[tokio::test]
async fn database_reset() {
    through_fault(Link::Database, Fault::Reset, Expect::NotReady).await;
}

#[tokio::test]
async fn database_trickle() {
    through_fault(Link::Database, TRICKLE, Expect::Either).await;
}
