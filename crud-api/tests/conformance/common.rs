//! The harness: a fresh store per test (a temp SQLite file, or a new PostgreSQL database),
//! the real router over it, a manual clock and a token signer.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use evd_api::clock::{Clock, ManualClock};
use evd_api::settings::Settings;
use evd_api::store::{SqlStore, StoreConfig};
use evd_api::test_util::TestDb;
use evd_api::{AppState, app};
use evd_protocol::auth::{Claims, Role, Signer, Tier};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// 2026-11-24T00:00:00Z: every test starts at the same instant.
pub(crate) const START_MS: i64 = 1_795_478_400_000;

/// How long offers last in tests.
pub(crate) const OFFER_TTL: Duration = Duration::from_secs(600);

pub(crate) struct TestApp {
    pub(crate) store: Arc<SqlStore>,
    pub(crate) router: Router,
    pub(crate) clock: ManualClock,
    signer: Signer,
    // Dropped last: the database outlives the store's pool.
    _db: TestDb,
}

pub(crate) fn settings() -> Settings {
    Settings {
        rate_limit: evd_api::rate_limit::RateLimitSettings {
            per_second: 10_000.try_into().unwrap(),
            burst: 10_000.try_into().unwrap(),
        },
        ..Settings::default()
    }
}

fn config(pool_size: u32) -> StoreConfig {
    StoreConfig {
        pool_size,
        offer_ttl: OFFER_TTL,
        migrate: true,
    }
}

impl TestApp {
    /// The app over `db`, with a pool of 8.
    pub(crate) async fn new(db: TestDb) -> TestApp {
        Self::build(db, 8).await
    }

    pub(crate) async fn sqlite() -> TestApp {
        Self::new(TestDb::sqlite()).await
    }

    /// A fresh database on the server at `EVD_TEST_DATABASE_URL`; `None` (and a note) when it
    /// is unset, a panic when `EVD_REQUIRE_SERVICES=1`.
    pub(crate) async fn postgres() -> Option<TestApp> {
        Self::postgres_with_pool(8).await
    }

    pub(crate) async fn postgres_with_pool(pool_size: u32) -> Option<TestApp> {
        let db = TestDb::postgres("conformance").await?;
        Some(Self::build(db, pool_size).await)
    }

    async fn build(db: TestDb, pool_size: u32) -> TestApp {
        let url = db.url.as_str();
        let (clock, manual) = Clock::manual(START_MS);
        let store = Arc::new(
            SqlStore::connect(url, &config(pool_size), clock)
                .await
                .expect("store"),
        );
        let settings = settings();
        let state = AppState::new(store.clone(), &settings).expect("state");
        TestApp {
            store,
            router: app(state),
            clock: manual,
            signer: settings.jwt.signer().expect("signer"),
            _db: db,
        }
    }

    /// A second store on the same database, as another process would open it: its own pool
    /// and its own writer of vote counts.
    pub(crate) async fn another_store(&self) -> SqlStore {
        let (clock, _) = Clock::manual(START_MS);
        SqlStore::connect(&self._db.url, &config(2), clock)
            .await
            .expect("second store")
    }

    pub(crate) fn token(&self, user: &str, org: &str, role: Role) -> String {
        self.token_with_tier(user, org, role, None)
    }

    pub(crate) fn token_with_tier(
        &self,
        user: &str,
        org: &str,
        role: Role,
        tier: Option<Tier>,
    ) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = Claims::new(user, org, role, now, 3600);
        claims.tier = tier;
        self.signer.sign(&claims).expect("token")
    }

    /// Sends one request through the router.
    pub(crate) async fn send(
        &self,
        req: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = self.router.clone().oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, headers, body)
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, body) = self.call_with_headers(method, path, token, body, &[]).await;
        (status, body)
    }

    pub(crate) async fn call_with_headers(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header("authorization", format!("Bearer {token}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.send(req).await
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub(crate) async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, token, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, token, None).await
    }

    /// Creates org `org` owned by `owner`, a published event and one session of `capacity`
    /// seats; returns (owner token, event id, session id).
    pub(crate) async fn seed(
        &self,
        org: &str,
        owner: &str,
        capacity: i64,
    ) -> (String, String, String) {
        let token = self.token(owner, org, Role::Owner);
        let (status, _) = self
            .post("/orgs", &token, serde_json::json!({"id": org, "name": org}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, event) = self
            .post(
                "/events",
                &token,
                serde_json::json!({
                    "name": "Launch week", "description": "talks and demos",
                    "status": "published",
                    "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-03T18:00:00Z"
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{event}");
        let event_id = event["id"].as_str().unwrap().to_owned();
        let (status, session) = self
            .post(
                &format!("/events/{event_id}/sessions"),
                &token,
                serde_json::json!({
                    "title": "Keynote", "capacity": capacity,
                    "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-01T10:00:00Z"
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{session}");
        (token, event_id, session["id"].as_str().unwrap().to_owned())
    }
}
