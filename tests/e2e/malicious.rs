//! A malicious host, played by the test over gRPC, reports a wrong output for
//! every copy it gets while two honest workers run: its outputs never become
//! canonical, every copy it reported is invalid, and it earns nothing; on
//! one coordinator over SQLite, and on two over one PostgreSQL database
//! (the liar on one, the honest workers on both, the checks on the other).

use std::collections::BTreeSet;
use std::time::Duration;

use quorum_proto::v1;
use quorum_tests::cli::{Hosts, Submitted};
use quorum_tests::group::{Coordinators, Setup};
use quorum_tests::grpc::{Host, Projects, success_report};
use quorum_tests::{TestDir, Worker, cli, primes};
use tokio::sync::oneshot;

const N_WORK_UNITS: u64 = 20;
const WRONG_OUTPUT: &[u8] = b"666\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_outputs_never_become_canonical() {
    wrong_outputs_never_canonical_on(Setup::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_outputs_never_become_canonical_on_two_postgres_coordinators() {
    wrong_outputs_never_canonical_on(Setup::PostgresPair).await;
}

async fn wrong_outputs_never_canonical_on(setup: Setup) {
    let dir = TestDir::new("malicious");
    let group = Coordinators::start(setup, dir.path());
    let url = group.url(1);
    let manifest =
        dir.write("project.toml", primes::manifest("primes", 0, N_WORK_UNITS * 1_000, 1_000, "min_quorum = 2"));
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, N_WORK_UNITS);
    let projects = Projects::connect(&url).await;

    // Mallory takes work before any honest worker exists, so she surely gets
    // copies, and lies about every one of them.
    let mut mallory = Host::register(&group.url(0), "mallory").await;
    let first = mallory.request_work(N_WORK_UNITS as u32).await.expect("RequestWork for mallory");
    assert!(!first.assignments.is_empty(), "the malicious host got no work: {first:?}");
    let mut reported = report_wrong(&mut mallory, &first.assignments).await;

    // She keeps asking for more (e.g. copies created after her inconclusive
    // results) while the honest workers run, until the project ends.
    let (stop, mut stopped) = oneshot::channel::<()>();
    let liar = tokio::spawn(async move {
        loop {
            if !matches!(stopped.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
                return reported;
            }
            let response = mallory.request_work(5).await.expect("RequestWork for mallory");
            if response.assignments.is_empty() {
                // Pacing like a real worker; the loop ends on `stop`.
                tokio::select! {
                    _ = &mut stopped => return reported,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            } else {
                reported.extend(report_wrong(&mut mallory, &response.assignments).await);
            }
        }
    });

    let _honest: Vec<Worker> = ["honest-1", "honest-2"]
        .iter()
        .enumerate()
        .map(|(i, name)| Worker::spawn(&group.url(i), &dir.join(name), 1))
        .collect();
    cli(&url, ["wait", "primes", "--timeout", "120s"]).await.success();
    stop.send(()).expect("the liar is still running");
    let reported: BTreeSet<i64> = liar.await.expect("the liar does not panic");

    let status = projects.status("primes").await;
    assert_eq!(status.work_units_done, N_WORK_UNITS, "{status:?}");
    assert_eq!(status.work_units_failed, 0, "{status:?}");

    let canonical = projects.canonical_results("primes").await;
    assert_eq!(canonical.len() as u64, N_WORK_UNITS);
    for result in &canonical {
        let expected = primes::expected_output(&result.work_unit_name);
        assert_eq!(String::from_utf8_lossy(&result.output), expected, "canonical output of {}", result.work_unit_name);
        assert!(!reported.contains(&result.result_id), "a copy of the malicious host became canonical: {result:?}");
    }

    let results = projects.results("primes").await;
    let mallory_results: Vec<&v1::ResultInfo> = results.iter().filter(|result| reported.contains(&result.id)).collect();
    assert_eq!(mallory_results.len(), reported.len());
    for result in &mallory_results {
        assert_eq!(result.outcome, "success", "{result:?}");
        assert_eq!(result.validate_state, "invalid", "{result:?}");
        assert_eq!(result.granted_credit, 0.0, "{result:?}");
    }

    let hosts: Hosts = cli(&url, ["--json", "hosts"]).await.json();
    let mallory_info = hosts
        .hosts
        .iter()
        .find(|host| host.name == "mallory")
        .unwrap_or_else(|| panic!("no host mallory in {hosts:?}"));
    assert_eq!(mallory_info.n_invalid, reported.len() as u64, "{mallory_info:?}");
    assert_eq!(mallory_info.n_valid, 0, "{mallory_info:?}");
    assert_eq!(mallory_info.total_credit, 0.0, "{mallory_info:?}");
    for host in hosts.hosts.iter().filter(|host| host.name != "mallory") {
        assert_eq!(host.n_invalid, 0, "an honest host was judged invalid: {host:?}");
    }
}

/// Reports [`WRONG_OUTPUT`] for every assignment; returns their result ids.
async fn report_wrong(host: &mut Host, assignments: &[v1::Assignment]) -> BTreeSet<i64> {
    let reports = assignments.iter().map(|assignment| success_report(assignment.result_id, WRONG_OUTPUT)).collect();
    let response = host.report(reports).await.expect("ReportResults for mallory");
    let ids: BTreeSet<i64> = assignments.iter().map(|a| a.result_id).collect();
    let accepted: BTreeSet<i64> = response.accepted.iter().copied().collect();
    assert_eq!(accepted, ids, "every report is accepted (they are well formed)");
    ids
}
