//! The coordinator's store: a database through sqlx (SQLite, or PostgreSQL), spoken to in domain terms.
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
//! - `changes`: what the coordinators of one database tell each other (work units may have changed).
//! - `bulk`: helpers for set-based statements (id lists, multi-row `VALUES`, padded to a few shapes).
//! - `signing`: signatures of projects' app modules.
//! - `files`: input files of projects and work units (which are stored, who may download them), output files of results.
//! - `auth`: API tokens (roles, revocation, the first-start admin token).
//! - `copy`: copying a stopped SQLite coordinator's database into an empty PostgreSQL one, verified (`quorum-server migrate`).
//! - `backend`: the seam to the database engines: statements, rows, transactions, and what is each engine's own (`backend::sqlite`, `backend::postgres`).
//! - `test_databases` (tests only): a SQLite file or a PostgreSQL database per test.

mod auth;
mod backend;
mod bulk;
mod changes;
pub mod copy;
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
use std::sync::{Arc, Mutex};

pub use backend::Location;
use backend::{Pool, query, query_scalar};

use crate::domain::lifecycle::ReportError;
use crate::domain::names::Account;
use crate::domain::{HostId, Timestamp};
use crate::validators::{self, Validators};

pub use auth::{ApiTokenInfo, TokenKind};
pub use changes::ChangesElsewhere;
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
    #[error("the coordinator's database cannot be reached now ({0}); nothing of this request was kept: try again")]
    Unavailable(String),
    #[error(
        "the request conflicted with another coordinator's at the same moment ({0}); nothing of it was kept: try again"
    )]
    Conflict(String),
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

/// Every database error goes through here: a transaction that conflicted
/// with another coordinator's (PostgreSQL's serialization failures and
/// deadlocks) is [`Error::Conflict`]; a database server that cannot be
/// reached is [`Error::Unavailable`]; a write the engine could not do (a
/// full disk, a failed write, a read-only standby: `backend::cannot_write`)
/// is [`Error::CannotWrite`]. All three pass (callers retry; the writer
/// reopens its connection); the rest stay [`Error::Database`].
impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Error {
        if backend::is_conflict(&error) {
            return Error::Conflict(error.to_string());
        }
        if backend::is_unreachable(&error) {
            return Error::Unavailable(error.to_string());
        }
        match backend::cannot_write(&error) {
            Some(message) => Error::CannotWrite(message),
            None => Error::Database(error),
        }
    }
}

/// The coordinator's database.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// Custom validator modules, compiled once.
    validators: Validators,
    /// Host tokens already seen, by hash.
    host_tokens: Arc<HostTokens>,
    /// The writer task that group-commits the scheduler's writes.
    writer: tokio::sync::mpsc::Sender<writer::Job>,
    /// Where each host's walk through the unsent copies starts (the
    /// writer's; tests look at it).
    #[cfg(test)]
    frontiers: Arc<frontiers::Frontiers>,
    /// What the writer records of each group (exported by `metrics`).
    writer_metrics: WriterMetrics,
    /// Where the database is.
    location: Arc<Location>,
    /// This coordinator among the others of its database (random, per open).
    tag: Arc<str>,
}

/// Rewrites stored accounts in their canonical form ([`Account::canonical`]),
/// in one transaction: the data migration of hosts registered before
/// accounts were canonical, which SQL cannot express (SQLite's `lower` only
/// knows ASCII). Idempotent, and cheap once done: it reads the distinct
/// accounts (an index) and writes nothing when all are canonical.
async fn canonicalize_accounts(pool: &Pool) -> Result<()> {
    let accounts: Vec<String> =
        query_scalar("SELECT DISTINCT account FROM hosts WHERE account != ''").fetch_all(pool).await?;
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
    let mut tx = pool.begin_write().await?;
    for (account, canonical) in &changed {
        query("UPDATE hosts SET account = ? WHERE account = ?").bind(canonical).bind(account).execute(&mut tx).await?;
    }
    tx.commit().await?;
    tracing::info!(n_accounts = changed.len(), "accounts rewritten in their canonical form");
    Ok(())
}

impl Store {
    /// Opens the store at `location` (a SQLite file, created if needed, or
    /// a PostgreSQL database) and applies the migrations.
    ///
    /// Durability: SQLite in WAL with `synchronous=FULL`; PostgreSQL with the
    /// server's `synchronous_commit` (on by default). Either way a report
    /// acknowledged to a host survives a power cut.
    pub async fn open(location: impl Into<Location>) -> Result<Store> {
        use rand::Rng as _;
        Store::open_with_secret(location, rand::rng().next_u64()).await
    }

    /// Opens the store with a chosen secret (mixed into adaptive replication's
    /// draws, so hosts cannot predict which work units will be accepted on a
    /// single result), so that simulations are reproducible.
    pub async fn open_with_secret(location: impl Into<Location>, secret: u64) -> Result<Store> {
        let location = location.into();
        match &location {
            Location::Sqlite(path) => {
                backend::make_private(path)?;
                Store::open_writable(&location, secret).await.map_err(|error| backend::not_writable(path, error))
            }
            Location::Postgres(_) => Store::open_writable(&location, secret).await,
        }
    }

    async fn open_writable(location: &Location, secret: u64) -> Result<Store> {
        let backend::Opened { pool, connection, writer_options } = backend::open(location).await?;
        canonicalize_accounts(&pool).await?;
        let validators = Validators::default();
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
        match (&pool, location) {
            (Pool::Sqlite(pool), Location::Sqlite(path)) => {
                tokio::spawn(backend::checkpoints(pool.clone(), path.clone()));
            }
            (Pool::Postgres(pool), _) => {
                tokio::spawn(backend::statistics(pool.clone()));
            }
            _ => {}
        }
        Ok(Store {
            pool,
            validators,
            host_tokens: Arc::default(),
            writer,
            #[cfg(test)]
            frontiers,
            writer_metrics,
            location: Arc::new(location.clone()),
            tag: format!("{:016x}", secret ^ rand::random::<u64>()).into(),
        })
    }

    /// Hands `call` to the writer task and waits for its answer (sent once
    /// the group it ran in is committed).
    async fn submit_write(&self, call: scheduling::Call, now: Timestamp) -> Result<scheduling::Answer> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer.send(writer::Job::Write(writer::Request { call, now, reply })).await.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Starts a write transaction (`backend::begin_write`: for SQLite,
    /// `BEGIN IMMEDIATE`, the write lock taken at once).
    async fn write(&self) -> Result<backend::Tx<'static>> {
        self.pool.begin_write().await
    }

    /// The writer's histograms (group sizes and durations), shared: they
    /// fill as the writer commits.
    pub fn writer_metrics(&self) -> &WriterMetrics {
        &self.writer_metrics
    }

    /// The bytes the database takes on disk (for SQLite, its file and its
    /// write-ahead log; for PostgreSQL, the database's size as the server reports it).
    pub async fn size_on_disk(&self) -> Result<u64> {
        match (&self.pool, &*self.location) {
            (Pool::Sqlite(_), Location::Sqlite(path)) => backend::size_on_disk(path),
            _ => {
                let bytes: i64 =
                    query_scalar("SELECT pg_database_size(current_database())").fetch_one(&self.pool).await?;
                Ok(u64::try_from(bytes).unwrap_or(0))
            }
        }
    }

    /// Where the database is.
    pub fn location(&self) -> &Location {
        &self.location
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
pub(crate) mod test_databases;
/// The store's tests on SQLite...
#[cfg(test)]
mod tests;
/// ... and the same tests on PostgreSQL (deliberately the same file).
#[cfg(test)]
#[path = "tests.rs"]
#[allow(clippy::duplicate_mod)]
mod tests_postgres;
