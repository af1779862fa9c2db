//! `--api`: makes what a poll run needs through the engine's REST API before any client
//! connects. A fresh org (so every run counts its own votes), one event per 500 rooms (the
//! API's cap), and per room a session with a four-option poll.
//!
//! Tokens are minted with the run's secret. The API limits requests per user, so each of the
//! requests in flight goes out as its own organizer (`lt-setup-<n>`), and a `429` is retried
//! after its `Retry-After`.

use crate::plan::{ApiRoom, Provisioned};
use anyhow::{Context, bail};
use evd_protocol::auth::{Claims, JwtSettings, Role, Signer};
use indicatif::ProgressBar;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Requests in flight: enough to hide the round trip, few enough not to be the load.
const IN_FLIGHT: usize = 16;
/// Attempts per request when the API answers `429` or `503`.
const ATTEMPTS: u32 = 20;
/// How long setup tokens live.
const TOKEN_TTL_SECS: u64 = 3600;
/// Sessions the REST API allows in one event.
const SESSIONS_PER_EVENT: usize = evd_protocol::MAX_SESSIONS_PER_EVENT;
/// The options of every poll.
const OPTIONS: [&str; 4] = ["A", "B", "C", "D"];
/// Fixed dates: a vote needs the poll open, whatever the session's times.
const STARTS_AT: &str = "2030-01-01T09:00:00Z";
const ENDS_AT: &str = "2030-01-01T18:00:00Z";

/// A REST client acting for one user of the run's org.
struct Api<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    token: String,
}

impl Api<'_> {
    fn new<'a>(
        http: &'a reqwest::Client,
        base: &'a str,
        signer: &Signer,
        org: &str,
        user: &str,
        role: Role,
    ) -> anyhow::Result<Api<'a>> {
        let claims = Claims::new(
            user,
            org,
            role,
            crate::stamp::now_us() / 1_000_000,
            TOKEN_TTL_SECS,
        );
        let token = signer.sign(&claims).context("mint a setup token")?;
        Ok(Api { http, base, token })
    }

    /// POSTs `body` to `/api/v1{path}` and returns the created object.
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1{path}", self.base);
        for attempt in 1..=ATTEMPTS {
            let resp = self
                .http
                .post(&url)
                .bearer_auth(&self.token)
                .json(body)
                .send()
                .await
                .with_context(|| format!("POST {url}"))?;
            let status = resp.status();
            if (status == 429 || status == 503) && attempt < ATTEMPTS {
                let wait = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse::<f64>().ok())
                    .unwrap_or(1.0);
                tokio::time::sleep(Duration::from_secs_f64(wait.clamp(0.05, 10.0))).await;
                continue;
            }
            let text = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                bail!("POST {url}: {status} {text}");
            }
            return serde_json::from_str(&text).with_context(|| format!("POST {url}: body"));
        }
        bail!("POST {url}: still refused after {ATTEMPTS} attempts")
    }
}

fn id(v: &Value, what: &str) -> anyhow::Result<String> {
    v["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{what} without an id: {v}"))
}

/// Makes a session and its poll; the session's room and the poll's ids.
async fn room(api: &Api<'_>, event: &str, r: usize, capacity: usize) -> anyhow::Result<ApiRoom> {
    let session = api
        .post(
            &format!("/events/{event}/sessions"),
            &json!({
                "title": format!("load test room {r}"),
                "capacity": capacity.clamp(1, 1_000_000),
                "starts_at": STARTS_AT,
                "ends_at": ENDS_AT,
            }),
        )
        .await?;
    let session = id(&session, "session")?;
    let poll = api
        .post(
            &format!("/sessions/{session}/polls"),
            &json!({ "question": format!("room {r}: which one?"), "options": OPTIONS }),
        )
        .await?;
    let options = poll["options"]
        .as_array()
        .map(|o| o.iter().filter_map(|o| o["id"].as_str().map(str::to_owned)))
        .map(Iterator::collect::<Vec<_>>)
        .unwrap_or_default();
    if options.len() != OPTIONS.len() {
        bail!("poll without its {} options: {poll}", OPTIONS.len());
    }
    Ok(ApiRoom {
        name: format!("session:{session}"),
        poll: id(&poll, "poll")?,
        options,
    })
}

/// Creates the org, the event and `rooms` sessions with a poll each, `capacity` seats per
/// session, and makes the `publishers` publishers organizers of the org; `bar` counts the rooms
/// made.
pub(crate) async fn provision(
    base: &str,
    secret: Option<String>,
    rooms: usize,
    capacity: usize,
    publishers: usize,
    bar: &ProgressBar,
) -> anyhow::Result<Provisioned> {
    let base = base.trim_end_matches('/');
    let signer = JwtSettings {
        secret,
        ..Default::default()
    }
    .signer()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let org = format!(
        "lt-{}-{}",
        std::process::id(),
        crate::stamp::now_us() / 1_000_000
    );
    let t0 = Instant::now();
    let owner = Api::new(&http, base, &signer, &org, "lt-owner", Role::Owner)?;
    owner
        .post("/orgs", &json!({ "id": org, "name": "evd-loadtest" }))
        .await
        .context("create the org (is --api the engine's REST base URL?)")?;
    // The setup users and the publishers act as organizers, so they are made members: a
    // token's role is capped by its user's membership of an org that exists.
    let organizers = (0..IN_FLIGHT.min(rooms))
        .map(setup_user)
        .chain((0..publishers).map(crate::plan::publisher_user));
    for user in organizers {
        owner
            .post(
                &format!("/orgs/{org}/members"),
                &json!({ "user_id": user, "role": "organizer" }),
            )
            .await
            .with_context(|| format!("make {user} an organizer"))?;
    }
    // The API caps sessions per event, so the rooms are spread over as many events as needed.
    let mut events = Vec::new();
    for e in 0..rooms.div_ceil(SESSIONS_PER_EVENT).max(1) {
        let event = owner
            .post(
                "/events",
                &json!({
                    "name": format!("evd-loadtest {e}"), "description": "made by evd-loadtest --api",
                    "status": "published", "starts_at": STARTS_AT, "ends_at": ENDS_AT,
                }),
            )
            .await?;
        events.push(id(&event, "event")?);
    }

    let next = AtomicUsize::new(0);
    let made: Mutex<Vec<Option<ApiRoom>>> = Mutex::new(vec![None; rooms]);
    let slots = (0..IN_FLIGHT.min(rooms)).map(|n| {
        let (http, signer, org, events, next, made) = (&http, &signer, &org, &events, &next, &made);
        async move {
            let api = Api::new(http, base, signer, org, &setup_user(n), Role::Organizer)?;
            loop {
                let r = next.fetch_add(1, Ordering::Relaxed);
                if r >= rooms {
                    return Ok::<_, anyhow::Error>(());
                }
                let made_room = room(&api, &events[r / SESSIONS_PER_EVENT], r, capacity)
                    .await
                    .with_context(|| format!("room {r}"))?;
                // No await while the lock is held.
                made.lock().expect("no panic while held")[r] = Some(made_room);
                bar.inc(1);
            }
        }
    });
    futures_util::future::try_join_all(slots).await?;
    let rooms: Vec<ApiRoom> = made
        .into_inner()
        .expect("no panic while held")
        .into_iter()
        .collect::<Option<_>>()
        .context("a room was not made")?;
    bar.finish_with_message(format!(
        "org {org}: {} sessions with a poll in {:.1} s",
        rooms.len(),
        t0.elapsed().as_secs_f64()
    ));
    Ok(Provisioned { org, rooms })
}

/// The user id of the `n`th setup organizer.
fn setup_user(n: usize) -> String {
    format!("lt-setup-{n}")
}
