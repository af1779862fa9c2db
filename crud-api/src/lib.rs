//! The evd REST API and system of record: orgs, members, events, sessions, tickets,
//! waitlists, polls, questions and the chat archive, on SQLite or PostgreSQL.
//!
//! - [`app`] builds the router (`/api/v1/…`); tests call it without a socket, and the engine
//!   mounts it in its own process.
//! - [`run`] serves it on a listener until the shutdown token fires, with the offer sweeper,
//!   `/metrics`, `/healthz` and `/readyz`.
//! - [`store`] is the system of record the engine writes votes, questions, chat and offer
//!   answers through, and whose outbox it relays.
//!
//! A process that serves the API next to other things (`evd serve`) does what [`run`] does:
//! [`store::connect`] once and share the `Arc`; build an [`AppState`] over it; merge [`app`]
//! into its router; [`spawn_sweeper`] with its own shutdown token; give its Prometheus recorder
//! [`telemetry::HTTP_DURATION_BUCKETS`].
#![forbid(unsafe_code)]

pub mod auth;
pub mod clock;
pub mod cors;
pub mod error;
pub mod extract;
pub mod membership;
pub mod model;
pub mod openapi;
pub mod rate_limit;
mod routes;
pub mod settings;
pub mod signal;
pub mod state;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod validate;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Router, middleware};
use clock::Clock;
use evd_protocol::auth::JwtConfigError;
use settings::Settings;
use std::sync::Arc;
use std::time::Duration;
use store::{SqlStore, Store, StoreError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

pub use state::AppState;

/// Lapsed offers handled per sweep; the next sweep takes the rest.
pub const SWEEP_BATCH: i64 = 500;

/// The REST API: every route under `/api/v1`, with request ids, request spans, metrics, and
/// CORS for the origins `state.cors` allows.
pub fn app(state: AppState) -> Router {
    let api = routes::router().route("/openapi.json", get(openapi_json));
    Router::new()
        .nest("/api/v1", api)
        .layer(middleware::from_fn(telemetry::track_metrics))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(telemetry::request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // Outermost: a preflight is answered before anything else runs.
        .layer(cors::layer(&state.cors))
        .with_state(state)
}

async fn openapi_json() -> impl IntoResponse {
    axum::Json(openapi::ApiDoc::openapi())
}

/// Why [`run`] could not serve.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The token settings are unusable.
    #[error("jwt settings: {0}")]
    Jwt(#[from] JwtConfigError),
    /// The server failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the API on `listener` until `shutdown` fires, then drains and returns.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let store = store::connect(
        &settings.database_url,
        &settings.store_config(),
        Clock::system(),
    )
    .await?;
    let state = AppState::new(store.clone(), &settings)?;
    if settings.jwt.uses_dev_secret() {
        tracing::warn!(
            "using the built-in development JWT secret: set EVD_JWT_SECRET in production"
        );
    }
    let sweeper = spawn_sweeper(
        store.clone(),
        Duration::from_millis(settings.sweep_interval_ms.max(1)),
        shutdown.child_token(),
    );
    let metrics = telemetry::install_prometheus()
        .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
        .ok();
    let ops = Router::new()
        .route(
            "/metrics",
            get(move || {
                std::future::ready(metrics.as_ref().map(|m| m.render()).unwrap_or_default())
            }),
        )
        .route("/healthz", get(|| std::future::ready(StatusCode::OK)))
        .route("/readyz", get(readyz))
        .with_state(store.clone());
    tracing::info!(addr = ?listener.local_addr().ok(), "evd-api listening");
    let served = axum::serve(listener, app(state).merge(ops))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    shutdown.cancel();
    let _ = sweeper.await;
    store.close().await;
    served.map_err(RunError::from)
}

async fn readyz(State(store): State<Arc<SqlStore>>) -> StatusCode {
    match store.ping().await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Runs [`store::Sweeper::sweep`] every `every` until `shutdown` fires.
pub fn spawn_sweeper(
    store: Arc<dyn Store>,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = store.sweep(SWEEP_BATCH).await {
                        tracing::warn!(error = %e, "sweep failed");
                    }
                }
            }
        }
    })
}
