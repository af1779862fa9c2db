//! The browser page `evd serve` serves: `/` and `/admin` (index.html), `/app.js` and `/style.css`, compiled
//! into the binary from `engine/assets/` (`app.js` is committed already built, so building the
//! engine needs no Node), and `/config.json`, what the page needs to know about this server.

use crate::settings::Settings;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX_HTML: &[u8] = include_bytes!("../assets/index.html");
const APP_JS: &[u8] = include_bytes!("../assets/app.js");
const STYLE_CSS: &[u8] = include_bytes!("../assets/style.css");

/// Where the page finds the REST API (crud-api nests its routes here).
pub const API_PATH: &str = "/api/v1";

/// The admin view: the same page, which shows the view at this path.
pub const ADMIN_PATH: &str = "/admin";

/// Where the page opens its WebSocket.
pub const WS_PATH: &str = "/ws";

/// The page's routes: its three files (index.html at `/` and at `/admin`), a `/favicon.ico` with no content, and `/config.json`.
pub fn router(settings: &Settings) -> Router {
    let config = serde_json::json!({
        "dev_mode": settings.api.jwt.uses_dev_secret(),
        "api": API_PATH,
        "ws": WS_PATH,
        "presence_full_room_limit": settings.presence.full_room_limit,
        "admin_stats": crate::admin::STATS_PATH,
        "admin_poll_ms": settings.admin.snapshot_every_ms,
    })
    .to_string();
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            ADMIN_PATH,
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/config.json",
            get(move || std::future::ready(asset(config.clone(), "application/json"))),
        )
}

/// `body` as `content_type`; revalidated on every load (the files change with the binary), and
/// never sniffed as anything else.
fn asset(body: impl Into<axum::body::Body>, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body.into(),
    )
        .into_response()
}
