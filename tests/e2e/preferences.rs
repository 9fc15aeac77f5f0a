//! Computing preferences: a worker on batteries (a power supply directory
//! the test writes, read as Linux's `/sys/class/power_supply`) fetches its
//! buffer but computes nothing, says why in its log and its status, and
//! starts computing when the mains come back; a preference out of range is
//! refused at start, naming it; a task over the memory budget is refused,
//! saying so.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use quorum_tests::grpc::Projects;
use quorum_tests::poll::poll_until;
use quorum_tests::worker::ids_in_state;
use quorum_tests::{Server, TestDir, Worker, binaries, cli, primes};

fn power_supply(dir: &Path, mains_online: bool) {
    for (name, files) in [
        ("BAT0", vec![("type", "Battery"), ("status", if mains_online { "Charging" } else { "Discharging" })]),
        ("AC", vec![("type", "Mains"), ("online", if mains_online { "1" } else { "0" })]),
    ] {
        std::fs::create_dir_all(dir.join(name)).expect("power supply dir");
        for (file, text) in files {
            std::fs::write(dir.join(name).join(file), format!("{text}\n")).expect("write a reading");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_on_batteries_computes_nothing_until_the_mains_are_back() {
    let dir = TestDir::new("preferences");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let power = dir.join("power_supply");
    power_supply(&power, false);

    let refused = Command::new(binaries::path(binaries::WORKER))
        .args(["--server", &url, "--pref", "end_hour=25", "--state-dir"])
        .arg(dir.join("refused"))
        .output()
        .expect("run quorum-worker");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--pref end_hour=25: end_hour must be an hour (0 to 24), not 25"), "{stderr}");

    let manifest = dir.write("project.toml", primes::manifest("p", 0, 400, 100, "min_quorum = 1"));
    cli(&url, ["submit", &manifest.display().to_string()]).await.success();
    let power_arg = power.display().to_string();
    let mut worker = Worker::spawn_with(&[&url], &dir.join("laptop"), 1, &["--power-supply-dir", &power_arg]);

    // It fetches its buffer (4 work units) while suspended, and starts none.
    let status = poll_until("the suspended worker to hold every work unit", Duration::from_millis(50), || async {
        let status = worker.try_command("status").await?;
        if status.contains("suspended: on batteries") && ids_in_state(&status, "queued").len() == 4 {
            Ok(status)
        } else {
            Err(status)
        }
    })
    .await;
    assert!(ids_in_state(&status, "running").is_empty() && ids_in_state(&status, "suspended").is_empty(), "{status}");
    let log = worker.log();
    assert!(log.contains("computing suspended: on batteries"), "{log}");
    assert!(!log.contains("started result"), "{log}");

    power_supply(&power, true);
    let done = Projects::connect(&url).await.wait("p").await;
    assert_eq!(done.work_units_done, 4, "{done:?}");
    let log = worker.log();
    let resumed = log.find("computing resumed").unwrap_or_else(|| panic!("no resume line: {log}"));
    let first_start = log.find("started result").unwrap_or_else(|| panic!("no task started: {log}"));
    assert!(resumed < first_start, "a task started before the mains were back:\n{log}");
    // Counters asked fresh from the coordinator: the four results are valid
    // (quorum 1), once the worker has seen its last reports accepted.
    let status = poll_until("every task reported", Duration::from_millis(50), || async {
        let text = worker.try_command("status --json").await?;
        let status: serde_json::Value = serde_json::from_str(&text).expect("status --json is JSON");
        let tasks = status["coordinators"][0]["tasks"].as_array().expect("tasks").clone();
        if tasks.iter().all(|t| t["state"] == "reported") { Ok(status) } else { Err(text) }
    })
    .await;
    assert_eq!(status["state"], "running", "resumed: {status}");
    let coordinator = &status["coordinators"][0];
    assert_eq!(
        (coordinator["counters_fresh"].as_bool(), coordinator["n_valid"].as_u64()),
        (Some(true), Some(4)),
        "{status}"
    );
    let tasks = coordinator["tasks"].as_array().expect("tasks");
    assert!(tasks.len() == 4 && tasks.iter().all(|t| t["state"] == "reported" && t["progress"] == 1.0), "{status}");
    assert!(worker.terminate().await.success(), "{}", worker.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_over_the_memory_budget_is_refused_saying_so() {
    let dir = TestDir::new("memory-budget");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let text = primes::manifest("p", 0, 100, 100, "min_quorum = 1") + "[limits]\nmemory = \"4GiB\"\n";
    let manifest = dir.write("project.toml", text);
    cli(&url, ["submit", &manifest.display().to_string()]).await.success();
    // 1% of the memory of any machine under 400 GiB is below the 4 GiB a task reserves.
    let prefs = ["--pref", "ram_max_used_busy_pct=1", "--pref", "ram_max_used_idle_pct=1"];
    let mut worker = Worker::spawn_with(&[&url], &dir.join("small"), 1, &prefs);
    let projects = Projects::connect(&url).await;
    let refused = poll_until("the copy refused for memory", Duration::from_millis(50), || async {
        let results = projects.results("p").await;
        results.iter().find(|r| r.state == "error").cloned().ok_or_else(|| format!("{results:?}"))
    })
    .await;
    assert!(
        refused.error_message.starts_with("refused: reserves 4096 MiB of memory, more than this host lets tasks use"),
        "{refused:?}"
    );
    assert!(!worker.log().contains("started result"), "{}", worker.log());
    assert!(worker.terminate().await.success(), "{}", worker.log());
}
