//! One worker at a time on a state directory: a second `quorum-worker`
//! started on the directory of a running one refuses to start, naming the
//! directory, and changes nothing (two workers on one journal would compute
//! and report every task twice). Once the first has stopped, the directory
//! is free again. An empty journal is refused, naming it: a worker never
//! silently starts as a new host over a journal it lost.

use std::process::Command;

use quorum_tests::grpc::Projects;
use quorum_tests::poll::poll_until;
use quorum_tests::{Server, TestDir, Worker, binaries, cli, primes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_worker_on_a_state_directory_in_use_refuses_to_start() {
    let dir = TestDir::new("state-dir-lock");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let state_dir = dir.join("volunteer");
    let mut first = Worker::spawn(&url, &state_dir, 1);
    let projects = Projects::connect(&url).await;
    // Registered: it runs, and holds the directory.
    poll_until("the first worker to register", std::time::Duration::from_millis(20), || async {
        let hosts = projects.hosts().await;
        if hosts.len() == 1 { Ok(()) } else { Err(format!("{hosts:?}")) }
    })
    .await;

    let second = || {
        Command::new(binaries::path(binaries::WORKER))
            .args(["--server", &url, "--state-dir"])
            .arg(&state_dir)
            .output()
            .expect("run a second quorum-worker")
    };
    let refused = second();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("another quorum-worker is running on the state directory"), "{stderr}");
    assert!(stderr.contains(&state_dir.display().to_string()), "{stderr}");
    assert_eq!(projects.hosts().await.len(), 1, "the refused worker registered nothing");

    assert!(first.terminate().await.success(), "{}", first.log());
    // Free again: `status` reads it (the lock is only for running workers).
    let status = quorum_tests::worker::worker_command("status", &state_dir).await;
    assert!(!status.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_journal_is_refused_naming_it_never_a_new_identity() {
    let dir = TestDir::new("state-dir-empty-journal");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let state_dir = dir.join("volunteer");
    std::fs::create_dir_all(&state_dir).expect("the state directory");
    let journal = state_dir.join("journal.db");
    std::fs::write(&journal, b"").expect("an emptied journal (a disk that lost it, a bad copy)");

    let refused = Command::new(binaries::path(binaries::WORKER))
        .args(["--server", &url, "--state-dir"])
        .arg(&state_dir)
        .output()
        .expect("run quorum-worker");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("the journal {} is empty", journal.display())), "{stderr}");
    assert!(Projects::connect(&url).await.hosts().await.is_empty(), "no new host registered");
    assert_eq!(std::fs::metadata(&journal).expect("the journal").len(), 0, "left for the volunteer to restore");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_state_dir_the_worker_lives_in_the_users_data_directory_from_any_working_directory() {
    let dir = TestDir::new("state-dir-default");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let home = dir.join("home");
    let (here, there) = (dir.join("here"), dir.join("there"));
    for folder in [&home, &here, &there] {
        std::fs::create_dir_all(folder).expect("a folder");
    }
    let projects = Projects::connect(&url).await;
    let registered = |n: usize| {
        let projects = &projects;
        async move {
            poll_until("the worker to register", std::time::Duration::from_millis(20), || async {
                let hosts = projects.hosts().await;
                if hosts.len() == n { Ok(hosts) } else { Err(format!("{hosts:?}")) }
            })
            .await
        }
    };

    let mut first = Worker::spawn_in_home(&url, &home, &here, "volunteer");
    let hosts = registered(1).await;
    assert!(first.terminate().await.success(), "{}", first.log());
    assert!(home.join(".local/share/quorum-worker/journal.db").is_file(), "the journal in the data directory");
    assert!(!here.join("quorum-worker-state").exists(), "nothing in the working directory");

    // Started again from elsewhere: the same host computes, not a second one.
    let mut again = Worker::spawn_in_home(&url, &home, &there, "volunteer");
    let manifest = dir.write("project.toml", primes::manifest("p", 0, 100, 100, "min_quorum = 1"));
    cli(&url, ["submit", &manifest.display().to_string()]).await.success();
    assert_eq!(projects.wait("p").await.work_units_done, 1);
    let now = projects.hosts().await;
    assert_eq!(now.len(), 1, "one host: {now:?}\n{}", again.log());
    assert_eq!((now[0].id, now[0].n_valid), (hosts[0].id, 1), "{now:?}");
    assert!(again.terminate().await.success(), "{}", again.log());
}

/// The scheduling policy and nice value of `pid`'s thread named `name`
/// (`/proc/PID/task/TID/stat`: fields 19 and 41), once it exists and they are
/// `expected` (the thread sets its policy, then its nice value, as it
/// starts: a reading between the two is not yet its priority).
async fn thread_priority(pid: u32, name: &str, expected: (i64, i64)) -> (i64, i64) {
    poll_until(&format!("a thread named {name}"), std::time::Duration::from_millis(20), || async move {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|error| error.to_string())?;
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() != name {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).map_err(|error| error.to_string())?;
            // Fields after the command name, which is in parentheses: state is field 3.
            let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            let fields: Vec<&str> = after.split_whitespace().collect();
            let field = |n: usize| fields[n - 3].parse::<i64>().expect("a number");
            let seen = (field(41), field(19));
            return if seen == expected { Ok(seen) } else { Err(format!("policy and nice {seen:?}")) };
        }
        Err(format!("no thread {name} yet"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_compute_at_idle_priority_unless_asked_otherwise() {
    const SCHED_IDLE: i64 = 5;
    let dir = TestDir::new("task-priority");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let idle = Worker::spawn(&url, &dir.join("idle"), 1);
    // The task thread runs at idle priority.
    thread_priority(idle.pid().expect("runs"), "quorum-task-0", (SCHED_IDLE, 19)).await;
    let normal = Worker::spawn_with(&[&url], &dir.join("normal"), 1, &["--task-priority", "normal"]);
    // SCHED_OTHER at the worker's own nice value with --task-priority normal.
    let stat = std::fs::read_to_string("/proc/self/stat").expect("this process's stat");
    let own_nice: i64 =
        stat.rsplit_once(')').expect("a command name").1.split_whitespace().nth(16).unwrap().parse().unwrap();
    thread_priority(normal.pid().expect("runs"), "quorum-task-0", (0, own_nice)).await;
}
