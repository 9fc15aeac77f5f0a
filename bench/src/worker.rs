//! The `worker` benchmark: how much of a machine's compute a volunteer gets
//! to the project through the platform.
//!
//! Each app of [`crate::apps`] (primes and the C kernels; `--app`, or all of
//! them in turn) runs three ways, one after the other, on `--cpus` cores:
//!
//! - **native**: the same computation compiled natively (Rust for primes, gcc
//!   -O2 for the kernels) over the same inputs, on a rayon pool of `--cpus`
//!   threads. Its outputs are the reference every other output is checked
//!   against.
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
//! platform/direct, direct/native and platform/native come from the same
//! run, and their geometric means over the apps run.

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

use crate::apps::{App, KernelUnits, Unit, prime_units};
use crate::coordinator::{self, Coordinator};

/// How one `WaitProject` call may wait before it is made again.
pub const WAIT_TIMEOUT_MS: u64 = 10_000;
/// Work units per `GetCanonicalResults` page.
const RESULTS_PAGE: u32 = 1000;
/// How long the worker may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The limits of `examples/primes/project.toml`, sent with each project and
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
    /// The apps to run, in turn.
    pub apps: Vec<App>,
    /// The range primes counts, in units of `chunk` numbers.
    pub start: u64,
    pub end: u64,
    pub chunk: u64,
    /// The units of each kernel app.
    pub kernel_units: KernelUnits,
    /// Threads of the native and direct pools; the worker's `--cpus`.
    pub cpus: usize,
    /// The platform part of an app fails if its work units are not all done by then.
    pub timeout: Duration,
}

/// Everything one app's run measured.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerFigures {
    pub app: App,
    pub cpus: usize,
    pub work_units: u64,
    /// Outputs checked against the native ones (direct and platform each).
    pub outputs_checked: u64,
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
    /// platform / native throughput (target: at least 0.90).
    pub platform_over_native: f64,
}

/// Every app's figures, and the geometric means of their ratios.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerSuite {
    pub cpus: usize,
    pub apps: Vec<WorkerFigures>,
    pub geomean_platform_over_native: f64,
    pub geomean_direct_over_native: f64,
    pub geomean_platform_over_direct: f64,
}

impl WorkerFigures {
    /// The one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "worker {}: {} units on {} cpu(s): platform {:.2} units/s ({:.2} s), direct {:.2} units/s ({:.2} s), \
             native {:.2} units/s ({:.2} s); platform/native {:.3}, direct/native {:.3}, platform/direct {:.3}; \
             every output checked",
            self.app,
            self.work_units,
            self.cpus,
            self.platform_units_per_sec,
            self.platform_seconds,
            self.direct_units_per_sec,
            self.direct_seconds,
            self.native_units_per_sec,
            self.native_seconds,
            self.platform_over_native,
            self.direct_over_native,
            self.platform_over_direct,
        )
    }
}

impl WorkerSuite {
    /// One line per app, then the geometric means.
    pub fn summary(&self) -> String {
        let mut lines: Vec<String> = self.apps.iter().map(WorkerFigures::summary).collect();
        lines.push(format!(
            "worker: geometric means over {} app(s) on {} cpu(s): platform/native {:.3}, direct/native {:.3}, \
             platform/direct {:.3}",
            self.apps.len(),
            self.cpus,
            self.geomean_platform_over_native,
            self.geomean_direct_over_native,
            self.geomean_platform_over_direct,
        ));
        lines.join("\n")
    }
}

/// The geometric mean of `values` (1 for none).
pub fn geometric_mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values.into_iter().fold((0.0, 0u32), |(sum, n), value| (sum + value.ln(), n + 1));
    if n == 0 { 1.0 } else { (sum / f64::from(n)).exp() }
}

/// Runs every app of `options` in turn.
pub async fn run(options: &Options) -> anyhow::Result<WorkerSuite> {
    anyhow::ensure!(options.cpus > 0, "--cpus must be at least 1");
    anyhow::ensure!(!options.apps.is_empty(), "no app to run");
    let mut apps = Vec::with_capacity(options.apps.len());
    for &app in &options.apps {
        let figures = run_app(app, options).await.with_context(|| format!("app {app}"))?;
        tracing::info!(summary = figures.summary(), "app done");
        apps.push(figures);
    }
    Ok(WorkerSuite {
        cpus: options.cpus,
        geomean_platform_over_native: geometric_mean(apps.iter().map(|f| f.platform_over_native)),
        geomean_direct_over_native: geometric_mean(apps.iter().map(|f| f.direct_over_native)),
        geomean_platform_over_direct: geometric_mean(apps.iter().map(|f| f.platform_over_direct)),
        apps,
    })
}

/// Runs native, direct and platform in turn for `app` and checks every output.
async fn run_app(app: App, options: &Options) -> anyhow::Result<WorkerFigures> {
    let units = match app {
        App::Primes => {
            anyhow::ensure!(options.chunk > 0, "--chunk must be at least 1");
            anyhow::ensure!(options.start < options.end, "--start must be below --end");
            prime_units(options.start, options.end, options.chunk)
        }
        _ => {
            anyhow::ensure!(options.kernel_units.count > 0, "--units must be at least 1");
            anyhow::ensure!(options.kernel_units.work > 0.0, "--unit-work must be above 0");
            app.kernel_units(options.kernel_units)
        }
    };
    let units = Arc::new(units);
    let n = units.len() as u64;
    let module: Arc<[u8]> = app.module()?.into();
    let cpus = options.cpus;

    let native_units = units.clone();
    let (native_seconds, expected) = tokio::task::spawn_blocking(move || native(app, &native_units, cpus)).await??;
    tracing::info!(%app, native_seconds, "native done");

    let (direct_units, direct_module) = (units.clone(), module.clone());
    let (direct_seconds, outputs, direct_fuel) =
        tokio::task::spawn_blocking(move || direct(app, &direct_units, direct_module, cpus)).await??;
    for ((unit, output), expected) in units.iter().zip(&outputs).zip(&expected) {
        anyhow::ensure!(
            output == expected,
            "direct run of {} printed {:?}, native {:?}",
            unit.name,
            String::from_utf8_lossy(output),
            String::from_utf8_lossy(expected)
        );
    }
    tracing::info!(%app, direct_seconds, "direct done");

    let expected_by_name: HashMap<String, Vec<u8>> =
        units.iter().map(|unit| unit.name.clone()).zip(expected.iter().cloned()).collect();
    let platform = platform(app, &units, &module, &expected_by_name, options).await?;
    tracing::info!(%app, platform_seconds = platform.seconds, "platform done");

    let rate = |seconds: f64| n as f64 / seconds;
    Ok(WorkerFigures {
        app,
        cpus: options.cpus,
        work_units: n,
        outputs_checked: n,
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

/// Every unit computed natively on `cpus` threads; seconds and outputs.
fn native(app: App, units: &[Unit], cpus: usize) -> anyhow::Result<(f64, Vec<Vec<u8>>)> {
    let pool = pool(cpus)?;
    let started = Instant::now();
    let outputs: anyhow::Result<Vec<Vec<u8>>> =
        pool.install(|| units.par_iter().map(|unit| app.native(&unit.input)).collect());
    Ok((started.elapsed().as_secs_f64(), outputs?))
}

/// Every unit run through the sandbox on `cpus` threads; seconds, the
/// outputs in unit order, and the fuel used. The sandbox is created before the
/// clock starts; the module is compiled by the first task, as in the worker.
fn direct(app: App, units: &[Unit], module: Arc<[u8]>, cpus: usize) -> anyhow::Result<(f64, Vec<Vec<u8>>, u64)> {
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
                    app_digest: app.name().to_owned(),
                    module: module.clone(),
                    input: unit.input.clone(),
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
    app: App,
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
        platform_run(app, &mut coordinator, &mut worker, &worker_program, dir.path(), units, module, expected, options)
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
    app: App,
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
    let project = format!("bench-{app}");
    let request = v1::CreateProjectRequest {
        name: project.clone(),
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
            .map(|unit| v1::WorkUnitInput { name: unit.name.clone(), input: unit.input.clone(), ..Default::default() })
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
            projects.wait_project(v1::WaitProjectRequest { project: project.clone(), timeout_ms: WAIT_TIMEOUT_MS });
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
                project: project.clone(),
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
                "the platform's output of {} is {:?}, native {:?}",
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
    fn direct_agrees_with_native() {
        let module: Arc<[u8]> = App::Primes.module().expect("primes.wat converts").into();
        let units = prime_units(0, 20_000, 5_000);
        let (_, outputs, fuel) = direct(App::Primes, &units, module, 2).expect("direct runs");
        let (_, expected) = native(App::Primes, &units, 2).expect("native runs");
        assert_eq!(outputs, expected);
        assert!(fuel > 0);
    }

    #[test]
    fn every_kernel_agrees_with_its_native_build() {
        for app in App::ALL.into_iter().filter(|&app| app != App::Primes) {
            let units = app.kernel_units(KernelUnits { count: 2, work: 0.001 });
            let module: Arc<[u8]> = app.module().unwrap().into();
            let (_, outputs, _) = direct(app, &units, module, 2).expect("direct runs");
            let (_, expected) = native(app, &units, 2).expect("native runs");
            assert_eq!(outputs, expected, "{app}");
        }
    }

    #[test]
    fn geometric_mean_of_ratios() {
        assert!((geometric_mean([0.5, 2.0]) - 1.0).abs() < 1e-12);
        assert!((geometric_mean([0.9, 0.9, 0.9]) - 0.9).abs() < 1e-12);
        assert_eq!(geometric_mean([]), 1.0);
    }
}
