//! `/orgs`: create an org (the caller becomes its owner), read it, manage its members.

use super::{PageParams, page_limit};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problems};
use crate::extract::{Json, Path, Query};
use crate::model::{Member, Org, Page, RoleSchema};
use crate::state::AppState;
use crate::store::NewOrg;
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
}

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
    Ok(StatusCode::NO_CONTENT)
}
