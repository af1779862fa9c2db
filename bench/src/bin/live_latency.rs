//! `live-latency`: how long a durable change takes to reach screens, measured end to end
//! against a running `evd serve` with its REST API.
//!
//! With `--clients` attendees connected to one session room it measures, per delivery:
//! - REST poll create → `POLL_CREATED` received by every member;
//! - ticket cancel → `WAITLIST_OFFER` received by the next person in line.
//!
//! Each sample is the time from just before the REST request to the event's arrival.

use anyhow::{Context, bail};
use clap::Parser;
use evd_protocol::auth::{Claims, JwtSettings, Role, Signer};
use evd_protocol::event::Event;
use evd_protocol::op::{JoinRoom, OfferAnswer, Op};
use evd_protocol::{Codec, Request, RoomName};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(about = "Latency from a REST write to the live event on every screen")]
struct Args {
    /// The engine's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The HS256 secret the server verifies tokens with.
    #[arg(long, env = "EVD_JWT_SECRET")]
    secret: String,
    /// Attendees connected to the session room.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Polls to create (each reaches every client).
    #[arg(long, default_value_t = 50)]
    polls: usize,
    /// Offers to make (each reaches one client).
    #[arg(long, default_value_t = 100)]
    offers: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// How long any one event may take before the run is declared failed.
const DEADLINE: Duration = Duration::from_secs(10);

struct Api {
    http: reqwest::Client,
    base: String,
    signer: Signer,
    org: String,
}

impl Api {
    fn token(&self, user: &str, role: Role, rooms: Option<Vec<String>>) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut c = Claims::new(user, &self.org, role, now, 3600);
        c.rooms = rooms;
        self.signer.sign(&c).expect("sign")
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}/api/v1{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!("POST {path}: {status} {v}");
        }
        Ok(v)
    }
}

async fn connect(
    url: &str,
    token: &str,
) -> anyhow::Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    let ws_url = format!("{}/ws?token={token}", url.replacen("http", "ws", 1));
    let (ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .context("connect")?;
    Ok(ws)
}

fn op(r: i64, op: Op) -> Message {
    let bytes = Codec::Json
        .encode(&Request::with_ref(r, op))
        .expect("encode");
    Message::Text(String::from_utf8(bytes.to_vec()).expect("utf8").into())
}

/// What a client saw, with when.
#[derive(Debug)]
enum Seen {
    Poll(String, Instant),
    Offer(String, String, Instant),
    Ticket(String, String),
}

fn spawn_reader(
    mut rx: futures_util::stream::SplitStream<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    >,
    tx: mpsc::Sender<Seen>,
    who: String,
) {
    tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            let at = Instant::now();
            let Message::Text(t) = msg else { continue };
            let Ok(events) = Codec::Json.decode_events(t.as_bytes()) else {
                continue;
            };
            for e in events {
                let seen = match e {
                    Event::PollCreated(p) => Seen::Poll(p.poll.id, at),
                    Event::WaitlistOffer(o) => Seen::Offer(who.clone(), o.offer, at),
                    Event::Ack(a) if a.ticket.is_some() => {
                        Seen::Ticket(who.clone(), a.ticket.unwrap_or_default())
                    }
                    _ => continue,
                };
                if tx.send(seen).await.is_err() {
                    return;
                }
            }
        }
    });
}

fn summary(h: &Histogram<u64>) -> Value {
    let ms = |v: u64| v as f64 / 1000.0;
    json!({
        "samples": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let signer = JwtSettings {
        secret: Some(args.secret.clone()),
        ..Default::default()
    }
    .signer()?;
    let org = format!("bench-{}", std::process::id());
    let api = Api {
        http: reqwest::Client::new(),
        base: args.url.trim_end_matches('/').to_owned(),
        signer,
        org: org.clone(),
    };
    let owner = api.token("owner", Role::Owner, None);
    api.post(&owner, "/orgs", json!({"id": org, "name": "bench"}))
        .await?;
    let event = api
        .post(
            &owner,
            "/events",
            json!({"name": "Bench", "description": "", "status": "published",
            "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-02T09:00:00Z"}),
        )
        .await?;
    let event = event["id"].as_str().context("event id")?.to_owned();
    let session = |cap: i64| json!({"title": "S", "capacity": cap, "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-01T10:00:00Z"});
    let hall = api
        .post(
            &owner,
            &format!("/events/{event}/sessions"),
            session(100_000),
        )
        .await?;
    let hall = hall["id"].as_str().context("session id")?.to_owned();
    let small = api
        .post(&owner, &format!("/events/{event}/sessions"), session(1))
        .await?;
    let small = small["id"].as_str().context("session id")?.to_owned();
    let room = format!("session:{hall}");

    eprintln!("connecting {} clients to {room} …", args.clients);
    let (tx, mut rx) = mpsc::channel::<Seen>(args.clients * 4 + 1024);
    let mut keep = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let token = api.token(&format!("u{i}"), Role::Attendee, Some(vec![room.clone()]));
        let ws = connect(&args.url, &token).await?;
        let (mut sink, stream) = ws.split();
        sink.send(op(
            1,
            Op::JoinRoom(JoinRoom {
                room: RoomName::parse(&room)?,
                history: 0,
                recover: None,
            }),
        ))
        .await?;
        spawn_reader(stream, tx.clone(), format!("u{i}"));
        keep.push(sink);
    }

    // REST poll create → POLL_CREATED on every screen.
    let mut polls = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for n in 0..args.polls {
        let t0 = Instant::now();
        let p = api
            .post(
                &owner,
                &format!("/sessions/{hall}/polls"),
                json!({"question": format!("q{n}"), "options": ["a", "b"]}),
            )
            .await?;
        let id = p["id"].as_str().context("poll id")?.to_owned();
        let mut got = 0;
        while got < args.clients {
            match tokio::time::timeout(DEADLINE, rx.recv()).await {
                Ok(Some(Seen::Poll(pid, at))) if pid == id => {
                    polls.record(at.duration_since(t0).as_micros() as u64)?;
                    got += 1;
                }
                Ok(Some(_)) => {}
                _ => bail!(
                    "poll {n}: only {got} of {} clients got POLL_CREATED within {DEADLINE:?}",
                    args.clients
                ),
            }
        }
        eprint!("\rpolls {}/{}", n + 1, args.polls);
    }
    eprintln!();

    // Ticket cancel → WAITLIST_OFFER to the next in line. Two users trade the single seat.
    let mut offers = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let users = ["alice", "bob"];
    let tokens: Vec<String> = users
        .iter()
        .map(|u| api.token(u, Role::Attendee, None))
        .collect();
    let mut socks = Vec::new();
    for (u, t) in users.iter().zip(&tokens) {
        let (sink, stream) = connect(&args.url, t).await?.split();
        spawn_reader(stream, tx.clone(), (*u).to_string());
        socks.push(sink);
    }
    let first = api
        .post(&tokens[0], &format!("/sessions/{small}/tickets"), json!({}))
        .await?;
    let mut ticket = first["id"].as_str().context("ticket id")?.to_owned();
    api.post(
        &tokens[1],
        &format!("/sessions/{small}/waitlist"),
        json!({}),
    )
    .await?;
    let (mut holder, mut waiter) = (0usize, 1usize);
    for n in 0..args.offers {
        let t0 = Instant::now();
        api.post(
            &tokens[holder],
            &format!("/tickets/{ticket}/cancel"),
            json!({}),
        )
        .await?;
        let offer = loop {
            match tokio::time::timeout(DEADLINE, rx.recv()).await {
                Ok(Some(Seen::Offer(who, offer, at))) if who == users[waiter] => {
                    offers.record(at.duration_since(t0).as_micros() as u64)?;
                    break offer;
                }
                Ok(Some(_)) => {}
                _ => bail!("offer {n}: no WAITLIST_OFFER within {DEADLINE:?}"),
            }
        };
        // The waiter takes the seat over the WebSocket; the old holder queues up again.
        socks[waiter]
            .send(op(
                100 + n as i64,
                Op::AcceptOffer(OfferAnswer {
                    offer: offer.clone(),
                }),
            ))
            .await?;
        ticket = loop {
            match tokio::time::timeout(DEADLINE, rx.recv()).await {
                Ok(Some(Seen::Ticket(who, t))) if who == users[waiter] => break t,
                Ok(Some(_)) => {}
                _ => bail!("offer {n}: the accept was not acknowledged within {DEADLINE:?}"),
            }
        };
        api.post(
            &tokens[holder],
            &format!("/sessions/{small}/waitlist"),
            json!({}),
        )
        .await?;
        std::mem::swap(&mut holder, &mut waiter);
        eprint!("\roffers {}/{}", n + 1, args.offers);
    }
    eprintln!();

    let report = json!({
        "clients": args.clients,
        "poll_created": summary(&polls),
        "waitlist_offer": summary(&offers),
    });
    if args.json {
        #[allow(clippy::print_stdout)]
        {
            println!("{report}");
        }
    } else {
        #[allow(clippy::print_stdout)]
        for (name, key) in [
            ("REST poll create → POLL_CREATED", "poll_created"),
            ("ticket cancel → WAITLIST_OFFER", "waitlist_offer"),
        ] {
            let r = &report[key];
            println!(
                "| {name} | {} | {} | {} | {} | {} |",
                r["samples"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"]
            );
        }
    }
    drop(keep);
    Ok(())
}
