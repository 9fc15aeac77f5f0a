//! What a scientist sees when an app fails: `quorum results --all` lists
//! every copy with its state, host, error message and stderr tail (as a
//! table, JSON Lines and RFC 4180 CSV, filtered by state and batch), and
//! `quorum errors` groups the failures by message.
//!
//! A real worker runs an app that writes two lines to stderr (one with a
//! comma and quotes, to exercise CSV quoting) and exits with code 3.

use std::time::Duration;

use quorum_tests::cli::{Submitted, parse_csv, parse_jsonl};
use quorum_tests::grpc::Projects;
use quorum_tests::{Server, TestDir, Worker, cli};
use serde::Deserialize;

/// Writes `STDERR` to fd 2, then exits with code 3.
const FAIL_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "cannot parse input\nsee line 2, \"quoted\"\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 40))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (i32.const 3))))
"#;
const STDERR: &str = "cannot parse input\nsee line 2, \"quoted\"\n";
const PROJECT: &str = "broken";
/// How often the test asks the coordinator again (paces questions only).
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A line of `quorum results --all` (jsonl).
#[derive(Debug, Deserialize)]
struct Copy {
    result_id: i64,
    work_unit: String,
    batch_id: i64,
    state: String,
    outcome: String,
    host_id: i64,
    error_message: String,
    stderr_tail: String,
}

/// `quorum errors --json`.
#[derive(Debug, Deserialize)]
struct Errors {
    project: String,
    groups: Vec<ErrorGroup>,
}

#[derive(Debug, Deserialize)]
struct ErrorGroup {
    message: String,
    n_results: u64,
    n_hosts: u64,
    n_work_units: u64,
    example_work_units: Vec<String>,
    latest_result_id: i64,
    latest_stderr_tail: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_copies_are_listed_with_their_error_and_stderr_and_grouped_by_message() {
    let dir = TestDir::new("errors");
    let server = Server::spawn(dir.path());
    let url = server.url();
    dir.write("fail.wat", FAIL_WAT);
    let manifest = dir.write(
        "project.toml",
        format!(
            "name = \"{PROJECT}\"\napp = \"fail.wat\"\n[policy]\nmin_quorum = 1\nmax_error_results = 3\n\
             [work_units]\nrange = {{ start = 0, end = 6, chunk = 1 }}\n"
        ),
    );
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, 6);
    let none = cli(&url, ["errors", PROJECT]).await.success();
    assert_eq!(none, format!("no errors in project '{PROJECT}'\n"));

    // A lone host's app quota halves on each error: it fails a few copies,
    // then gets no more. Two errors are enough to group.
    let projects = Projects::connect(&url).await;
    let mut worker = Worker::spawn(&url, &dir.join("worker"), 1);
    let status =
        projects.poll_status_until(PROJECT, POLL_INTERVAL, "two errors", |status| status.results_error >= 2).await;
    let [batch_info] = status.batches.as_slice() else { panic!("one batch: {status:?}") };
    let batch = batch_info.id.to_string();
    assert!(worker.terminate().await.success(), "{}", worker.log());
    let all = projects.results(PROJECT).await;
    let errors: Vec<_> = all.iter().filter(|copy| copy.outcome == "client_error").collect();
    assert!(errors.len() >= 2, "{all:?}");

    // Every copy, in JSON Lines, then only the errors of the batch.
    let lines: Vec<Copy> = parse_jsonl(&cli(&url, ["results", PROJECT, "--all"]).await.success());
    assert_eq!(lines.len(), all.len(), "one line per copy: {lines:?}");
    let failed: Vec<Copy> =
        parse_jsonl(&cli(&url, ["results", PROJECT, "--all", "--state", "error", "--batch", &batch]).await.success());
    assert_eq!(
        failed.iter().map(|copy| copy.result_id).collect::<Vec<_>>(),
        errors.iter().map(|copy| copy.id).collect::<Vec<_>>(),
        "--state error lists exactly the failed copies"
    );
    for copy in &failed {
        assert_eq!((copy.state.as_str(), copy.outcome.as_str()), ("error", "client_error"), "{copy:?}");
        assert_eq!(copy.error_message, "exit code 3", "{copy:?}");
        assert_eq!(copy.stderr_tail, STDERR, "{copy:?}");
        assert_eq!(copy.batch_id, batch_info.id, "{copy:?}");
        assert!(copy.host_id > 0 && !copy.work_unit.is_empty(), "{copy:?}");
    }
    let states: Vec<&str> = lines.iter().map(|copy| copy.state.as_str()).collect();
    assert!(states.iter().all(|state| ["error", "unsent", "in_progress"].contains(state)), "{states:?}");

    // CSV: the stderr's newline, comma and quotes survive the round trip.
    let csv =
        parse_csv(&cli(&url, ["results", PROJECT, "--all", "--state", "error", "--format", "csv"]).await.success());
    let header = &csv[0];
    let column = |name: &str| header.iter().position(|field| field == name).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(csv.len(), failed.len() + 1, "a header and one record per failed copy: {csv:?}");
    for record in &csv[1..] {
        assert_eq!(record.len(), header.len(), "{record:?}");
        assert_eq!(record[column("stderr_tail")], STDERR);
        assert_eq!(record[column("error_message")], "exit code 3");
        assert_eq!(record[column("state")], "error");
    }

    // The table: one line per copy plus the header, each within 100 columns.
    let table = cli(&url, ["results", PROJECT, "--all", "--format", "table"]).await.success();
    assert_eq!(table.lines().count(), all.len() + 1, "{table}");
    assert!(table.lines().all(|line| line.chars().count() <= 100), "{table}");
    assert!(table.lines().filter(|line| line.contains("exit code 3")).count() == failed.len(), "{table}");

    // Grouped: one message, every failed copy, on one host.
    let grouped: Errors = cli(&url, ["--json", "errors", PROJECT]).await.json();
    assert_eq!(grouped.project, PROJECT);
    let [group] = grouped.groups.as_slice() else { panic!("one error group: {grouped:?}") };
    assert_eq!(group.message, "exit code 3");
    assert_eq!(group.n_results, failed.len() as u64);
    assert_eq!(group.n_hosts, 1);
    let failed_work_units: std::collections::BTreeSet<&str> =
        failed.iter().map(|copy| copy.work_unit.as_str()).collect();
    assert_eq!(group.n_work_units, failed_work_units.len() as u64);
    assert_eq!(group.example_work_units.len(), failed_work_units.len().min(3), "{group:?}");
    assert!(group.example_work_units.iter().all(|name| failed_work_units.contains(name.as_str())), "{group:?}");
    assert_eq!(group.latest_result_id, failed.last().expect("failed copies").result_id);
    assert_eq!(group.latest_stderr_tail, STDERR);
    let text = cli(&url, ["errors", PROJECT]).await.success();
    for expected in ["exit code 3", "| cannot parse input", "| see line 2, \"quoted\"", "from 1 host"] {
        assert!(text.contains(expected), "{expected:?} missing from\n{text}");
    }

    // Bad filters: a clear error, exit code 2.
    let unknown_batch = cli(&url, ["results", PROJECT, "--all", "--batch", "999"]).await.failure();
    assert!(unknown_batch.contains("batch 999") && unknown_batch.contains("not found"), "{unknown_batch}");
    let unknown_state = cli(&url, ["results", PROJECT, "--all", "--state", "broken"]).await;
    assert_eq!(unknown_state.code(), Some(2), "{unknown_state}");
    assert!(unknown_state.stderr().contains("invalid value 'broken'"), "{unknown_state}");
    let without_all = cli(&url, ["results", PROJECT, "--state", "error"]).await;
    assert_eq!(without_all.code(), Some(2), "--state needs --all: {without_all}");
}
