//! A worker killed with SIGKILL never reports the copies it holds: once their
//! deadline passes they become "no reply", new copies go to other workers,
//! and the project still completes.

use std::time::Duration;

use quorum_tests::cli::{Hosts, Statuses, Submitted};
use quorum_tests::group::{Coordinators, Setup};
use quorum_tests::grpc::Projects;
use quorum_tests::{TestDir, Worker, cli, primes};

/// Work units near 10^12, where trial division takes long enough per work
/// unit (tens of milliseconds) that worker A still holds copies when killed.
const START: u64 = 1_000_000_000_000;
const CHUNK: u64 = 500;
const N_WORK_UNITS: u64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_copies_are_reissued() {
    killed_worker_copies_are_reissued_on(Setup::Sqlite).await;
}

/// The killed worker's coordinator is not the one its copies are reissued
/// through, nor the one whose transitioner may pass their deadlines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_copies_are_reissued_on_two_postgres_coordinators() {
    killed_worker_copies_are_reissued_on(Setup::PostgresPair).await;
}

async fn killed_worker_copies_are_reissued_on(setup: Setup) {
    let dir = TestDir::new("deadlines");
    let group = Coordinators::start(setup, dir.path());
    let url = group.url(1);
    let manifest = dir.write(
        "project.toml",
        primes::manifest(
            "slow-primes",
            START,
            START + N_WORK_UNITS * CHUNK,
            CHUNK,
            "min_quorum = 2\ndeadline = \"3s\"",
        ),
    );
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, N_WORK_UNITS);
    let projects = Projects::connect(&url).await;

    let mut worker_a = Worker::spawn(&group.url(0), &dir.join("worker-a"), 1);
    // No event says "a worker holds copies": poll the coordinator's counts
    // (a condition wait, bounded by the harness's step timeout).
    let holding = projects
        .poll_status_until("slow-primes", Duration::from_millis(10), "worker A to hold copies in progress", |status| {
            status.results_in_progress > 0
        })
        .await;
    worker_a.kill_9();

    let _others: Vec<Worker> = ["worker-b", "worker-c"]
        .iter()
        .enumerate()
        .map(|(i, name)| Worker::spawn(&group.url(i + 1), &dir.join(name), 1))
        .collect();
    cli(&url, ["wait", "slow-primes", "--timeout", "120s"]).await.success();
    // In the batch's tail the killed copies may have been replaced early by
    // spare copies; either way they end as "no reply" once their deadline passes.
    projects
        .poll_status_until(
            "slow-primes",
            Duration::from_millis(20),
            "the killed worker's copies to time out",
            |status| status.results_in_progress == 0,
        )
        .await;

    let statuses: Statuses = cli(&url, ["--json", "status", "slow-primes"]).await.json();
    let status = &statuses.projects[0];
    assert_eq!(status.work_units_done, N_WORK_UNITS, "{status:?}");
    assert_eq!(status.work_units_open, 0, "{status:?}");
    assert_eq!(status.work_units_failed, 0, "{status:?}");
    assert!(
        status.results_no_reply >= 1,
        "the killed worker's copies should be no reply: {status:?} (it held {})",
        holding.results_in_progress
    );

    let hosts: Hosts = cli(&url, ["--json", "hosts"]).await.json();
    let host_a = hosts
        .hosts
        .iter()
        .find(|host| host.name == "worker-a")
        .unwrap_or_else(|| panic!("no host worker-a in {hosts:?}"));
    assert!(host_a.n_no_reply >= 1, "{host_a:?}");
    assert_eq!(host_a.n_in_progress, 0, "{host_a:?}");
    let n_no_reply: u64 = hosts.hosts.iter().map(|host| host.n_no_reply).sum();
    assert_eq!(n_no_reply, status.results_no_reply, "{hosts:?}");

    for result in projects.canonical_results("slow-primes").await {
        assert_eq!(
            String::from_utf8_lossy(&result.output),
            primes::expected_output(&result.work_unit_name),
            "{result:?}"
        );
    }
}
