//! Coordinators on PostgreSQL (`--db postgres://... --data-dir DIR`) as an
//! operator runs them: a group of two over one database, one of them
//! SIGKILLed again and again under load and started again at its address,
//! while the other goes on serving. No acknowledged report is lost (every
//! work unit ends with exactly one canonical result, correct, and no host
//! registers twice) and the workers of the killed one come back to it.

use std::collections::BTreeSet;
use std::time::Duration;

use quorum_tests::cli::{Hosts, ResultLine, Statuses, parse_jsonl};
use quorum_tests::group::{Coordinators, Setup};
use quorum_tests::{TestDir, Worker, cli, primes};

const N_WORK_UNITS: u64 = 120;
const CHUNK: u64 = 50_000;
const KILLS: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_coordinators_killed_again_and_again_loses_nothing() {
    let dir = TestDir::new("postgres-group");
    let mut group = Coordinators::start(Setup::PostgresPair, dir.path());
    let manifest = dir.write(
        "project.toml",
        primes::manifest("primes", 0, N_WORK_UNITS * CHUNK, CHUNK, "min_quorum = 2\ntarget_results = 2"),
    );
    cli(&group.url(0), ["submit", &manifest.display().to_string()]).await.success();
    // Two workers on the coordinator that gets killed, one on the other.
    let workers: Vec<Worker> = (0..3)
        .map(|n| Worker::spawn(&group.url(if n == 2 { 1 } else { 0 }), &dir.join(format!("worker-{n}")), 1))
        .collect();
    let survivor = group.url(1);
    for kill in 1..=KILLS {
        // Under load: once more work units are done, coordinator 0 dies
        // without warning, and is started again at its address.
        let target = kill * N_WORK_UNITS / (KILLS + 2);
        quorum_tests::poll::poll_until("more work units done", Duration::from_millis(50), || async {
            let statuses: Statuses = cli(&survivor, ["--json", "status", "primes"]).await.json();
            let done = statuses.projects[0].work_units_done;
            if done >= target { Ok(()) } else { Err(format!("{done} of {target} done")) }
        })
        .await;
        group.server(0).kill();
        let statuses: Statuses = cli(&survivor, ["--json", "status", "primes"]).await.json();
        assert!(statuses.projects[0].work_units_open > 0, "the kill came under load: {statuses:?}");
        group.restart(0, dir.path());
    }

    cli(&survivor, ["wait", "primes", "--timeout", "180s"]).await.success();
    for url in [group.url(0), group.url(1)] {
        let lines: Vec<ResultLine> = parse_jsonl(&cli(&url, ["results", "primes"]).await.success());
        assert_eq!(lines.len() as u64, N_WORK_UNITS, "one canonical result per work unit, seen from {url}");
        let names: BTreeSet<&str> = lines.iter().map(|line| line.work_unit.as_str()).collect();
        assert_eq!(names.len() as u64, N_WORK_UNITS, "no work unit twice");
        for line in &lines {
            let expected = primes::expected_output(&line.work_unit);
            assert_eq!(line.output.as_deref(), Some(expected.as_str()), "canonical output of {}", line.work_unit);
        }
        let statuses: Statuses = cli(&url, ["--json", "status", "primes"]).await.json();
        let status = &statuses.projects[0];
        assert_eq!((status.work_units_done, status.work_units_failed), (N_WORK_UNITS, 0), "{status:?}");
        assert_eq!(status.results_invalid, 0, "{status:?}");
        let hosts: Hosts = cli(&url, ["--json", "hosts"]).await.json();
        assert_eq!(hosts.hosts.len(), 3, "no worker registered again: {hosts:?}");
        assert!(hosts.hosts.iter().all(|host| host.n_valid > 0 && host.total_credit > 0.0), "{hosts:?}");
    }
    drop(workers);
}
