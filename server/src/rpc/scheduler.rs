//! The `Scheduler` service: what volunteer workers call to register, fetch
//! work and app modules, and report results.

use std::pin::Pin;

use quorum_proto::v1::scheduler_server::Scheduler;
use quorum_proto::v1::{
    AppChunk, Assignment, DownloadAppRequest, GetHostRequest, HostInfo, Limits, RegisterHostRequest,
    RegisterHostResponse, ReportResultsRequest, ReportResultsResponse, ReportedOutcome, RequestWorkRequest,
    RequestWorkResponse, ResultReport,
};
use rand::Rng as _;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::status::invalid;
use super::{Context, auth, files};
use crate::domain::files as file_rules;
use crate::domain::lifecycle::Report;
use crate::domain::names::{self, Account};
use crate::domain::{Digest, HostId, ResultId, app, scheduler};
use crate::metrics::Reported;
use crate::store::{self, NewHost, ReportInput, WorkReply, WorkRequest};

/// Size of the chunks an app module is streamed in.
const CHUNK_BYTES: usize = 256 << 10;
/// Most reports in one call.
const MAX_REPORTS_PER_CALL: usize = 10_000;
/// Longest stderr tail kept per result.
const MAX_STDERR_TAIL: usize = 4096;
/// Most results a host may list as held.
const MAX_HELD: usize = 100_000;
/// Longest free-text field a host may send (names, engine, messages).
const MAX_TEXT: usize = 256;

pub struct SchedulerService {
    ctx: Context,
}

impl SchedulerService {
    pub fn new(ctx: Context) -> SchedulerService {
        SchedulerService { ctx }
    }

    /// The host whose token is in the `authorization` metadata.
    async fn authenticate<T>(&self, request: &Request<T>) -> Result<HostId, Status> {
        let token_hash = auth::token_hash(&auth::bearer(request, "host token")?);
        match self.ctx.store.authenticate_host(&token_hash).await {
            Ok(host) => {
                self.ctx.limiters.host_request(host, self.ctx.clock.now())?;
                Ok(host)
            }
            Err(store::Error::UnknownHost) => Err(auth::not_a_host(&self.ctx, &token_hash).await),
            Err(error) => Err(error.into()),
        }
    }
}

/// The reports of a call by outcome, for the metrics. The store
/// acknowledges a call's reports all together or refuses the call, so
/// these are counted once the call has succeeded.
fn tally(reports: &[ReportInput]) -> [(Reported, u64); 2] {
    let successes = reports.iter().filter(|input| matches!(input.report, Report::Success { .. })).count() as u64;
    [(Reported::Success, successes), (Reported::ClientError, reports.len() as u64 - successes)]
}

impl SchedulerService {
    /// Counts a successful call's reports (see [`tally`]).
    fn count_reports(&self, tally: [(Reported, u64); 2]) {
        for (outcome, n) in tally.into_iter().filter(|(_, n)| *n > 0) {
            self.ctx.metrics.reported(outcome, n);
        }
    }
}

fn text(field: &str, value: String, max: usize) -> Result<String, Status> {
    if value.len() > max {
        return Err(invalid(field, format!("longer than {max} bytes")));
    }
    Ok(value)
}

/// Text a host registers with (shown to operators, compared as identifiers):
/// at most [`MAX_TEXT`] bytes and without control characters.
fn registered_text(field: &str, value: String) -> Result<String, Status> {
    let value = text(field, value, MAX_TEXT)?;
    names::check_printable(&value).map_err(|error| invalid(field, error))?;
    Ok(value)
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<AppChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Scheduler for SchedulerService {
    async fn register_host(
        &self,
        request: Request<RegisterHostRequest>,
    ) -> Result<Response<RegisterHostResponse>, Status> {
        let address = request.remote_addr().map(|addr| addr.ip());
        self.ctx.limiters.registration(address, self.ctx.clock.now())?;
        let request = request.into_inner();
        if request.n_cpus == 0 || request.n_cpus > 65_536 {
            return Err(invalid("n_cpus", "must be between 1 and 65536"));
        }
        let engine = registered_text("engine", request.engine)?;
        if engine.is_empty() {
            return Err(invalid("engine", "must name the WebAssembly engine and its version"));
        }
        let host = NewHost {
            name: registered_text("name", request.name)?,
            n_cpus: request.n_cpus,
            memory_bytes: request.memory_bytes,
            engine,
            os: registered_text("os", request.os)?,
            account: Account::parse(&registered_text("account", request.account)?)
                .map_err(|error| invalid("account", error))?
                .into_string(),
            // A punished record of the address is inherited (`trust::initial_quota`).
            address: address.map(|ip| ip.to_string()).unwrap_or_default(),
        };
        let mut secret = [0_u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = hex::encode(secret);
        let host_id = self.ctx.store.register_host(&host, &auth::token_hash(&token), self.ctx.clock.now()).await?;
        tracing::info!(host_id = %host_id, name = %host.name, n_cpus = host.n_cpus, "host registered");
        Ok(Response::new(RegisterHostResponse { host_id: host_id.0, token }))
    }

    async fn request_work(
        &self,
        request: Request<RequestWorkRequest>,
    ) -> Result<Response<RequestWorkResponse>, Status> {
        let host = self.authenticate(&request).await?;
        let request = request.into_inner();
        let slots = request.slots;
        if slots > scheduler::MAX_SLOTS_PER_REQUEST || (slots == 0 && !request.held_is_complete) {
            return Err(invalid("slots", format!("must be between 1 and {}", scheduler::MAX_SLOTS_PER_REQUEST)));
        }
        if request.held.len() > MAX_HELD {
            return Err(invalid("held", format!("more than {MAX_HELD} results")));
        }
        if request.reports.len() > MAX_REPORTS_PER_CALL {
            return Err(invalid("reports", format!("more than {MAX_REPORTS_PER_CALL} reports")));
        }
        let mut reports = request.reports.into_iter().map(report_input).collect::<Result<Vec<_>, Status>>()?;
        files::store_large_outputs(&self.ctx, &mut reports).await?;
        let held = request.held_is_complete.then(|| request.held.into_iter().map(ResultId).collect());
        let n_reports = reports.len();
        let reported = tally(&reports);
        let cached_files = files::cached_files(request.cached_files)?;
        if request.peer_address.len() > files::MAX_PEER_ADDRESS_BYTES {
            return Err(invalid("peer_address", format!("at most {} bytes", files::MAX_PEER_ADDRESS_BYTES)));
        }
        if !request.peer_address.is_empty() {
            self.ctx.tracker.holds(host, &request.peer_address, &cached_files);
        }
        let work = WorkRequest { reports, held, slots, cached_files };
        // One transaction: reports, lost copies sent again, new copies, aborts.
        let reply = self.ctx.store.request_work(host, work, self.ctx.clock.now()).await?;
        if n_reports > 0 {
            self.ctx.changes.notify();
        }
        if reply.n_lost > 0 {
            tracing::info!(host_id = %host, n = reply.n_lost, "lost results sent again");
        }
        let WorkReply { accepted, assignments: leased, abort, .. } = reply;
        self.count_reports(reported);
        self.ctx.metrics.dispatched(leased.len());
        if !leased.is_empty() {
            tracing::debug!(host_id = %host, n = leased.len(), "results sent");
        }
        let retry_after_ms = if leased.is_empty() { scheduler::NO_WORK_RETRY_MS } else { 0 };
        let assignments: Vec<Assignment> = leased.into_iter().map(assignment).collect();
        Ok(Response::new(RequestWorkResponse {
            assignments,
            retry_after_ms,
            abort: abort.iter().map(|id| id.0).collect(),
            accepted: accepted.iter().map(|id| id.0).collect(),
        }))
    }

    type DownloadAppStream = ChunkStream;

    async fn download_app(
        &self,
        request: Request<DownloadAppRequest>,
    ) -> Result<Response<Self::DownloadAppStream>, Status> {
        self.authenticate(&request).await?;
        let digest = request.into_inner().digest;
        let digest = Digest::parse(&digest).ok_or_else(|| invalid("digest", "must be 64 lowercase hex digits"))?;
        let module = self.ctx.store.app_module(&digest).await?;
        let total_size = module.len() as u64;
        let chunks: Vec<Result<AppChunk, Status>> = module
            .chunks(CHUNK_BYTES)
            .enumerate()
            .map(|(i, data)| Ok(AppChunk { data: data.to_vec(), total_size: if i == 0 { total_size } else { 0 } }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn report_results(
        &self,
        request: Request<ReportResultsRequest>,
    ) -> Result<Response<ReportResultsResponse>, Status> {
        let host = self.authenticate(&request).await?;
        let reports = request.into_inner().reports;
        if reports.is_empty() || reports.len() > MAX_REPORTS_PER_CALL {
            return Err(invalid("reports", format!("must hold between 1 and {MAX_REPORTS_PER_CALL} reports")));
        }
        let mut inputs = reports.into_iter().map(report_input).collect::<Result<Vec<_>, Status>>()?;
        files::store_large_outputs(&self.ctx, &mut inputs).await?;
        let summary = self.ctx.store.record_reports(host, &inputs, self.ctx.clock.now()).await?;
        self.count_reports(tally(&inputs));
        self.ctx.changes.notify();
        tracing::debug!(host_id = %host, accepted = summary.accepted.len(), abort = summary.abort.len(), "reports recorded");
        Ok(Response::new(ReportResultsResponse {
            accepted: summary.accepted.iter().map(|id| id.0).collect(),
            abort: summary.abort.iter().map(|id| id.0).collect(),
        }))
    }

    async fn get_host(&self, request: Request<GetHostRequest>) -> Result<Response<HostInfo>, Status> {
        let host = self.authenticate(&request).await?;
        Ok(Response::new(super::host_info(self.ctx.store.host(host, self.ctx.clock.now()).await?)))
    }

    async fn find_peers(
        &self,
        request: Request<quorum_proto::v1::FindPeersRequest>,
    ) -> Result<Response<quorum_proto::v1::FindPeersResponse>, Status> {
        let host = self.authenticate(&request).await?;
        Ok(Response::new(files::find_peers(&self.ctx, host, request.into_inner()).await?))
    }

    type DownloadFileStream = files::FileChunkStream;

    async fn download_file(
        &self,
        request: Request<quorum_proto::v1::DownloadFileRequest>,
    ) -> Result<Response<Self::DownloadFileStream>, Status> {
        let host = self.authenticate(&request).await?;
        Ok(Response::new(files::download(&self.ctx, host, request.into_inner()).await?))
    }
}

fn assignment(a: store::Assignment) -> Assignment {
    Assignment {
        result_id: a.result_id.0,
        work_unit_id: a.work_unit_id.0,
        project: a.project,
        app_digest: a.app_digest,
        input: a.input,
        random_seed: a.random_seed,
        limits: Some(Limits {
            fuel: a.limits.fuel,
            memory_bytes: a.limits.memory_bytes,
            output_bytes: a.limits.output_bytes,
            wall_time_ms: a.limits.wall_time_ms,
            stderr_bytes: a.limits.stderr_bytes,
            input_files_bytes: 0,
            output_files_bytes: a.output_files_bytes,
        }),
        deadline_unix_ms: a.deadline.0,
        nan_canonicalization: a.nan_canonicalization,
        work_unit_name: a.work_unit_name,
        app_signature: a.app_signature.as_ref().map(|s| s.signature().to_vec()).unwrap_or_default(),
        app_public_key: a.app_signature.as_ref().map(|s| s.public_key().to_vec()).unwrap_or_default(),
        argv: a.argv,
        env: super::env_to_proto(a.env),
        files: files::file_refs(a.files),
        checkpointing: a.checkpointing,
    }
}

/// Checks one report's shape and computes its output digest.
fn report_input(report: ResultReport) -> Result<ReportInput, Status> {
    if report.result_id <= 0 {
        return Err(invalid("result_id", "must be positive"));
    }
    let engine = text("engine", report.engine, MAX_TEXT)?;
    let output_files = files::reported_files("output_files", report.output_files)?;
    let report_kind = match ReportedOutcome::try_from(report.outcome) {
        Ok(ReportedOutcome::Success) => Report::Success {
            output_digest: file_rules::output_digest(
                &app::digest_of(&report.output),
                &output_files.iter().map(|reported| reported.file.clone()).collect::<Vec<_>>(),
            ),
            fuel_used: report.fuel_used,
            engine,
            resumed: report.resumed,
        },
        Ok(ReportedOutcome::ClientError) => {
            if !report.output.is_empty() || !output_files.is_empty() {
                return Err(invalid("output", "an error report carries no output and no output files"));
            }
            Report::ClientError {
                fuel_used: report.fuel_used,
                engine,
                resumed: report.resumed,
                given_back: report.given_back,
            }
        }
        Ok(ReportedOutcome::Unspecified) | Err(_) => {
            return Err(invalid("outcome", "must be SUCCESS or CLIENT_ERROR"));
        }
    };
    if report.fuel_used > i64::MAX as u64 || report.run_time_ms > i64::MAX as u64 {
        return Err(invalid("fuel_used/run_time_ms", "out of range"));
    }
    Ok(ReportInput {
        result_id: ResultId(report.result_id),
        report: report_kind,
        output: report.output,
        stderr_tail: text("stderr_tail", report.stderr_tail, MAX_STDERR_TAIL)?,
        run_time_ms: report.run_time_ms,
        error_message: text("error_message", report.error_message, 4 * MAX_TEXT)?,
        output_files,
    })
}
