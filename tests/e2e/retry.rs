//! `quorum retry` and `quorum purge`: a host played over gRPC reports a client
//! error for one copy of a project that tolerates no errors, so its work unit
//! fails; `quorum retry` with a more lenient policy reopens it as a new batch,
//! a second host computes it and the project completes. `quorum purge` then
//! purges every ended work unit while `quorum results` still reads the
//! canonical results. Also: retrying a work unit that has not failed, and
//! cancelling a batch that does not exist, fail with the server's message.

use std::collections::BTreeMap;
use std::time::Duration;

use quorum_proto::v1;
use quorum_tests::cli::{ResultLine, Retried, Statuses, Submitted, parse_jsonl};
use quorum_tests::grpc::{Host, Projects, success_report};
use quorum_tests::poll::poll_until;
use quorum_tests::{Server, TestDir, cli, primes};

const PROJECT: &str = "retry";
const N_WORK_UNITS: u64 = 3;
const CHUNK: u64 = 1_000;

/// A client error report for `result_id`: the app trapped, no output.
fn client_error_report(result_id: i64) -> v1::ResultReport {
    v1::ResultReport {
        outcome: v1::ReportedOutcome::ClientError.into(),
        output: Vec::new(),
        error_message: "wasm trap: unreachable".to_owned(),
        ..quorum_tests::grpc::success_report(result_id, b"")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_a_failed_work_unit_then_purge() {
    let dir = TestDir::new("retry");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let manifest = dir.write(
        "project.toml",
        primes::manifest(PROJECT, 0, N_WORK_UNITS * CHUNK, CHUNK, "min_quorum = 1\nmax_error_results = 0"),
    );
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, N_WORK_UNITS);
    let projects = Projects::connect(&url).await;

    // Alice takes the one copy of every work unit; the first one's copy ends
    // in a client error, the others succeed.
    let mut alice = Host::register(&url, "alice").await;
    let work = alice.request_work(N_WORK_UNITS as u32).await.expect("RequestWork for alice");
    let assignments: BTreeMap<i64, v1::Assignment> =
        work.assignments.into_iter().map(|assignment| (assignment.work_unit_id, assignment)).collect();
    assert_eq!(assignments.len() as u64, N_WORK_UNITS, "one copy of each work unit: {assignments:?}");
    let failing = assignments.values().next().expect("three assignments").clone();
    let reports: Vec<v1::ResultReport> = assignments
        .values()
        .map(|assignment| {
            if assignment.result_id == failing.result_id {
                client_error_report(assignment.result_id)
            } else {
                success_report(assignment.result_id, primes::expected_output(&assignment.work_unit_name).as_bytes())
            }
        })
        .collect();
    let response = alice.report(reports).await.expect("ReportResults for alice");
    assert_eq!(response.accepted.len() as u64, N_WORK_UNITS, "{response:?}");

    // With no error allowed, that work unit fails; the others are done.
    let failing_id = failing.work_unit_id;
    poll_until("the work units to end", Duration::from_millis(20), || async {
        let work_units = projects.work_units(PROJECT).await;
        let ended = work_units.iter().all(|work_unit| work_unit.state != "open");
        if ended { Ok(()) } else { Err(format!("{work_units:?}")) }
    })
    .await;
    for work_unit in projects.work_units(PROJECT).await {
        let expected = if work_unit.id == failing_id { ("failed", "too_many_errors") } else { ("done", "") };
        assert_eq!((work_unit.state.as_str(), work_unit.fail_reason.as_str()), expected, "{work_unit:?}");
    }

    // Only failed work units can be retried: the server's message is shown.
    let done_id = assignments.keys().nth(1).expect("three work units").to_string();
    let stderr = cli(&url, ["retry", PROJECT, "--work-unit", &done_id]).await.failure();
    assert!(stderr.contains("not failed") && stderr.contains("(FAILED_PRECONDITION)"), "{stderr}");

    // Retry it as a new batch that tolerates errors.
    let failing_arg = failing_id.to_string();
    let retried: Retried =
        cli(&url, ["--json", "retry", PROJECT, "--work-unit", &failing_arg, "--max-error-results", "2"]).await.json();
    assert_eq!((retried.project.as_str(), retried.n_work_units), (PROJECT, 1), "{retried:?}");
    let statuses: Statuses = cli(&url, ["--json", "status", PROJECT]).await.json();
    let status = &statuses.projects[0];
    assert_eq!(status.batches.len(), 2, "{status:?}");
    let new_batch = status.batches.iter().find(|batch| batch.id == retried.batch_id).expect("the new batch is listed");
    assert_eq!((new_batch.n_work_units, new_batch.n_ended), (1, 0), "{status:?}");
    assert_eq!((status.work_units_open, status.work_units_done, status.work_units_failed), (1, 2, 0), "{status:?}");
    let project_policy = projects.status(PROJECT).await.policy.expect("the project has a policy");
    assert_eq!(project_policy.max_error_results, 0, "the project's own policy is unchanged: {project_policy:?}");

    // A second host gets a fresh copy of it (alice already had one) and
    // reports the right output: the project completes.
    let mut bob = Host::register(&url, "bob").await;
    let work = bob.request_work(N_WORK_UNITS as u32).await.expect("RequestWork for bob");
    let [fresh] = work.assignments.as_slice() else {
        panic!("bob gets exactly the retried work unit's copy: {work:?}");
    };
    assert_eq!(fresh.work_unit_id, failing_id, "{fresh:?}");
    assert_ne!(fresh.result_id, failing.result_id, "a new copy: {fresh:?}");
    let output = primes::expected_output(&fresh.work_unit_name);
    let response = bob.report(vec![success_report(fresh.result_id, output.as_bytes())]).await.expect("ReportResults");
    assert_eq!(response.accepted, vec![fresh.result_id], "{response:?}");
    let statuses: Statuses = cli(&url, ["--json", "wait", PROJECT, "--timeout", "120s"]).await.json();
    let status = &statuses.projects[0];
    assert_eq!((status.work_units_done, status.work_units_failed), (N_WORK_UNITS, 0), "{status:?}");

    // Purge: every work unit has ended; the canonical results stay readable.
    let stdout = cli(&url, ["purge", PROJECT]).await.success();
    assert_eq!(stdout, format!("purged {N_WORK_UNITS} ended work units of project '{PROJECT}'\n"));
    let lines: Vec<ResultLine> = parse_jsonl(&cli(&url, ["results", PROJECT]).await.success());
    assert_eq!(lines.len() as u64, N_WORK_UNITS, "{lines:?}");
    for line in &lines {
        let expected = primes::expected_output(&line.work_unit);
        assert_eq!(line.output.as_deref(), Some(expected.as_str()), "canonical output of {}", line.work_unit);
    }

    // Cancelling a batch that does not exist changes nothing.
    let stderr = cli(&url, ["cancel", PROJECT, "--batch", "99"]).await.failure();
    assert!(stderr.contains("not found"), "{stderr}");
    let status = projects.status(PROJECT).await;
    assert_eq!((status.state.as_str(), status.work_units_done), ("active", N_WORK_UNITS), "{status:?}");
}
