//! `/echo`: a WebSocket echo on the engine's own connection stack, for the Autobahn compliance
//! suite. Same upgrade limits and buffers, same queue and writer (one frame per message, since
//! each message must come back as sent). Enabled only by the test-only `test_echo` setting.

use super::reader::{close_code_for, writer_config};
use crate::conn::Conn;
use crate::conn::queue::{Outbound, Payload};
use crate::conn::writer::{self, Packing};
use crate::node::{ConnPermit, Node};
use axum::extract::ws::{Message, WebSocket};
use evd_protocol::{CloseCode, Codec};
use futures_util::StreamExt;
use std::sync::Arc;

/// Echoes every text and binary message until the client closes.
pub async fn run(node: Arc<Node>, socket: WebSocket, permit: ConnPermit) {
    let conn = Arc::new(Conn::new(
        0,
        "echo".into(),
        Codec::Json,
        node.settings.limits.queue_max_bytes,
    ));
    let (sink, mut stream) = socket.split();
    let writer = node.shutdown.spawn(writer::run(
        sink,
        Arc::clone(&conn),
        writer_config(&node, Packing::OnePerFrame),
        Arc::clone(&node.stats),
        Arc::clone(&node.metrics),
    ));
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
                    conn.queue.close(code, false, &stats);
                    let _ = tokio::time::timeout(close_wait, conn.writer_done.notified()).await;
                }
                break;
            }
            None => break,
        };
        conn.queue.push(
            Outbound {
                payload,
                published_at: None,
            },
            &stats,
        );
    }
    conn.queue.close(CloseCode::Normal, false, &stats);
    let _ = writer.await;
    drop(permit);
}
