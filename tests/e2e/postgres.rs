//! The coordinator on PostgreSQL (`--db postgres://... --data-dir DIR`), as
//! an operator runs it: a full quorum-2 project computed by two workers,
//! the coordinator SIGKILLed in the middle and started again on the same
//! database (the workers go on, nothing acknowledged is lost, every work
//! unit gets its correct canonical result), and a second coordinator on the
//! same database refused while the first one serves.

use quorum_tests::cli::{ResultLine, Statuses, parse_jsonl};
use quorum_tests::postgres::Database;
use quorum_tests::{Server, TestDir, Worker, cli, primes};

const N_WORK_UNITS: u64 = 100;
const CHUNK: u64 = 50_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_2_project_survives_a_coordinator_kill_on_postgres() {
    let dir = TestDir::new("postgres");
    let database = Database::create();
    let mut server = Server::spawn_postgres(dir.path(), &database, "127.0.0.1:0");
    let url = server.url();
    let manifest = dir.write(
        "project.toml",
        primes::manifest("primes", 0, N_WORK_UNITS * CHUNK, CHUNK, "min_quorum = 2\ntarget_results = 2"),
    );
    cli(&url, ["submit", &manifest.display().to_string()]).await.success();
    let workers: Vec<Worker> = (1..=2).map(|n| Worker::spawn(&url, &dir.join(format!("worker-{n}")), 1)).collect();

    // Once some work units are done, the coordinator dies without warning.
    quorum_tests::poll::poll_until("some work units done", std::time::Duration::from_millis(50), || async {
        let statuses: Statuses = cli(&url, ["--json", "status", "primes"]).await.json();
        let done = statuses.projects[0].work_units_done;
        if done >= 5 { Ok(()) } else { Err(format!("{done} done")) }
    })
    .await;
    let addr = server.addr().to_owned();
    server.kill();

    // A second coordinator cannot serve the database while one does; here
    // the first is dead, so a new one starts where the workers point.
    let server = Server::spawn_postgres(dir.path(), &database, &addr);
    let other = TestDir::new("postgres-second");
    let refused = std::process::Command::new(quorum_tests::binaries::path(quorum_tests::binaries::SERVER))
        .args(["--listen", "127.0.0.1:0", "--db", database.url(), "--data-dir"])
        .arg(other.join("data"))
        .output()
        .expect("run a second quorum-server");
    assert!(!refused.status.success(), "a second coordinator on the same database is refused");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("another quorum-server is serving"), "{stderr}");

    cli(&url, ["wait", "primes", "--timeout", "180s"]).await.success();
    let lines: Vec<ResultLine> = parse_jsonl(&cli(&url, ["results", "primes"]).await.success());
    assert_eq!(lines.len() as u64, N_WORK_UNITS, "one canonical result per work unit");
    for line in &lines {
        let expected = primes::expected_output(&line.work_unit);
        assert_eq!(line.output.as_deref(), Some(expected.as_str()), "canonical output of {}", line.work_unit);
    }
    let statuses: Statuses = cli(&url, ["--json", "status", "primes"]).await.json();
    assert_eq!(statuses.projects[0].work_units_done, N_WORK_UNITS);
    drop(workers);
    drop(server);
}
