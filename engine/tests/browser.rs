//! What a browser meets: the page `evd serve` serves and its `/config.json`, the development
//! sign-in, CORS on the REST API and on `/ws`, and the upgrade's `Origin` check.

mod common;

use common::*;
use evd_api::store::SqlStore;
use evd_api::test_util::TestDb;
use evd_protocol::Codec;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// A page served from elsewhere that the tests allow.
const ALLOWED: &str = "http://app.example:5173";
/// A page nobody allowed.
const FOREIGN: &str = "https://evil.example";

/// `evd serve` on SQLite, with `settings`; the database lives as long as the server.
async fn serve(settings: evd_engine::Settings) -> (TestServer, TestDb) {
    let db = TestDb::sqlite();
    let store = Arc::new(
        SqlStore::connect(
            &db.url,
            &settings.api().store_config(),
            evd_api::clock::Clock::system(),
        )
        .await
        .expect("store"),
    );
    (TestServer::with_store(settings, store).await, db)
}

/// Settings on the built-in development secret.
fn dev_settings() -> evd_engine::Settings {
    let mut s = settings();
    s.api.jwt.secret = None;
    s
}

async fn get(srv: &TestServer, path: &str) -> reqwest::Response {
    reqwest::get(srv.http(path)).await.unwrap()
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn serve_answers_the_page_its_files_and_its_config() {
    let (srv, _db) = serve(dev_settings()).await;
    let page = get(&srv, "/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let html = page.text().await.unwrap();
    assert!(html.to_lowercase().contains("<html"), "{html}");
    assert!(html.contains("app.js"), "the page loads its script: {html}");

    let js = get(&srv, "/app.js").await;
    assert_eq!(js.status(), 200);
    assert_eq!(
        header(&js, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(header(&js, "x-content-type-options"), "nosniff");
    assert_eq!(
        js.bytes().await.unwrap(),
        include_bytes!("../assets/app.js").as_slice()
    );

    let css = get(&srv, "/style.css").await;
    assert_eq!(css.status(), 200);
    assert_eq!(header(&css, "content-type"), "text/css; charset=utf-8");
    assert_eq!(get(&srv, "/favicon.ico").await.status(), 204);

    let config = get(&srv, "/config.json").await;
    assert_eq!(config.status(), 200);
    assert_eq!(header(&config, "content-type"), "application/json");
    let config: Value = config.json().await.unwrap();
    assert_eq!(
        config,
        json!({
            "dev_mode": true,
            "api": "/api/v1",
            "ws": "/ws",
            "presence_full_room_limit": 1000,
            "admin_stats": "/admin/stats",
            "admin_poll_ms": 2000
        })
    );
    srv.shutdown().await;

    // With a configured secret the page says so, and `evd engine` (no REST API) has no page.
    let (srv, _db) = serve(settings()).await;
    let config: Value = get(&srv, "/config.json").await.json().await.unwrap();
    assert_eq!(config["dev_mode"], false);
    srv.shutdown().await;
    let srv = TestServer::start().await;
    assert_eq!(get(&srv, "/").await.status(), 404);
    srv.shutdown().await;
}

async fn dev_token(srv: &TestServer, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(srv.http("/dev/token"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_dev_token_opens_the_socket_on_the_development_secret_only() {
    let (srv, _db) = serve(dev_settings()).await;
    let (status, body) = dev_token(
        &srv,
        json!({"user": "ada", "role": "attendee", "tier": "vip", "rooms": ["session:S1"], "ttl_secs": 600}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"], "ada");
    assert_eq!(body["org"], "demo");
    assert_eq!(body["role"], "attendee");
    let expires_at = body["expires_at"].as_u64().unwrap();
    assert!(
        (now() + 590..=now() + 610).contains(&expires_at),
        "{expires_at}"
    );
    let token = body["token"].as_str().unwrap();
    let claims = srv.node.verifier.verify(token).unwrap();
    assert_eq!(claims.tier, Some(evd_protocol::auth::Tier::Vip));
    assert_eq!(claims.rooms, Some(vec!["session:S1".to_owned()]));
    let mut c = Client::connect(&srv.url(), token, Codec::Json).await;
    assert_eq!(c.hello.user, "ada");
    c.joined("session:S1").await;

    // Bad input is a 400 that names the field.
    for (body, field) in [
        (json!({"role": "attendee"}), "user"),
        (json!({"user": "a{b}", "role": "attendee"}), "user"),
        (json!({"user": "ada", "role": "admin"}), "role"),
        (json!({"user": "ada", "role": "owner", "org": ""}), "org"),
        (
            json!({"user": "ada", "role": "owner", "tier": "gold"}),
            "tier",
        ),
        (
            json!({"user": "ada", "role": "owner", "rooms": ["lobby"]}),
            "rooms[0]",
        ),
        (
            json!({"user": "ada", "role": "owner", "ttl_secs": 999_999_999}),
            "ttl_secs",
        ),
        (json!({"user": "ada", "role": "owner", "sub": "x"}), "sub"),
    ] {
        let (status, answer) = dev_token(&srv, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"], "bad_request", "{answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
    }
    srv.shutdown().await;

    // A configured secret: the route does not exist.
    let (srv, _db) = serve(settings()).await;
    let (status, _) = dev_token(&srv, json!({"user": "ada", "role": "owner"})).await;
    assert_eq!(status, 404);
    srv.shutdown().await;
}

async fn preflight(srv: &TestServer, path: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, srv.http(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, idempotency-key",
        )
        .send()
        .await
        .unwrap()
}

fn cors_settings() -> evd_engine::Settings {
    let mut s = settings();
    s.api.cors.allowed_origins = vec![ALLOWED.into()];
    s
}

#[tokio::test]
async fn cors_answers_allowed_origins_and_no_one_else() {
    let (srv, _db) = serve(cors_settings()).await;
    let allowed = preflight(&srv, "/api/v1/events", ALLOWED).await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(header(&allowed, "access-control-allow-origin"), ALLOWED);
    let methods = header(&allowed, "access-control-allow-methods").to_lowercase();
    for m in ["get", "post", "put", "patch", "delete"] {
        assert!(methods.contains(m), "{methods}");
    }
    let headers = header(&allowed, "access-control-allow-headers").to_lowercase();
    for h in [
        "authorization",
        "content-type",
        "idempotency-key",
        "x-request-id",
    ] {
        assert!(headers.contains(h), "{headers}");
    }

    let refused = preflight(&srv, "/api/v1/events", FOREIGN).await;
    let cors_headers: Vec<_> = refused
        .headers()
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .collect();
    assert!(cors_headers.is_empty(), "{cors_headers:?}");

    // A real request from the allowed origin may read the headers a client needs.
    let token = srv.token("u1", "o1", evd_protocol::auth::Role::Owner, &[]);
    let resp = reqwest::Client::new()
        .get(srv.http("/api/v1/events"))
        .header("origin", ALLOWED)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "access-control-allow-origin"), ALLOWED);
    let exposed = header(&resp, "access-control-expose-headers").to_lowercase();
    for h in ["retry-after", "x-request-id", "location"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    // Without an Origin nothing changes.
    let plain = reqwest::Client::new()
        .get(srv.http("/api/v1/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("access-control-allow-origin").is_none());

    // `/ws` answers the allowed origin's preflight too, so its page can read a refusal.
    let ws = preflight(&srv, "/ws", ALLOWED).await;
    assert_eq!(header(&ws, "access-control-allow-origin"), ALLOWED);
    srv.shutdown().await;
}

/// An upgrade of `/ws` with `origin` (none: no header); the status it got.
async fn upgrade_status(srv: &TestServer, origin: Option<&str>) -> u16 {
    let token = srv.token("u1", "o1", evd_protocol::auth::Role::Attendee, &[]);
    let mut req = srv.url().into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(o).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((_ws, resp)) => resp.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            if resp.status() == 403 {
                let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
                assert_eq!(body["error"], "forbidden");
                let message = body["message"].as_str().unwrap();
                assert!(message.contains("not allowed"), "{message}");
                assert!(message.contains(origin.unwrap()), "{message}");
            }
            resp.status().as_u16()
        }
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

#[tokio::test]
async fn the_upgrade_refuses_foreign_origins_before_the_token() {
    // `evd engine` (no REST API) and `evd serve` both check it.
    for with_api in [false, true] {
        let (srv, _db) = if with_api {
            let (srv, db) = serve(cors_settings()).await;
            (srv, Some(db))
        } else {
            (TestServer::with(cors_settings()).await, None)
        };
        let same = format!("http://{}", srv.addr);
        let before = metric(
            &srv.metrics().await,
            "evd_connections_rejected_total",
            r#"reason="origin""#,
        );
        assert_eq!(upgrade_status(&srv, Some(FOREIGN)).await, 403);
        assert_eq!(upgrade_status(&srv, Some(ALLOWED)).await, 101);
        assert_eq!(upgrade_status(&srv, Some(&same)).await, 101);
        assert_eq!(upgrade_status(&srv, None).await, 101);
        let after = metric(
            &srv.metrics().await,
            "evd_connections_rejected_total",
            r#"reason="origin""#,
        );
        assert!(after - before >= 1.0, "counted: {before} → {after}");

        // Before the token: a foreign page with a bad token still gets 403.
        let resp = reqwest::Client::new()
            .get(srv.http("/ws?token=bad"))
            .header("origin", FOREIGN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
        srv.shutdown().await;
    }
    // `*` allows any origin.
    let mut s = settings();
    s.api.cors.allowed_origins = vec!["*".into()];
    let srv = TestServer::with(s).await;
    assert_eq!(upgrade_status(&srv, Some(FOREIGN)).await, 101);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_plain_get_of_ws_tells_whether_the_token_is_refused() {
    let srv = TestServer::with(cors_settings()).await;
    let bad = get(&srv, "/ws?token=bad").await;
    assert_eq!(bad.status(), 401);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    let token = srv.token("u1", "o1", evd_protocol::auth::Role::Attendee, &[]);
    let good = get(&srv, &format!("/ws?token={token}")).await;
    assert_ne!(good.status(), 401);
    assert!(good.status().is_client_error(), "{}", good.status());

    // An allowed page may read the refusal.
    let resp = reqwest::Client::new()
        .get(srv.http("/ws?token=bad"))
        .header("origin", ALLOWED)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, "access-control-allow-origin"), ALLOWED);
    srv.shutdown().await;
}
