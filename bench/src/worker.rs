//! The `worker` benchmark: how much of a machine's compute a volunteer gets
//! to the project through the platform.
//!
//! The work is the primes example (`examples/primes/primes.wat`, embedded at
//! build time and converted with the `wat` crate): the range
//! `--start..--end` split into work units of `--chunk` numbers, each input
//! `"START END\n"`, each output `"COUNT\n"`. It runs three ways, one after the
//! other, on `--cpus` cores:
//!
//! - **native**: a plain Rust prime count with the module's algorithm (trial
//!   division by 2 and the odd numbers up to the square root) over the same
//!   ranges, on a rayon pool of `--cpus` threads. Its counts are the
//!   reference every other output is checked against.
//! - **direct**: the module run once per input with
//!   [`quorum_sandbox::Sandbox::run`], with the limits the worker would apply
//!   to this project, on a rayon pool of `--cpus` threads (as the worker's
//!   pool): what the sandbox alone can do.
//! - **platform**: the real `quorum-server` (see [`Coordinator`]) and one real
//!   `quorum-worker` process (`--cpus N`, a fresh `--state-dir`), both found
//!   next to this executable. The clock starts before `CreateProject` (every
//!   work unit inline, min_quorum 1, target_results 1: one host), the worker
//!   is started once the project exists (so it finds work at its first
//!   `RequestWork` instead of sleeping the coordinator's 10 s "no work"
//!   delay), and one `WaitProject` call waits until no work unit is open
//!   (nothing polls the coordinator while the worker computes). The time therefore includes the worker's start,
//!   registration, app download and compilation. The canonical outputs are
//!   then read back (`GetCanonicalResults`) and checked.
//!
//! Throughput is work units per second of wall time; the ratios
//! platform/direct and direct/native come from the same run.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use quorum_proto::v1;
use quorum_sandbox::{Gate, Limits, Sandbox, Status, Task, TaskControl};
use rayon::prelude::*;
use serde::Serialize;
use tokio::process::{Child, Command};
use tonic::transport::Endpoint;

use crate::coordinator::{self, Coordinator};

/// The app: the primes example, as shipped.
pub const PRIMES_WAT: &str = include_str!("../../examples/primes/primes.wat");
/// The project submitted to the coordinator.
pub const PROJECT: &str = "bench-primes";
/// How long one `WaitProject` call may wait before it is made again.
pub const WAIT_TIMEOUT_MS: u64 = 10_000;
/// Work units per `GetCanonicalResults` page.
const RESULTS_PAGE: u32 = 1000;
/// How long the worker may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The limits of `examples/primes/project.toml`, sent with the project and
/// applied to the direct runs (the worker applies what the project says).
pub const LIMITS: v1::Limits = v1::Limits {
    fuel: 100_000_000_000,
    memory_bytes: 256 * 1024 * 1024,
    output_bytes: 1024 * 1024,
    wall_time_ms: 600_000,
    stderr_bytes: 0,
    input_files_bytes: 0,
    output_files_bytes: 0,
};

/// The options of one run.
#[derive(Debug, Clone)]
pub struct Options {
    pub start: u64,
    pub end: u64,
    pub chunk: u64,
    /// Threads of the native and direct pools; the worker's `--cpus`.
    pub cpus: usize,
    /// The platform part fails if the work units are not all done by then.
    pub timeout: Duration,
}

/// One work unit: its name (as `quorum submit` names range chunks), its range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub name: String,
    pub start: u64,
    pub end: u64,
}

impl Unit {
    /// The app's stdin for this unit.
    pub fn input(&self) -> Vec<u8> {
        format!("{} {}\n", self.start, self.end).into_bytes()
    }
}

/// `start..end` in chunks of `chunk` numbers, the last one shortened.
pub fn units(start: u64, end: u64, chunk: u64) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut next = start;
    while next < end {
        let stop = next.saturating_add(chunk).min(end);
        units.push(Unit { name: format!("{next}-{stop}"), start: next, end: stop });
        next = stop;
    }
    units
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerFigures {
    pub cpus: usize,
    pub start: u64,
    pub end: u64,
    pub chunk: u64,
    pub work_units: u64,
    /// Primes in `start..end` (the sum of the native counts).
    pub primes: u64,
    pub native_seconds: f64,
    pub native_units_per_sec: f64,
    pub direct_seconds: f64,
    pub direct_units_per_sec: f64,
    /// Fuel (WebAssembly instructions) of all the direct runs.
    pub direct_fuel: u64,
    pub platform_seconds: f64,
    pub platform_units_per_sec: f64,
    /// CPU seconds of the worker process over the whole platform run.
    pub worker_cpu_seconds: f64,
    /// CPU seconds of the coordinator from submission to the end.
    pub coordinator_cpu_seconds: f64,
    /// platform / direct throughput (target: at least 0.95).
    pub platform_over_direct: f64,
    /// direct / native throughput: the cost of WebAssembly in the sandbox.
    pub direct_over_native: f64,
    /// platform / native throughput.
    pub platform_over_native: f64,
}

impl WorkerFigures {
    /// The one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "worker: {} units on {} cpu(s): platform {:.2} units/s ({:.2} s), direct {:.2} units/s ({:.2} s), \
             native {:.2} units/s ({:.2} s); platform/direct {:.3}, direct/native {:.3}; \
             every output checked ({} primes)",
            self.work_units,
            self.cpus,
            self.platform_units_per_sec,
            self.platform_seconds,
            self.direct_units_per_sec,
            self.direct_seconds,
            self.native_units_per_sec,
            self.native_seconds,
            self.platform_over_direct,
            self.direct_over_native,
            self.primes,
        )
    }
}

/// Runs native, direct and platform in turn and checks every output.
pub async fn run(options: &Options) -> anyhow::Result<WorkerFigures> {
    anyhow::ensure!(options.chunk > 0, "--chunk must be at least 1");
    anyhow::ensure!(options.start < options.end, "--start must be below --end");
    anyhow::ensure!(options.cpus > 0, "--cpus must be at least 1");
    let units = Arc::new(units(options.start, options.end, options.chunk));
    let n = units.len() as u64;
    let module: Arc<[u8]> = wat::parse_str(PRIMES_WAT).context("cannot convert primes.wat")?.into();

    let (cpus, native_units) = (options.cpus, units.clone());
    let (native_seconds, counts) = tokio::task::spawn_blocking(move || native(&native_units, cpus)).await??;
    let expected: Vec<Vec<u8>> = counts.iter().map(|count| format!("{count}\n").into_bytes()).collect();
    tracing::info!(native_seconds, "native done");

    let (direct_units, direct_module) = (units.clone(), module.clone());
    let (direct_seconds, outputs, direct_fuel) =
        tokio::task::spawn_blocking(move || direct(&direct_units, direct_module, cpus)).await??;
    for ((unit, output), expected) in units.iter().zip(&outputs).zip(&expected) {
        anyhow::ensure!(
            output == expected,
            "direct run of {} printed {:?}, native counted {:?}",
            unit.name,
            String::from_utf8_lossy(output),
            String::from_utf8_lossy(expected)
        );
    }
    tracing::info!(direct_seconds, "direct done");

    let expected_by_name: HashMap<String, Vec<u8>> =
        units.iter().map(|unit| unit.name.clone()).zip(expected.iter().cloned()).collect();
    let platform = platform(&units, &module, &expected_by_name, options).await?;
    tracing::info!(platform_seconds = platform.seconds, "platform done");

    let rate = |seconds: f64| n as f64 / seconds;
    Ok(WorkerFigures {
        cpus: options.cpus,
        start: options.start,
        end: options.end,
        chunk: options.chunk,
        work_units: n,
        primes: counts.iter().sum(),
        native_seconds,
        native_units_per_sec: rate(native_seconds),
        direct_seconds,
        direct_units_per_sec: rate(direct_seconds),
        direct_fuel,
        platform_seconds: platform.seconds,
        platform_units_per_sec: rate(platform.seconds),
        worker_cpu_seconds: platform.worker_cpu_seconds,
        coordinator_cpu_seconds: platform.coordinator_cpu_seconds,
        platform_over_direct: direct_seconds / platform.seconds,
        direct_over_native: native_seconds / direct_seconds,
        platform_over_native: native_seconds / platform.seconds,
    })
}

fn pool(cpus: usize) -> anyhow::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new().num_threads(cpus).build().context("cannot start a rayon pool")
}

/// 1 if `n` is prime: primes.wat's `$is_prime`, in Rust.
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n & 1 == 0 {
        return false;
    }
    let mut d = 3;
    loop {
        // d > sqrt(n) exactly when n / d < d (no overflow, unlike d * d).
        let q = n / d;
        if q < d {
            return true;
        }
        if q * d == n {
            return false;
        }
        d += 2;
    }
}

/// The number of primes in `start..end`, as primes.wat counts them.
pub fn count_primes(start: u64, end: u64) -> u64 {
    (start..end).filter(|&n| is_prime(n)).count() as u64
}

/// (b): every unit counted natively on `cpus` threads; seconds and counts.
fn native(units: &[Unit], cpus: usize) -> anyhow::Result<(f64, Vec<u64>)> {
    let pool = pool(cpus)?;
    let started = Instant::now();
    let counts = pool.install(|| units.par_iter().map(|unit| count_primes(unit.start, unit.end)).collect());
    Ok((started.elapsed().as_secs_f64(), counts))
}

/// (a): every unit run through the sandbox on `cpus` threads; seconds, the
/// outputs in unit order, and the fuel used. The sandbox is created before the
/// clock starts; the module is compiled by the first task, as in the worker.
fn direct(units: &[Unit], module: Arc<[u8]>, cpus: usize) -> anyhow::Result<(f64, Vec<Vec<u8>>, u64)> {
    let sandbox = Sandbox::new().context("cannot create the sandbox")?;
    let pool = pool(cpus)?;
    let limits = Limits::with_defaults(
        LIMITS.fuel,
        LIMITS.memory_bytes,
        LIMITS.output_bytes,
        LIMITS.wall_time_ms,
        LIMITS.stderr_bytes,
    );
    let gate = Gate::new();
    let started = Instant::now();
    let outcomes: Vec<_> = pool.install(|| {
        units
            .par_iter()
            .map(|unit| {
                let task = Task {
                    app_digest: "primes.wat".to_owned(),
                    module: module.clone(),
                    input: unit.input(),
                    random_seed: 0,
                    limits,
                    nan_canonicalization: false,
                    checkpoint_dir: None,
                    input_dir: None,
                    output_dir: None,
                    args: Vec::new(),
                    env: Vec::new(),
                };
                sandbox.run(&task, TaskControl::new(gate.clone()))
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut outputs = Vec::with_capacity(outcomes.len());
    let mut fuel = 0;
    for (unit, outcome) in units.iter().zip(outcomes) {
        fuel += outcome.fuel_used;
        match outcome.status {
            Status::Success(output) => outputs.push(output),
            status => anyhow::bail!("direct run of {} failed: {status:?} {}", unit.name, outcome.stderr_tail),
        }
    }
    Ok((seconds, outputs, fuel))
}

/// What the platform run measured.
struct Platform {
    seconds: f64,
    worker_cpu_seconds: f64,
    coordinator_cpu_seconds: f64,
}

/// (c): a coordinator and one worker; checks every canonical output.
async fn platform(
    units: &[Unit],
    module: &[u8],
    expected: &HashMap<String, Vec<u8>>,
    options: &Options,
) -> anyhow::Result<Platform> {
    let worker_program = coordinator::sibling_binary("quorum-worker")?;
    let dir = tempfile::Builder::new()
        .prefix("quorum-bench-worker-")
        .tempdir()
        .context("cannot create a temporary folder")?;
    let mut coordinator = Coordinator::start().await?;
    let mut worker = None;
    let outcome =
        platform_run(&mut coordinator, &mut worker, &worker_program, dir.path(), units, module, expected, options)
            .await;
    let worker_log = dir.path().join("worker.log");
    if let Some(child) = worker {
        stop(child).await;
    }
    let outcome = match outcome {
        Ok(figures) => Ok(figures),
        Err(error) => {
            let running = coordinator.check_running();
            Err(error.context(format!(
                "coordinator: {running:?}; end of its log:\n{}\nend of the worker's log:\n{}",
                coordinator.log_tail(),
                coordinator::log_tail(&worker_log)
            )))
        }
    };
    coordinator.stop().await;
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn platform_run(
    coordinator: &mut Coordinator,
    worker: &mut Option<Child>,
    worker_program: &Path,
    dir: &Path,
    units: &[Unit],
    module: &[u8],
    expected: &HashMap<String, Vec<u8>>,
    options: &Options,
) -> anyhow::Result<Platform> {
    let endpoint = Endpoint::from_shared(coordinator.url.clone()).context("a valid coordinator URL")?;
    let channel = endpoint.connect().await.with_context(|| format!("cannot connect to {}", coordinator.url))?;
    let mut projects = coordinator.projects(channel);
    let request = v1::CreateProjectRequest {
        name: PROJECT.to_owned(),
        app_module: module.to_vec(),
        policy: Some(v1::ReplicationPolicy {
            min_quorum: 1,
            target_results: 1,
            max_error_results: 1,
            max_total_results: 2,
            deadline_secs: 3600,
            max_success_results: 0,
            adaptive_replication: false,
            priority: 0,
        }),
        limits: Some(LIMITS),
        validator: v1::ValidatorKind::Bitwise.into(),
        nan_canonicalization: false,
        work_units: units
            .iter()
            .map(|unit| v1::WorkUnitInput { name: unit.name.clone(), input: unit.input(), ..Default::default() })
            .collect(),
        fuzzy: None,
        validator_module: Vec::new(),
        // Unsigned: the benchmark measures the coordinator, not signing.
        ..Default::default()
    };
    let log = std::fs::File::create(dir.join("worker.log")).context("cannot create the worker's log")?;

    let coordinator_cpu_before = coordinator.cpu_seconds()?;
    let started = Instant::now();
    projects.create_project(request).await.context("CreateProject")?;
    let child = Command::new(worker_program)
        .arg("--server")
        .arg(&coordinator.url)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--cpus")
        .arg(options.cpus.to_string())
        .arg("--name")
        .arg("bench-worker")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", worker_program.display()))?;
    let worker_pid = child.id().context("quorum-worker exited at once")?;
    let child = worker.insert(child);
    // `WaitProject` answers once no work unit is open (or after its timeout,
    // and then it is asked again): nothing polls the coordinator while the
    // worker computes.
    let status = loop {
        let wait =
            projects.wait_project(v1::WaitProjectRequest { project: PROJECT.to_owned(), timeout_ms: WAIT_TIMEOUT_MS });
        let status = tokio::select! {
            reply = wait => reply.context("WaitProject")?.into_inner(),
            exit = child.wait() => anyhow::bail!("quorum-worker exited ({})", exit.context("cannot wait for quorum-worker")?),
        };
        let status = status.projects.into_iter().next().context("WaitProject returned no project")?;
        if status.work_units_open == 0 {
            break status;
        }
        coordinator.check_running()?;
        anyhow::ensure!(
            started.elapsed() < options.timeout,
            "{} of {} work units still open after {:?}",
            status.work_units_open,
            units.len(),
            options.timeout
        );
    };
    let seconds = started.elapsed().as_secs_f64();
    let coordinator_cpu_seconds = coordinator.cpu_seconds()? - coordinator_cpu_before;
    // The worker is still running: it is stopped after the outputs are checked.
    let worker_cpu_seconds = coordinator::cpu_seconds(&format!("/proc/{worker_pid}/stat")).unwrap_or(0.0);
    anyhow::ensure!(
        status.work_units_done == units.len() as u64 && status.work_units_failed == 0,
        "{} work units done, {} failed, of {}",
        status.work_units_done,
        status.work_units_failed,
        units.len()
    );

    let mut checked = 0;
    let mut after = 0;
    loop {
        let page = projects
            .get_canonical_results(v1::GetCanonicalResultsRequest {
                project: PROJECT.to_owned(),
                after_work_unit_id: after,
                limit: RESULTS_PAGE,
            })
            .await
            .context("GetCanonicalResults")?
            .into_inner()
            .results;
        let Some(last) = page.last() else { break };
        after = last.work_unit_id;
        for result in &page {
            let wanted = expected
                .get(&result.work_unit_name)
                .with_context(|| format!("unknown work unit {:?}", result.work_unit_name))?;
            anyhow::ensure!(
                &result.output == wanted,
                "the platform's output of {} is {:?}, native counted {:?}",
                result.work_unit_name,
                String::from_utf8_lossy(&result.output),
                String::from_utf8_lossy(wanted)
            );
            checked += 1;
        }
    }
    anyhow::ensure!(checked == units.len(), "{checked} canonical results for {} work units", units.len());
    Ok(Platform { seconds, worker_cpu_seconds, coordinator_cpu_seconds })
}

/// Sends SIGTERM to the worker and waits for it; kills after [`STOP_GRACE`].
async fn stop(mut child: Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id().and_then(|pid| libc::pid_t::try_from(pid).ok()) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // own child, which has not been reaped (try_wait above saw it running).
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
        tracing::warn!("quorum-worker did not stop after SIGTERM; killing it");
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_ranges_like_quorum_submit() {
        let units = units(0, 10_000_000, 50_000);
        assert_eq!(units.len(), 200);
        assert_eq!(units[0], Unit { name: "0-50000".into(), start: 0, end: 50_000 });
        assert_eq!(units[199].input(), b"9950000 10000000\n");
        assert_eq!(super::units(0, 7, 3).last().map(|unit| unit.end - unit.start), Some(1));
    }

    #[test]
    fn native_count_matches_known_values() {
        assert_eq!(count_primes(0, 100), 25);
        assert_eq!(count_primes(0, 1_000_000), 78_498);
        assert!(!is_prime(1) && is_prime(2) && is_prime(3) && !is_prime(9) && is_prime(97));
    }

    #[test]
    fn direct_agrees_with_native() {
        let module: Arc<[u8]> = wat::parse_str(PRIMES_WAT).expect("primes.wat converts").into();
        let units = units(0, 20_000, 5_000);
        let (_, outputs, fuel) = direct(&units, module, 2).expect("direct runs");
        let (_, counts) = native(&units, 2).expect("native runs");
        let expected: Vec<Vec<u8>> = counts.iter().map(|count| format!("{count}\n").into_bytes()).collect();
        assert_eq!(outputs, expected);
        assert!(fuel > 0);
    }
}
