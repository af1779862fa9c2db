//! `/echo`: a WebSocket echo on the engine's own connection stack, for the Autobahn compliance
//! suite. Same upgrade, limits and buffers, same queue and write path (one frame per message,
//! since each message must come back as sent): written directly on a plain TCP socket, by a
//! writer task behind TLS. Enabled only by the test-only `test_echo` setting.

use super::reader::{close_code_for, direct_writer, writer_config};
use crate::conn::Conn;
use crate::conn::direct_read;
use crate::conn::queue::{Outbound, Payload};
use crate::conn::writer::{self, Packing};
use crate::node::{ConnPermit, Node};
use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use evd_protocol::{CloseCode, Codec};
use futures_util::{Stream, StreamExt};
use std::sync::Arc;
use tokio::net::TcpStream;

/// Echoes every text and binary message until the client closes (behind TLS).
pub async fn run(node: Arc<Node>, socket: WebSocket, permit: ConnPermit) {
    let conn = Arc::new(Conn::new(
        0,
        "echo".into(),
        Codec::Json,
        node.settings.limits.queue_max_bytes,
    ));
    let (sink, stream) = socket.split();
    let writer = node.shutdown.spawn(writer::run(
        sink,
        Arc::clone(&conn),
        writer_config(&node, Packing::OnePerFrame),
        Arc::clone(&node.stats),
        Arc::clone(&node.metrics),
    ));
    echo(&node, &conn, stream).await;
    let _ = writer.await;
    drop(permit);
}

/// Echoes every text and binary message until the client closes, on a plain TCP socket.
pub async fn run_direct(node: Arc<Node>, socket: TcpStream, read_buf: Bytes, permit: ConnPermit) {
    let direct = direct_writer(&node, socket, Packing::OnePerFrame);
    let conn = Conn::with_direct(
        0,
        "echo".into(),
        crate::conn::Wire::Evd,
        Codec::Json,
        node.settings.limits.queue_max_bytes,
        Some(direct),
    );
    let max_message = node.settings.limits.max_message_bytes;
    let stream = direct_read::messages(Arc::clone(&conn), &read_buf, max_message);
    echo(&node, &conn, stream).await;
    // Let the close frame out before the socket is dropped, within the close timeout.
    let close_wait = std::time::Duration::from_millis(node.settings.drain.close_timeout_ms);
    let _ = tokio::time::timeout(close_wait, conn.writer_done.wait()).await;
    conn.abandon();
    drop(permit);
}

async fn echo<St>(node: &Node, conn: &Conn, mut stream: St)
where
    St: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let stats = Arc::clone(&node.stats);
    let close_wait = std::time::Duration::from_millis(node.settings.drain.close_timeout_ms);
    loop {
        let payload = match stream.next().await {
            Some(Ok(Message::Text(t))) => Payload::Text(t),
            Some(Ok(Message::Binary(b))) => Payload::Binary(b),
            // The WebSocket layer answers a close (and pings) itself; keep reading until the
            // handshake completes and the stream ends.
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                if let Some(code) = close_code_for(&e) {
                    conn.close(code, false, &stats);
                    let _ = tokio::time::timeout(close_wait, conn.writer_done.wait()).await;
                }
                break;
            }
            None => break,
        };
        conn.push(
            Outbound {
                payload,
                published_at: None,
            },
            &stats,
        );
    }
    conn.close(CloseCode::Normal, false, &stats);
}
