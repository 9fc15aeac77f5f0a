//! One worker attached to two coordinators with resource shares 100 and 300
//! (BOINC's resource share) and one core: while both have work, the core is
//! divided about 1:3 between them. The split is read from the order in which
//! the worker finished its tasks (its log), over the first 80 of 160, while
//! both coordinators still had work queued; both projects then complete.

use std::time::Duration;

use quorum_tests::cli::Submitted;
use quorum_tests::poll::poll_until;
use quorum_tests::{Server, TestDir, Worker, cli, primes};

const N_WORK_UNITS: u64 = 80;
/// Numbers near 10^9, where units of the same size cost about the same.
const START: u64 = 1_000_000_000;
const CHUNK: u64 = 5_000;
/// The tasks over which the split is measured: by then the share-300
/// coordinator has done about 60 of its 80, so both still had work queued.
const MEASURED: usize = 80;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinators_share_the_core_by_resource_share() {
    let dir = TestDir::new("share");
    let small = Server::spawn_with_db(dir.path(), &dir.join("a.db"));
    let large = Server::spawn_with_db(dir.path(), &dir.join("b.db"));
    for (server, name) in [(&small, "small"), (&large, "large")] {
        let manifest = dir.write(
            format!("{name}.toml"),
            primes::manifest(name, START, START + N_WORK_UNITS * CHUNK, CHUNK, "min_quorum = 1\ntarget_results = 1"),
        );
        let submitted: Submitted =
            cli(&server.url(), ["--json", "submit", &manifest.display().to_string()]).await.json();
        assert_eq!(submitted.n_work_units, N_WORK_UNITS);
    }
    let small_url = small.url();
    let large_share = format!("{},share=300", large.url());
    let worker = Worker::spawn_with(&[&small_url, &large_share], &dir.join("worker"), 1, &[]);

    for (server, name) in [(&small, "small"), (&large, "large")] {
        cli(&server.url(), ["wait", name, "--timeout", "120s"]).await.success();
    }
    let log = worker.log();
    let finished: Vec<&str> = log.lines().filter(|line| line.contains("finished result")).collect();
    assert_eq!(finished.len() as u64, 2 * N_WORK_UNITS, "{log}");
    let from_small = finished[..MEASURED].iter().filter(|line| line.contains(&format!("server={small_url}"))).count();
    eprintln!("{from_small} of the first {MEASURED} tasks from the share-100 coordinator");
    // The share says 20 of 80; the scheduler balances fuel, so a few tasks'
    // difference comes from units of unequal cost, from the start (the first
    // tasks go to whichever coordinator answered first) and from refills.
    assert!(
        (15..=25).contains(&from_small),
        "{from_small} of the first {MEASURED} tasks were the small share's (expected about 20)\n{log}"
    );
    // The worker asks each coordinator for its record shortly after reporting.
    let status = poll_until("the worker to learn its credit", Duration::from_millis(50), || async {
        let status = worker.command("status").await;
        let earned = status.lines().filter(|line| line.contains("share") && !line.contains("credit 0.00,")).count();
        if earned == 2 { Ok(status) } else { Err(status) }
    })
    .await;
    assert!(status.contains(&format!("{small_url} (host 1, share 100)")), "{status}");
    assert!(status.contains("share 300"), "{status}");
}
