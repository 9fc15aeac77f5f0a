//! A smoke run of the load generator, so it never rots: `quorum-bench
//! lifecycle` with 4 hosts and 200 work units prints every figure of its JSON
//! form, and every work unit is validated. No speed is asserted: CI machines
//! are shared and noisy; the figures are recorded in BENCHMARKS.md.

use std::process::Stdio;

use quorum_tests::{STEP_TIMEOUT, binaries};
use serde::Deserialize;

/// `quorum-bench lifecycle --json`: every field, so that a renamed or
/// missing one fails the test by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "the fields are checked by deserialization; a few are asserted on")]
struct Figures {
    hosts: u32,
    slots: u32,
    quorum: u32,
    work_units: u64,
    backlog: u64,
    held_backlog: u64,
    channels: u32,
    coordinators: u32,
    work_units_submitted: u64,
    submit_seconds: f64,
    work_units_submitted_per_sec: f64,
    completed: bool,
    run_seconds: f64,
    work_units_done: u64,
    work_units_failed: u64,
    results_dispatched: u64,
    results_reported: u64,
    results_validated: u64,
    backlog_results_reported: u64,
    steady_dispatched_per_sec: f64,
    steady_reported_per_sec: f64,
    steady_validated_per_sec: f64,
    steady_seconds: f64,
    overall_validated_per_sec: f64,
    validation_lag_ms: f64,
    request_work_calls: u64,
    request_work_p50_ms: f64,
    request_work_p99_ms: f64,
    request_work_max_ms: f64,
    report_results_calls: u64,
    report_results_p50_ms: f64,
    report_results_p99_ms: f64,
    coordinator_cpu_seconds: f64,
    coordinator_cpu_seconds_per_1000_results: f64,
    coordinator_submit_cpu_seconds: f64,
    postgres_cpu_seconds: Option<f64>,
    postgres_cpu_seconds_per_1000_results: Option<f64>,
    coordinator_peak_rss_mb: f64,
    bench_cpu_seconds: f64,
    rpc_errors: u64,
}

/// Runs `quorum-bench ARGS` to completion (bounded by [`STEP_TIMEOUT`]),
/// checks it succeeded and parses its JSON output.
async fn run_bench<T: serde::de::DeserializeOwned>(args: &[&str]) -> T {
    let command_line = format!("quorum-bench {}", args.join(" "));
    let child = tokio::process::Command::new(binaries::path(binaries::BENCH))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn quorum-bench");
    let output = tokio::time::timeout(STEP_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{command_line}` did not finish within {STEP_TIMEOUT:?}"))
        .expect("wait for quorum-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "`{command_line}` failed ({})\n{stdout}\n{stderr}", output.status);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("stdout is not the expected JSON: {error}\n{stdout}\n{stderr}"))
}

#[tokio::test]
async fn lifecycle_smoke_run_validates_every_work_unit() {
    // 50 work units ahead of the measured ones that no host may take.
    let figures: Figures = run_bench(&[
        "lifecycle",
        "--hosts",
        "4",
        "--work-units",
        "200",
        "--accounts",
        "2",
        "--held-backlog",
        "50",
        "--json",
    ])
    .await;

    assert!(figures.completed, "{figures:?}");
    assert_eq!((figures.hosts, figures.work_units, figures.backlog, figures.held_backlog), (4, 200, 0, 50));
    assert_eq!(figures.work_units_submitted, 250);
    assert_eq!(figures.work_units_done, 200, "every work unit validated: {figures:?}");
    assert_eq!(figures.work_units_failed, 0);
    let copies = 200 * u64::from(figures.quorum);
    assert_eq!(figures.results_dispatched, copies);
    assert_eq!(figures.results_reported, copies);
    assert_eq!(figures.results_validated, copies, "every copy agrees, so every copy is valid");
    // Reports ride on RequestWork (as the worker's do): no ReportResults calls.
    assert!(figures.request_work_calls > 0);
    assert_eq!(figures.report_results_calls, 0);
    assert!(figures.coordinator_peak_rss_mb > 0.0);
    assert_eq!(figures.rpc_errors, 0, "no call failed: {figures:?}");
    assert_eq!(figures.coordinators, 1);
    assert_eq!(figures.postgres_cpu_seconds, None, "no PostgreSQL under SQLite");
}

#[tokio::test]
async fn lifecycle_smoke_run_on_two_postgres_coordinators_validates_every_work_unit() {
    let database = quorum_tests::postgres::Database::create();
    let figures: Figures = run_bench(&[
        "lifecycle",
        "--hosts",
        "4",
        "--work-units",
        "200",
        "--postgres",
        database.url(),
        "--coordinators",
        "2",
        "--json",
    ])
    .await;
    assert!(figures.completed, "{figures:?}");
    assert_eq!(figures.coordinators, 2);
    assert_eq!(figures.work_units_done, 200, "every work unit validated: {figures:?}");
    let copies = 200 * u64::from(figures.quorum);
    assert_eq!(figures.results_dispatched, copies, "no copy handed out twice by the two");
    assert_eq!(figures.results_validated, copies);
    assert_eq!(figures.rpc_errors, 0, "no call failed: {figures:?}");
    // The test's server runs on this machine: its CPU is read.
    assert!(figures.postgres_cpu_seconds.is_some_and(|cpu| cpu > 0.0), "{figures:?}");
    assert!(figures.postgres_cpu_seconds_per_1000_results.is_some_and(|cpu| cpu > 0.0));
}

/// One app of `quorum-bench worker --json`: the fields this test reads.
#[derive(Debug, Deserialize)]
struct WorkerFigures {
    app: String,
    work_units: u64,
    outputs_checked: u64,
    direct_fuel: u64,
    platform_units_per_sec: f64,
    direct_units_per_sec: f64,
    native_units_per_sec: f64,
}

/// `quorum-bench worker --json`: the fields this test reads.
#[derive(Debug, Deserialize)]
struct WorkerSuite {
    cpus: usize,
    apps: Vec<WorkerFigures>,
    geomean_platform_over_native: f64,
}

/// The worker-efficiency benchmark on a tiny range: it checks every output of
/// the direct and platform runs against the native ones itself, so a
/// successful exit means all three agree.
#[tokio::test]
async fn worker_smoke_run_agrees_with_native() {
    let suite: WorkerSuite = run_bench(&[
        "worker", "--app", "primes", "--start", "0", "--end", "20000", "--chunk", "2000", "--cpus", "1", "--json",
    ])
    .await;
    assert_eq!(suite.cpus, 1);
    let [primes] = &suite.apps[..] else { panic!("one app: {suite:?}") };
    assert_eq!((primes.app.as_str(), primes.work_units, primes.outputs_checked), ("primes", 10, 10));
    assert!(primes.platform_units_per_sec > 0.0 && primes.direct_units_per_sec > 0.0);
    assert!(primes.native_units_per_sec > 0.0 && primes.direct_fuel > 0);
    assert!(suite.geomean_platform_over_native > 0.0);
}

/// Every compute kernel (n-body, matrix multiply, FFT, stencil, sort) on tiny
/// units: the WebAssembly build, in the sandbox and through the platform,
/// prints the same bytes as the native build of the same C source.
#[tokio::test]
async fn worker_smoke_run_of_every_kernel_agrees_with_native() {
    let suite: WorkerSuite = run_bench(&[
        "worker",
        "--app",
        "all",
        "--units",
        "2",
        "--unit-work",
        "0.001",
        "--end",
        "20000",
        "--chunk",
        "2000",
        "--cpus",
        "1",
        "--json",
    ])
    .await;
    let apps: Vec<&str> = suite.apps.iter().map(|figures| figures.app.as_str()).collect();
    assert_eq!(apps, ["primes", "nbody", "matmul", "fft", "stencil", "sort"]);
    for figures in &suite.apps[1..] {
        assert_eq!((figures.work_units, figures.outputs_checked), (2, 2), "{figures:?}");
        assert!(figures.direct_fuel > 0, "{figures:?}");
    }
}

/// One mode of `quorum-bench files locality --json`.
#[derive(Debug, Deserialize)]
struct LocalityRun {
    locality: bool,
    downloads: u64,
    bytes_downloaded: u64,
}

/// `quorum-bench files locality --json`: the fields this test reads.
#[derive(Debug, Deserialize)]
struct LocalityFigures {
    work_units: usize,
    with_locality: LocalityRun,
    without_locality: LocalityRun,
}

/// `quorum-bench files big-input --json`: the fields this test reads.
#[derive(Debug, Deserialize)]
struct BigInputFigures {
    file_bytes: u64,
    coordinator_peak_rss_bytes: u64,
    worker_peak_rss_bytes: u64,
}

/// One mode of `quorum-bench files distribution --json`.
#[derive(Debug, Deserialize)]
struct DistributionRun {
    coordinator_sent_files: f64,
    seconds_each: Vec<f64>,
    from_peers: usize,
}

/// `quorum-bench files distribution --json`: the fields this test reads.
#[derive(Debug, Deserialize)]
struct DistributionFigures {
    client_server: Option<DistributionRun>,
    peer_to_peer: DistributionRun,
}

/// The files benchmark on tiny files: both modes finish every work unit
/// (the bench waits for the project) and download each file at least once.
#[tokio::test]
async fn files_smoke_runs_finish_and_count_downloads() {
    let figures: LocalityFigures = run_bench(&[
        "files",
        "locality",
        "--files",
        "3",
        "--file-mb",
        "1",
        "--work-units",
        "12",
        "--workers",
        "2",
        "--cache-mb",
        "2",
        "--json",
    ])
    .await;
    assert_eq!(figures.work_units, 12);
    for run in [&figures.with_locality, &figures.without_locality] {
        assert!(run.downloads >= 3 && run.bytes_downloaded == run.downloads << 20, "{run:?}");
    }
    assert!(figures.with_locality.locality && !figures.without_locality.locality);
    let big: BigInputFigures = run_bench(&["files", "big-input", "--big-mb", "4", "--json"]).await;
    assert_eq!(big.file_bytes, 4 << 20);
    assert!(big.coordinator_peak_rss_bytes > 0 && big.worker_peak_rss_bytes > 0);
}

/// The distribution benchmark on a small file and 3 workers: in both modes
/// every worker gets the file; client/server sends it 3 times, and with
/// peer-to-peer every worker fetches through the swarm.
#[tokio::test]
async fn files_distribution_smoke_runs_both_modes() {
    let figures: DistributionFigures =
        run_bench(&["files", "distribution", "--file-mb", "2", "--workers", "3", "--json"]).await;
    let client_server = figures.client_server.expect("both modes ran");
    assert_eq!(client_server.seconds_each.len(), 3);
    assert_eq!(client_server.coordinator_sent_files, 3.0);
    assert_eq!(client_server.from_peers, 0);
    let p2p = figures.peer_to_peer;
    assert_eq!(p2p.seconds_each.len(), 3);
    assert_eq!(p2p.from_peers, 3);
    assert!(p2p.coordinator_sent_files >= 1.0, "{p2p:?}");
}
