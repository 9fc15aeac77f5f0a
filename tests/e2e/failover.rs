//! Workers that fail over between the addresses of one coordinator group:
//! a worker given `--server A,B` is one host there, whichever address
//! answers.
//!
//! - The coordinator at A is killed (SIGKILL) mid-project and a standby
//!   takes over the same SQLite database at B (A's lock went with it); the
//!   same worker process finishes the project through B, with the identity
//!   it registered at A: one host, every canonical result correct, its
//!   credit at B. Reports A never acknowledged are sent again to B, which
//!   acknowledges them once (reports are idempotent).
//! - A worker whose state directory knows only B (it ran with `--server B`)
//!   is started with `--server A,B` while A is down: it uses B at once and
//!   keeps its identity (no second registration).

use std::time::Duration;

use quorum_tests::cli::{Hosts, Statuses, Submitted};
use quorum_tests::grpc::Projects;
use quorum_tests::server::unused_addr;
use quorum_tests::{Server, TestDir, Worker, cli, primes};

/// Numbers near 10^9: tens of milliseconds of trial division per work unit,
/// so the project is still running when A is killed.
const START: u64 = 1_000_000_000;
const CHUNK: u64 = 10_000;
const N_WORK_UNITS: u64 = 60;
const POLICY: &str = "min_quorum = 1\ntarget_results = 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_fails_over_to_a_standby_coordinator_on_the_same_database() {
    let dir = TestDir::new("failover");
    let db = dir.join("quorum.db");
    let mut server_a = Server::spawn_with_db(dir.path(), &db);
    let url_a = server_a.url();
    // The standby's address, given to the worker before anything listens there.
    let addr_b = unused_addr();
    let url_b = format!("http://{addr_b}");
    let manifest =
        dir.write("project.toml", primes::manifest("primes", START, START + N_WORK_UNITS * CHUNK, CHUNK, POLICY));
    let submitted: Submitted = cli(&url_a, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, N_WORK_UNITS);

    let group = format!("{url_a},{url_b}");
    let mut worker = Worker::spawn_with(&[&group], &dir.join("worker"), 1, &[]);
    let host_at_a = {
        let projects = Projects::connect(&url_a).await;
        let before = projects
            .poll_status_until("primes", Duration::from_millis(5), "a fifth of the work units done", |status| {
                status.work_units_done >= N_WORK_UNITS / 5
            })
            .await;
        assert!(
            before.work_units_done < N_WORK_UNITS,
            "the project ended before the coordinator could be killed (make the work units slower): {before:?}"
        );
        let hosts = projects.hosts().await;
        assert_eq!(hosts.len(), 1, "{hosts:?}");
        hosts[0].id
    };
    server_a.kill();

    // The standby takes over the database at B: the same worker process
    // finishes the project there.
    let server_b = Server::spawn_at(dir.path(), &db, &addr_b);
    assert_eq!(server_b.url(), url_b);
    cli(&url_b, ["wait", "primes", "--timeout", "120s"]).await.success();
    let projects = Projects::connect(&url_b).await;
    // A lease whose answer the kill swallowed is sent again at the worker's
    // next request (it lists what it holds): wait for it to be reported.
    projects
        .poll_status_until("primes", Duration::from_millis(20), "no copy left in progress", |status| {
            status.results_in_progress == 0
        })
        .await;
    assert!(worker.is_running(), "the same worker process finished the project\n{}", worker.log());

    let statuses: Statuses = cli(&url_b, ["--json", "status", "primes"]).await.json();
    let status = &statuses.projects[0];
    assert_eq!(status.work_units_done, N_WORK_UNITS, "{status:?}");
    assert_eq!((status.work_units_open, status.work_units_failed), (0, 0), "{status:?}");
    assert_eq!((status.results_invalid, status.results_error, status.results_no_reply), (0, 0, 0), "{status:?}");
    let canonical = projects.canonical_results("primes").await;
    assert_eq!(canonical.len() as u64, N_WORK_UNITS, "one canonical result per work unit");
    for result in &canonical {
        assert_eq!(
            String::from_utf8_lossy(&result.output),
            primes::expected_output(&result.work_unit_name),
            "{result:?}"
        );
    }

    // One host, the one registered at A, with every valid result and its credit.
    let hosts: Hosts = cli(&url_b, ["--json", "hosts"]).await.json();
    assert_eq!(hosts.hosts.len(), 1, "failover registered no second host: {hosts:?}");
    let host = &hosts.hosts[0];
    assert_eq!(host.id, host_at_a, "{host:?}");
    assert_eq!(host.n_valid, N_WORK_UNITS, "{host:?}");
    assert_eq!((host.n_invalid, host.n_error, host.n_no_reply, host.n_in_progress), (0, 0, 0, 0), "{host:?}");
    assert!(host.total_credit > 0.0, "{host:?}");

    let log = worker.log();
    assert_eq!(log.matches("registered").count(), 1, "one registration, at A\n{log}");
    assert_eq!(
        log.matches(&format!("coordinator {url_a} down, using {url_b}")).count(),
        1,
        "the switch is said once\n{log}"
    );
    // The worker's status names the group by its first address and shows B in use.
    let worker_status = worker.command("status").await;
    assert!(
        worker_status.contains(&format!("{url_a} (host {host_at_a}, share 100, using {url_b} of {group})")),
        "{worker_status}"
    );
    assert!(worker_status.contains(" 0 running, 0 suspended, 0 queued, 0 to report,"), "{worker_status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_address_keeps_the_identity_and_a_worker_starting_while_the_first_is_down_uses_it() {
    let dir = TestDir::new("failover-start");
    let server_b = Server::spawn(dir.path());
    let url_b = server_b.url();
    let url_a = format!("http://{}", unused_addr());
    let group = format!("{url_a},{url_b}");
    let submit = async |name: &str| {
        let manifest = dir.write(format!("{name}.toml"), primes::manifest(name, 0, 2_000, 200, POLICY));
        cli(&url_b, ["submit", &manifest.display().to_string()]).await.success();
    };
    let hosts = async || -> Hosts { cli(&url_b, ["--json", "hosts"]).await.json() };

    // A worker attached to B alone, as before groups...
    let state_dir = dir.join("worker-1");
    submit("first").await;
    let mut alone = Worker::spawn(&url_b, &state_dir, 1);
    cli(&url_b, ["wait", "first", "--timeout", "120s"]).await.success();
    alone.terminate().await;
    let before = hosts().await;
    assert_eq!(before.hosts.len(), 1, "{before:?}");
    let host_id = before.hosts[0].id;

    // ...started again with A put first (A is down): the same host, at B,
    // where its last calls went (no registration, no switch to say).
    submit("second").await;
    let mut grouped = Worker::spawn_with(&[&group], &state_dir, 1, &[]);
    cli(&url_b, ["wait", "second", "--timeout", "120s"]).await.success();
    let after = hosts().await;
    assert_eq!(after.hosts.len(), 1, "no second registration: {after:?}");
    assert_eq!((after.hosts[0].id, after.hosts[0].n_valid), (host_id, 20), "{after:?}");
    let log = grouped.log();
    assert!(
        !log.contains("registered"),
        "the identity it had at B
{log}"
    );
    assert!(
        !log.contains(" down, using "),
        "B, in use at the last run, is kept
{log}"
    );
    // The attachment keeps its key (B, as it first attached), and shows B in use.
    let status = grouped.command("status").await;
    assert!(status.contains(&format!("{url_b} (host {host_id}, share 100, using {url_b} of {group})")), "{status}");
    grouped.terminate().await;

    // A new worker given A,B while A is down: B from its first call on,
    // one registration.
    submit("third").await;
    let fresh = Worker::spawn_with(&[&group], &dir.join("worker-2"), 1, &[]);
    cli(&url_b, ["wait", "third", "--timeout", "120s"]).await.success();
    let all = hosts().await;
    assert_eq!(all.hosts.len(), 2, "{all:?}");
    let new_host = all.hosts.iter().find(|host| host.id != host_id).expect("the new worker's host");
    assert_eq!(new_host.n_valid, 10, "{all:?}");
    let log = fresh.log();
    assert_eq!(log.matches("registered").count(), 1, "{log}");
    assert_eq!(log.matches(&format!("coordinator {url_a} down, using {url_b}")).count(), 1, "{log}");
    let status = fresh.command("status").await;
    assert!(
        status.contains(&format!("{url_a} (host {}, share 100, using {url_b} of {group})", new_host.id)),
        "{status}"
    );
}
