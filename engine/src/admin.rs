//! `GET /admin/stats`: the admin view's data, for the owners of an org.
//!
//! The token comes in `Authorization: Bearer` (never the query string: this is no upgrade, and
//! a URL ends up in logs). A missing or bad token is a 401, a valid token whose role is not
//! `owner` a 403, both with the JSON body refused upgrades have. The answer is an
//! [`Overview`]: every live node's snapshot from the stats board (each node publishes its own
//! every `admin.snapshot_every_ms`), summed, with the rooms of the token's org only. The page at
//! `/admin` polls it once per `admin.snapshot_every_ms`.

use crate::auth::token_from_request;
use crate::node::Node;
use crate::stats::overview::Overview;
use crate::upgrade::refuse;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use evd_protocol::auth::{AuthError, Role};
use std::sync::Arc;

/// Where the admin view's data is served.
pub const STATS_PATH: &str = "/admin/stats";

/// The handler of [`STATS_PATH`].
pub async fn stats(State(node): State<Arc<Node>>, headers: HeaderMap) -> Response {
    let claims = match token_from_request(&headers, None)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)
        .and_then(|t| node.verifier.verify(&t))
    {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, "unauthorized", &e.to_string()),
    };
    if claims.role != Role::Owner {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!(
                "the admin view is for the org's owners; this token's role is {}",
                claims.role
            ),
        );
    }
    let snapshots = match node.board.read().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "admin stats unavailable");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the nodes' snapshots cannot be read now; try again",
            );
        }
    };
    let a = &node.settings.admin;
    let overview = Overview::build(&claims.org, snapshots, a.top_rooms, a.snapshot_every_ms);
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(overview),
    )
        .into_response()
}
