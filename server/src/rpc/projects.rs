//! The `Projects` service: submission and administration, spoken by the `quorum` CLI.

use std::pin::Pin;
use std::time::Duration;

use quorum_proto::v1 as pb;
use quorum_proto::v1::projects_server::Projects;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::status::{invalid, refused_module};
use super::{Context, auth, files};
use crate::domain::access::Action;
use crate::domain::app_args::{AppArgs, ArgsError};
use crate::domain::assimilation::{self, Cursor, Step};
use crate::domain::files::FileLimits;
use crate::domain::fuzzy::{Format, Tolerance};
use crate::domain::lifecycle::CopyState;
use crate::domain::names::{ProjectName, WorkUnitName};
use crate::domain::policy::{Limits, PolicySpec, ReplicationPolicy, ValidatorKind};
use crate::domain::signing::AppSignature;
use crate::domain::{ResultId, WorkUnitId};
use crate::domain::{app, scheduler};
use crate::store::{self, CancelScope, NewProject, NewWorkUnit, ResultFilter};

/// Largest input of one work unit.
const MAX_INPUT_BYTES: usize = 16 << 20;
/// Most rows one listing returns.
const MAX_PAGE: u32 = 10_000;
/// Longest a `WaitProject` call waits.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Least time between two counts of a waited-for project: under load every
/// report is a change, and a count walks the project's index entries.
const WAIT_RECOUNT_INTERVAL: Duration = Duration::from_millis(200);

/// Canonical results one read of `StreamCanonicalResults` takes.
const STREAM_PAGE: u32 = 500;
/// Longest a stream waits for a change before reading again (a safety net:
/// every validation notifies `Changes`).
const STREAM_REREAD: Duration = Duration::from_secs(5);

/// The answer of `StreamCanonicalResults`.
type CanonicalResultStream = Pin<Box<dyn Stream<Item = Result<pb::CanonicalResultEvent, Status>> + Send>>;

pub struct ProjectsService {
    ctx: Context,
}

impl ProjectsService {
    pub fn new(ctx: Context) -> ProjectsService {
        ProjectsService { ctx }
    }
}

fn project_name(name: &str) -> Result<ProjectName, Status> {
    Ok(ProjectName::parse(name)?)
}

/// Error groups `ListErrors` returns when the request gives no limit.
const DEFAULT_ERROR_GROUPS: u32 = 50;

/// An optional id field: 0 means none; a negative id is no id at all.
fn optional_id(field: &str, id: i64) -> Result<Option<i64>, Status> {
    match id {
        0 => Ok(None),
        id if id < 0 => Err(invalid(field, format!("{id} is not an id (ids are positive; 0 means any)"))),
        id => Ok(Some(id)),
    }
}

fn page_limit(limit: u32) -> u32 {
    if limit == 0 { 1000 } else { limit.min(MAX_PAGE) }
}

/// Arguments and environment variables of request field `field` (the
/// project's, or `work_units[i]`), checked by the domain: the error names the
/// field and the offending entry.
fn app_args(field: &str, args: Vec<String>, env: Vec<pb::EnvVar>) -> Result<AppArgs, Status> {
    let env = env.into_iter().map(|var| (var.name, var.value)).collect();
    AppArgs::new(args, env).map_err(|error| {
        let separator = if field.is_empty() { "" } else { "." };
        match error {
            ArgsError::NulInArg { .. }
            | ArgsError::EmptyName { .. }
            | ArgsError::EqualsInName { .. }
            | ArgsError::NulInName { .. }
            | ArgsError::NulInValue { .. }
            | ArgsError::DuplicateName { .. } => Status::invalid_argument(format!("{field}{separator}{error}")),
            ArgsError::TooManyArgs { .. } => invalid(&format!("{field}{separator}args"), error),
            ArgsError::TooManyEnv { .. } => invalid(&format!("{field}{separator}env"), error),
            ArgsError::TooLarge { .. } if field.is_empty() => invalid("args and env", error),
            ArgsError::TooLarge { .. } => invalid(field, error),
        }
    })
}

fn work_units(inputs: Vec<pb::WorkUnitInput>) -> Result<Vec<NewWorkUnit>, Status> {
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, unit)| {
            if unit.input.len() > MAX_INPUT_BYTES {
                return Err(invalid(
                    &format!("work_units[{i}].input"),
                    format!("{} bytes, above the maximum of {MAX_INPUT_BYTES}", unit.input.len()),
                ));
            }
            let name = if unit.name.is_empty() { None } else { Some(WorkUnitName::parse(&unit.name)?) };
            let app_args = app_args(&format!("work_units[{i}]"), unit.args, unit.env)?;
            let files = files::input_files(&format!("work_units[{i}].files"), unit.files)?;
            Ok(NewWorkUnit { name, input: unit.input, app_args, files })
        })
        .collect()
}

fn policy(policy: Option<pb::ReplicationPolicy>) -> Result<ReplicationPolicy, Status> {
    let p = policy.ok_or_else(|| invalid("policy", "missing"))?;
    let deadline_ms = p.deadline_secs.checked_mul(1000).ok_or_else(|| invalid("policy.deadline_secs", "too large"))?;
    Ok(ReplicationPolicy::new(PolicySpec {
        min_quorum: p.min_quorum,
        target_results: p.target_results,
        max_error_results: p.max_error_results,
        max_total_results: p.max_total_results,
        max_success_results: p.max_success_results,
        deadline_ms,
        adaptive_replication: p.adaptive_replication,
        priority: p.priority,
    })?)
}

/// The project's validator, and its module for a custom one (checked like an app).
fn validator(
    kind: i32,
    fuzzy: Option<pb::FuzzyValidator>,
    module: Vec<u8>,
) -> Result<(ValidatorKind, Option<Vec<u8>>), Status> {
    let kind = pb::ValidatorKind::try_from(kind).map_err(|_| invalid("validator", format!("unknown kind {kind}")))?;
    if kind != pb::ValidatorKind::Custom && !module.is_empty() {
        return Err(invalid("validator_module", "only a custom validator takes a module"));
    }
    match kind {
        pb::ValidatorKind::Unspecified | pb::ValidatorKind::Bitwise => Ok((ValidatorKind::Bitwise, None)),
        pb::ValidatorKind::Fuzzy => {
            let fuzzy = fuzzy.ok_or_else(|| invalid("fuzzy", "a fuzzy validator needs its format and tolerances"))?;
            let format = match pb::FuzzyFormat::try_from(fuzzy.format) {
                Ok(pb::FuzzyFormat::Whitespace) => Format::Whitespace,
                Ok(pb::FuzzyFormat::Json) => Format::Json,
                Ok(pb::FuzzyFormat::Unspecified) | Err(_) => {
                    return Err(invalid("fuzzy.format", "must be WHITESPACE or JSON"));
                }
            };
            let tolerance =
                Tolerance::new(fuzzy.relative_tolerance, fuzzy.absolute_tolerance).map_err(|e| invalid("fuzzy", e))?;
            Ok((ValidatorKind::Fuzzy { format, tolerance }, None))
        }
        pb::ValidatorKind::Custom => {
            check_module("validator_module", &module)?;
            Ok((ValidatorKind::Custom { module_digest: app::digest_of(&module) }, Some(module)))
        }
    }
}

/// Checks a submitted module (request field `field`) against what the
/// sandbox provides: the coordinator never trusts the CLI to have done it.
fn check_module(field: &str, module: &[u8]) -> Result<(), Status> {
    app::check_module(module, quorum_sandbox::PROVIDED_IMPORTS).map_err(|error| refused_module(field, error))
}

fn policy_to_proto(policy: &ReplicationPolicy) -> pb::ReplicationPolicy {
    pb::ReplicationPolicy {
        min_quorum: policy.min_quorum(),
        target_results: policy.target_results(),
        max_error_results: policy.max_error_results(),
        max_total_results: policy.max_total_results(),
        deadline_secs: policy.deadline_ms() / 1000,
        max_success_results: policy.max_success_results(),
        adaptive_replication: policy.adaptive_replication(),
        priority: policy.priority(),
    }
}

/// Canonical results as the protocol carries them, each with its output
/// files (read apart, with their bytes).
async fn canonical_to_proto(
    ctx: &Context,
    results: Vec<store::CanonicalResult>,
) -> Result<Vec<pb::CanonicalResult>, Status> {
    let ids: Vec<ResultId> = results.iter().map(|c| ResultId(c.result_id)).collect();
    let mut stored = ctx.store.result_files(&ids).await?;
    let mut converted = Vec::with_capacity(results.len());
    for c in results {
        let output_files =
            files::output_file_infos(ctx, stored.remove(&ResultId(c.result_id)).unwrap_or_default()).await?;
        converted.push(pb::CanonicalResult {
            work_unit_id: c.work_unit_id,
            work_unit_name: c.work_unit_name,
            result_id: c.result_id,
            output: c.output,
            output_digest: c.output_digest,
            fuel_used: c.fuel_used,
            random_seed: c.random_seed,
            argv: c.argv,
            env: super::env_to_proto(c.env),
            output_files,
        });
    }
    Ok(converted)
}

/// Sends a project's canonical results in assimilation order, from `page`
/// (already read, after `cursor`, with `changes` subscribed before it) on,
/// until every work unit has ended, the client goes away or the coordinator
/// stops (UNAVAILABLE: the client resumes with its last cursor).
async fn send_canonical_results(
    ctx: Context,
    name: ProjectName,
    mut cursor: Cursor,
    mut page: store::CanonicalPage,
    mut changes: tokio::sync::watch::Receiver<u64>,
    tx: mpsc::Sender<Result<pb::CanonicalResultEvent, Status>>,
) {
    loop {
        let n_sent = page.results.len();
        let (cursors, results): (Vec<Cursor>, Vec<store::CanonicalResult>) = page.results.into_iter().unzip();
        let results = match canonical_to_proto(&ctx, results).await {
            Ok(results) => results,
            Err(status) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
        };
        for (at, result) in cursors.into_iter().zip(results) {
            cursor = at;
            let event = pb::CanonicalResultEvent { result: Some(result), cursor: at.get() };
            tokio::select! {
                sent = tx.send(Ok(event)) => if sent.is_err() { return },
                () = ctx.stopped() => return,
            }
        }
        match assimilation::after_page(n_sent, STREAM_PAGE, page.any_open) {
            Step::End => return,
            Step::ReadAgain => {}
            Step::WaitForChange => {
                tokio::select! {
                    _ = changes.changed() => {
                        // Validations that come meanwhile are read together.
                        tokio::time::sleep(WAIT_RECOUNT_INTERVAL).await;
                    }
                    () = tokio::time::sleep(STREAM_REREAD) => {}
                    () = tx.closed() => return,
                    () = ctx.stopped() => {
                        let _ = tx
                            .send(Err(Status::unavailable(
                                "the coordinator is shutting down; call again with the last cursor once it is back",
                            )))
                            .await;
                        return;
                    }
                }
            }
        }
        // Changes from here on wake the next wait.
        changes.borrow_and_update();
        page = match ctx.store.canonical_results_since(&name, cursor, STREAM_PAGE).await {
            Ok(page) => page,
            Err(error) => {
                let _ = tx.send(Err(Status::from(error))).await;
                return;
            }
        };
    }
}

fn status_to_proto(s: store::ProjectStatus) -> pb::ProjectStatus {
    pb::ProjectStatus {
        name: s.name,
        project_id: s.id,
        state: s.state,
        app_digest: s.app_digest,
        policy: Some(policy_to_proto(&s.policy)),
        validator: s.validator,
        batches: s
            .batches
            .into_iter()
            .map(|b| pb::BatchInfo {
                id: b.id,
                state: b.state,
                pause_reason: b.pause_reason.unwrap_or_default(),
                n_work_units: b.n_work_units,
                n_ended: b.n_ended,
            })
            .collect(),
        work_units_total: s.work_units_total,
        work_units_open: s.work_units_open,
        work_units_done: s.work_units_done,
        work_units_failed: s.work_units_failed,
        results_unsent: s.results_unsent,
        results_in_progress: s.results_in_progress,
        results_over: s.results_over,
        results_valid: s.results_valid,
        results_invalid: s.results_invalid,
        results_error: s.results_error,
        results_no_reply: s.results_no_reply,
        results_reported: s.results_reported,
        holds: Vec::new(),
    }
}

#[tonic::async_trait]
impl Projects for ProjectsService {
    type StreamCanonicalResultsStream = CanonicalResultStream;

    async fn stream_canonical_results(
        &self,
        request: Request<pb::StreamCanonicalResultsRequest>,
    ) -> Result<Response<Self::StreamCanonicalResultsStream>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        let request = request.into_inner();
        let name = project_name(&request.project)?;
        role.authorize(Action::OnProject(&name))?;
        // The first page is read here, so that a project that does not
        // exist is refused (NOT_FOUND) before the stream starts.
        let cursor = Cursor::new(request.after_cursor);
        // Subscribed before the first read: a validation after it wakes the stream.
        let changes = self.ctx.changes.subscribe();
        let first = self.ctx.store.canonical_results_since(&name, cursor, STREAM_PAGE).await?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(send_canonical_results(self.ctx.clone(), name, cursor, first, changes, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn create_project(
        &self,
        request: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::CreateProjectResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        let request = request.into_inner();
        let name = project_name(&request.name)?;
        role.authorize(Action::CreateProject(&name))?;
        let policy = policy(request.policy)?;
        let limits = request.limits.unwrap_or_default();
        let file_limits = FileLimits::new(limits.input_files_bytes, limits.output_files_bytes)
            .map_err(|error| invalid("limits", error))?;
        let limits = Limits::with_defaults(
            limits.fuel,
            limits.memory_bytes,
            limits.output_bytes,
            limits.wall_time_ms,
            limits.stderr_bytes,
        )?;
        let (validator, validator_module) = validator(request.validator, request.fuzzy, request.validator_module)?;
        if file_limits.output_bytes > 0 && validator != ValidatorKind::Bitwise {
            return Err(invalid(
                "limits.output_files_bytes",
                "output files are compared byte for byte: they need the bitwise validator for now",
            ));
        }
        let shared_files = files::input_files("files", request.files)?;
        check_module("app_module", &request.app_module)?;
        let app_digest = app::digest_of(&request.app_module);
        let app_signature = AppSignature::verify(&app_digest, &request.app_signature, &request.app_public_key)?;
        let project_app_args = app_args("", request.args, request.env)?;
        let work_units = work_units(request.work_units)?;
        let seed = scheduler::project_seed(&name, request.seed);
        let project = NewProject {
            validator_module,
            name,
            app_signature,
            app_digest,
            app_module: request.app_module,
            policy,
            limits,
            validator,
            nan_canonicalization: request.nan_canonicalization,
            seed,
            app_args: project_app_args,
            files: shared_files,
            file_limits,
            checkpointing: request.checkpointing,
        };
        let (project_id, n) = self.ctx.store.create_project(&project, &work_units, self.ctx.clock.now()).await?;
        tracing::info!(project = %project.name, n_work_units = n, app = %project.app_digest, "project created");
        self.ctx.changes.notify();
        Ok(Response::new(pb::CreateProjectResponse {
            project_id: project_id.0,
            app_digest: project.app_digest.to_string(),
            n_work_units: n,
        }))
    }

    async fn add_work_units(
        &self,
        request: Request<pb::AddWorkUnitsRequest>,
    ) -> Result<Response<pb::AddWorkUnitsResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        let request = request.into_inner();
        let name = project_name(&request.project)?;
        role.authorize(Action::OnProject(&name))?;
        if request.work_units.is_empty() {
            return Err(invalid("work_units", "empty batch"));
        }
        let work_units = work_units(request.work_units)?;
        let batch_policy = request.policy.map(|p| policy(Some(p))).transpose()?;
        let (n, first, batch_id) =
            self.ctx.store.add_work_units(&name, &work_units, batch_policy.as_ref(), self.ctx.clock.now()).await?;
        tracing::info!(project = %name, n_work_units = n, "work units added");
        self.ctx.changes.notify();
        Ok(Response::new(pb::AddWorkUnitsResponse { n_work_units: n, first_work_unit_id: first.0, batch_id }))
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        let project = request.into_inner().project;
        let name = if project.is_empty() { None } else { Some(project_name(&project)?) };
        role.authorize(name.as_ref().map_or(Action::StatusOfAll, Action::OnProject))?;
        let mut statuses = self.ctx.store.project_status(name.as_ref()).await?;
        statuses.retain(|status| role.sees(&status.name));
        let mut projects: Vec<pb::ProjectStatus> = statuses.into_iter().map(status_to_proto).collect();
        // One project named: what holds its work, too.
        if let (Some(name), [status]) = (&name, projects.as_mut_slice()) {
            let holds = self.ctx.store.holds(name, self.ctx.clock.now()).await?;
            status.holds =
                holds.iter().map(|hold| pb::Hold { kind: hold.kind().to_owned(), message: hold.to_string() }).collect();
        }
        Ok(Response::new(pb::GetStatusResponse { projects }))
    }

    async fn list_work_units(
        &self,
        request: Request<pb::ListWorkUnitsRequest>,
    ) -> Result<Response<pb::ListWorkUnitsResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        let request = request.into_inner();
        let name = project_name(&request.project)?;
        role.authorize(Action::OnProject(&name))?;
        let units = self.ctx.store.list_work_units(&name, request.after_id, page_limit(request.limit)).await?;
        Ok(Response::new(pb::ListWorkUnitsResponse {
            work_units: units
                .into_iter()
                .map(|w| pb::WorkUnitInfo {
                    id: w.id,
                    name: w.name,
                    state: w.state,
                    fail_reason: w.fail_reason.unwrap_or_default(),
                    canonical_result_id: w.canonical_result_id.unwrap_or(0),
                    target_results: w.target_results,
                    input_size: w.input_size,
                    random_seed: w.random_seed,
                    argv: w.argv,
                    env: super::env_to_proto(w.env),
                })
                .collect(),
        }))
    }

    async fn list_results(
        &self,
        request: Request<pb::ListResultsRequest>,
    ) -> Result<Response<pb::ListResultsResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        let request = request.into_inner();
        let name = project_name(&request.project)?;
        role.authorize(Action::OnProject(&name))?;
        let filter = ResultFilter {
            work_unit_id: optional_id("work_unit_id", request.work_unit_id)?,
            batch_id: optional_id("batch_id", request.batch_id)?,
            state: match request.state.as_str() {
                "" => None,
                text => Some(CopyState::parse(text).ok_or_else(|| {
                    let states: Vec<&str> = CopyState::ALL.iter().map(|state| state.as_str()).collect();
                    invalid("state", format!("unknown state {text:?}; one of {}", states.join(", ")))
                })?),
            },
        };
        let results =
            self.ctx.store.list_results_filtered(&name, filter, request.after_id, page_limit(request.limit)).await?;
        Ok(Response::new(pb::ListResultsResponse {
            results: results
                .into_iter()
                .map(|r| pb::ResultInfo {
                    id: r.id,
                    work_unit_id: r.work_unit_id,
                    host_id: r.host_id.unwrap_or(0),
                    server_state: r.server_state,
                    outcome: r.outcome.unwrap_or_default(),
                    validate_state: r.validate_state,
                    output_digest: r.output_digest.unwrap_or_default(),
                    fuel_used: r.fuel_used,
                    run_time_ms: r.run_time_ms,
                    sent_unix_ms: r.sent_at.unwrap_or(0),
                    deadline_unix_ms: r.deadline.unwrap_or(0),
                    received_unix_ms: r.received_at.unwrap_or(0),
                    error_message: r.error_message.unwrap_or_default(),
                    stderr_tail: r.stderr_tail.unwrap_or_default(),
                    granted_credit: r.granted_credit,
                    engine: r.engine.unwrap_or_default(),
                    work_unit_name: r.work_unit_name,
                    batch_id: r.batch_id.unwrap_or(0),
                    state: r.state.as_str().to_owned(),
                })
                .collect(),
        }))
    }

    async fn get_canonical_results(
        &self,
        request: Request<pb::GetCanonicalResultsRequest>,
    ) -> Result<Response<pb::GetCanonicalResultsResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        let request = request.into_inner();
        let name = project_name(&request.project)?;
        role.authorize(Action::OnProject(&name))?;
        let results =
            self.ctx.store.canonical_results(&name, request.after_work_unit_id, page_limit(request.limit)).await?;
        Ok(Response::new(pb::GetCanonicalResultsResponse { results: canonical_to_proto(&self.ctx, results).await? }))
    }

    async fn list_hosts(
        &self,
        request: Request<pb::ListHostsRequest>,
    ) -> Result<Response<pb::ListHostsResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        role.authorize(Action::ListHosts)?;
        let hosts = self.ctx.store.list_hosts(self.ctx.clock.now()).await?;
        Ok(Response::new(pb::ListHostsResponse { hosts: hosts.into_iter().map(super::host_info).collect() }))
    }

    async fn cancel_project(
        &self,
        request: Request<pb::CancelProjectRequest>,
    ) -> Result<Response<pb::CancelProjectResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        let name = project_name(&request.into_inner().project)?;
        role.authorize(Action::OnProject(&name))?;
        let n = self.ctx.store.cancel_project(&name, self.ctx.clock.now()).await?;
        tracing::info!(project = %name, n_work_units = n, "project cancelled");
        self.ctx.changes.notify();
        Ok(Response::new(pb::CancelProjectResponse { n_work_units_cancelled: n }))
    }

    async fn cancel_work_units(
        &self,
        request: Request<pb::CancelWorkUnitsRequest>,
    ) -> Result<Response<pb::CancelProjectResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        let request = request.into_inner();
        let name = project_name(&request.project)?;
        role.authorize(Action::OnProject(&name))?;
        let scope = match (request.batch_id, request.work_unit_ids.is_empty()) {
            (0, false) => CancelScope::WorkUnits(request.work_unit_ids.into_iter().map(WorkUnitId).collect()),
            (batch, true) if batch > 0 => CancelScope::Batch(batch),
            _ => return Err(invalid("batch_id/work_unit_ids", "give either a batch id or work unit ids")),
        };
        let n = self.ctx.store.cancel_work_units(&name, &scope, self.ctx.clock.now()).await?;
        tracing::info!(project = %name, n_work_units = n, "work units cancelled");
        self.ctx.changes.notify();
        Ok(Response::new(pb::CancelProjectResponse { n_work_units_cancelled: n }))
    }

    async fn retry_work_units(
        &self,
        request: Request<pb::RetryWorkUnitsRequest>,
    ) -> Result<Response<pb::RetryWorkUnitsResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        let request = request.into_inner();
        let name = project_name(&request.project)?;
        role.authorize(Action::OnProject(&name))?;
        let batch_policy = request.policy.map(|p| policy(Some(p))).transpose()?;
        let ids: Vec<WorkUnitId> = request.work_unit_ids.into_iter().map(WorkUnitId).collect();
        let (n, batch_id) =
            self.ctx.store.retry_work_units(&name, &ids, batch_policy.as_ref(), self.ctx.clock.now()).await?;
        tracing::info!(project = %name, n_work_units = n, batch_id, "work units retried");
        self.ctx.changes.notify();
        Ok(Response::new(pb::RetryWorkUnitsResponse { n_work_units: n, batch_id }))
    }

    async fn purge_project(
        &self,
        request: Request<pb::PurgeProjectRequest>,
    ) -> Result<Response<pb::PurgeProjectResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        let name = project_name(&request.into_inner().project)?;
        role.authorize(Action::OnProject(&name))?;
        let n = self.ctx.store.purge_project(&name, self.ctx.clock.now()).await?;
        tracing::info!(project = %name, n_work_units = n, "work units purged");
        Ok(Response::new(pb::PurgeProjectResponse { n_work_units_purged: n }))
    }

    async fn delete_project(
        &self,
        request: Request<pb::DeleteProjectRequest>,
    ) -> Result<Response<pb::DeleteProjectResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        let name = project_name(&request.into_inner().project)?;
        role.authorize(Action::OnProject(&name))?;
        let deleted = self.ctx.store.delete_project(&name).await?;
        tracing::info!(project = %name, n_work_units = deleted.n_work_units, n_results = deleted.n_results, "project deleted");
        Ok(Response::new(pb::DeleteProjectResponse {
            n_work_units: deleted.n_work_units,
            n_results: deleted.n_results,
        }))
    }

    async fn find_files(
        &self,
        request: Request<pb::FindFilesRequest>,
    ) -> Result<Response<pb::FindFilesResponse>, Status> {
        auth::caller(&self.ctx, &request).await?;
        Ok(Response::new(files::find(&self.ctx, request.into_inner().digests).await?))
    }

    async fn upload_file(
        &self,
        request: Request<tonic::Streaming<pb::UploadFileRequest>>,
    ) -> Result<Response<pb::UploadFileResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        Ok(Response::new(files::upload(&self.ctx, &role, request.into_inner()).await?))
    }

    async fn list_errors(
        &self,
        request: Request<pb::ListErrorsRequest>,
    ) -> Result<Response<pb::ListErrorsResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        let request = request.into_inner();
        let name = project_name(&request.project)?;
        role.authorize(Action::OnProject(&name))?;
        let batch = optional_id("batch_id", request.batch_id)?;
        let limit = if request.limit == 0 { DEFAULT_ERROR_GROUPS } else { request.limit.min(MAX_PAGE) };
        let groups = self.ctx.store.error_groups(&name, batch, limit).await?;
        Ok(Response::new(pb::ListErrorsResponse {
            groups: groups
                .into_iter()
                .map(|group| pb::ErrorGroup {
                    message: group.message,
                    n_results: group.n_results,
                    n_hosts: group.n_hosts,
                    n_work_units: group.n_work_units,
                    example_work_units: group.example_work_units,
                    latest_result_id: group.latest_result_id,
                    latest_stderr_tail: group.latest_stderr_tail.unwrap_or_default(),
                    latest_unix_ms: group.latest_at.unwrap_or(0),
                })
                .collect(),
        }))
    }

    async fn resume_batch(
        &self,
        request: Request<pb::ResumeBatchRequest>,
    ) -> Result<Response<pb::ResumeBatchResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        let request = request.into_inner();
        let name = project_name(&request.project)?;
        role.authorize(Action::OnProject(&name))?;
        let batch = (request.batch_id != 0).then_some(request.batch_id);
        let n = self.ctx.store.resume_batches(&name, batch).await?;
        tracing::info!(project = %name, n_batches = n, "batches resumed");
        self.ctx.changes.notify();
        Ok(Response::new(pb::ResumeBatchResponse { n_batches_resumed: n }))
    }

    async fn wait_project(
        &self,
        request: Request<pb::WaitProjectRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let role = auth::caller(&self.ctx, &request).await?;
        let request = request.into_inner();
        let name = project_name(&request.project)?;
        role.authorize(Action::OnProject(&name))?;
        let timeout =
            if request.timeout_ms == 0 { MAX_WAIT } else { Duration::from_millis(request.timeout_ms).min(MAX_WAIT) };
        let until = tokio::time::Instant::now() + timeout;
        let wait = async {
            let mut changes = self.ctx.changes.subscribe();
            loop {
                changes.borrow_and_update();
                let counted = tokio::time::Instant::now();
                let statuses = self.ctx.store.project_status(Some(&name)).await?;
                let ended = statuses.iter().all(|s| s.work_units_open == 0);
                let timed_out = ended || !matches!(tokio::time::timeout_at(until, changes.changed()).await, Ok(Ok(())));
                if ended || timed_out {
                    return Ok(Response::new(pb::GetStatusResponse {
                        projects: statuses.into_iter().map(status_to_proto).collect(),
                    }));
                }
                // Changes that come meanwhile are counted together.
                tokio::time::sleep_until((counted + WAIT_RECOUNT_INTERVAL).min(until)).await;
            }
        };
        tokio::select! {
            answer = wait => answer,
            () = self.ctx.stopped() => {
                Err(Status::unavailable("the coordinator is shutting down; call again once it is back"))
            }
        }
    }
}
