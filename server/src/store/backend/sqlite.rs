//! The SQLite backend: one file in WAL mode with `synchronous=FULL`, a small
//! pool for readers and rare writes, and one write connection owned by the
//! group-commit writer (`writer`); background WAL checkpoints; SQLite's
//! error codes for a database that cannot be written.
//!
//! Migrations: `migrations/sqlite`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{Connection, Opened, Pool, WriterOptions};
use crate::store::{Error, Result};

/// The SQLite schema's migrations, as this coordinator applies them.
pub(in crate::store) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Opens (creating if needed) the database file at `path` and applies the
/// migrations; returns the pool, the writer's connection and how to open it
/// again.
///
/// Durability: WAL with `synchronous=FULL`, so a report acknowledged to a host
/// survives a power cut (`NORMAL` could lose the last transactions).
pub(super) async fn open(path: &Path) -> Result<Opened> {
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(30))
        // Set-based statements come in a few padded shapes each (see
        // `bulk`); all of them stay prepared.
        .statement_cache_capacity(1024)
        // No connection checkpoints the WAL when it commits (a checkpoint
        // copies pages to the database and fsyncs it: tens of
        // milliseconds added to the unlucky commit and to every call of
        // its group); `checkpoints` does it in the background instead.
        .pragma("wal_autocheckpoint", "0")
        .pragma("journal_size_limit", (CHECKPOINT_WAL_BYTES / 2).to_string());
    // SQLite has one writer; a small pool serves concurrent readers and
    // the rare writes (submission, cancellation, the transitioner); the
    // scheduler's writes go through the writer task's own connection.
    let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options.clone()).await?;
    MIGRATOR.run(&pool).await?;
    // A real write, so that a database opened read-only is refused now,
    // not at the first report: the header's user_version, unchanged.
    let version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&pool).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA user_version = {version}"))).execute(&pool).await?;
    // The writer keeps the pages it works on (the recent rows and the
    // indexes' right edges) in its own cache: up to 64 MiB instead of
    // SQLite's 2 MiB. Readers' caches are reset by every commit anyway.
    let writer_options = options.pragma("cache_size", "-65536");
    let connection = writer_options.connect().await?;
    Ok(Opened {
        pool: Pool::Sqlite(pool),
        connection: Connection::Sqlite(connection),
        writer_options: WriterOptions::Sqlite(writer_options),
    })
}

/// Starts a write transaction on the pool. `BEGIN IMMEDIATE` takes SQLite's
/// write lock at once (waiting up to the busy timeout), so two transactions
/// that read then write cannot fail on upgrading their snapshot.
pub(super) async fn begin_write(pool: &sqlx::SqlitePool) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// The message of a write SQLite could not do (the disk is full, or a write
/// failed: `SQLITE_FULL`, `SQLITE_IOERR_WRITE`): a condition that passes
/// (callers retry; the writer reopens its connection).
pub(super) fn cannot_write(error: &sqlx::Error) -> Option<String> {
    const SQLITE_FULL: i32 = 13;
    const SQLITE_IOERR_WRITE: i32 = 778;
    let sqlx::Error::Database(database) = error else { return None };
    database.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    let code = database.code().and_then(|code| code.parse::<i32>().ok())?;
    (code & 0xff == SQLITE_FULL || code == SQLITE_IOERR_WRITE).then(|| database.message().to_owned())
}

/// An error opening the database, as [`Error::NotWritable`] when SQLite
/// says it cannot write (a read-only file, folder or file system).
pub(in crate::store) fn not_writable(path: &Path, error: Error) -> Error {
    const SQLITE_READONLY: i32 = 8;
    const SQLITE_CANTOPEN: i32 = 14;
    let code = match &error {
        Error::Database(sqlx::Error::Database(database)) => database.code(),
        Error::Migrate(sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(database))) => database.code(),
        _ => None,
    };
    let primary = code.and_then(|code| code.parse::<i32>().ok()).map(|code| code & 0xff);
    match (primary, &error) {
        (Some(SQLITE_READONLY | SQLITE_CANTOPEN), Error::Database(sqlx::Error::Database(database)))
        | (
            Some(SQLITE_READONLY | SQLITE_CANTOPEN),
            Error::Migrate(sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(database))),
        ) => Error::NotWritable { path: path.to_owned(), reason: database.message().to_owned() },
        _ => error,
    }
}

/// The bytes the database at `path` takes on disk: its file and its write-ahead log.
pub(in crate::store) fn size_on_disk(path: &Path) -> Result<u64> {
    let mut total = 0;
    for suffix in ["", "-wal"] {
        let file = beside(path, suffix);
        match std::fs::metadata(&file) {
            Ok(metadata) => total += metadata.len(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::File { path: file, source }),
        }
    }
    Ok(total)
}

/// The file SQLite keeps beside the database `path` under `suffix`
/// (`-wal`, `-shm`; the database itself for "").
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates the database file at `path` readable and writable by its owner
/// only (0600) when it does not exist; SQLite gives the WAL and shared-memory
/// files it creates beside it the same mode. An existing database, WAL or
/// shared-memory file open to others (it holds hosts' token hashes and every
/// result) is narrowed to 0600 with a warning.
pub(in crate::store) fn make_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
        match created {
            Ok(_) => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(Error::File { path: path.to_owned(), source: error }),
        }
        for suffix in ["", "-wal", "-shm"] {
            let file = beside(path, suffix);
            let Ok(metadata) = std::fs::metadata(&file) else { continue };
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))
                    .map_err(|source| Error::File { path: file.clone(), source })?;
                tracing::warn!(file = %file.display(), mode = format!("{mode:o}"), "database file was open to other users; narrowed to owner only");
            }
        }
    }
    Ok(())
}

/// How often the checkpointer looks at the WAL's size.
const CHECKPOINT_POLL: Duration = Duration::from_millis(250);
/// The WAL is checkpointed once it is this large...
const CHECKPOINT_WAL_BYTES: u64 = 64 << 20;
/// ... or this long after the last checkpoint, whichever comes first.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);

/// Checkpoints the WAL of the database at `path` on a pool connection, in
/// `PASSIVE` mode: it copies what it can without waiting for (or blocking)
/// the writer or readers, so commits never pay for it. A checkpoint ends
/// with an fsync of the database file, which slows the writer's own fsyncs
/// while it runs: checkpoints are few (every 64 MiB of WAL or 30 s), and
/// `journal_size_limit` keeps the WAL file from staying large after a burst.
/// Ends when the pool is closed.
pub(in crate::store) async fn checkpoints(pool: sqlx::SqlitePool, path: PathBuf) {
    let wal = beside(&path, "-wal");
    let mut poll = tokio::time::interval(CHECKPOINT_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    loop {
        poll.tick().await;
        if pool.is_closed() {
            break;
        }
        let size = tokio::fs::metadata(&wal).await.map(|m| m.len()).unwrap_or(0);
        if size < CHECKPOINT_WAL_BYTES && last.elapsed() < CHECKPOINT_INTERVAL {
            continue;
        }
        last = tokio::time::Instant::now();
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            Ok(_) => {}
            Err(sqlx::Error::PoolClosed) => break,
            Err(error) => tracing::warn!(%error, "WAL checkpoint failed; trying again later"),
        }
    }
}
