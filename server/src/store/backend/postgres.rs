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

/// The advisory lock (a key of the database's own) taken by transactions
/// that give work units ids of the store's choosing.
pub(super) const WORK_UNIT_IDS_LOCK: i64 = 0x7175_6f72_756d_0001; // "quorum", 1

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

/// The advisory lock one coordinator holds on its database.
const COORDINATOR_LOCK: i64 = 0x7175_6f72_756d_0000; // "quorum", 0

/// The connection holding a coordinator's lock on its database.
pub(in crate::store) struct LockConnection(sqlx::PgConnection);

/// Takes the coordinator's lock on the database at `url`, without waiting.
pub(in crate::store) async fn lock_exclusive(url: &str) -> Result<LockConnection> {
    let mut connection = PgConnectOptions::from_str(url)?.connect().await?;
    let taken: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(COORDINATOR_LOCK).fetch_one(&mut connection).await?;
    if !taken {
        return Err(crate::store::Error::Locked(redacted(url)));
    }
    Ok(LockConnection(connection))
}

/// How often a coordinator checks that the connection holding its lock is alive.
const LOCK_CHECK: Duration = Duration::from_secs(5);

/// Keeps the coordinator's lock on the database at `url`: checks the
/// connection holding it every few seconds; once it broke (PostgreSQL
/// restarted: the lock went with the session), takes the lock again as soon
/// as the server is back. Returns only if another coordinator took it
/// meanwhile ([`crate::store::Error::Locked`]).
pub(in crate::store) async fn keep_lock(url: String, lock: LockConnection) -> crate::store::Error {
    let mut connection = lock.0;
    let mut tick = tokio::time::interval(LOCK_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if sqlx::query("SELECT 1").execute(&mut connection).await.is_ok() {
            continue;
        }
        tracing::warn!(db = %redacted(&url), "lost the connection holding the coordinator's lock; taking it again");
        loop {
            tick.tick().await;
            match lock_exclusive(&url).await {
                Ok(lock) => {
                    connection = lock.0;
                    tracing::info!(db = %redacted(&url), "the coordinator's lock is held again");
                    break;
                }
                Err(error @ crate::store::Error::Locked(_)) => return error,
                Err(error) => tracing::debug!(%error, "cannot take the coordinator's lock yet"),
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

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redacted("postgres://quorum:secret@db:5432/q"), "postgres://quorum@db:5432/q");
        assert_eq!(redacted("postgres://quorum@db/q"), "postgres://quorum@db/q");
        assert_eq!(redacted("postgresql://db/q"), "postgresql://db/q");
    }
}
