//! One worker alone, with several projects at quorum 2: it computes one copy
//! of every work unit of every project (all it may take: never two copies of
//! one work unit to one host) and then waits only because the rest needs
//! another host. A second worker then completes everything.

use std::time::Duration;

use quorum_tests::cli::Submitted;
use quorum_tests::grpc::Projects;
use quorum_tests::{Server, TestDir, Worker, cli, primes};

// 19 copies in all: within a new host's daily quota (20).
const PROJECTS: [(&str, u64); 3] = [("first", 5), ("second", 8), ("third", 6)];
const CHUNK: u64 = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_worker_computes_every_copy_it_may_take_in_every_project() {
    let dir = TestDir::new("lone-worker");
    let server = Server::spawn(dir.path());
    let url = server.url();
    for (name, n) in PROJECTS {
        let manifest = dir.write(
            format!("{name}.toml"),
            primes::manifest(name, 0, n * CHUNK, CHUNK, "min_quorum = 2\ndeadline = \"1h\""),
        );
        let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
        assert_eq!(submitted.n_work_units, n);
    }
    let projects = Projects::connect(&url).await;
    let _lone = Worker::spawn(&url, &dir.join("lone"), 1);
    for (name, n) in PROJECTS {
        let status = projects
            .poll_status_until(name, Duration::from_millis(20), "one copy of every work unit reported", |status| {
                status.results_over >= n
            })
            .await;
        assert_eq!(status.results_over, n, "{name}: exactly one copy per work unit went to the lone host: {status:?}");
        assert_eq!(status.results_error, 0, "{status:?}");
    }
    // Nothing else it may take: every copy left is a second copy of a work
    // unit it computed, unsent, waiting for another host.
    for (name, n) in PROJECTS {
        let status = projects.status(name).await;
        assert_eq!((status.results_unsent, status.results_in_progress), (n, 0), "{name}: {status:?}");
        assert_eq!(status.work_units_open, n, "{status:?}");
    }
    let _second = Worker::spawn(&url, &dir.join("second"), 1);
    for (name, n) in PROJECTS {
        let status = projects.wait(name).await;
        assert_eq!((status.work_units_done, status.results_valid), (n, 2 * n), "{name}: {status:?}");
    }
}
