//! Projects as a scientist manages them: a submission killed half-way is
//! completed by running it again (every work unit exactly once), and
//! `quorum delete` removes a project and everything of it, refused while
//! hosts hold its copies.

use std::collections::BTreeSet;
use std::process::Stdio;

use quorum_tests::cli::Submitted;
use quorum_tests::grpc::{Host, Projects, success_report};
use quorum_tests::{Server, TestDir, binaries, cli, primes};
use tokio::io::AsyncBufReadExt as _;

/// 40,000 work units of 1.5 KiB (60 MiB, more than one call carries): one
/// CreateProject and three AddWorkUnits calls of 10,000 (`quorum submit`'s
/// batches).
const N_WORK_UNITS: u64 = 40_000;
const INPUT_BYTES: usize = 1536;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_killed_half_way_is_completed_by_running_it_again() {
    let dir = TestDir::new("resume-submit");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let input = "x".repeat(INPUT_BYTES);
    let inputs: String =
        (0..N_WORK_UNITS).map(|index| format!("{{\"name\":\"wu-{index}\",\"input\":\"{input}\"}}\n")).collect();
    dir.write("inputs.jsonl", inputs);
    let manifest = dir.write(
        "project.toml",
        format!(
            "name = \"big\"\napp = {:?}\n[work_units]\njsonl = \"inputs.jsonl\"\n",
            primes::app_path().display().to_string()
        ),
    );

    // The CLI logs each AddWorkUnits call it completed at INFO: it is killed
    // (SIGKILL) right after the first, with three calls still to make.
    let mut child = tokio::process::Command::new(binaries::path(binaries::CLI))
        .args(["--server", &url, "submit"])
        .arg(&manifest)
        .env("QUORUM_TOKEN", server.admin_token())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn quorum submit");
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let mut log = String::new();
    loop {
        let line = stderr.next_line().await.expect("read the CLI's log").unwrap_or_else(|| {
            panic!("quorum submit ended before adding a batch:\n{log}");
        });
        log += &line;
        log.push('\n');
        if line.contains("added work units") {
            break;
        }
    }
    child.start_kill().expect("SIGKILL quorum submit");
    let status = child.wait().await.expect("wait for quorum submit");
    assert!(!status.success(), "quorum submit was killed: {status}");

    let projects = Projects::connect(&url).await;
    let partial = projects.status("big").await.work_units_total;
    assert!((20_000..N_WORK_UNITS).contains(&partial), "a partial project: {partial} work units\n{log}");

    let resumed: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert!(resumed.resumed, "{resumed:?}");
    assert_eq!(resumed.n_work_units_present, partial);
    assert_eq!(resumed.n_work_units, N_WORK_UNITS - partial);

    let work_units = projects.work_units("big").await;
    let names: BTreeSet<&str> = work_units.iter().map(|work_unit| work_unit.name.as_str()).collect();
    assert_eq!(work_units.len() as u64, N_WORK_UNITS, "every work unit once");
    assert_eq!(names.len() as u64, N_WORK_UNITS, "no name twice");
    let expected: BTreeSet<String> = (0..N_WORK_UNITS).map(|index| format!("wu-{index}")).collect();
    assert!(names.iter().all(|name| expected.contains(*name)), "only the manifest's work units");
    assert_eq!(projects.status("big").await.work_units_total, N_WORK_UNITS);
}

#[tokio::test]
async fn delete_removes_a_project_in_one_go_and_is_refused_while_hosts_hold_its_copies() {
    let dir = TestDir::new("delete");
    let server = Server::spawn(dir.path());
    let url = server.url();
    for project in ["doomed", "kept"] {
        let manifest = dir.write(format!("{project}.toml"), primes::manifest(project, 0, 300, 100, "min_quorum = 1"));
        let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
        assert_eq!(submitted.n_work_units, 3);
    }
    let projects = Projects::connect(&url).await;
    let mut host = Host::register(&url, "volunteer").await;
    let work = host.request_work(2).await.expect("RequestWork");
    assert_eq!(work.assignments.len(), 2, "{work:?}");
    let held: BTreeSet<&str> = work.assignments.iter().map(|assignment| assignment.project.as_str()).collect();
    let Some(busy) = held.iter().next().map(|name| name.to_string()) else { panic!("{work:?}") };

    // A project with copies on a host: refused, nothing changed.
    let before = projects.results(&busy).await;
    let refused = cli(&url, ["delete", &busy]).await.failure();
    assert!(refused.contains("copies in progress") && refused.contains("FAILED_PRECONDITION"), "{refused}");
    assert!(refused.contains("cancel it first"), "the error says what to do: {refused}");
    assert_eq!(projects.results(&busy).await, before, "a refused delete changes nothing");

    // The host reports its copies; both projects then have none in progress.
    let reports = work
        .assignments
        .iter()
        .map(|assignment| {
            success_report(assignment.result_id, primes::expected_output(&assignment.work_unit_name).as_bytes())
        })
        .collect();
    host.report(reports).await.expect("ReportResults");
    let other = if busy == "doomed" { "kept" } else { "doomed" };
    let kept_before = (projects.work_units(other).await, projects.results(other).await);
    let credit_before = projects.hosts().await[0].total_credit;
    let deleted: serde_json::Value = cli(&url, ["--json", "delete", &busy]).await.json();
    assert_eq!(deleted["project"], busy.as_str());
    assert_eq!(deleted["n_work_units"], 3);
    assert!(deleted["n_results"].as_u64().is_some_and(|n| n >= 3), "{deleted}");

    let gone = cli(&url, ["status", &busy]).await.failure();
    assert!(gone.contains("not found"), "{gone}");
    assert_eq!(
        (projects.work_units(other).await, projects.results(other).await),
        kept_before,
        "the other project is intact"
    );
    assert_eq!(projects.hosts().await[0].total_credit, credit_before, "the volunteer keeps its credit");
    let again = cli(&url, ["delete", &busy]).await.failure();
    assert!(again.contains("not found"), "{again}");

    // The name is free again, for a new project with the same app.
    let manifest = dir.join(format!("{busy}.toml"));
    let recreated: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!((recreated.n_work_units, recreated.resumed), (3, false));
}
