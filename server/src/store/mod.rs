//! The coordinator's store: SQLite through sqlx, spoken to in domain terms.
//!
//! This is the only module that imports `sqlx`. Its API is what the
//! coordinator needs (`lease_work`, `record_reports`, `run_transitioner`...),
//! never table operations, so a PostgreSQL backend is a second implementation
//! of the same API checked by the same tests. Every method that changes more
//! than one row does it in one transaction.
//!
//! Layout:
//! - `submit`: apps, projects and batches of work units.
//! - `scheduling`: hosts, leasing work, recording reports.
//! - `transitions`: loading a work unit, running the lifecycle rules, persisting the result; deadlines; cancellation.
//! - `reads`: status counts and listings for the admin service.
//! - `rows`: conversions between rows and domain types.
//! - `writer`: group commit of the scheduler's writes (one task, one transaction for many RPCs).
//! - `bulk`: helpers for set-based statements (id lists, multi-row `VALUES`).
//! - `signing`: signatures of projects' app modules.
//! - `auth`: API tokens (roles, revocation, the first-start admin token).

mod auth;
mod bulk;
mod reads;
mod rows;
mod scheduling;
mod signing;
mod submit;
mod transitions;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::domain::Timestamp;
use crate::domain::lifecycle::ReportError;
use crate::validators::{self, Validators};

pub use auth::{ApiTokenInfo, TokenKind};
pub use reads::{BatchInfo, CanonicalResult, HostInfo, ProjectStatus, ResultInfo, WorkUnitInfo};
pub use scheduling::{Assignment, NewHost, ReportInput, ReportSummary, WorkReply, WorkRequest};
pub use submit::{NewProject, NewWorkUnit};
pub use transitions::CancelScope;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("project {0:?} not found")]
    ProjectNotFound(String),
    #[error("project {0:?} already exists")]
    ProjectExists(String),
    #[error("project {0:?} is cancelled")]
    ProjectCancelled(String),
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
    #[error("the store is closed")]
    Closed,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The coordinator's database.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// Custom validator modules, compiled once.
    validators: Validators,
    /// The writer task that group-commits the scheduler's writes.
    writer: tokio::sync::mpsc::Sender<writer::Job>,
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
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        // SQLite has one writer; a small pool serves concurrent readers and
        // the rare writes (submission, cancellation, the transitioner); the
        // scheduler's writes go through the writer task's own connection.
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options.clone()).await?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        let validators = Validators::default();
        let connection = options.connect().await?;
        let writer = writer::spawn(connection, validators.clone(), secret);
        Ok(Store { pool, validators, writer })
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

    /// Closes every connection (after the last transaction has committed).
    pub async fn close(&self) {
        let (done, closed) = tokio::sync::oneshot::channel();
        if self.writer.send(writer::Job::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests;
