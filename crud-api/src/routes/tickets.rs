//! Tickets: issue (never oversold), cancel, list mine or (organizers) a session's.

use super::{PageParams, created, page_limit, visible_session};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problems};
use crate::extract::{IdempotencyKey, Json, Path, Query};
use crate::model::{Page, Ticket, TierSchema};
use crate::state::AppState;
use crate::store::{IssueTicket, TicketsOf};
use crate::validate::Check;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use evd_protocol::auth::Tier;
use serde::Deserialize;
use tracing::instrument;
use utoipa::ToSchema;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/sessions/{session_id}/tickets",
            post(issue_ticket).get(list_session_tickets),
        )
        .route("/tickets", get(list_tickets))
        .route("/tickets/{ticket_id}", get(get_ticket))
        .route("/tickets/{ticket_id}/cancel", post(cancel_ticket))
}

/// A ticket request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TicketRequest {
    /// VIP or standard; defaults to the token's tier. Attendees cannot ask above it.
    #[schema(value_type = Option<TierSchema>)]
    tier: Option<Tier>,
    /// Who gets it; defaults to the caller. Only organizers and owners may name another user.
    #[schema(pattern = r"^[\x21-\x7a\x7c\x7e]{1,128}$")]
    user_id: Option<String>,
}

/// Takes a seat in the session. 409 `sold_out` when none is free, `duplicate` when the user
/// holds a ticket already. With `Idempotency-Key`, a retry answers the first ticket (200).
#[utoipa::path(post, path = "/sessions/{session_id}/tickets", tag = "tickets",
    request_body = TicketRequest,
    params(("session_id" = String, Path, description = "The session id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe", min_length = 1, max_length = 255, pattern = r"^[\x21-\x7e]+$")),
    responses((status = 201, body = Ticket), (status = 200, body = Ticket, description = "A replay"),
        Problems))]
#[instrument(skip_all)]
pub(crate) async fn issue_ticket(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<TicketRequest>,
) -> ApiResult<Response> {
    let user = body.user_id.as_deref().unwrap_or(caller.user());
    Check::default().id("user_id", user).finish()?;
    let tier = body.tier.unwrap_or(caller.0.tier());
    if !caller.is_staff() {
        if user != caller.user() {
            return Err(ApiError::Forbidden(
                "attendees take tickets for themselves only",
            ));
        }
        if tier == Tier::Vip && caller.0.tier() != Tier::Vip {
            return Err(ApiError::Forbidden("a vip ticket needs a vip token"));
        }
    }
    visible_session(&state, &caller, &session_id).await?;
    let req = IssueTicket {
        session: &session_id,
        user,
        tier,
        idempotency_key: key.as_deref(),
    };
    let issued = state
        .store
        .issue_ticket(caller.org(), &req)
        .await
        .map_err(ApiError::store("session"))?;
    Ok(created(issued.value, issued.created))
}

/// The caller's tickets, oldest first.
#[utoipa::path(get, path = "/tickets", tag = "tickets", params(PageParams),
    responses((status = 200, body = Page<Ticket>), Problems))]
#[instrument(skip_all)]
pub(crate) async fn list_tickets(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<PageParams>,
) -> ApiResult<axum::Json<Page<Ticket>>> {
    let limit = page_limit(page.limit)?;
    let tickets = state
        .store
        .list_tickets(
            caller.org(),
            TicketsOf::User(caller.user()),
            page.cursor.as_deref(),
            limit,
        )
        .await?;
    Ok(axum::Json(tickets))
}

/// A session's tickets, every holder's, cancelled ones included, oldest first. Organizers and
/// owners only.
#[utoipa::path(get, path = "/sessions/{session_id}/tickets", tag = "tickets",
    params(("session_id" = String, Path, description = "The session id"), PageParams),
    responses((status = 200, body = Page<Ticket>), Problems))]
#[instrument(skip_all)]
pub(crate) async fn list_session_tickets(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<axum::Json<Page<Ticket>>> {
    if !caller.is_staff() {
        return Err(ApiError::Forbidden(
            "only organizers and owners list a session's tickets",
        ));
    }
    let limit = page_limit(page.limit)?;
    visible_session(&state, &caller, &session_id).await?;
    let tickets = state
        .store
        .list_tickets(
            caller.org(),
            TicketsOf::Session(&session_id),
            page.cursor.as_deref(),
            limit,
        )
        .await?;
    Ok(axum::Json(tickets))
}

fn holder(caller: &Caller) -> Option<&str> {
    (!caller.is_staff()).then(|| caller.user())
}

/// One ticket: the caller's own, or any of the org's for organizers and owners.
#[utoipa::path(get, path = "/tickets/{ticket_id}", tag = "tickets",
    params(("ticket_id" = String, Path, description = "The ticket id")),
    responses((status = 200, body = Ticket), Problems))]
#[instrument(skip_all)]
pub(crate) async fn get_ticket(
    State(state): State<AppState>,
    caller: Caller,
    Path(ticket_id): Path<String>,
) -> ApiResult<axum::Json<Ticket>> {
    let ticket = state
        .store
        .get_ticket(caller.org(), &ticket_id, holder(&caller))
        .await
        .map_err(ApiError::store("ticket"))?;
    Ok(axum::Json(ticket))
}

/// Cancels a ticket; its seat is offered to the next person on the waitlist.
#[utoipa::path(post, path = "/tickets/{ticket_id}/cancel", tag = "tickets",
    params(("ticket_id" = String, Path, description = "The ticket id")),
    responses((status = 200, body = Ticket), Problems))]
#[instrument(skip_all)]
pub(crate) async fn cancel_ticket(
    State(state): State<AppState>,
    caller: Caller,
    Path(ticket_id): Path<String>,
) -> ApiResult<axum::Json<Ticket>> {
    let ticket = state
        .store
        .cancel_ticket(caller.org(), &ticket_id, holder(&caller))
        .await
        .map_err(ApiError::store("ticket"))?;
    Ok(axum::Json(ticket))
}
