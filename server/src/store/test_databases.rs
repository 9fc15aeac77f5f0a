//! Databases for the store's tests: a SQLite file in a temporary folder, or
//! a new database on the PostgreSQL server named by `QUORUM_TEST_POSTGRES`
//! (a URL to a database the tests may `CREATE DATABASE` from;
//! `scripts/test` starts a throwaway cluster with `scripts/postgres` and sets it).

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection as _;

use super::Location;

/// Where a test's store lives, and what to keep alive while it runs.
pub(crate) struct TestDatabase {
    pub location: Location,
    _dir: Option<tempfile::TempDir>,
}

/// Which engine a copy of the store's tests runs on, from the name of the
/// module it was compiled into (`tests` or `tests_postgres`).
pub(crate) fn engine_of(module: &str) -> Engine {
    if module.ends_with("_postgres") { Engine::Postgres } else { Engine::Sqlite }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Engine {
    Sqlite,
    Postgres,
}

/// A new, empty database on `engine`.
pub(crate) async fn new_database(engine: Engine) -> TestDatabase {
    match engine {
        Engine::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            TestDatabase { location: Location::Sqlite(dir.path().join("quorum.db")), _dir: Some(dir) }
        }
        Engine::Postgres => TestDatabase { location: Location::Postgres(new_postgres_database().await), _dir: None },
    }
}

/// Creates a database of its own for one test on the test server; its URL.
async fn new_postgres_database() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let server = std::env::var("QUORUM_TEST_POSTGRES").expect(
        "QUORUM_TEST_POSTGRES is not set: the store's tests also run on PostgreSQL. Run ./scripts/test (it starts a \
         throwaway cluster), or start one with `scripts/postgres start DIR` and set QUORUM_TEST_POSTGRES to the URL \
         it prints",
    );
    let name = format!(
        "quorum_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
    );
    let mut connection = sqlx::PgConnection::connect(&server).await.expect("connect to QUORUM_TEST_POSTGRES");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut connection)
        .await
        .expect("create a test database");
    let _ = connection.close().await;
    with_database(&server, &name)
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

#[test]
fn test_urls_name_their_own_database() {
    assert_eq!(with_database("postgres://q@127.0.0.1:5432/postgres", "t1"), "postgres://q@127.0.0.1:5432/t1");
    assert_eq!(with_database("postgres://q@h/postgres?sslmode=disable", "t1"), "postgres://q@h/t1?sslmode=disable");
    assert_eq!(with_database("postgres://q@h", "t1"), "postgres://q@h/t1");
}
