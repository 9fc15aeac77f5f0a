//! Errors are blamed on their cause (`server/src/domain/trust.rs`): a project
//! whose app fails on every input runs beside a good project on the same
//! real workers. The good project completes; the hosts' quota for it, and
//! their own daily quota, did not drop (read through `quorum hosts --json`);
//! only their quota for the failing app paid. The failing batch is paused as
//! the app's fault, and `quorum status` says so, naming the error.

use quorum_tests::cli::{Hosts, Statuses, Submitted};
use quorum_tests::{Server, TestDir, Worker, cli, primes};

/// A WASI command that exits with code 3 without doing anything.
const FAIL_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $proc_exit (i32.const 3))))
"#;

/// A new host's daily quota (`trust::INITIAL_DAILY_QUOTA`).
const INITIAL_DAILY_QUOTA: u32 = 20;
/// A quota per app that nothing reduced (`trust::MAX_DAILY_QUOTA`).
const MAX_DAILY_QUOTA: u32 = 20_000;
const N_GOOD: u64 = 40;
const CHUNK: u64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_app_does_not_lock_its_hosts_out_of_a_good_project() {
    let dir = TestDir::new("blame");
    let server = Server::spawn(dir.path());
    let url = server.url();
    dir.write("fail.wat", FAIL_WAT);
    // The failing project first: its copies come first in the queue.
    let failing = dir.write(
        "failing.toml",
        "name = \"failing\"\napp = \"fail.wat\"\n[policy]\nmin_quorum = 2\n\
         [work_units]\nrange = { start = 0, end = 30, chunk = 1 }\n",
    );
    let failing: Submitted = cli(&url, ["--json", "submit", &failing.display().to_string()]).await.json();
    let good = dir.write("good.toml", primes::manifest("good", 0, N_GOOD * CHUNK, CHUNK, "min_quorum = 2"));
    let good: Submitted = cli(&url, ["--json", "submit", &good.display().to_string()]).await.json();

    let _workers: Vec<Worker> = (1..=3).map(|n| Worker::spawn(&url, &dir.join(format!("worker-{n}")), 1)).collect();
    cli(&url, ["wait", "good", "--timeout", "120s"]).await.success();

    let statuses: Statuses = cli(&url, ["--json", "status"]).await.json();
    let status = |name: &str| statuses.projects.iter().find(|p| p.name == name).expect("both projects").clone();
    let (good_status, failing_status) = (status("good"), status("failing"));
    assert_eq!((good_status.work_units_done, good_status.results_error), (N_GOOD, 0), "{good_status:?}");
    assert_eq!(failing_status.work_units_done, 0, "{failing_status:?}");
    assert!(failing_status.results_error >= 3, "{failing_status:?}");

    let hosts: Hosts = cli(&url, ["--json", "hosts"]).await.json();
    assert_eq!(hosts.hosts.len(), 3, "{hosts:?}");
    let mut erred = 0;
    for host in &hosts.hosts {
        // The host's own quota only grew (with its valid results).
        assert!(host.daily_quota > INITIAL_DAILY_QUOTA && host.n_valid > 0, "{host:?}");
        let quota = |digest: &str| host.app_quotas.iter().find(|q| q.app_digest == digest);
        let good_quota = quota(&good.app_digest).expect("every host ran the good app");
        assert_eq!(good_quota.projects, ["good"], "{host:?}");
        assert_eq!((good_quota.daily_quota, good_quota.exhausted), (MAX_DAILY_QUOTA, false), "{host:?}");
        if host.n_error > 0 {
            erred += 1;
            let failing_quota = quota(&failing.app_digest).expect("a host that erred ran the failing app");
            assert!(failing_quota.daily_quota < INITIAL_DAILY_QUOTA, "only the failing app's quota paid: {host:?}");
        }
    }
    assert!(erred >= 3, "the app-fault rule needs three hosts that erred: {hosts:?}");

    // The failing batch is the app's fault: paused, and `quorum status` says so.
    let batch = &failing_status.batches[0];
    assert_eq!(batch.state, "paused", "{failing_status:?}");
    assert!(batch.pause_reason.contains("the app fails on every host"), "{batch:?}");
    let table = cli(&url, ["status"]).await.success();
    assert!(table.contains(&format!("project 'failing': batch {} is paused", batch.id)), "{table}");
    assert!(table.contains("distinct hosts reported the same error"), "{table}");
    // The hosts table shows the failing app's quota used up, by project name.
    let table = cli(&url, ["hosts"]).await.success();
    assert!(table.contains("TODAY/QUOTA") && table.contains("APPS AT QUOTA"), "{table}");
}
