//! The read side of a direct connection ([`super::direct`]): the WebSocket layer reads frames
//! from the plain TCP socket, and what it writes itself (pongs, the echo of a client's close)
//! goes out through [`Conn::write_raw`], after the frames already waiting.

use super::Conn;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self as ts};

/// The socket as the WebSocket layer sees it: reads from the socket, writes through
/// [`Conn::write_raw`]. Only for a connection with a direct socket.
#[derive(Debug)]
pub struct ReadIo(Arc<Conn>);

impl AsyncRead for ReadIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(direct) = &self.0.direct else {
            return Poll::Ready(Err(io::ErrorKind::Unsupported.into()));
        };
        let stream = direct.stream();
        loop {
            ready!(stream.poll_read_ready(cx))?;
            match stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for ReadIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.write_raw(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The messages a direct connection receives, as the session reads them.
pub type DirectStream = Pin<Box<dyn Stream<Item = Result<Message, axum::Error>> + Send>>;

/// Reads messages from `conn`'s direct socket, starting with `read_buf` (bytes read past the
/// upgrade request).
pub async fn messages(conn: Arc<Conn>, read_buf: Bytes, config: WebSocketConfig) -> DirectStream {
    let ws = WebSocketStream::from_partially_read(
        ReadIo(conn),
        read_buf.to_vec(),
        Role::Server,
        Some(config),
    )
    .await;
    Box::pin(ws.filter_map(|r| std::future::ready(convert(r))))
}

/// A message of the WebSocket layer as the session's; `None` for raw frames, which it never
/// yields when reading.
fn convert(r: Result<ts::Message, ts::Error>) -> Option<Result<Message, axum::Error>> {
    let msg = match r {
        Ok(m) => m,
        Err(e) => return Some(Err(axum::Error::new(e))),
    };
    Some(Ok(match msg {
        ts::Message::Text(t) => {
            Message::Text(Utf8Bytes::try_from(Bytes::from(t)).expect("validated as UTF-8"))
        }
        ts::Message::Binary(b) => Message::Binary(b),
        ts::Message::Ping(p) => Message::Ping(p),
        ts::Message::Pong(p) => Message::Pong(p),
        ts::Message::Close(frame) => Message::Close(frame.map(|f| CloseFrame {
            code: f.code.into(),
            reason: Utf8Bytes::try_from(Bytes::from(f.reason)).expect("validated as UTF-8"),
        })),
        ts::Message::Frame(_) => return None,
    }))
}
