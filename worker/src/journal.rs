//! The worker's journal: a SQLite file (`journal.db` in the state directory)
//! recording what must survive a crash, a power cut or a reboot.
//!
//! - **attachments**: each coordinator's identity (host id and secret token),
//!   its resource share and the usage the scheduler balances, the last known
//!   credit (from `GetHost`); for a coordinator group (`--server URL,URL`),
//!   its addresses and the one in use (see `failover`). Keyed by the
//!   attachment's key, the address it first attached with.
//! - **tasks**: every result received, through `received` → `running` →
//!   `finished` (its report kept until accepted) → `reported`. A task is
//!   journalled before it starts and its report before it is sent, so a
//!   restart reports every finished result and resumes every unfinished one.
//! - **apps**: fuel per task and this host's speed, per app, to predict
//!   whether a task can meet its deadline.
//! - **pinned_keys**: the public key each project signed its app with, per
//!   coordinator and project, pinned the first time (see `signing`).
//! - **settings**: pause, CPU limit and the pid of the running worker, read by
//!   `quorum-worker status` / `pause` / `resume`.
//!
//! WAL mode. Finished results and identities are committed with
//! `synchronous = FULL` (on disk before the worker acts on them: a power cut
//! loses no finished work and no identity); the other writes with `NORMAL`,
//! which survives a crash of the process but may lose the last ones in a
//! power cut. That is safe: an assignment the journal lost is sent again by
//! the coordinator (the worker lists what it holds on every request), a lost
//! "reported" mark only repeats a report (reports are idempotent), and a lost
//! "running" mark is a task that starts again from its checkpoint. The
//! results that finished together are committed in one transaction, so one
//! fsync (about 0.25 ms) stands between a finished task and its core's next
//! one. The file is created readable by its owner only, since it holds
//! tokens. Messages are stored as their protobuf encoding.

use std::path::Path;
use std::str::FromStr as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use quorum_proto::v1::{Assignment, ResultReport};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection as _, Row as _, SqliteConnection};

/// How long `reported` rows stay for `quorum-worker status`.
const KEEP_REPORTED_MS: i64 = 24 * 3600 * 1000;
/// Weight of a new observation in the per-app moving averages.
const AVERAGE_WEIGHT: f64 = 0.3;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("journal {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("journal: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("journal migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the journal {path} is empty: it held this worker's identity with its coordinators and its tasks; \
         restore it from a backup, or delete it to start again as a new host"
    )]
    Empty { path: String },
    #[error("the journal {path} holds no worker state yet: is a worker starting on it? Try again in a moment")]
    NotReady { path: String },
    #[error("journal: cannot create {path}: {source}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("journal: task {result_id} of {server} holds an undecodable {what}: {source}")]
    Decode {
        server: String,
        result_id: i64,
        what: &'static str,
        #[source]
        source: prost::DecodeError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Who this worker is for one coordinator: the result of RegisterHost.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub server: String,
    pub host_id: i64,
    /// Secret sent as `authorization: Bearer <token>`; never printed.
    pub token: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("server", &self.server)
            .field("host_id", &self.host_id)
            .field("token", &"<secret>")
            .finish()
    }
}

/// Where a task is in its life on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Received,
    Running,
    Finished,
    Reported,
}

impl TaskState {
    fn parse(text: &str) -> Option<TaskState> {
        Some(match text {
            "received" => TaskState::Received,
            "running" => TaskState::Running,
            "finished" => TaskState::Finished,
            "reported" => TaskState::Reported,
            _ => return None,
        })
    }
}

/// What `quorum-worker detach` and `abort` ask the running worker to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Give back this task (unless it finished: then it is reported).
    Abort { server: String, result_id: i64 },
    /// Report what is finished, give back the rest, forget the coordinator.
    Detach { server: String },
}

impl Request {
    fn fields(&self) -> (&'static str, &str, i64) {
        match self {
            Request::Abort { server, result_id } => ("abort", server, *result_id),
            Request::Detach { server } => ("detach", server, 0),
        }
    }
}

/// A task not yet reported, as a restart finds it.
#[derive(Debug, Clone)]
pub struct Pending {
    pub state: TaskState,
    pub assignment: Assignment,
    pub seq: i64,
    /// Fuel of the segments run so far (checkpointed or not; the caller
    /// decides whether it counts).
    pub fuel_before: u64,
    /// Present when finished.
    pub report: Option<ResultReport>,
}

/// One task's line in `quorum-worker status`.
#[derive(Debug, Clone)]
pub struct TaskLine {
    pub server: String,
    pub result_id: i64,
    pub state: TaskState,
    pub project: String,
    pub work_unit_name: String,
    pub app_digest: String,
    pub deadline_ms: i64,
    pub fuel_done: u64,
    pub outcome: Option<String>,
    /// When its current segment started (running), or it finished.
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
}

/// One coordinator's line in `quorum-worker status`.
#[derive(Debug, Clone)]
pub struct AttachmentLine {
    /// The attachment's key: its identity, tasks and directories are filed
    /// under it (a coordinator group's first address when it attached).
    pub server: String,
    /// The group's addresses as the last worker was given them (the key
    /// alone for a journal from before groups).
    pub addresses: Vec<String>,
    /// The address calls went to last (the key when none is recorded).
    pub address: String,
    pub host_id: Option<i64>,
    pub resource_share: f64,
    pub total_credit: f64,
    pub n_valid: u64,
    pub n_invalid: u64,
    pub n_error: u64,
    pub usage: f64,
}

/// The host's own record at a coordinator (from GetHost).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostRecord {
    pub total_credit: f64,
    pub n_valid: u64,
    pub n_invalid: u64,
    pub n_error: u64,
}

/// What the worker learnt about one app: moving averages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AppStats {
    /// Fuel of a whole task; negative until a task ran in one piece.
    pub fuel_per_task: f64,
    /// Fuel per second of active run time on this host.
    pub fuel_per_second: f64,
}

impl AppStats {
    /// The averages after one more run: `segment_fuel` in `run_time_ms`,
    /// and `whole_fuel` when that run was a whole task that succeeded.
    /// `None` when the run teaches nothing (no fuel or no time measured).
    pub fn learn(
        previous: Option<AppStats>,
        segment_fuel: u64,
        run_time_ms: u64,
        whole_fuel: Option<u64>,
    ) -> Option<AppStats> {
        if segment_fuel == 0 || run_time_ms == 0 {
            return None;
        }
        let speed = segment_fuel as f64 * 1000.0 / run_time_ms as f64;
        let average = |old: f64, new: f64| old * (1.0 - AVERAGE_WEIGHT) + new * AVERAGE_WEIGHT;
        let Some(previous) = previous else {
            let fuel_per_task = whole_fuel.map_or(-1.0, |fuel| fuel as f64);
            return Some(AppStats { fuel_per_task, fuel_per_second: speed });
        };
        let fuel_per_task = match whole_fuel {
            None => previous.fuel_per_task,
            Some(fuel) if previous.fuel_per_task < 0.0 => fuel as f64,
            Some(fuel) => average(previous.fuel_per_task, fuel as f64),
        };
        Some(AppStats { fuel_per_task, fuel_per_second: average(previous.fuel_per_second, speed) })
    }
}

/// A task that finished, to journal.
#[derive(Debug, Clone)]
pub struct Finished<'a> {
    pub server: &'a str,
    pub report: &'a ResultReport,
    pub app_digest: &'a str,
    /// The app's averages after this run ([`AppStats::learn`]), when it taught something.
    pub stats: Option<AppStats>,
    pub outcome: String,
}

#[derive(Clone)]
pub struct Journal {
    pool: SqlitePool,
}

impl Journal {
    /// Opens (creating it if needed) the journal at `path`, for the worker.
    pub async fn open(path: &Path) -> Result<Journal> {
        create_private(path)?;
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|source| Error::Open { path: path.display().to_string(), source })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // One connection: the worker's loop is the only writer, and one
        // connection keeps its writes in order.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|source| Error::Open { path: path.display().to_string(), source })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Journal { pool })
    }

    /// Opens an existing journal to read it (`quorum-worker status`) or
    /// change a setting while a worker runs.
    pub async fn open_existing(path: &Path) -> Result<Journal> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|source| Error::Open { path: path.display().to_string(), source })?
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|source| Error::Open { path: path.display().to_string(), source })?;
        // A worker creates the file, then its tables: between the two (or
        // for a file emptied by accident) there is nothing to read yet.
        let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'settings'")
            .fetch_one(&pool)
            .await
            .map_err(|source| Error::Open { path: path.display().to_string(), source })?;
        if tables == 0 {
            let path = path.display().to_string();
            let empty = std::fs::metadata(&path).is_ok_and(|m| m.len() == 0);
            return Err(if empty { Error::Empty { path } } else { Error::NotReady { path } });
        }
        Ok(Journal { pool })
    }

    // ---- attachments -------------------------------------------------------

    /// Records `server` with its resource share (at each start).
    pub async fn attach(&self, server: &str, resource_share: f64) -> Result<()> {
        sqlx::query(
            "INSERT INTO attachments (server, resource_share) VALUES (?1, ?2) \
             ON CONFLICT (server) DO UPDATE SET resource_share = excluded.resource_share",
        )
        .bind(server)
        .bind(resource_share)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the addresses of `server`'s coordinator group (at each start)
    /// and the one calls go to.
    pub async fn set_addresses(&self, server: &str, addresses: &[String], address: &str) -> Result<()> {
        sqlx::query("UPDATE attachments SET addresses = ?2, address = ?3 WHERE server = ?1")
            .bind(server)
            .bind(addresses.join(" "))
            .bind(address)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records the address `server`'s calls go to now (after a failover).
    pub async fn set_address(&self, server: &str, address: &str) -> Result<()> {
        sqlx::query("UPDATE attachments SET address = ?2 WHERE server = ?1")
            .bind(server)
            .bind(address)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn identity(&self, server: &str) -> Result<Option<Identity>> {
        let row = sqlx::query("SELECT host_id, token FROM attachments WHERE server = ?1 AND token IS NOT NULL")
            .bind(server)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => {
                Some(Identity { server: server.to_string(), host_id: row.try_get(0)?, token: row.try_get(1)? })
            }
            None => None,
        })
    }

    pub async fn save_identity(&self, identity: &Identity) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        durable(&mut conn, true).await?;
        let result = sqlx::query(
            "INSERT INTO attachments (server, host_id, token) VALUES (?1, ?2, ?3) \
             ON CONFLICT (server) DO UPDATE SET host_id = excluded.host_id, token = excluded.token",
        )
        .bind(&identity.server)
        .bind(identity.host_id)
        .bind(&identity.token)
        .execute(&mut *conn)
        .await;
        durable(&mut conn, false).await?;
        result?;
        Ok(())
    }

    pub async fn save_host_record(&self, server: &str, record: HostRecord) -> Result<()> {
        sqlx::query(
            "UPDATE attachments SET total_credit = ?2, n_valid = ?3, n_invalid = ?4, n_error = ?5 WHERE server = ?1",
        )
        .bind(server)
        .bind(record.total_credit)
        .bind(i64::try_from(record.n_valid).unwrap_or(i64::MAX))
        .bind(i64::try_from(record.n_invalid).unwrap_or(i64::MAX))
        .bind(i64::try_from(record.n_error).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The usage the scheduler balanced, and when it was last decayed.
    pub async fn usage(&self, server: &str) -> Result<(f64, i64)> {
        let row = sqlx::query("SELECT usage, usage_at_ms FROM attachments WHERE server = ?1")
            .bind(server)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => (row.try_get(0)?, row.try_get(1)?),
            None => (0.0, 0),
        })
    }

    pub async fn save_usage(&self, usages: &[(&str, f64)], now_ms: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (server, usage) in usages {
            sqlx::query("UPDATE attachments SET usage = ?2, usage_at_ms = ?3 WHERE server = ?1")
                .bind(server)
                .bind(usage)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn attachments(&self) -> Result<Vec<AttachmentLine>> {
        // `status` beside a worker started before coordinator groups reads
        // a journal without their columns (only a worker migrates it).
        let grouped: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pragma_table_info('attachments') WHERE name = 'address'")
                .fetch_one(&self.pool)
                .await?;
        let sql = if grouped > 0 {
            "SELECT server, host_id, resource_share, total_credit, n_valid, n_invalid, n_error, usage, \
             addresses, address FROM attachments ORDER BY server"
        } else {
            "SELECT server, host_id, resource_share, total_credit, n_valid, n_invalid, n_error, usage, \
             '' AS addresses, '' AS address FROM attachments ORDER BY server"
        };
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let server: String = row.try_get(0)?;
                let addresses: String = row.try_get(8)?;
                let mut addresses: Vec<String> =
                    addresses.split(' ').filter(|a| !a.is_empty()).map(String::from).collect();
                if addresses.is_empty() {
                    addresses.push(server.clone());
                }
                let address: String = row.try_get(9)?;
                let address = if address.is_empty() { server.clone() } else { address };
                Ok(AttachmentLine {
                    server,
                    addresses,
                    address,
                    host_id: row.try_get(1)?,
                    resource_share: row.try_get(2)?,
                    total_credit: row.try_get(3)?,
                    n_valid: count(row.try_get(4)?),
                    n_invalid: count(row.try_get(5)?),
                    n_error: count(row.try_get(6)?),
                    usage: row.try_get(7)?,
                })
            })
            .collect()
    }

    // ---- tasks -------------------------------------------------------------

    /// Journals newly received assignments (already known ones are ignored);
    /// returns those that were new, in order, with their order number.
    pub async fn receive(
        &self,
        server: &str,
        assignments: Vec<Assignment>,
        now_ms: i64,
    ) -> Result<Vec<(Assignment, i64)>> {
        let mut tx = self.pool.begin().await?;
        let mut seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM tasks").fetch_one(&mut *tx).await?;
        let mut new = Vec::with_capacity(assignments.len());
        for assignment in assignments {
            seq += 1;
            let inserted = sqlx::query(
                "INSERT INTO tasks (server, result_id, state, assignment, project, work_unit_name, app_digest, \
                 deadline_ms, received_ms, seq) VALUES (?1, ?2, 'received', ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT (server, result_id) DO NOTHING",
            )
            .bind(server)
            .bind(assignment.result_id)
            .bind(assignment.encode_to_vec())
            .bind(&assignment.project)
            .bind(&assignment.work_unit_name)
            .bind(&assignment.app_digest)
            .bind(assignment.deadline_unix_ms)
            .bind(now_ms)
            .bind(seq)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                new.push((assignment, seq));
            }
        }
        tx.commit().await?;
        Ok(new)
    }

    /// Every task of `server` not yet reported, oldest first. A task found
    /// `running` was interrupted by a crash: the fuel its last progress
    /// snapshot recorded is added to its earlier segments'.
    pub async fn pending(&self, server: &str) -> Result<Vec<Pending>> {
        let rows = sqlx::query(
            "SELECT result_id, state, assignment, seq, fuel_before, fuel_progress, report FROM tasks \
             WHERE server = ?1 AND state != 'reported' ORDER BY seq",
        )
        .bind(server)
        .fetch_all(&self.pool)
        .await?;
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            let result_id: i64 = row.try_get(0)?;
            let state_text: String = row.try_get(1)?;
            let state = TaskState::parse(&state_text).unwrap_or(TaskState::Received);
            let assignment_bytes: Vec<u8> = row.try_get::<Option<Vec<u8>>, _>(2)?.unwrap_or_default();
            let assignment = Assignment::decode(assignment_bytes.as_slice()).map_err(|source| Error::Decode {
                server: server.to_string(),
                result_id,
                what: "assignment",
                source,
            })?;
            let report = match row.try_get::<Option<Vec<u8>>, _>(6)? {
                Some(bytes) => Some(ResultReport::decode(bytes.as_slice()).map_err(|source| Error::Decode {
                    server: server.to_string(),
                    result_id,
                    what: "report",
                    source,
                })?),
                None => None,
            };
            let fuel_before = count(row.try_get(4)?);
            let fuel_progress = count(row.try_get(5)?);
            pending.push(Pending {
                state,
                assignment,
                seq: row.try_get(3)?,
                fuel_before: fuel_before.saturating_add(fuel_progress),
                report,
            });
        }
        Ok(pending)
    }

    /// A task goes onto a core; `fuel_before` is what its earlier,
    /// checkpointed segments used (0 when it starts from scratch).
    pub async fn start(&self, server: &str, result_id: i64, fuel_before: u64, now_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE tasks SET state = 'running', started_ms = COALESCE(started_ms, ?3), fuel_before = ?4, \
             fuel_progress = 0 WHERE server = ?1 AND result_id = ?2",
        )
        .bind(server)
        .bind(result_id)
        .bind(now_ms)
        .bind(fuel(fuel_before))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Progress snapshots of running tasks: fuel used by their current segment.
    pub async fn progress(&self, snapshots: &[(&str, i64, u64)]) -> Result<()> {
        if snapshots.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (server, result_id, used) in snapshots {
            sqlx::query("UPDATE tasks SET fuel_progress = ?3 WHERE server = ?1 AND result_id = ?2")
                .bind(server)
                .bind(result_id)
                .bind(fuel(*used))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A running task was stopped before finishing (interrupted at shutdown,
    /// or found `running` after a crash): it goes back to `received`, with
    /// the fuel of all its segments so far.
    pub async fn interrupted(&self, server: &str, result_id: i64, fuel_before: u64) -> Result<()> {
        sqlx::query(
            "UPDATE tasks SET state = 'received', fuel_before = ?3, fuel_progress = 0 \
             WHERE server = ?1 AND result_id = ?2",
        )
        .bind(server)
        .bind(result_id)
        .bind(fuel(fuel_before))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Journals finished tasks with their reports, and learns from them; one transaction.
    pub async fn finish(&self, finished: &[Finished<'_>], now_ms: i64) -> Result<()> {
        if finished.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await?;
        durable(&mut conn, true).await?;
        let result = finish_in(&mut conn, finished, now_ms).await;
        durable(&mut conn, false).await?;
        result
    }

    /// The coordinator accepted these reports.
    pub async fn reported(&self, server: &str, result_ids: &[i64]) -> Result<()> {
        self.for_each_task(
            "UPDATE tasks SET state = 'reported', assignment = NULL, report = NULL WHERE server = ?1 AND result_id = ?2",
            server,
            result_ids,
        )
        .await
    }

    /// Forgets tasks entirely (aborted by the coordinator, or refused reports).
    pub async fn forget(&self, server: &str, result_ids: &[i64]) -> Result<()> {
        self.for_each_task("DELETE FROM tasks WHERE server = ?1 AND result_id = ?2", server, result_ids).await
    }

    /// Forgets every task of `server`, reported ones included; returns their result ids.
    pub async fn forget_server(&self, server: &str) -> Result<Vec<i64>> {
        let rows = sqlx::query("DELETE FROM tasks WHERE server = ?1 RETURNING result_id")
            .bind(server)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    /// Forgets a coordinator: its tasks, identity, usage and pinned keys, in
    /// one transaction (`quorum-worker detach`). Returns the forgotten tasks.
    pub async fn detach(&self, server: &str) -> Result<Vec<i64>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("DELETE FROM tasks WHERE server = ?1 RETURNING result_id")
            .bind(server)
            .fetch_all(&mut *tx)
            .await?;
        for sql in [
            "DELETE FROM attachments WHERE server = ?1",
            "DELETE FROM pinned_keys WHERE server = ?1",
            "DELETE FROM requests WHERE server = ?1",
        ] {
            sqlx::query(sql).bind(server).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    // ---- requests to the running worker ------------------------------------

    /// Asks the running worker to act (see [`Request`]); kept until it has.
    pub async fn request(&self, request: &Request) -> Result<()> {
        let (kind, server, result_id) = request.fields();
        sqlx::query("INSERT OR IGNORE INTO requests (kind, server, result_id) VALUES (?1, ?2, ?3)")
            .bind(kind)
            .bind(server)
            .bind(result_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The requests not acted on yet.
    pub async fn requests(&self) -> Result<Vec<Request>> {
        let rows =
            sqlx::query("SELECT kind, server, result_id FROM requests ORDER BY rowid").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let (kind, server): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                Ok(match kind.as_str() {
                    "abort" => Request::Abort { server, result_id: row.try_get(2)? },
                    _ => Request::Detach { server },
                })
            })
            .collect()
    }

    /// `request` was acted on.
    pub async fn request_done(&self, request: &Request) -> Result<()> {
        let (kind, server, result_id) = request.fields();
        sqlx::query("DELETE FROM requests WHERE kind = ?1 AND server = ?2 AND result_id = ?3")
            .bind(kind)
            .bind(server)
            .bind(result_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Runs `sql` (`?1` the server, `?2` a result id) for each of `result_ids`, in one transaction.
    async fn for_each_task(&self, sql: &'static str, server: &str, result_ids: &[i64]) -> Result<()> {
        if result_ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for result_id in result_ids {
            sqlx::query(sql).bind(server).bind(result_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Drops `reported` rows older than a day; returns their (server, result id).
    pub async fn collect_garbage(&self, now_ms: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "DELETE FROM tasks WHERE state = 'reported' AND COALESCE(finished_ms, received_ms) < ?1 \
             RETURNING server, result_id",
        )
        .bind(now_ms - KEEP_REPORTED_MS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    pub async fn tasks(&self) -> Result<Vec<TaskLine>> {
        let rows = sqlx::query(
            "SELECT server, result_id, state, project, work_unit_name, app_digest, deadline_ms, \
             fuel_before + fuel_progress, outcome, started_ms, finished_ms FROM tasks \
             ORDER BY state = 'reported', deadline_ms, seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get(2)?;
                Ok(TaskLine {
                    server: row.try_get(0)?,
                    result_id: row.try_get(1)?,
                    state: TaskState::parse(&state).unwrap_or(TaskState::Received),
                    project: row.try_get(3)?,
                    work_unit_name: row.try_get(4)?,
                    app_digest: row.try_get(5)?,
                    deadline_ms: row.try_get(6)?,
                    fuel_done: count(row.try_get(7)?),
                    outcome: row.try_get(8)?,
                    started_ms: row.try_get(9)?,
                    finished_ms: row.try_get(10)?,
                })
            })
            .collect()
    }

    // ---- apps --------------------------------------------------------------

    pub async fn app_stats(&self) -> Result<Vec<(String, AppStats)>> {
        let rows =
            sqlx::query("SELECT app_digest, fuel_per_task, fuel_per_second FROM apps").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok((row.try_get(0)?, AppStats { fuel_per_task: row.try_get(1)?, fuel_per_second: row.try_get(2)? }))
            })
            .collect()
    }

    // ---- pinned project keys ----------------------------------------------

    /// The key pinned for `project` of coordinator `server`, if any.
    pub async fn pinned_key(&self, server: &str, project: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT public_key FROM pinned_keys WHERE server = ?1 AND project = ?2")
            .bind(server)
            .bind(project)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Pins `public_key` for `project` of `server`, unless a key is pinned already.
    pub async fn pin_key(&self, server: &str, project: &str, public_key: &[u8], now_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO pinned_keys (server, project, public_key, pinned_ms) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (server, project) DO NOTHING",
        )
        .bind(server)
        .bind(project)
        .bind(public_key)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- settings ----------------------------------------------------------

    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = ?1").bind(key).fetch_optional(&self.pool).await?)
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Switches the connection's commits to `synchronous = FULL` (or back to `NORMAL`).
async fn durable(conn: &mut SqliteConnection, full: bool) -> Result<()> {
    let pragma = if full { "PRAGMA synchronous = FULL" } else { "PRAGMA synchronous = NORMAL" };
    sqlx::query(pragma).execute(&mut *conn).await?;
    Ok(())
}

/// The transaction of [`Journal::finish`].
async fn finish_in(conn: &mut SqliteConnection, finished: &[Finished<'_>], now_ms: i64) -> Result<()> {
    let mut tx = conn.begin().await?;
    for task in finished {
        sqlx::query(
            "UPDATE tasks SET state = 'finished', report = ?3, outcome = ?4, finished_ms = ?5, \
             fuel_progress = 0 WHERE server = ?1 AND result_id = ?2",
        )
        .bind(task.server)
        .bind(task.report.result_id)
        .bind(task.report.encode_to_vec())
        .bind(&task.outcome)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        learn(&mut tx, task).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Stores the app's averages learnt from a finished task.
async fn learn(tx: &mut SqliteConnection, task: &Finished<'_>) -> Result<()> {
    let Some(stats) = task.stats else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO apps (app_digest, fuel_per_task, fuel_per_second) VALUES (?1, ?2, ?3) \
         ON CONFLICT (app_digest) DO UPDATE SET fuel_per_task = ?2, fuel_per_second = ?3",
    )
    .bind(task.app_digest)
    .bind(stats.fuel_per_task)
    .bind(stats.fuel_per_second)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Creates the journal file readable by its owner only (0600) if missing.
/// An existing one must hold something: an empty file is [`Error::Empty`],
/// never a silent new identity; one open to others (it holds the host's
/// tokens) is narrowed to 0600 with a warning.
fn create_private(path: &Path) -> Result<()> {
    let create = |source| Error::Create { path: path.display().to_string(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => return Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(create(error)),
    }
    let metadata = std::fs::metadata(path).map_err(create)?;
    if metadata.len() == 0 {
        return Err(Error::Empty { path: path.display().to_string() });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(create)?;
            tracing::warn!(file = %path.display(), mode = format!("{mode:o}"), "the journal was open to other users; narrowed to owner only");
        }
    }
    Ok(())
}

/// Milliseconds since the Unix epoch: the unit of the journal's times and
/// of deadlines.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn fuel(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(result_id: i64) -> Assignment {
        Assignment {
            result_id,
            work_unit_id: result_id * 10,
            project: "p".into(),
            app_digest: "a".repeat(64),
            input: b"1 2".to_vec(),
            deadline_unix_ms: 5_000,
            work_unit_name: format!("wu-{result_id}"),
            ..Assignment::default()
        }
    }

    async fn journal() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = Journal::open(&dir.path().join("journal.db")).await.expect("open");
        (dir, journal)
    }

    #[tokio::test]
    async fn a_task_goes_through_its_states_and_survives_reopening() {
        let (dir, journal) = journal().await;
        journal.attach("http://a", 100.0).await.expect("attach");
        let new = journal.receive("http://a", vec![assignment(1), assignment(2)], 10).await.expect("receive");
        assert_eq!(new.len(), 2);
        let again = journal.receive("http://a", vec![assignment(2), assignment(3)], 11).await.expect("receive");
        assert_eq!(
            again.iter().map(|(a, seq)| (a.result_id, *seq)).collect::<Vec<_>>(),
            [(3, 4)],
            "known tasks are not new"
        );
        journal.start("http://a", 1, 0, 12).await.expect("start");
        journal.progress(&[("http://a", 1, 700)]).await.expect("progress");
        journal.start("http://a", 2, 0, 12).await.expect("start");
        let report = ResultReport { result_id: 2, output: b"ok".to_vec(), fuel_used: 50, ..ResultReport::default() };
        let finished = Finished {
            server: "http://a",
            report: &report,
            app_digest: &"a".repeat(64),
            stats: AppStats::learn(None, 50, 10, Some(50)),
            outcome: "success".into(),
        };
        journal.finish(&[finished], 13).await.expect("finish");
        journal.close().await;

        // As after a crash: task 1 was running, 2 finished, 3 received.
        let journal = Journal::open(&dir.path().join("journal.db")).await.expect("reopen");
        let pending = journal.pending("http://a").await.expect("pending");
        let states: Vec<_> = pending.iter().map(|p| (p.assignment.result_id, p.state, p.fuel_before)).collect();
        assert_eq!(
            states,
            [(1, TaskState::Running, 700), (2, TaskState::Finished, 0), (3, TaskState::Received, 0)],
            "the crashed segment's progress counts as done"
        );
        assert_eq!(pending[1].report.as_ref().expect("report kept").output, b"ok");
        assert_eq!(pending[0].assignment, assignment(1));
        let stats = journal.app_stats().await.expect("stats");
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].1, AppStats { fuel_per_task: 50.0, fuel_per_second: 5_000.0 });

        journal.reported("http://a", &[2]).await.expect("reported");
        journal.forget("http://a", &[3]).await.expect("forget");
        let pending = journal.pending("http://a").await.expect("pending");
        assert_eq!(pending.iter().map(|p| p.assignment.result_id).collect::<Vec<_>>(), [1]);
        let lines = journal.tasks().await.expect("tasks");
        assert_eq!(
            lines.iter().map(|l| (l.result_id, l.state)).collect::<Vec<_>>(),
            [(1, TaskState::Running), (2, TaskState::Reported)]
        );
        assert!(journal.collect_garbage(13).await.expect("gc").is_empty(), "kept a day");
        assert_eq!(journal.collect_garbage(13 + KEEP_REPORTED_MS + 1).await.expect("gc"), [("http://a".into(), 2)]);
        // A new registration at that coordinator: nothing of the old one stays.
        assert_eq!(journal.forget_server("http://a").await.expect("forget server"), [1]);
        assert!(journal.pending("http://a").await.expect("pending").is_empty());
    }

    #[test]
    fn app_stats_are_moving_averages() {
        assert_eq!(AppStats::learn(None, 0, 10, None), None, "nothing ran");
        let first = AppStats::learn(None, 1_000, 100, None).expect("a speed");
        assert_eq!(first, AppStats { fuel_per_task: -1.0, fuel_per_second: 10_000.0 }, "no whole task yet");
        let second = AppStats::learn(Some(first), 2_000, 100, Some(2_000)).expect("learnt");
        assert_eq!(second.fuel_per_task, 2_000.0, "the first whole task sets it");
        assert!((second.fuel_per_second - 13_000.0).abs() < 1e-6, "{second:?}");
        let third = AppStats::learn(Some(second), 1_000, 100, Some(1_000)).expect("learnt");
        assert!((third.fuel_per_task - 1_700.0).abs() < 1e-6, "{third:?}");
    }

    #[tokio::test]
    async fn identities_are_per_server_and_private() {
        let (dir, journal) = journal().await;
        assert_eq!(journal.identity("http://a").await.expect("load"), None);
        journal.attach("http://a", 50.0).await.expect("attach");
        assert_eq!(journal.identity("http://a").await.expect("load"), None, "attached, not registered");
        let identity = Identity { server: "http://a".into(), host_id: 7, token: "hunter2".into() };
        journal.save_identity(&identity).await.expect("save");
        assert_eq!(journal.identity("http://a").await.expect("load"), Some(identity.clone()));
        assert_eq!(journal.identity("http://b").await.expect("load"), None);
        assert!(!format!("{identity:?}").contains("hunter2"));
        let lines = journal.attachments().await.expect("attachments");
        assert_eq!(lines.len(), 1);
        assert_eq!((lines[0].host_id, lines[0].resource_share), (Some(7), 50.0));
        // Before a group is recorded (a journal from before groups), the key is the one address.
        assert_eq!(
            (lines[0].addresses.as_slice(), lines[0].address.as_str()),
            (&["http://a".to_owned()][..], "http://a")
        );
        let group = ["http://a".to_owned(), "http://b".to_owned()];
        journal.set_addresses("http://a", &group, "http://a").await.expect("addresses");
        journal.set_address("http://a", "http://b").await.expect("address");
        let lines = journal.attachments().await.expect("attachments");
        assert_eq!((lines[0].addresses.as_slice(), lines[0].address.as_str()), (&group[..], "http://b"));
        assert_eq!(journal.identity("http://a").await.expect("load"), Some(identity.clone()), "one identity");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("journal.db")).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn a_journal_from_before_coordinator_groups_keeps_its_identity() {
        let (dir, journal) = journal().await;
        journal.attach("http://a", 100.0).await.expect("attach");
        let identity = Identity { server: "http://a".into(), host_id: 3, token: "t".into() };
        journal.save_identity(&identity).await.expect("save");
        // As a worker from before groups left it: no columns, no migration recorded.
        for sql in [
            "ALTER TABLE attachments DROP COLUMN addresses",
            "ALTER TABLE attachments DROP COLUMN address",
            "DELETE FROM _sqlx_migrations WHERE description = 'addresses'",
        ] {
            sqlx::query(sql).execute(&journal.pool).await.expect(sql);
        }
        journal.close().await;
        let path = dir.path().join("journal.db");
        // `status` beside an old worker reads it as it is: the key is the one address.
        let beside = Journal::open_existing(&path).await.expect("open beside");
        let lines = beside.attachments().await.expect("attachments");
        assert_eq!(
            (lines[0].addresses.as_slice(), lines[0].address.as_str()),
            (&["http://a".to_owned()][..], "http://a")
        );
        beside.close().await;
        // A new worker migrates it and finds the same identity under the same key.
        let journal = Journal::open(&path).await.expect("migrated");
        let lines = journal.attachments().await.expect("attachments");
        assert_eq!((lines[0].server.as_str(), lines[0].host_id), ("http://a", Some(3)));
        assert_eq!(lines[0].addresses, ["http://a".to_owned()]);
        assert_eq!(journal.identity("http://a").await.expect("load"), Some(identity));
        let group = ["http://a".to_owned(), "http://b".to_owned()];
        journal.set_addresses("http://a", &group, "http://b").await.expect("the migration added the columns");
        assert_eq!(journal.attachments().await.expect("attachments")[0].address, "http://b");
    }

    #[tokio::test]
    async fn an_empty_journal_is_an_error_naming_it_and_a_shared_one_is_narrowed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("journal.db");
        std::fs::write(&path, b"").expect("an empty file");
        let error = Journal::open(&path).await.err().expect("an empty journal is refused");
        assert!(matches!(error, Error::Empty { .. }), "{error}");
        assert!(error.to_string().contains(&path.display().to_string()), "{error}");
        assert_eq!(std::fs::metadata(&path).expect("metadata").len(), 0, "left as it was");
        let beside = Journal::open_existing(&path).await.err().expect("status on an empty journal is refused");
        assert!(matches!(beside, Error::Empty { .. }), "{beside}");
        std::fs::remove_file(&path).expect("remove");
        Journal::open(&path).await.expect("a new journal").close().await;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            Journal::open(&path).await.expect("a shared journal opens").close().await;
            let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "narrowed to its owner");
        }
    }

    #[tokio::test]
    async fn settings_round_trip() {
        let (_dir, journal) = journal().await;
        assert_eq!(journal.setting("paused").await.expect("get"), None);
        journal.set_setting("paused", "1").await.expect("set");
        journal.set_setting("paused", "0").await.expect("set");
        assert_eq!(journal.setting("paused").await.expect("get").as_deref(), Some("0"));
    }
}
