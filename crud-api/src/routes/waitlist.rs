//! Waitlists and offers.

use super::{created, visible_session};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problems};
use crate::extract::{IdempotencyKey, Json, Path};
use crate::model::{Offer, Ticket, WaitlistEntry};
use crate::state::AppState;
use crate::store::{JoinWaitlist, MAX_OFFERS_PER_CALL};
use crate::validate::Check;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use tracing::instrument;
use utoipa::ToSchema;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions/{session_id}/waitlist", post(join_waitlist))
        .route(
            "/sessions/{session_id}/waitlist/me",
            get(my_entry).delete(leave_waitlist),
        )
        .route("/sessions/{session_id}/waitlist/offers", post(offer_next))
        .route("/offers", get(list_offers))
        .route("/offers/{offer_id}", get(get_offer))
        .route("/offers/{offer_id}/accept", post(accept_offer))
        .route("/offers/{offer_id}/decline", post(decline_offer))
}

/// Joins the session's waitlist with the token's tier (VIP before standard, then first come
/// first served). With `Idempotency-Key`, a retry answers the first entry (200).
#[utoipa::path(post, path = "/sessions/{session_id}/waitlist", tag = "waitlist",
    params(("session_id" = String, Path, description = "The session id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe", min_length = 1, max_length = 255, pattern = r"^[\x21-\x7e]+$")),
    responses((status = 201, body = WaitlistEntry),
        (status = 200, body = WaitlistEntry, description = "A replay"), Problems))]
#[instrument(skip_all)]
pub(crate) async fn join_waitlist(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
) -> ApiResult<Response> {
    visible_session(&state, &caller, &session_id).await?;
    let req = JoinWaitlist {
        session: &session_id,
        user: caller.user(),
        tier: caller.0.tier(),
        idempotency_key: key.as_deref(),
    };
    let joined = state
        .store
        .join_waitlist(caller.org(), &req)
        .await
        .map_err(ApiError::store("session"))?;
    Ok(created(joined.value, joined.created))
}

/// The caller's place on the session's waitlist.
#[utoipa::path(get, path = "/sessions/{session_id}/waitlist/me", tag = "waitlist",
    params(("session_id" = String, Path, description = "The session id")),
    responses((status = 200, body = WaitlistEntry), Problems))]
#[instrument(skip_all)]
pub(crate) async fn my_entry(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
) -> ApiResult<axum::Json<WaitlistEntry>> {
    let entry = state
        .store
        .waitlist_entry(caller.org(), &session_id, caller.user())
        .await
        .map_err(ApiError::store("waitlist entry"))?;
    Ok(axum::Json(entry))
}

/// Leaves the waitlist; an open offer is declined.
#[utoipa::path(delete, path = "/sessions/{session_id}/waitlist/me", tag = "waitlist",
    params(("session_id" = String, Path, description = "The session id")),
    responses((status = 204, description = "Left"), Problems))]
#[instrument(skip_all)]
pub(crate) async fn leave_waitlist(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .store
        .leave_waitlist(caller.org(), &session_id, caller.user())
        .await
        .map_err(ApiError::store("waitlist entry"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// How many to offer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OfferCount {
    /// People to offer a seat to, 1 to 100; fewer get one if fewer seats are free.
    #[schema(minimum = 1, maximum = 100)]
    count: i64,
}

/// Offers free seats to the next people in line (organizers and owners). 409 `sold_out`
/// when no seat is free.
#[utoipa::path(post, path = "/sessions/{session_id}/waitlist/offers", tag = "waitlist",
    request_body = OfferCount,
    params(("session_id" = String, Path, description = "The session id")),
    responses((status = 200, body = Vec<Offer>), Problems))]
#[instrument(skip_all)]
pub(crate) async fn offer_next(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
    Json(body): Json<OfferCount>,
) -> ApiResult<axum::Json<Vec<Offer>>> {
    caller.require_staff()?;
    Check::default()
        .that(
            (1..=MAX_OFFERS_PER_CALL).contains(&body.count),
            "count",
            format!("must be between 1 and {MAX_OFFERS_PER_CALL}"),
        )
        .finish()?;
    let offers = state
        .store
        .offer_next(caller.org(), &session_id, body.count)
        .await
        .map_err(ApiError::store("session"))?;
    Ok(axum::Json(offers))
}

/// The caller's open offers.
#[utoipa::path(get, path = "/offers", tag = "waitlist",
    responses((status = 200, body = Vec<Offer>), Problems))]
#[instrument(skip_all)]
pub(crate) async fn list_offers(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<Offer>>> {
    Ok(axum::Json(
        state.store.list_offers(caller.org(), caller.user()).await?,
    ))
}

/// One of the caller's offers.
#[utoipa::path(get, path = "/offers/{offer_id}", tag = "waitlist",
    params(("offer_id" = String, Path, description = "The offer id")),
    responses((status = 200, body = Offer), Problems))]
#[instrument(skip_all)]
pub(crate) async fn get_offer(
    State(state): State<AppState>,
    caller: Caller,
    Path(offer_id): Path<String>,
) -> ApiResult<axum::Json<Offer>> {
    let offer = state
        .store
        .get_offer(caller.org(), &offer_id, caller.user())
        .await
        .map_err(ApiError::store("offer"))?;
    Ok(axum::Json(offer))
}

/// Accepts an offer: its held seat becomes a ticket. 409 `offer_expired` after it lapsed.
/// With `Idempotency-Key`, a retry answers the same ticket (200).
#[utoipa::path(post, path = "/offers/{offer_id}/accept", tag = "waitlist",
    params(("offer_id" = String, Path, description = "The offer id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe", min_length = 1, max_length = 255, pattern = r"^[\x21-\x7e]+$")),
    responses((status = 201, body = Ticket), (status = 200, body = Ticket, description = "A replay"),
        Problems))]
#[instrument(skip_all)]
pub(crate) async fn accept_offer(
    State(state): State<AppState>,
    caller: Caller,
    Path(offer_id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
) -> ApiResult<Response> {
    let accepted = state
        .store
        .accept_offer(caller.org(), &offer_id, caller.user(), key.as_deref())
        .await
        .map_err(ApiError::store("offer"))?;
    Ok(created(accepted.value, accepted.created))
}

/// Declines an offer; the seat goes to the next person in line.
#[utoipa::path(post, path = "/offers/{offer_id}/decline", tag = "waitlist",
    params(("offer_id" = String, Path, description = "The offer id")),
    responses((status = 200, body = Offer), Problems))]
#[instrument(skip_all)]
pub(crate) async fn decline_offer(
    State(state): State<AppState>,
    caller: Caller,
    Path(offer_id): Path<String>,
) -> ApiResult<axum::Json<Offer>> {
    let offer = state
        .store
        .decline_offer(caller.org(), &offer_id, caller.user())
        .await
        .map_err(ApiError::store("offer"))?;
    Ok(axum::Json(offer))
}
