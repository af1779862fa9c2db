//! `/socket.io/`, the HTTP side of Engine.IO v4's two transports: the WebSocket upgrade, and
//! long-polling (`GET` to receive, `POST` to send, both naming the session by `sid`) with its
//! upgrade to a WebSocket. Origin and admission are checked as on `/ws`; the token is checked
//! once the Socket.IO CONNECT has brought it (a refusal there is a `CONNECT_ERROR` the client
//! can read, where a refused upgrade is not).
//!
//! The routes answer CORS for `cors.allowed_origins`, so a page served elsewhere can poll.
//!
//! A polling session lives on the node that opened it: a request naming a `sid` this node does
//! not hold answers Engine.IO's "Session ID unknown" (code 1), so polling needs sticky sessions
//! across nodes. The WebSocket transport needs none.

use crate::auth::token_from_request;
use crate::conn::Wire;
use crate::node::Node;
use crate::session::socketio::{self, polling};
use crate::upgrade::{configure, foreign_origin_refusal, refusal};
use axum::Router;
use axum::body::Body;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The Socket.IO endpoint, where `socket.io-client` looks by default.
pub const PATH: &str = "/socket.io/";

/// The same without the slash (a client configured with `path: '/socket.io'`).
const PATH_BARE: &str = "/socket.io";

/// The upgrades a polling session is offered.
const POLLING_UPGRADES: &[&str] = &["websocket"];

#[derive(Clone)]
struct SioState {
    node: Arc<Node>,
    polls: Arc<polling::Registry>,
}

/// The `/socket.io/` routes.
pub fn router(node: Arc<Node>) -> Router {
    // A page of a listed origin may poll from its own origin, as it may read `/ws` refusals.
    let cors = evd_api::cors::layer(&node.settings.api.cors);
    let polls = Arc::new(polling::Registry::new(node.shutdown.clone()));
    let state = SioState { node, polls };
    Router::new()
        .route(PATH, any(socketio))
        .route(PATH_BARE, any(socketio))
        .layer(cors)
        .with_state(state)
}

/// An Engine.IO refusal: the JSON body engine.io answers a bad request with, which
/// `socket.io-client` reports in `connect_error`.
fn engine_io_refusal(code: u8, message: &str) -> Response {
    let body = serde_json::json!({ "code": code, "message": message });
    (
        StatusCode::BAD_REQUEST,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

fn poll_refusal(e: polling::PollError) -> Response {
    let (code, message) = e.code_and_message();
    engine_io_refusal(code, message)
}

/// The value of `key` in a query string (no decoding: Engine.IO's keys and values need none).
fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

fn text(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=UTF-8"),
        )],
        body,
    )
        .into_response()
}

#[allow(clippy::too_many_arguments)]
async fn socketio(
    State(sio): State<SioState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    body: Body,
) -> Response {
    let node = &sio.node;
    if let Some(refused) = foreign_origin_refusal(node, &headers, &uri) {
        return refused;
    }
    let query = query.as_deref();
    if query_param(query, "EIO") != Some(evd_protocol::socketio::ENGINE_IO_VERSION) {
        return engine_io_refusal(5, "Unsupported protocol version");
    }
    let sid = query_param(query, "sid");
    let token = || token_from_request(&headers, query).map(std::borrow::Cow::into_owned);
    let sio_cfg = &node.settings.socketio;
    let poll_wait = Duration::from_millis(sio_cfg.ping_interval_ms + sio_cfg.ping_timeout_ms);
    match (query_param(query, "transport"), sid, upgrade) {
        (Some("websocket"), None, Ok(upgrade)) => {
            let permit = match node.admit(peer.ip(), Wire::SocketIo.label()) {
                Ok(p) => p,
                Err(r) => return refusal(node, r),
            };
            let (node, token) = (Arc::clone(node), token());
            configure(upgrade, &node.settings).on_upgrade(move |socket| {
                let shutdown = node.shutdown.clone();
                shutdown.spawn(socketio::run(node, socket, token, permit));
                std::future::ready(())
            })
        }
        (Some("websocket"), Some(sid), Ok(upgrade)) => {
            let Some(session) = sio.polls.get(sid) else {
                return poll_refusal(polling::PollError::UnknownSid);
            };
            let wait = Duration::from_millis(sio_cfg.ping_timeout_ms);
            let tracked = node.shutdown.clone();
            configure(upgrade, &node.settings).on_upgrade(move |socket| {
                tracked.track(async move {
                    session.upgrade(socket, wait).await;
                })
            })
        }
        (Some("websocket"), _, Err(_)) => engine_io_refusal(3, "Bad request"),
        (Some("polling"), None, _) if method == Method::GET => {
            let permit = match node.admit(peer.ip(), Wire::SocketIo.label()) {
                Ok(p) => p,
                Err(r) => return refusal(node, r),
            };
            let sid = socketio::new_sid();
            let (sink, stream) = sio.polls.open(&sid, node.settings.limits.frame_batch_bytes);
            let Some(session) = sio.polls.get(&sid) else {
                return poll_refusal(polling::PollError::UnknownSid);
            };
            node.shutdown.spawn(socketio::open(
                Arc::clone(node),
                sink,
                stream,
                sid,
                POLLING_UPGRADES,
                token(),
                permit,
            ));
            match session.poll(poll_wait).await {
                Ok(body) => text(body),
                Err(e) => poll_refusal(e),
            }
        }
        (Some("polling"), Some(sid), _) => {
            let Some(session) = sio.polls.get(sid) else {
                return poll_refusal(polling::PollError::UnknownSid);
            };
            if method == Method::GET {
                return match session.poll(poll_wait).await {
                    Ok(body) => text(body),
                    Err(e) => poll_refusal(e),
                };
            }
            if method != Method::POST {
                return engine_io_refusal(2, "Bad handshake method");
            }
            let Ok(bytes) = axum::body::to_bytes(body, sio_cfg.max_payload).await else {
                return (StatusCode::PAYLOAD_TOO_LARGE, "payload too large").into_response();
            };
            let Ok(payload) = std::str::from_utf8(&bytes) else {
                return poll_refusal(polling::PollError::BadRequest);
            };
            match session.post(payload).await {
                Ok(()) => text("ok".to_owned()),
                Err(e) => poll_refusal(e),
            }
        }
        _ => engine_io_refusal(0, "Transport unknown"),
    }
}
