//! Databases for tests: a temporary SQLite file, or a fresh PostgreSQL database on the server at
//! `EVD_TEST_DATABASE_URL`, dropped when the [`TestDb`] is. Used by this crate's suite and by the
//! engine's end-to-end tests (feature `test-util`), with [`on_both_backends!`](crate::on_both_backends)
//! to run one test on each.

use sqlx::Connection;

/// A database that lives as long as this value.
#[derive(Debug)]
pub struct TestDb {
    /// The URL to connect to.
    pub url: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A SQLite file in a temporary folder.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("evd.db").display());
        TestDb {
            url,
            kind: Kind::Sqlite(dir),
        }
    }

    /// A fresh database on the server at `EVD_TEST_DATABASE_URL`. `None` (after a one-time
    /// note naming `suite`) when it is unset or unreachable; a panic instead when
    /// `EVD_REQUIRE_SERVICES=1`.
    pub async fn postgres(suite: &str) -> Option<TestDb> {
        let required = std::env::var("EVD_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        let Ok(admin_url) = std::env::var("EVD_TEST_DATABASE_URL") else {
            assert!(
                !required,
                "EVD_REQUIRE_SERVICES=1 but EVD_TEST_DATABASE_URL is unset"
            );
            skipped(suite, "EVD_TEST_DATABASE_URL is unset");
            return None;
        };
        let name = format!("evd_test_{}", uuid::Uuid::new_v4().simple());
        let created = async {
            let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database \"{name}\"")))
                .execute(&mut conn)
                .await?;
            Ok::<_, sqlx::Error>(())
        }
        .await;
        if let Err(e) = created {
            assert!(
                !required,
                "PostgreSQL at EVD_TEST_DATABASE_URL is unreachable: {e}"
            );
            skipped(suite, &format!("cannot reach EVD_TEST_DATABASE_URL: {e}"));
            return None;
        }
        let url = with_database(&admin_url, &name);
        Some(TestDb {
            url,
            kind: Kind::Postgres { admin_url, name },
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Kind::Postgres { admin_url, name } = &self.kind {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs outside async; drop the database from a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                        let sql = format!("drop database if exists \"{name}\" with (force)");
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                            .execute(&mut conn)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

fn skipped(suite: &str, why: &str) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "note: the PostgreSQL {suite} tests pass without running: {why}"
        );
    });
}

/// Defines each named test twice, in modules `sqlite` and `postgres`: once on a
/// [`TestDb::sqlite`], and once on a [`TestDb::postgres`] (which passes without running when
/// PostgreSQL is not configured). Each `async fn name(arg)` sits beside the macro call and gets
/// `setup(db).await` as its argument, or the [`TestDb`] itself when no `setup` is given. `suite`
/// names the tests in the note said when PostgreSQL is skipped. The calling crate needs `tokio`.
///
/// ```ignore
/// evd_api::on_both_backends!("end-to-end"; polls_close, votes_count);
/// evd_api::on_both_backends!("conformance", crate::common::TestApp::new; orgs_have_owners);
/// ```
#[macro_export]
macro_rules! on_both_backends {
    ($suite:literal; $($name:ident),* $(,)?) => {
        $crate::on_both_backends!(
            $suite,
            |db: $crate::test_util::TestDb| async move { db };
            $($name),*
        );
    };
    ($suite:literal, $setup:expr; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::test_util::TestDb::sqlite();
                    super::$name($setup(db).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = $crate::test_util::TestDb::postgres($suite).await {
                        super::$name($setup(db).await).await;
                    }
                }
            )*
        }
    };
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn with_database_replaces_only_the_name() {
        use super::with_database;
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
