//! One transaction type over both backends, so each store method is written once.
//!
//! The SQL of the two backends differs in a handful of statements (full-text search, the
//! outbox claim); everything else is the same text with `$n` placeholders, which SQLite
//! accepts too. [`Tx::pick`] chooses between two texts where they differ.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Postgres, Sqlite, Transaction};

/// One bound parameter. Nulls are typed because PostgreSQL checks parameter types.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(bool),
    Json(serde_json::Value),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(Some(v.clone()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(Some(v))
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::Text(v.map(str::to_owned))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::Text(v)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::Int(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::Bool(v)
    }
}
impl From<serde_json::Value> for Arg {
    fn from(v: serde_json::Value) -> Arg {
        Arg::Json(v)
    }
}

/// `args![a, b]`: the parameters `$1, $2` of a statement.
macro_rules! args {
    ($($v:expr),* $(,)?) => { vec![$($crate::store::sql::Arg::from($v)),*] };
}
pub(crate) use args;

macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for arg in $args {
            q = match arg {
                Arg::Text(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
                Arg::Json(v) => q.bind(sqlx::types::Json(v)),
            };
        }
        q
    }};
}

/// Runs one statement on SQLite outside a transaction (a single statement is atomic on its
/// own); returns the number of rows it changed.
pub(crate) async fn execute_sqlite(
    pool: &sqlx::SqlitePool,
    sql: &'static str,
    args: Vec<Arg>,
) -> Result<u64, sqlx::Error> {
    Ok(bind_all!(sqlx::query(sql), args)
        .execute(pool)
        .await?
        .rows_affected())
}

/// A row type both backends can decode.
pub(crate) trait Row:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}
impl<T> Row for T where T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{}

/// An open transaction on either backend, already scoped to an org on PostgreSQL.
#[derive(Debug)]
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    /// Chooses the SQLite or the PostgreSQL text of a statement.
    pub(crate) fn pick(&self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self {
            Tx::Sqlite(_) => sqlite,
            Tx::Postgres(_) => postgres,
        }
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Tx::Postgres(_))
    }

    /// Runs a statement; returns the number of rows it changed.
    pub(crate) async fn execute(
        &mut self,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Tx::Sqlite(tx) => bind_all!(sqlx::query(sql), args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            Tx::Postgres(tx) => bind_all!(sqlx::query(sql), args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    pub(crate) async fn fetch_optional<T: Row>(
        &mut self,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<Option<T>, sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_optional(&mut **tx)
                    .await
            }
            Tx::Postgres(tx) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_optional(&mut **tx)
                    .await
            }
        }
    }

    pub(crate) async fn fetch_one<T: Row>(
        &mut self,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<T, sqlx::Error> {
        self.fetch_optional(sql, args)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    pub(crate) async fn fetch_all<T: Row>(
        &mut self,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<Vec<T>, sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_all(&mut **tx)
                    .await
            }
            Tx::Postgres(tx) => {
                bind_all!(sqlx::query_as::<_, T>(sql), args)
                    .fetch_all(&mut **tx)
                    .await
            }
        }
    }

    /// Names the org whose rows this transaction may see (PostgreSQL row-level security).
    /// SQLite has no such thing; its queries filter by `org_id` themselves.
    pub(crate) async fn set_org(&mut self, org: &str) -> Result<(), sqlx::Error> {
        self.set_local("app.current_org_id", org).await
    }

    /// [`Tx::set_org`], and for the rest of the transaction PostgreSQL's prepared statements
    /// use their generic plan rather than one planned for each execution's values: for a
    /// statement run very often whose plan does not depend on them. One round trip, as
    /// `set_org`. A no-op on SQLite.
    pub(crate) async fn set_org_with_generic_plans(
        &mut self,
        org: &str,
    ) -> Result<(), sqlx::Error> {
        if let Tx::Postgres(tx) = self {
            sqlx::query(
                "select set_config('app.current_org_id', $1, true), \
                 set_config('plan_cache_mode', 'force_generic_plan', true)",
            )
            .bind(org)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Sets a setting for the rest of this transaction only. A no-op on SQLite.
    pub(crate) async fn set_local(&mut self, key: &str, value: &str) -> Result<(), sqlx::Error> {
        if let Tx::Postgres(tx) = self {
            sqlx::query("select set_config($1, $2, true)")
                .bind(key)
                .bind(value)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}
