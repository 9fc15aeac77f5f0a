//! Moving a project from SQLite to PostgreSQL (`quorum-server migrate`), as
//! an operator does it: a quorum-2 project half done on the embedded SQLite
//! coordinator, the coordinator stopped (SIGTERM), the database migrated by
//! the real command, a PostgreSQL coordinator started where the workers
//! point, and the same worker processes finish the project: every canonical
//! result correct, the same hosts (no worker registered again), their credit
//! carried over and grown.

use std::collections::BTreeMap;
use std::time::Duration;

use quorum_tests::cli::{Hosts, Statuses};
use quorum_tests::grpc::Projects;
use quorum_tests::postgres::Database;
use quorum_tests::{Server, TestDir, Worker, binaries, cli, primes};
use sqlx::Connection as _;

const N_WORK_UNITS: u64 = 100;
const CHUNK: u64 = 50_000;

/// The hosts in a coordinator's database, by id, with their credit.
const HOSTS_CREDIT: &str = "SELECT id, total_credit FROM hosts";

/// The hosts `quorum hosts` lists, by id, with their credit.
async fn credit_by_host(url: &str) -> BTreeMap<i64, f64> {
    let hosts: Hosts = cli(url, ["--json", "hosts"]).await.json();
    hosts.hosts.iter().map(|host| (host.id, host.total_credit)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_half_done_on_sqlite_is_finished_on_postgres_by_the_same_workers() {
    let dir = TestDir::new("migrate");
    let db = dir.join("quorum.db");
    let mut sqlite_server = Server::spawn_with_db(dir.path(), &db);
    let addr = sqlite_server.addr().to_owned();
    let url = sqlite_server.url();
    let manifest = dir.write(
        "project.toml",
        primes::manifest("primes", 0, N_WORK_UNITS * CHUNK, CHUNK, "min_quorum = 2\ntarget_results = 2"),
    );
    cli(&url, ["submit", &manifest.display().to_string()]).await.success();
    let workers: Vec<Worker> = (1..=2).map(|n| Worker::spawn(&url, &dir.join(format!("worker-{n}")), 1)).collect();

    let projects = Projects::connect(&url).await;
    projects
        .poll_status_until("primes", Duration::from_millis(50), "a tenth of the work units done", |status| {
            status.work_units_done >= N_WORK_UNITS / 10
        })
        .await;
    let exit = sqlite_server.terminate().await;
    assert!(exit.success(), "the SQLite coordinator stops cleanly on SIGTERM: {exit:?}");
    drop(projects);

    // What the stopped coordinator holds, read from its file.
    let mut sqlite = sqlx::SqliteConnection::connect(&format!("sqlite:{}?mode=ro", db.display())).await.unwrap();
    let hosts_before: BTreeMap<i64, f64> =
        sqlx::query_as(HOSTS_CREDIT).fetch_all(&mut sqlite).await.unwrap().into_iter().collect();
    let done_before: i64 = sqlx::query_scalar("SELECT count(*) FROM work_units WHERE state = 'done'")
        .fetch_one(&mut sqlite)
        .await
        .unwrap();
    sqlite.close().await.unwrap();
    assert!(
        (done_before as u64) < N_WORK_UNITS,
        "the project ended before the coordinator was stopped (make the work units slower): {done_before} done"
    );
    assert_eq!(hosts_before.len(), 2, "one host per worker: {hosts_before:?}");
    assert!(hosts_before.values().all(|credit| *credit > 0.0), "both hosts earned credit: {hosts_before:?}");

    let database = Database::create();
    let data = dir.join("data");
    let migrated = tokio::process::Command::new(binaries::path(binaries::SERVER))
        .arg("migrate")
        .arg("--from")
        .arg(&db)
        .args(["--to", database.url()])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .await
        .expect("run quorum-server migrate");
    let stdout = String::from_utf8_lossy(&migrated.stdout);
    let stderr = String::from_utf8_lossy(&migrated.stderr);
    assert!(migrated.status.success(), "quorum-server migrate failed: {stdout}\n{stderr}");
    eprintln!("migrated with {done_before} of {N_WORK_UNITS} work units done:\n{stdout}");
    for table in ["hosts", "results", "work_units", "api_tokens", "canonical_log"] {
        let line = stdout.lines().find(|line| line.starts_with(&format!("{table} "))).unwrap_or_else(|| {
            panic!("no line for {table} in the migration's table:\n{stdout}");
        });
        assert!(line.contains("verified"), "{line}");
    }
    assert!(stdout.contains("next: quorum-server --db postgres://"), "{stdout}");
    assert!(data.join("quorum.admin-token").is_file(), "the admin token moved to the data folder");
    let mut postgres = sqlx::PgConnection::connect(database.url()).await.unwrap();
    let copied: BTreeMap<i64, f64> =
        sqlx::query_as(HOSTS_CREDIT).fetch_all(&mut postgres).await.unwrap().into_iter().collect();
    assert_eq!(copied, hosts_before, "the hosts and their credit copied exactly");
    postgres.close().await.unwrap();

    // A second migration into the same database is refused: it holds data now.
    let again = std::process::Command::new(binaries::path(binaries::SERVER))
        .arg("migrate")
        .arg("--from")
        .arg(&db)
        .args(["--to", database.url()])
        .arg("--data-dir")
        .arg(dir.join("data-2"))
        .output()
        .expect("run quorum-server migrate again");
    assert!(!again.status.success(), "a second migration into a database holding data is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds quorum data"), "{again:?}");

    // The PostgreSQL coordinator, where the workers point, with the SQLite
    // coordinator's admin token (the harness reads it from the data folder).
    let postgres_server = Server::spawn_postgres(dir.path(), &database, &addr);
    assert_eq!(postgres_server.url(), url, "the PostgreSQL coordinator listens where the workers point");
    let after_start: Statuses = cli(&url, ["--json", "status", "primes"]).await.json();
    assert!(after_start.projects[0].work_units_done >= done_before as u64, "{after_start:?}");
    cli(&url, ["wait", "primes", "--timeout", "180s"]).await.success();

    let projects = Projects::connect(&url).await;
    let canonical = projects.canonical_results("primes").await;
    assert_eq!(canonical.len() as u64, N_WORK_UNITS, "one canonical result per work unit");
    let distinct: std::collections::BTreeSet<i64> = canonical.iter().map(|result| result.work_unit_id).collect();
    assert_eq!(distinct.len() as u64, N_WORK_UNITS, "no work unit has two canonical results");
    for result in &canonical {
        assert_eq!(
            String::from_utf8_lossy(&result.output),
            primes::expected_output(&result.work_unit_name),
            "{result:?}"
        );
    }
    let statuses: Statuses = cli(&url, ["--json", "status", "primes"]).await.json();
    let status = &statuses.projects[0];
    assert_eq!((status.work_units_done, status.work_units_failed), (N_WORK_UNITS, 0), "{status:?}");

    // The same hosts: no worker registered again; their credit carried over and grew.
    let hosts_after = credit_by_host(&url).await;
    assert_eq!(
        hosts_after.keys().collect::<Vec<_>>(),
        hosts_before.keys().collect::<Vec<_>>(),
        "the same host ids before and after: {hosts_before:?} {hosts_after:?}"
    );
    for (host, credit) in &hosts_after {
        assert!(*credit >= hosts_before[host], "host {host}'s credit carried over: {hosts_before:?} {hosts_after:?}");
    }
    let total = |hosts: &BTreeMap<i64, f64>| hosts.values().sum::<f64>();
    assert!(total(&hosts_after) > total(&hosts_before), "credit grew: {hosts_before:?} {hosts_after:?}");
    drop(workers);
    drop(postgres_server);
}
