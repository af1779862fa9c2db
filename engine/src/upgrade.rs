//! What every WebSocket route shares (`/ws`, `/socket.io/`, `/echo`): the socket's buffers and
//! limits, the `Origin` gate, and the JSON bodies of refused upgrades.

use crate::node::{Node, Refusal};
use crate::origin;
use crate::settings::Settings;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// A JSON error body `{"error": …, "message": …}` as PROTOCOL.md gives for refused upgrades.
pub fn refuse(status: StatusCode, error: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": error, "message": message });
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// The `Origin` gate of an upgrade (or a Socket.IO poll): a page of a foreign origin gets 403
/// before anything else is read, its token included, since a token says nothing about the page.
pub fn foreign_origin_refusal(node: &Node, headers: &HeaderMap, uri: &Uri) -> Option<Response> {
    let refused = origin::check(&node.settings.api.cors, headers, uri).err()?;
    node.metrics.rejected("origin");
    Some(refuse(
        StatusCode::FORBIDDEN,
        "forbidden",
        &format!("origin {refused} not allowed"),
    ))
}

/// The refusal of a user an organizer banned from the org (403 `banned`, `Retry-After` the
/// seconds until the ban ends); `None` when no ban is in force.
pub async fn ban_refusal(node: &Node, org: &str, user: &str) -> Option<Response> {
    let until = node.bans.as_ref()?.banned_until(org, user).await?;
    node.metrics.rejected("banned");
    let mut resp = refuse(
        StatusCode::FORBIDDEN,
        "banned",
        &format!("an organizer banned this user from the org until {until} (unix ms)"),
    );
    let secs = (until - crate::clock::unix_ms() + 999).max(1000) / 1000;
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Some(resp)
}

/// The answer to an admission refusal (503 draining or full, 429 with `Retry-After`).
pub fn refusal(node: &Node, r: Refusal) -> Response {
    match r {
        Refusal::Draining => {
            node.metrics.rejected("draining");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "this node is draining; connect to another",
            )
        }
        Refusal::Full => {
            node.metrics.rejected("full");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "this node is at its connection limit",
            )
        }
        Refusal::RateLimited { retry_after } => {
            node.metrics.rejected("rate_limited");
            let mut resp = refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many new connections from this address",
            );
            let secs = retry_after.as_secs().max(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

/// The WebSocket's buffers and message limits, from `[limits]`.
pub fn configure(ws: WebSocketUpgrade, settings: &Settings) -> WebSocketUpgrade {
    let l = &settings.limits;
    ws.read_buffer_size(l.read_buffer_bytes)
        .write_buffer_size(l.frame_batch_bytes)
        .max_write_buffer_size(l.queue_max_bytes + l.frame_batch_bytes * 4)
        .max_message_size(l.max_message_bytes)
        .max_frame_size(l.max_message_bytes)
}
