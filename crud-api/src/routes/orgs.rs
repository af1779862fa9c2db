//! `/orgs`: create an org (the caller becomes its owner), read it, manage its members, and
//! disconnect a user from it (optionally banning them for a while).

use super::{PageParams, page_limit};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problems};
use crate::extract::{Json, Path, Query};
use crate::model::{Member, Org, Page, RoleSchema};
use crate::state::AppState;
use crate::store::{Disconnect, NewOrg};
use crate::validate::{Check, MAX_NAME_CHARS};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use evd_protocol::auth::Role;
use serde::Deserialize;
use tracing::instrument;
use utoipa::ToSchema;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/orgs", post(create_org))
        .route("/orgs/{org_id}", get(get_org))
        .route("/orgs/{org_id}/members", get(list_members).post(add_member))
        .route(
            "/orgs/{org_id}/members/{user_id}",
            patch(set_member_role).delete(remove_member),
        )
        .route(
            "/orgs/{org_id}/users/{user_id}/disconnect",
            post(disconnect_user),
        )
}

/// Longest reason a disconnect may give, characters: a sentence shown to the user.
pub(crate) const MAX_DISCONNECT_REASON_CHARS: usize = 200;

/// Longest ban, seconds: 30 days. A longer exclusion is a matter for the members table and the
/// token issuer, not a timed ban.
pub(crate) const MAX_BAN_SECS: u64 = 30 * 86_400;

/// Another org's id answers 404, like a missing one.
fn same_org(caller: &Caller, org_id: &str) -> ApiResult<()> {
    if caller.org() == org_id {
        Ok(())
    } else {
        Err(ApiError::NotFound("org"))
    }
}

/// Creates an org; the caller becomes its owner. Tokens for the new org carry its id in `org`.
#[utoipa::path(post, path = "/orgs", tag = "orgs", request_body = NewOrg,
    responses((status = 201, body = Org), Problems))]
#[instrument(skip_all)]
pub(crate) async fn create_org(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewOrg>,
) -> ApiResult<(StatusCode, axum::Json<Org>)> {
    let mut check = Check::default();
    check.text("name", &body.name, MAX_NAME_CHARS);
    if let Some(id) = &body.id {
        check.id("id", id);
    }
    check.finish()?;
    let org = state.store.create_org(&body, caller.user()).await?;
    Ok((StatusCode::CREATED, axum::Json(org)))
}

/// The caller's org.
#[utoipa::path(get, path = "/orgs/{org_id}", tag = "orgs",
    params(("org_id" = String, Path, description = "The org id")),
    responses((status = 200, body = Org), Problems))]
#[instrument(skip_all)]
pub(crate) async fn get_org(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
) -> ApiResult<axum::Json<Org>> {
    same_org(&caller, &org_id)?;
    let org = state
        .store
        .get_org(&org_id)
        .await
        .map_err(ApiError::store("org"))?;
    Ok(axum::Json(org))
}

/// Members by user id (organizers and owners).
#[utoipa::path(get, path = "/orgs/{org_id}/members", tag = "orgs",
    params(("org_id" = String, Path, description = "The org id"), PageParams),
    responses((status = 200, body = Page<Member>), Problems))]
#[instrument(skip_all)]
pub(crate) async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult<axum::Json<Page<Member>>> {
    same_org(&caller, &org_id)?;
    caller.require_staff()?;
    let limit = page_limit(page.limit)?;
    let members = state
        .store
        .list_members(&org_id, page.cursor.as_deref(), limit)
        .await?;
    Ok(axum::Json(members))
}

/// A member to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewMember {
    /// The user id (a token's `sub`).
    #[schema(pattern = r"^[\x21-\x7a\x7c\x7e]{1,128}$")]
    user_id: String,
    /// Their role.
    #[schema(value_type = RoleSchema)]
    role: Role,
}

/// Adds a member (owners).
#[utoipa::path(post, path = "/orgs/{org_id}/members", tag = "orgs", request_body = NewMember,
    params(("org_id" = String, Path, description = "The org id")),
    responses((status = 201, body = Member), Problems))]
#[instrument(skip_all)]
pub(crate) async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(org_id): Path<String>,
    Json(body): Json<NewMember>,
) -> ApiResult<(StatusCode, axum::Json<Member>)> {
    same_org(&caller, &org_id)?;
    caller.require_owner()?;
    Check::default().id("user_id", &body.user_id).finish()?;
    let member = state
        .store
        .add_member(&org_id, &body.user_id, body.role)
        .await
        .map_err(ApiError::store("org"))?;
    Ok((StatusCode::CREATED, axum::Json(member)))
}

/// A new role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleChange {
    /// The role.
    #[schema(value_type = RoleSchema)]
    role: Role,
}

/// Changes a member's role (owners). The last owner cannot step down.
#[utoipa::path(patch, path = "/orgs/{org_id}/members/{user_id}", tag = "orgs",
    request_body = RoleChange,
    params(("org_id" = String, Path, description = "The org id"),
           ("user_id" = String, Path, description = "The member's user id")),
    responses((status = 200, body = Member), Problems))]
#[instrument(skip_all)]
pub(crate) async fn set_member_role(
    State(state): State<AppState>,
    caller: Caller,
    Path((org_id, user_id)): Path<(String, String)>,
    Json(body): Json<RoleChange>,
) -> ApiResult<axum::Json<Member>> {
    same_org(&caller, &org_id)?;
    caller.require_owner()?;
    let member = state
        .store
        .set_member_role(&org_id, &user_id, body.role)
        .await
        .map_err(ApiError::store("member"))?;
    state.membership.forget(&org_id, &user_id).await;
    Ok(axum::Json(member))
}

/// Removes a member (owners). The last owner cannot leave.
#[utoipa::path(delete, path = "/orgs/{org_id}/members/{user_id}", tag = "orgs",
    params(("org_id" = String, Path, description = "The org id"),
           ("user_id" = String, Path, description = "The member's user id")),
    responses((status = 204, description = "Removed"), Problems))]
#[instrument(skip_all)]
pub(crate) async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((org_id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    same_org(&caller, &org_id)?;
    caller.require_owner()?;
    state
        .store
        .remove_member(&org_id, &user_id)
        .await
        .map_err(ApiError::store("member"))?;
    state.membership.forget(&org_id, &user_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A disconnect.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DisconnectRequest {
    /// Shown to the user before their connections close (at most 200 characters).
    #[schema(max_length = 200)]
    reason: Option<String>,
    /// Refuse the user's new connections to the org for this long, seconds (1 to 2592000).
    #[schema(minimum = 1, maximum = 2592000)]
    ban_secs: Option<u64>,
}

/// What a disconnect did.
#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct DisconnectAnswer {
    /// The user disconnected.
    user_id: String,
    /// Until when (unix ms) their new connections are refused; absent without a ban.
    #[serde(skip_serializing_if = "Option::is_none")]
    banned_until: Option<i64>,
}

/// Disconnects a user's live connections to the org on every engine node (organizers and
/// owners): they get `DISCONNECTED` and a close with 4504. With `ban_secs`, their new
/// connections to the org are refused (403 `banned`) until the ban ends. Answers once the
/// disconnect is recorded; the nodes act on it within moments.
#[utoipa::path(post, path = "/orgs/{org_id}/users/{user_id}/disconnect", tag = "orgs",
    request_body = DisconnectRequest,
    params(("org_id" = String, Path, description = "The org id"),
           ("user_id" = String, Path, description = "The user id (a token's `sub`)")),
    responses((status = 202, body = DisconnectAnswer), Problems))]
#[instrument(skip_all)]
pub(crate) async fn disconnect_user(
    State(state): State<AppState>,
    caller: Caller,
    Path((org_id, user_id)): Path<(String, String)>,
    Json(body): Json<DisconnectRequest>,
) -> ApiResult<(StatusCode, axum::Json<DisconnectAnswer>)> {
    same_org(&caller, &org_id)?;
    caller.require_staff()?;
    let mut check = Check::default();
    check.id("user_id", &user_id);
    if let Some(reason) = &body.reason {
        check.text_up_to("reason", reason, MAX_DISCONNECT_REASON_CHARS);
    }
    if let Some(secs) = body.ban_secs {
        check.that(
            (1..=MAX_BAN_SECS).contains(&secs),
            "ban_secs",
            format!("must be 1 to {MAX_BAN_SECS}"),
        );
    }
    check.finish()?;
    let disconnect = Disconnect {
        by: caller.user().to_owned(),
        reason: body.reason.filter(|r| !r.is_empty()),
        ban: body.ban_secs.map(std::time::Duration::from_secs),
    };
    let banned_until = state
        .store
        .disconnect_user(&org_id, &user_id, &disconnect)
        .await
        .map_err(ApiError::store("org"))?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(DisconnectAnswer {
            user_id,
            banned_until,
        }),
    ))
}
