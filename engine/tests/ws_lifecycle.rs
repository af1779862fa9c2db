//! Lifecycle: drain on shutdown, health endpoints, metrics, TLS.

mod common;

use common::*;
use evd_protocol::Codec;
use evd_protocol::auth::Role;
use evd_protocol::event::Event;
use std::sync::Arc;
use tower::ServiceExt;

#[tokio::test]
async fn shutdown_sends_reconnect_then_closes_with_4001() {
    let mut srv = TestServer::start().await;
    let mut clients = srv
        .members("event:E1", &[Codec::Json, Codec::MsgPack, Codec::Json])
        .await;
    srv.signal_shutdown();
    for c in &mut clients {
        let (events, close) = c.events_until_close().await;
        let reconnect = events
            .iter()
            .find_map(|e| match e {
                Event::Reconnect(r) => Some(r.clone()),
                _ => None,
            })
            .expect("RECONNECT before the close");
        assert_eq!(reconnect.reason, "shutdown");
        assert!(reconnect.after_ms <= srv.node.settings.drain.reconnect_after_max_ms);
        let f = close.expect("close frame");
        assert_eq!(u16::from(f.code), 4001);
    }
    drop(clients);
    srv.shutdown().await;
}

#[tokio::test]
async fn readyz_fails_and_new_connections_are_refused_while_draining() {
    let srv = TestServer::start().await;
    let app = evd_engine::app(Arc::clone(&srv.node));
    let get = |path: &str| {
        axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    assert_eq!(
        app.clone().oneshot(get("/readyz")).await.unwrap().status(),
        200
    );
    assert_eq!(
        app.clone().oneshot(get("/healthz")).await.unwrap().status(),
        200
    );
    srv.node.shutdown.begin_drain();
    assert_eq!(
        app.clone().oneshot(get("/readyz")).await.unwrap().status(),
        503
    );
    assert_eq!(
        app.clone().oneshot(get("/healthz")).await.unwrap().status(),
        200,
        "alive while draining"
    );
    let t = srv.token("u1", "o1", Role::Attendee, &[]);
    let refused = try_connect(&srv.url(), Some(&t), &[], None)
        .await
        .expect_err("draining nodes refuse");
    assert_eq!(refused.status, 503);
    srv.shutdown().await;
}

#[tokio::test]
async fn metrics_move() {
    let srv = TestServer::start().await;
    let before = srv.metrics().await;
    let mut a = srv.client("a", "o1", Role::Organizer, Codec::Json).await;
    let mut b = srv.client("b", "o1", Role::Organizer, Codec::MsgPack).await;
    a.joined("session:M").await;
    b.joined("session:M").await;
    for i in 0..5 {
        a.say("session:M", &format!("m{i}"), None).await;
    }
    for _ in 0..5 {
        b.message().await;
    }
    a.send_raw(tokio_tungstenite::tungstenite::Message::Text(
        "nonsense".into(),
    ))
    .await;
    a.next_where(|e| matches!(e, Event::Error(_)).then_some(()))
        .await;
    drop(b);
    a.ping().await;
    let after = srv.metrics().await;
    let delta =
        |name: &str, label: &str| metric(&after, name, label) - metric(&before, name, label);
    assert!(metric(&after, "evd_connections", "") >= 1.0, "{after}");
    assert!(delta("evd_connections_accepted_total", "") >= 2.0);
    assert!(delta("evd_room_joins_total", "") >= 2.0);
    assert!(delta("evd_ops_total", r#"op="send_message""#) >= 5.0);
    assert!(delta("evd_ops_total", r#"op="join_room""#) >= 2.0);
    assert!(delta("evd_op_errors_total", r#"code="bad_request""#) >= 1.0);
    assert!(delta("evd_events_out_total", r#"event="MESSAGE_RECEIVED""#) >= 10.0);
    assert!(delta("evd_deliveries_total", "") >= 10.0);
    assert!(delta("evd_fanout_latency_seconds_count", "") >= 1.0);
    assert!(delta("evd_frames_out_total", "") >= 1.0);
    assert!(metric(&after, "evd_rooms", "") >= 1.0);
    // b went without a close frame: its close is counted as `client_gone` once its
    // connection is torn down.
    let gone = r#"reason="client_gone""#;
    let mut closed = 0.0;
    for _ in 0..100 {
        closed = metric(&srv.metrics().await, "evd_connections_closed_total", gone)
            - metric(&before, "evd_connections_closed_total", gone);
        if closed >= 1.0 {
            break;
        }
        a.ping().await;
    }
    assert!(closed >= 1.0, "a vanished client is counted as client_gone");
    for name in [
        "evd_connections_rejected_total",
        "evd_queue_dropped_total",
        "evd_slow_consumer_closes_total",
        "evd_queue_bytes",
        "evd_bytes_out_total",
    ] {
        assert!(
            after.contains(&format!("# HELP {name}")) || after.contains(&format!("{name} ")),
            "{name} is exported"
        );
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn serves_wss_when_a_certificate_is_configured() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, ck.cert.pem()).unwrap();
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).unwrap();
    let mut s = settings();
    s.tls.cert_path = Some(cert_path);
    s.tls.key_path = Some(key_path);
    let srv = TestServer::with(s).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let token = srv.token("u1", "o1", Role::Attendee, &[]);
    let url = format!("wss://localhost:{}/ws?token={token}", srv.addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("upgrade over TLS");
    use futures_util::StreamExt;
    let hello = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert!(hello.starts_with(r#"{"ev":"HELLO""#), "{hello}");
    drop(ws);
    srv.shutdown().await;
}
