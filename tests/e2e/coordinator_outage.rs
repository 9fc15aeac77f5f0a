//! The coordinator goes down (SIGKILL) for a while during a run, then comes
//! back on the same database and address. The worker keeps computing the
//! tasks in its buffer, retries with a bounded backoff (its failed calls are
//! counted in its log and bounded by the outage's length over the backoff's
//! floor), and once the coordinator is back it delivers everything: every
//! work unit ends done with one correct result, and nothing was sent twice
//! or lost (no copy of any work unit had to be reissued).

use std::time::{Duration, Instant};

use quorum_tests::cli::Submitted;
use quorum_tests::grpc::Projects;
use quorum_tests::poll::poll_until;
use quorum_tests::worker::MAX_BACKOFF_MS;
use quorum_tests::{Server, TestDir, Worker, cli, primes};

const N_WORK_UNITS: u64 = 40;
/// Numbers near 10^9: tens of milliseconds of trial division per unit.
const START: u64 = 1_000_000_000;
const CHUNK: u64 = 10_000;
/// The worker's buffer: it holds this many tasks when the coordinator dies.
const BUFFER: &str = "16";
/// Lines the worker logs for a failed call (`worker/src/worker.rs`).
const FAILED_CALL: [&str; 2] = ["cannot request work", "cannot report results"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_computes_through_a_coordinator_outage() {
    let dir = TestDir::new("outage");
    let db = dir.join("quorum.db");
    let mut server = Server::spawn_with_db(dir.path(), &db);
    let addr = server.addr().to_owned();
    let url = server.url();
    let manifest = dir.write(
        "project.toml",
        primes::manifest("primes", START, START + N_WORK_UNITS * CHUNK, CHUNK, "min_quorum = 1\ntarget_results = 1"),
    );
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, N_WORK_UNITS);

    let worker =
        Worker::spawn_with(&[&url], &dir.join("worker"), 1, &["--buffer-low", BUFFER, "--buffer-high", BUFFER]);
    {
        let projects = Projects::connect(&url).await;
        // Killed once the worker holds its buffer and has the app (it has
        // finished a task): without the app nothing could run offline.
        poll_until("the worker to fill its buffer and start", Duration::from_millis(10), || async {
            let hosts = projects.hosts().await;
            let holding = hosts.first().map_or(0, |host| host.n_in_progress);
            let started = worker.log().contains("finished result");
            if holding >= 12 && started { Ok(()) } else { Err(format!("{hosts:?}\n{}", worker.log())) }
        })
        .await;
    }
    server.kill();
    let down_at = Instant::now();
    let log_at_kill = worker.log().len();
    let finished_at_kill = worker.log().matches("finished result").count();

    // The worker computes its whole buffer while the coordinator is down:
    // its journal ends up with nothing queued or running, and results to report.
    let status = poll_until("the worker to finish its buffer offline", Duration::from_millis(50), || async {
        let status = worker.try_command("status").await?;
        let idle = status.contains(" 0 running, 0 suspended, 0 queued,");
        if idle { Ok(status) } else { Err(status) }
    })
    .await;
    let finished_offline = worker.log().matches("finished result").count() - finished_at_kill;
    assert!(finished_offline >= 8, "the buffer kept the core busy: {finished_offline} finished offline\n{status}");
    assert!(!status.contains(" 0 to report,"), "results wait in the journal: {status}");

    let server = Server::spawn_at(dir.path(), &db, &addr);
    let down_for = down_at.elapsed();
    let log = worker.log();
    let outage_log = &log[log_at_kill..];
    let failed_calls = FAILED_CALL.iter().map(|line| outage_log.matches(line).count()).sum::<usize>();
    // Each kind of call backs off to at least MAX_BACKOFF_MS / 2 between
    // attempts after a few doublings from 100 ms: a bound from the outage's
    // length, not a timing assertion (a busy loop would make thousands).
    let per_kind = 4 + down_for.as_millis() as usize / (MAX_BACKOFF_MS as usize / 2);
    assert!(
        failed_calls <= FAILED_CALL.len() * per_kind,
        "{failed_calls} failed calls in {down_for:?} of outage (bound {})\n{outage_log}",
        FAILED_CALL.len() * per_kind
    );
    assert!(failed_calls >= 1, "the worker noticed the outage\n{outage_log}");

    cli(&server.url(), ["wait", "primes", "--timeout", "120s"]).await.success();
    let projects = Projects::connect(&server.url()).await;
    let work_units = projects.work_units("primes").await;
    let results = projects.results("primes").await;
    assert_eq!(results.len() as u64, N_WORK_UNITS, "one copy per work unit: nothing reissued or lost: {results:?}");
    let canonical = projects.canonical_results("primes").await;
    assert_eq!(canonical.len() as u64, N_WORK_UNITS);
    for result in &canonical {
        assert_eq!(
            String::from_utf8_lossy(&result.output),
            primes::expected_output(&result.work_unit_name),
            "{result:?}"
        );
    }
    assert!(work_units.iter().all(|wu| wu.state == "done"), "{work_units:?}");
    let status = worker.command("status").await;
    assert!(status.contains(" 0 running, 0 suspended, 0 queued, 0 to report,"), "everything delivered: {status}");
}
