//! "Why is nothing running?": `quorum status PROJECT` says what holds a
//! project's open work (`server/src/domain/holds.rs`), for people and in
//! `--json`, as the facts change under it: no host registered, a host out
//! of its daily quota, copies that need a host other than the only one,
//! a batch paused because its app fails on every host, the copies all out,
//! and finally every work unit ended.
//!
//! Hosts are played by the test over the scheduler protocol so that each
//! situation is exact (a real worker would race through it).

use quorum_proto::v1;
use quorum_tests::cli::{Statuses, Submitted};
use quorum_tests::grpc::{Host, success_report};
use quorum_tests::{Server, TestDir, cli};

/// A new host's daily quota of results (`trust::INITIAL_DAILY_QUOTA`).
const INITIAL_DAILY_QUOTA: u32 = 20;

/// A WASI command that does nothing (the test plays every host).
const NOOP_WAT: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

/// Submits `n` work units named 0..n with `policy` (TOML lines).
async fn submit(url: &str, dir: &TestDir, name: &str, n: u64, policy: &str) {
    dir.write("noop.wat", NOOP_WAT);
    let manifest = dir.write(
        format!("{name}.toml"),
        format!(
            "name = \"{name}\"\napp = \"noop.wat\"\n[policy]\n{policy}\n\
             [work_units]\nrange = {{ start = 0, end = {n}, chunk = 1 }}\n"
        ),
    );
    let submitted: Submitted = cli(url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, n);
}

/// The kinds of what holds `project`, from `quorum status PROJECT --json`,
/// and the same status as people see it.
async fn holds(url: &str, project: &str) -> (Vec<String>, String) {
    let statuses: Statuses = cli(url, ["--json", "status", project]).await.json();
    let kinds = statuses.projects[0].holds.iter().map(|hold| hold.kind.clone()).collect();
    (kinds, cli(url, ["status", project]).await.success())
}

fn error_report(result_id: i64) -> v1::ResultReport {
    v1::ResultReport {
        outcome: v1::ReportedOutcome::ClientError.into(),
        error_message: "exit code 3".to_owned(),
        ..success_report(result_id, b"")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_what_holds_a_project() {
    let dir = TestDir::new("holds");
    let server = Server::spawn(dir.path());
    let url = server.url();

    // More work units than a new host's daily quota, one copy each.
    let n = u64::from(INITIAL_DAILY_QUOTA) + 5;
    submit(&url, &dir, "quota", n, "min_quorum = 1\ntarget_results = 1").await;
    let (kinds, text) = holds(&url, "quota").await;
    assert_eq!(kinds, ["no_host"], "{text}");
    assert!(text.contains(&format!("project 'quota': {n} unsent copies wait: no host has registered")), "{text}");

    // A host takes its whole quota: the rest waits for tomorrow or another host.
    let mut alice = Host::register(&url, "alice").await;
    let work = alice.request_work(100).await.expect("RequestWork");
    assert_eq!(work.assignments.len(), INITIAL_DAILY_QUOTA as usize, "{work:?}");
    let (kinds, text) = holds(&url, "quota").await;
    assert_eq!(kinds, ["quota_used"], "{text}");
    assert!(text.contains("5 unsent copies wait: the 1 host attached used their daily quota"), "{text}");
    // Asking again gets nothing, and the operator's log says why (at most once a minute per host).
    let nothing = alice.request_work(1).await.expect("RequestWork past the quota");
    assert!(nothing.assignments.is_empty(), "{nothing:?}");
    let log = server.log();
    let explained = log.lines().find(|line| line.contains("no work for this host")).unwrap_or_else(|| panic!("{log}"));
    assert!(explained.contains(" INFO ") && explained.contains("its quota for today is used"), "{explained}");
    assert!(explained.contains(&format!("host_id={}", alice.id)), "{explained}");
    // Its copies reported, and validated on one copy each: the quota doubles
    // with each, so the host may take the rest.
    let reports = work.assignments.iter().map(|a| success_report(a.result_id, b"ok")).collect();
    alice.report(reports).await.expect("ReportResults");
    let (kinds, text) = holds(&url, "quota").await;
    assert_eq!(kinds, ["dispatching"], "{text}");
    let rest = alice.request_work(100).await.expect("RequestWork").assignments;
    assert_eq!(rest.len(), 5);
    let (kinds, text) = holds(&url, "quota").await;
    assert_eq!(kinds, ["copies_out"], "{text}");
    assert!(text.contains("nothing is unsent: 5 copies are in progress on hosts (the first deadline is"), "{text}");
    alice.report(rest.iter().map(|a| success_report(a.result_id, b"ok")).collect()).await.expect("ReportResults");
    let (kinds, text) = holds(&url, "quota").await;
    assert_eq!(kinds, ["ended"], "{text}");
    assert!(text.contains(&format!("every work unit ended ({n} done, 0 failed)")), "{text}");
    assert!(text.lines().nth(1).is_some_and(|row| row.contains(" ended ")), "the table says ended: {text}");

    // Two copies of one work unit: the host holding one cannot take the
    // other, and its success waits for the second.
    submit(&url, &dir, "pair", 1, "min_quorum = 2\ntarget_results = 2").await;
    let taken = alice.request_work(10).await.expect("RequestWork").assignments;
    assert_eq!(taken.len(), 1, "one copy per host: {taken:?}");
    let (kinds, text) = holds(&url, "pair").await;
    assert_eq!(kinds, ["need_other_hosts"], "{text}");
    assert!(text.contains("they need other hosts"), "{text}");
    alice.report(vec![success_report(taken[0].result_id, b"ok")]).await.expect("ReportResults");
    let (kinds, text) = holds(&url, "pair").await;
    assert_eq!(kinds, ["need_other_hosts", "awaiting_quorum"], "{text}");
    assert!(text.contains("1 reported successes wait for other copies"), "{text}");
    // A second host takes and reports the other copy: the pair agrees.
    let mut erin = Host::register(&url, "erin").await;
    let other = erin.request_work(10).await.expect("RequestWork").assignments;
    assert_eq!(other.len(), 1, "{other:?}");
    erin.report(vec![success_report(other[0].result_id, b"ok")]).await.expect("ReportResults");
    assert_eq!(holds(&url, "pair").await.0, ["ended"]);

    // The same error from three hosts and no success: the app is at fault,
    // its batch pauses, and what waits in it is held by the pause.
    submit(&url, &dir, "failing", 10, "min_quorum = 1\ntarget_results = 1\nmax_error_results = 3").await;
    for name in ["bob", "carol", "dave"] {
        let mut host = Host::register(&url, name).await;
        let copies = host.request_work(1).await.expect("RequestWork").assignments;
        assert_eq!(copies.len(), 1, "{name}: {copies:?}");
        host.report(vec![error_report(copies[0].result_id)]).await.expect("ReportResults");
    }
    let (kinds, text) = holds(&url, "failing").await;
    assert_eq!(kinds, ["batch_paused"], "{text}");
    assert!(text.contains("batch ") && text.contains(" is paused (") && text.contains("quorum resume"), "{text}");
    assert!(text.contains("the app fails on every host"), "{text}");

    // Every project at once: no explanations, paused batches still listed.
    let all: Statuses = cli(&url, ["--json", "status"]).await.json();
    assert!(all.projects.iter().all(|status| status.holds.is_empty()), "{all:?}");
}
