//! Development sign-in: `POST /dev/token` mints a token for whoever asks, signed as `evd token`
//! signs ([`JwtSettings::mint`]). The server mounts it only while the built-in development
//! secret is in use, which is public anyway; with a configured key the route does not exist.
//!
//! The body is `{"user", "role", "org"?, "tier"?, "rooms"?, "ttl_secs"?}`; the answer
//! `{"token", "user", "org", "role", "expires_at"}` (unix seconds). Bad input is a 400
//! `{"error": "bad_request", "field", "message"}` naming the field.
//!
//! With a store, the sign-in also makes the token true there: it creates the org if it has no
//! row (every tenant row refers to its org) and makes the user a member with the role asked for
//! (a token's role is capped by the member's).

use crate::clock::unix_ms;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use evd_api::store::Store;
use evd_protocol::RoomName;
use evd_protocol::auth::{Claims, JwtSettings, Role, Tier};
use evd_protocol::room::{IdError, MAX_ID_LEN, validate_id};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Where the route is mounted.
pub const PATH: &str = "/dev/token";

/// The org of a token that names none.
pub const DEFAULT_ORG: &str = "demo";

/// Lifetime of a token that asks for none, seconds: an hour of trying things out.
pub const DEFAULT_TTL_SECS: u64 = 3600;

/// Longest lifetime a token may ask for, seconds: one event day.
pub const MAX_TTL_SECS: u64 = 86_400;

/// Most rooms a token's `rooms` grant may list: as many as one connection may join.
pub const MAX_ROOMS: usize = 100;

/// Largest request body: [`MAX_ROOMS`] room names of the longest id fit with room to spare.
pub const MAX_BODY_BYTES: usize = 32 * 1024;

/// The fields a request may carry.
const FIELDS: [&str; 6] = ["user", "role", "org", "tier", "rooms", "ttl_secs"];

/// The route, signing with `jwt` and enrolling in `store` when given. Mount it only when
/// `jwt.uses_dev_secret()`.
pub fn router(jwt: JwtSettings, store: Option<Arc<dyn Store>>) -> Router {
    let jwt = Arc::new(jwt);
    Router::new()
        .route(
            PATH,
            post(
                move |headers: HeaderMap, body: Result<Bytes, BytesRejection>| {
                    let (jwt, store) = (Arc::clone(&jwt), store.clone());
                    async move {
                        match mint(&jwt, &headers, body) {
                            Ok((request, answer)) => match store {
                                Some(store) => enroll(&*store, &request, answer).await,
                                None => answer,
                            },
                            Err(refused) => *refused,
                        }
                    }
                },
            ),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// What a request asks for, checked.
#[derive(Debug, PartialEq)]
struct Request {
    user: String,
    org: String,
    role: Role,
    tier: Option<Tier>,
    rooms: Option<Vec<String>>,
    ttl_secs: u64,
}

/// A field of the request that is missing or wrong.
#[derive(Debug, PartialEq)]
struct BadField {
    field: String,
    message: String,
}

impl BadField {
    fn new(field: impl Into<String>, message: impl Into<String>) -> BadField {
        BadField {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Creates the org and the membership the token names, then answers with it.
async fn enroll(store: &dyn Store, request: &Request, answer: Response) -> Response {
    match store
        .enroll(&request.org, &request.user, request.role)
        .await
    {
        Ok(()) => answer,
        Err(e) => {
            tracing::error!(error = %e, "development sign-in could not enroll the user");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
                "the org or membership could not be stored",
            )
        }
    }
}

/// The signed request and its answer, or the refusal.
fn mint(
    jwt: &JwtSettings,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Request, Response), Box<Response>> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Box::new(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
            "send the body as `Content-Type: application/json`",
        )));
    }
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(Box::new(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                None,
                &format!("the body is over {MAX_BODY_BYTES} bytes"),
            )));
        }
        Err(e) => {
            return Err(Box::new(error(
                e.status(),
                "bad_request",
                None,
                &e.body_text(),
            )));
        }
    };
    let request = match parse(&body) {
        Ok(r) => r,
        Err(bad) => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                Some(&bad.field),
                &bad.message,
            )));
        }
    };
    let now = u64::try_from(unix_ms() / 1000).unwrap_or(0);
    let mut claims = Claims::new(
        &request.user,
        &request.org,
        request.role,
        now,
        request.ttl_secs,
    );
    claims.tier = request.tier;
    claims.rooms = request.rooms.clone();
    let expires_at = claims.exp;
    match jwt.mint(claims) {
        Ok(token) => {
            let body = json!({
                "token": token,
                "user": request.user,
                "org": request.org,
                "role": request.role.as_str(),
                "expires_at": expires_at,
            });
            let answer = (
                [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
                axum::Json(body),
            )
                .into_response();
            Ok((request, answer))
        }
        Err(e) => {
            tracing::error!(error = %e, "development sign-in could not mint a token");
            Err(Box::new(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
                "the token could not be signed",
            )))
        }
    }
}

fn error(status: StatusCode, code: &str, field: Option<&str>, message: &str) -> Response {
    let mut body = json!({ "error": code, "message": message });
    if let Some(f) = field {
        body["field"] = Value::from(f);
    }
    (status, axum::Json(body)).into_response()
}

fn parse(body: &[u8]) -> Result<Request, BadField> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| BadField::new("body", format!("the body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(BadField::new("body", "the body must be a JSON object"));
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(BadField::new(
            unknown.as_str(),
            format!(
                "unknown field `{unknown}`: use {}",
                FIELDS.map(|f| format!("`{f}`")).join(", ")
            ),
        ));
    }
    let user = id(&fields, "user")?.ok_or_else(|| BadField::new("user", "`user` is required"))?;
    let org = id(&fields, "org")?.unwrap_or_else(|| DEFAULT_ORG.to_owned());
    let role = string(&fields, "role")?
        .ok_or_else(|| {
            BadField::new(
                "role",
                "`role` is required: `attendee`, `organizer` or `owner`",
            )
        })
        .and_then(|r| {
            Role::parse(r).ok_or_else(|| {
                BadField::new(
                    "role",
                    format!("unknown role `{r}`: use `attendee`, `organizer` or `owner`"),
                )
            })
        })?;
    let tier = string(&fields, "tier")?
        .map(|t| {
            Tier::parse(t).ok_or_else(|| {
                BadField::new(
                    "tier",
                    format!("unknown tier `{t}`: use `vip` or `standard`"),
                )
            })
        })
        .transpose()?;
    Ok(Request {
        user,
        org,
        role,
        tier,
        rooms: rooms(&fields)?,
        ttl_secs: ttl_secs(&fields)?,
    })
}

/// The string at `field`; `None` when it is absent or null.
fn string<'a>(fields: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, BadField> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(BadField::new(field, format!("`{field}` must be a string"))),
    }
}

/// The id at `field`, checked as the protocol checks a token's `sub` and `org`.
fn id(fields: &Map<String, Value>, field: &str) -> Result<Option<String>, BadField> {
    let Some(s) = string(fields, field)? else {
        return Ok(None);
    };
    validate_id(s).map_err(|e| {
        let why = match e {
            IdError::Empty => format!("`{field}` is empty"),
            IdError::TooLong => format!("`{field}` is longer than {MAX_ID_LEN} characters"),
            IdError::BadChar => format!(
                "`{field}` may hold only printable ASCII characters other than `{{` and `}}` \
                 (no spaces)"
            ),
        };
        BadField::new(field, why)
    })?;
    Ok(Some(s.to_owned()))
}

fn rooms(fields: &Map<String, Value>) -> Result<Option<Vec<String>>, BadField> {
    let list = match fields.get("rooms") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(BadField::new(
                "rooms",
                "`rooms` must be a list of room names such as `session:S1`",
            ));
        }
    };
    if list.len() > MAX_ROOMS {
        return Err(BadField::new(
            "rooms",
            format!("`rooms` lists more than {MAX_ROOMS} rooms"),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, room)| {
            let field = format!("rooms[{i}]");
            let name = room
                .as_str()
                .ok_or_else(|| BadField::new(&field, format!("`{field}` must be a string")))?;
            RoomName::parse(name)
                .map(|r| r.as_str().to_owned())
                .map_err(|e| BadField::new(&field, format!("`{field}` (`{name}`): {e}")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn ttl_secs(fields: &Map<String, Value>) -> Result<u64, BadField> {
    let bad = || {
        BadField::new(
            "ttl_secs",
            format!("`ttl_secs` must be a whole number of seconds from 1 to {MAX_TTL_SECS}"),
        )
    };
    match fields.get("ttl_secs") {
        None | Some(Value::Null) => Ok(DEFAULT_TTL_SECS),
        Some(v) => v
            .as_u64()
            .filter(|t| (1..=MAX_TTL_SECS).contains(t))
            .ok_or_else(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: Value) -> String {
        parse(body.to_string().as_bytes()).unwrap_err().field
    }

    #[test]
    fn a_request_is_read_with_its_defaults() {
        let r = parse(br#"{"user":"u1","role":"organizer"}"#).unwrap();
        assert_eq!(
            r,
            Request {
                user: "u1".into(),
                org: DEFAULT_ORG.into(),
                role: Role::Organizer,
                tier: None,
                rooms: None,
                ttl_secs: DEFAULT_TTL_SECS,
            }
        );
        let r = parse(
            br#"{"user":"u1","role":"attendee","org":"o9","tier":"vip","rooms":["session:S1"],"ttl_secs":60}"#,
        )
        .unwrap();
        assert_eq!(r.org, "o9");
        assert_eq!(r.tier, Some(Tier::Vip));
        assert_eq!(r.rooms, Some(vec!["session:S1".to_owned()]));
        assert_eq!(r.ttl_secs, 60);
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = json!({"user": "u1", "role": "attendee"});
        let with = |k: &str, v: Value| {
            let mut b = ok.clone();
            b[k] = v;
            b
        };
        assert_eq!(field_of(json!({"role": "attendee"})), "user");
        assert_eq!(field_of(with("user", json!(""))), "user");
        assert_eq!(field_of(with("user", json!("a{b}"))), "user");
        assert_eq!(field_of(with("user", json!("x".repeat(129)))), "user");
        assert_eq!(field_of(with("user", json!(7))), "user");
        assert_eq!(field_of(json!({"user": "u1"})), "role");
        assert_eq!(field_of(with("role", json!("admin"))), "role");
        assert_eq!(field_of(with("org", json!("has space"))), "org");
        assert_eq!(field_of(with("tier", json!("gold"))), "tier");
        assert_eq!(field_of(with("rooms", json!("session:S1"))), "rooms");
        assert_eq!(
            field_of(with("rooms", json!(["session:S1", "lobby"]))),
            "rooms[1]"
        );
        let many: Vec<String> = (0..=MAX_ROOMS).map(|i| format!("event:E{i}")).collect();
        assert_eq!(field_of(with("rooms", json!(many))), "rooms");
        assert_eq!(field_of(with("ttl_secs", json!(0))), "ttl_secs");
        assert_eq!(
            field_of(with("ttl_secs", json!(MAX_TTL_SECS + 1))),
            "ttl_secs"
        );
        assert_eq!(field_of(with("ttl_secs", json!(1.5))), "ttl_secs");
        assert_eq!(field_of(with("admin", json!(true))), "admin");
        assert_eq!(field_of(json!(["u1"])), "body");
        assert_eq!(parse(b"{").unwrap_err().field, "body");
    }
}
