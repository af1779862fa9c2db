//! Authentication at the upgrade, and subprotocol negotiation.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use evd_protocol::Codec;
use evd_protocol::auth::{Audience, Claims, KeySpec, Role, Signer};

fn expect_401(r: Result<impl std::fmt::Debug, Refused>, why: &str) -> serde_json::Value {
    let refused = r.expect_err(why);
    assert_eq!(refused.status, 401, "{why}: {}", refused.body);
    let body: serde_json::Value = serde_json::from_str(&refused.body).expect("JSON body");
    assert_eq!(body["error"], "unauthorized", "{why}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{why}"
    );
    body
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_before_the_upgrade() {
    let mut s = settings();
    s.api.jwt.audience = vec!["evd".into()];
    let srv = TestServer::with(s).await;
    let url = srv.url();
    let signer = srv.node.settings.api.jwt.signer().unwrap();
    let mut good = Claims::new("u1", "o1", Role::Attendee, now(), 600);
    good.aud = Some(Audience::One("evd".into()));

    expect_401(try_connect(&url, None, &[], None).await, "missing token");

    let mut expired = good.clone();
    expired.iat = Some(now() - 7200);
    expired.exp = now() - 3600;
    let body = expect_401(
        try_connect(&url, Some(&signer.sign(&expired).unwrap()), &[], None).await,
        "expired",
    );
    assert_eq!(body["message"], "token expired");

    let wrong_key = Signer::new(KeySpec::Hs256(b"some-other-secret-some-other-secret!")).unwrap();
    expect_401(
        try_connect(&url, Some(&wrong_key.sign(&good).unwrap()), &[], None).await,
        "wrong key",
    );

    let none_token = alg_none_token(&good);
    expect_401(
        try_connect(&url, Some(&none_token), &[], None).await,
        "alg none",
    );

    let mut wrong_aud = good.clone();
    wrong_aud.aud = Some(Audience::One("someone-else".into()));
    let body = expect_401(
        try_connect(&url, Some(&signer.sign(&wrong_aud).unwrap()), &[], None).await,
        "audience",
    );
    assert_eq!(body["message"], "invalid token audience");

    let raw = serde_json::json!({"sub":"u1","org":"o1","exp":now()+60,"aud":"evd","role":"admin"});
    let unknown_role = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &raw,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    expect_401(
        try_connect(&url, Some(&unknown_role), &[], None).await,
        "unknown role",
    );

    // The good token works, from the header and from the query string.
    assert!(
        try_connect(&url, Some(&signer.sign(&good).unwrap()), &[], None)
            .await
            .is_ok()
    );
    let q = format!("{url}?token={}", signer.sign(&good).unwrap());
    assert!(try_connect(&q, None, &[], None).await.is_ok());

    let m = srv.metrics().await;
    assert!(
        metric(&m, "evd_connections_rejected_total", "unauthorized") >= 6.0,
        "{m}"
    );
    srv.shutdown().await;
}

fn alg_none_token(claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_string(claims).unwrap());
    format!("{header}.{body}.")
}

#[tokio::test]
async fn subprotocols_are_negotiated_and_default_to_json() {
    let srv = TestServer::start().await;
    let url = srv.url();
    let t = srv.token("u1", "o1", Role::Attendee, &[]);
    let (_, p) = try_connect(&url, Some(&t), &[], None).await.unwrap();
    assert_eq!(p, None, "no subprotocol offered: none chosen, JSON spoken");
    let (_, p) = try_connect(&url, Some(&t), &["evd.v1.msgpack", "evd.v1.json"], None)
        .await
        .unwrap();
    assert_eq!(
        p.as_deref(),
        Some("evd.v1.msgpack"),
        "the client's first known choice wins"
    );
    let (_, p) = try_connect(&url, Some(&t), &["graphql-ws", "evd.v1.json"], None)
        .await
        .unwrap();
    assert_eq!(p.as_deref(), Some("evd.v1.json"));
    // tungstenite's client refuses a reply without a subprotocol when it offered one (browsers
    // accept it), so this case is a hand-made handshake.
    let (head, mut ws) = raw_upgrade(&srv, &t, "evd.v9.cbor").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "no subprotocol chosen: {head}"
    );
    use futures_util::StreamExt;
    let first = ws.next().await.unwrap().unwrap();
    let text = first.into_text().expect("JSON is spoken: a text frame");
    assert!(text.starts_with(r#"{"ev":"HELLO""#), "{text}");

    for codec in Codec::ALL {
        let c = Client::connect(&url, &t, codec).await;
        assert_eq!(c.hello.user, "u1");
        assert_eq!(c.hello.heartbeat_ms, 25_000);
        assert_eq!(c.hello.node, srv.node.id.to_string());
        assert!(c.hello.server_time > 1_700_000_000_000);
    }
    srv.shutdown().await;
}

async fn raw_upgrade(
    srv: &TestServer,
    token: &str,
    protocol: &str,
) -> (
    String,
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {protocol}\r\nAuthorization: Bearer {token}\r\n\r\n",
        srv.addr
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    // Read the response head byte by byte so no frame byte is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tcp.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        tcp,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    (String::from_utf8(head).unwrap(), ws)
}

#[tokio::test]
async fn new_connections_per_ip_and_per_node_are_limited() {
    let mut s = settings();
    s.limits.conn_rate_per_ip = 1;
    s.limits.conn_burst_per_ip = 2;
    let srv = TestServer::with(s).await;
    let t = srv.token("u1", "o1", Role::Attendee, &[]);
    let _a = try_connect(&srv.url(), Some(&t), &[], None).await.unwrap();
    let _b = try_connect(&srv.url(), Some(&t), &[], None).await.unwrap();
    let refused = try_connect(&srv.url(), Some(&t), &[], None)
        .await
        .expect_err("over the per-IP burst");
    assert_eq!(refused.status, 429);
    assert!(refused.body.contains("rate_limited"), "{}", refused.body);
    srv.shutdown().await;

    let mut s = settings();
    s.limits.max_connections = 2;
    let srv = TestServer::with(s).await;
    let a = try_connect(&srv.url(), Some(&t), &[], None).await.unwrap();
    let _b = try_connect(&srv.url(), Some(&t), &[], None).await.unwrap();
    let refused = try_connect(&srv.url(), Some(&t), &[], None)
        .await
        .expect_err("node is full");
    assert_eq!(refused.status, 503);
    // A slot frees when a connection ends.
    drop(a);
    let freed = tokio::time::timeout(PATIENCE, async {
        while srv.node.connections() >= 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(freed.is_ok(), "the closed connection's slot is released");
    assert!(try_connect(&srv.url(), Some(&t), &[], None).await.is_ok());
    srv.shutdown().await;
}
