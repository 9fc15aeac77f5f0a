//! Read-only views for the admin service: status counts and paged listings.

use std::collections::HashMap;

use super::backend::{Row, Tx, query, query_scalar};
use super::rows::{self, u32_column, u64_column};
use super::{Error, Result, Store};
use crate::domain::assimilation::Cursor;
use crate::domain::lifecycle::{CopyState, Outcome, ValidateState};
use crate::domain::names::ProjectName;
use crate::domain::policy::ReplicationPolicy;
use crate::domain::trust::{AppQuota, Quota};
use crate::domain::{HostId, Timestamp, scheduler};

/// The hosts, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCounts {
    pub n_hosts: u64,
    /// In contact within [`scheduler::ATTACHED_MS`].
    pub n_active: u64,
}

/// Progress of one project: counts of work units and results by state.
#[derive(Debug, Clone)]
pub struct ProjectStatus {
    pub id: i64,
    pub name: String,
    pub state: String,
    pub app_digest: String,
    pub policy: ReplicationPolicy,
    pub validator: String,
    pub batches: Vec<BatchInfo>,
    pub work_units_total: u64,
    pub work_units_open: u64,
    pub work_units_done: u64,
    pub work_units_failed: u64,
    pub results_unsent: u64,
    pub results_in_progress: u64,
    pub results_over: u64,
    pub results_valid: u64,
    pub results_invalid: u64,
    pub results_error: u64,
    pub results_no_reply: u64,
    /// Successes reported and not compared yet.
    pub results_reported: u64,
}

/// A batch of a project.
#[derive(Debug, Clone)]
pub struct BatchInfo {
    pub id: i64,
    pub state: String,
    pub pause_reason: Option<String>,
    pub n_work_units: u64,
    pub n_ended: u64,
}

/// One work unit, without its input.
#[derive(Debug, Clone)]
pub struct WorkUnitInfo {
    pub id: i64,
    pub name: String,
    pub state: String,
    pub fail_reason: Option<String>,
    pub canonical_result_id: Option<i64>,
    pub target_results: u32,
    pub input_size: u64,
    /// The seed of its random source (the same for every copy).
    pub random_seed: u64,
    /// The app's command line and environment (`app_args::merge`).
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// One result (copy), without its output.
#[derive(Debug, Clone)]
pub struct ResultInfo {
    pub id: i64,
    pub work_unit_id: i64,
    pub host_id: Option<i64>,
    pub server_state: String,
    pub outcome: Option<String>,
    pub validate_state: String,
    pub output_digest: Option<String>,
    pub fuel_used: u64,
    pub run_time_ms: u64,
    pub sent_at: Option<i64>,
    pub deadline: Option<i64>,
    pub received_at: Option<i64>,
    pub error_message: Option<String>,
    pub stderr_tail: Option<String>,
    pub granted_credit: f64,
    pub engine: Option<String>,
    pub work_unit_name: String,
    pub batch_id: Option<i64>,
    /// One word for where it stands (from the three state fields).
    pub state: CopyState,
}

/// Which results `Store::list_results_filtered` returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResultFilter {
    /// Only this work unit's.
    pub work_unit_id: Option<i64>,
    /// Only those of this batch's work units.
    pub batch_id: Option<i64>,
    /// Only those in this state.
    pub state: Option<CopyState>,
}

/// A project's failed copies that share one error message.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorGroup {
    pub message: String,
    pub n_results: u64,
    pub n_hosts: u64,
    pub n_work_units: u64,
    /// Up to [`ERROR_EXAMPLES`] work unit names, the latest first.
    pub example_work_units: Vec<String>,
    pub latest_result_id: i64,
    pub latest_stderr_tail: Option<String>,
    pub latest_at: Option<i64>,
}

/// How many example work units an error group names.
pub const ERROR_EXAMPLES: usize = 3;

/// The validated answer of one work unit.
#[derive(Debug, Clone)]
pub struct CanonicalResult {
    pub work_unit_id: i64,
    pub work_unit_name: String,
    pub result_id: i64,
    pub output: Vec<u8>,
    pub output_digest: String,
    pub fuel_used: u64,
    /// The seed of the work unit's random source, to reproduce the result.
    pub random_seed: u64,
    /// The app's command line and environment, to reproduce the result.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// A page of a project's canonical results in assimilation order
/// ([`Store::canonical_results_since`]).
#[derive(Debug, Clone)]
pub struct CanonicalPage {
    /// Each with its place in the order.
    pub results: Vec<(Cursor, CanonicalResult)>,
    /// The project had open work units when the page was read.
    pub any_open: bool,
}

/// A volunteer host and its counters.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub id: i64,
    pub name: String,
    pub n_cpus: u32,
    pub memory_bytes: u64,
    pub engine: String,
    pub os: String,
    pub created_at: i64,
    pub last_contact_at: i64,
    pub n_valid: u64,
    pub n_invalid: u64,
    pub n_error: u64,
    pub n_no_reply: u64,
    pub n_in_progress: u64,
    pub total_credit: f64,
    pub account: String,
    pub consecutive_valid: u32,
    pub daily_quota: u32,
    /// Results sent today, against `daily_quota`.
    pub results_today: u32,
    /// Its quotas per app, by app digest.
    pub app_quotas: Vec<AppQuotaInfo>,
}

/// A host's quota for one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppQuotaInfo {
    pub app_digest: String,
    /// The projects running this app.
    pub projects: Vec<String>,
    pub daily_quota: u32,
    /// Results of the app sent today.
    pub results_today: u32,
    /// Nothing more of the app goes to the host today.
    pub exhausted: bool,
}

impl Store {
    /// Status of one project, or of every project when `project` is None.
    pub async fn project_status(&self, project: Option<&ProjectName>) -> Result<Vec<ProjectStatus>> {
        let sql = concat!(
            "SELECT p.id, p.name, p.state, p.app_digest, ",
            rows::project_policy_columns!(),
            " FROM projects p WHERE (? IS NULL OR p.name = ?) ORDER BY p.id"
        );
        let name = project.map(ProjectName::as_str);
        // One snapshot for every count: a status never mixes two moments,
        // whichever coordinator's writes come meanwhile.
        let mut tx = self.pool.begin().await?;
        let projects = query(sql).bind(name).bind(name).fetch_all(&mut tx).await?;
        if let (Some(name), true) = (project, projects.is_empty()) {
            return Err(Error::ProjectNotFound(name.to_string()));
        }
        let mut statuses = Vec::with_capacity(projects.len());
        for row in &projects {
            statuses.push(status_of(&mut tx, row).await?);
        }
        tx.rollback().await?;
        Ok(statuses)
    }
}

/// The status of the project in `row`, counted in `tx`'s snapshot.
async fn status_of(tx: &mut Tx<'_>, row: &Row) -> Result<ProjectStatus> {
    let id: i64 = row.try_get("id")?;
    let mut status = ProjectStatus {
        id,
        name: row.try_get("name")?,
        state: row.try_get("state")?,
        app_digest: row.try_get("app_digest")?,
        policy: rows::policy(row)?,
        validator: row.try_get("validator")?,
        batches: Vec::new(),
        work_units_total: 0,
        work_units_open: 0,
        work_units_done: 0,
        work_units_failed: 0,
        results_unsent: 0,
        results_in_progress: 0,
        results_over: 0,
        results_valid: 0,
        results_invalid: 0,
        results_error: 0,
        results_no_reply: 0,
        results_reported: 0,
    };
    let batches =
        query("SELECT id, state, pause_reason, n_work_units, n_ended FROM batches WHERE project_id = ? ORDER BY id")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
    for batch in &batches {
        status.batches.push(BatchInfo {
            id: batch.try_get("id")?,
            state: batch.try_get("state")?,
            pause_reason: batch.try_get("pause_reason")?,
            n_work_units: u64_column(batch, "n_work_units")?,
            n_ended: u64_column(batch, "n_ended")?,
        });
    }
    let counts = query("SELECT state, COUNT(*) AS n FROM work_units WHERE project_id = ? GROUP BY state")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
    for count in &counts {
        let n = u64_column(count, "n")?;
        status.work_units_total += n;
        match count.try_get::<String, _>("state")?.as_str() {
            "open" => status.work_units_open += n,
            "done" => status.work_units_done += n,
            _ => status.work_units_failed += n,
        }
    }
    let counts = query(
        "SELECT server_state, outcome, validate_state, COUNT(*) AS n FROM results WHERE project_id = ? \
             GROUP BY server_state, outcome, validate_state",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    for count in &counts {
        let n = u64_column(count, "n")?;
        match count.try_get::<String, _>("server_state")?.as_str() {
            "unsent" => status.results_unsent += n,
            "in_progress" => status.results_in_progress += n,
            _ => status.results_over += n,
        }
        match count.try_get::<Option<String>, _>("outcome")?.as_deref() {
            Some("client_error" | "validate_error") => status.results_error += n,
            Some("no_reply") => status.results_no_reply += n,
            _ => {}
        }
        match (
            count.try_get::<Option<String>, _>("outcome")?.as_deref(),
            count.try_get::<String, _>("validate_state")?.as_str(),
        ) {
            (_, "valid") => status.results_valid += n,
            (_, "invalid") => status.results_invalid += n,
            (Some("success"), "pending") => status.results_reported += n,
            _ => {}
        }
    }
    Ok(status)
}

impl Store {
    async fn project_id(&self, project: &ProjectName) -> Result<i64> {
        rows::project_id(&self.pool, project).await
    }

    /// Work units of a project with id above `after_id`, at most `limit`.
    pub async fn list_work_units(&self, project: &ProjectName, after_id: i64, limit: u32) -> Result<Vec<WorkUnitInfo>> {
        let project_id = self.project_id(project).await?;
        let rows = query(concat!(
            "SELECT w.id, w.id AS work_unit_id, w.name, w.state, w.fail_reason, w.canonical_result_id, \
             w.target_results, LENGTH(w.input) AS input_size, w.random_seed, p.name AS project, ",
            rows::app_args_columns!(),
            " FROM work_units w JOIN projects p ON p.id = w.project_id \
             WHERE w.project_id = ? AND w.id > ? ORDER BY w.id LIMIT ?"
        ))
        .bind(project_id)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let (argv, env) = rows::merged_args(row, &row.try_get::<String, _>("project")?)?;
                Ok(WorkUnitInfo {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    state: row.try_get("state")?,
                    fail_reason: row.try_get("fail_reason")?,
                    canonical_result_id: row.try_get("canonical_result_id")?,
                    target_results: u32_column(row, "target_results")?,
                    input_size: u64_column(row, "input_size")?,
                    random_seed: rows::random_seed(row)?,
                    argv,
                    env,
                })
            })
            .collect()
    }

    /// Results of a project (or of one of its work units) with id above `after_id`.
    pub async fn list_results(
        &self,
        project: &ProjectName,
        work_unit_id: Option<i64>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<ResultInfo>> {
        self.list_results_filtered(project, ResultFilter { work_unit_id, ..ResultFilter::default() }, after_id, limit)
            .await
    }

    /// Results of a project chosen by `filter`, with id above `after_id`,
    /// at most `limit`, in id order. A batch that is not the project's is
    /// [`Error::BatchNotFound`].
    pub async fn list_results_filtered(
        &self,
        project: &ProjectName,
        filter: ResultFilter,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<ResultInfo>> {
        let project_id = self.project_id(project).await?;
        if let Some(batch) = filter.batch_id {
            rows::check_batch(&self.pool, project_id, project, batch).await?;
        }
        let (server_state, outcome, validate_state) = match filter.state.map(CopyState::fields) {
            Some((server, outcome, validate)) => {
                (Some(server.as_str()), outcome.map(Outcome::as_str), validate.map(ValidateState::as_str))
            }
            None => (None, None, None),
        };
        let rows = query(
            "SELECT r.id, r.work_unit_id, r.host_id, r.server_state, r.outcome, r.validate_state, r.output_digest, \
             r.fuel_used, r.run_time_ms, r.sent_at, r.deadline, r.received_at, r.error_message, r.stderr_tail, \
             r.granted_credit, r.engine, w.name AS work_unit_name, w.batch_id \
             FROM results r JOIN work_units w ON w.id = r.work_unit_id \
             WHERE r.project_id = ?1 AND (?2 IS NULL OR r.work_unit_id = ?2) AND (?3 IS NULL OR w.batch_id = ?3) \
             AND (?4 IS NULL OR r.server_state = ?4) AND (?5 IS NULL OR r.outcome = ?5) \
             AND (?6 IS NULL OR r.validate_state = ?6) AND r.id > ?7 ORDER BY r.id LIMIT ?8",
        )
        .bind(project_id)
        .bind(filter.work_unit_id)
        .bind(filter.batch_id)
        .bind(server_state)
        .bind(outcome)
        .bind(validate_state)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(result_info).collect()
    }

    /// The project's failed copies (outcome `client_error` or
    /// `validate_error`, of one batch when given) grouped by message, the
    /// most frequent first (then the latest), at most `limit` groups.
    pub async fn error_groups(
        &self,
        project: &ProjectName,
        batch_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ErrorGroup>> {
        let project_id = self.project_id(project).await?;
        if let Some(batch) = batch_id {
            rows::check_batch(&self.pool, project_id, project, batch).await?;
        }
        // The failed copies are few beside the rest: read them through the
        // status index, group them here (messages can be long; SQLite would
        // sort them for GROUP BY anyway).
        let rows = query(
            "SELECT r.id, r.host_id, r.work_unit_id, w.name, r.received_at, r.stderr_tail, \
             COALESCE(r.error_message, r.outcome) AS message \
             FROM results r JOIN work_units w ON w.id = r.work_unit_id \
             WHERE r.project_id = ?1 AND r.server_state = 'over' AND r.outcome IN ('client_error', 'validate_error') \
             AND (?2 IS NULL OR w.batch_id = ?2) ORDER BY r.id DESC",
        )
        .bind(project_id)
        .bind(batch_id)
        .fetch_all(&self.pool)
        .await?;
        struct Group {
            summary: ErrorGroup,
            hosts: std::collections::HashSet<i64>,
            work_units: std::collections::HashSet<i64>,
        }
        let mut groups: HashMap<String, Group> = HashMap::new();
        for row in &rows {
            let message: String = row.try_get("message")?;
            let work_unit: i64 = row.try_get("work_unit_id")?;
            let group = groups.entry(message.clone()).or_insert_with(|| Group {
                // Rows come latest first: the first one seen is the latest.
                summary: ErrorGroup {
                    message,
                    n_results: 0,
                    n_hosts: 0,
                    n_work_units: 0,
                    example_work_units: Vec::new(),
                    latest_result_id: row.try_get("id").unwrap_or_default(),
                    latest_stderr_tail: row.try_get("stderr_tail").unwrap_or_default(),
                    latest_at: row.try_get("received_at").unwrap_or_default(),
                },
                hosts: Default::default(),
                work_units: Default::default(),
            });
            group.summary.n_results += 1;
            if let Some(host) = row.try_get::<Option<i64>, _>("host_id")? {
                group.hosts.insert(host);
            }
            if group.work_units.insert(work_unit) && group.summary.example_work_units.len() < ERROR_EXAMPLES {
                group.summary.example_work_units.push(row.try_get("name")?);
            }
        }
        let mut groups: Vec<ErrorGroup> = groups
            .into_values()
            .map(|group| ErrorGroup {
                n_hosts: group.hosts.len() as u64,
                n_work_units: group.work_units.len() as u64,
                ..group.summary
            })
            .collect();
        groups.sort_by(|a, b| b.n_results.cmp(&a.n_results).then(b.latest_result_id.cmp(&a.latest_result_id)));
        groups.truncate(limit as usize);
        Ok(groups)
    }

    /// Canonical results of a project, by work unit id above `after_work_unit_id`.
    pub async fn canonical_results(
        &self,
        project: &ProjectName,
        after_work_unit_id: i64,
        limit: u32,
    ) -> Result<Vec<CanonicalResult>> {
        let project_id = self.project_id(project).await?;
        let rows = query(concat!(
            "SELECT w.id AS work_unit_id, w.name, w.random_seed, r.id AS result_id, r.output, r.output_digest, \
             r.fuel_used, p.name AS project, ",
            rows::app_args_columns!(),
            " FROM work_units w JOIN results r ON r.id = w.canonical_result_id \
             JOIN projects p ON p.id = w.project_id \
             WHERE w.project_id = ? AND w.state = 'done' AND w.id > ? ORDER BY w.id LIMIT ?"
        ))
        .bind(project_id)
        .bind(after_work_unit_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(canonical_result).collect()
    }

    /// The project's canonical results in the order they were chosen, after
    /// `after` (a cursor of an earlier page; 0 for the first), at most
    /// `limit`, with the cursor of each; and whether the project still had
    /// open work units when this read began. Both come from one read
    /// transaction: with none open and an empty page, every canonical result
    /// the project will ever have was before `after`.
    pub async fn canonical_results_since(
        &self,
        project: &ProjectName,
        after: Cursor,
        limit: u32,
    ) -> Result<CanonicalPage> {
        let mut tx = self.pool.begin().await?;
        let project_id = rows::project_id(&mut tx, project).await?;
        let any_open: bool =
            query_scalar("SELECT EXISTS (SELECT 1 FROM work_units WHERE project_id = ? AND state = 'open')")
                .bind(project_id)
                .fetch_one(&mut tx)
                .await?;
        let rows = query(concat!(
            "SELECT l.seq, w.id AS work_unit_id, w.name, w.random_seed, r.id AS result_id, r.output, \
             r.output_digest, r.fuel_used, p.name AS project, ",
            rows::app_args_columns!(),
            " FROM canonical_log l JOIN work_units w ON w.id = l.work_unit_id \
             JOIN results r ON r.id = w.canonical_result_id \
             JOIN projects p ON p.id = w.project_id \
             WHERE l.project_id = ? AND l.seq > ? ORDER BY l.seq LIMIT ?"
        ))
        .bind(project_id)
        .bind(after.as_i64())
        .bind(i64::from(limit))
        .fetch_all(&mut tx)
        .await?;
        tx.commit().await?;
        let results = rows
            .iter()
            .map(|row| Ok((Cursor::new(u64_column(row, "seq")?), canonical_result(row)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(CanonicalPage { results, any_open })
    }

    /// How many hosts are registered, and how many are attached: in contact
    /// within [`scheduler::ATTACHED_MS`] of `now` (one count, however many hosts).
    pub async fn host_counts(&self, now: Timestamp) -> Result<HostCounts> {
        let row = query("SELECT COUNT(*) AS n_hosts, COALESCE(SUM(last_contact_at >= ?), 0) AS n_active FROM hosts")
            .bind(now.0 - scheduler::ATTACHED_MS)
            .fetch_one(&self.pool)
            .await?;
        Ok(HostCounts { n_hosts: u64_column(&row, "n_hosts")?, n_active: u64_column(&row, "n_active")? })
    }

    /// Every host with its counters and quotas as of `now`.
    pub async fn list_hosts(&self, now: Timestamp) -> Result<Vec<HostInfo>> {
        self.hosts(None, now).await
    }

    /// One host's record as of `now`.
    pub async fn host(&self, host: HostId, now: Timestamp) -> Result<HostInfo> {
        self.hosts(Some(host), now).await?.pop().ok_or(Error::UnknownHost)
    }

    /// Every host, or only `only`.
    async fn hosts(&self, only: Option<HostId>, now: Timestamp) -> Result<Vec<HostInfo>> {
        let quota_rows = query(
            "SELECT q.host_id, q.app_digest, q.daily_quota, q.results_today, q.quota_day, p.name AS project \
             FROM host_app_quotas q LEFT JOIN projects p ON p.app_digest = q.app_digest \
             WHERE ?1 IS NULL OR q.host_id = ?1 ORDER BY q.host_id, q.app_digest, p.id",
        )
        .bind(only.map(|host| host.0))
        .fetch_all(&self.pool)
        .await?;
        let mut app_quotas: HashMap<i64, Vec<AppQuotaInfo>> = HashMap::new();
        for row in &quota_rows {
            let quotas = app_quotas.entry(row.try_get("host_id")?).or_default();
            let digest: String = row.try_get("app_digest")?;
            let project: Option<String> = row.try_get("project")?;
            if let Some(last) = quotas.last_mut().filter(|last| last.app_digest == digest) {
                last.projects.extend(project);
                continue;
            }
            let quota = AppQuota(Quota {
                daily: u32_column(row, "daily_quota")?,
                used: u32_column(row, "results_today")?,
                day: row.try_get("quota_day")?,
            });
            quotas.push(AppQuotaInfo {
                app_digest: digest,
                projects: project.into_iter().collect(),
                daily_quota: quota.0.daily,
                results_today: quota.0.used_today(now),
                exhausted: quota.exhausted(now),
            });
        }
        let rows = query(
            "SELECT h.*, (SELECT COUNT(*) FROM results r WHERE r.host_id = h.id AND r.server_state = 'in_progress') \
             AS n_in_progress FROM hosts h WHERE ?1 IS NULL OR h.id = ?1 ORDER BY h.id",
        )
        .bind(only.map(|host| host.0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(HostInfo {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    n_cpus: u32_column(row, "n_cpus")?,
                    memory_bytes: u64_column(row, "memory_bytes")?,
                    engine: row.try_get("engine")?,
                    os: row.try_get("os")?,
                    created_at: row.try_get("created_at")?,
                    last_contact_at: row.try_get("last_contact_at")?,
                    n_valid: u64_column(row, "n_valid")?,
                    n_invalid: u64_column(row, "n_invalid")?,
                    n_error: u64_column(row, "n_error")?,
                    n_no_reply: u64_column(row, "n_no_reply")?,
                    n_in_progress: u64_column(row, "n_in_progress")?,
                    total_credit: row.try_get("total_credit")?,
                    account: row.try_get("account")?,
                    consecutive_valid: u32_column(row, "consecutive_valid")?,
                    daily_quota: u32_column(row, "daily_quota")?,
                    results_today: rows::host_trust(row)?.quota.used_today(now),
                    app_quotas: app_quotas.remove(&row.try_get("id")?).unwrap_or_default(),
                })
            })
            .collect()
    }
}

/// A [`ResultInfo`] from a row of `list_results_filtered`'s query.
fn result_info(row: &Row) -> Result<ResultInfo> {
    let (server, outcome, validate) = rows::copy_fields(row)?;
    Ok(ResultInfo {
        id: row.try_get("id")?,
        work_unit_id: row.try_get("work_unit_id")?,
        host_id: row.try_get("host_id")?,
        server_state: server.as_str().to_owned(),
        outcome: outcome.map(|outcome| outcome.as_str().to_owned()),
        validate_state: validate.as_str().to_owned(),
        output_digest: row.try_get("output_digest")?,
        fuel_used: u64_column(row, "fuel_used")?,
        run_time_ms: u64_column(row, "run_time_ms")?,
        sent_at: row.try_get("sent_at")?,
        deadline: row.try_get("deadline")?,
        received_at: row.try_get("received_at")?,
        error_message: row.try_get("error_message")?,
        stderr_tail: row.try_get("stderr_tail")?,
        granted_credit: row.try_get("granted_credit")?,
        engine: row.try_get("engine")?,
        work_unit_name: row.try_get("work_unit_name")?,
        batch_id: row.try_get("batch_id")?,
        state: CopyState::of(server, outcome, validate),
    })
}

/// A canonical result from a row of the canonical-result queries.
fn canonical_result(row: &Row) -> Result<CanonicalResult> {
    let (argv, env) = rows::merged_args(row, &row.try_get::<String, _>("project")?)?;
    Ok(CanonicalResult {
        work_unit_id: row.try_get("work_unit_id")?,
        work_unit_name: row.try_get("name")?,
        result_id: row.try_get("result_id")?,
        output: row.try_get::<Option<Vec<u8>>, _>("output")?.unwrap_or_default(),
        output_digest: row.try_get::<Option<String>, _>("output_digest")?.unwrap_or_default(),
        fuel_used: u64_column(row, "fuel_used")?,
        random_seed: rows::random_seed(row)?,
        argv,
        env,
    })
}
