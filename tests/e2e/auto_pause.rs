//! A batch whose app always fails is paused automatically once its first
//! results are mostly errors (`server/src/domain/batch.rs`): real workers get
//! no more copies of it, its remaining work units stay open, `quorum status`
//! shows it paused with the reason, and `quorum resume` schedules it again.
//!
//! The app exits with code 3 at once, so every report is an error, and the
//! same error from three distinct hosts with no success is the app's fault:
//! the batch pauses long before its 40 work units could all fail (each takes
//! three errors).
//!
//! Four workers: one host alone (or two) cannot pause a batch, and a host's
//! quota for an app halves on each of its errors in that app
//! (`server/src/domain/trust.rs`), so each worker gets only a few copies of
//! the failing app. For the same reason the workers getting nothing more
//! proves little on its own: a fresh host, with its whole quota, asks while
//! the batch is paused and gets nothing, then asks after the resume and gets a copy.

use std::time::Duration;

use quorum_tests::cli::{Resumed, Statuses, Submitted};
use quorum_tests::grpc::{Host, Projects};
use quorum_tests::{Server, TestDir, Worker, cli};

/// A WASI command that exits with code 3 without doing anything.
const FAIL_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $proc_exit (i32.const 3))))
"#;

const PROJECT: &str = "failing";
const N_WORK_UNITS: u64 = 40;
/// Enough one-CPU workers for errors from three distinct hosts (see above).
const WORKERS: [&str; 4] = ["worker-a", "worker-b", "worker-c", "worker-d"];
/// How often the test asks the coordinator again (paces questions only).
const POLL_INTERVAL: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_is_paused_then_resumed() {
    let dir = TestDir::new("auto-pause");
    let server = Server::spawn(dir.path());
    let url = server.url();
    dir.write("fail.wat", FAIL_WAT);
    let manifest = dir.write(
        "project.toml",
        format!(
            "name = \"{PROJECT}\"\napp = \"fail.wat\"\n[policy]\nmin_quorum = 2\nmax_error_results = 3\n\
             [work_units]\nrange = {{ start = 0, end = {N_WORK_UNITS}, chunk = 1 }}\n"
        ),
    );
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, N_WORK_UNITS);
    let projects = Projects::connect(&url).await;

    let mut workers: Vec<Worker> = WORKERS.iter().map(|name| Worker::spawn(&url, &dir.join(name), 1)).collect();
    let paused = projects
        .poll_status_until(PROJECT, POLL_INTERVAL, "the batch to be paused", |status| {
            status.batches.iter().any(|batch| batch.state == "paused")
        })
        .await;
    assert_eq!(paused.batches.len(), 1, "one submission call, one batch: {paused:?}");
    let batch_id = paused.batches[0].id;

    // The CLI shows the pause and its reason, for programs and for people.
    let statuses: Statuses = cli(&url, ["--json", "status", PROJECT]).await.json();
    let status = &statuses.projects[0];
    assert_eq!(status.validator, "bitwise", "{status:?}");
    assert_eq!(status.batches.len(), 1, "{status:?}");
    let batch = &status.batches[0];
    assert_eq!((batch.id, batch.state.as_str(), batch.n_work_units), (batch_id, "paused", N_WORK_UNITS), "{batch:?}");
    assert!(batch.pause_reason.contains("errors"), "{batch:?}");
    // The operator's log says it too, at WARN, with the batch and the reason.
    let log = server.log();
    let line = log.lines().find(|line| line.contains("pausing a batch")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains(" WARN ") && line.contains(&format!("batch_id={batch_id}")), "{line}");
    let table = cli(&url, ["--wide", "status", PROJECT]).await.success();
    assert!(table.contains("bitwise"), "{table}");
    assert!(table.contains(&format!("batch {batch_id} is paused")) && table.contains(&batch.pause_reason), "{table}");

    // The copies held at the pause are reported; then the workers get no more.
    let drained = projects
        .poll_status_until(PROJECT, POLL_INTERVAL, "the copies in progress to be reported", |status| {
            status.results_in_progress == 0
        })
        .await;
    let status = projects.status(PROJECT).await;
    assert_eq!(status.results_in_progress, 0, "no copy of a paused batch is sent: {status:?}");
    assert!(status.results_unsent > 0, "the paused batch still has copies to send: {status:?}");
    assert_eq!(status.results_unsent, drained.results_unsent, "{status:?}");
    assert!(status.work_units_open > 0, "the project is not finished: {status:?}");
    assert_eq!(status.work_units_open, drained.work_units_open, "the remaining work units stay open: {status:?}");
    assert_eq!(status.work_units_done, 0, "{status:?}");
    assert_eq!(status.work_units_open + status.work_units_failed, N_WORK_UNITS, "{status:?}");
    for host in projects.hosts().await {
        assert_eq!((host.n_in_progress, host.n_valid), (0, 0), "{host:?}");
    }
    for work_unit in projects.work_units(PROJECT).await {
        assert!(matches!(work_unit.state.as_str(), "open" | "failed"), "{work_unit:?}");
    }
    // A host with its whole quota gets nothing either: the pause, not the
    // workers' quotas, holds the copies back.
    let mut fresh_host = Host::register(&url, "fresh-host").await;
    let assignments = fresh_host.request_work(1).await.expect("RequestWork").assignments;
    assert!(assignments.is_empty(), "a paused batch is not scheduled: {assignments:?}");

    // Stop the workers before resuming: they would fail the resumed batch's
    // next copies at once and could pause it again before the test looks.
    for worker in &mut workers {
        let exit = worker.terminate().await;
        assert!(exit.success(), "quorum-worker exits 0 on SIGTERM, got {exit}\n{}", worker.log());
    }

    let resumed: Resumed = cli(&url, ["--json", "resume", PROJECT]).await.json();
    assert_eq!((resumed.project.as_str(), resumed.n_batches_resumed), (PROJECT, 1));
    let statuses: Statuses = cli(&url, ["--json", "status", PROJECT]).await.json();
    let batch = &statuses.projects[0].batches[0];
    assert_eq!((batch.id, batch.state.as_str(), batch.pause_reason.as_str()), (batch_id, "active", ""), "{batch:?}");
    let table = cli(&url, ["status", PROJECT]).await.success();
    assert!(!table.contains("is paused"), "{table}");
    let again = cli(&url, ["resume", PROJECT, "--batch", &batch_id.to_string()]).await.success();
    assert_eq!(again, format!("resumed 0 paused batches of project '{PROJECT}'\n"), "nothing left to resume");

    // Its copies are sent again.
    let assignments = fresh_host.request_work(1).await.expect("RequestWork").assignments;
    assert_eq!(assignments.len(), 1, "a resumed batch is scheduled: {assignments:?}");
    let status = projects.status(PROJECT).await;
    assert_eq!(status.results_in_progress, 1, "{status:?}");
}
