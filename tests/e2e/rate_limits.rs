//! Rate limits over real gRPC: a host flooding the scheduler beyond its
//! request rate gets RESOURCE_EXHAUSTED with a retry hint while another host
//! is still served, and registrations from one address beyond their burst
//! are refused the same way. The rates are set so low (one token per 1,000 s)
//! that no refill can happen during the test: no timing is assumed.

use std::ffi::OsStr;

use quorum_proto::v1;
use quorum_tests::grpc::{Host, Projects, scheduler_client};
use quorum_tests::{Server, TestDir, cli, primes};
use tonic::Code;

#[tokio::test]
async fn a_flooding_host_is_limited_and_another_host_is_still_served() {
    let dir = TestDir::new("rate-limits");
    let args: Vec<&OsStr> =
        ["--host-rate", "0.001", "--host-burst", "5", "--register-rate", "0.001", "--register-burst", "2"]
            .into_iter()
            .map(OsStr::new)
            .collect();
    let server = Server::spawn_with_args(dir.path(), &dir.join("quorum.db"), "127.0.0.1:0", &args);
    let url = server.url();
    let manifest = dir.write("project.toml", primes::manifest("p", 0, 1000, 100, "min_quorum = 1\ntarget_results = 1"));
    cli(&url, ["submit", &manifest.display().to_string()]).await.success();
    let projects = Projects::connect(&url).await;

    let mut flooder = Host::register(&url, "flooder").await;
    let mut patient = Host::register(&url, "patient").await;

    // A third registration from this address is over the burst of 2.
    let error = scheduler_client(&url)
        .await
        .register_host(v1::RegisterHostRequest {
            name: "third".to_owned(),
            n_cpus: 1,
            engine: quorum_tests::grpc::ENGINE.to_owned(),
            ..Default::default()
        })
        .await
        .expect_err("a registration over the limit");
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    assert!(error.metadata().get("retry-after-ms").is_some(), "{error:?}");
    assert_eq!(projects.hosts().await.len(), 2, "the third host was not registered");

    // The flooder's burst of 5 requests, then refusals with a retry hint.
    let mut n_served = 0;
    let mut refusals = Vec::new();
    for _ in 0..20 {
        match flooder.request_work(1).await {
            Ok(_) => n_served += 1,
            Err(status) => refusals.push(status),
        }
    }
    assert_eq!(n_served, 5, "{refusals:?}");
    assert_eq!(refusals.len(), 15);
    for status in &refusals {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let retry: u64 = status
            .metadata()
            .get("retry-after-ms")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("a retry-after-ms hint: {status:?}"));
        assert!(retry > 0, "{status:?}");
    }
    let held = projects.results("p").await.iter().filter(|result| result.host_id == flooder.id).count();
    assert_eq!(held, 5, "refused requests leased nothing");

    // The other host is served as usual.
    let work = patient.request_work(2).await.expect("the patient host is served");
    assert_eq!(work.assignments.len(), 2, "{work:?}");
}
