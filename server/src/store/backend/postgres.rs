//! The PostgreSQL backend: a pool of connections to one database, shared by
//! the readers, the rare writes and the group-commit writer's own
//! connection; `synchronous_commit` as the server has it (on by default, so
//! a `COMMIT` returns once the transaction is on the server's disk, as
//! SQLite's `synchronous=FULL`); PostgreSQL's error classes for a database
//! that cannot be written or is unreachable; the store's `?` placeholders
//! numbered `$N`; integer and float results widened to the store's types.
//!
//! Migrations: `migrations/postgres` (the same schema as `migrations/sqlite`
//! in PostgreSQL's types: BIGINT, DOUBLE PRECISION, BYTEA, and TEXT with the
//! byte-wise "C" collation, so that text compares and sorts as in SQLite).

use std::borrow::Cow;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions as _, Row as _, TypeInfo as _, ValueRef as _};

use super::{ColumnIndex, Connection, Opened, Pool, WriterOptions};
use crate::store::Result;

/// How every write transaction starts, in one round trip: READ COMMITTED,
/// and at once the database's write lock, a transaction-scoped advisory lock
/// (a key of the database's own, "quorum" 1) that every writer of every
/// coordinator takes first and PostgreSQL releases at `COMMIT` or
/// `ROLLBACK` (or when the session ends).
///
/// So writes run one at a time over the database, as SQLite's `BEGIN
/// IMMEDIATE` runs them over a file, and every rule the store keeps by
/// reading then writing in one transaction holds across coordinators: a copy
/// is leased by one walk only, a host row read, changed in memory and written
/// back loses no other writer's change, a work unit is transitioned by one
/// pass at a time, and copies get ids in the order their transactions commit
/// (which the scheduler's frontiers rely on). The cost is measured in
/// BENCHMARKS.md; readers do not take it.
pub(in crate::store) const BEGIN_WRITE: &str = "BEGIN; SELECT pg_advisory_xact_lock(8175563235948036097)";

/// How every read transaction starts: one snapshot for all its statements.
pub(super) const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// Whether `text` names a PostgreSQL database.
pub(in crate::store) fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// The URL without its password, for logs and messages.
pub(super) fn redacted(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| rest.split_once('@').map(|(user, host)| (scheme, user, host)))
    {
        Some((scheme, user, host)) => {
            let user = user.split_once(':').map_or(user, |(name, _)| name);
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_owned(),
    }
}

/// Connects to the database at `url` and applies the migrations.
pub(super) async fn open(url: &str) -> Result<Opened> {
    let options = PgConnectOptions::from_str(url)?
        // The store's statements come in a few padded shapes each (see `bulk`).
        .statement_cache_capacity(1024)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.clone())
        .await?;
    sqlx::migrate!("../migrations/postgres").run(&pool).await?;
    let connection = options.connect().await?;
    Ok(Opened {
        pool: Pool::Postgres(pool),
        connection: Connection::Postgres(connection),
        writer_options: WriterOptions::Postgres(options),
    })
}

/// How often [`statistics`] looks at what changed since the planner's
/// statistics were last gathered.
const STATISTICS_POLL: Duration = Duration::from_secs(1);

/// A table's statistics are gathered once it has changed and has none (a
/// small table autovacuum would leave alone, `projects` or `batches`,
/// planned with PostgreSQL's defaults misleads every join through it), and
/// again once more than this many rows, plus [`STATISTICS_FRACTION`] of its
/// rows, were inserted, updated or deleted since they last were: a table
/// filled or rewritten by half (a submission), checked every second.
/// Smaller changes are left to autovacuum (10%, every minute): an `ANALYZE`
/// of `results` costs about 5 ms per 1,000 rows, and a dispatching project
/// changes a tenth of a small table every second (measured in BENCHMARKS.md).
const STATISTICS_ROWS: i64 = 50;
const STATISTICS_FRACTION: f64 = 0.5;

/// The advisory lock (a key of the database's own, "quorum" 2) held by the
/// one coordinator gathering statistics at a time.
const STATISTICS_LOCK: i64 = 8175563235948036098;

/// Keeps the planner's statistics of the store's tables current: every
/// [`STATISTICS_POLL`], `ANALYZE` each table never analysed that changed,
/// and each changed by more than [`STATISTICS_ROWS`] +
/// [`STATISTICS_FRACTION`] of its rows since its last analysis. Autovacuum
/// analyses too, but only every minute (`autovacuum_naptime`): a table
/// filled by a submission a moment ago still looks empty to the planner,
/// which then walks the unsent copies through the wrong index (a whole project's rows read, joined and sorted to hand
/// out a page: 100 ms instead of 1, measured in BENCHMARKS.md). One
/// coordinator of a database does it at a time; ends when the pool is closed.
pub(in crate::store) async fn statistics(pool: sqlx::PgPool) {
    let mut poll = tokio::time::interval(STATISTICS_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        poll.tick().await;
        if pool.is_closed() {
            break;
        }
        match analyze_changed(&pool).await {
            Ok(()) => {}
            Err(sqlx::Error::PoolClosed) => break,
            Err(error) => tracing::warn!(%error, "gathering the planner's statistics failed; trying again later"),
        }
    }
}

/// One pass of [`statistics`], in one transaction holding [`STATISTICS_LOCK`]
/// (another coordinator's pass under way: nothing to do).
async fn analyze_changed(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(STATISTICS_LOCK).fetch_one(&mut *tx).await?;
    if !locked {
        return tx.rollback().await;
    }
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(s.relname) FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
         WHERE s.schemaname = current_schema() AND s.relname != '_sqlx_migrations' \
         AND s.n_mod_since_analyze > 0 AND (COALESCE(s.last_analyze, s.last_autoanalyze) IS NULL \
         OR s.n_mod_since_analyze > $1 + $2 * GREATEST(c.reltuples, 0))",
    )
    .bind(STATISTICS_ROWS)
    .bind(STATISTICS_FRACTION)
    .fetch_all(&mut *tx)
    .await?;
    for table in stale {
        // The name is PostgreSQL's own, quoted by it.
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}"))).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// The channel on which the coordinators of one database say that work
/// units may have changed (`NOTIFY`), each notification carrying the
/// announcing coordinator's tag.
const CHANGES_CHANNEL: &str = "quorum_changes";

/// Tells every coordinator listening on the database (`LISTEN`) that work
/// units may have changed.
pub(in crate::store) async fn announce_changes(pool: &sqlx::PgPool, tag: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANGES_CHANNEL).bind(tag).execute(pool).await?;
    Ok(())
}

/// A connection of its own listening for other coordinators' announcements.
pub(in crate::store) struct ChangeListener {
    listener: sqlx::postgres::PgListener,
    /// This coordinator's tag: its own announcements are not news.
    own: String,
}

impl ChangeListener {
    pub async fn start(pool: &sqlx::PgPool, own: &str) -> Result<ChangeListener> {
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(ChangeListener { listener, own: own.to_owned() })
    }

    /// Returns once another coordinator announced changes, or once the
    /// listening connection was lost and made again (announcements may have
    /// been missed meanwhile).
    pub async fn next(&mut self) -> Result<()> {
        loop {
            match self.listener.try_recv().await? {
                Some(notification) if notification.payload() == self.own => continue,
                Some(_) | None => return Ok(()),
            }
        }
    }
}

/// The store's SQL as PostgreSQL statements, each with its own values: the
/// store sends several statements in one call where SQLite runs them in one
/// go (`UPDATE ...; INSERT ...`), which PostgreSQL's prepared statements do
/// not allow, so they are split at each `;` and run one after the other.
/// Each statement's `?` are numbered in order (`$1`, `$2`...), `?N` become
/// `$N`; string literals, quoted names and comments are left as they are.
pub(super) fn statements(
    sql: Cow<'static, str>,
    values: Vec<super::Value>,
) -> Vec<(Cow<'static, str>, Vec<super::Value>)> {
    if !sql.contains('?') && !sql.contains(';') {
        return vec![(sql, values)];
    }
    let mut statements = Vec::new();
    let mut out = String::with_capacity(sql.len() + 16);
    // The values of the statement being read: its `?` take the next ones in
    // order; `?N` is the call's N-th value in every statement (as in SQLite).
    let (mut next, mut bare, mut highest) = (0, 0, 0);
    let mut finish = |out: &mut String, bare: &mut usize, highest: &mut usize, next: &mut usize| {
        let statement = std::mem::take(out);
        if !statement.trim().is_empty() {
            let taken: Vec<super::Value> = if *highest > 0 {
                values.iter().take(*highest).cloned().collect()
            } else {
                values.iter().skip(*next).take(*bare).cloned().collect()
            };
            statements.push((Cow::Owned(statement), taken));
        }
        *next += *bare;
        (*bare, *highest) = (0, 0);
    };
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for inner in chars.by_ref() {
                    if inner == '\n' {
                        out.push(' ');
                        break;
                    }
                }
            }
            '?' => {
                out.push('$');
                if chars.peek().is_some_and(char::is_ascii_digit) {
                    let mut n = 0;
                    while let Some(digit) = chars.next_if(char::is_ascii_digit) {
                        out.push(digit);
                        n = n * 10 + digit.to_digit(10).map_or(0, |d| d as usize);
                    }
                    highest = highest.max(n);
                } else {
                    bare += 1;
                    out.push_str(&bare.to_string());
                }
            }
            ';' => finish(&mut out, &mut bare, &mut highest, &mut next),
            c => out.push(c),
        }
    }
    finish(&mut out, &mut bare, &mut highest, &mut next);
    if statements.is_empty() {
        statements.push((Cow::Borrowed(""), Vec::new()));
    }
    statements
}

/// The name of column `index`'s type in `row`.
fn type_name<I: ColumnIndex>(row: &PgRow, index: I) -> Result<String, sqlx::Error> {
    Ok(row.try_get_raw(index)?.type_info().name().to_owned())
}

/// An integer column: `INT8`, or a narrower integer or a boolean (what
/// PostgreSQL gives for literals, `CASE`s and comparisons where SQLite gives
/// a 64-bit integer).
pub(super) fn integer<I: ColumnIndex>(row: &PgRow, index: I) -> Result<i64, sqlx::Error> {
    match type_name(row, index)?.as_str() {
        "INT4" => row.try_get::<i32, _>(index).map(i64::from),
        "INT2" => row.try_get::<i16, _>(index).map(i64::from),
        "BOOL" => row.try_get::<bool, _>(index).map(i64::from),
        _ => row.try_get(index),
    }
}

/// A float column: `FLOAT8`, `FLOAT4` or an integer.
pub(super) fn float<I: ColumnIndex>(row: &PgRow, index: I) -> Result<f64, sqlx::Error> {
    match type_name(row, index)?.as_str() {
        "FLOAT4" => row.try_get::<f32, _>(index).map(f64::from),
        "INT8" | "INT4" | "INT2" => integer(row, index).map(|value| value as f64),
        _ => row.try_get(index),
    }
}

/// A boolean column: `BOOL`, or an integer (the store keeps flags as 0/1).
pub(super) fn boolean<I: ColumnIndex>(row: &PgRow, index: I) -> Result<bool, sqlx::Error> {
    match type_name(row, index)?.as_str() {
        "BOOL" => row.try_get(index),
        _ => integer(row, index).map(|value| value != 0),
    }
}

/// The SQLSTATE of a PostgreSQL error.
fn sqlstate(error: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(database) = error else { return None };
    database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().map(|error| error.code().to_owned())
}

/// The message of a write PostgreSQL could not do now: its disk is full
/// (class 53, insufficient resources) or it is read-only (25006: a standby).
pub(super) fn cannot_write(error: &sqlx::Error) -> Option<String> {
    let code = sqlstate(error)?;
    (code.starts_with("53") || code == "25006").then(|| error.to_string())
}

/// Whether PostgreSQL went away or is not there: the connection broke
/// (class 08) or the server is shutting down or starting (57P01-57P03).
pub(super) fn is_unreachable(error: &sqlx::Error) -> bool {
    // Class 08 but 08P01 (a protocol violation: the store's own error).
    sqlstate(error).is_some_and(|code| {
        (code.starts_with("08") && code != "08P01") || matches!(code.as_str(), "57P01" | "57P02" | "57P03")
    })
}

/// Whether a transaction failed only because another one ran at the same
/// time (a serialization failure or a deadlock): running it again is right.
pub(super) fn is_conflict(error: &sqlx::Error) -> bool {
    matches!(sqlstate(error).as_deref(), Some("40001" | "40P01"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(sql: &'static str, n: i64) -> Vec<(String, Vec<i64>)> {
        let values = (1..=n).map(super::super::Value::Int).collect();
        statements(sql.into(), values)
            .into_iter()
            .map(|(sql, values)| {
                let values = values.into_iter().map(|v| match v {
                    super::super::Value::Int(i) => i,
                    other => panic!("{other:?}"),
                });
                (sql.into_owned(), values.collect())
            })
            .collect()
    }

    #[test]
    fn placeholders_are_numbered_outside_literals_per_statement() {
        assert_eq!(split("SELECT 1", 0), [("SELECT 1".to_owned(), vec![])]);
        assert_eq!(split("a = ? AND b = ?", 2), [("a = $1 AND b = $2".to_owned(), vec![1, 2])]);
        assert_eq!(
            split("a = ?1 OR (?2 IS NULL OR b = ?2)", 2),
            [("a = $1 OR ($2 IS NULL OR b = $2)".to_owned(), vec![1, 2])]
        );
        assert_eq!(
            split("x = '?;' AND \"q?\" = ? -- why?\n AND y = ?", 2),
            [("x = '?;' AND \"q?\" = $1   AND y = $2".to_owned(), vec![1, 2])]
        );
        assert_eq!(
            split("DELETE FROM a WHERE p = ?1; DELETE FROM b WHERE p = ?1 AND q != ?2", 2),
            [
                ("DELETE FROM a WHERE p = $1".to_owned(), vec![1]),
                (" DELETE FROM b WHERE p = $1 AND q != $2".to_owned(), vec![1, 2])
            ]
        );
        assert_eq!(
            split("UPDATE a SET x = ? WHERE id = ?; INSERT INTO b VALUES (?); ", 3),
            [
                ("UPDATE a SET x = $1 WHERE id = $2".to_owned(), vec![1, 2]),
                (" INSERT INTO b VALUES ($1)".to_owned(), vec![3])
            ]
        );
    }

    /// Runs `sql` on `connection`, then makes its backend report its
    /// table statistics at once (PostgreSQL 15 flushes them at most once a
    /// second otherwise).
    async fn change(connection: &mut sqlx::PgConnection, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut *connection).await.unwrap();
        sqlx::query("SELECT pg_stat_force_next_flush()").execute(&mut *connection).await.unwrap();
        sqlx::query("SELECT 1").execute(&mut *connection).await.unwrap();
    }

    async fn analyses(pool: &sqlx::PgPool, table: &str) -> i64 {
        sqlx::query_scalar("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = $1")
            .bind(table)
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn tables_changed_since_their_statistics_are_analyzed_small_ones_at_once() {
        use sqlx::Connection as _;
        let database = crate::store::test_databases::new_database(crate::store::test_databases::Engine::Postgres).await;
        let super::super::Location::Postgres(url) = &database.location else { unreachable!() };
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
        change(
            &mut connection,
            "CREATE TABLE small (x BIGINT); CREATE TABLE big (x BIGINT); CREATE TABLE idle (x BIGINT)",
        )
        .await;
        change(&mut connection, "INSERT INTO small VALUES (1); INSERT INTO big SELECT generate_series(1, 1000)").await;
        analyze_changed(&pool).await.unwrap();
        // Never analysed and changed, however little: both; untouched: not.
        assert_eq!((analyses(&pool, "small").await, analyses(&pool, "big").await), (1, 1));
        assert_eq!(analyses(&pool, "idle").await, 0);

        // 1,000 rows: again after more than 50 + 500 changes, not before.
        change(&mut connection, "UPDATE big SET x = x + 1 WHERE x <= 550").await;
        analyze_changed(&pool).await.unwrap();
        assert_eq!(analyses(&pool, "big").await, 1, "550 changes of 1,000 rows");
        change(&mut connection, "UPDATE big SET x = x + 1 WHERE x = 1000").await;
        analyze_changed(&pool).await.unwrap();
        assert_eq!(analyses(&pool, "big").await, 2, "551 changes of 1,000 rows");
        assert_eq!(analyses(&pool, "small").await, 1, "unchanged since");

        // Another coordinator's pass under way: this one does nothing.
        let mut other = pool.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(STATISTICS_LOCK).execute(&mut *other).await.unwrap();
        change(&mut connection, "UPDATE big SET x = x + 1").await;
        analyze_changed(&pool).await.unwrap();
        assert_eq!(analyses(&pool, "big").await, 2);
        other.rollback().await.unwrap();
        analyze_changed(&pool).await.unwrap();
        assert_eq!(analyses(&pool, "big").await, 3);
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redacted("postgres://quorum:secret@db:5432/q"), "postgres://quorum@db:5432/q");
        assert_eq!(redacted("postgres://quorum@db/q"), "postgres://quorum@db/q");
        assert_eq!(redacted("postgresql://db/q"), "postgresql://db/q");
    }
}
