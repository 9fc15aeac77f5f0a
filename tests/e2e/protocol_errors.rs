//! The scheduler's answers to hosts that misbehave at the protocol level,
//! spoken directly over gRPC: reports for copies the host was not given,
//! conflicting and repeated reports, and calls without a valid token. Each
//! case checks that nothing changed on the coordinator's side.

use quorum_proto::v1;
use quorum_tests::cli::Submitted;
use quorum_tests::grpc::{Host, Projects, digest, scheduler_client, success_report, with_token};
use quorum_tests::{Server, TestDir, cli, primes};
use tonic::{Code, Request};

/// A server with one primes project of `n_work_units` (inputs "0 100\n"...)
/// and the given `[policy]` body.
async fn server_with_project(name: &str, n_work_units: u64, policy: &str) -> (TestDir, Server, Projects) {
    let dir = TestDir::new(name);
    let server = Server::spawn(dir.path());
    let manifest = dir.write("project.toml", primes::manifest("p", 0, n_work_units * 100, 100, policy));
    let submitted: Submitted = cli(&server.url(), ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, n_work_units);
    let projects = Projects::connect(&server.url()).await;
    (dir, server, projects)
}

/// A host's counters (not its contact time, which every call updates).
fn counters(host: &v1::HostInfo) -> (u64, u64, u64, u64, u64, f64) {
    (host.n_valid, host.n_invalid, host.n_error, host.n_no_reply, host.n_in_progress, host.total_credit)
}

#[tokio::test]
async fn report_for_a_copy_not_given_is_permission_denied() {
    let (_dir, server, projects) = server_with_project("not-given", 2, "min_quorum = 2").await;
    let mut alice = Host::register(&server.url(), "alice").await;
    let mut bob = Host::register(&server.url(), "bob").await;
    let work = alice.request_work(4).await.expect("RequestWork for alice");
    let alices = work.assignments.first().expect("alice got a copy").result_id;
    let status_before = projects.status("p").await;
    let results_before = projects.results("p").await;

    let error = bob.report(vec![success_report(alices, b"25\n")]).await.expect_err("bob reported alice's copy");
    assert_eq!(error.code(), Code::PermissionDenied, "{error:?}");

    assert_eq!(projects.status("p").await, status_before, "status unchanged");
    assert_eq!(projects.results("p").await, results_before, "results unchanged");
    let bob_info = projects.host(bob.id).await;
    assert_eq!(counters(&bob_info), (0, 0, 0, 0, 0, 0.0), "{bob_info:?}");
    // Alice can still report her copy.
    let accepted = alice.report(vec![success_report(alices, b"25\n")]).await.expect("alice reports her own copy");
    assert_eq!(accepted.accepted, vec![alices]);
}

#[tokio::test]
async fn conflicting_second_report_is_rejected() {
    let (_dir, server, projects) = server_with_project("conflict", 1, "min_quorum = 1\ntarget_results = 1").await;
    let mut alice = Host::register(&server.url(), "alice").await;
    let work = alice.request_work(1).await.expect("RequestWork for alice");
    let result_id = work.assignments.first().expect("alice got a copy").result_id;

    let first = alice.report(vec![success_report(result_id, b"25\n")]).await.expect("first report");
    assert_eq!(first.accepted, vec![result_id]);
    projects.wait("p").await;
    let status_before = projects.status("p").await;
    let host_before = projects.host(alice.id).await;

    let error =
        alice.report(vec![success_report(result_id, b"26\n")]).await.expect_err("a second report with another output");
    assert!(matches!(error.code(), Code::AlreadyExists | Code::FailedPrecondition), "{error:?}");

    let results = projects.results("p").await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].output_digest, digest(b"25\n"), "the first output stands");
    let canonical = projects.canonical_results("p").await;
    assert_eq!(canonical.len(), 1);
    assert_eq!(canonical[0].output, b"25\n");
    assert_eq!(projects.status("p").await, status_before);
    assert_eq!(counters(&projects.host(alice.id).await), counters(&host_before));
}

#[tokio::test]
async fn same_report_twice_is_counted_once() {
    let (_dir, server, projects) = server_with_project("twice", 1, "min_quorum = 1\ntarget_results = 1").await;
    let mut alice = Host::register(&server.url(), "alice").await;
    let work = alice.request_work(1).await.expect("RequestWork for alice");
    let result_id = work.assignments.first().expect("alice got a copy").result_id;
    let report = success_report(result_id, b"25\n");

    let first = alice.report(vec![report.clone()]).await.expect("first report");
    assert_eq!(first.accepted, vec![result_id]);
    projects.wait("p").await;
    let status_before = projects.status("p").await;
    let host_before = projects.host(alice.id).await;
    assert_eq!(host_before.n_valid, 1, "{host_before:?}");

    let second = alice.report(vec![report]).await.expect("the same report again");
    assert_eq!(second.accepted, vec![result_id], "accepted again (idempotent)");

    let results = projects.results("p").await;
    let successes: Vec<&v1::ResultInfo> = results.iter().filter(|result| result.outcome == "success").collect();
    assert_eq!(successes.len(), 1, "{results:?}");
    assert_eq!(projects.status("p").await, status_before);
    let host_after = projects.host(alice.id).await;
    assert_eq!(counters(&host_after), counters(&host_before), "{host_after:?}");
}

#[tokio::test]
async fn scheduler_calls_without_a_valid_token_are_unauthenticated() {
    let (_dir, server, projects) = server_with_project("no-token", 1, "min_quorum = 1").await;
    let mut client = scheduler_client(&server.url()).await;
    let status_before = projects.status("p").await;

    let error = client
        .request_work(Request::new(v1::RequestWorkRequest { slots: 1, ..Default::default() }))
        .await
        .expect_err("RequestWork without a token");
    assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");

    let error = client
        .request_work(with_token(v1::RequestWorkRequest { slots: 1, ..Default::default() }, "not-a-token"))
        .await
        .expect_err("RequestWork with a wrong token");
    assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");

    let error = client
        .report_results(Request::new(v1::ReportResultsRequest { reports: vec![success_report(1, b"25\n")] }))
        .await
        .expect_err("ReportResults without a token");
    assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");

    assert_eq!(projects.status("p").await, status_before, "nothing was sent");
}
