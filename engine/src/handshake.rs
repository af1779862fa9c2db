//! The WebSocket opening handshake (RFC 6455 §4.2) for connections evd writes to directly: it
//! checks the upgrade request as axum's `WebSocketUpgrade` does, answers `101`, and hands over
//! the plain TCP socket itself (with any bytes read past the request), not a wrapped stream,
//! so frames can be written to it from the fanout ([`crate::conn::direct`]).
//!
//! A server behind TLS keeps axum's upgrade: its socket cannot be written around the TLS layer.

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::future::Future;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// A checked WebSocket upgrade request, not answered yet.
#[derive(Debug)]
pub struct Handshake {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// A refused upgrade request: its status and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// 405, 400 or 426.
    pub status: StatusCode,
    /// What was wrong, as the body.
    pub message: &'static str,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.status, self.message).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Handshake {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Refused> {
        Handshake::from_parts(parts)
    }
}

impl Handshake {
    /// Checks an upgrade request; the refusals match axum's (405 for a method other than GET,
    /// 400 for a missing or wrong header, 426 when the connection cannot be upgraded).
    pub fn from_parts(parts: &mut Parts) -> Result<Handshake, Refused> {
        let bad = |message: &'static str| {
            Err(Refused {
                status: StatusCode::BAD_REQUEST,
                message,
            })
        };
        if parts.method != Method::GET {
            return Err(Refused {
                status: StatusCode::METHOD_NOT_ALLOWED,
                message: "Request method must be `GET`",
            });
        }
        if !header_contains(&parts.headers, &header::CONNECTION, "upgrade") {
            return bad("Connection header did not include 'upgrade'");
        }
        if !header_is(&parts.headers, &header::UPGRADE, "websocket") {
            return bad("`Upgrade` header did not include 'websocket'");
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return bad("`Sec-WebSocket-Key` header missing");
        };
        if !header_is(&parts.headers, &header::SEC_WEBSOCKET_VERSION, "13") {
            return bad("`Sec-WebSocket-Version` header did not include '13'");
        }
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(Refused {
                status: StatusCode::UPGRADE_REQUIRED,
                message: "WebSocket request couldn't be upgraded since no upgrade state was present",
            });
        };
        Ok(Handshake { key, on_upgrade })
    }

    /// Answers `101` with `protocol` as the chosen subprotocol, and runs `on_socket` with the
    /// TCP socket and the bytes already read past the request once the upgrade is done. A
    /// connection that is not plain TCP is dropped with a warning (it cannot happen on a server
    /// without TLS).
    pub fn accept<F, Fut>(self, protocol: Option<HeaderValue>, on_socket: F) -> Response
    where
        F: FnOnce(TcpStream, Bytes) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade failed");
                    return;
                }
            };
            match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>(upgraded)
            {
                Ok(parts) => on_socket(parts.io.into_inner(), parts.read_buf).await,
                Err(_) => tracing::warn!("upgraded connection is not plain TCP; dropped"),
            }
        });
        let accept = derive_accept_key(self.key.as_bytes());
        let mut builder = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, HeaderValue::from_static("upgrade"))
            .header(header::UPGRADE, HeaderValue::from_static("websocket"))
            .header(header::SEC_WEBSOCKET_ACCEPT, accept);
        if let Some(p) = protocol {
            builder = builder.header(header::SEC_WEBSOCKET_PROTOCOL, p);
        }
        builder
            .body(Body::empty())
            .expect("a 101 with valid headers builds")
    }
}

fn header_is(headers: &HeaderMap, name: &HeaderName, value: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|h| h.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

fn header_contains(headers: &HeaderMap, name: &HeaderName, value: &str) -> bool {
    headers
        .get(name)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.to_ascii_lowercase().contains(value))
}
