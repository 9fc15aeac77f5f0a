//! The scheduler's side of the store: hosts, leasing unsent copies to a host,
//! and recording what hosts report.

use std::collections::{HashMap, HashSet};

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::rows::{self, int};
use super::transitions::{Event, apply_host_events, transition_work_unit, transition_work_units};
use super::{Error, Result, Store};
use super::{bulk, writer};
use crate::domain::lifecycle::{self, HostEvent, Report, ReportDecision, ReportError, WorkUnitState};
use crate::domain::policy::Limits;
use crate::domain::{HostId, ResultId, Timestamp, WorkUnitId, batch, scheduler, trust};
use crate::validators::Validators;

/// How stale a host's recorded last contact may get before a call updates it.
const CONTACT_RESOLUTION_MS: i64 = 60_000;

/// A volunteer machine registering.
#[derive(Debug, Clone)]
pub struct NewHost {
    pub name: String,
    pub n_cpus: u32,
    pub memory_bytes: u64,
    pub engine: String,
    pub os: String,
    /// The volunteer account owning the host; empty when it stands alone.
    pub account: String,
}

/// One copy handed to a host, with everything needed to compute it.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub result_id: ResultId,
    pub work_unit_id: WorkUnitId,
    pub work_unit_name: String,
    pub project: String,
    pub app_digest: String,
    pub input: Vec<u8>,
    pub random_seed: u64,
    pub limits: Limits,
    pub deadline: Timestamp,
    pub nan_canonicalization: bool,
}

/// One report from a host, checked for shape by the caller.
#[derive(Debug, Clone)]
pub struct ReportInput {
    pub result_id: ResultId,
    pub report: Report,
    pub output: Vec<u8>,
    pub stderr_tail: String,
    pub run_time_ms: u64,
    pub error_message: String,
}

/// The answer to a batch of reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportSummary {
    /// Reports stored or already stored: the host may forget them.
    pub accepted: Vec<ResultId>,
    /// Copies the host holds that are no longer needed: it should stop them.
    pub abort: Vec<ResultId>,
}

/// One turn of a worker's loop: what it finished, what it holds, how many
/// copies it can take.
#[derive(Debug, Clone, Default)]
pub struct WorkRequest {
    /// Finished copies, recorded before new work is chosen.
    pub reports: Vec<ReportInput>,
    /// Every copy the host still holds, when it says so: copies assigned to it
    /// that it does not list were lost on the way and are sent again.
    pub held: Option<Vec<ResultId>>,
    /// Copies it can take (lost ones included).
    pub slots: u32,
}

/// The answer to a [`WorkRequest`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkReply {
    /// Reports stored or already stored: the host may forget them.
    pub accepted: Vec<ResultId>,
    /// Copies to compute: the lost ones first, then new ones.
    pub assignments: Vec<Assignment>,
    /// How many of `assignments` are lost copies sent again.
    pub n_lost: usize,
    /// Copies the host holds that are no longer needed: it should stop them.
    pub abort: Vec<ResultId>,
}

impl Store {
    /// Registers a host whose token hashes to `token_hash`.
    pub async fn register_host(&self, host: &NewHost, token_hash: &str, now: Timestamp) -> Result<HostId> {
        let id: i64 = sqlx::query(
            "INSERT INTO hosts (token_hash, name, n_cpus, memory_bytes, engine, os, created_at, last_contact_at, account) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(token_hash)
        .bind(&host.name)
        .bind(host.n_cpus)
        .bind(int(host.memory_bytes))
        .bind(&host.engine)
        .bind(&host.os)
        .bind(now.0)
        .bind(now.0)
        .bind(&host.account)
        .fetch_one(&self.pool)
        .await?
        .try_get("id")?;
        Ok(HostId(id))
    }

    /// The host whose token hashes to `token_hash`, recording its contact
    /// (at most once per `CONTACT_RESOLUTION_MS`, so that most calls only read).
    pub async fn authenticate_host(&self, token_hash: &str, now: Timestamp) -> Result<HostId> {
        let row = sqlx::query("SELECT id, last_contact_at FROM hosts WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::UnknownHost)?;
        let host = HostId(row.try_get("id")?);
        let last_contact: i64 = row.try_get("last_contact_at")?;
        if now.0 - last_contact >= CONTACT_RESOLUTION_MS {
            sqlx::query("UPDATE hosts SET last_contact_at = ? WHERE id = ?")
                .bind(now.0)
                .bind(host.0)
                .execute(&self.pool)
                .await?;
        }
        Ok(host)
    }

    /// Leases up to `slots` unsent copies to `host`, oldest first, within
    /// the host's daily quota, never two copies of one work unit to the same
    /// host nor to two hosts of one volunteer account. Under adaptive
    /// replication, a work unit whose first copy goes to a trusted host may be
    /// accepted on that copy alone. One transaction.
    pub async fn lease_work(&self, host: HostId, slots: u32, now: Timestamp) -> Result<Vec<Assignment>> {
        let mut tx = self.write().await?;
        let assignments = lease(&mut tx, &self.validators, self.secret, host, slots, now).await?;
        tx.commit().await?;
        Ok(assignments)
    }

    /// BOINC's "resend lost results": copies in progress for `host`, still
    /// wanted and within their deadline, that the host does not list in
    /// `held` (the answer that gave them was lost, e.g. in a coordinator
    /// crash). They are handed out again with their original deadline.
    pub async fn lost_results(&self, host: HostId, held: &[ResultId], now: Timestamp) -> Result<Vec<Assignment>> {
        let mut tx = self.pool.begin().await?;
        let lost = lost(&mut tx, host, held, now).await?;
        tx.commit().await?;
        Ok(lost)
    }

    /// Copies `host` holds whose work unit has ended: they are over, and the
    /// host should abort them. One transaction.
    pub async fn take_aborts(&self, host: HostId) -> Result<Vec<ResultId>> {
        // Most calls find nothing: look before taking the write lock.
        let any = sqlx::query(
            "SELECT 1 FROM results r JOIN work_units w ON w.id = r.work_unit_id \
             WHERE r.host_id = ? AND r.server_state = 'in_progress' AND w.state != 'open' LIMIT 1",
        )
        .bind(host.0)
        .fetch_optional(&self.pool)
        .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.write().await?;
        let abort = abort_unneeded(&mut tx, host).await?;
        tx.commit().await?;
        Ok(abort)
    }

    /// Records a batch of reports from `host` and brings their work units up
    /// to date, all in one transaction. Any report that must be refused (a copy
    /// the host does not hold, a conflicting second report, an output above the
    /// limit) refuses the whole batch and changes nothing. A report already
    /// recorded is acknowledged again without counting twice.
    /// Group-committed with other calls' writes (see `writer`).
    pub async fn record_reports(&self, host: HostId, reports: &[ReportInput], now: Timestamp) -> Result<ReportSummary> {
        let reports = reports.to_vec();
        self.submit_write(|reply| writer::Request::Report { host, reports, now, reply }).await
    }

    /// One turn of a worker's loop, in one transaction: records `reports`
    /// (exactly as [`Store::record_reports`]), sends again the copies whose
    /// assignment was lost (when the host listed what it holds), leases new
    /// copies up to `slots` in all, and lists the copies the host should
    /// abort. If any report is refused, nothing changes and the error is returned.
    /// Group-committed with other calls' writes (see `writer`).
    pub async fn request_work(&self, host: HostId, request: WorkRequest, now: Timestamp) -> Result<WorkReply> {
        self.submit_write(|reply| writer::Request::RequestWork { host, request, now, reply }).await
    }
}

/// The body of [`Store::request_work`], inside the caller's transaction.
pub(super) async fn request_work(
    tx: &mut Transaction<'_, Sqlite>,
    validators: &Validators,
    secret: u64,
    host: HostId,
    request: &WorkRequest,
    now: Timestamp,
) -> Result<WorkReply> {
    let mut reply = WorkReply::default();
    if !request.reports.is_empty() {
        reply.accepted = record(tx, validators, host, &request.reports, now).await?;
    }
    if let Some(held) = &request.held {
        reply.assignments = lost(tx, host, held, now).await?;
        reply.n_lost = reply.assignments.len();
    }
    let wanted = request.slots.saturating_sub(reply.assignments.len() as u32);
    if wanted > 0 {
        reply.assignments.extend(lease(tx, validators, secret, host, wanted, now).await?);
    }
    reply.abort = abort_unneeded(tx, host).await?;
    Ok(reply)
}

/// The body of [`Store::record_reports`], inside the caller's transaction.
pub(super) async fn record_reports(
    tx: &mut Transaction<'_, Sqlite>,
    validators: &Validators,
    host: HostId,
    reports: &[ReportInput],
    now: Timestamp,
) -> Result<ReportSummary> {
    let accepted = record(tx, validators, host, reports, now).await?;
    Ok(ReportSummary { accepted, abort: abort_unneeded(tx, host).await? })
}

/// What the store knows of a reported copy, read once per batch of reports.
struct Reported {
    copy: lifecycle::ResultCopy,
    work_unit_id: i64,
    sent_at: Option<i64>,
    batch_id: Option<i64>,
    output_limit: u64,
}

/// Records reports and brings their work units up to date; returns the ids
/// accepted. Every report is checked (by the domain) before anything is
/// written, so a refused one leaves nothing behind; then the copies, the
/// host, the batches and the work units are written with a few set-based
/// statements.
async fn record(
    tx: &mut Transaction<'_, Sqlite>,
    validators: &Validators,
    host: HostId,
    reports: &[ReportInput],
    now: Timestamp,
) -> Result<Vec<ResultId>> {
    let mut known: HashMap<i64, Reported> = HashMap::with_capacity(reports.len());
    let ids: Vec<i64> = reports.iter().map(|input| input.result_id.0).collect();
    for chunk in ids.chunks(bulk::CHUNK) {
        let mut query = QueryBuilder::new(concat!(
            "SELECT ",
            rows::result_copy_columns!(),
            ", r.work_unit_id, r.sent_at, w.batch_id, p.output_limit_bytes FROM results r \
             JOIN projects p ON p.id = r.project_id JOIN work_units w ON w.id = r.work_unit_id WHERE r.id IN "
        ));
        bulk::push_list(&mut query, chunk);
        for row in query.build().persistent(false).fetch_all(&mut **tx).await? {
            let reported = Reported {
                copy: rows::result_copy(&row)?,
                work_unit_id: row.try_get("work_unit_id")?,
                sent_at: row.try_get("sent_at")?,
                batch_id: row.try_get("batch_id")?,
                output_limit: rows::u64_column(&row, "output_limit_bytes")?,
            };
            known.insert(reported.copy.id.0, reported);
        }
    }
    // Decide every report first, in order (a copy reported twice in one batch
    // sees its first report), so that a refusal writes nothing.
    let mut accepted = Vec::with_capacity(reports.len());
    let mut recorded = Vec::new();
    for input in reports {
        let reported =
            known.get_mut(&input.result_id.0).ok_or(ReportError::NotYourResult { result: input.result_id })?;
        if input.output.len() as u64 > reported.output_limit && reported.copy.host_id == Some(host) {
            return Err(Error::OutputTooLarge {
                result: input.result_id.0,
                size: input.output.len(),
                limit: reported.output_limit,
            });
        }
        match lifecycle::apply_report(&reported.copy, host, &input.report)? {
            ReportDecision::Record(copy) => {
                reported.copy = copy.clone();
                let turnaround = reported.sent_at.map(|sent| u64::try_from(now.0 - sent).unwrap_or(0));
                recorded.push((input, copy, reported.work_unit_id, reported.batch_id, turnaround));
            }
            ReportDecision::AlreadyRecorded | ReportDecision::Ignore => {}
        }
        accepted.push(input.result_id);
    }
    if recorded.is_empty() {
        return Ok(accepted);
    }
    for chunk in recorded.chunks(bulk::CHUNK) {
        let mut query = QueryBuilder::new(
            "WITH v(id, server_state, outcome, validate_state, output, output_digest, fuel_used, run_time_ms, \
             stderr_tail, error_message, engine, resumed) AS (",
        );
        query.push_values(chunk, |mut row, (input, copy, ..)| {
            let success = copy.outcome == Some(lifecycle::Outcome::Success);
            row.push_bind(copy.id.0)
                .push_bind(copy.server_state.as_str())
                .push_bind(copy.outcome.map(lifecycle::Outcome::as_str))
                .push_bind(copy.validate_state.as_str())
                .push_bind(success.then(|| input.output.clone()))
                .push_bind(copy.output_digest.as_ref().map(|d| d.as_str().to_owned()))
                .push_bind(int(copy.fuel_used))
                .push_bind(int(input.run_time_ms))
                .push_bind(input.stderr_tail.clone())
                .push_bind(input.error_message.clone())
                .push_bind(copy.engine.clone())
                .push_bind(copy.resumed);
        });
        query.push(
            ") UPDATE results SET server_state = v.server_state, outcome = v.outcome, \
             validate_state = v.validate_state, received_at = ",
        );
        query.push_bind(now.0);
        query.push(
            ", output = v.output, output_digest = v.output_digest, fuel_used = v.fuel_used, \
             run_time_ms = v.run_time_ms, stderr_tail = v.stderr_tail, error_message = v.error_message, \
             engine = v.engine, resumed = v.resumed FROM v WHERE results.id = v.id",
        );
        query.build().persistent(false).execute(&mut **tx).await?;
    }
    let events: Vec<(HostId, HostEvent)> =
        recorded.iter().filter_map(|(_, copy, ..)| lifecycle::report_event(copy).map(|event| (host, event))).collect();
    apply_host_events(tx, &events).await?;
    let notes: Vec<(Option<i64>, bool, Option<u64>)> = recorded
        .iter()
        .map(|(_, copy, _, batch, turnaround)| (*batch, copy.outcome == Some(lifecycle::Outcome::Success), *turnaround))
        .collect();
    note_reports(tx, host, &notes).await?;
    let touched: Vec<WorkUnitId> = recorded.iter().map(|(_, _, work_unit, ..)| WorkUnitId(*work_unit)).collect();
    transition_work_units(tx, validators, &touched, Event::Update, now).await?;
    Ok(accepted)
}

/// Leases up to `slots` unsent copies to `host`, oldest first, within
/// the host's daily quota, never two copies of one work unit to the same
/// host nor to two hosts of one volunteer account. Under adaptive
/// replication, a work unit whose first copy goes to a trusted host may be
/// accepted on that copy alone. One transaction.
async fn lease(
    tx: &mut Transaction<'_, Sqlite>,
    validators: &Validators,
    secret: u64,
    host: HostId,
    slots: u32,
    now: Timestamp,
) -> Result<Vec<Assignment>> {
    let query = concat!("SELECT account, avg_turnaround_ms, ", rows::host_trust_columns!(), " FROM hosts WHERE id = ?");
    let host_row = sqlx::query(query).bind(host.0).fetch_optional(&mut **tx).await?.ok_or(Error::UnknownHost)?;
    let account: String = host_row.try_get("account")?;
    let host_turnaround = rows::optional_u64(&host_row, "avg_turnaround_ms")?;
    let mut trust = rows::host_trust(&host_row)?;
    let slots = slots.min(trust.remaining_today(now)) as usize;
    let mut assignments = Vec::new();
    let mut taken: HashSet<i64> = HashSet::new();
    let mut single = Vec::new();
    // Candidates come a page at a time, highest priority first, then
    // oldest; copies of work units this host (or its account) already has
    // are skipped. A few pages bound the cost of one request.
    let (mut after_priority, mut after_id) = (i64::MAX, 0_i64);
    for _ in 0..4 {
        let wanted = slots - assignments.len();
        if wanted == 0 {
            break;
        }
        let query = concat!(
            "SELECT r.id AS result_id, r.priority AS result_priority, r.work_unit_id, r.created_at, \
             w.name AS work_unit_name, w.input, \
             p.name AS project, p.app_digest, b.n_work_units AS batch_size, b.n_ended AS batch_ended, \
             b.avg_turnaround_ms AS batch_turnaround, ",
            rows::work_unit_policy_columns!(),
            " FROM results r \
             JOIN work_units w ON w.id = r.work_unit_id JOIN projects p ON p.id = r.project_id \
             LEFT JOIN batches b ON b.id = w.batch_id \
             WHERE r.server_state = 'unsent' AND p.state = 'active' \
             AND (r.priority < ? OR (r.priority = ? AND r.id > ?)) \
             AND (b.id IS NULL OR b.state = 'active') \
             AND NOT EXISTS (SELECT 1 FROM results o WHERE o.work_unit_id = r.work_unit_id AND o.host_id = ?) \
             AND (? = '' OR NOT EXISTS (SELECT 1 FROM results o JOIN hosts h ON h.id = o.host_id \
               WHERE o.work_unit_id = r.work_unit_id AND h.account = ?)) \
             ORDER BY r.priority DESC, r.id LIMIT ?"
        );
        let page_size = wanted * 2 + 16;
        let page = sqlx::query(query)
            .bind(after_priority)
            .bind(after_priority)
            .bind(after_id)
            .bind(host.0)
            .bind(&account)
            .bind(&account)
            .bind(page_size as i64)
            .fetch_all(&mut **tx)
            .await?;
        for row in &page {
            after_id = row.try_get("result_id")?;
            after_priority = row.try_get("result_priority")?;
            let work_unit_id: i64 = row.try_get("work_unit_id")?;
            if assignments.len() == slots || taken.contains(&work_unit_id) {
                continue;
            }
            let policy = rows::policy(row)?;
            // The tail of a batch goes preferably to hosts with a short turnaround.
            let in_tail = batch::in_tail(rows::u64_column(row, "batch_size")?, rows::u64_column(row, "batch_ended")?);
            let waited =
                u64::try_from(now.0 - row.try_get::<Option<i64>, _>("created_at")?.unwrap_or(now.0)).unwrap_or(0);
            let batch_turnaround = rows::optional_u64(row, "batch_turnaround")?;
            if in_tail
                && !batch::may_take_tail_copy(host_turnaround, batch_turnaround, waited, policy.deadline_ms() / 10)
            {
                continue;
            }
            taken.insert(work_unit_id);
            if policy.adaptive_replication()
                && trust::accept_single(trust.consecutive_valid, trust::draw(secret, ResultId(after_id)))
                && first_copy(tx, WorkUnitId(work_unit_id)).await?
            {
                single.push(WorkUnitId(work_unit_id));
            }
            let deadline = scheduler::deadline(now, &policy);
            assignments.push(assignment(row, deadline)?);
        }
        if page.len() < page_size {
            break;
        }
    }
    for chunk in assignments.chunks(bulk::CHUNK) {
        let mut query = QueryBuilder::new("WITH v(id, deadline) AS (");
        query.push_values(chunk, |mut row, assignment| {
            row.push_bind(assignment.result_id.0).push_bind(assignment.deadline.0);
        });
        query.push(") UPDATE results SET server_state = 'in_progress', host_id = ");
        query.push_bind(host.0);
        query.push(", sent_at = ");
        query.push_bind(now.0);
        query.push(", deadline = v.deadline FROM v WHERE results.id = v.id");
        query.build().persistent(false).execute(&mut **tx).await?;
    }
    for work_unit in single {
        sqlx::query("UPDATE work_units SET single_result = 1, target_results = 1 WHERE id = ?")
            .bind(work_unit.0)
            .execute(&mut **tx)
            .await?;
        transition_work_unit(tx, validators, work_unit, Event::Update, now).await?;
    }
    if !assignments.is_empty() {
        trust.record_sent(assignments.len() as u32, now);
        sqlx::query("UPDATE hosts SET results_today = ?, quota_day = ? WHERE id = ?")
            .bind(trust.results_today)
            .bind(trust.quota_day)
            .bind(host.0)
            .execute(&mut **tx)
            .await?;
    }
    Ok(assignments)
}

/// Copies in progress for `host`, still wanted and within their deadline,
/// that it does not list in `held`: their assignment was lost.
async fn lost(
    tx: &mut Transaction<'_, Sqlite>,
    host: HostId,
    held: &[ResultId],
    now: Timestamp,
) -> Result<Vec<Assignment>> {
    let query = concat!(
        "SELECT r.id AS result_id, r.work_unit_id, r.deadline, w.name AS work_unit_name, w.input, \
         p.name AS project, p.app_digest, ",
        rows::work_unit_policy_columns!(),
        " FROM results r JOIN work_units w ON w.id = r.work_unit_id JOIN projects p ON p.id = r.project_id \
         LEFT JOIN batches b ON b.id = w.batch_id \
         WHERE r.host_id = ? AND r.server_state = 'in_progress' AND w.state = 'open' AND r.deadline > ? \
         ORDER BY r.id"
    );
    let rows = sqlx::query(query).bind(host.0).bind(now.0).fetch_all(&mut **tx).await?;
    let held: HashSet<ResultId> = held.iter().copied().collect();
    let mut lost = Vec::new();
    for row in &rows {
        if !held.contains(&ResultId(row.try_get("result_id")?)) {
            lost.push(assignment(row, Timestamp(row.try_get("deadline")?))?);
        }
    }
    Ok(lost)
}

/// Updates turnaround averages and the batches' error watch after reports
/// (`(batch, success, turnaround)` each, in order); pauses a batch whose
/// first results are mostly errors. One read and one write for the host and
/// for each batch concerned.
async fn note_reports(
    tx: &mut Transaction<'_, Sqlite>,
    host: HostId,
    notes: &[(Option<i64>, bool, Option<u64>)],
) -> Result<()> {
    let samples: Vec<u64> = notes.iter().filter(|(_, success, _)| *success).filter_map(|(.., t)| *t).collect();
    if !samples.is_empty() {
        let row =
            sqlx::query("SELECT avg_turnaround_ms FROM hosts WHERE id = ?").bind(host.0).fetch_one(&mut **tx).await?;
        let mut average = rows::optional_u64(&row, "avg_turnaround_ms")?;
        for sample in samples {
            average = Some(batch::update_turnaround(average, sample));
        }
        sqlx::query("UPDATE hosts SET avg_turnaround_ms = ? WHERE id = ?")
            .bind(average.map(int))
            .bind(host.0)
            .execute(&mut **tx)
            .await?;
    }
    let mut batches: Vec<i64> = notes.iter().filter_map(|(batch, ..)| *batch).collect();
    batches.sort_unstable();
    batches.dedup();
    for batch_id in batches {
        let row = sqlx::query("SELECT n_reported, n_errors, state, avg_turnaround_ms FROM batches WHERE id = ?")
            .bind(batch_id)
            .fetch_one(&mut **tx)
            .await?;
        let mut reported = rows::u32_column(&row, "n_reported")?;
        let mut errors = rows::u32_column(&row, "n_errors")?;
        let mut state: String = row.try_get("state")?;
        let mut average = rows::optional_u64(&row, "avg_turnaround_ms")?;
        let mut pause_reason = None;
        for (_, success, turnaround) in notes.iter().filter(|(batch, ..)| *batch == Some(batch_id)) {
            reported += 1;
            errors += u32::from(!success);
            if let (true, Some(sample)) = (*success, turnaround) {
                average = Some(batch::update_turnaround(average, *sample));
            }
            if let (true, Some(reason)) = (state == "active", batch::auto_pause(reported, errors)) {
                state = "paused".to_owned();
                pause_reason = Some(reason);
            }
        }
        sqlx::query(
            "UPDATE batches SET n_reported = ?, n_errors = ?, avg_turnaround_ms = ?, state = ?, \
             pause_reason = COALESCE(?, pause_reason) WHERE id = ?",
        )
        .bind(reported)
        .bind(errors)
        .bind(average.map(int))
        .bind(&state)
        .bind(pause_reason)
        .bind(batch_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// An assignment from a row with the columns of a lease query.
fn assignment(row: &SqliteRow, deadline: Timestamp) -> Result<Assignment> {
    let work_unit_id = WorkUnitId(row.try_get("work_unit_id")?);
    Ok(Assignment {
        result_id: ResultId(row.try_get("result_id")?),
        work_unit_id,
        work_unit_name: row.try_get("work_unit_name")?,
        project: row.try_get("project")?,
        app_digest: row.try_get("app_digest")?,
        input: row.try_get("input")?,
        random_seed: scheduler::random_seed(work_unit_id),
        limits: rows::limits(row)?,
        deadline,
        nan_canonicalization: row.try_get("nan_canonicalization")?,
    })
}

/// Whether no copy of the work unit has been sent yet.
async fn first_copy(tx: &mut Transaction<'_, Sqlite>, work_unit: WorkUnitId) -> Result<bool> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM results WHERE work_unit_id = ? AND server_state != 'unsent'")
        .bind(work_unit.0)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.try_get::<i64, _>("n")? == 0)
}

/// Copies `host` still has in progress whose work unit has ended: they are
/// over (didn't need, or cancelled) and the host is told to abort them.
async fn abort_unneeded(tx: &mut Transaction<'_, Sqlite>, host: HostId) -> Result<Vec<ResultId>> {
    let rows = sqlx::query(
        "SELECT r.id, w.state, w.fail_reason FROM results r JOIN work_units w ON w.id = r.work_unit_id \
         WHERE r.host_id = ? AND r.server_state = 'in_progress' AND w.state != 'open'",
    )
    .bind(host.0)
    .fetch_all(&mut **tx)
    .await?;
    let mut abort = Vec::with_capacity(rows.len());
    for row in &rows {
        let state: String = row.try_get("state")?;
        let fail_reason: Option<String> = row.try_get("fail_reason")?;
        let state = WorkUnitState::parse(&state, fail_reason.as_deref()).ok_or_else(|| Error::Corrupt {
            table: "work_units",
            detail: format!("state {state:?} / {fail_reason:?}"),
        })?;
        let id: i64 = row.try_get("id")?;
        sqlx::query("UPDATE results SET server_state = 'over', outcome = ? WHERE id = ?")
            .bind(lifecycle::abort_outcome(state).as_str())
            .bind(id)
            .execute(&mut **tx)
            .await?;
        abort.push(ResultId(id));
    }
    Ok(abort)
}
