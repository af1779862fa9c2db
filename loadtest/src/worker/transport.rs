//! How a worker reaches its targets: resolves their addresses once, mints each client's token,
//! opens a WebSocket from the worker's source address, and reads what a received frame holds.

use crate::plan::WorkerPlan;
use crate::stamp;
use crate::wire::{Target, Wire};
use anyhow::Context;
use evd_protocol::auth::{Claims, JwtSettings, Role, Signer};
use nix::sys::socket::{setsockopt, sockopt};
use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// One harness connection.
pub(super) type Ws = WebSocketStream<TcpStream>;

/// Read buffer per harness connection: tungstenite's default of 128 KiB would cost 2.4 GB for
/// 19k connections.
const READ_BUFFER: usize = 8 * 1024;
/// How long tokens live: longer than any run.
const TOKEN_TTL_SECS: u64 = 6 * 3600;
/// The port assumed for a target URL without one (`ws://`).
const DEFAULT_PORT: u16 = 80;
/// The close code reported for a close frame without a status (RFC 6455, 7.1.5).
const NO_STATUS: u16 = 1005;

/// What one received WebSocket message holds for the harness.
pub(super) enum Frame<'a> {
    /// A text (`binary` false) or binary frame's bytes.
    Data { data: &'a [u8], binary: bool },
    /// The peer closed, with this close code.
    Close(u16),
    /// A control frame the harness does not read (ping, pong).
    Other,
}

/// Reads what `msg` holds.
pub(super) fn frame(msg: &Message) -> Frame<'_> {
    match msg {
        Message::Text(t) => Frame::Data {
            data: t.as_bytes(),
            binary: false,
        },
        Message::Binary(b) => Frame::Data {
            data: &b[..],
            binary: true,
        },
        Message::Close(f) => Frame::Close(f.as_ref().map_or(NO_STATUS, |f| u16::from(f.code))),
        _ => Frame::Other,
    }
}

/// A worker's way to its targets.
pub(super) struct Transport {
    wire: Wire,
    /// The WebSocket URL of each target, by target index.
    urls: Vec<String>,
    /// The resolved address of each target, by target index.
    addrs: Vec<SocketAddr>,
    /// The worker's source address, when it has one.
    source: Option<IpAddr>,
    /// Mints the clients' tokens.
    signer: Option<Signer>,
    org: String,
}

impl Transport {
    /// Resolves every target of `plan` and makes the token signer.
    pub(super) async fn new(plan: &WorkerPlan, wire: Wire) -> anyhow::Result<Transport> {
        // Every target gets a token: evd needs one (on `/ws` and on its Socket.IO endpoint, as a
        // bearer header), and the peers ignore the header.
        let signer = Some(
            JwtSettings {
                secret: plan.secret.clone(),
                ..Default::default()
            }
            .signer()?,
        );
        let mut urls = Vec::new();
        let mut addrs = Vec::new();
        for t in &plan.targets {
            let url = wire.url(t);
            let req = url
                .as_str()
                .into_client_request()
                .with_context(|| format!("target {t}"))?;
            let host = req
                .uri()
                .host()
                .context("target host")?
                .trim_matches(['[', ']'])
                .to_owned();
            let port = req.uri().port_u16().unwrap_or(DEFAULT_PORT);
            let addr = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .next()
                .with_context(|| format!("resolve {t}"))?;
            urls.push(url);
            addrs.push(addr);
        }
        Ok(Transport {
            wire,
            urls,
            addrs,
            source: plan.source,
            signer,
            org: plan.org.clone(),
        })
    }

    /// A token for `user` as `role`, limited to `room` when given; `None` without a signer.
    pub(super) fn token(&self, user: &str, role: Role, room: Option<&str>) -> Option<String> {
        let signer = self.signer.as_ref()?;
        let mut claims = Claims::new(
            user,
            &self.org,
            role,
            stamp::now_us() / 1_000_000,
            TOKEN_TTL_SECS,
        );
        claims.rooms = room.map(|r| vec![r.to_owned()]);
        signer.sign(&claims).ok()
    }

    /// Opens a WebSocket to target `t` from this worker's source address.
    pub(super) async fn open(&self, t: usize, token: Option<&str>) -> Result<Ws, String> {
        let mut req = self.urls[t]
            .as_str()
            .into_client_request()
            .map_err(|e| format!("url: {e}"))?;
        if let Some(token) = token {
            let v = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| "token header".to_owned())?;
            req.headers_mut().insert("authorization", v);
        }
        if self.wire.target == Target::Evd {
            req.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_static(self.wire.codec.subprotocol()),
            );
        }
        let addr = self.addrs[t];
        let sock = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| format!("socket: {:?}", e.kind()))?;
        if let Some(src) = self.source {
            // Reuse lets a reconnect storm bind ports still in TIME_WAIT from the drop.
            sock.set_reuseaddr(true)
                .map_err(|e| format!("reuseaddr: {:?}", e.kind()))?;
            // Pick the port at connect time, by the whole 4-tuple: a port bound with
            // `bind(src:0)` is reserved against every destination, and the kernel's search for
            // a free one grows with the ports in use, which at tens of thousands of connections
            // turns the ramp into seconds of kernel time per thousand connections.
            setsockopt(&sock, sockopt::IpBindAddressNoPort, &true)
                .map_err(|e| format!("IP_BIND_ADDRESS_NO_PORT: {e}"))?;
            sock.bind(SocketAddr::new(src, 0))
                .map_err(|e| format!("bind: {:?}", e.kind()))?;
        }
        let stream = sock
            .connect(addr)
            .await
            .map_err(|e| format!("connect: {:?}", e.kind()))?;
        let _ = stream.set_nodelay(true);
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(config))
            .await
            .map_err(|e| match e {
                WsError::Http(resp) => format!("http {}", resp.status().as_u16()),
                WsError::Io(e) => format!("handshake: {:?}", e.kind()),
                other => format!("handshake: {other}"),
            })?;
        Ok(ws)
    }
}
