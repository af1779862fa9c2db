//! The chat archive: a room's history beyond the engine's window.

use super::page_limit;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problems};
use crate::extract::{Path, Query};
use crate::model::{ChatMessage, Page};
use crate::state::AppState;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use evd_protocol::{RoomKind, RoomName};
use serde::Deserialize;
use tracing::instrument;
use utoipa::IntoParams;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/rooms/{room}/messages", get(chat_history))
}

/// Where to start.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryParams {
    /// The `next_cursor` of the previous (newer) page.
    before: Option<String>,
    /// Messages per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// Whether the caller may read `room`: the same rule as joining it in the engine.
async fn may_read(state: &AppState, caller: &Caller, room: &RoomName) -> ApiResult<bool> {
    if caller.is_staff() || caller.0.grants_room(room.as_str()) {
        return Ok(true);
    }
    Ok(match room.kind() {
        RoomKind::User => room.id() == caller.user(),
        _ => {
            state
                .store
                .has_ticket_for_room(caller.org(), caller.user(), room)
                .await?
        }
    })
}

/// A room's messages, newest first. Readable by whoever may join the room.
#[utoipa::path(get, path = "/rooms/{room}/messages", tag = "chat",
    params(("room" = String, Path, description = "The room, e.g. `session:<id>`"), HistoryParams),
    responses((status = 200, body = Page<ChatMessage>), Problems))]
#[instrument(skip_all)]
pub(crate) async fn chat_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
    Query(params): Query<HistoryParams>,
) -> ApiResult<axum::Json<Page<ChatMessage>>> {
    let limit = page_limit(params.limit)?;
    let room = RoomName::parse(&room).map_err(|e| ApiError::field("room", e.to_string()))?;
    if !may_read(&state, &caller, &room).await? {
        return Err(ApiError::NotFound("room"));
    }
    let page = state
        .store
        .chat_history(caller.org(), room.as_str(), params.before.as_deref(), limit)
        .await?;
    Ok(axum::Json(page))
}
