//! Questions of a session: list, hide.

use super::{page_limit, visible_session};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problems};
use crate::extract::{Path, Query};
use crate::model::Question;
use crate::state::AppState;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use tracing::instrument;
use utoipa::IntoParams;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions/{session_id}/questions", get(list_questions))
        .route("/questions/{question_id}/hide", post(hide_question))
}

/// How many questions.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct QuestionParams {
    /// Questions to return, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// The session's questions, most upvoted first. Attendees do not see hidden ones.
#[utoipa::path(get, path = "/sessions/{session_id}/questions", tag = "questions",
    params(("session_id" = String, Path, description = "The session id"), QuestionParams),
    responses((status = 200, body = Vec<Question>), Problems))]
#[instrument(skip_all)]
pub(crate) async fn list_questions(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
    Query(params): Query<QuestionParams>,
) -> ApiResult<axum::Json<Vec<Question>>> {
    let limit = page_limit(params.limit)?;
    visible_session(&state, &caller, &session_id).await?;
    let questions = state
        .store
        .list_questions(caller.org(), &session_id, caller.is_staff(), limit)
        .await?;
    Ok(axum::Json(questions))
}

/// Hides a question from attendees (organizers and owners); the room gets
/// `QUESTION_UPDATED` with `hidden: true`.
#[utoipa::path(post, path = "/questions/{question_id}/hide", tag = "questions",
    params(("question_id" = String, Path, description = "The question id")),
    responses((status = 200, body = Question), Problems))]
#[instrument(skip_all)]
pub(crate) async fn hide_question(
    State(state): State<AppState>,
    caller: Caller,
    Path(question_id): Path<String>,
) -> ApiResult<axum::Json<Question>> {
    caller.require_staff()?;
    let question = state
        .store
        .hide_question(caller.org(), &question_id)
        .await
        .map_err(ApiError::store("question"))?;
    Ok(axum::Json(question))
}
