//! The binary's library entry point on a real socket: metrics, health, shutdown.

use axum::http::StatusCode;
use evd_api::settings::Settings;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn run_serves_the_api_metrics_and_health_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        database_url: format!("sqlite://{}", dir.path().join("evd.db").display()),
        ..crate::common::settings()
    };
    let token = {
        let signer = settings.jwt.signer().unwrap();
        let claims = evd_protocol::auth::Claims::new(
            "u1",
            "o1",
            evd_protocol::auth::Role::Owner,
            4_000_000_000 - 3600,
            3600,
        );
        signer.sign(&claims).unwrap()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(evd_api::run(listener, settings, shutdown.clone()));

    let get = |path: &str, auth: bool| {
        let url = format!("http://{addr}{path}");
        let token = token.clone();
        async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut req = hyper::Request::get(url).header("host", "localhost");
            if auth {
                req = req.header("authorization", format!("Bearer {token}"));
            }
            let res = send
                .send_request(
                    req.body(http_body_util::Empty::<bytes::Bytes>::new())
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = res.status();
            let body = http_body_util::BodyExt::collect(res.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    assert_eq!(get("/healthz", false).await.0, StatusCode::OK);
    assert_eq!(get("/readyz", false).await.0, StatusCode::OK);
    let (status, _) = get("/api/v1/events/some-id", true).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, doc) = get("/api/v1/openapi.json", false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc.contains("\"openapi\":\"3."), "{doc}");
    let (_, metrics) = get("/metrics", false).await;
    assert!(
        metrics.contains(r#"evd_http_requests_total{route="/api/v1/events/{event_id}",method="GET",status="404"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("evd_http_request_duration_seconds"),
        "{metrics}"
    );
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn each_user_has_a_rate_limit_of_their_own() {
    use axum::body::Body;
    use evd_api::rate_limit::RateLimitSettings;
    use evd_protocol::auth::Role;
    use tower::ServiceExt;

    let app = crate::common::TestApp::sqlite().await;
    let settings = Settings {
        rate_limit: RateLimitSettings {
            per_second: 1.try_into().unwrap(),
            burst: 2.try_into().unwrap(),
        },
        ..crate::common::settings()
    };
    let router = evd_api::app(evd_api::AppState::new(app.store.clone(), &settings).unwrap());
    let send = |token: String| {
        let router = router.clone();
        async move {
            let req = axum::http::Request::get("/api/v1/events")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            router.oneshot(req).await.unwrap()
        }
    };
    let alice = app.token("alice", "acme", Role::Owner);
    assert_eq!(send(alice.clone()).await.status(), StatusCode::OK);
    assert_eq!(send(alice.clone()).await.status(), StatusCode::OK);
    let limited = send(alice.clone()).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Another user, or the same user id in another org, has a bucket of their own.
    assert_eq!(
        send(app.token("bob", "acme", Role::Owner)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(app.token("alice", "other", Role::Owner))
            .await
            .status(),
        StatusCode::OK
    );
}
