//! `/events`: CRUD with soft delete, cursor pages, filters and search; the agenda.

use super::{page_limit, visible_event};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problems};
use crate::extract::{Json, Path, Query};
use crate::model::{Event, EventStatus, Page, Session, rfc3339};
use crate::state::AppState;
use crate::store::{EventPatch, EventQuery, NewEvent, NewSession};
use crate::validate::{Check, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, search_words};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use tracing::instrument;
use utoipa::IntoParams;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/events", get(list_events).post(create_event))
        .route(
            "/events/{event_id}",
            get(get_event).patch(update_event).delete(delete_event),
        )
        .route(
            "/events/{event_id}/sessions",
            get(list_sessions).post(create_session),
        )
}

/// Filters of the event list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventListParams {
    /// Only events with this status (attendees always get published ones).
    status: Option<EventStatus>,
    /// Only events that have not ended before this time (RFC 3339).
    #[param(format = DateTime)]
    from: Option<String>,
    /// Only events that start before this time (RFC 3339).
    #[param(format = DateTime)]
    to: Option<String>,
    /// Words that must all appear in the name or description.
    q: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

fn time_param(field: &'static str, value: Option<&str>) -> ApiResult<Option<i64>> {
    value
        .map(|v| rfc3339::parse(v).map_err(|m| ApiError::field(field, m)))
        .transpose()
}

fn check_event(name: Option<&str>, description: Option<&str>) -> ApiResult<()> {
    let mut check = Check::default();
    if let Some(name) = name {
        check.text("name", name, MAX_NAME_CHARS);
    }
    if let Some(description) = description {
        check.text_up_to("description", description, MAX_DESCRIPTION_CHARS);
    }
    check.finish()
}

/// Events by start time. Attendees see published events only.
#[utoipa::path(get, path = "/events", tag = "events", params(EventListParams),
    responses((status = 200, body = Page<Event>), Problems))]
#[instrument(skip_all)]
pub(crate) async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<EventListParams>,
) -> ApiResult<axum::Json<Page<Event>>> {
    let status = if caller.is_staff() {
        params.status
    } else {
        match params.status {
            None | Some(EventStatus::Published) => Some(EventStatus::Published),
            Some(_) => {
                return Ok(axum::Json(Page {
                    items: vec![],
                    next_cursor: None,
                }));
            }
        }
    };
    let query = EventQuery {
        status,
        from: time_param("from", params.from.as_deref())?,
        to: time_param("to", params.to.as_deref())?,
        words: params
            .q
            .as_deref()
            .map(search_words)
            .transpose()?
            .unwrap_or_default(),
        cursor: params.cursor,
        limit: page_limit(params.limit)?,
    };
    Ok(axum::Json(
        state.store.list_events(caller.org(), &query).await?,
    ))
}

/// Creates an event (organizers and owners).
#[utoipa::path(post, path = "/events", tag = "events", request_body = NewEvent,
    responses((status = 201, body = Event), Problems))]
#[instrument(skip_all)]
pub(crate) async fn create_event(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewEvent>,
) -> ApiResult<(StatusCode, axum::Json<Event>)> {
    caller.require_staff()?;
    check_event(Some(&body.name), Some(&body.description))?;
    let event = state.store.create_event(caller.org(), &body).await?;
    Ok((StatusCode::CREATED, axum::Json(event)))
}

/// One event.
#[utoipa::path(get, path = "/events/{event_id}", tag = "events",
    params(("event_id" = String, Path, description = "The event id")),
    responses((status = 200, body = Event), Problems))]
#[instrument(skip_all)]
pub(crate) async fn get_event(
    State(state): State<AppState>,
    caller: Caller,
    Path(event_id): Path<String>,
) -> ApiResult<axum::Json<Event>> {
    Ok(axum::Json(visible_event(&state, &caller, &event_id).await?))
}

/// Changes an event (organizers and owners).
#[utoipa::path(patch, path = "/events/{event_id}", tag = "events", request_body = EventPatch,
    params(("event_id" = String, Path, description = "The event id")),
    responses((status = 200, body = Event), Problems))]
#[instrument(skip_all)]
pub(crate) async fn update_event(
    State(state): State<AppState>,
    caller: Caller,
    Path(event_id): Path<String>,
    Json(body): Json<EventPatch>,
) -> ApiResult<axum::Json<Event>> {
    caller.require_staff()?;
    check_event(body.name.as_deref(), body.description.as_deref())?;
    let event = state
        .store
        .update_event(caller.org(), &event_id, &body)
        .await
        .map_err(ApiError::store("event"))?;
    Ok(axum::Json(event))
}

/// Deletes an event and its sessions (soft: they stay on record with `deleted_at`).
#[utoipa::path(delete, path = "/events/{event_id}", tag = "events",
    params(("event_id" = String, Path, description = "The event id")),
    responses((status = 204, description = "Deleted"), Problems))]
#[instrument(skip_all)]
pub(crate) async fn delete_event(
    State(state): State<AppState>,
    caller: Caller,
    Path(event_id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_staff()?;
    state
        .store
        .delete_event(caller.org(), &event_id)
        .await
        .map_err(ApiError::store("event"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The agenda: the event's sessions by start time.
#[utoipa::path(get, path = "/events/{event_id}/sessions", tag = "sessions",
    params(("event_id" = String, Path, description = "The event id")),
    responses((status = 200, body = Vec<Session>), Problems))]
#[instrument(skip_all)]
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    caller: Caller,
    Path(event_id): Path<String>,
) -> ApiResult<axum::Json<Vec<Session>>> {
    visible_event(&state, &caller, &event_id).await?;
    Ok(axum::Json(
        state.store.list_sessions(caller.org(), &event_id).await?,
    ))
}

/// Adds a session to the event (organizers and owners).
#[utoipa::path(post, path = "/events/{event_id}/sessions", tag = "sessions",
    request_body = NewSession,
    params(("event_id" = String, Path, description = "The event id")),
    responses((status = 201, body = Session), Problems))]
#[instrument(skip_all)]
pub(crate) async fn create_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(event_id): Path<String>,
    Json(body): Json<NewSession>,
) -> ApiResult<(StatusCode, axum::Json<Session>)> {
    caller.require_staff()?;
    Check::default()
        .text("title", &body.title, MAX_NAME_CHARS)
        .capacity("capacity", body.capacity)
        .finish()?;
    let session = state
        .store
        .create_session(caller.org(), &event_id, &body)
        .await
        .map_err(ApiError::store("event"))?;
    Ok((StatusCode::CREATED, axum::Json(session)))
}
