//! `/sessions/{id}`: one agenda session.

use super::visible_session;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problems};
use crate::extract::{Json, Path};
use crate::model::Session;
use crate::state::AppState;
use crate::store::SessionPatch;
use crate::validate::{Check, MAX_NAME_CHARS};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tracing::instrument;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route(
        "/sessions/{session_id}",
        get(get_session)
            .patch(update_session)
            .delete(delete_session),
    )
}

/// One session, with its free seats.
#[utoipa::path(get, path = "/sessions/{session_id}", tag = "sessions",
    params(("session_id" = String, Path, description = "The session id")),
    responses((status = 200, body = Session), Problems))]
#[instrument(skip_all)]
pub(crate) async fn get_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
) -> ApiResult<axum::Json<Session>> {
    Ok(axum::Json(
        visible_session(&state, &caller, &session_id).await?,
    ))
}

/// Changes a session (organizers and owners); capacity cannot drop below the seats taken.
#[utoipa::path(patch, path = "/sessions/{session_id}", tag = "sessions",
    request_body = SessionPatch,
    params(("session_id" = String, Path, description = "The session id")),
    responses((status = 200, body = Session), Problems))]
#[instrument(skip_all)]
pub(crate) async fn update_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
    Json(body): Json<SessionPatch>,
) -> ApiResult<axum::Json<Session>> {
    caller.require_staff()?;
    let mut check = Check::default();
    if let Some(title) = &body.title {
        check.text("title", title, MAX_NAME_CHARS);
    }
    if let Some(capacity) = body.capacity {
        check.capacity("capacity", capacity);
    }
    check.finish()?;
    let session = state
        .store
        .update_session(caller.org(), &session_id, &body)
        .await
        .map_err(ApiError::store("session"))?;
    Ok(axum::Json(session))
}

/// Deletes a session (soft).
#[utoipa::path(delete, path = "/sessions/{session_id}", tag = "sessions",
    params(("session_id" = String, Path, description = "The session id")),
    responses((status = 204, description = "Deleted"), Problems))]
#[instrument(skip_all)]
pub(crate) async fn delete_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_staff()?;
    state
        .store
        .delete_session(caller.org(), &session_id)
        .await
        .map_err(ApiError::store("session"))?;
    Ok(StatusCode::NO_CONTENT)
}
