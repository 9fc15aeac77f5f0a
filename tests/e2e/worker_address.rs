//! How the worker takes a coordinator's address: a bare `HOST:PORT` is an
//! http:// coordinator (the worker registers and computes), and an address
//! it cannot use is refused at start, naming what is expected, instead of
//! being retried forever as an unreachable coordinator.

use std::process::Command;

use quorum_tests::grpc::Projects;
use quorum_tests::{Server, TestDir, Worker, binaries, cli, primes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_host_and_port_is_a_coordinator_and_another_scheme_is_refused_at_start() {
    let dir = TestDir::new("worker-address");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let manifest = dir.write("project.toml", primes::manifest("p", 0, 200, 100, "min_quorum = 1"));
    cli(&url, ["submit", &manifest.display().to_string()]).await.success();

    let refused = Command::new(binaries::path(binaries::WORKER))
        .args(["--server", &format!("ftp://{}", server.addr()), "--state-dir"])
        .arg(dir.join("refused"))
        .output()
        .expect("run quorum-worker");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "a usage error: {stderr}");
    assert!(stderr.contains("has the scheme \"ftp\": expected http://HOST:PORT"), "{stderr}");

    // `127.0.0.1:PORT`, as people type it.
    let mut worker = Worker::spawn(server.addr(), &dir.join("bare"), 1);
    let done = Projects::connect(&url).await.wait("p").await;
    assert_eq!(done.work_units_done, 2, "{done:?}");
    assert!(worker.terminate().await.success(), "{}", worker.log());
    assert!(!worker.log().contains("invalid URI"), "{}", worker.log());
}
