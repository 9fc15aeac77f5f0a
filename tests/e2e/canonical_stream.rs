//! `StreamCanonicalResults` over real gRPC: a stream opened before any
//! worker runs receives every canonical result exactly once as two real
//! workers compute them, with increasing cursors, and ends once the project
//! has; a second stream from a cursor in the middle receives exactly the
//! rest; refused calls get precise codes.

use std::collections::BTreeSet;

use quorum_proto::v1;
use quorum_tests::grpc::Projects;
use quorum_tests::{STEP_TIMEOUT, Server, TestDir, Worker, cli, primes};
use tonic::Code;

const N_WORK_UNITS: u64 = 40;
const CHUNK: u64 = 500;

/// Every event of a stream from `after_cursor` until it ends.
async fn collect(projects: &Projects, project: &str, after_cursor: u64) -> Vec<v1::CanonicalResultEvent> {
    let mut stream = projects
        .client()
        .stream_canonical_results(v1::StreamCanonicalResultsRequest { project: project.to_owned(), after_cursor })
        .await
        .expect("StreamCanonicalResults")
        .into_inner();
    let mut events = Vec::new();
    let read = async {
        while let Some(event) = stream.message().await.expect("a canonical result event") {
            events.push(event);
        }
    };
    tokio::time::timeout(STEP_TIMEOUT, read).await.expect("the stream ends once the project has");
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canonical_results_stream_exactly_once_and_resume_from_a_cursor() {
    let dir = TestDir::new("canonical-stream");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let manifest = dir.write(
        "project.toml",
        primes::manifest("stream", 0, N_WORK_UNITS * CHUNK, CHUNK, "min_quorum = 2\ntarget_results = 2"),
    );
    cli(&url, ["submit", &manifest.display().to_string()]).await.success();
    let admin = Projects::connect(&url).await;

    // Opened before any host exists: everything arrives while it is open.
    let follower = {
        let admin = Projects::connect(&url).await;
        tokio::spawn(async move { collect(&admin, "stream", 0).await })
    };
    let _workers: Vec<Worker> = (1..=2).map(|n| Worker::spawn(&url, &dir.join(format!("worker-{n}")), 1)).collect();
    let events = follower.await.expect("the follower task");

    assert_eq!(events.len() as u64, N_WORK_UNITS, "one event per work unit");
    let names: BTreeSet<&str> =
        events.iter().map(|event| event.result.as_ref().expect("a result").work_unit_name.as_str()).collect();
    assert_eq!(names.len() as u64, N_WORK_UNITS, "each work unit exactly once");
    assert!(events.windows(2).all(|pair| pair[0].cursor < pair[1].cursor), "cursors increase");
    for event in &events {
        let result = event.result.as_ref().expect("a result");
        let expected = primes::expected_output(&result.work_unit_name);
        assert_eq!(result.output, expected.as_bytes(), "{}", result.work_unit_name);
    }
    // The same canonical results as the paged listing.
    let listed: BTreeSet<(i64, i64)> =
        admin.canonical_results("stream").await.iter().map(|c| (c.work_unit_id, c.result_id)).collect();
    let streamed: BTreeSet<(i64, i64)> = events
        .iter()
        .map(|event| event.result.as_ref().map(|c| (c.work_unit_id, c.result_id)).expect("a result"))
        .collect();
    assert_eq!(streamed, listed);

    // Resuming after the 15th event gives exactly the 25 after it; after the
    // last, nothing (the project has ended, so the stream ends at once).
    let rest = collect(&admin, "stream", events[14].cursor).await;
    assert_eq!(rest, events[15..].to_vec());
    assert_eq!(collect(&admin, "stream", events[events.len() - 1].cursor).await, vec![]);

    // Refusals, before any stream starts.
    let refused = |project: &str, token: Option<&str>| {
        let (url, project) = (url.clone(), project.to_owned());
        let token = token.map(str::to_owned);
        async move {
            let projects = Projects::connect_with_token(&url, token.as_deref()).await;
            let request = v1::StreamCanonicalResultsRequest { project, after_cursor: 0 };
            projects.client().stream_canonical_results(request).await.map(|_| ()).expect_err("refused")
        }
    };
    let status = refused("nope", Some(server.admin_token())).await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("nope"), "{status:?}");
    assert_eq!(refused("", Some(server.admin_token())).await.code(), Code::InvalidArgument);
    assert_eq!(refused("stream", None).await.code(), Code::Unauthenticated);
}
