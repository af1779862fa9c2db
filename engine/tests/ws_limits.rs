//! Limits: heartbeat timeout, slow consumers, flooding, malformed and oversized frames.

mod common;

use common::*;
use evd_protocol::auth::Role;
use evd_protocol::event::Event;
use evd_protocol::op::{Op, Ping};
use evd_protocol::{Codec, ErrorCode};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn code_of(f: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> u16 {
    u16::from(f.expect("a close frame with a code").code)
}

#[tokio::test(start_paused = true)]
async fn silence_for_two_heartbeats_closes_with_4012() {
    let mut s = settings();
    s.heartbeat_ms = 1_000;
    s.tick_ms = 10_000;
    let srv = TestServer::with(s).await;
    let mut c = srv.client("u1", "o1", Role::Attendee, Codec::Json).await;
    assert_eq!(c.hello.heartbeat_ms, 1_000);
    // Pings (the op, and WebSocket ping frames) keep it open well past two intervals...
    let start = tokio::time::Instant::now();
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        if i % 2 == 0 {
            assert!(matches!(c.ping().await, Event::Pong(_)));
        } else {
            c.send_raw(Message::Ping(vec![1].into())).await;
        }
    }
    assert!(start.elapsed() > Duration::from_secs(5));
    // ...and silence closes it with 4012 after two.
    let silent_from = tokio::time::Instant::now();
    let code = code_of(c.close_frame().await);
    assert_eq!(code, 4012);
    // Never before two silent intervals. (The upper end is loose: with the paused clock, tokio
    // may advance time before it polls the socket that already holds the close frame.)
    let waited = silent_from.elapsed();
    assert!(
        waited >= Duration::from_millis(1_900),
        "closed after only {waited:?} of silence"
    );
    assert!(waited <= Duration::from_secs(4), "{waited:?}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_with_4008_and_nobody_else_suffers() {
    let mut s = settings();
    s.limits.queue_max_bytes = 256 * 1024;
    s.limits.frame_batch_bytes = 16 * 1024;
    s.limits.ops_per_sec = 100_000;
    s.limits.ops_burst = 100_000;
    s.limits.max_text_bytes = 8 * 1024;
    s.drain.close_timeout_ms = 60_000; // let the 4008 close frame wait for the stalled reader
    let limit = s.limits.queue_max_bytes;
    let srv = TestServer::with(s).await;

    let stalled_token = srv.token("slow", "o1", Role::Organizer, &[]);
    let mut stalled =
        Client::connect_with(&srv.url(), &stalled_token, Codec::Json, Some(4096)).await;
    stalled.joined("event:E1").await;
    let mut fast = srv
        .client("fast", "o1", Role::Organizer, Codec::MsgPack)
        .await;
    fast.joined("event:E1").await;
    let mut publisher = srv.client("pub", "o1", Role::Organizer, Codec::Json).await;

    // ~12 MB in total: far more than the stalled client's socket buffers plus its queue.
    const N: usize = 3_000;
    let reader = tokio::spawn(async move {
        for expected in 1..=N as u64 {
            let m = fast.message().await;
            assert_eq!(
                m.offset, expected,
                "the fast member sees every message, in order"
            );
        }
    });
    let text = "x".repeat(4_000);
    let mut peak_total = 0;
    for _ in 0..N {
        // Waiting for each ACK paces the publisher to the server, as a real client would.
        publisher.say("event:E1", &text, None).await;
        peak_total = peak_total.max(srv.node.stats.queued_bytes());
    }
    reader.await.expect("the fast member received everything");
    // No queue ever held more than its limit, and the node's total stayed within a few queues.
    assert!(
        srv.node.stats.peak_conn_bytes() <= limit,
        "peak {} > limit {limit}",
        srv.node.stats.peak_conn_bytes()
    );
    assert!(peak_total <= 3 * limit, "total queued {peak_total}");

    // Resuming, the stalled client gets a prefix of the stream, in order, then 4008.
    let (events, close) = stalled.events_until_close().await;
    let offsets: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::MessageReceived(m) => Some(m.offset),
            _ => None,
        })
        .collect();
    assert!(offsets.len() < N, "it cannot have received everything");
    assert!(
        offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "a gapless prefix"
    );
    assert_eq!(code_of(close), 4008);
    // Its memory was released when it was closed.
    assert!(
        srv.node.stats.queued_bytes() < limit,
        "queued {}",
        srv.node.stats.queued_bytes()
    );
    let m = srv.metrics().await;
    assert!(metric(&m, "evd_slow_consumer_closes_total", "") >= 1.0);
    assert!(metric(&m, "evd_queue_dropped_total", "") >= 1.0);
    drop((publisher, stalled));
    srv.shutdown().await;
}

#[tokio::test]
async fn flooding_gets_rate_limited_then_closed_with_4029() {
    let mut s = settings();
    s.limits.ops_per_sec = 10;
    s.limits.ops_burst = 10;
    s.limits.flood_strikes = 5;
    let srv = TestServer::with(s).await;
    let mut c = srv.client("u1", "o1", Role::Attendee, Codec::Json).await;
    for _ in 0..60 {
        c.send(Op::Ping(Ping {})).await;
    }
    let (events, close) = c.events_until_close().await;
    let pongs = events
        .iter()
        .filter(|e| matches!(e, Event::Pong(_)))
        .count();
    let limited: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Error(err) if err.code == ErrorCode::RateLimited => Some(err),
            _ => None,
        })
        .collect();
    assert!((10..=12).contains(&pongs), "the burst is served: {pongs}");
    assert!(!limited.is_empty(), "then rate_limited");
    assert!(
        limited
            .iter()
            .all(|e| e.retry_after_ms.is_some_and(|ms| ms > 0) && e.r#ref.is_some())
    );
    assert_eq!(code_of(close), 4029);
    srv.shutdown().await;
}

fn bad_request(e: Event) -> Option<Option<i64>> {
    match e {
        Event::Error(err) if err.code == ErrorCode::BadRequest => Some(err.r#ref),
        Event::Error(err) => panic!("expected bad_request, got {err:?}"),
        _ => None,
    }
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_survives() {
    let srv = TestServer::start().await;
    let mut j = srv.client("u1", "o1", Role::Organizer, Codec::Json).await;
    let cases: [(&str, Option<i64>); 5] = [
        ("{not json", None),
        (r#"{"op":"join_room","ref":3,"room":5}"#, Some(3)),
        (
            r#"{"op":"send_message","ref":4,"room":"session:S1"}"#,
            Some(4),
        ),
        (r#"{"op":"fly_away","ref":5}"#, Some(5)),
        (r#"{"op":"join_room","ref":6,"room":"lobby:1"}"#, Some(6)),
    ];
    for (frame, r) in cases {
        j.send_raw(Message::Text(frame.into())).await;
        assert_eq!(j.next_where(bad_request).await, r, "{frame}");
    }
    j.send_raw(Message::Binary(vec![0x81, 0xa2].into())).await;
    assert_eq!(
        j.next_where(bad_request).await,
        None,
        "binary on a JSON connection"
    );
    assert!(matches!(j.ping().await, Event::Pong(_)), "still open");

    let mut m = srv
        .client("u2", "o1", Role::Organizer, Codec::MsgPack)
        .await;
    m.send_raw(Message::Binary(vec![0xc1, 0xc1, 0xc1].into()))
        .await;
    assert_eq!(m.next_where(bad_request).await, None, "invalid MessagePack");
    m.send_raw(Message::Text(r#"{"op":"ping"}"#.into())).await;
    assert_eq!(
        m.next_where(bad_request).await,
        None,
        "text on a MessagePack connection"
    );
    assert!(matches!(m.ping().await, Event::Pong(_)), "still open");

    // A text over the configured limit is refused with too_large; the connection stays.
    let long = "y".repeat(srv.node.settings.limits.max_text_bytes + 1);
    match j.say("session:S1", &long, None).await {
        Event::Error(e) => assert_eq!(e.code, ErrorCode::TooLarge),
        other => panic!("{other:?}"),
    }
    assert!(matches!(j.ping().await, Event::Pong(_)));
    srv.shutdown().await;
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let srv = TestServer::start().await;
    let mut c = srv.client("u1", "o1", Role::Organizer, Codec::Json).await;
    let big = format!(
        r#"{{"op":"ping","pad":"{}"}}"#,
        "z".repeat(srv.node.settings.limits.max_message_bytes)
    );
    c.send_raw(Message::Text(big.into())).await;
    assert_eq!(code_of(c.close_frame().await), 1009);
    srv.shutdown().await;
}

#[tokio::test]
async fn repeated_garbage_closes_with_4500() {
    let mut s = settings();
    s.limits.bad_frame_strikes = 3;
    let srv = TestServer::with(s).await;
    let mut c = srv.client("u1", "o1", Role::Organizer, Codec::Json).await;
    for _ in 0..10 {
        c.send_raw(Message::Text("garbage".into())).await;
    }
    let (events, close) = c.events_until_close().await;
    assert!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Error(_)))
            .count()
            >= 3
    );
    assert_eq!(code_of(close), 4500);
    srv.shutdown().await;
}
