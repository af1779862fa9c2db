//! The Socket.IO benchmark peer in Rust: socketioxide on axum, with the events of the original
//! gateway (`join_room`, `leave_room`, `send_message` → `MESSAGE_RECEIVED` to the room).
//!
//! No authentication: the peer measures the transport and fanout, not token checks.
//!
//! The event handlers are registered in a connect *middleware*, which runs before the library
//! answers the namespace connect. Registered in the connect handler instead (the usual way), a
//! client that sends `join_room` right after its connect is acknowledged can beat the
//! registration, and that join is silently lost in a burst.

use axum::Router;
use serde::{Deserialize, Serialize};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef, State};
use socketioxide::handler::ConnectHandler;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Per-room message counters, so `MESSAGE_RECEIVED` carries an offset like the engine's. A
/// room's lock is held across its broadcast so offsets reach every member in order.
#[derive(Clone, Default)]
struct Offsets(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<u64>>>>>);

impl Offsets {
    fn room(&self, room: &str) -> Arc<tokio::sync::Mutex<u64>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(room.to_owned()).or_default().clone()
    }
}

#[derive(Deserialize)]
struct Join {
    room: String,
}

#[derive(Deserialize)]
struct Send {
    room: String,
    text: String,
}

#[derive(Serialize)]
struct Received<'a> {
    room: &'a str,
    offset: u64,
    user: &'a str,
    text: &'a str,
    ts: u64,
}

async fn register(s: SocketRef) -> Result<(), Infallible> {
    s.on("join_room", async |s: SocketRef, Data(j): Data<Join>, ack: AckSender| {
        s.join(j.room.clone());
        let _ = ack.send(&serde_json::json!({ "room": j.room }));
    });
    s.on("leave_room", async |s: SocketRef, Data(j): Data<Join>, ack: AckSender| {
        s.leave(j.room.clone());
        let _ = ack.send(&serde_json::json!({ "room": j.room }));
    });
    s.on(
        "send_message",
        async |s: SocketRef, io: SocketIo, State(offsets): State<Offsets>, Data(m): Data<Send>, ack: AckSender| {
            let counter = offsets.room(&m.room);
            let mut offset = counter.lock().await;
            *offset += 1;
            let ts = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
            let id = s.id.to_string();
            let ev = Received { room: &m.room, offset: *offset, user: &id, text: &m.text, ts };
            let _ = io.to(m.room.clone()).emit("MESSAGE_RECEIVED", &ev).await;
            let _ = ack.send(&serde_json::json!({ "offset": *offset }));
        },
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3001);
    let (layer, io) = SocketIo::builder()
        .with_state(Offsets::default())
        // A small read buffer per connection, as the engine and the Node peer have.
        .ws_read_buffer_size(4096)
        .build_layer();
    io.ns("/", (async |_s: SocketRef| {}).with(register));
    let app = Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("socketioxide peer on 127.0.0.1:{port}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
