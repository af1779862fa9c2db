//! Test harness: a real engine on 127.0.0.1:0 and real WebSocket clients.
#![allow(dead_code, unreachable_pub)]

pub mod chat;
mod evd;
pub mod proxy;
mod rest;
#[allow(unused_imports)] // not every test binary uses all of them
pub use evd::{Evd, evd_command, kill};
#[allow(unused_imports)] // not every test binary uses both
pub use rest::{Remote, Rest};

use evd_api::store::SqlStore;
use evd_engine::{Node, Settings, Shutdown};
use evd_protocol::auth::{Claims, JwtSettings, Role};
use evd_protocol::event::{ChatMessage, Event, RoomJoined};
use evd_protocol::op::{JoinRoom, LeaveRoom, Op, Ping, SendMessage, StreamPosition};
use evd_protocol::{Codec, Request, RoomName};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// How long a test waits for something that should happen promptly. A guard against hangs,
/// not a speed assertion.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

/// Token settings that sign and verify with [`SECRET`], as the engines under test do.
pub fn jwt() -> JwtSettings {
    JwtSettings {
        secret: Some(SECRET.into()),
        ..Default::default()
    }
}

pub fn settings() -> Settings {
    let mut s = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Settings::default()
    };
    s.api.jwt.secret = Some(SECRET.into());
    s.drain.grace_ms = 200;
    s.drain.close_timeout_ms = 1_000;
    s.tick_ms = 20;
    s.limits.conn_rate_per_ip = 0;
    s
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub node: Arc<Node>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::with(settings()).await
    }

    /// A memory-only engine: no store, no REST API.
    pub async fn with(settings: Settings) -> TestServer {
        let node = Node::new(settings, Shutdown::new()).unwrap();
        Self::serve(node, None).await
    }

    /// An engine with the store and the REST API mounted, as `evd serve` runs them.
    pub async fn with_store(settings: Settings, store: Arc<SqlStore>) -> TestServer {
        let api = evd_api::AppState::new(store.clone(), &settings.api()).unwrap();
        let node = Node::builder(settings)
            .store(store)
            .build(Shutdown::new())
            .unwrap();
        Self::serve(node, Some(api)).await
    }

    async fn serve(node: Arc<Node>, api: Option<evd_api::AppState>) -> TestServer {
        let listener = tokio::net::TcpListener::bind(node.settings.listen)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let n = Arc::clone(&node);
        let task = tokio::spawn(async move {
            evd_engine::serve_with(listener, n, api, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            addr,
            node,
            stop: Some(tx),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn token(&self, user: &str, org: &str, role: Role, rooms: &[&str]) -> String {
        let mut c = Claims::new(user, org, role, now(), 3600);
        if !rooms.is_empty() {
            c.rooms = Some(rooms.iter().map(|r| r.to_string()).collect());
        }
        self.node
            .settings
            .api
            .jwt
            .signer()
            .unwrap()
            .sign(&c)
            .unwrap()
    }

    pub async fn client(&self, user: &str, org: &str, role: Role, codec: Codec) -> Client {
        let token = self.token(user, org, role, &[]);
        Client::connect(&self.url(), &token, codec).await
    }

    /// Organizers `u0`, `u1`, … of org `o1`, one speaking each codec, all joined to `room`.
    pub async fn members(&self, room: &str, codecs: &[Codec]) -> Vec<Client> {
        let mut members = Vec::new();
        for (i, codec) in codecs.iter().enumerate() {
            let mut c = self
                .client(&format!("u{i}"), "o1", Role::Organizer, *codec)
                .await;
            c.joined(room).await;
            members.push(c);
        }
        members
    }

    /// Sends the shutdown signal and waits for `serve` to return.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("server stops")
            .unwrap();
    }

    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.http("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn room(s: &str) -> RoomName {
    RoomName::parse(s).unwrap()
}

/// The sum of a counter's samples whose labels contain `label` (empty: all samples).
pub fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

type Ws = WebSocketStream<TcpStream>;

pub struct Client {
    pub ws: Ws,
    pub codec: Codec,
    pub hello: evd_protocol::event::Hello,
    inbox: VecDeque<Event>,
    next_ref: i64,
}

/// What a connect attempt answered instead of upgrading.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: String,
}

pub async fn try_connect(
    url: &str,
    token: Option<&str>,
    protocols: &[&str],
    recv_buf: Option<u32>,
) -> Result<(Ws, Option<String>), Refused> {
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    if !protocols.is_empty() {
        req.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(&protocols.join(", ")).unwrap(),
        );
    }
    let host = req.uri().authority().unwrap().as_str().to_owned();
    let addr: SocketAddr = host.parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(n) = recv_buf {
        socket.set_recv_buffer_size(n).unwrap();
    }
    let stream = socket.connect(addr).await.unwrap();
    match tokio_tungstenite::client_async(req, stream).await {
        Ok((ws, resp)) => {
            let proto = resp
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok((ws, proto))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(Refused {
            status: resp.status().as_u16(),
            body: String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        }),
        Err(e) => panic!("connect failed: {e}"),
    }
}

impl Client {
    /// A client on `ws` that has not read `HELLO` yet.
    fn new(ws: Ws, codec: Codec) -> Client {
        Client {
            ws,
            codec,
            hello: evd_protocol::event::Hello {
                conn: String::new(),
                node: String::new(),
                user: String::new(),
                heartbeat_ms: 0,
                server_time: 0,
            },
            inbox: VecDeque::new(),
            next_ref: 1,
        }
    }

    pub async fn connect(url: &str, token: &str, codec: Codec) -> Client {
        Self::connect_with(url, token, codec, None).await
    }

    pub async fn connect_with(
        url: &str,
        token: &str,
        codec: Codec,
        recv_buf: Option<u32>,
    ) -> Client {
        let (ws, proto) = try_connect(url, Some(token), &[codec.subprotocol()], recv_buf)
            .await
            .expect("upgrade");
        assert_eq!(proto.as_deref(), Some(codec.subprotocol()));
        let mut c = Client::new(ws, codec);
        match c.next().await {
            Event::Hello(h) => c.hello = h,
            other => panic!("first frame must be HELLO, got {other:?}"),
        }
        c
    }

    /// Connects and reads `HELLO`, or `None` if the node is gone, refuses, or closes first.
    pub async fn connect_opt(url: &str, token: &str, codec: Codec) -> Option<Client> {
        let mut req = url.into_client_request().ok()?;
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).ok()?,
        );
        req.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(codec.subprotocol()),
        );
        let addr: SocketAddr = req.uri().authority()?.as_str().parse().ok()?;
        let stream = TcpStream::connect(addr).await.ok()?;
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(req, stream))
            .await
            .ok()?
            .ok()?;
        let mut c = Client::new(ws, codec);
        match c.next_or_close(PATIENCE).await {
            Ok(Some(Event::Hello(h))) => c.hello = h,
            _ => return None,
        }
        Some(c)
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.unwrap();
    }

    /// Sends an op with a fresh ref and returns the ref.
    pub async fn send(&mut self, op: Op) -> i64 {
        let r = self.next_ref;
        self.next_ref += 1;
        let bytes = self.codec.encode(&Request::with_ref(r, op)).unwrap();
        let msg = match self.codec {
            Codec::Json => Message::Text(String::from_utf8(bytes.to_vec()).unwrap().into()),
            Codec::MsgPack => Message::Binary(bytes),
        };
        self.send_raw(msg).await;
        r
    }

    /// Events read but not yet consumed.
    pub fn inbox_len(&self) -> usize {
        self.inbox.len()
    }

    /// The next event, reading a frame if none is buffered.
    pub async fn next(&mut self) -> Event {
        loop {
            if let Some(e) = self.inbox.pop_front() {
                return e;
            }
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("an event within the patience limit")
                .expect("stream open")
                .expect("frame ok");
            match msg {
                Message::Text(t) => {
                    assert_eq!(
                        self.codec,
                        Codec::Json,
                        "text frame on a {} connection",
                        self.codec
                    );
                    self.inbox
                        .extend(self.codec.decode_events(t.as_bytes()).unwrap());
                }
                Message::Binary(b) => {
                    assert_eq!(
                        self.codec,
                        Codec::MsgPack,
                        "binary frame on a JSON connection"
                    );
                    self.inbox.extend(self.codec.decode_events(&b).unwrap());
                }
                Message::Close(f) => panic!("closed while waiting for an event: {f:?}"),
                _ => {}
            }
        }
    }

    /// The next event, or the close frame (`Err`) if the server closes first; waits at most
    /// `wait`.
    pub async fn next_or_close(
        &mut self,
        wait: Duration,
    ) -> Result<Option<Event>, Option<CloseFrame>> {
        loop {
            if let Some(e) = self.inbox.pop_front() {
                return Ok(Some(e));
            }
            let msg = match tokio::time::timeout(wait, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(None) | Ok(Some(Err(_))) => return Err(None),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => self
                    .inbox
                    .extend(self.codec.decode_events(t.as_bytes()).unwrap()),
                Message::Binary(b) => self.inbox.extend(self.codec.decode_events(&b).unwrap()),
                Message::Close(f) => return Err(f),
                _ => {}
            }
        }
    }

    /// Puts events back at the front of the inbox, in order.
    pub fn push_front(&mut self, events: Vec<Event>) {
        for e in events.into_iter().rev() {
            self.inbox.push_front(e);
        }
    }

    /// The next event that `pick` accepts; others are skipped.
    pub async fn next_where<T>(&mut self, mut pick: impl FnMut(Event) -> Option<T>) -> T {
        loop {
            if let Some(t) = pick(self.next().await) {
                return t;
            }
        }
    }

    /// The reply to `r` (ROOM_JOINED, ROOM_LEFT, ACK, PONG or ERROR); other events are kept.
    pub async fn reply(&mut self, r: i64) -> Event {
        let mut kept = VecDeque::new();
        let found = loop {
            let e = self.next().await;
            if e.reply_ref() == Some(r) {
                break e;
            }
            kept.push_back(e);
        };
        kept.extend(self.inbox.drain(..));
        self.inbox = kept;
        found
    }

    pub async fn join(&mut self, r: &str, history: u32, recover: Option<StreamPosition>) -> Event {
        let rf = self
            .send(Op::JoinRoom(JoinRoom {
                room: room(r),
                history,
                recover,
            }))
            .await;
        self.reply(rf).await
    }

    pub async fn joined(&mut self, r: &str) -> RoomJoined {
        match self.join(r, 0, None).await {
            Event::RoomJoined(j) => j,
            other => panic!("join {r}: {other:?}"),
        }
    }

    pub async fn leave(&mut self, r: &str) -> Event {
        let rf = self.send(Op::LeaveRoom(LeaveRoom { room: room(r) })).await;
        self.reply(rf).await
    }

    pub async fn say(&mut self, r: &str, text: &str, client_id: Option<&str>) -> Event {
        let rf = self
            .send(Op::SendMessage(SendMessage {
                room: room(r),
                text: text.into(),
                client_id: client_id.map(str::to_owned),
            }))
            .await;
        self.reply(rf).await
    }

    pub async fn ping(&mut self) -> Event {
        let rf = self.send(Op::Ping(Ping {})).await;
        self.reply(rf).await
    }

    /// The next chat message, skipping other events.
    pub async fn message(&mut self) -> ChatMessage {
        self.next_where(|e| match e {
            Event::MessageReceived(m) => Some(m),
            _ => None,
        })
        .await
    }

    /// Reads until the server's close frame; panics on anything but events or close.
    pub async fn close_frame(&mut self) -> Option<CloseFrame> {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("close within the patience limit");
            match msg {
                Some(Ok(Message::Close(f))) => return f,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("error before close: {e}"),
                None => return None,
            }
        }
    }

    /// Collects events until the close frame.
    pub async fn events_until_close(&mut self) -> (Vec<Event>, Option<CloseFrame>) {
        let mut events: Vec<Event> = self.inbox.drain(..).collect();
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("close within the patience limit");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    events.extend(self.codec.decode_events(t.as_bytes()).unwrap())
                }
                Some(Ok(Message::Binary(b))) => {
                    events.extend(self.codec.decode_events(&b).unwrap())
                }
                Some(Ok(Message::Close(f))) => return (events, f),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("error before close: {e}"),
                None => return (events, None),
            }
        }
    }
}
