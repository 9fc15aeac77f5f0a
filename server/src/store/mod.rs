//! The coordinator's store: SQLite through sqlx, spoken to in domain terms.
//!
//! This is the only module that imports `sqlx`. Its API is what the
//! coordinator needs (`request_work`, `record_reports`, `run_transitioner`...),
//! never table operations, so a PostgreSQL backend is a second implementation
//! of the same API checked by the same tests. Every method that changes more
//! than one row does it in one transaction.
//!
//! Layout:
//! - `submit`: apps, projects and batches of work units.
//! - `scheduling`: hosts, and the scheduler's calls, run a group at a time (reports, lost copies, leases, aborts).
//! - `hosts`: host rows read once per transaction, changed in memory, written back once.
//! - `transitions`: loading a work unit, running the lifecycle rules, persisting the result; deadlines; cancellation.
//! - `holds`: the facts behind "why is nothing running?" (`domain::holds`).
//! - `reads`: status counts and listings for the admin service.
//! - `rows`: conversions between rows and domain types.
//! - `writer`: group commit of the scheduler's writes (one thread, one transaction for many RPCs).
//! - `frontiers`: where each host's walk through the unsent copies starts (past what it can never take).
//! - `bulk`: helpers for set-based statements (id lists, multi-row `VALUES`, padded to a few shapes).
//! - `signing`: signatures of projects' app modules.
//! - `files`: input files of projects and work units (which are stored, who may download them), output files of results.
//! - `auth`: API tokens (roles, revocation, the first-start admin token).

mod auth;
mod bulk;
mod files;
mod frontiers;
mod holds;
mod hosts;
mod reads;
mod rows;
mod scheduling;
mod signing;
mod submit;
mod transitions;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::domain::lifecycle::ReportError;
use crate::domain::names::Account;
use crate::domain::{HostId, Timestamp};
use crate::validators::{self, Validators};

pub use auth::{ApiTokenInfo, TokenKind};
pub use files::{AssignedFile, ReportedFile};
pub use reads::{
    BatchInfo, CanonicalPage, CanonicalResult, ErrorGroup, HostCounts, HostInfo, ProjectStatus, ResultFilter,
    ResultInfo, WorkUnitInfo,
};
pub use scheduling::{Assignment, NewHost, ReportInput, ReportSummary, WorkReply, WorkRequest};
pub use submit::{NewProject, NewWorkUnit};
pub use transitions::{CancelScope, DeletedProject};
pub use writer::WriterMetrics;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("project {0:?} not found")]
    ProjectNotFound(String),
    #[error("project {0:?} already exists")]
    ProjectExists(String),
    #[error("project {0:?} is cancelled")]
    ProjectCancelled(String),
    #[error(
        "project {project:?} has {n_in_progress} copies in progress on hosts: cancel it first (hosts abort them at \
         their next contact, or they end at their deadlines), then delete it once none is in progress"
    )]
    CopiesInProgress { project: String, n_in_progress: u64 },
    #[error("work unit name {name:?} is used twice in project {project:?}")]
    DuplicateWorkUnit { project: String, name: String },
    #[error("batch {batch} of project {project:?} not found")]
    BatchNotFound { project: String, batch: i64 },
    #[error("work unit {work_unit} of project {project:?} not found")]
    WorkUnitNotFound { project: String, work_unit: i64 },
    #[error("work unit {work_unit} is {state}, not failed: only failed work units can be retried")]
    NotFailed { work_unit: i64, state: String },
    #[error("project {0:?} has no failed work units to retry")]
    NothingToRetry(String),
    #[error("app {0} not found")]
    AppNotFound(String),
    #[error("file {name:?} ({digest}) was not uploaded: upload it first (UploadFile)")]
    FileNotUploaded { name: String, digest: String },
    #[error("file {name:?} ({digest}) is given as {given} bytes, but the file stored under that digest has {stored}")]
    FileSizeMismatch { name: String, digest: String, given: u64, stored: u64 },
    #[error(transparent)]
    Files(#[from] crate::domain::files::FileError),
    #[error("host token not recognised")]
    UnknownHost,
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("output of result {result} is {size} bytes, above the project's limit of {limit}")]
    OutputTooLarge { result: i64, size: usize, limit: u64 },
    #[error(transparent)]
    Validator(#[from] validators::Error),
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    #[error("the transaction this request was grouped in failed: {0}")]
    GroupCommit(String),
    #[error("the coordinator cannot write its database now ({0}); nothing of this request was kept: try again later")]
    CannotWrite(String),
    #[error("the store is closed")]
    Closed,
    #[error("cannot start the writer thread: {0}")]
    Writer(std::io::Error),
    #[error("{path}: {source}")]
    File { path: std::path::PathBuf, source: std::io::Error },
    #[error(
        "the database {path} cannot be written ({reason}): the coordinator must be able to write it \
         and to create its -wal and -shm files beside it"
    )]
    NotWritable { path: std::path::PathBuf, reason: String },
    #[error("database: {0}")]
    Database(sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every database error goes through here: a write SQLite could not do
/// (the disk is full, or a write failed: `SQLITE_FULL`, `SQLITE_IOERR_WRITE`)
/// is [`Error::CannotWrite`], a condition that passes (callers retry; the
/// writer reopens its connection); the rest stay [`Error::Database`].
impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Error {
        const SQLITE_FULL: i32 = 13;
        const SQLITE_IOERR_WRITE: i32 = 778;
        let code = match &error {
            sqlx::Error::Database(database) => database.code().and_then(|code| code.parse::<i32>().ok()),
            _ => None,
        };
        match code {
            Some(code) if code & 0xff == SQLITE_FULL || code == SQLITE_IOERR_WRITE => {
                let message = match &error {
                    sqlx::Error::Database(database) => database.message().to_owned(),
                    other => other.to_string(),
                };
                Error::CannotWrite(message)
            }
            _ => Error::Database(error),
        }
    }
}

/// The coordinator's database.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Custom validator modules, compiled once.
    validators: Validators,
    /// Host tokens already seen, by hash.
    host_tokens: Arc<HostTokens>,
    /// The writer task that group-commits the scheduler's writes.
    writer: tokio::sync::mpsc::Sender<writer::Job>,
    /// Where each host's walk through the unsent copies starts.
    frontiers: Arc<frontiers::Frontiers>,
    /// What the writer records of each group (exported by `metrics`).
    writer_metrics: WriterMetrics,
    /// The database file.
    path: Arc<Path>,
}

/// Rewrites stored accounts in their canonical form ([`Account::canonical`]),
/// in one transaction: the data migration of hosts registered before
/// accounts were canonical, which SQL cannot express (SQLite's `lower` only
/// knows ASCII). Idempotent, and cheap once done: it reads the distinct
/// accounts (an index) and writes nothing when all are canonical.
async fn canonicalize_accounts(pool: &SqlitePool) -> Result<()> {
    let accounts: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT account FROM hosts WHERE account != ''").fetch_all(pool).await?;
    let changed: Vec<(String, String)> = accounts
        .into_iter()
        .filter_map(|account| {
            let canonical = Account::canonical(&account);
            (canonical != account).then_some((account, canonical))
        })
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for (account, canonical) in &changed {
        sqlx::query("UPDATE hosts SET account = ? WHERE account = ?")
            .bind(canonical)
            .bind(account)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    tracing::info!(n_accounts = changed.len(), "accounts rewritten in their canonical form");
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the SQLite file at `path` and applies the migrations.
    ///
    /// Durability: WAL with `synchronous=FULL`, so a report acknowledged to a host
    /// survives a power cut (`NORMAL` could lose the last transactions).
    pub async fn open(path: &Path) -> Result<Store> {
        use rand::Rng as _;
        Store::open_with_secret(path, rand::rng().next_u64()).await
    }

    /// Opens the store with a chosen secret (mixed into adaptive replication's
    /// draws, so hosts cannot predict which work units will be accepted on a
    /// single result), so that simulations are reproducible.
    pub async fn open_with_secret(path: &Path, secret: u64) -> Result<Store> {
        make_private(path)?;
        Store::open_writable(path, secret).await.map_err(|error| not_writable(path, error))
    }

    async fn open_writable(path: &Path, secret: u64) -> Result<Store> {
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
        sqlx::migrate!("../migrations").run(&pool).await?;
        // A real write, so that a database opened read-only is refused now,
        // not at the first report: the header's user_version, unchanged.
        let version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&pool).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA user_version = {version}"))).execute(&pool).await?;
        canonicalize_accounts(&pool).await?;
        let validators = Validators::default();
        // The writer keeps the pages it works on (the recent rows and the
        // indexes' right edges) in its own cache: up to 64 MiB instead of
        // SQLite's 2 MiB. Readers' caches are reset by every commit anyway.
        let writer_options = options.pragma("cache_size", "-65536");
        let connection = writer_options.connect().await?;
        let frontiers = Arc::new(frontiers::Frontiers::default());
        let writer_metrics = WriterMetrics::default();
        let writer = writer::spawn(
            connection,
            writer_options,
            validators.clone(),
            secret,
            frontiers.clone(),
            writer_metrics.clone(),
        )?;
        tokio::spawn(checkpoints(pool.clone(), path.to_owned()));
        Ok(Store {
            pool,
            validators,
            host_tokens: Arc::default(),
            writer,
            frontiers,
            writer_metrics,
            path: Arc::from(path),
        })
    }

    /// Hands `call` to the writer task and waits for its answer (sent once
    /// the group it ran in is committed).
    async fn submit_write(&self, call: scheduling::Call, now: Timestamp) -> Result<scheduling::Answer> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer.send(writer::Job::Write(writer::Request { call, now, reply })).await.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Starts a write transaction. `BEGIN IMMEDIATE` takes SQLite's write lock
    /// at once (waiting up to the busy timeout), so two transactions that read
    /// then write cannot fail on upgrading their snapshot.
    async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The writer's histograms (group sizes and durations), shared: they
    /// fill as the writer commits.
    pub fn writer_metrics(&self) -> &WriterMetrics {
        &self.writer_metrics
    }

    /// The bytes the database takes on disk: its file and its write-ahead log.
    pub fn size_on_disk(&self) -> Result<u64> {
        let mut total = 0;
        for suffix in ["", "-wal"] {
            let file = beside(&self.path, suffix);
            match std::fs::metadata(&file) {
                Ok(metadata) => total += metadata.len(),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::File { path: file, source }),
            }
        }
        Ok(total)
    }

    /// Closes every connection (after the last transaction has committed).
    pub async fn close(&self) {
        let (done, closed) = tokio::sync::oneshot::channel();
        if self.writer.send(writer::Job::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
        self.pool.close().await;
    }
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
fn make_private(path: &Path) -> Result<()> {
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
async fn checkpoints(pool: SqlitePool, path: PathBuf) {
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

/// The host ids of the host tokens seen so far, by token hash. Host tokens
/// are never changed nor reused, so an entry never goes stale; the map is
/// emptied if it reaches [`HostTokens::CAPACITY`] entries (about 40 MB), and
/// refills from the database as hosts call.
#[derive(Default)]
struct HostTokens(Mutex<HashMap<String, HostId>>);

impl HostTokens {
    const CAPACITY: usize = 1 << 18;

    fn get(&self, token_hash: &str) -> Option<HostId> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(token_hash).copied()
    }

    fn insert(&self, token_hash: &str, host: HostId) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= Self::CAPACITY {
            map.clear();
        }
        map.insert(token_hash.to_owned(), host);
    }
}

#[cfg(test)]
mod tests;

/// An error opening the database, as [`Error::NotWritable`] when SQLite
/// says it cannot write (a read-only file, folder or file system).
fn not_writable(path: &Path, error: Error) -> Error {
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
