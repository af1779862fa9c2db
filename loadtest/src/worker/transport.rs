//! How a worker reaches its targets: resolves their addresses once, mints each client's token,
//! opens a WebSocket from the worker's source address (tungstenite does the handshake), and
//! hands the connection to the harness's own frame reader and writer (`frames`).

use super::frames::{FrameReader, FrameWriter};
use crate::plan::WorkerPlan;
use crate::stamp;
use crate::wire::{Target, Wire};
use anyhow::Context;
use evd_protocol::auth::{Claims, JwtSettings, Role, Signer};
use nix::sys::socket::{setsockopt, sockopt};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// One harness connection: the frames it receives and the frames it sends.
pub(super) struct Ws {
    pub(super) rx: FrameReader<OwnedReadHalf>,
    pub(super) tx: Writer,
}

/// The sending side of a harness connection.
pub(super) type Writer = FrameWriter<OwnedWriteHalf>;

impl Ws {
    /// Sends `msg` now.
    pub(super) async fn send(&mut self, msg: Message) -> io::Result<()> {
        self.tx.send(msg).await
    }
}

/// How long tokens live: longer than any run.
const TOKEN_TTL_SECS: u64 = 6 * 3600;
/// The port assumed for a target URL without one (`ws://`).
const DEFAULT_PORT: u16 = 80;
/// The end of an HTTP response's head.
const HEAD_END: &[u8] = b"\r\n\r\n";

/// The TCP stream during the handshake: gives tungstenite no byte past the end of the
/// server's HTTP response, so the frames the server sends right behind it (a Socket.IO open
/// packet) stay in the socket for the frame reader. It peeks, then reads only what belongs to
/// the response; past the response it reads as the end of the stream.
struct ResponseOnly {
    tcp: TcpStream,
    /// How much of [`HEAD_END`] the bytes read so far end with.
    matched: usize,
}

/// Scans `bytes` for the end of a response head, `matched` bytes of [`HEAD_END`] having been
/// seen before them: returns how far that now is, and the length of `bytes` up to and with the
/// head's end, if it is in them.
fn scan_head(mut matched: usize, bytes: &[u8]) -> (usize, Option<usize>) {
    for (i, &b) in bytes.iter().enumerate() {
        matched = if b == HEAD_END[matched] {
            matched + 1
        } else {
            usize::from(b == HEAD_END[0])
        };
        if matched == HEAD_END.len() {
            return (matched, Some(i + 1));
        }
    }
    (matched, None)
}

impl AsyncRead for ResponseOnly {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.matched == HEAD_END.len() {
            return Poll::Ready(Ok(()));
        }
        let room = buf.initialize_unfilled();
        let peeked = ready!(this.tcp.poll_peek(cx, &mut ReadBuf::new(room)))?;
        let take = scan_head(this.matched, &room[..peeked]).1.unwrap_or(peeked);
        // The peeked bytes are in the socket already: this read does not wait.
        let mut part = ReadBuf::new(&mut room[..take]);
        ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut part))?;
        let got = part.filled().len();
        this.matched = scan_head(this.matched, &room[..got]).0;
        buf.advance(got);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ResponseOnly {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
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
        let guard = ResponseOnly {
            tcp: stream,
            matched: 0,
        };
        // tungstenite's own frame buffer is never used: it gets no capacity.
        let config = WebSocketConfig::default().read_buffer_size(0);
        let (ws, _) = tokio_tungstenite::client_async_with_config(req, guard, Some(config))
            .await
            .map_err(|e| match e {
                WsError::Http(resp) => format!("http {}", resp.status().as_u16()),
                WsError::Io(e) => format!("handshake: {:?}", e.kind()),
                other => format!("handshake: {other}"),
            })?;
        // Nothing past the response was read, so the socket holds every frame sent after it.
        let (rx, tx) = ws.into_inner().tcp.into_split();
        Ok(Ws {
            rx: FrameReader::new(rx),
            tx: FrameWriter::new(tx),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::scan_head;

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        let resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi";
        let end = resp.len() - 4;
        assert_eq!(scan_head(0, resp), (4, Some(end)));
        // Byte by byte, carrying what matched so far.
        let mut matched = 0;
        for (i, b) in resp.iter().enumerate() {
            let (m, found) = scan_head(matched, std::slice::from_ref(b));
            matched = m;
            if found.is_some() {
                assert_eq!(i + 1, end);
                break;
            }
        }
        assert_eq!(matched, 4);
    }

    #[test]
    fn a_head_end_split_over_reads_or_with_stray_returns_is_found() {
        assert_eq!(scan_head(0, b"a\r\n\r"), (3, None));
        assert_eq!(scan_head(3, b"\nrest"), (4, Some(1)));
        assert_eq!(scan_head(0, b"\r\n\r\r\n\r\nx"), (4, Some(7)));
        assert_eq!(scan_head(0, b"\r\r\n\r\n"), (4, Some(5)));
        assert_eq!(scan_head(0, b"\n\n\r\n"), (2, None));
    }
}
