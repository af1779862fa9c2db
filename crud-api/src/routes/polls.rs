//! Polls of a session: create with options, list, close, results.

use super::visible_session;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problems};
use crate::extract::{Json, Path};
use crate::model::{Poll, PollResults};
use crate::state::AppState;
use crate::store::{MAX_POLL_OPTIONS, NewPoll};
use crate::validate::{Check, MAX_POLL_TEXT_CHARS};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tracing::instrument;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/sessions/{session_id}/polls",
            get(list_polls).post(create_poll),
        )
        .route("/polls/{poll_id}", get(get_poll))
        .route("/polls/{poll_id}/close", post(close_poll))
        .route("/polls/{poll_id}/results", get(poll_results))
}

/// A poll the caller may see.
async fn visible_poll(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Poll> {
    let poll = state
        .store
        .get_poll(caller.org(), id)
        .await
        .map_err(ApiError::store("poll"))?;
    if !caller.is_staff() {
        match visible_session(state, caller, &poll.session_id).await {
            Ok(_) => {}
            Err(ApiError::NotFound(_)) => return Err(ApiError::NotFound("poll")),
            Err(e) => return Err(e),
        }
    }
    Ok(poll)
}

/// Opens a poll in the session (organizers and owners); the room gets `POLL_CREATED`.
#[utoipa::path(post, path = "/sessions/{session_id}/polls", tag = "polls", request_body = NewPoll,
    params(("session_id" = String, Path, description = "The session id")),
    responses((status = 201, body = Poll), Problems))]
#[instrument(skip_all)]
pub(crate) async fn create_poll(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
    Json(body): Json<NewPoll>,
) -> ApiResult<(StatusCode, axum::Json<Poll>)> {
    caller.require_staff()?;
    let mut check = Check::default();
    check
        .text("question", &body.question, MAX_POLL_TEXT_CHARS)
        .that(
            (2..=MAX_POLL_OPTIONS).contains(&body.options.len()),
            "options",
            format!("give 2 to {MAX_POLL_OPTIONS} options"),
        );
    for (i, option) in body.options.iter().enumerate() {
        check.text(&format!("options[{i}]"), option, MAX_POLL_TEXT_CHARS);
    }
    check.finish()?;
    let poll = state
        .store
        .create_poll(caller.org(), &session_id, &body, caller.user())
        .await
        .map_err(ApiError::store("session"))?;
    Ok((StatusCode::CREATED, axum::Json(poll)))
}

/// The session's polls, oldest first.
#[utoipa::path(get, path = "/sessions/{session_id}/polls", tag = "polls",
    params(("session_id" = String, Path, description = "The session id")),
    responses((status = 200, body = Vec<Poll>), Problems))]
#[instrument(skip_all)]
pub(crate) async fn list_polls(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
) -> ApiResult<axum::Json<Vec<Poll>>> {
    visible_session(&state, &caller, &session_id).await?;
    Ok(axum::Json(
        state.store.list_polls(caller.org(), &session_id).await?,
    ))
}

/// One poll.
#[utoipa::path(get, path = "/polls/{poll_id}", tag = "polls",
    params(("poll_id" = String, Path, description = "The poll id")),
    responses((status = 200, body = Poll), Problems))]
#[instrument(skip_all)]
pub(crate) async fn get_poll(
    State(state): State<AppState>,
    caller: Caller,
    Path(poll_id): Path<String>,
) -> ApiResult<axum::Json<Poll>> {
    Ok(axum::Json(visible_poll(&state, &caller, &poll_id).await?))
}

/// Closes a poll (organizers and owners); the room gets `POLL_CLOSED` with the final counts.
#[utoipa::path(post, path = "/polls/{poll_id}/close", tag = "polls",
    params(("poll_id" = String, Path, description = "The poll id")),
    responses((status = 200, body = PollResults), Problems))]
#[instrument(skip_all)]
pub(crate) async fn close_poll(
    State(state): State<AppState>,
    caller: Caller,
    Path(poll_id): Path<String>,
) -> ApiResult<axum::Json<PollResults>> {
    caller.require_staff()?;
    let results = state
        .store
        .close_poll(caller.org(), &poll_id)
        .await
        .map_err(ApiError::store("poll"))?;
    Ok(axum::Json(results))
}

/// The votes so far per option.
#[utoipa::path(get, path = "/polls/{poll_id}/results", tag = "polls",
    params(("poll_id" = String, Path, description = "The poll id")),
    responses((status = 200, body = PollResults), Problems))]
#[instrument(skip_all)]
pub(crate) async fn poll_results(
    State(state): State<AppState>,
    caller: Caller,
    Path(poll_id): Path<String>,
) -> ApiResult<axum::Json<PollResults>> {
    visible_poll(&state, &caller, &poll_id).await?;
    let results = state
        .store
        .poll_results(caller.org(), &poll_id)
        .await
        .map_err(ApiError::store("poll"))?;
    Ok(axum::Json(results))
}
