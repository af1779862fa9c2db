//! `Idempotency-Key`: a retried write returns what the first one made instead of making it
//! again.
//!
//! The key row is inserted first, in the write's own transaction. A concurrent retry's insert
//! waits on it (PostgreSQL) or runs after it (SQLite), then finds it and replays. If the
//! first write fails, its key row rolls back with it and a retry starts afresh.

use super::sql::{Tx, args};
use super::{Conflict, Created, Result};
use crate::clock::Millis;

/// Longest key accepted; keys are meant to be UUIDs.
pub const MAX_KEY_LEN: usize = 255;

/// How long a key is remembered; a retry later than this makes a new row.
pub const KEY_TTL_MS: Millis = 24 * 60 * 60 * 1000;

/// One use of a key.
#[derive(Debug)]
pub(crate) struct KeyUse<'a> {
    pub(crate) org: &'a str,
    pub(crate) user: &'a str,
    /// The operation, so one key may serve different operations.
    pub(crate) scope: &'static str,
    pub(crate) key: &'a str,
    /// What the request asked for; the same key with another request is refused.
    pub(crate) request: String,
}

/// Claims the key in `tx`. Returns the id of the resource a previous use made, if any.
async fn claim(tx: &mut Tx, k: &KeyUse<'_>, now: Millis) -> Result<Option<String>> {
    let inserted = tx
        .execute(
            "insert into idempotency_keys (org_id, user_id, scope, key, request, resource_id, \
             created_at) values ($1, $2, $3, $4, $5, '', $6) on conflict do nothing",
            args![k.org, k.user, k.scope, k.key, &k.request, now],
        )
        .await?;
    if inserted == 1 {
        return Ok(None);
    }
    let (request, resource): (String, String) = tx
        .fetch_one(
            "select request, resource_id from idempotency_keys \
             where org_id = $1 and user_id = $2 and scope = $3 and key = $4",
            args![k.org, k.user, k.scope, k.key],
        )
        .await?;
    if request != k.request {
        return Err(Conflict::IdempotencyKeyReused.into());
    }
    Ok(Some(resource))
}

/// Claims `key` in `tx` when there is one. On a replay, `load` reloads what the first use
/// made (from the org and its id), and it comes back as `Created { created: false }`; `None`
/// means the write goes ahead.
pub(crate) async fn replay<T>(
    tx: &mut Tx,
    key: Option<&KeyUse<'_>>,
    now: Millis,
    load: impl AsyncFnOnce(&mut Tx, &str, &str) -> Result<T>,
) -> Result<Option<Created<T>>> {
    let Some(k) = key else { return Ok(None) };
    let Some(id) = claim(tx, k, now).await? else {
        return Ok(None);
    };
    let value = load(tx, k.org, &id).await?;
    Ok(Some(Created {
        value,
        created: false,
    }))
}

/// Records what the claimed key made.
pub(crate) async fn record(tx: &mut Tx, k: &KeyUse<'_>, resource: &str) -> Result<()> {
    tx.execute(
        "update idempotency_keys set resource_id = $5 \
         where org_id = $1 and user_id = $2 and scope = $3 and key = $4",
        args![k.org, k.user, k.scope, k.key, resource],
    )
    .await?;
    Ok(())
}
