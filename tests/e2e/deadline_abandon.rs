//! A worker does not start a task that cannot meet its deadline at the speed
//! it measured: it gives the task up and tells the coordinator at once (a
//! client error naming the reason), so the work can go to another host
//! instead of waiting for the deadline to pass.
//!
//! The project's units take seconds (sumprimes over 800,000 numbers near
//! 10^9) and its deadline is one second. The worker's first task has no
//! estimate yet, so it runs (and is late); from then on the worker knows a
//! unit takes longer than a deadline allows, and abandons every task it gets
//! without running it.

use std::path::Path;
use std::time::Duration;

use quorum_tests::cli::Submitted;
use quorum_tests::grpc::Projects;
use quorum_tests::poll::poll_until;
use quorum_tests::{Server, TestDir, Worker, cli};

const N_WORK_UNITS: u64 = 12;
const START: u64 = 1_000_000_000;
const CHUNK: u64 = 800_000;
/// The message of an abandoned task (`worker/src/worker.rs`).
const ABANDONED: &str = "abandoned: cannot finish by the deadline at this host's speed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_that_cannot_meet_their_deadline_are_abandoned_unstarted() {
    let dir = TestDir::new("abandon");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/checkpoint/sumprimes.wasm");
    let manifest = dir.write(
        "project.toml",
        format!(
            "name = \"slow\"\napp = {:?}\ncheckpointing = true\n[policy]\nmin_quorum = 1\ntarget_results = 1\ndeadline = \"1s\"\n\
             max_error_results = 50\nmax_total_results = 60\n\
             [work_units]\nrange = {{ start = {START}, end = {}, chunk = {CHUNK} }}\n",
            app.display().to_string(),
            START + N_WORK_UNITS * CHUNK,
        ),
    );
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, N_WORK_UNITS);
    // One task buffered at a time: copies queued behind the first (late) task
    // would miss their deadlines waiting, and each missed deadline halves a
    // new host's small quota (`server/src/domain/trust.rs`).
    let worker = Worker::spawn_with(&[&url], &dir.join("worker"), 1, &["--buffer-low", "1", "--buffer-high", "1"]);

    let projects = Projects::connect(&url).await;
    let abandoned = poll_until("three tasks abandoned at the measured speed", Duration::from_millis(50), || async {
        let results = projects.results("slow").await;
        let abandoned: Vec<_> = results.into_iter().filter(|r| r.error_message.starts_with(ABANDONED)).collect();
        if abandoned.len() >= 3 { Ok(abandoned) } else { Err(format!("{abandoned:?}\n{}", worker.log())) }
    })
    .await;
    let log = worker.log();
    for result in &abandoned {
        assert_eq!(result.outcome, "client_error", "{result:?}");
        assert_eq!(result.fuel_used, 0, "never ran: {result:?}");
        let field = format!("result_id={} ", result.id);
        assert!(
            !log.lines().any(|line| line.contains("started result") && line.contains(&field)),
            "abandoned result {} was started\n{log}",
            result.id
        );
    }
}
