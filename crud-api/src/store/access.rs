//! Who may still act for an org: a user's current membership (the REST API and the engine cap a
//! token's role by it), and an organizer's disconnect of a user with its optional ban.
//!
//! A membership change and a disconnect each write an outbox row to the user's `user:` room in
//! the same transaction (`MEMBERSHIP_CHANGED`, `DISCONNECTED`), so every engine node hears of it
//! and acts on the user's live connections there.

use super::outbox::push;
use super::sql::args;
use super::{Result, SqlStore};
use crate::clock::Millis;
use async_trait::async_trait;
use evd_protocol::RoomName;
use evd_protocol::auth::Role;
use evd_protocol::event::{Disconnected, Event, MembershipChanged};
use tracing::instrument;

/// A user's standing in an org, as the members table has it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// The store has no such org: no members table to consult, and no rows a token could reach
    /// (every tenant row refers to an existing org). The token's role stands.
    UnknownOrg,
    /// The org exists and the user is not a member: an attendee at most.
    NotMember,
    /// A member with this role.
    Member(Role),
}

impl Membership {
    /// The role a token of `token` role acts with: never more than the membership allows.
    pub fn cap(self, token: Role) -> Role {
        match self {
            Membership::UnknownOrg => token,
            Membership::NotMember => token.min(Role::Attendee),
            Membership::Member(role) => token.min(role),
        }
    }
}

/// An organizer's disconnect of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Who asked (an organizer or owner).
    pub by: String,
    /// Shown to the user.
    pub reason: Option<String>,
    /// For how long from now their new connections to the org are refused; `None`: no ban.
    pub ban: Option<std::time::Duration>,
}

/// Membership lookups, disconnects and bans.
#[async_trait]
pub trait AccessStore {
    /// `user`'s standing in `org` now.
    async fn membership(&self, org: &str, user: &str) -> Result<Membership>;
    /// Records a disconnect (and its ban, replacing an earlier one) and tells every node;
    /// returns the ban's end (unix ms).
    async fn disconnect_user(
        &self,
        org: &str,
        user: &str,
        d: &Disconnect,
    ) -> Result<Option<Millis>>;
    /// The end (unix ms) of `user`'s ban from `org`, if one is in force now.
    async fn banned_until(&self, org: &str, user: &str) -> Result<Option<Millis>>;
    /// The users banned from `org` now, with each ban's end (unix ms), ordered by user: at most
    /// `limit + 1` of them, so a caller sees that there are more than `limit`.
    async fn bans_in_force(&self, org: &str, limit: usize) -> Result<Vec<(String, Millis)>>;
    /// Development sign-in only: makes sure `org` exists (named after its id) and that `user`
    /// is a member with `role`.
    async fn enroll(&self, org: &str, user: &str, role: Role) -> Result<()>;
}

/// Tells the user's connections that their membership changed; `role` is `None` on removal.
pub(crate) async fn notify_membership(
    tx: &mut super::sql::Tx,
    org: &str,
    user: &str,
    role: Option<Role>,
    now: Millis,
) -> Result<()> {
    let Ok(room) = RoomName::user(user) else {
        // Not a valid token subject: no connection can be this user's.
        return Ok(());
    };
    let event = Event::MembershipChanged(MembershipChanged {
        user: user.to_owned(),
        role,
        outbox_id: None,
    });
    push(tx, org, room.as_ref(), &event, now).await
}

#[async_trait]
impl AccessStore for SqlStore {
    #[instrument(skip_all)]
    async fn membership(&self, org: &str, user: &str) -> Result<Membership> {
        let mut tx = self.read(org).await?;
        let row: Option<(String, Option<String>)> = tx
            .fetch_optional(
                "select o.id, m.role from orgs o \
                 left join members m on m.org_id = o.id and m.user_id = $2 where o.id = $1",
                args![org, user],
            )
            .await?;
        Ok(match row {
            None => Membership::UnknownOrg,
            Some((_, None)) => Membership::NotMember,
            Some((_, Some(role))) => {
                Role::parse(&role).map_or(Membership::NotMember, Membership::Member)
            }
        })
    }

    #[instrument(skip_all)]
    async fn disconnect_user(
        &self,
        org: &str,
        user: &str,
        d: &Disconnect,
    ) -> Result<Option<Millis>> {
        let now = self.now();
        let banned_until = d
            .ban
            .map(|ban| now.saturating_add(i64::try_from(ban.as_millis()).unwrap_or(i64::MAX)));
        let mut tx = self.write(org).await?;
        if let Some(until) = banned_until {
            tx.execute(
                "insert into bans (org_id, user_id, until, reason, created_by, created_at) \
                 values ($1, $2, $3, $4, $5, $6) on conflict (org_id, user_id) do update \
                 set until = excluded.until, reason = excluded.reason, \
                 created_by = excluded.created_by, created_at = excluded.created_at",
                args![org, user, until, d.reason.as_deref(), &d.by, now],
            )
            .await?;
        }
        let room = RoomName::user(user).map_err(|e| super::StoreError::Invalid {
            field: "user_id",
            message: e.to_string(),
        })?;
        let event = Event::Disconnected(Disconnected {
            user: user.to_owned(),
            reason: d.reason.clone(),
            banned_until,
            outbox_id: None,
        });
        push(&mut tx, org, room.as_ref(), &event, now).await?;
        self.commit(tx, true).await?;
        Ok(banned_until)
    }

    #[instrument(skip_all)]
    async fn banned_until(&self, org: &str, user: &str) -> Result<Option<Millis>> {
        let now = self.now();
        let mut tx = self.read(org).await?;
        let row: Option<(i64,)> = tx
            .fetch_optional(
                "select until from bans where org_id = $1 and user_id = $2 and until > $3",
                args![org, user, now],
            )
            .await?;
        Ok(row.map(|(until,)| until))
    }

    #[instrument(skip_all)]
    async fn bans_in_force(&self, org: &str, limit: usize) -> Result<Vec<(String, Millis)>> {
        let now = self.now();
        let rows = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let mut tx = self.read(org).await?;
        let bans: Vec<(String, i64)> = tx
            .fetch_all(
                "select user_id, until from bans where org_id = $1 and until > $2 \
                 order by user_id limit $3",
                args![org, now, rows],
            )
            .await?;
        Ok(bans)
    }

    #[instrument(skip_all)]
    async fn enroll(&self, org: &str, user: &str, role: Role) -> Result<()> {
        let now = self.now();
        let mut tx = self.write(org).await?;
        tx.execute(
            "insert into orgs (id, name, created_at) values ($1, $1, $2) \
             on conflict (id) do nothing",
            args![org, now],
        )
        .await?;
        tx.execute(
            "insert into members (org_id, user_id, role, created_at, updated_at) \
             values ($1, $2, $3, $4, $4) on conflict (org_id, user_id) do update \
             set role = excluded.role, updated_at = excluded.updated_at",
            args![org, user, role.as_str(), now],
        )
        .await?;
        self.commit(tx, false).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_never_acts_above_the_membership() {
        use Role::*;
        assert_eq!(Membership::UnknownOrg.cap(Owner), Owner);
        assert_eq!(Membership::NotMember.cap(Organizer), Attendee);
        assert_eq!(Membership::NotMember.cap(Attendee), Attendee);
        assert_eq!(Membership::Member(Organizer).cap(Owner), Organizer);
        assert_eq!(Membership::Member(Owner).cap(Organizer), Organizer);
        assert_eq!(Membership::Member(Attendee).cap(Organizer), Attendee);
    }
}
