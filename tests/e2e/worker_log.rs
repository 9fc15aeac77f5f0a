//! The worker's log as a volunteer sees it: with `--log-file` its lines go to
//! a file (mode 0600) rotated by size instead of stderr, in the same format;
//! at INFO, a task is one line when it starts and one when it ends, and
//! nothing else is logged per task.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use quorum_tests::cli::Submitted;
use quorum_tests::grpc::Projects;
use quorum_tests::{Server, TestDir, Worker, cli, primes};

const CHUNK: u64 = 500;

/// Submits project `name`: `n` work units of one copy each.
async fn submit(dir: &TestDir, url: &str, name: &str, n: u64) {
    let manifest = dir.write(
        format!("{name}.toml"),
        primes::manifest(name, 0, n * CHUNK, CHUNK, "min_quorum = 1\ntarget_results = 1"),
    );
    let submitted: Submitted = cli(url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, n);
}

/// PATH and its rotated files PATH.N that exist, in order.
fn log_files(path: &Path) -> Vec<PathBuf> {
    let dir = path.parent().expect("the log file has a directory");
    let name = path.file_name().and_then(|name| name.to_str()).expect("a UTF-8 file name");
    let mut files: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .expect("read the log directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter_map(|file| {
            let file_name = file.file_name()?.to_str()?.to_owned();
            let index =
                if file_name == name { 0 } else { file_name.strip_prefix(name)?.strip_prefix('.')?.parse().ok()? };
            Some((index, file))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, file)| file).collect()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("metadata of a log file").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_logs_to_a_file_rotated_by_size() {
    const MAX_BYTES: usize = 600;
    const KEEP: usize = 3;
    let dir = TestDir::new("worker-log-file");
    let server = Server::spawn(dir.path());
    let url = server.url();
    submit(&dir, &url, "rotated", 8).await;
    // In a directory of its own, which the worker creates.
    let path = dir.join("logs").join("worker.log");
    let path_text = path.display().to_string();
    let max_mb = format!("{}", MAX_BYTES as f64 / 1_000_000.0);
    let mut worker = Worker::spawn_with(
        &[&url],
        &dir.join("worker"),
        1,
        &["--log-file", &path_text, "--log-max-mb", &max_mb, "--log-keep", &KEEP.to_string()],
    );
    cli(&url, ["wait", "rotated", "--timeout", "120s"]).await.success();
    let exit = worker.terminate().await;
    assert!(exit.success(), "quorum-worker exits 0 on SIGTERM, got {exit}\n{}", worker.log());

    // Nothing on stderr: the lines went to the file.
    let stderr = worker.log();
    assert!(!stderr.contains(" INFO "), "with --log-file, stderr holds no log lines:\n{stderr}");

    let files = log_files(&path);
    let names: Vec<String> =
        files.iter().map(|file| file.file_name().expect("a name").to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["worker.log", "worker.log.1", "worker.log.2"], "rotated, {KEEP} files kept");
    let mut all = String::new();
    for file in files.iter().rev() {
        let text = std::fs::read_to_string(file).expect("read a log file");
        // A file passes the limit by its last line at most.
        let body = text.trim_end_matches('\n');
        let before_last = body.rfind('\n').map_or(0, |at| at + 1);
        assert!(before_last <= MAX_BYTES, "{} holds {before_last} bytes before its last line:\n{text}", file.display());
        for line in text.lines() {
            assert!(
                [" INFO ", " WARN ", " ERROR "].iter().any(|level| line.contains(level)) && !line.contains('\x1b'),
                "a plain text log line, as on stderr: {line:?}"
            );
        }
        #[cfg(unix)]
        assert_eq!(mode(file), 0o600, "{} is the owner's only", file.display());
        all.push_str(&text);
    }
    let newest = std::fs::read_to_string(&path).expect("read the log file");
    assert!(newest.contains("shutting down"), "the newest lines are in PATH:\n{newest}");
    assert!(all.contains("finished result"), "{all}");
}

/// The worker's INFO lines of a run of `n` tasks, as JSON Lines in its log file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_one_info_line_when_it_starts_and_one_when_it_ends() {
    const N_WORK_UNITS: u64 = 6;
    let dir = TestDir::new("worker-log-lines");
    let server = Server::spawn(dir.path());
    let url = server.url();
    submit(&dir, &url, "counted", N_WORK_UNITS).await;
    let path = dir.join("worker.jsonl");
    let path_text = path.display().to_string();
    let mut worker =
        Worker::spawn_with(&[&url], &dir.join("worker"), 2, &["--log-format", "json", "--log-file", &path_text]);
    cli(&url, ["wait", "counted", "--timeout", "120s"]).await.success();
    let exit = worker.terminate().await;
    assert!(exit.success(), "quorum-worker exits 0 on SIGTERM, got {exit}\n{}", worker.log());

    let log = std::fs::read_to_string(&path).expect("read the log file");
    let mut started = BTreeSet::new();
    let mut finished = BTreeSet::new();
    let mut others: BTreeMap<String, usize> = BTreeMap::new();
    for line in log.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not a JSON line ({error}): {line:?}"));
        if event["level"] != "INFO" {
            continue;
        }
        let message = event["fields"]["message"].as_str().unwrap_or_else(|| panic!("a message: {line}"));
        let result_id = event["fields"]["result_id"].as_i64();
        match (message, result_id) {
            ("started result", Some(id)) => assert!(started.insert(id), "started twice: {line}\n{log}"),
            ("finished result", Some(id)) => assert!(finished.insert(id), "finished twice: {line}\n{log}"),
            _ => *others.entry(message.to_owned()).or_default() += 1,
        }
    }
    let projects = Projects::connect(&url).await;
    let result_ids: BTreeSet<i64> = projects.results("counted").await.iter().map(|result| result.id).collect();
    assert_eq!(result_ids.len() as u64, N_WORK_UNITS);
    assert_eq!(started, result_ids, "one start line per task\n{log}");
    assert_eq!(finished, result_ids, "one end line per task\n{log}");
    // The rest is the worker's own start and stop, once each, whatever the number of tasks.
    let allowed = [
        "worker started",
        "registered",
        "SIGTERM received",
        "shutting down",
        "exiting with unreported results (kept in the journal)",
    ];
    for (message, count) in &others {
        assert!(allowed.contains(&message.as_str()) && *count == 1, "{message:?} logged {count} times at INFO\n{log}");
    }
    for message in ["worker started", "registered", "shutting down"] {
        assert!(others.contains_key(message), "{message:?} is logged at INFO\n{log}");
    }
}
