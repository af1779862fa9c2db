//! Orgs and their members.

use super::access::notify_membership;
use super::paging::next_cursor;
use super::sql::args;
use super::{Conflict, Result, SqlStore, StoreError};
use crate::model::{Member, Org, Page};
use async_trait::async_trait;
use evd_protocol::auth::Role;
use serde::Deserialize;
use tracing::instrument;
use utoipa::ToSchema;

/// A new org.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrg {
    /// The id tokens will carry in `org`; a UUID is made when absent.
    #[schema(pattern = r"^[\x21-\x7a\x7c\x7e]{1,128}$")]
    pub id: Option<String>,
    /// Display name.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
}

/// Orgs and members.
#[async_trait]
pub trait OrgStore {
    /// Creates an org with `owner` as its first owner.
    async fn create_org(&self, new: &NewOrg, owner: &str) -> Result<Org>;
    /// One org.
    async fn get_org(&self, org: &str) -> Result<Org>;
    /// Members ordered by user id, after `after`.
    async fn list_members(
        &self,
        org: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Page<Member>>;
    /// Adds a member; `Duplicate` if they are one already.
    async fn add_member(&self, org: &str, user: &str, role: Role) -> Result<Member>;
    /// Changes a member's role; the last owner cannot step down.
    async fn set_member_role(&self, org: &str, user: &str, role: Role) -> Result<Member>;
    /// Removes a member; the last owner cannot leave.
    async fn remove_member(&self, org: &str, user: &str) -> Result<()>;
}

#[async_trait]
impl OrgStore for SqlStore {
    #[instrument(skip_all)]
    async fn create_org(&self, new: &NewOrg, owner: &str) -> Result<Org> {
        let id = new.id.clone().unwrap_or_else(super::new_id);
        let now = self.now();
        let mut tx = self.write(&id).await?;
        let org: Org = tx
            .fetch_one(
                "insert into orgs (id, name, created_at) values ($1, $2, $3) \
                 returning id, name, created_at",
                args![&id, &new.name, now],
            )
            .await
            .map_err(|e| StoreError::unique(e, "an org with this id"))?;
        tx.execute(
            "insert into members (org_id, user_id, role, created_at, updated_at) \
             values ($1, $2, 'owner', $3, $3)",
            args![&id, owner, now],
        )
        .await?;
        self.commit(tx, false).await?;
        Ok(org)
    }

    #[instrument(skip_all)]
    async fn get_org(&self, org: &str) -> Result<Org> {
        let mut tx = self.read(org).await?;
        tx.fetch_optional(
            "select id, name, created_at from orgs where id = $1",
            args![org],
        )
        .await?
        .ok_or(StoreError::NotFound)
    }

    #[instrument(skip_all)]
    async fn list_members(
        &self,
        org: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Page<Member>> {
        let mut tx = self.read(org).await?;
        let mut items: Vec<Member> = tx
            .fetch_all(
                "select org_id, user_id, role, created_at, updated_at from members \
                 where org_id = $1 and ($2 is null or user_id > $2) order by user_id limit $3",
                args![org, after, limit + 1],
            )
            .await?;
        let next_cursor = next_cursor(&mut items, limit, |m| m.user_id.clone());
        Ok(Page { items, next_cursor })
    }

    #[instrument(skip_all)]
    async fn add_member(&self, org: &str, user: &str, role: Role) -> Result<Member> {
        let now = self.now();
        let mut tx = self.write(org).await?;
        org_exists(&mut tx, org).await?;
        let member = tx
            .fetch_one(
                "insert into members (org_id, user_id, role, created_at, updated_at) \
                 values ($1, $2, $3, $4, $4) \
                 returning org_id, user_id, role, created_at, updated_at",
                args![org, user, role.as_str(), now],
            )
            .await
            .map_err(|e| StoreError::unique(e, "this member"))?;
        self.commit(tx, false).await?;
        Ok(member)
    }

    #[instrument(skip_all)]
    async fn set_member_role(&self, org: &str, user: &str, role: Role) -> Result<Member> {
        let mut tx = self.write(org).await?;
        let current = member_role(&mut tx, org, user).await?;
        if current == Role::Owner && role != Role::Owner {
            keeps_an_owner(&mut tx, org).await?;
        }
        let member = tx
            .fetch_one(
                "update members set role = $3, updated_at = $4 where org_id = $1 and user_id = $2 \
                 returning org_id, user_id, role, created_at, updated_at",
                args![org, user, role.as_str(), self.now()],
            )
            .await?;
        if role < current {
            notify_membership(&mut tx, org, user, Some(role), self.now()).await?;
        }
        self.commit(tx, role < current).await?;
        Ok(member)
    }

    #[instrument(skip_all)]
    async fn remove_member(&self, org: &str, user: &str) -> Result<()> {
        let mut tx = self.write(org).await?;
        if member_role(&mut tx, org, user).await? == Role::Owner {
            keeps_an_owner(&mut tx, org).await?;
        }
        tx.execute(
            "delete from members where org_id = $1 and user_id = $2",
            args![org, user],
        )
        .await?;
        notify_membership(&mut tx, org, user, None, self.now()).await?;
        self.commit(tx, true).await
    }
}

async fn org_exists(tx: &mut super::sql::Tx, org: &str) -> Result<()> {
    tx.fetch_optional::<(String,)>("select id from orgs where id = $1", args![org])
        .await?
        .map(drop)
        .ok_or(StoreError::NotFound)
}

async fn member_role(tx: &mut super::sql::Tx, org: &str, user: &str) -> Result<Role> {
    let row: Option<Member> = tx
        .fetch_optional(
            "select org_id, user_id, role, created_at, updated_at from members \
             where org_id = $1 and user_id = $2",
            args![org, user],
        )
        .await?;
    row.map(|m| m.role).ok_or(StoreError::NotFound)
}

/// Fails unless another owner remains once the one being changed is gone.
async fn keeps_an_owner(tx: &mut super::sql::Tx, org: &str) -> Result<()> {
    let (owners,): (i64,) = tx
        .fetch_one(
            "select count(*) from members where org_id = $1 and role = 'owner'",
            args![org],
        )
        .await?;
    if owners <= 1 {
        return Err(Conflict::LastOwner.into());
    }
    Ok(())
}
