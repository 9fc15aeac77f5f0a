//! A worker is killed with SIGKILL while it holds finished results it could
//! not report (the coordinator was down) and tasks that had checkpointed,
//! then restarted on the same state directory. From its journal it reports
//! the finished results exactly once (they are not run again), resumes the
//! interrupted tasks from their checkpoints (not from zero: their fuel is
//! below a whole run's), and a second, never interrupted worker's copies
//! agree with every one of them byte for byte. Nothing is lost or reissued:
//! every work unit ends with exactly its two copies, both valid.
//!
//! To catch the worker in that state without racing it, the test pauses it
//! (`quorum-worker pause`) once it holds both kinds of task, then kills it;
//! the pause is kept in the journal, so the restarted worker starts paused
//! until `quorum-worker resume`.
//!
//! On two coordinators over one PostgreSQL database, the worker is given
//! both addresses and both coordinators die; only the second is started
//! again: the restarted worker fails over to it and carries on as the same
//! host.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use quorum_tests::cli::Submitted;
use quorum_tests::group::{Coordinators, Setup};
use quorum_tests::grpc::Projects;
use quorum_tests::poll::poll_until;
use quorum_tests::worker::{checkpointed, ids_in_state};
use quorum_tests::{TestDir, Worker, cli};

const N_WORK_UNITS: u64 = 4;
/// sumprimes near 10^9: about half a second to a second per unit, with a
/// checkpoint every 10,000 numbers.
const START: u64 = 1_000_000_000;
const CHUNK: u64 = 150_000;

fn manifest() -> String {
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/checkpoint/sumprimes.wasm");
    format!(
        "name = \"sumprimes\"\napp = {:?}\ncheckpointing = true\n[policy]\nmin_quorum = 2\ntarget_results = 2\n\
         [work_units]\nrange = {{ start = {START}, end = {}, chunk = {CHUNK} }}\n",
        app.display().to_string(),
        START + N_WORK_UNITS * CHUNK,
    )
}

/// Log lines of `log` about `result_id` containing `what`.
fn mentions(log: &str, what: &str, result_id: i64) -> usize {
    let field = format!("result_id={result_id} ");
    log.lines().filter(|line| line.contains(what) && line.contains(&field)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_with_unreported_and_checkpointed_tasks() {
    worker_killed_with_unreported_and_checkpointed_tasks_on(Setup::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_with_unreported_and_checkpointed_tasks_on_two_postgres_coordinators() {
    worker_killed_with_unreported_and_checkpointed_tasks_on(Setup::PostgresPair).await;
}

async fn worker_killed_with_unreported_and_checkpointed_tasks_on(setup: Setup) {
    let dir = TestDir::new("worker-crash");
    let mut group = Coordinators::start(setup, dir.path());
    let url = group.url(0);
    let addresses = group.addresses();
    let manifest = dir.write("project.toml", manifest());
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, N_WORK_UNITS);

    // Worker A takes one copy of every work unit and starts computing.
    let state_a = dir.join("worker-a");
    let buffer = ["--buffer-low", "2", "--buffer-high", "2"];
    let mut worker_a = Worker::spawn_with(&[&addresses], &state_a, 2, &buffer);
    poll_until("worker A to start computing", Duration::from_millis(10), || async {
        if worker_a.log().contains("started result") { Ok(()) } else { Err(worker_a.log()) }
    })
    .await;
    // The coordinators die: A's finished results must wait in its journal.
    group.kill_all();

    // Pause A once it has a finished result and a running task with a
    // checkpoint; the pause freezes that state (retried if a task changed
    // hands between the check and the pause).
    let (unreported, interrupted) = 'caught: {
        for _attempt in 0..20 {
            poll_until("a finished result and a checkpointed running task", Duration::from_millis(5), || async {
                let status = worker_a.try_command("status").await?;
                let running = ids_in_state(&status, "running");
                let finished = ids_in_state(&status, "to report");
                let caught = !finished.is_empty() && running.iter().any(|id| checkpointed(&state_a).contains(id));
                if caught { Ok(()) } else { Err(status) }
            })
            .await;
            worker_a.command("pause").await;
            let status = poll_until("worker A to pause", Duration::from_millis(5), || async {
                let status = worker_a.try_command("status").await?;
                if worker_a.log().contains("paused: tasks stop") { Ok(status) } else { Err(status) }
            })
            .await;
            let interrupted: BTreeSet<i64> =
                ids_in_state(&status, "suspended").intersection(&checkpointed(&state_a)).copied().collect();
            let unreported = ids_in_state(&status, "to report");
            if !interrupted.is_empty() && !unreported.is_empty() {
                break 'caught (unreported, interrupted);
            }
            worker_a.command("resume").await;
        }
        panic!("never caught worker A with both kinds of task\n{}", worker_a.log());
    };
    worker_a.kill_9();
    eprintln!("killed worker A with {unreported:?} unreported and {interrupted:?} checkpointed");

    group.restart(1, dir.path());
    let url = group.url(1);
    let worker_a = Worker::spawn_with(&[&addresses], &state_a, 2, &buffer);
    let _worker_b = Worker::spawn_with(&[&url], &dir.join("worker-b"), 2, &buffer);
    // The pause was journalled: A starts paused, and resumes on command.
    poll_until("restarted worker A to start paused", Duration::from_millis(10), || async {
        let status = worker_a.try_command("status").await?;
        if status.contains("worker: paused") { Ok(()) } else { Err(status) }
    })
    .await;
    let said = worker_a.command("resume").await;
    assert!(said.contains("resumed (worker pid"), "{said}");

    cli(&url, ["wait", "sumprimes", "--timeout", "120s"]).await.success();
    let projects = Projects::connect(&url).await;
    let hosts = projects.hosts().await;
    let host_a = hosts.iter().find(|host| host.name == "worker-a").expect("worker A registered").id;
    assert_eq!(hosts.len(), 2, "worker A kept its identity: {hosts:?}");
    let results = projects.results("sumprimes").await;
    assert_eq!(results.len() as u64, 2 * N_WORK_UNITS, "exactly two copies per work unit: {results:?}");
    assert!(results.iter().all(|r| r.validate_state == "valid"), "every copy agrees: {results:?}");
    assert_eq!(projects.canonical_results("sumprimes").await.len() as u64, N_WORK_UNITS);

    // The restarted worker logs to a file of its own.
    let restarted_log = &worker_a.log();
    for result_id in &unreported {
        let result = results.iter().find(|r| r.id == *result_id).expect("a result of the project");
        assert_eq!(result.host_id, host_a, "{result:?}");
        assert_eq!(mentions(restarted_log, "started result", *result_id), 0, "not run again\n{restarted_log}");
        assert_eq!(mentions(restarted_log, "resumed result", *result_id), 0, "not run again\n{restarted_log}");
    }
    for result_id in &interrupted {
        let resumed = results.iter().find(|r| r.id == *result_id).expect("a result of the project");
        assert_eq!(resumed.host_id, host_a, "{resumed:?}");
        assert_eq!(mentions(restarted_log, "resumed result from its checkpoint", *result_id), 1, "{restarted_log}");
        let whole = results
            .iter()
            .find(|r| r.work_unit_id == resumed.work_unit_id && r.id != resumed.id)
            .expect("worker B's copy");
        assert!(
            resumed.fuel_used < whole.fuel_used,
            "the resumed copy did not start from zero: {} fuel against {} for a whole run",
            resumed.fuel_used,
            whole.fuel_used
        );
    }
    let status = worker_a.command("status").await;
    assert!(status.contains(" 0 running, 0 suspended, 0 queued, 0 to report,"), "{status}");
    assert!(checkpointed(&state_a).is_empty(), "checkpoints are deleted once results are accepted");
}
