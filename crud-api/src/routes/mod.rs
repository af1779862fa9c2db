//! The REST routes under `/api/v1`, one module per resource, merged in [`router`].

pub(crate) mod chat;
pub(crate) mod events;
pub(crate) mod orgs;
pub(crate) mod polls;
pub(crate) mod questions;
pub(crate) mod sessions;
pub(crate) mod tickets;
pub(crate) mod waitlist;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::model::{Event, EventStatus, Session};
use crate::state::AppState;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

/// Items per page when the client does not say.
pub(crate) const DEFAULT_PAGE_SIZE: i64 = 50;
/// Most items per page: bounds the work and the answer of one request.
pub(crate) const MAX_PAGE_SIZE: i64 = 200;

/// Every route, without the `/api/v1` prefix.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .merge(orgs::router())
        .merge(events::router())
        .merge(sessions::router())
        .merge(tickets::router())
        .merge(waitlist::router())
        .merge(polls::router())
        .merge(questions::router())
        .merge(chat::router())
}

/// `cursor` and `limit`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// The page size asked for, within bounds.
pub(crate) fn page_limit(limit: Option<i64>) -> ApiResult<i64> {
    let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            format!("must be between 1 and {MAX_PAGE_SIZE}"),
        ));
    }
    Ok(limit)
}

/// An event the caller may see: staff see every event of the org, attendees published ones.
pub(crate) async fn visible_event(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Event> {
    let event = state
        .store
        .get_event(caller.org(), id)
        .await
        .map_err(ApiError::store("event"))?;
    if !caller.is_staff() && event.status != EventStatus::Published {
        return Err(ApiError::NotFound("event"));
    }
    Ok(event)
}

/// A session the caller may see: one of an event they may see.
pub(crate) async fn visible_session(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<Session> {
    let session = state
        .store
        .get_session(caller.org(), id)
        .await
        .map_err(ApiError::store("session"))?;
    if !caller.is_staff() {
        match visible_event(state, caller, &session.event_id).await {
            Ok(_) => {}
            Err(ApiError::NotFound(_)) => return Err(ApiError::NotFound("session")),
            Err(e) => return Err(e),
        }
    }
    Ok(session)
}

/// A created resource: 201, or 200 with `Idempotent-Replayed: true` when an
/// `Idempotency-Key` replayed an earlier answer.
pub(crate) fn created<T: serde::Serialize>(value: T, created: bool) -> Response {
    if created {
        (StatusCode::CREATED, axum::Json(value)).into_response()
    } else {
        (
            StatusCode::OK,
            [(
                HeaderName::from_static("idempotent-replayed"),
                HeaderValue::from_static("true"),
            )],
            axum::Json(value),
        )
            .into_response()
    }
}
