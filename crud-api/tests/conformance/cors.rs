//! CORS on the REST API: preflights and responses for the allowed origins, nothing for others.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use evd_api::cors::CorsSettings;
use evd_api::settings::Settings;
use evd_protocol::auth::Role;
use tower::ServiceExt;

const ALLOWED: &str = "https://app.example";

async fn send(router: &axum::Router, req: Request<Body>) -> (StatusCode, HeaderMap) {
    let resp = router.clone().oneshot(req).await.unwrap();
    (resp.status(), resp.headers().clone())
}

fn preflight(origin: Option<&str>) -> Request<Body> {
    let mut req = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/v1/events")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,idempotency-key,x-request-id",
        );
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.body(Body::empty()).unwrap()
}

fn cors_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

#[tokio::test]
async fn preflights_and_responses_carry_cors_for_allowed_origins_only() {
    let app = crate::common::TestApp::sqlite().await;
    let settings = Settings {
        cors: CorsSettings {
            allowed_origins: vec![ALLOWED.into()],
        },
        ..crate::common::settings()
    };
    let router = evd_api::app(evd_api::AppState::new(app.store.clone(), &settings).unwrap());

    let (status, headers) = send(&router, preflight(Some(ALLOWED))).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(headers["access-control-allow-origin"], ALLOWED);
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for h in [
        "authorization",
        "content-type",
        "idempotency-key",
        "x-request-id",
    ] {
        assert!(allowed.contains(h), "{allowed}");
    }
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    assert!(headers.contains_key("access-control-max-age"));

    // Another origin's preflight gets no CORS header at all, so its browser refuses the call;
    // an OPTIONS without an Origin is not a preflight and is answered as before.
    let (_, headers) = send(&router, preflight(Some("https://evil.example"))).await;
    assert!(cors_headers(&headers).is_empty(), "{headers:?}");
    let (status, headers) = send(&router, preflight(None)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(cors_headers(&headers).is_empty(), "{headers:?}");

    // A request from the allowed origin may read what a client needs, a refusal included.
    let owner = app.token("alice", "acme", Role::Owner);
    let get = |origin: &str, token: &str| {
        Request::get("/api/v1/events")
            .header("origin", origin)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, headers) = send(&router, get(ALLOWED, &owner)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["access-control-allow-origin"], ALLOWED);
    let exposed = headers["access-control-expose-headers"].to_str().unwrap();
    for h in [
        "retry-after",
        "x-request-id",
        "location",
        "idempotent-replayed",
    ] {
        assert!(exposed.contains(h), "{exposed}");
    }
    let (status, headers) = send(&router, get(ALLOWED, "not-a-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["access-control-allow-origin"], ALLOWED);
    let (status, headers) = send(&router, get("https://evil.example", &owner)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cors_headers(&headers).is_empty(), "{headers:?}");

    // The default allows no other origin; `*` allows any.
    let router = evd_api::app(
        evd_api::AppState::new(app.store.clone(), &crate::common::settings()).unwrap(),
    );
    let (_, headers) = send(&router, preflight(Some(ALLOWED))).await;
    assert!(cors_headers(&headers).is_empty(), "{headers:?}");
    let settings = Settings {
        cors: CorsSettings {
            allowed_origins: vec!["*".into()],
        },
        ..crate::common::settings()
    };
    let router = evd_api::app(evd_api::AppState::new(app.store.clone(), &settings).unwrap());
    let (_, headers) = send(&router, preflight(Some("https://anyone.example"))).await;
    assert_eq!(headers["access-control-allow-origin"], "*");
}
