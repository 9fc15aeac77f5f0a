//! The `lifecycle` benchmark: the whole life of work units through a real
//! coordinator, as fast as simulated hosts can drive it.
//!
//! 1. Submission: when `--backlog` is set, a project `bench-backlog` of that
//!    many work units at priority -1 is submitted first (so its copies are the
//!    oldest in the table and the dispatch query must look past them); then
//!    the measured project `bench` with `--work-units` work units at priority
//!    0. Both through `CreateProject` and `AddWorkUnits` batches of 10,000.
//!    With `--held-backlog`, a project `bench-held` of that many work units
//!    at priority 1 comes first, each with one copy per account (`--accounts`)
//!    plus one, and every copy but the last is marked as reported by a host
//!    of one of the accounts (written straight into the coordinator's SQLite
//!    file: the protocol would need those hosts' quotas to be a million): no
//!    simulated host may take the copy left, so every walk through the
//!    unsent copies meets a million it may not take first.
//! 2. `--hosts` hosts register, each with its own token, and share a few
//!    HTTP/2 channels. Each loops as a real worker does: `RequestWork(slots)`
//!    carrying a success for every copy it got the turn before (the input
//!    echoed as output, so every copy of a work unit agrees), and so on; with
//!    `--separate-reports`, the successes go in a `ReportResults` call of
//!    their own before it asks again. A host given nothing waits `retry_after_ms`, capped at
//!    [`MAX_IDLE_WAIT`] so the tail is not stretched by the idle back-off
//!    (with `--compute-ms`, capped at the compute time instead).
//! 3. One task polls `GetStatus` every [`SAMPLE_INTERVAL`] (faster once every
//!    copy is reported, to time the validation lag) until every measured work
//!    unit has ended or `--duration` elapses.
//!
//! Once the measured work is all handed out, idle hosts may get copies of the
//! backlog; they report them too (a real worker would), counted apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use quorum_proto::v1;
use quorum_proto::v1::scheduler_client::SchedulerClient;
use tonic::Request;
use tonic::transport::{Channel, Endpoint};

use crate::coordinator::{self, Coordinator};
use crate::figures::{self, Figures, Sample};

/// The measured project.
pub const PROJECT: &str = "bench";
/// The project holding the backlog.
pub const BACKLOG_PROJECT: &str = "bench-backlog";
/// The project holding the backlog the hosts may not take.
pub const HELD_PROJECT: &str = "bench-held";
/// Work units per `AddWorkUnits` call.
pub const SUBMIT_BATCH: usize = 10_000;
/// Longest wait of a host given no work (the coordinator says 10 s).
pub const MAX_IDLE_WAIT: Duration = Duration::from_millis(50);
/// Interval between two `GetStatus` samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
/// Interval between samples once every copy is reported (timing the lag),
/// and how often the sampler checks whether that has happened.
pub const FINAL_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);
/// How long a host waits after a failed call before trying again.
pub const ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Engine the simulated hosts claim; equal fuel on one engine is required to agree.
const ENGINE: &str = "wasmtime 48.0.8";
/// Fuel every simulated copy reports.
const FUEL_USED: u64 = 1_000_000;
/// Deadline of every copy: long enough that no copy of a run misses it.
const DEADLINE_SECS: u64 = 3600;

/// The options of one run.
#[derive(Debug, Clone)]
pub struct Options {
    pub hosts: u32,
    /// Copies asked for per `RequestWork`.
    pub slots: u32,
    pub quorum: u32,
    pub work_units: u64,
    pub backlog: u64,
    /// Work units ahead of the measured ones that no host may take a copy of.
    pub held_backlog: u64,
    /// Volunteer accounts the hosts register in, in turn (0: none).
    pub accounts: u32,
    /// The run stops when this elapses, even with work units open.
    pub duration: Duration,
    /// HTTP/2 connections shared by the hosts.
    pub channels: u32,
    /// Report in `ReportResults` calls of their own instead of in the next
    /// `RequestWork` (the older worker's protocol).
    pub separate_reports: bool,
    /// How long a host "computes" the copies it got before reporting them.
    /// Zero makes every host ask again at once: the coordinator is saturated
    /// and a call's latency is the queue in front of it (hosts / calls per
    /// second); a compute time offers a fixed load below saturation, where
    /// latency is the coordinator's own. Each turn takes between 0.5 and 1.5
    /// times it (hosts and work units differ), and each host starts after a
    /// random delay of up to it, so that hosts do not call in step.
    pub compute_time: Duration,
    /// Run the coordinator on this PostgreSQL database (an empty one)
    /// instead of a new SQLite file.
    pub postgres: Option<String>,
    /// Coordinators over the PostgreSQL database (the hosts' connections
    /// spread over them); 1 on SQLite.
    pub coordinators: u32,
}

/// Counters shared by the hosts and the sampling task.
#[derive(Default)]
struct Counters {
    dispatched: AtomicU64,
    reported: AtomicU64,
    backlog_reported: AtomicU64,
    /// Failed RequestWork and ReportResults calls (each retried after
    /// [`ERROR_BACKOFF`]) and GetStatus calls (retried at the next sample).
    rpc_errors: AtomicU64,
    /// Nanoseconds from the start of the run to the latest `ReportResults`
    /// reply that carried a copy of the measured project.
    last_report_ns: AtomicU64,
    stop: AtomicBool,
}

/// What one host measured.
#[derive(Default)]
struct HostLatencies {
    request_work: Vec<Duration>,
    report_results: Vec<Duration>,
}

/// Starts a coordinator, runs the benchmark against it and stops it.
pub async fn run(options: &Options) -> anyhow::Result<Figures> {
    anyhow::ensure!(options.hosts >= options.quorum, "a quorum of {} needs at least as many hosts", options.quorum);
    anyhow::ensure!(options.work_units > 0, "--work-units must be at least 1");
    anyhow::ensure!(options.slots > 0 && options.channels > 0, "--slots and --channels must be at least 1");
    anyhow::ensure!(
        options.accounts == 0 || options.accounts >= options.quorum,
        "a quorum of {} needs at least as many accounts",
        options.quorum
    );
    anyhow::ensure!(options.held_backlog == 0 || options.accounts > 0, "--held-backlog needs --accounts");
    anyhow::ensure!(
        options.held_backlog == 0 || options.postgres.is_none(),
        "--held-backlog writes into the SQLite file: not with --postgres"
    );
    anyhow::ensure!(options.coordinators >= 1, "--coordinators must be at least 1");
    anyhow::ensure!(
        options.coordinators == 1 || options.postgres.is_some(),
        "several --coordinators share a PostgreSQL database: give --postgres"
    );
    let mut coordinators = vec![Coordinator::start_on(options.postgres.as_deref(), &[]).await?];
    for _ in 1..options.coordinators {
        let url = options.postgres.as_deref().unwrap_or_default();
        let peer = Coordinator::start_peer(url, &coordinators[0], &[]).await?;
        coordinators.push(peer);
    }
    for coordinator in &coordinators {
        tracing::info!(url = %coordinator.url, "coordinator started");
    }
    let outcome = measure(&mut coordinators, options).await;
    let outcome = match outcome {
        Ok(figures) => Ok(figures),
        Err(error) => {
            let mut said = String::new();
            for coordinator in &mut coordinators {
                let running = coordinator.check_running();
                said += &format!(
                    "coordinator {}: {running:?}; end of its log:\n{}\n",
                    coordinator.url,
                    coordinator.log_tail()
                );
            }
            Err(error.context(said))
        }
    };
    for coordinator in coordinators {
        coordinator.stop().await;
    }
    outcome
}

/// The CPU seconds every coordinator used so far, together.
fn cpu_seconds(coordinators: &[Coordinator]) -> anyhow::Result<f64> {
    coordinators.iter().map(Coordinator::cpu_seconds).sum()
}

async fn measure(coordinators: &mut [Coordinator], options: &Options) -> anyhow::Result<Figures> {
    let mut channels = Vec::new();
    for number in 0..options.channels.max(coordinators.len() as u32) as usize {
        // Connection i goes to coordinator i (modulo how many there are).
        let url = &coordinators[number % coordinators.len()].url;
        let endpoint = Endpoint::from_shared(url.clone()).context("a valid coordinator URL")?;
        channels.push(endpoint.connect().await.with_context(|| format!("cannot connect to {url}"))?);
    }
    let mut projects = coordinators[0].projects(channels[0].clone());

    // 1. Submission.
    let cpu_before_submit = cpu_seconds(coordinators)?;
    let submit_started = Instant::now();
    if options.backlog > 0 {
        submit(&mut projects, BACKLOG_PROJECT, options.backlog, options.quorum, -1).await?;
    }
    if options.held_backlog > 0 {
        // One copy per account, plus the one no host may take.
        submit(&mut projects, HELD_PROJECT, options.held_backlog, options.accounts + 1, 1).await?;
    }
    submit(&mut projects, PROJECT, options.work_units, options.quorum, 0).await?;
    let submit_seconds = submit_started.elapsed().as_secs_f64();
    let coordinator_submit_cpu_seconds = cpu_seconds(coordinators)? - cpu_before_submit;
    let work_units_submitted = options.work_units + options.backlog + options.held_backlog;
    if options.held_backlog > 0 {
        let mut client = SchedulerClient::new(channels[0].clone());
        let mut holders = Vec::new();
        for number in 0..options.accounts {
            let holder = client
                .register_host(register_request(format!("bench-holder-{number}"), number, options))
                .await
                .context("RegisterHost")?
                .into_inner();
            holders.push(holder.host_id);
        }
        hold(&coordinators[0].db_path(), HELD_PROJECT, &holders).await?;
        tracing::info!(work_units = options.held_backlog, "held by a host of every account");
    }
    tracing::info!(work_units_submitted, submit_seconds, "submitted");

    // 2. Hosts.
    let mut tokens = Vec::with_capacity(options.hosts as usize);
    for number in 0..options.hosts {
        let mut client = SchedulerClient::new(channels[number as usize % channels.len()].clone());
        let registered = client
            .register_host(register_request(format!("bench-host-{number}"), number, options))
            .await
            .context("RegisterHost")?
            .into_inner();
        tokens.push(registered.token);
    }
    tracing::info!(hosts = options.hosts, "hosts registered");

    let counters = Arc::new(Counters::default());
    // PostgreSQL's own CPU, when the server is on this machine.
    let postgres_server = match &options.postgres {
        Some(url) => coordinator::local_postgres_server(url).await,
        None => None,
    };
    let postgres_cpu_before = postgres_server.map(coordinator::postgres_server_cpu_seconds).transpose()?;
    let cpu_before_run = cpu_seconds(coordinators)?;
    let bench_cpu_before = coordinator::cpu_seconds("/proc/self/stat")?;
    let started = Instant::now();
    let mut host_tasks = tokio::task::JoinSet::new();
    for (number, token) in tokens.into_iter().enumerate() {
        let client = SchedulerClient::new(channels[number % channels.len()].clone());
        let host_options = HostOptions {
            slots: options.slots,
            separate_reports: options.separate_reports,
            compute_time: options.compute_time,
        };
        host_tasks.spawn(host(client, token, host_options, counters.clone(), started));
    }

    // 3. Sampling until every measured work unit has ended.
    let expected_copies = options.work_units * u64::from(options.quorum);
    let mut samples = Vec::new();
    let mut status;
    let mut last_status: Option<v1::ProjectStatus> = None;
    loop {
        status = match project_status(&mut projects).await {
            Ok(status) => status,
            Err(error) => {
                // A busy coordinator may fail the call: count it and sample
                // again, or end on the last good sample once time is up.
                counters.rpc_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("GetStatus failed: {error:#}");
                match (&last_status, started.elapsed() >= options.duration) {
                    (Some(last), true) => {
                        status = last.clone();
                        break;
                    }
                    (None, true) => return Err(error),
                    (_, false) => {
                        tokio::time::sleep(SAMPLE_INTERVAL).await;
                        continue;
                    }
                }
            }
        };
        last_status = Some(status.clone());
        samples.push(Sample {
            seconds: started.elapsed().as_secs_f64(),
            validated: status.results_valid,
            dispatched: counters.dispatched.load(Ordering::Relaxed),
            reported: counters.reported.load(Ordering::Relaxed),
        });
        if status.work_units_open == 0 || started.elapsed() >= options.duration {
            break;
        }
        if let Some(joined) = host_tasks.try_join_next() {
            // A host stops early only on an error.
            counters.stop.store(true, Ordering::Relaxed);
            joined.context("a host task panicked")??;
            anyhow::bail!("a simulated host stopped early");
        }
        for coordinator in coordinators.iter_mut() {
            coordinator.check_running()?;
        }
        // Sleep until the next sample is due, but sample at once (and then
        // every FINAL_SAMPLE_INTERVAL) when the last copy has been reported.
        let next_sample = Instant::now() + SAMPLE_INTERVAL;
        loop {
            tokio::time::sleep(FINAL_SAMPLE_INTERVAL).await;
            let all_reported = counters.reported.load(Ordering::Relaxed) >= expected_copies;
            if all_reported || Instant::now() >= next_sample {
                break;
            }
        }
    }
    let ended_at = started.elapsed();
    counters.stop.store(true, Ordering::Relaxed);
    let mut request_work = Vec::new();
    let mut report_results = Vec::new();
    while let Some(joined) = host_tasks.join_next().await {
        let latencies = joined.context("a host task panicked")??;
        request_work.extend(latencies.request_work);
        report_results.extend(latencies.report_results);
    }
    let coordinator_cpu_seconds = cpu_seconds(coordinators)? - cpu_before_run;
    let postgres_cpu_seconds = match (postgres_server, postgres_cpu_before) {
        (Some(server), Some(before)) => Some(coordinator::postgres_server_cpu_seconds(server)? - before),
        _ => None,
    };
    let bench_cpu_seconds = coordinator::cpu_seconds("/proc/self/stat")? - bench_cpu_before;
    let mut peak_rss = 0;
    for coordinator in coordinators.iter() {
        peak_rss = peak_rss.max(coordinator.peak_rss_bytes()?);
    }
    let completed = status.work_units_open == 0;
    if counters.rpc_errors.load(Ordering::Relaxed) > 0 {
        for coordinator in coordinators.iter() {
            tracing::warn!("calls failed; coordinator {}'s log says:\n{}", coordinator.url, coordinator.log_tail());
        }
    }

    request_work.sort_unstable();
    report_results.sort_unstable();
    let run_seconds = ended_at.as_secs_f64();
    let results_validated = status.results_valid;
    let results_reported = counters.reported.load(Ordering::Relaxed);
    let backlog_results_reported = counters.backlog_reported.load(Ordering::Relaxed);
    let overall_validated_per_sec = results_validated as f64 / run_seconds;
    let (steady_dispatched_per_sec, steady_reported_per_sec, steady_validated_per_sec, steady_seconds) =
        figures::steady_rates(&samples, results_validated).unwrap_or((
            counters.dispatched.load(Ordering::Relaxed) as f64 / run_seconds,
            results_reported as f64 / run_seconds,
            overall_validated_per_sec,
            0.0,
        ));
    let last_report = Duration::from_nanos(counters.last_report_ns.load(Ordering::Relaxed));
    let all_results = (results_reported + backlog_results_reported).max(1);
    Ok(Figures {
        hosts: options.hosts,
        slots: options.slots,
        quorum: options.quorum,
        work_units: options.work_units,
        backlog: options.backlog,
        held_backlog: options.held_backlog,
        channels: options.channels,
        coordinators: options.coordinators,
        work_units_submitted,
        submit_seconds,
        work_units_submitted_per_sec: work_units_submitted as f64 / submit_seconds,
        completed,
        run_seconds,
        work_units_done: status.work_units_done,
        work_units_failed: status.work_units_failed,
        results_dispatched: counters.dispatched.load(Ordering::Relaxed),
        results_reported,
        results_validated,
        backlog_results_reported,
        steady_dispatched_per_sec,
        steady_reported_per_sec,
        steady_validated_per_sec,
        steady_seconds,
        overall_validated_per_sec,
        validation_lag_ms: if completed { figures::ms(ended_at.saturating_sub(last_report)) } else { 0.0 },
        request_work_calls: request_work.len() as u64,
        request_work_p50_ms: figures::ms(figures::percentile(&request_work, 50.0)),
        request_work_p99_ms: figures::ms(figures::percentile(&request_work, 99.0)),
        request_work_max_ms: figures::ms(request_work.last().copied().unwrap_or_default()),
        report_results_calls: report_results.len() as u64,
        report_results_p50_ms: figures::ms(figures::percentile(&report_results, 50.0)),
        report_results_p99_ms: figures::ms(figures::percentile(&report_results, 99.0)),
        coordinator_cpu_seconds,
        coordinator_cpu_seconds_per_1000_results: coordinator_cpu_seconds * 1000.0 / all_results as f64,
        coordinator_submit_cpu_seconds,
        postgres_cpu_seconds,
        postgres_cpu_seconds_per_1000_results: postgres_cpu_seconds.map(|cpu| cpu * 1000.0 / all_results as f64),
        coordinator_peak_rss_mb: peak_rss as f64 / (1024.0 * 1024.0),
        bench_cpu_seconds,
        rpc_errors: counters.rpc_errors.load(Ordering::Relaxed),
    })
}

/// The registration of simulated host `number`, in its account.
fn register_request(name: String, number: u32, options: &Options) -> v1::RegisterHostRequest {
    v1::RegisterHostRequest {
        name,
        n_cpus: options.slots,
        memory_bytes: 1 << 30,
        engine: ENGINE.to_owned(),
        os: "linux x86_64".to_owned(),
        account: if options.accounts == 0 { String::new() } else { format!("bench-{}", number % options.accounts) },
    }
}

/// Marks the first copies of every work unit of `project` as reported (a
/// success waiting for more copies), the k-th by host `holders[k]`, in one
/// statement on the coordinator's SQLite file, while the coordinator runs
/// (SQLite serialises the writers; the coordinator keeps no copy of these rows).
async fn hold(db: &std::path::Path, project: &str, holders: &[i64]) -> anyhow::Result<()> {
    use sqlx::ConnectOptions as _;
    let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("cannot open {}", db.display()))?;
    let mut query = sqlx::QueryBuilder::new("WITH holders(k, host_id) AS (");
    query.push_values(holders.iter().enumerate(), |mut row, (k, host)| {
        row.push_bind(k as i64).push_bind(*host);
    });
    query.push(
        "), copies AS (SELECT r.id, ROW_NUMBER() OVER (PARTITION BY r.work_unit_id ORDER BY r.id) - 1 AS k \
         FROM results r JOIN projects p ON p.id = r.project_id WHERE p.name = ",
    );
    query.push_bind(project);
    query.push(
        ") UPDATE results SET server_state = 'over', outcome = 'success', host_id = h.host_id, \
         sent_at = created_at, received_at = created_at, output_digest = 'held', fuel_used = 1 \
         FROM copies c JOIN holders h ON h.k = c.k WHERE results.id = c.id",
    );
    let held = query.build().execute(&mut connection).await.context("marking the held copies")?.rows_affected();
    anyhow::ensure!(held > 0, "no copy of {project} to hold");
    Ok(())
}

/// The replication policy of both projects: `quorum` copies, all must agree
/// (they do), a deadline no copy of a run reaches.
fn policy(quorum: u32, priority: i32) -> v1::ReplicationPolicy {
    v1::ReplicationPolicy {
        min_quorum: quorum,
        target_results: quorum,
        max_error_results: quorum,
        max_total_results: 2 * quorum + 2,
        deadline_secs: DEADLINE_SECS,
        max_success_results: 0,
        adaptive_replication: false,
        priority,
    }
}

/// Creates project `name` and adds `n` work units in batches of [`SUBMIT_BATCH`].
async fn submit(
    projects: &mut coordinator::ProjectsApi,
    name: &str,
    n: u64,
    quorum: u32,
    priority: i32,
) -> anyhow::Result<()> {
    projects
        .create_project(v1::CreateProjectRequest {
            name: name.to_owned(),
            app_module: crate::NOOP_APP.to_vec(),
            policy: Some(policy(quorum, priority)),
            limits: None,
            validator: v1::ValidatorKind::Bitwise.into(),
            nan_canonicalization: false,
            work_units: Vec::new(),
            fuzzy: None,
            validator_module: Vec::new(),
            // Unsigned: the benchmark measures the coordinator, not signing.
            ..Default::default()
        })
        .await
        .with_context(|| format!("CreateProject {name}"))?;
    let mut next = 0_u64;
    while next < n {
        let end = (next + SUBMIT_BATCH as u64).min(n);
        let work_units = (next..end)
            .map(|i| v1::WorkUnitInput {
                name: String::new(),
                input: format!("{i}\n").into_bytes(),
                ..Default::default()
            })
            .collect();
        let request = v1::AddWorkUnitsRequest { project: name.to_owned(), work_units, policy: None };
        projects.add_work_units(request).await.with_context(|| format!("AddWorkUnits {name}"))?;
        next = end;
    }
    Ok(())
}

async fn project_status(projects: &mut coordinator::ProjectsApi) -> anyhow::Result<v1::ProjectStatus> {
    let response = projects
        .get_status(v1::GetStatusRequest { project: PROJECT.to_owned() })
        .await
        .context("GetStatus")?
        .into_inner();
    response.projects.into_iter().next().context("GetStatus returned no project")
}

/// Counts a failed call; the first few are logged (stderr).
fn note_error(counters: &Counters, call: &str, status: &tonic::Status) {
    let n = counters.rpc_errors.fetch_add(1, Ordering::Relaxed);
    if n < 5 {
        tracing::warn!(call, code = ?status.code(), message = status.message(), "call failed; retrying");
    }
}

/// Wraps `message` with the host's `authorization: Bearer TOKEN`.
fn with_token<T>(message: T, token: &str) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(quorum_proto::AUTHORIZATION, format!("Bearer {token}").parse()?);
    Ok(request)
}

/// One simulated host: asks for work, reports every copy, asks again, until
/// told to stop. With `separate_reports` the reports go in their own
/// `ReportResults` call; otherwise they ride on the next `RequestWork`, as
/// the worker does (one round trip per turn).
async fn host(
    mut client: SchedulerClient<Channel>,
    token: String,
    options: HostOptions,
    counters: Arc<Counters>,
    started: Instant,
) -> anyhow::Result<HostLatencies> {
    let mut latencies = HostLatencies::default();
    // Finished copies not yet accepted, and how many of them are measured.
    let mut pending: Vec<v1::ResultReport> = Vec::new();
    let mut pending_measured = 0_u64;
    if !options.compute_time.is_zero() {
        // Volunteers do not start together.
        tokio::time::sleep(options.compute_time.mul_f64(rand::random_range(0.0..1.0))).await;
    }
    while !counters.stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        // Like the real worker, the host lists every result it holds: only
        // finished ones whose reports ride on this request.
        let request = v1::RequestWorkRequest {
            slots: options.slots,
            held: pending.iter().map(|report| report.result_id).collect(),
            held_is_complete: true,
            reports: pending.clone(),
            cached_files: Vec::new(),
            peer_address: Vec::new(),
        };
        let response = match client.request_work(with_token(request, &token)?).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                // A real worker backs off and asks again; the error is counted.
                note_error(&counters, "RequestWork", &status);
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        latencies.request_work.push(sent.elapsed());
        if !pending.is_empty() {
            let accepted = response.accepted.len();
            anyhow::ensure!(accepted == pending.len(), "{accepted} of {} reports accepted", pending.len());
            note_reported(&counters, started, pending_measured, pending.len() as u64 - pending_measured);
            pending.clear();
            pending_measured = 0;
        }
        if response.assignments.is_empty() {
            // The coordinator says when to ask again (10 s); a saturating run
            // asks again soon so that its tail is not stretched, and a host
            // that computes asks again after a turn, as a worker whose buffer
            // ran dry would.
            let cap = if options.compute_time.is_zero() { MAX_IDLE_WAIT } else { options.compute_time };
            tokio::time::sleep(Duration::from_millis(response.retry_after_ms).min(cap)).await;
            continue;
        }
        let measured = response.assignments.iter().filter(|a| a.project == PROJECT).count() as u64;
        let backlog = response.assignments.len() as u64 - measured;
        counters.dispatched.fetch_add(measured, Ordering::Relaxed);
        if !options.compute_time.is_zero() {
            // Hosts differ in speed, and work units in size.
            tokio::time::sleep(options.compute_time.mul_f64(rand::random_range(0.5..1.5))).await;
        }
        // A real worker computes here; the output is the input echoed, the
        // same for every copy of a work unit, so the copies agree.
        let reports: Vec<v1::ResultReport> = response
            .assignments
            .into_iter()
            .map(|assignment| v1::ResultReport {
                result_id: assignment.result_id,
                outcome: v1::ReportedOutcome::Success.into(),
                output: assignment.input,
                stderr_tail: String::new(),
                fuel_used: FUEL_USED,
                run_time_ms: 1,
                error_message: String::new(),
                engine: ENGINE.to_owned(),
                resumed: false,
                given_back: false,
                output_files: Vec::new(),
            })
            .collect();
        if !options.separate_reports {
            pending = reports;
            pending_measured = measured;
            continue;
        }
        // A real worker keeps its reports until they are accepted.
        let reply = loop {
            let sent = Instant::now();
            let request = with_token(v1::ReportResultsRequest { reports: reports.clone() }, &token)?;
            match client.report_results(request).await {
                Ok(reply) => {
                    latencies.report_results.push(sent.elapsed());
                    break reply;
                }
                Err(status) => {
                    note_error(&counters, "ReportResults", &status);
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            }
        };
        let accepted = reply.into_inner().accepted.len() as u64;
        anyhow::ensure!(accepted == measured + backlog, "{accepted} of {} reports accepted", measured + backlog);
        note_reported(&counters, started, measured, backlog);
    }
    Ok(latencies)
}

/// What a host does not change during a run.
#[derive(Debug, Clone, Copy)]
struct HostOptions {
    slots: u32,
    separate_reports: bool,
    compute_time: Duration,
}

/// Counts accepted reports; the time of the last one of the measured project
/// is where the validation lag starts.
fn note_reported(counters: &Counters, started: Instant, measured: u64, backlog: u64) {
    counters.reported.fetch_add(measured, Ordering::Relaxed);
    counters.backlog_reported.fetch_add(backlog, Ordering::Relaxed);
    if measured > 0 {
        let now = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        counters.last_report_ns.fetch_max(now, Ordering::Relaxed);
    }
}
