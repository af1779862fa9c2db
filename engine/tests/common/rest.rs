//! REST calls and seed data for end-to-end tests.
#![allow(dead_code, unreachable_pub)]

use super::TestServer;
use evd_protocol::auth::{Claims, Role, Signer, Tier};
use serde_json::{Value, json};

/// An `evd` running elsewhere (a child process), reached over HTTP.
pub struct Remote {
    pub addr: std::net::SocketAddr,
    pub signer: Signer,
}

impl Rest for Remote {
    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn signer(&self) -> Signer {
        self.signer.clone()
    }
}

impl Rest for TestServer {
    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn signer(&self) -> Signer {
        self.node.settings.api.jwt.signer().unwrap()
    }
}

/// REST calls and seed data against a server with the API mounted.
#[allow(async_fn_in_trait)]
pub trait Rest {
    fn base(&self) -> String;
    fn signer(&self) -> Signer;

    fn token_with(
        &self,
        user: &str,
        org: &str,
        role: Role,
        tier: Option<Tier>,
        rooms: &[&str],
    ) -> String {
        let mut c = Claims::new(user, org, role, super::now(), 3600);
        c.tier = tier;
        if !rooms.is_empty() {
            c.rooms = Some(rooms.iter().map(|r| r.to_string()).collect());
        }
        self.signer().sign(&c).unwrap()
    }

    async fn rest(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}/api/v1{path}", self.base());
        let mut req = reqwest::Client::new()
            .request(method, url)
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("REST call");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.rest(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.rest(reqwest::Method::GET, path, token, None).await
    }

    /// An org owned by `owner`, a published event and one session of `capacity` seats.
    /// Returns (owner token, event id, session id).
    async fn seed(&self, org: &str, owner: &str, capacity: i64) -> (String, String, String) {
        let token = self.token_with(owner, org, Role::Owner, None, &[]);
        let (status, body) = self
            .post("/orgs", &token, json!({"id": org, "name": org}))
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, event) = self
            .post(
                "/events",
                &token,
                json!({"name": "Launch week", "description": "talks", "status": "published",
                       "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-03T18:00:00Z"}),
            )
            .await;
        assert_eq!(status, 201, "{event}");
        let event_id = event["id"].as_str().unwrap().to_owned();
        let session_id = self.add_session(&token, &event_id, capacity).await;
        (token, event_id, session_id)
    }

    async fn add_session(&self, token: &str, event: &str, capacity: i64) -> String {
        let (status, session) = self
            .post(
                &format!("/events/{event}/sessions"),
                token,
                json!({"title": "Keynote", "capacity": capacity,
                       "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-01T10:00:00Z"}),
            )
            .await;
        assert_eq!(status, 201, "{session}");
        session["id"].as_str().unwrap().to_owned()
    }

    /// Issues a ticket to the token's holder; returns its id.
    async fn buy(&self, token: &str, session: &str) -> String {
        let (status, t) = self
            .post(&format!("/sessions/{session}/tickets"), token, json!({}))
            .await;
        assert_eq!(status, 201, "{t}");
        t["id"].as_str().unwrap().to_owned()
    }

    /// Creates a poll; returns (poll id, option ids).
    async fn create_poll(
        &self,
        token: &str,
        session: &str,
        options: &[&str],
    ) -> (String, Vec<String>) {
        let (status, p) = self
            .post(
                &format!("/sessions/{session}/polls"),
                token,
                json!({"question": "Which?", "options": options}),
            )
            .await;
        assert_eq!(status, 201, "{p}");
        let ids = p["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect();
        (p["id"].as_str().unwrap().to_owned(), ids)
    }
}
