//! A worker with queued work is asked to stop (SIGTERM) while its one core
//! computes: no task starts after the signal. The running task gets the grace
//! period, then is interrupted and journalled back to the queue with its
//! checkpoint; every other task stays queued, never started; nothing is left
//! "running" in the journal, so the worker stopped within its grace. The next
//! start resumes the interrupted task from its checkpoint, first.
//!
//! The work units take minutes (far longer than the test), so the task that
//! runs when the signal comes cannot finish meanwhile: which tasks ran is
//! known exactly. The signal is sent once that task has saved a checkpoint.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use quorum_tests::cli::Submitted;
use quorum_tests::grpc::Projects;
use quorum_tests::poll::poll_until;
use quorum_tests::worker::{checkpointed, ids_in_state};
use quorum_tests::{Server, TestDir, Worker, cli};
use sqlx::Row as _;

const N_WORK_UNITS: u64 = 8;
const START: u64 = 1_000_000_000;
/// Numbers per work unit: minutes of sumprimes, with a checkpoint every 10,000.
const CHUNK: u64 = 100_000_000;
/// One core, and a buffer that keeps at least four tasks queued behind it.
const CPUS: u32 = 1;
const BUFFER: [&str; 4] = ["--buffer-low", "4", "--buffer-high", "6"];

fn manifest() -> String {
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/checkpoint/sumprimes.wasm");
    format!(
        "name = \"long\"\napp = {:?}\ncheckpointing = true\n[policy]\nmin_quorum = 1\ntarget_results = 1\n\
         [limits]\nfuel = 10_000_000_000_000\nwall_time = \"1h\"\n\
         [work_units]\nrange = {{ start = {START}, end = {}, chunk = {CHUNK} }}\n",
        app.display().to_string(),
        START + N_WORK_UNITS * CHUNK,
    )
}

/// The result ids of the log lines of `log` that contain `what`, in order.
fn ids_logged(log: &str, what: &str) -> Vec<i64> {
    log.lines()
        .filter(|line| line.contains(what))
        .filter_map(|line| line.split_once("result_id=")?.1.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect()
}

/// The log before and after the worker's "SIGTERM received" line.
fn split_at_sigterm(log: &str) -> (&str, &str) {
    log.split_once("SIGTERM received").unwrap_or_else(|| panic!("the worker logs the signal\n{log}"))
}

/// One task of the worker's journal.
#[derive(Debug)]
struct Task {
    result_id: i64,
    state: String,
    /// It was put on a core at least once.
    started: bool,
    /// Fuel of the segments it ran.
    fuel_before: i64,
}

/// Every task of the journal of the (stopped) worker on `state_dir`.
async fn journal_tasks(state_dir: &Path) -> Vec<Task> {
    let url = format!("sqlite://{}", state_dir.join("journal.db").display());
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url).expect("journal URL");
    let pool = sqlx::SqlitePool::connect_with(options).await.expect("open the worker's journal");
    let rows =
        sqlx::query("SELECT result_id, state, started_ms IS NOT NULL, fuel_before FROM tasks ORDER BY result_id")
            .fetch_all(&pool)
            .await
            .expect("read the tasks");
    pool.close().await;
    rows.iter()
        .map(|row| Task { result_id: row.get(0), state: row.get(1), started: row.get(2), fuel_before: row.get(3) })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_task_starts_after_sigterm() {
    let dir = TestDir::new("worker-shutdown");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let manifest = dir.write("project.toml", manifest());
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, N_WORK_UNITS);
    let projects = Projects::connect(&url).await;

    let state = dir.join("worker");
    let mut worker = Worker::spawn_with(&[&url], &state, CPUS, &BUFFER);
    let running = poll_until("a task running with a checkpoint, others queued", Duration::from_millis(10), || async {
        let status = worker.try_command("status").await?;
        let running = ids_in_state(&status, "running");
        let queued = ids_in_state(&status, "queued");
        match running.first() {
            Some(&id) if running.len() == 1 && queued.len() >= 4 && checkpointed(&state).contains(&id) => Ok(id),
            _ => Err(status),
        }
    })
    .await;

    let exit = worker.terminate().await;
    assert!(exit.success(), "quorum-worker exits 0 on SIGTERM, got {exit}\n{}", worker.log());
    let log = worker.log();
    let (before, after) = split_at_sigterm(&log);
    assert_eq!(ids_logged(before, "started result"), [running], "one task ran before the signal\n{log}");
    assert!(
        ids_logged(after, "started result").is_empty() && ids_logged(after, "resumed result").is_empty(),
        "no task starts after SIGTERM\n{log}"
    );
    assert_eq!(ids_logged(after, "interrupted result"), [running], "{log}");
    assert!(!log.contains("did not stop in time"), "{log}");
    // Its peer-to-peer endpoint closed, not dropped: a clean stop logs no error.
    assert!(!after.contains("ERROR"), "a clean shutdown logs no error\n{log}");

    // The journal: the task that ran is queued again with the fuel it used;
    // no other task was ever started, none is left running.
    let tasks = journal_tasks(&state).await;
    assert!(tasks.len() >= 5, "the buffer was full: {tasks:?}");
    assert!(tasks.iter().all(|task| task.state == "received"), "nothing running, nothing finished: {tasks:?}");
    let started: Vec<i64> = tasks.iter().filter(|task| task.started).map(|task| task.result_id).collect();
    assert_eq!(started, [running], "only the task running at the signal was ever started: {tasks:?}");
    let interrupted = tasks.iter().find(|task| task.result_id == running).expect("the interrupted task is kept");
    assert!(interrupted.fuel_before > 0, "{interrupted:?}");
    assert!(checkpointed(&state).contains(&running), "its checkpoint is kept");
    // The coordinator: nothing came back; every copy stays with this host.
    let hosts = projects.hosts().await;
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(hosts[0].n_in_progress, tasks.len() as u64, "{hosts:?}");
    let status = projects.status("long").await;
    assert_eq!(status.work_units_done, 0, "{status:?}");

    // The next start resumes the interrupted task from its checkpoint, before any other.
    let mut worker = Worker::spawn_with(&[&url], &state, CPUS, &BUFFER);
    poll_until("the interrupted task to resume", Duration::from_millis(10), || async {
        let log = worker.log();
        if ids_logged(&log, "resumed result from its checkpoint").contains(&running) { Ok(()) } else { Err(log) }
    })
    .await;
    let exit = worker.terminate().await;
    assert!(exit.success(), "quorum-worker exits 0 on SIGTERM, got {exit}\n{}", worker.log());
    let log = worker.log();
    let (before, after) = split_at_sigterm(&log);
    assert!(ids_logged(before, "started result").is_empty(), "the resumed task went first\n{log}");
    assert!(ids_logged(after, "resumed result").is_empty() && ids_logged(after, "started result").is_empty(), "{log}");
    assert_eq!(ids_logged(after, "interrupted result"), [running], "{log}");
}
