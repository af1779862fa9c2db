//! PostgreSQL row-level security, checked with raw SQL on the application's own pool (which
//! runs as `evd_app`): the policies hold even for queries that forget the org.

use crate::common::TestApp;
use axum::http::StatusCode;
use evd_api::store::{EventQuery, EventStore};
use evd_protocol::auth::Role;
use serde_json::json;
use sqlx::{PgPool, Row};

const TENANT_TABLES: [&str; 17] = [
    "orgs",
    "members",
    "events",
    "sessions",
    "tickets",
    "waitlist_entries",
    "waitlist_offers",
    "polls",
    "poll_options",
    "poll_votes",
    "poll_counts",
    "questions",
    "question_upvotes",
    "chat_messages",
    "outbox",
    "idempotency_keys",
    "bans",
];

struct Seeded {
    event: String,
    session: String,
    ticket: String,
    poll: String,
}

/// Org `org` with an event, a session, a ticket, a poll, a waitlist entry.
async fn seed(app: &TestApp, org: &str) -> Seeded {
    let (owner, event, session) = app.seed(org, &format!("{org}-owner"), 1).await;
    let buyer = app.token("buyer", org, Role::Attendee);
    let (_, ticket) = app
        .post(&format!("/sessions/{session}/tickets"), &buyer, json!({}))
        .await;
    let (_, poll) = app
        .post(
            &format!("/sessions/{session}/polls"),
            &owner,
            json!({"question": "?", "options": ["a", "b"]}),
        )
        .await;
    let waiter = app.token("waiter", org, Role::Attendee);
    let (status, _) = app
        .call(
            axum::http::Method::POST,
            &format!("/sessions/{session}/waitlist"),
            &waiter,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    Seeded {
        event,
        session,
        ticket: ticket["id"].as_str().unwrap().to_owned(),
        poll: poll["id"].as_str().unwrap().to_owned(),
    }
}

fn pool(app: &TestApp) -> &PgPool {
    app.store.postgres_pool().expect("a PostgreSQL store")
}

async fn count_as(pool: &PgPool, org: Option<&str>, table: &str) -> i64 {
    let mut tx = pool.begin().await.unwrap();
    if let Some(org) = org {
        sqlx::query("select set_config('app.current_org_id', $1, true)")
            .bind(org)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let sql = format!("select count(*) from {table}");
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    n
}

#[tokio::test]
async fn tables_force_row_level_security_and_the_app_role_cannot_bypass_it() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    let pool = pool(&app);
    let row = sqlx::query(
        "select current_user::text as name, r.rolbypassrls, r.rolsuper \
         from pg_roles r where r.rolname = current_user",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("name"), "evd_app");
    assert!(!row.get::<bool, _>("rolbypassrls"));
    assert!(!row.get::<bool, _>("rolsuper"));
    for table in TENANT_TABLES {
        let row = sqlx::query(
            "select c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner)::text as owner \
             from pg_class c join pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = 'public' and c.relname = $1",
        )
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap();
        assert!(row.get::<bool, _>("relrowsecurity"), "{table}");
        assert!(row.get::<bool, _>("relforcerowsecurity"), "{table}");
        assert_ne!(row.get::<String, _>("owner"), "evd_app", "{table}");
    }
    // Every table of the schema is in the list above.
    let tables: Vec<String> = sqlx::query_scalar(
        "select tablename::text from pg_tables where schemaname = 'public' \
         and tablename <> '_sqlx_migrations' order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut expected: Vec<&str> = TENANT_TABLES.to_vec();
    expected.sort_unstable();
    assert_eq!(tables, expected);
}

#[tokio::test]
async fn crafted_ids_of_another_org_read_update_and_delete_nothing() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    let b = seed(&app, "org-b").await;
    seed(&app, "org-a").await;
    let pool = pool(&app);
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("select set_config('app.current_org_id', 'org-a', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    // No `org_id` in these statements: only the policies stand in the way.
    let reads = [
        ("select count(*) from events where id = $1", &b.event),
        ("select count(*) from sessions where id = $1", &b.session),
        ("select count(*) from tickets where id = $1", &b.ticket),
        ("select count(*) from polls where id = $1", &b.poll),
        (
            "select count(*) from poll_options where poll_id = $1",
            &b.poll,
        ),
        (
            "select count(*) from waitlist_entries where session_id = $1",
            &b.session,
        ),
        (
            "select count(*) from outbox where room = 'session:' || $1",
            &b.session,
        ),
    ];
    for (sql, id) in reads {
        let n: i64 = sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(n, 0, "{sql}");
    }
    let writes = [
        ("update events set name = 'pwned' where id = $1", &b.event),
        (
            "update sessions set capacity = 1000 where id = $1",
            &b.session,
        ),
        (
            "update tickets set user_id = 'thief' where id = $1",
            &b.ticket,
        ),
        ("update polls set status = 'closed' where id = $1", &b.poll),
        ("delete from poll_options where poll_id = $1", &b.poll),
        ("delete from tickets where id = $1", &b.ticket),
        (
            "delete from waitlist_entries where session_id = $1",
            &b.session,
        ),
        ("delete from members where org_id = $1", &"org-b".to_owned()),
        ("delete from orgs where id = $1", &"org-b".to_owned()),
    ];
    for (sql, id) in writes {
        let done = sqlx::query(sql).bind(id).execute(&mut *tx).await.unwrap();
        assert_eq!(done.rows_affected(), 0, "{sql}");
    }
    tx.commit().await.unwrap();
    // Org B is intact.
    let owner_b = app.token("org-b-owner", "org-b", Role::Owner);
    let (_, event) = app.get(&format!("/events/{}", b.event), &owner_b).await;
    assert_eq!(event["name"], "Launch week");
    let (_, session) = app.get(&format!("/sessions/{}", b.session), &owner_b).await;
    assert_eq!(session["capacity"], 1);
    let (status, _) = app.get(&format!("/tickets/{}", b.ticket), &owner_b).await;
    assert_eq!(status, StatusCode::OK);
    let (_, poll) = app.get(&format!("/polls/{}", b.poll), &owner_b).await;
    assert_eq!(
        (
            poll["status"].as_str(),
            poll["options"].as_array().map(Vec::len)
        ),
        (Some("open"), Some(2))
    );
}

#[tokio::test]
async fn an_insert_carrying_another_orgs_id_fails() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    let b = seed(&app, "org-b").await;
    let pool = pool(&app);
    let inserts = [
        "insert into events (id, org_id, name, status, starts_at, ends_at, created_at, updated_at) \
         values ('forged', 'org-b', 'x', 'draft', 0, 0, 0, 0)",
        "insert into members (org_id, user_id, role, created_at, updated_at) \
         values ('org-b', 'intruder', 'owner', 0, 0)",
        "insert into outbox (org_id, room, kind, payload, created_at) \
         values ('org-b', 'user:x', 'WAITLIST_OFFER', '{}', 0)",
        "insert into orgs (id, name, created_at) values ('org-c', 'c', 0)",
    ];
    for sql in inserts {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("select set_config('app.current_org_id', 'org-a', true)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let err = sqlx::query(sql).execute(&mut *tx).await.unwrap_err();
        assert!(
            err.to_string().contains("row-level security"),
            "{sql}: {err}"
        );
    }
    // Nor can a row be moved into another org.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("select set_config('app.current_org_id', 'org-b', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = sqlx::query("update events set org_id = 'org-a' where id = $1")
        .bind(&b.event)
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
}

#[tokio::test]
async fn with_no_org_set_nothing_is_visible() {
    let Some(app) = TestApp::postgres().await else {
        return;
    };
    seed(&app, "org-a").await;
    let pool = pool(&app);
    for table in TENANT_TABLES {
        assert_eq!(count_as(pool, None, table).await, 0, "{table}");
        // An empty org is no org either.
        assert_eq!(count_as(pool, Some(""), table).await, 0, "{table}");
    }
    assert!(count_as(pool, Some("org-a"), "events").await > 0);
    // Outside a transaction (no `set_config` at all) as well.
    let n: i64 = sqlx::query_scalar("select count(*) from tickets")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_pool_of_one_alternating_between_orgs_shows_no_bleed() {
    let Some(app) = TestApp::postgres_with_pool(1).await else {
        return;
    };
    seed(&app, "org-a").await;
    seed(&app, "org-b").await;
    let pool = pool(&app);
    let query = EventQuery {
        limit: 50,
        ..EventQuery::default()
    };
    for round in 0..20 {
        let org = if round % 2 == 0 { "org-a" } else { "org-b" };
        let page = app.store.list_events(org, &query).await.unwrap();
        assert_eq!(page.items.len(), 1);
        assert!(page.items.iter().all(|e| e.org_id == org), "round {round}");
        let orgs: Vec<String> = {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("select set_config('app.current_org_id', $1, true)")
                .bind(org)
                .execute(&mut *tx)
                .await
                .unwrap();
            let rows = sqlx::query_scalar("select distinct org_id from tickets")
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            rows
        };
        assert_eq!(orgs, [org]);
        // The org was local to that transaction: the same connection now sees nothing.
        assert_eq!(count_as(pool, None, "tickets").await, 0, "round {round}");
    }
}
