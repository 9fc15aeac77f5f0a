//! The scheduler's side of the store: registering and authenticating hosts,
//! and the scheduler's calls (what hosts report, lost copies sent again, new
//! copies leased, aborts), which the writer runs a group at a time
//! ([`run_calls`]): a few set-based statements for the whole group, the
//! decisions taken by the domain in memory.

use std::collections::{HashMap, HashSet};

use super::backend::{QueryBuilder, Row, Tx, query, query_scalar};

use super::bulk;
use super::files::{self, AssignedFile, ReportedFile};
use super::frontiers::{Frontiers, HostFrontier, Walker};
use super::hosts::{HostAppEvent, HostTable};
use super::rows::{self, int};
use super::transitions::{Event, transitions};
use super::{Error, Result, Store};
use crate::domain::files as file_rules;
use crate::domain::lifecycle::{self, Report, ReportDecision, ReportError, WorkUnitState};
use crate::domain::policy::Limits;
use crate::domain::signing::AppSignature;
use crate::domain::{HostId, ResultId, Timestamp, WorkUnitId, batch, scheduler, trust};
use crate::validators::Validators;

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
    /// The peer address it registers from (empty when unknown): a punished
    /// record of the account or the address is inherited (`trust::initial_quota`).
    pub address: String,
}

/// One copy handed to a host, with everything needed to compute it.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub result_id: ResultId,
    pub work_unit_id: WorkUnitId,
    pub work_unit_name: String,
    pub project: String,
    pub app_digest: String,
    /// The project's app signature, when its app is signed.
    pub app_signature: Option<AppSignature>,
    pub input: Vec<u8>,
    pub random_seed: u64,
    pub limits: Limits,
    pub deadline: Timestamp,
    pub nan_canonicalization: bool,
    /// The app's command line: argv\[0\] (the project's name), the project's
    /// arguments, the work unit's (`app_args::merge`).
    pub argv: Vec<String>,
    /// The app's environment, in name order: the project's variables
    /// overridden by the work unit's.
    pub env: Vec<(String, String)>,
    /// The input files the app sees as `/input/NAME`, in name order.
    pub files: Vec<AssignedFile>,
    /// The most bytes of output files the result may report (0: no `/output`).
    pub output_files_bytes: u64,
    /// The app keeps checkpoints: the copy gets a `/checkpoint` directory.
    pub checkpointing: bool,
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
    /// With a success: the files the app wrote in `/output`, in name order
    /// (their digests, computed by the caller, are in the report's output digest).
    pub output_files: Vec<ReportedFile>,
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
    /// The input files it holds (hex digests): copies that use them go to it
    /// first (locality scheduling).
    pub cached_files: HashSet<String>,
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
    /// Registers a host whose token hashes to `token_hash`. Its daily quota
    /// is the initial one, or the lowest of the hosts of its account and of
    /// the hosts from its address that never had a result validated, if that
    /// is lower (`trust::initial_quota`), and their punished quotas per app:
    /// registering again resets no punishment.
    pub async fn register_host(&self, host: &NewHost, token_hash: &str, now: Timestamp) -> Result<HostId> {
        let mut tx = self.write().await?;
        let worst: Option<i64> = query(
            "SELECT MIN(daily_quota) AS worst FROM hosts WHERE (account != '' AND account = ?) \
             OR (address != '' AND address = ? AND n_valid = 0)",
        )
        .bind(&host.account)
        .bind(&host.address)
        .fetch_one(&mut tx)
        .await?
        .try_get("worst")?;
        let quota = trust::initial_quota(worst.map(|q| u32::try_from(q).unwrap_or(0)));
        let id: i64 = query(
            "INSERT INTO hosts (token_hash, name, n_cpus, memory_bytes, engine, os, created_at, last_contact_at, account, \
             address, daily_quota) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        .bind(&host.address)
        .bind(quota)
        .fetch_one(&mut tx)
        .await?
        .try_get("id")?;
        // Punished quotas per app are inherited the same way.
        query(
            "INSERT INTO host_app_quotas (host_id, app_digest, daily_quota, results_today, quota_day) \
             SELECT ?, q.app_digest, MIN(q.daily_quota), 0, 0 FROM host_app_quotas q JOIN hosts h ON h.id = q.host_id \
             WHERE ((h.account != '' AND h.account = ?) OR (h.address != '' AND h.address = ? AND h.n_valid = 0)) \
             AND q.daily_quota < ? GROUP BY q.app_digest",
        )
        .bind(id)
        .bind(&host.account)
        .bind(&host.address)
        .bind(trust::INITIAL_DAILY_QUOTA)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(HostId(id))
    }

    /// The host whose token hashes to `token_hash`. Host tokens never change,
    /// so known ones are kept in memory and most calls read nothing. A host's
    /// contact is recorded by its scheduler calls (`run_calls`), not here.
    pub async fn authenticate_host(&self, token_hash: &str) -> Result<HostId> {
        if let Some(host) = self.host_tokens.get(token_hash) {
            return Ok(host);
        }
        let row = query("SELECT id FROM hosts WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::UnknownHost)?;
        let host = HostId(row.try_get("id")?);
        self.host_tokens.insert(token_hash, host);
        Ok(host)
    }

    /// Leases up to `slots` unsent copies to `host`: a [`Store::request_work`]
    /// with no report, for simulations and tests. The copies the host should
    /// abort are not returned (they are over all the same): callers that deal
    /// with aborts use `request_work`.
    pub async fn lease_work(&self, host: HostId, slots: u32, now: Timestamp) -> Result<Vec<Assignment>> {
        let request = WorkRequest { slots, ..WorkRequest::default() };
        Ok(self.request_work(host, request, now).await?.assignments)
    }

    /// Records a batch of reports from `host` and brings their work units up
    /// to date, all in one transaction. Any report that must be refused (a copy
    /// the host does not hold, a conflicting second report, an output above the
    /// limit) refuses the whole batch and changes nothing. A report already
    /// recorded is acknowledged again without counting twice.
    /// Group-committed with other calls' writes (see `writer`).
    pub async fn record_reports(&self, host: HostId, reports: &[ReportInput], now: Timestamp) -> Result<ReportSummary> {
        let call = Call::Report { host, reports: reports.to_vec() };
        match self.submit_write(call, now).await? {
            Answer::Report(summary) => Ok(summary),
            Answer::RequestWork(_) => unreachable!("a report call is answered with a report summary"),
        }
    }

    /// One turn of a worker's loop, in one transaction: records `reports`
    /// (exactly as [`Store::record_reports`]), sends again the copies whose
    /// assignment was lost (when the host listed what it holds), leases new
    /// copies up to `slots` in all, and lists the copies the host should
    /// abort. If any report is refused, nothing changes and the error is returned.
    /// Group-committed with other calls' writes (see `writer`).
    pub async fn request_work(&self, host: HostId, request: WorkRequest, now: Timestamp) -> Result<WorkReply> {
        match self.submit_write(Call::RequestWork { host, request }, now).await? {
            Answer::RequestWork(reply) => Ok(reply),
            Answer::Report(_) => unreachable!("a work request is answered with a work reply"),
        }
    }
}

/// One scheduler call that writes, as the writer task groups them.
#[derive(Debug)]
pub(super) enum Call {
    RequestWork { host: HostId, request: WorkRequest },
    Report { host: HostId, reports: Vec<ReportInput> },
}

impl Call {
    fn host(&self) -> HostId {
        match self {
            Call::RequestWork { host, .. } | Call::Report { host, .. } => *host,
        }
    }

    fn reports(&self) -> &[ReportInput] {
        match self {
            Call::RequestWork { request, .. } => &request.reports,
            Call::Report { reports, .. } => reports,
        }
    }
}

/// What a [`Call`] is answered.
#[derive(Debug)]
pub(super) enum Answer {
    RequestWork(WorkReply),
    Report(ReportSummary),
}

/// Runs a group of calls inside the caller's transaction with a few
/// set-based statements for the whole group, not per call: the reports of
/// every call are read, decided (by the domain) and written together, their
/// work units brought up to date together, then lost copies, new copies and
/// aborts are chosen for every host with one candidate query. Each call gets
/// its answer, or its refusal: a refused call (a report that must be refused)
/// is decided before anything is written, and nothing of its work is written
/// (its host's last contact is: the host did call).
/// An `Err` is a database failure: the transaction must not be committed.
pub(super) async fn run_calls(
    tx: &mut Tx<'_>,
    validators: &Validators,
    secret: u64,
    frontiers: &Frontiers,
    calls: &[Call],
    now: Timestamp,
) -> Result<(Vec<Result<Answer>>, FrontierUpdate)> {
    let mut refused: Vec<Option<Error>> = calls.iter().map(|_| None).collect();
    let mut hosts = HostTable::default();
    hosts.load(tx, calls.iter().map(|call| call.host().0)).await?;
    for (call, refused) in calls.iter().zip(refused.iter_mut()) {
        if hosts.get(call.host()).is_none() {
            // Hosts are never deleted: only a forged id gets here.
            *refused = Some(Error::UnknownHost);
        }
        // A host whose reports are refused below still called.
        hosts.record_contact(call.host(), now);
    }
    let accepted = record(tx, validators, calls, &mut refused, &mut hosts, now).await?;
    let (mut assignments, aborts) = held_copies(tx, calls, &refused, now).await?;
    // Lost copies are sent again within the call's slots, oldest first.
    for (call, lost) in calls.iter().zip(assignments.iter_mut()) {
        let slots = match call {
            Call::RequestWork { request, .. } => request.slots as usize,
            Call::Report { .. } => 0,
        };
        lost.truncate(slots);
    }
    let n_lost: Vec<usize> = assignments.iter().map(Vec::len).collect();
    let wants: Vec<(HostId, usize)> = calls
        .iter()
        .zip(&refused)
        .zip(&assignments)
        .map(|((call, refused), got)| match (call, refused) {
            (Call::RequestWork { host, request }, None) => (*host, (request.slots as usize).saturating_sub(got.len())),
            _ => (call.host(), 0),
        })
        .collect();
    let cached: Vec<&HashSet<String>> = calls
        .iter()
        .map(|call| match call {
            Call::RequestWork { request, .. } => &request.cached_files,
            Call::Report { .. } => &NO_FILES,
        })
        .collect();
    let (leased, found, stored) =
        lease(tx, validators, secret, frontiers, &wants, &cached, &mut assignments, &mut hosts, now).await?;
    attach_files(tx, assignments.iter_mut()).await?;
    // The last writes go to SQLite as one multi-statement query: one round
    // trip to its thread.
    let mut writes = QueryBuilder::new("");
    push_leased(&mut writes, &leased, now);
    if hosts.push_store(&mut writes) || !leased.is_empty() {
        writes.build().execute(&mut *tx).await?;
    }
    let answers = calls
        .iter()
        .zip(refused)
        .zip(accepted.into_iter().zip(assignments).zip(n_lost))
        .map(|((call, refused), ((accepted, assignments), n_lost))| {
            if let Some(error) = refused {
                return Err(error);
            }
            let abort = aborts.get(&call.host().0).cloned().unwrap_or_default();
            Ok(match call {
                Call::RequestWork { .. } => Answer::RequestWork(WorkReply { accepted, assignments, n_lost, abort }),
                Call::Report { .. } => Answer::Report(ReportSummary { accepted, abort }),
            })
        })
        .collect();
    Ok((answers, FrontierUpdate { stored, frontiers: found }))
}

/// Frontiers a group's walk found, to keep once its transaction committed.
pub(super) struct FrontierUpdate {
    /// The database's frontier epoch the walk read.
    stored: i64,
    frontiers: HashMap<Walker, HostFrontier>,
}

impl FrontierUpdate {
    /// Keeps them (call after the commit).
    pub fn keep(self, frontiers: &Frontiers) {
        frontiers.update(self.stored, self.frontiers);
    }
}

/// What the store knows of a reported copy, read once per group.
struct Reported {
    copy: lifecycle::ResultCopy,
    work_unit_id: i64,
    work_unit_state: WorkUnitState,
    /// The app's module digest (quotas per app follow it).
    app: String,
    sent_at: Option<i64>,
    batch_id: Option<i64>,
    output_limit: u64,
    /// The project's `output_files` limit (0: no output files).
    output_files_limit: u64,
}

/// A report to be written: the copy as it is now, and what it means for its
/// host, work unit and batch.
struct Recorded<'a> {
    host: HostId,
    input: &'a ReportInput,
    copy: lifecycle::ResultCopy,
    work_unit_id: i64,
    work_unit_state: WorkUnitState,
    app: String,
    batch_id: Option<i64>,
    turnaround: Option<u64>,
}

/// Records the reports of every call not refused and brings their work
/// units up to date; returns the ids accepted, per call. Each call's reports
/// are decided (by the domain) before anything is written: a call with a
/// report to refuse gets its refusal in `refused` and nothing of it is
/// written. Then the copies, batches and work units are written with a few
/// set-based statements for the whole group; changes to hosts go to `hosts`.
async fn record<'a>(
    tx: &mut Tx<'_>,
    validators: &Validators,
    calls: &'a [Call],
    refused: &mut [Option<Error>],
    hosts: &mut HostTable,
    now: Timestamp,
) -> Result<Vec<Vec<ResultId>>> {
    let mut accepted: Vec<Vec<ResultId>> = calls.iter().map(|_| Vec::new()).collect();
    let mut ids: Vec<i64> =
        calls.iter().flat_map(|call| call.reports().iter().map(|input| input.result_id.0)).collect();
    if ids.is_empty() {
        return Ok(accepted);
    }
    ids.sort_unstable();
    ids.dedup();
    let mut known: HashMap<i64, Reported> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(bulk::CHUNK) {
        let mut query = QueryBuilder::new(concat!(
            "SELECT ",
            rows::result_copy_columns!(),
            ", r.work_unit_id, r.sent_at, w.batch_id, w.state, w.fail_reason, p.app_digest, p.output_limit_bytes, \
             p.output_files_limit_bytes \
             FROM results r \
             JOIN projects p ON p.id = r.project_id JOIN work_units w ON w.id = r.work_unit_id WHERE r.id IN "
        ));
        bulk::push_list(&mut query, chunk);
        for row in query.build().fetch_all(&mut *tx).await? {
            let reported = Reported {
                copy: rows::result_copy(&row)?,
                work_unit_id: row.try_get("work_unit_id")?,
                work_unit_state: rows::work_unit_state(&row)?,
                app: row.try_get("app_digest")?,
                sent_at: row.try_get("sent_at")?,
                batch_id: row.try_get("batch_id")?,
                output_limit: rows::u64_column(&row, "output_limit_bytes")?,
                output_files_limit: rows::optional_u64(&row, "output_files_limit_bytes")?.unwrap_or(0),
            };
            known.insert(reported.copy.id.0, reported);
        }
    }
    let mut recorded: Vec<Recorded<'a>> = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        if call.reports().is_empty() || refused[i].is_some() {
            continue;
        }
        match decide(&mut known, call.host(), call.reports(), now) {
            Ok((ids, decided)) => {
                accepted[i] = ids;
                recorded.extend(decided);
            }
            Err(error) => refused[i] = Some(error),
        }
    }
    if recorded.is_empty() {
        return Ok(accepted);
    }
    for chunk in recorded.chunks(bulk::CHUNK) {
        let mut query = QueryBuilder::new(
            "WITH v(id, server_state, outcome, validate_state, output, output_digest, fuel_used, run_time_ms, \
             stderr_tail, error_message, engine, resumed, given_back) AS (",
        );
        bulk::push_values(&mut query, chunk, 13, |mut row, recorded| {
            let (input, copy) = (recorded.input, &recorded.copy);
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
                .push_bind(copy.resumed)
                .push_bind(copy.given_back);
        });
        query.push(
            ") UPDATE results SET server_state = v.server_state, outcome = v.outcome, \
             validate_state = v.validate_state, received_at = ",
        );
        query.push_bind(now.0);
        query.push(
            ", output = v.output, output_digest = v.output_digest, fuel_used = v.fuel_used, \
             run_time_ms = v.run_time_ms, stderr_tail = v.stderr_tail, error_message = v.error_message, \
             engine = v.engine, resumed = v.resumed, given_back = v.given_back FROM v WHERE results.id = v.id",
        );
        query.build().execute(&mut *tx).await?;
    }
    let output_files: Vec<(ResultId, &ReportedFile)> = recorded
        .iter()
        .filter(|r| r.copy.outcome == Some(lifecycle::Outcome::Success))
        .flat_map(|r| r.input.output_files.iter().map(move |file| (r.copy.id, file)))
        .collect();
    files::insert_result_files(tx, &output_files).await?;
    let events: Vec<HostAppEvent> = recorded
        .iter()
        .flat_map(|r| {
            lifecycle::report_events(&r.copy, r.work_unit_state).into_iter().map(|event| HostAppEvent {
                host: r.host,
                app: r.app.clone(),
                event,
            })
        })
        .collect();
    hosts.apply(&events);
    note_reports(tx, &recorded, hosts).await?;
    let touched: Vec<WorkUnitId> = recorded.iter().map(|r| WorkUnitId(r.work_unit_id)).collect();
    let events = transitions(tx, validators, &touched, Event::Update, now).await?;
    // Validation credits (or blames) the other copies' hosts too.
    hosts.load(tx, events.iter().map(|e| e.host.0)).await?;
    hosts.apply(&events);
    Ok(accepted)
}

/// Decides one call's reports, in order (a copy reported twice in one call
/// sees its first report), against `known`, which is updated only if every
/// report is accepted: a refused call leaves it as it was.
fn decide<'a>(
    known: &mut HashMap<i64, Reported>,
    host: HostId,
    reports: &'a [ReportInput],
    now: Timestamp,
) -> Result<(Vec<ResultId>, Vec<Recorded<'a>>)> {
    let mut accepted = Vec::with_capacity(reports.len());
    let mut recorded: Vec<Recorded<'a>> = Vec::new();
    // Copies this call changed, as they are after its reports so far.
    let mut changed: HashMap<i64, lifecycle::ResultCopy> = HashMap::new();
    for input in reports {
        let reported = known.get(&input.result_id.0).ok_or(ReportError::NotYourResult { result: input.result_id })?;
        let copy = changed.get(&input.result_id.0).unwrap_or(&reported.copy);
        if input.output.len() as u64 > reported.output_limit && copy.host_id == Some(host) {
            return Err(Error::OutputTooLarge {
                result: input.result_id.0,
                size: input.output.len(),
                limit: reported.output_limit,
            });
        }
        if !input.output_files.is_empty() && copy.host_id == Some(host) {
            let files = input.output_files.iter().map(|reported| reported.file.clone()).collect();
            file_rules::check_outputs(files, reported.output_files_limit)?;
        }
        match lifecycle::apply_report(copy, host, &input.report)? {
            ReportDecision::Record(copy) => {
                changed.insert(copy.id.0, copy.clone());
                let turnaround = reported.sent_at.map(|sent| u64::try_from(now.0 - sent).unwrap_or(0));
                recorded.push(Recorded {
                    host,
                    input,
                    copy,
                    work_unit_id: reported.work_unit_id,
                    work_unit_state: reported.work_unit_state,
                    app: reported.app.clone(),
                    batch_id: reported.batch_id,
                    turnaround,
                });
            }
            ReportDecision::AlreadyRecorded | ReportDecision::Ignore => {}
        }
        accepted.push(input.result_id);
    }
    for (id, copy) in changed {
        if let Some(reported) = known.get_mut(&id) {
            reported.copy = copy;
        }
    }
    Ok((accepted, recorded))
}

/// Who already holds a copy of a candidate's work unit: hosts and accounts.
#[derive(Default)]
struct Holders {
    hosts: Vec<i64>,
    /// Their volunteer accounts, hex-encoded (a client can send any
    /// character in an account, but never make one hex string out of two).
    accounts: Vec<String>,
    /// Accepted on a single copy in this group: no other copy goes out.
    closed: bool,
    /// A copy went out in this group: the database does not know it yet.
    leased: bool,
}

/// The candidate query: unsent copies, highest priority first, then oldest,
/// after a (priority, id) position, with who already holds a copy of their
/// work unit (by host, and by volunteer account when `ACCOUNTS` is spliced
/// in). Its parameters: the position's priority, its id, the page size.
///
/// The holders are the hosts of the work unit's copies (`string_agg` skips
/// the NULL of a copy never sent), found by the work unit's index alone: a
/// condition on `host_id` would let PostgreSQL's planner read them from the
/// hosts' index instead, which it believes sparse while a backlog has never
/// been handed out (half a millisecond a candidate, measured in BENCHMARKS.md).
///
/// Two parts, each read straight from the index `results_unsent(priority
/// DESC, id)`: the rest of the position's level, then the levels below.
/// (One condition `priority < ? OR (priority = ? AND id > ?)` would make
/// SQLite scan the index from its start at every page.)
macro_rules! candidates_query {
    ($accounts:expr) => {
        concat!(
            "SELECT * FROM (",
            candidates_query!(@part $accounts, "r.priority = ?1 AND r.id > ?2 ORDER BY r.id"),
            " LIMIT ?3) AS level UNION ALL SELECT * FROM (",
            candidates_query!(@part $accounts, "r.priority < ?1 ORDER BY r.priority DESC, r.id"),
            " LIMIT ?3) AS below LIMIT ?3"
        )
    };
    (@part $accounts:expr, $position:expr) => {
        concat!(
            "SELECT r.id AS result_id, r.priority AS result_priority, r.work_unit_id, r.created_at, \
             w.name AS work_unit_name, w.input, w.random_seed, \
             p.name AS project, p.app_digest, p.app_signature, p.app_public_key, ",
            rows::app_args_columns!(),
            ", b.n_work_units AS batch_size, b.n_ended AS batch_ended, b.avg_turnaround_ms AS batch_turnaround, \
             (SELECT string_agg(CAST(o.host_id AS TEXT), ',') FROM results o \
               WHERE o.work_unit_id = r.work_unit_id) AS holders, ",
            $accounts,
            " AS holder_accounts, ",
            rows::work_unit_policy_columns!(),
            " FROM results r \
             JOIN work_units w ON w.id = r.work_unit_id JOIN projects p ON p.id = r.project_id \
             LEFT JOIN batches b ON b.id = w.batch_id \
             WHERE r.server_state = 'unsent' AND p.state = 'active' \
             AND (b.id IS NULL OR b.state = 'active') AND ",
            $position
        )
    };
}

/// One call's walk through the unsent copies.
struct Walk {
    /// The call it walks for (its index in the group).
    call: usize,
    host: HostId,
    /// Whose frontier it moves: its account's, or its own when it stands alone.
    walker: Walker,
    /// Copies it still wants.
    wants: usize,
    /// Its volunteer account, hex-encoded as `Holders::accounts`; `None` when it stands alone.
    account: Option<String>,
    turnaround: Option<u64>,
    streak: u32,
    /// Per priority level, the last copy passed (see `frontiers`).
    frontier: HostFrontier,
    /// Levels where it was refused a copy for a passing reason: its frontier stays there.
    stuck: HashSet<i64>,
    /// Why copies were not given to it, for the log when it gets nothing.
    refused: Refused,
}

impl Walk {
    /// Moves the frontier past the copy `id` of `level`, unless it stopped there.
    fn pass(&mut self, level: i64, id: i64) {
        if !self.stuck.contains(&level) {
            self.frontier.insert(level, id);
        }
    }

    /// Whether the copy `id` of `level` is behind the frontier: known to be
    /// one the host may never take.
    fn passed(&self, level: i64, id: i64) -> bool {
        self.frontier.get(&level).is_some_and(|&last| id <= last)
    }
}

/// Why copies were not given to a host, by reason.
#[derive(Debug, Default)]
struct Refused {
    /// It holds (or held) a copy of the work unit.
    own: usize,
    /// Another host of its account holds one.
    account: usize,
    /// Its quota for the copy's app is used up.
    app_quota: usize,
    /// The copy is in a batch's tail, kept for faster hosts.
    tail: usize,
    /// Its quota for today is used.
    quota: bool,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut reasons = Vec::new();
        if self.quota {
            reasons.push("its quota for today is used".to_owned());
        }
        if self.own > 0 {
            reasons
                .push(format!("{} unsent copies are of work units it already holds (they need other hosts)", self.own));
        }
        if self.account > 0 {
            reasons.push(format!("{} are of work units another host of its account holds", self.account));
        }
        if self.app_quota > 0 {
            reasons.push(format!("{} are of apps whose quota for today it has used", self.app_quota));
        }
        if self.tail > 0 {
            reasons.push(format!("{} are in batches' tails, kept for faster hosts", self.tail));
        }
        if reasons.is_empty() {
            reasons.push("no unsent copy it may take in an active project and batch".to_owned());
        }
        f.write_str(&reasons.join("; "))
    }
}

/// Whether a host may take a candidate copy.
enum Verdict {
    Take,
    /// Never: it or its account holds a copy of the work unit.
    Never,
    /// Not now: the copy waits for a faster host.
    NotNow,
}

/// Leases unsent copies to the calls asking for work (`wanted`: each call's
/// host and how many copies it still wants), in call order, each up to its
/// host's daily quota, never two copies of one work unit to the same host
/// nor to two hosts of one volunteer account. The walk is complete: it goes
/// on through the unsent copies until every call has what it wants or none
/// is left, so a host is refused only when no copy it may take waits. It
/// starts, per host and priority level, after the host's frontier (copies
/// it can never take), so a backlog it cannot take is walked once, not at
/// every call. The candidates are read a page at a time for the whole group.
/// Under adaptive replication, a work unit whose first copy goes to a
/// trusted host may be accepted on that copy alone. Returns the copies
/// leased but not yet marked as sent, for the caller to write with its last
/// writes (`push_leased`), and the hosts' new frontiers, to keep once the
/// transaction has committed.
#[allow(clippy::too_many_arguments)]
async fn lease(
    tx: &mut Tx<'_>,
    validators: &Validators,
    secret: u64,
    frontiers: &Frontiers,
    wanted: &[(HostId, usize)],
    cached: &[&HashSet<String>],
    assignments: &mut [Vec<Assignment>],
    hosts: &mut HostTable,
    now: Timestamp,
) -> Result<(Vec<Leased>, HashMap<Walker, HostFrontier>, i64)> {
    let mut walks: Vec<Walk> = Vec::new();
    for (call, &(host, wants)) in wanted.iter().enumerate() {
        // Calls of unknown hosts are refused before anything else.
        let Some(row) = hosts.get(host).filter(|_| wants > 0) else { continue };
        let walker = if row.account.is_empty() { Walker::Host(host) } else { Walker::Account(row.account.clone()) };
        walks.push(Walk {
            call,
            host,
            walker,
            wants,
            account: (!row.account.is_empty()).then(|| hex(&row.account)),
            turnaround: row.turnaround,
            streak: row.trust.consecutive_valid,
            frontier: HostFrontier::new(),
            stuck: HashSet::new(),
            refused: Refused::default(),
        });
    }
    if walks.is_empty() {
        return Ok((Vec::new(), HashMap::new(), 0));
    }
    let stored: i64 = query_scalar("SELECT frontier_epoch FROM scheduler_state").fetch_one(&mut *tx).await?;
    let known = frontiers.read(stored, walks.iter().map(|walk| &walk.walker));
    for walk in &mut walks {
        walk.frontier = known.get(&walk.walker).cloned().unwrap_or_default();
    }
    let sql = if walks.iter().any(|walk| walk.account.is_some()) {
        candidates_query!(
            "(SELECT string_agg(hex(h.account), ',') FROM results o JOIN hosts h ON h.id = o.host_id \
             WHERE o.work_unit_id = r.work_unit_id AND h.account != '')"
        )
    } else {
        candidates_query!("NULL")
    };
    let total: usize = walks.iter().map(|walk| walk.wants).sum();
    // Most walks end within the first page; one that goes on reads larger pages.
    let mut page_size = (total * 2 + 16).min(MAX_PAGE);
    let mut holders: HashMap<i64, Holders> = HashMap::new();
    let mut single: Vec<WorkUnitId> = Vec::new();
    let mut leased: Vec<Leased> = Vec::new();
    // The attached hosts' turnarounds, read when a tail needs them.
    let mut attached_hosts: Option<Vec<AttachedHost>> = None;
    let (mut after_priority, mut after_id) = (i64::MAX, 0_i64);
    loop {
        let walking = |walk: &&Walk| walk.wants > 0 && !walk.refused.quota;
        if !walks.iter().any(|walk| walking(&walk)) {
            break;
        }
        // Within a level, skip what every host still walking has passed.
        let seek = walks.iter().filter(walking).map(|walk| walk.frontier.get(&after_priority).copied());
        if let Some(Some(seek)) = seek.min() {
            after_id = after_id.max(seek);
        }
        let page = query(sql).bind(after_priority).bind(after_id).bind(page_size as i64).fetch_all(&mut *tx).await?;
        let full = page.len() == page_size;
        page_size = (page_size * 2).min(MAX_PAGE);
        let mut candidates = Vec::with_capacity(page.len());
        for row in page {
            after_id = row.try_get("result_id")?;
            after_priority = row.try_get("result_priority")?;
            let work_unit_id: i64 = row.try_get("work_unit_id")?;
            let entry = holders.entry(work_unit_id).or_default();
            if let Some(list) = row.try_get::<Option<String>, _>("holders")? {
                for host in list.split(',') {
                    let host = host
                        .parse()
                        .map_err(|_| Error::Corrupt { table: "results", detail: format!("host id {host:?}") })?;
                    if !entry.hosts.contains(&host) {
                        entry.hosts.push(host);
                    }
                }
            }
            if let Some(list) = row.try_get::<Option<String>, _>("holder_accounts")? {
                entry.accounts.extend(list.split(',').map(str::to_owned));
            }
            candidates.push(Candidate { row, result_id: after_id, level: after_priority, work_unit_id, taken: false });
        }
        // Locality scheduling: a host holding input files takes first the
        // copies of the page that use them.
        let local = if walks.iter().any(|walk| !cached[walk.call].is_empty()) {
            let ids: Vec<WorkUnitId> = candidates.iter().map(|c| WorkUnitId(c.work_unit_id)).collect();
            files::work_unit_files(tx, &ids).await?
        } else {
            HashMap::new()
        };
        for walk in walks.iter_mut() {
            let call = walk.call;
            let order = locality_order(&candidates, &local, cached[call]);
            if order.windows(2).any(|pair| pair[0] > pair[1]) {
                // Out of dispatch order, the frontier cannot move this time.
                walk.stuck.extend(candidates.iter().map(|c| c.level));
            }
            for &index in &order {
                let candidate = &mut candidates[index];
                if walk.wants == 0 || walk.refused.quota {
                    break;
                }
                let (level, id) = (candidate.level, candidate.result_id);
                if candidate.taken {
                    // Taken by an earlier call: gone from the unsent copies.
                    walk.pass(level, id);
                    continue;
                }
                if walk.passed(level, id) {
                    continue;
                }
                // Each copy counts against the host's quota as it is leased.
                if hosts.remaining(walk.host, None, now) == 0 {
                    walk.refused.quota = true;
                    break;
                }
                let held = holders.get_mut(&candidate.work_unit_id).expect("every candidate has holders");
                let row = &candidate.row;
                let app: String = row.try_get("app_digest")?;
                let verdict = if held.closed {
                    // Its other copies are retired in this group: gone.
                    Verdict::Never
                } else if held.hosts.contains(&walk.host.0) {
                    walk.refused.own += 1;
                    Verdict::Never
                } else if walk.account.as_ref().is_some_and(|account| held.accounts.contains(account)) {
                    walk.refused.account += 1;
                    Verdict::Never
                } else if hosts.remaining(walk.host, Some(&app), now) == 0 {
                    // Its quota for this app is used up: not this copy now.
                    walk.refused.app_quota += 1;
                    Verdict::NotNow
                } else if batch::in_tail(rows::u64_column(row, "batch_size")?, rows::u64_column(row, "batch_ended")?) {
                    // The tail of a batch goes preferably to hosts with a short turnaround.
                    let waited = u64::try_from(now.0 - row.try_get::<Option<i64>, _>("created_at")?.unwrap_or(now.0))
                        .unwrap_or(0);
                    let attached = match attached_hosts {
                        Some(ref attached) => attached,
                        None => attached_hosts.insert(attached_turnarounds(tx, now).await?),
                    };
                    // Only a host that may take this copy is worth waiting for:
                    // not one holding a copy of the work unit (nor of its account).
                    let fastest = attached
                        .iter()
                        .filter(|(host, _, account)| {
                            !held.hosts.contains(host) && !account.as_ref().is_some_and(|a| held.accounts.contains(a))
                        })
                        .map(|(_, turnaround, _)| *turnaround)
                        .min();
                    let tail = batch::Tail {
                        batch_turnaround_ms: rows::optional_u64(row, "batch_turnaround")?,
                        // The asking host is attached, whatever its recorded contact.
                        fastest_attached_ms: fastest.into_iter().chain(walk.turnaround).min(),
                        grace_ms: rows::policy(row)?.deadline_ms() / 10,
                    };
                    if tail.may_take(walk.turnaround, waited) {
                        Verdict::Take
                    } else {
                        walk.refused.tail += 1;
                        Verdict::NotNow
                    }
                } else {
                    Verdict::Take
                };
                match verdict {
                    Verdict::Never => {
                        walk.pass(level, id);
                        continue;
                    }
                    Verdict::NotNow => {
                        walk.stuck.insert(level);
                        continue;
                    }
                    Verdict::Take => {}
                }
                let policy = rows::policy(row)?;
                if policy.adaptive_replication()
                    && held.hosts.is_empty()
                    && trust::accept_single(walk.streak, trust::draw(secret, ResultId(id)))
                    && first_copy(tx, WorkUnitId(candidate.work_unit_id)).await?
                {
                    single.push(WorkUnitId(candidate.work_unit_id));
                    held.closed = true;
                }
                held.hosts.push(walk.host.0);
                held.leased = true;
                if let Some(account) = &walk.account {
                    held.accounts.push(account.clone());
                }
                candidate.taken = true;
                walk.pass(level, id);
                hosts.record_sent(walk.host, &app, 1, now);
                walk.wants -= 1;
                let deadline = scheduler::deadline(now, &policy);
                leased.push((id, walk.host, deadline));
                assignments[call].push(assignment(row, deadline)?);
            }
        }
        if !full {
            break;
        }
        // What the database says of a work unit is read again with any later
        // copy of it; only what this group leased must be remembered (a long
        // walk would otherwise keep every work unit it passed).
        holders.retain(|_, held| held.leased);
    }
    for walk in &walks {
        if assignments[walk.call].is_empty() && frontiers.explain(walk.host, now) {
            tracing::info!(host_id = walk.host.0, "no work for this host: {}", walk.refused);
        }
    }
    let mut found: HashMap<Walker, HostFrontier> = HashMap::new();
    for walk in walks {
        // Two calls of one walker: both frontiers hold, keep the further.
        let frontier = found.entry(walk.walker).or_default();
        for (level, id) in walk.frontier {
            let last = frontier.entry(level).or_insert(id);
            *last = (*last).max(id);
        }
    }
    if !single.is_empty() {
        // The transitions below must see the leased copies as sent: they are
        // written now, not with the group's last writes.
        let mut query = QueryBuilder::new("");
        push_leased(&mut query, &leased, now);
        query.build().execute(&mut *tx).await?;
        leased.clear();
        for chunk in single.chunks(bulk::CHUNK) {
            let mut query =
                QueryBuilder::new("UPDATE work_units SET single_result = 1, target_results = 1 WHERE id IN ");
            bulk::push_list(&mut query, &chunk.iter().map(|w| w.0).collect::<Vec<_>>());
            query.build().execute(&mut *tx).await?;
        }
        let events = transitions(tx, validators, &single, Event::Update, now).await?;
        hosts.load(tx, events.iter().map(|e| e.host.0)).await?;
        hosts.apply(&events);
    }
    Ok((leased, found, stored))
}

/// An unsent copy offered to the hosts of a group.
/// The input files of no host.
static NO_FILES: std::sync::LazyLock<HashSet<String>> = std::sync::LazyLock::new(HashSet::new);

/// The order a host walks a page of candidates in: those whose work unit
/// uses a file it holds first, then the others, each in dispatch order.
fn locality_order(
    candidates: &[Candidate],
    files: &HashMap<WorkUnitId, Vec<AssignedFile>>,
    cached: &HashSet<String>,
) -> Vec<usize> {
    let uses_cached = |candidate: &Candidate| {
        files
            .get(&WorkUnitId(candidate.work_unit_id))
            .is_some_and(|files| files.iter().any(|assigned| cached.contains(assigned.file.digest.as_str())))
    };
    let (mut local, rest): (Vec<usize>, Vec<usize>) =
        (0..candidates.len()).partition(|&index| !cached.is_empty() && uses_cached(&candidates[index]));
    local.extend(rest);
    local
}

struct Candidate {
    row: Row,
    result_id: i64,
    /// Its priority level.
    level: i64,
    work_unit_id: i64,
    taken: bool,
}

/// Upper-case hex of `text`'s bytes, as SQLite's `hex()`.
fn hex(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02X}")).collect()
}

/// The hosts attached (in contact within [`scheduler::ATTACHED_MS`]) that
/// have a turnaround, with it and their account.
async fn attached_turnarounds(tx: &mut Tx<'_>, now: Timestamp) -> Result<Vec<AttachedHost>> {
    let rows = query(
        "SELECT id, avg_turnaround_ms, hex(account) AS account FROM hosts \
         WHERE last_contact_at >= ? AND avg_turnaround_ms IS NOT NULL",
    )
    .bind(now.0 - scheduler::ATTACHED_MS)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter()
        .map(|row| {
            let account: String = row.try_get("account")?;
            Ok((
                row.try_get("id")?,
                rows::u64_column(row, "avg_turnaround_ms")?,
                (!account.is_empty()).then_some(account),
            ))
        })
        .collect()
}

/// An attached host with a turnaround: its id, its turnaround, its account (hex).
type AttachedHost = (i64, u64, Option<String>);

/// A copy leased: its id, its host and its deadline.
type Leased = (i64, HostId, Timestamp);

/// Appends to `query` the statements that mark `leased` copies as sent at
/// `now` (each followed by `; `).
fn push_leased(query: &mut QueryBuilder, leased: &[Leased], now: Timestamp) {
    for chunk in leased.chunks(bulk::CHUNK) {
        query.push("WITH v(id, host_id, deadline) AS (");
        bulk::push_values(query, chunk, 3, |mut row, (id, host, deadline)| {
            row.push_bind(*id).push_bind(host.0).push_bind(deadline.0);
        });
        query.push(") UPDATE results SET server_state = 'in_progress', host_id = v.host_id, sent_at = ");
        query.push_bind(now.0);
        query.push(", deadline = v.deadline FROM v WHERE results.id = v.id; ");
    }
}

/// Most candidates read at once.
const MAX_PAGE: usize = 4096;

/// Longest error message kept in a batch's error watch.
const MAX_WATCHED_ERROR: usize = 200;

/// Updates turnaround averages (hosts' in `hosts`) and the batches' error
/// watch after reports, in order; pauses a batch whose app fails on several
/// hosts or whose first results are mostly errors from several hosts
/// (`batch::auto_pause`). For each batch concerned: one read of the batch,
/// one of its erring hosts when it got errors, one write.
async fn note_reports(tx: &mut Tx<'_>, recorded: &[Recorded<'_>], hosts: &mut HostTable) -> Result<()> {
    let success = |r: &Recorded<'_>| r.copy.outcome == Some(lifecycle::Outcome::Success);
    for r in recorded.iter().filter(|r| success(r)) {
        if let Some(sample) = r.turnaround {
            hosts.note_turnaround(r.host, sample);
        }
    }
    let mut batches: Vec<i64> = recorded.iter().filter_map(|r| r.batch_id).collect();
    batches.sort_unstable();
    batches.dedup();
    for batch_id in batches {
        let row = query("SELECT n_reported, n_errors, state, avg_turnaround_ms FROM batches WHERE id = ?")
            .bind(batch_id)
            .fetch_one(&mut *tx)
            .await?;
        let mut watch = batch::ErrorWatch {
            reported: rows::u32_column(&row, "n_reported")?,
            errors: rows::u32_column(&row, "n_errors")?,
            erring_hosts: Vec::new(),
        };
        let mut state: String = row.try_get("state")?;
        let mut average = rows::optional_u64(&row, "avg_turnaround_ms")?;
        let mut pause_reason = None;
        let reports: Vec<&Recorded<'_>> = recorded.iter().filter(|r| r.batch_id == Some(batch_id)).collect();
        let any_error = reports.iter().any(|r| !success(r));
        // The erring hosts in the order they were recorded (`seq`).
        let mut next_seq = 0_i64;
        if any_error && watch.watching() {
            for row in
                query("SELECT host_id, error_message, seq FROM batch_error_hosts WHERE batch_id = ? ORDER BY seq")
                    .bind(batch_id)
                    .fetch_all(&mut *tx)
                    .await?
            {
                watch.erring_hosts.push((row.try_get("host_id")?, row.try_get("error_message")?));
                next_seq = next_seq.max(row.try_get::<i64, _>("seq")? + 1);
            }
        }
        let known_hosts = watch.erring_hosts.len();
        // A copy given back is no evidence about the app.
        for r in reports.into_iter().filter(|r| !r.copy.is_given_back()) {
            let error = (!success(r)).then(|| watched_error(&r.input.error_message));
            watch.record(r.host.0, error.as_deref());
            if let (true, Some(sample)) = (success(r), r.turnaround) {
                average = Some(batch::update_turnaround(average, sample));
            }
            if let (true, Some(reason)) = (state == "active", batch::auto_pause(&watch)) {
                tracing::warn!(batch_id, %reason, "pausing a batch (with this group's commit)");
                state = "paused".to_owned();
                pause_reason = Some(reason);
            }
        }
        let mut query = QueryBuilder::new("UPDATE batches SET n_reported = ");
        query.push_bind(watch.reported).push(", n_errors = ").push_bind(watch.errors);
        query.push(", avg_turnaround_ms = ").push_bind(average.map(int)).push(", state = ").push_bind(state);
        query.push(", pause_reason = COALESCE(").push_bind(pause_reason).push(", pause_reason) WHERE id = ");
        query.push_bind(batch_id).push("; ");
        let new_hosts = &watch.erring_hosts[known_hosts..];
        if !new_hosts.is_empty() {
            query.push("INSERT INTO batch_error_hosts (batch_id, host_id, error_message, seq) ");
            query.push_values(new_hosts.iter().zip(next_seq..), |mut values, ((host, error), seq)| {
                values.push_bind(batch_id).push_bind(*host).push_bind(error.clone()).push_bind(seq);
            });
            query.push(" ON CONFLICT DO NOTHING");
        }
        query.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// An error message as the error watch compares it: its first line, at most
/// `MAX_WATCHED_ERROR` bytes ("no message" when empty).
fn watched_error(message: &str) -> String {
    let line = message.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return "no message".to_owned();
    }
    let mut end = line.len().min(MAX_WATCHED_ERROR);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_owned()
}

/// An assignment from a row with the columns of a lease query.
fn assignment(row: &Row, deadline: Timestamp) -> Result<Assignment> {
    let work_unit_id = WorkUnitId(row.try_get("work_unit_id")?);
    let signature: Option<Vec<u8>> = row.try_get("app_signature")?;
    let public_key: Option<Vec<u8>> = row.try_get("app_public_key")?;
    let project: String = row.try_get("project")?;
    let (argv, env) = rows::merged_args(row, &project)?;
    Ok(Assignment {
        result_id: ResultId(row.try_get("result_id")?),
        work_unit_id,
        work_unit_name: row.try_get("work_unit_name")?,
        project,
        app_digest: row.try_get("app_digest")?,
        app_signature: signature.zip(public_key).map(|(s, k)| AppSignature::from_stored(s, k)),
        input: row.try_get("input")?,
        random_seed: rows::random_seed(row)?,
        limits: rows::limits(row)?,
        deadline,
        nan_canonicalization: row.try_get("nan_canonicalization")?,
        argv,
        env,
        files: Vec::new(),
        output_files_bytes: rows::file_limits(row)?.output_bytes,
        checkpointing: row.try_get("checkpointing")?,
    })
}

/// Fills in the input files of assignments, in one read for all of them.
async fn attach_files<'a>(
    tx: &mut Tx<'_>,
    assignments: impl IntoIterator<Item = &'a mut Vec<Assignment>>,
) -> Result<()> {
    let mut all: Vec<&mut Assignment> = assignments.into_iter().flatten().collect();
    if all.is_empty() {
        return Ok(());
    }
    let ids: Vec<WorkUnitId> = all.iter().map(|a| a.work_unit_id).collect();
    let files = files::work_unit_files(tx, &ids).await?;
    for assignment in &mut all {
        if let Some(files) = files.get(&assignment.work_unit_id) {
            assignment.files = files.clone();
        }
    }
    Ok(())
}

/// Whether no copy of the work unit has been sent yet.
async fn first_copy(tx: &mut Tx<'_>, work_unit: WorkUnitId) -> Result<bool> {
    let row = query("SELECT COUNT(*) AS n FROM results WHERE work_unit_id = ? AND server_state != 'unsent'")
        .bind(work_unit.0)
        .fetch_one(&mut *tx)
        .await?;
    Ok(row.try_get::<i64, _>("n")? == 0)
}

/// What the hosts of the calls not refused hold, from one read of their
/// copies in progress:
/// - per call that lists what its host holds, the copies in progress for
///   that host, still wanted and within their deadline, that it does not
///   list: their assignment was lost, and they are sent again (their full
///   rows are read only when some are lost);
/// - per host, the copies whose work unit has ended (didn't need, or
///   cancelled): they are over, and the host is told to abort them.
async fn held_copies(
    tx: &mut Tx<'_>,
    calls: &[Call],
    refused: &[Option<Error>],
    now: Timestamp,
) -> Result<(Vec<Vec<Assignment>>, HashMap<i64, Vec<ResultId>>)> {
    let mut lost: Vec<Vec<Assignment>> = calls.iter().map(|_| Vec::new()).collect();
    let mut abort: HashMap<i64, Vec<ResultId>> = HashMap::new();
    let mut hosts: Vec<i64> =
        calls.iter().zip(refused).filter(|(_, refused)| refused.is_none()).map(|(call, _)| call.host().0).collect();
    hosts.sort_unstable();
    hosts.dedup();
    // Copies in progress of open work units within their deadline, by host.
    let mut in_progress: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut over: Vec<(i64, &'static str)> = Vec::new();
    for chunk in hosts.chunks(bulk::CHUNK) {
        let mut query = QueryBuilder::new(
            "SELECT r.id, r.host_id, r.deadline, w.state, w.fail_reason FROM results r \
             JOIN work_units w ON w.id = r.work_unit_id WHERE r.server_state = 'in_progress' AND r.host_id IN ",
        );
        bulk::push_list(&mut query, chunk);
        query.push(" ORDER BY r.id");
        for row in query.build().fetch_all(&mut *tx).await? {
            let id: i64 = row.try_get("id")?;
            let host: i64 = row.try_get("host_id")?;
            let state = rows::work_unit_state(&row)?;
            if state != WorkUnitState::Open {
                over.push((id, lifecycle::abort_outcome(state).as_str()));
                abort.entry(host).or_default().push(ResultId(id));
            } else if row.try_get::<Option<i64>, _>("deadline")?.is_some_and(|deadline| deadline > now.0) {
                in_progress.entry(host).or_default().push(id);
            }
        }
    }
    for chunk in over.chunks(bulk::CHUNK) {
        let mut query = QueryBuilder::new("WITH v(id, outcome) AS (");
        bulk::push_values(&mut query, chunk, 2, |mut row, (id, outcome)| {
            row.push_bind(*id).push_bind(*outcome);
        });
        query.push(") UPDATE results SET server_state = 'over', outcome = v.outcome FROM v WHERE results.id = v.id");
        query.build().execute(&mut *tx).await?;
    }
    // Which calls miss which copies.
    let mut missing: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, call) in calls.iter().enumerate() {
        let (Call::RequestWork { host, request: WorkRequest { held: Some(held), .. } }, None) = (call, &refused[i])
        else {
            continue;
        };
        let held: HashSet<ResultId> = held.iter().copied().collect();
        for id in in_progress.get(&host.0).into_iter().flatten() {
            if !held.contains(&ResultId(*id)) {
                missing.entry(*id).or_default().push(i);
            }
        }
    }
    let mut ids: Vec<i64> = missing.keys().copied().collect();
    ids.sort_unstable();
    for chunk in ids.chunks(bulk::CHUNK) {
        let mut query = QueryBuilder::new(concat!(
            "SELECT r.id AS result_id, r.work_unit_id, r.deadline, w.name AS work_unit_name, w.input, w.random_seed, \
             p.name AS project, p.app_digest, p.app_signature, p.app_public_key, ",
            rows::app_args_columns!(),
            ", ",
            rows::work_unit_policy_columns!(),
            " FROM results r JOIN work_units w ON w.id = r.work_unit_id JOIN projects p ON p.id = r.project_id \
             LEFT JOIN batches b ON b.id = w.batch_id WHERE r.id IN "
        ));
        bulk::push_list(&mut query, chunk);
        query.push(" ORDER BY r.id");
        for row in query.build().fetch_all(&mut *tx).await? {
            let id: i64 = row.try_get("result_id")?;
            let copy = assignment(&row, Timestamp(row.try_get("deadline")?))?;
            for &i in missing.get(&id).into_iter().flatten() {
                lost[i].push(copy.clone());
            }
        }
    }
    Ok((lost, abort))
}
