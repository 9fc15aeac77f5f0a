//! Running the lifecycle rules against stored state: load one work unit with
//! all its results, ask `domain::lifecycle`, persist the answer, all inside
//! the caller's transaction. Also the deadline sweep and cancellation.

use super::backend::{QueryBuilder, Row, Tx, query, query_scalar};

use super::hosts::{HostAppEvent, apply_host_events};
use super::submit::{create_batch, insert_unsent};
use super::{Error, Result, Store};
use super::{bulk, rows};
use std::collections::HashMap;

use crate::domain::fuzzy;
use crate::domain::lifecycle::{self, Outcome, ResultCopy, Transition, WorkUnit};
use crate::domain::names::ProjectName;
use crate::domain::policy::{ReplicationPolicy, ValidatorKind};
use crate::domain::validator::{Bitwise, Comparator, Fuzzy};
use crate::domain::{ProjectId, ResultId, Timestamp, WorkUnitId, batch};
use crate::validators::{Custom, Validators};

/// Which rule to apply to a work unit.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// Something may have changed (a report, a deadline): bring it up to date.
    Update,
    /// Its project is cancelled.
    Cancel,
}

/// Loads a work unit and its results, applies `event` and stores the outcome.
pub(super) async fn transition_work_unit(
    tx: &mut Tx<'_>,
    validators: &Validators,
    work_unit_id: WorkUnitId,
    event: Event,
    now: Timestamp,
) -> Result<()> {
    transition_work_units(tx, validators, &[work_unit_id], event, now).await
}

/// Loads work units and the copies of their current attempt, applies `event`
/// to each and stores the outcomes: a few set-based statements per
/// [`bulk::CHUNK`] work units instead of a handful per work unit.
pub(super) async fn transition_work_units(
    tx: &mut Tx<'_>,
    validators: &Validators,
    work_unit_ids: &[WorkUnitId],
    event: Event,
    now: Timestamp,
) -> Result<()> {
    let host_events = transitions(tx, validators, work_unit_ids, event, now).await?;
    apply_host_events(tx, &host_events).await
}

/// [`transition_work_units`], except that the events on hosts (credit,
/// trust, app quotas) are returned, in order, for the caller to apply.
pub(super) async fn transitions(
    tx: &mut Tx<'_>,
    validators: &Validators,
    work_unit_ids: &[WorkUnitId],
    event: Event,
    now: Timestamp,
) -> Result<Vec<HostAppEvent>> {
    let mut host_events = Vec::new();
    // Per project, read once per call (only for work units accepted alone).
    let mut typical_credits: HashMap<ProjectId, f64> = HashMap::new();
    let mut ids: Vec<i64> = work_unit_ids.iter().map(|id| id.0).collect();
    ids.sort_unstable();
    ids.dedup();
    for chunk in ids.chunks(bulk::CHUNK) {
        let mut query = QueryBuilder::new(concat!(
            "SELECT w.id, w.project_id, p.app_digest, w.state, w.fail_reason, w.target_results, w.canonical_result_id, \
             w.single_result, w.attempt, w.purged_at, ",
            rows::work_unit_policy_columns!(),
            " FROM work_units w JOIN projects p ON p.id = w.project_id LEFT JOIN batches b ON b.id = w.batch_id \
             WHERE w.id IN "
        ));
        bulk::push_list(&mut query, chunk);
        // In id order, so that host events (trust streaks) apply in a fixed order.
        query.push(" ORDER BY w.id");
        let work_unit_rows = query.build().fetch_all(&mut *tx).await?;
        // Only the copies of the current attempt count (a retried work unit starts afresh).
        let mut query = QueryBuilder::new(concat!(
            "SELECT ",
            rows::result_copy_columns!(),
            ", r.work_unit_id FROM results r JOIN work_units w ON w.id = r.work_unit_id AND r.attempt = w.attempt \
             WHERE r.work_unit_id IN "
        ));
        bulk::push_list(&mut query, chunk);
        query.push(" ORDER BY r.id");
        let mut copies: HashMap<i64, Vec<ResultCopy>> = HashMap::new();
        for row in query.build().fetch_all(&mut *tx).await? {
            copies.entry(row.try_get("work_unit_id")?).or_default().push(rows::result_copy(&row)?);
        }
        let mut changes = Changes::default();
        for row in &work_unit_rows {
            let mut work_unit = rows::work_unit(row)?;
            let project = ProjectId(row.try_get("project_id")?);
            if work_unit.single_result {
                work_unit.typical_credit = match typical_credits.get(&project) {
                    Some(credit) => *credit,
                    None => {
                        let credit = typical_credit(tx, project).await?;
                        typical_credits.insert(project, credit);
                        credit
                    }
                };
            }
            let app: String = row.try_get("app_digest")?;
            let policy = rows::policy(row)?;
            let results = copies.remove(&work_unit.id.0).unwrap_or_default();
            let transition = match event {
                Event::Update => {
                    let validator = rows::validator(row)?;
                    if validator == ValidatorKind::Bitwise {
                        // Outputs are compared by digest: nothing to load.
                        lifecycle::transition(&policy, &work_unit, &results, &Bitwise, now)
                    } else {
                        let comparator = comparator(tx, validators, &validator, &results).await?;
                        let custom = matches!(validator, ValidatorKind::Custom { .. });
                        run_comparisons(custom, || {
                            lifecycle::transition(&policy, &work_unit, &results, comparator.as_ref(), now)
                        })
                    }
                }
                Event::Cancel => lifecycle::cancel(&work_unit, &results, now, &policy),
            };
            changes.add(&work_unit, project, &app, transition, now);
        }
        host_events.extend(changes.persist(tx, now).await?);
    }
    Ok(host_events)
}

/// Replicated canonical results a project's typical credit is the median of.
const TYPICAL_CREDIT_SAMPLE: i64 = 99;
/// How many of a project's latest done work units are searched for them, so
/// a project where nearly everything is accepted alone does not scan its
/// whole history.
const TYPICAL_CREDIT_WINDOW: i64 = 1000;

/// The project's typical credit ([`lifecycle::typical_credit`]): the median
/// credit of the canonical results of its latest work units validated by
/// replication (never of one accepted alone), so no lone host raises it.
async fn typical_credit(tx: &mut Tx<'_>, project: ProjectId) -> Result<f64> {
    let rows = query(
        "SELECT r.granted_credit FROM (SELECT canonical_result_id, single_result FROM work_units \
         WHERE project_id = ? AND state = 'done' ORDER BY id DESC LIMIT ?) w \
         JOIN results r ON r.id = w.canonical_result_id WHERE w.single_result = 0 LIMIT ?",
    )
    .bind(project.0)
    .bind(TYPICAL_CREDIT_WINDOW)
    .bind(TYPICAL_CREDIT_SAMPLE)
    .fetch_all(&mut *tx)
    .await?;
    let credits = rows.iter().map(|row| row.try_get("granted_credit")).collect::<std::result::Result<Vec<f64>, _>>()?;
    Ok(lifecycle::typical_credit(&credits))
}

/// What compares this work unit's results: the project's validator, with the
/// outputs it needs loaded.
async fn comparator(
    tx: &mut Tx<'_>,
    validators: &Validators,
    validator: &ValidatorKind,
    results: &[ResultCopy],
) -> Result<Box<dyn Comparator + Send + Sync>> {
    match validator {
        ValidatorKind::Bitwise => Ok(Box::new(Bitwise)),
        ValidatorKind::Fuzzy { format, tolerance } => {
            let parsed = success_outputs(tx, results)
                .await?
                .into_iter()
                .map(|(id, output)| (id, fuzzy::parse(*format, &output)))
                .collect();
            Ok(Box::new(Fuzzy { tolerance: *tolerance, parsed }))
        }
        ValidatorKind::Custom { module_digest } => {
            let outputs = success_outputs(tx, results).await?;
            let module: Vec<u8> = query("SELECT module FROM apps WHERE digest = ?")
                .bind(module_digest.as_str())
                .fetch_one(&mut *tx)
                .await?
                .try_get("module")?;
            let validator = validators.get(module_digest.as_str(), || module)?;
            Ok(Box::new(Custom { validator, outputs }))
        }
    }
}

/// The outputs of the successful results among `results`.
async fn success_outputs(tx: &mut Tx<'_>, results: &[ResultCopy]) -> Result<HashMap<ResultId, Vec<u8>>> {
    let mut outputs = HashMap::new();
    for result in results.iter().filter(|r| r.outcome == Some(Outcome::Success)) {
        let output: Option<Vec<u8>> = query("SELECT output FROM results WHERE id = ?")
            .bind(result.id.0)
            .fetch_one(&mut *tx)
            .await?
            .try_get("output")?;
        outputs.insert(result.id, output.unwrap_or_default());
    }
    Ok(outputs)
}

/// Runs `compare`. With a custom validator it executes WebAssembly (CPU work,
/// and wasmtime's WASI drives its own runtime), so it runs on a thread of its
/// own, outside the async runtime.
fn run_comparisons<T: Send>(custom: bool, compare: impl FnOnce() -> T + Send) -> T {
    if !custom {
        return compare();
    }
    std::thread::scope(|scope| match scope.spawn(compare).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// What transitions of several work units decided, gathered to be written
/// with a few set-based statements.
#[derive(Default)]
struct Changes {
    /// Work units whose row changed, with the time they ended (if they did).
    work_units: Vec<(WorkUnit, Option<i64>)>,
    /// Copies whose state changed, as they are now.
    results: Vec<ResultCopy>,
    /// New unsent copies to create, per work unit.
    new_results: Vec<(WorkUnitId, ProjectId, u32)>,
    /// Work units that just ended (their batch counts them).
    ended: Vec<i64>,
    host_events: Vec<HostAppEvent>,
}

impl Changes {
    fn add(&mut self, before: &WorkUnit, project: ProjectId, app: &str, transition: Transition, now: Timestamp) {
        if transition.is_noop(before) {
            return;
        }
        let after = transition.work_unit;
        let ended = after.state != lifecycle::WorkUnitState::Open;
        if before.state == lifecycle::WorkUnitState::Open && ended {
            self.ended.push(after.id.0);
        }
        if transition.new_results > 0 {
            self.new_results.push((after.id, project, transition.new_results));
        }
        if after != *before {
            self.work_units.push((after, ended.then_some(now.0)));
        }
        self.results.extend(transition.changed_results);
        self.host_events.extend(transition.host_events.into_iter().map(|(host, event)| HostAppEvent {
            host,
            app: app.to_owned(),
            event,
        }));
    }

    /// Writes the changes; returns the events on hosts, for the caller to apply.
    async fn persist(self, tx: &mut Tx<'_>, now: Timestamp) -> Result<Vec<HostAppEvent>> {
        // The updates go to SQLite as one multi-statement query: one round
        // trip to its thread instead of one per statement.
        let mut query = QueryBuilder::new("");
        for chunk in self.work_units.chunks(bulk::CHUNK) {
            query.push(
                "WITH v(id, state, fail_reason, target_results, canonical_result_id, single_result, ended_at) AS (",
            );
            bulk::push_values(&mut query, chunk, 7, |mut row, (work_unit, ended_at)| {
                row.push_bind(work_unit.id.0)
                    .push_bind(work_unit.state.as_str())
                    .push_bind(work_unit.state.fail_reason().map(lifecycle::FailReason::as_str))
                    .push_bind(work_unit.target_results)
                    .push_bind(work_unit.canonical_result.map(|id| id.0))
                    .push_bind(work_unit.single_result)
                    .push_bind(*ended_at);
            });
            query.push(
                ") UPDATE work_units SET state = v.state, fail_reason = v.fail_reason, \
                 target_results = v.target_results, canonical_result_id = v.canonical_result_id, \
                 single_result = v.single_result, ended_at = COALESCE(work_units.ended_at, v.ended_at) \
                 FROM v WHERE work_units.id = v.id; ",
            );
        }
        for chunk in self.results.chunks(bulk::CHUNK) {
            query.push("WITH v(id, server_state, outcome, validate_state, granted_credit) AS (");
            bulk::push_values(&mut query, chunk, 5, |mut row, result| {
                row.push_bind(result.id.0)
                    .push_bind(result.server_state.as_str())
                    .push_bind(result.outcome.map(lifecycle::Outcome::as_str))
                    .push_bind(result.validate_state.as_str())
                    .push_bind(result.granted_credit);
            });
            query.push(
                ") UPDATE results SET server_state = v.server_state, outcome = v.outcome, \
                 validate_state = v.validate_state, granted_credit = v.granted_credit FROM v WHERE results.id = v.id; ",
            );
        }
        for chunk in self.ended.chunks(bulk::CHUNK) {
            query.push(
                "UPDATE batches SET n_ended = n_ended + e.n FROM (SELECT batch_id, COUNT(*) AS n FROM work_units \
                 WHERE batch_id IS NOT NULL AND id IN ",
            );
            bulk::push_list(&mut query, chunk);
            query.push(" GROUP BY batch_id) AS e WHERE batches.id = e.batch_id; ");
            // The ones that got a canonical result join the assimilation
            // order, in this transaction (StreamCanonicalResults reads it).
            query.push(
                "INSERT INTO canonical_log (project_id, work_unit_id) SELECT project_id, id FROM work_units \
                 WHERE state = 'done' AND id IN ",
            );
            bulk::push_list(&mut query, chunk);
            query.push(" ORDER BY id; ");
        }
        if !self.work_units.is_empty() || !self.results.is_empty() || !self.ended.is_empty() {
            query.build().execute(&mut *tx).await?;
        }
        for (work_unit, project, n) in &self.new_results {
            for _ in 0..*n {
                insert_unsent(tx, *work_unit, *project, now).await?;
            }
        }
        Ok(self.host_events)
    }
}

/// The tail of a batch: a copy in progress that is at risk of missing its
/// deadline gets a spare copy sent early (once per work unit), so the last
/// percent does not wait for the slowest host. Returns how many were sent.
async fn send_spare_copies(tx: &mut Tx<'_>, validators: &Validators, now: Timestamp) -> Result<usize> {
    let rows = query(
        "SELECT r.work_unit_id, r.sent_at, p.deadline_ms, h.avg_turnaround_ms, b.n_work_units, b.n_ended \
         FROM results r JOIN work_units w ON w.id = r.work_unit_id JOIN batches b ON b.id = w.batch_id \
         JOIN projects p ON p.id = r.project_id JOIN hosts h ON h.id = r.host_id \
         WHERE r.server_state = 'in_progress' AND w.state = 'open' AND w.spare_sent = 0 AND b.state = 'active' \
         AND b.n_ended >= b.n_work_units * ? AND r.sent_at <= ? - p.deadline_ms / 2 LIMIT 500",
    )
    .bind(batch::TAIL_SHARE)
    .bind(now.0)
    .fetch_all(&mut *tx)
    .await?;
    let mut sent = 0;
    for row in &rows {
        let elapsed = u64::try_from(now.0 - row.try_get::<i64, _>("sent_at")?).unwrap_or(0);
        let tail = batch::in_tail(rows::u64_column(row, "n_work_units")?, rows::u64_column(row, "n_ended")?);
        let risk = batch::at_risk(
            elapsed,
            rows::u64_column(row, "deadline_ms")?,
            rows::optional_u64(row, "avg_turnaround_ms")?,
        );
        if !(tail && risk) {
            continue;
        }
        let work_unit: i64 = row.try_get("work_unit_id")?;
        let raised = query(
            "UPDATE work_units SET spare_sent = 1, target_results = target_results + 1 WHERE id = ? AND spare_sent = 0",
        )
        .bind(work_unit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if raised > 0 {
            transition_work_unit(tx, validators, WorkUnitId(work_unit), Event::Update, now).await?;
            sent += 1;
        }
    }
    Ok(sent)
}

/// Which work units to cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelScope {
    Batch(i64),
    WorkUnits(Vec<WorkUnitId>),
}

/// The `id` column of every row.
fn ids(rows: &[Row]) -> Result<Vec<i64>> {
    Ok(rows.iter().map(|row| row.try_get("id")).collect::<Result<_, _>>()?)
}

/// The state of one of the project's work units.
async fn work_unit_state(
    tx: &mut Tx<'_>,
    project_id: i64,
    project: &ProjectName,
    work_unit: WorkUnitId,
) -> Result<String> {
    let row = query("SELECT state FROM work_units WHERE id = ? AND project_id = ?")
        .bind(work_unit.0)
        .bind(project_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::WorkUnitNotFound { project: project.to_string(), work_unit: work_unit.0 })?;
    Ok(row.try_get("state")?)
}

/// Fails unless `batch` is one of the project's batches.
/// What `Store::delete_project` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletedProject {
    pub n_work_units: u64,
    pub n_results: u64,
}

/// What one transitioner pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitionerPass {
    /// Work units brought up to date because a copy passed its deadline.
    pub work_units: usize,
    /// True when more expired copies remain (the pass was capped).
    pub more: bool,
}

impl Store {
    /// Most work units handled in one transitioner transaction.
    const TRANSITIONER_BATCH: i64 = 500;

    /// One transitioner step: every copy in progress whose deadline is at or
    /// before `now` becomes "no reply" and its work unit is brought up to date
    /// (new copy, or failure). One transaction, at most `TRANSITIONER_BATCH` work units.
    pub async fn run_transitioner(&self, now: Timestamp) -> Result<TransitionerPass> {
        let mut tx = self.write().await?;
        let ids: Vec<i64> = query(
            "SELECT DISTINCT work_unit_id FROM results WHERE server_state = 'in_progress' AND deadline <= ? LIMIT ?",
        )
        .bind(now.0)
        .bind(Self::TRANSITIONER_BATCH + 1)
        .fetch_all(&mut tx)
        .await?
        .iter()
        .map(|row| row.try_get("work_unit_id"))
        .collect::<Result<_, _>>()?;
        let more = ids.len() as i64 > Self::TRANSITIONER_BATCH;
        let batch = &ids[..ids.len().min(Self::TRANSITIONER_BATCH as usize)];
        let work_units: Vec<WorkUnitId> = batch.iter().copied().map(WorkUnitId).collect();
        transition_work_units(&mut tx, &self.validators, &work_units, Event::Update, now).await?;
        let spares = send_spare_copies(&mut tx, &self.validators, now).await?;
        tx.commit().await?;
        Ok(TransitionerPass { work_units: batch.len() + spares, more })
    }

    /// Cancels work units of a project: those of one batch, or those listed.
    /// Open ones fail as cancelled, their unsent copies are retired and the
    /// hosts holding copies are told to abort them. Returns how many were cancelled.
    pub async fn cancel_work_units(&self, project: &ProjectName, scope: &CancelScope, now: Timestamp) -> Result<u64> {
        let mut tx = self.write().await?;
        let project_id = rows::project_id(&mut tx, project).await?;
        let ids: Vec<i64> = match scope {
            CancelScope::Batch(batch) => {
                rows::check_batch(&mut tx, project_id, project, *batch).await?;
                let rows = query("SELECT id FROM work_units WHERE batch_id = ? AND state = 'open'")
                    .bind(*batch)
                    .fetch_all(&mut tx)
                    .await?;
                ids(&rows)?
            }
            CancelScope::WorkUnits(work_units) => {
                let mut open = Vec::new();
                for &id in work_units {
                    if work_unit_state(&mut tx, project_id, project, id).await? == "open" {
                        open.push(id.0);
                    }
                }
                open
            }
        };
        let work_units: Vec<WorkUnitId> = ids.iter().copied().map(WorkUnitId).collect();
        transition_work_units(&mut tx, &self.validators, &work_units, Event::Cancel, now).await?;
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    /// Retries failed work units of an active project (the listed ones, or
    /// every failed one) as a new batch, with its own policy if given. Each
    /// starts a new attempt: the copies of earlier attempts no longer count.
    /// Returns how many were retried and the new batch's id.
    pub async fn retry_work_units(
        &self,
        project: &ProjectName,
        work_units: &[WorkUnitId],
        policy: Option<&ReplicationPolicy>,
        now: Timestamp,
    ) -> Result<(u64, i64)> {
        let mut tx = self.write().await?;
        let row = query("SELECT id, state, target_results FROM projects WHERE name = ?")
            .bind(project.as_str())
            .fetch_optional(&mut tx)
            .await?
            .ok_or_else(|| Error::ProjectNotFound(project.to_string()))?;
        let project_id: i64 = row.try_get("id")?;
        if row.try_get::<String, _>("state")? != "active" {
            return Err(Error::ProjectCancelled(project.to_string()));
        }
        let ids: Vec<i64> = if work_units.is_empty() {
            let rows = query("SELECT id FROM work_units WHERE project_id = ? AND state = 'failed' ORDER BY id")
                .bind(project_id)
                .fetch_all(&mut tx)
                .await?;
            ids(&rows)?
        } else {
            let mut failed = Vec::new();
            for &id in work_units {
                let state = work_unit_state(&mut tx, project_id, project, id).await?;
                if state != "failed" {
                    return Err(Error::NotFailed { work_unit: id.0, state });
                }
                failed.push(id.0);
            }
            failed
        };
        if ids.is_empty() {
            return Err(Error::NothingToRetry(project.to_string()));
        }
        let batch = create_batch(&mut tx, ProjectId(project_id), ids.len() as u64, policy, now).await?;
        let target = match policy {
            Some(policy) => i64::from(policy.target_results()),
            None => row.try_get("target_results")?,
        };
        for &id in &ids {
            // Copies of the failed attempt still out are not needed any more.
            query(
                "UPDATE results SET server_state = 'over', outcome = 'didnt_need' \
                 WHERE work_unit_id = ? AND server_state != 'over'",
            )
            .bind(id)
            .execute(&mut tx)
            .await?;
            query(
                "UPDATE work_units SET state = 'open', fail_reason = NULL, canonical_result_id = NULL, \
                 single_result = 0, spare_sent = 0, ended_at = NULL, attempt = attempt + 1, target_results = ?, \
                 batch_id = ? WHERE id = ?",
            )
            .bind(target)
            .bind(batch)
            .bind(id)
            .execute(&mut tx)
            .await?;
            transition_work_unit(&mut tx, &self.validators, WorkUnitId(id), Event::Update, now).await?;
        }
        tx.commit().await?;
        Ok((ids.len() as u64, batch))
    }

    /// Purges the data of a project's ended work units: their inputs and the
    /// outputs of every copy but the canonical one (which `quorum results`
    /// still reads). A copy reported afterwards is too late. Returns how many
    /// work units were purged.
    pub async fn purge_project(&self, project: &ProjectName, now: Timestamp) -> Result<u64> {
        let mut tx = self.write().await?;
        let project_id = rows::project_id(&mut tx, project).await?;
        query(
            "UPDATE results SET output = NULL WHERE work_unit_id IN (SELECT id FROM work_units \
             WHERE project_id = ? AND state != 'open' AND purged_at IS NULL) \
             AND id NOT IN (SELECT canonical_result_id FROM work_units WHERE project_id = ? \
             AND canonical_result_id IS NOT NULL)",
        )
        .bind(project_id)
        .bind(project_id)
        .execute(&mut tx)
        .await?;
        let purged = query(
            "UPDATE work_units SET input = ?, purged_at = ? WHERE project_id = ? AND state != 'open' \
             AND purged_at IS NULL",
        )
        .bind(Vec::<u8>::new())
        .bind(now.0)
        .bind(project_id)
        .execute(&mut tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(purged)
    }

    /// Deletes a project and everything of it in one transaction: its
    /// results, work units, batches and their error watch, and its app and
    /// validator modules unless another project uses them. The hosts keep
    /// their credit and trust. Refused with [`Error::CopiesInProgress`]
    /// while hosts hold copies of it (their reports would name copies that
    /// no longer exist).
    pub async fn delete_project(&self, project: &ProjectName) -> Result<DeletedProject> {
        let mut tx = self.write().await?;
        let project_id = rows::project_id(&mut tx, project).await?;
        let n_in_progress: i64 =
            query_scalar("SELECT COUNT(*) FROM results WHERE project_id = ? AND server_state = 'in_progress'")
                .bind(project_id)
                .fetch_one(&mut tx)
                .await?;
        if n_in_progress > 0 {
            return Err(Error::CopiesInProgress {
                project: project.to_string(),
                n_in_progress: n_in_progress.unsigned_abs(),
            });
        }
        query("DELETE FROM batch_error_hosts WHERE batch_id IN (SELECT id FROM batches WHERE project_id = ?)")
            .bind(project_id)
            .execute(&mut tx)
            .await?;
        // Its files' bytes stay in the file store (another project may use them).
        query(
            "DELETE FROM result_files WHERE result_id IN (SELECT id FROM results WHERE project_id = ?1); \
             DELETE FROM work_unit_files WHERE work_unit_id IN (SELECT id FROM work_units WHERE project_id = ?1); \
             DELETE FROM project_files WHERE project_id = ?1",
        )
        .bind(project_id)
        .execute(&mut tx)
        .await?;
        query("DELETE FROM canonical_log WHERE project_id = ?").bind(project_id).execute(&mut tx).await?;
        let n_results = query("DELETE FROM results WHERE project_id = ?").bind(project_id).execute(&mut tx).await?;
        let n_work_units =
            query("DELETE FROM work_units WHERE project_id = ?").bind(project_id).execute(&mut tx).await?;
        query("DELETE FROM batches WHERE project_id = ?").bind(project_id).execute(&mut tx).await?;
        let modules = query("DELETE FROM projects WHERE id = ? RETURNING app_digest, validator_digest")
            .bind(project_id)
            .fetch_one(&mut tx)
            .await?;
        let app: String = modules.try_get("app_digest")?;
        let validator: Option<String> = modules.try_get("validator_digest")?;
        query(
            "DELETE FROM apps WHERE digest IN (?, ?) AND digest NOT IN (SELECT app_digest FROM projects) \
             AND digest NOT IN (SELECT validator_digest FROM projects WHERE validator_digest IS NOT NULL)",
        )
        .bind(&app)
        .bind(validator.as_deref().unwrap_or(&app))
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(DeletedProject { n_work_units: n_work_units.rows_affected(), n_results: n_results.rows_affected() })
    }

    /// Resumes a paused batch of a project, or all of them when `batch_id` is
    /// None; their error watch starts over. Returns how many were resumed.
    pub async fn resume_batches(&self, project: &ProjectName, batch_id: Option<i64>) -> Result<u64> {
        let mut tx = self.write().await?;
        let project_id = rows::project_id(&mut tx, project).await?;
        if let Some(batch) = batch_id {
            rows::check_batch(&mut tx, project_id, project, batch).await?;
        }
        // The error watch starts over: the erring hosts seen so far no longer count.
        query(
            "DELETE FROM batch_error_hosts WHERE batch_id IN (SELECT id FROM batches \
             WHERE project_id = ? AND state = 'paused' AND (? IS NULL OR id = ?))",
        )
        .bind(project_id)
        .bind(batch_id)
        .bind(batch_id)
        .execute(&mut tx)
        .await?;
        let resumed = query(
            "UPDATE batches SET state = 'active', pause_reason = NULL, n_reported = 0, n_errors = 0 \
             WHERE project_id = ? AND state = 'paused' AND (? IS NULL OR id = ?)",
        )
        .bind(project_id)
        .bind(batch_id)
        .bind(batch_id)
        .execute(&mut tx)
        .await?
        .rows_affected();
        if resumed > 0 {
            // Their copies come back into the walk, maybe behind frontiers:
            // every coordinator forgets its frontiers (`frontiers`).
            query("UPDATE scheduler_state SET frontier_epoch = frontier_epoch + 1").execute(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(resumed)
    }

    /// The earliest deadline of any copy in progress.
    pub async fn next_deadline(&self) -> Result<Option<Timestamp>> {
        let row = query("SELECT MIN(deadline) AS next FROM results WHERE server_state = 'in_progress'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("next")?.map(Timestamp))
    }

    /// Cancels a project: it stops being scheduled, its open work units fail as
    /// cancelled, their unsent copies are retired and the hosts holding copies
    /// are told to abort them. Returns how many work units were cancelled.
    pub async fn cancel_project(&self, project: &ProjectName, now: Timestamp) -> Result<u64> {
        let mut tx = self.write().await?;
        let project_id = rows::project_id(&mut tx, project).await?;
        query("UPDATE projects SET state = 'cancelled' WHERE id = ?").bind(project_id).execute(&mut tx).await?;
        let rows = query("SELECT id FROM work_units WHERE project_id = ? AND state = 'open'")
            .bind(project_id)
            .fetch_all(&mut tx)
            .await?;
        let ids = ids(&rows)?;
        let work_units: Vec<WorkUnitId> = ids.iter().copied().map(WorkUnitId).collect();
        transition_work_units(&mut tx, &self.validators, &work_units, Event::Cancel, now).await?;
        tx.commit().await?;
        Ok(ids.len() as u64)
    }
}
