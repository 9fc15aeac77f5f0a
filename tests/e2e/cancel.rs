//! `quorum cancel` while real workers hold copies in progress: every work unit
//! fails as cancelled at once, unsent copies are retired, and each worker is
//! told to abort the copies it still holds at its next report; those end
//! "cancelled". The workers carry on running.
//!
//! The app spins until its wall-time limit (a few seconds), so no work unit
//! can succeed before the cancel (none is done, all are cancelled, whatever
//! the machine's speed), and each worker's running copy ends by itself with a
//! client error: its report is the worker's next contact, whose answer tells it
//! to abort the copy it had queued behind (`store::scheduling::abort_unneeded`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use quorum_proto::v1;
use quorum_tests::cli::{Cancelled, Statuses, Submitted};
use quorum_tests::grpc::Projects;
use quorum_tests::poll::poll_until;
use quorum_tests::worker::ids_in_state;
use quorum_tests::{Server, TestDir, Worker, cli};

/// A WASI command that never finishes: only a limit stops it.
const SPIN_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $spin (br $spin))))
"#;

const N_WORK_UNITS: u64 = 6;
/// Copies a one-CPU worker holds: one running, one queued behind it.
const COPIES_PER_WORKER: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_copies_in_flight() {
    let dir = TestDir::new("cancel");
    let server = Server::spawn(dir.path());
    let url = server.url();
    dir.write("spin.wat", SPIN_WAT);
    // The wall time bounds each run; the fuel limit is far beyond it. Errors
    // are allowed generously so that none of the work units fails before the
    // cancel even on a slow machine.
    let manifest = dir.write(
        "project.toml",
        format!(
            "name = \"spin\"\napp = \"spin.wat\"\n[policy]\nmin_quorum = 2\nmax_error_results = 20\n\
             max_total_results = 40\n[limits]\nfuel = 1_000_000_000_000\nwall_time = \"5s\"\n\
             [work_units]\nrange = {{ start = 0, end = {N_WORK_UNITS}, chunk = 1 }}\n"
        ),
    );
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, N_WORK_UNITS);
    let projects = Projects::connect(&url).await;

    // A buffer of one queued task: each worker holds one copy running and one queued.
    let buffer = ["--buffer-low", "1", "--buffer-high", "1"];
    let mut workers: Vec<Worker> =
        ["worker-a", "worker-b"].iter().map(|name| Worker::spawn_with(&[&url], &dir.join(name), 1, &buffer)).collect();
    // Wait until both hold their two copies.
    let hosts = poll_until("both workers to hold their copies", Duration::from_millis(10), || async {
        let hosts = projects.hosts().await;
        let holding = hosts.len() == workers.len() && hosts.iter().all(|host| host.n_in_progress == COPIES_PER_WORKER);
        if holding { Ok(hosts) } else { Err(format!("{hosts:?}")) }
    })
    .await;
    let host_names: BTreeMap<i64, String> = hosts.iter().map(|host| (host.id, host.name.clone())).collect();
    let held: Vec<v1::ResultInfo> =
        projects.results("spin").await.into_iter().filter(|result| result.server_state == "in_progress").collect();
    assert_eq!(held.len() as u64, COPIES_PER_WORKER * workers.len() as u64, "{held:?}");

    let cancelled: Cancelled = cli(&url, ["--json", "cancel", "spin"]).await.json();
    assert_eq!(cancelled.project, "spin");
    assert_eq!(cancelled.n_work_units_cancelled, N_WORK_UNITS, "no work unit can have ended before the cancel");

    let statuses: Statuses = cli(&url, ["--json", "status", "spin"]).await.json();
    let status = &statuses.projects[0];
    assert_eq!(status.state, "cancelled", "{status:?}");
    assert_eq!(status.work_units_total, N_WORK_UNITS, "{status:?}");
    assert_eq!(status.work_units_failed, N_WORK_UNITS, "{status:?}");
    assert_eq!((status.work_units_open, status.work_units_done), (0, 0), "{status:?}");
    assert_eq!(status.results_unsent, 0, "unsent copies are retired at once: {status:?}");
    for work_unit in projects.work_units("spin").await {
        assert_eq!(
            (work_unit.state.as_str(), work_unit.fail_reason.as_str()),
            ("failed", "cancelled"),
            "{work_unit:?}"
        );
        assert_eq!(work_unit.canonical_result_id, 0, "{work_unit:?}");
    }

    // The copies in progress end when their workers next report.
    let results = poll_until("the copies in progress to end", Duration::from_millis(50), || async {
        let results = projects.results("spin").await;
        let in_progress: Vec<&v1::ResultInfo> = results.iter().filter(|result| result.server_state != "over").collect();
        if in_progress.is_empty() { Ok(results) } else { Err(format!("still in progress: {in_progress:?}")) }
    })
    .await;
    let held_ids: BTreeSet<i64> = held.iter().map(|result| result.id).collect();
    let mut cancelled_hosts = BTreeSet::new();
    for result in &results {
        if held_ids.contains(&result.id) {
            // Either the worker's running copy, which hit its wall time and
            // was reported, or a copy it was told to abort.
            match result.outcome.as_str() {
                "cancelled" => {
                    cancelled_hosts.insert(result.host_id);
                }
                "client_error" => {
                    assert!(result.error_message.contains("wall time limit exceeded"), "{result:?}");
                }
                _ => panic!("a copy in progress at the cancel ended neither cancelled nor reported: {result:?}"),
            }
            assert_eq!(result.validate_state, "pending", "{result:?}");
        } else {
            assert_eq!(result.outcome, "didnt_need", "a copy never sent is retired: {result:?}");
            assert_eq!(result.host_id, 0, "{result:?}");
        }
        assert_eq!(result.granted_credit, 0.0, "{result:?}");
    }
    assert_eq!(
        cancelled_hosts,
        host_names.keys().copied().collect::<BTreeSet<i64>>(),
        "each worker had its queued copy cancelled: {results:?}"
    );
    let statuses: Statuses = cli(&url, ["--json", "status", "spin"]).await.json();
    let status = &statuses.projects[0];
    assert_eq!((status.results_unsent, status.results_in_progress), (0, 0), "{status:?}");
    assert_eq!(status.results_valid, 0, "{status:?}");

    // Each worker dropped the copy it was told to abort (its journal holds
    // none queued or running: the abort is a DEBUG line, not in its log),
    // and is still running.
    for worker in &mut workers {
        let name = worker.name().to_owned();
        poll_until(&format!("{name} to drop the aborted copy"), Duration::from_millis(50), || async {
            let status = worker.command("status").await;
            let held = ids_in_state(&status, "queued").len() + ids_in_state(&status, "running").len();
            if held == 0 { Ok(()) } else { Err(status) }
        })
        .await;
        assert!(worker.is_running(), "{name} stopped after the cancel:\n{}", worker.log());
    }
    for host in projects.hosts().await {
        assert_eq!(host.n_in_progress, 0, "{host:?}");
        assert_eq!(host.n_valid, 0, "{host:?}");
    }
}
