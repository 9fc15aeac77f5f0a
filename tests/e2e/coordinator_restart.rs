//! The coordinator is killed (SIGKILL) while three workers are leasing and
//! reporting, then restarted on the same database and the same address. The
//! workers keep their unreported results and retry with backoff, so nothing
//! acknowledged or computed is lost: every work unit ends with exactly one
//! canonical result, which is correct, backed by at least two valid copies.
//!
//! A lease whose answer the kill swallowed leaves a copy the coordinator
//! believes is out and no worker holds; the short deadline turns it into "no
//! reply" and a replacement goes out, so the accounting allows exactly one
//! extra copy per such loss.

use std::collections::BTreeMap;
use std::time::Duration;

use quorum_proto::v1;
use quorum_tests::cli::{Hosts, Statuses, Submitted};
use quorum_tests::grpc::{Projects, digest};
use quorum_tests::{Server, TestDir, Worker, cli, primes};

const N_WORK_UNITS: u64 = 150;
const CHUNK: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_while_workers_report() {
    let dir = TestDir::new("coordinator-restart");
    let db = dir.join("quorum.db");
    let mut server = Server::spawn_with_db(dir.path(), &db);
    let addr = server.addr().to_owned();
    let url = server.url();
    let manifest = dir.write(
        "project.toml",
        primes::manifest("primes", 0, N_WORK_UNITS * CHUNK, CHUNK, "min_quorum = 2\ndeadline = \"10s\""),
    );
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, N_WORK_UNITS);

    let workers: Vec<Worker> = (1..=3).map(|n| Worker::spawn(&url, &dir.join(format!("worker-{n}")), 1)).collect();
    let before_kill = {
        let projects = Projects::connect(&url).await;
        projects
            .poll_status_until("primes", Duration::from_millis(5), "a fifth of the work units validated", |status| {
                status.work_units_done >= N_WORK_UNITS / 5
            })
            .await
    };
    server.kill();
    eprintln!(
        "coordinator killed with {} of {N_WORK_UNITS} work units done, {} copies in progress",
        before_kill.work_units_done, before_kill.results_in_progress
    );
    assert!(
        before_kill.work_units_done < N_WORK_UNITS,
        "the project ended before the coordinator could be killed (make the work units slower): {before_kill:?}"
    );

    let server = Server::spawn_at(dir.path(), &db, &addr);
    assert_eq!(server.addr(), addr, "the restarted coordinator listens where the workers point");
    let projects = Projects::connect(&url).await;
    cli(&url, ["wait", "primes", "--timeout", "120s"]).await.success();
    // A lease lost in the kill ends when its host is told to abort it at its
    // next contact, or as "no reply" at its deadline (spare copies may have
    // completed its work unit before).
    projects
        .poll_status_until("primes", Duration::from_millis(20), "copies of lost leases to end", |status| {
            status.results_in_progress == 0
        })
        .await;

    let statuses: Statuses = cli(&url, ["--json", "status", "primes"]).await.json();
    let status = &statuses.projects[0];
    assert_eq!(status.work_units_done, N_WORK_UNITS, "{status:?}");
    assert_eq!((status.work_units_open, status.work_units_failed), (0, 0), "{status:?}");
    assert_eq!((status.results_unsent, status.results_in_progress), (0, 0), "{status:?}");
    assert_eq!((status.results_invalid, status.results_error), (0, 0), "{status:?}");

    // Exactly one canonical result per work unit, and it is correct.
    let canonical = projects.canonical_results("primes").await;
    let canonical_by_work_unit: BTreeMap<i64, &v1::CanonicalResult> =
        canonical.iter().map(|result| (result.work_unit_id, result)).collect();
    assert_eq!(canonical.len() as u64, N_WORK_UNITS, "one canonical result per work unit");
    assert_eq!(canonical_by_work_unit.len() as u64, N_WORK_UNITS, "no work unit has two canonical results");
    for result in &canonical {
        assert_eq!(
            String::from_utf8_lossy(&result.output),
            primes::expected_output(&result.work_unit_name),
            "{result:?}"
        );
    }
    for work_unit in projects.work_units("primes").await {
        assert_eq!(work_unit.state, "done", "{work_unit:?}");
        let canonical = canonical_by_work_unit
            .get(&work_unit.id)
            .unwrap_or_else(|| panic!("work unit {work_unit:?} has no canonical result"));
        assert_eq!(work_unit.canonical_result_id, canonical.result_id, "{work_unit:?}");
    }

    // Nothing lost: every copy ended valid, agreeing with its canonical
    // result, or as "no reply" or "didn't need" (a lease lost in the kill).
    let results = projects.results("primes").await;
    let mut valid_per_work_unit: BTreeMap<i64, u64> = BTreeMap::new();
    let mut n_no_reply = 0_u64;
    let mut n_didnt_need = 0_u64;
    for result in &results {
        assert_eq!(result.server_state, "over", "{result:?}");
        match (result.outcome.as_str(), result.validate_state.as_str()) {
            ("success", "valid") => {
                let canonical = canonical_by_work_unit[&result.work_unit_id];
                assert_eq!(result.output_digest, digest(&canonical.output), "{result:?}");
                *valid_per_work_unit.entry(result.work_unit_id).or_default() += 1;
            }
            ("no_reply", _) => n_no_reply += 1,
            ("didnt_need", _) => n_didnt_need += 1,
            _ => panic!("a copy ended neither valid nor as no reply: {result:?}"),
        }
    }
    assert_eq!(valid_per_work_unit.len() as u64, N_WORK_UNITS, "every work unit has valid copies");
    for (work_unit_id, n_valid) in &valid_per_work_unit {
        assert!(*n_valid >= 2, "work unit {work_unit_id} has {n_valid} valid copies");
    }
    let n_valid: u64 = valid_per_work_unit.values().sum();
    assert_eq!(status.results_valid, n_valid, "{status:?}");
    assert_eq!(status.results_no_reply, n_no_reply, "{status:?}");
    assert_eq!(results.len() as u64, n_valid + n_no_reply + n_didnt_need, "every copy is accounted for");
    assert!(n_valid >= 2 * N_WORK_UNITS, "at least two valid copies per work unit");
    let n_failed_calls: usize = workers.iter().map(|worker| worker.log().matches("cannot ").count()).sum();
    eprintln!("the workers logged {n_failed_calls} failed calls while the coordinator was down");
    if n_no_reply > 0 {
        eprintln!("{n_no_reply} lease(s) lost in the kill became no reply and were replaced");
    }

    let hosts: Hosts = cli(&url, ["--json", "hosts"]).await.json();
    assert_eq!(hosts.hosts.len(), workers.len(), "the workers kept their identity: {hosts:?}");
    assert_eq!(hosts.hosts.iter().map(|host| host.n_valid).sum::<u64>(), n_valid, "{hosts:?}");
    assert_eq!(hosts.hosts.iter().map(|host| host.n_no_reply).sum::<u64>(), n_no_reply, "{hosts:?}");
    for host in &hosts.hosts {
        assert_eq!((host.n_invalid, host.n_error, host.n_in_progress), (0, 0, 0), "{host:?}");
    }
}
