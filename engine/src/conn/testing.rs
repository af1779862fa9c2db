//! Test support: a connection on a real loopback socket, written and read directly, and the
//! client's end of that socket.

use super::direct::Direct;
use super::queue::QueueStats;
use super::writer::{Packing, WriterConfig};
use super::{Conn, Wire};
use crate::metrics::Metrics;
use evd_protocol::Codec;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Connection `id` (user `u{id}`, evd's JSON protocol) on a direct socket whose writes count in
/// `stats`, and the client's end of the socket.
pub(crate) async fn direct_conn(id: u64, stats: Arc<QueueStats>) -> (Arc<Conn>, TcpStream) {
    let (server, client) = loopback().await;
    let cfg = WriterConfig {
        take_bytes: 1 << 16,
        frame_batch_bytes: 1 << 14,
        packing: Packing::Batch,
        close_timeout: Duration::from_secs(1),
    };
    let direct = Direct::new(server, cfg, stats, Arc::new(Metrics::new()));
    let conn = Conn::with_direct(
        id,
        format!("u{id}").into(),
        Wire::Evd,
        Codec::Json,
        1 << 20,
        Some(direct),
    );
    (conn, client)
}

/// A connected loopback TCP pair: the server's end, then the client's.
pub(crate) async fn loopback() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (server, client)
}
