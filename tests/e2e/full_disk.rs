//! A coordinator whose disk fills up, and then has room again: reports are
//! refused with RESOURCE_EXHAUSTED while SQLite cannot write (nothing of them
//! kept), and once it can, reports and work requests succeed again without
//! a restart. The "disk" fills for real: the coordinator process's file-size
//! limit (RLIMIT_FSIZE, set from outside with prlimit(2)) is lowered below
//! the size of its write-ahead log, so every write SQLite makes fails
//! (EFBIG) until the limit is raised. The coordinator's log, a file too,
//! cannot be written meanwhile either: lines are lost, the process is not.

use quorum_tests::cli::Submitted;
use quorum_tests::grpc::{Host, Projects, success_report};
use quorum_tests::{Server, TestDir, cli, primes};
use tonic::Code;

/// Sets the soft file-size limit of process `pid`, returning the old limits.
fn set_file_size_limit(pid: u32, soft: libc::rlim_t) -> libc::rlimit {
    let pid = libc::pid_t::try_from(pid).expect("pids fit in pid_t");
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `old` is a valid rlimit to fill; reading needs no new limit.
    let read = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut old) };
    assert_eq!(read, 0, "prlimit (read): {}", std::io::Error::last_os_error());
    let new = libc::rlimit { rlim_cur: soft, rlim_max: old.rlim_max };
    // SAFETY: `new` is a valid rlimit; the old one is not asked for.
    let set = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &new, std::ptr::null_mut()) };
    assert_eq!(set, 0, "prlimit (set): {}", std::io::Error::last_os_error());
    old
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_disk_reports_and_work_requests_succeed_again_without_a_restart() {
    let dir = TestDir::new("full-disk");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let manifest = dir.write("project.toml", primes::manifest("p", 0, 400, 100, "min_quorum = 1"));
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, 4);
    let projects = Projects::connect(&url).await;
    let mut host = Host::register(&url, "alice").await;
    let work = host.request_work(3).await.expect("RequestWork");
    let ids: Vec<i64> = work.assignments.iter().map(|a| a.result_id).collect();
    assert_eq!(ids.len(), 3, "{work:?}");
    let output = |index: usize| primes::expected_output(&work.assignments[index].work_unit_name).into_bytes();
    let first = host.report(vec![success_report(ids[0], &output(0))]).await.expect("a report before the disk fills");
    assert_eq!(first.accepted, vec![ids[0]]);

    // The disk is full: no write can extend a file.
    let pid = server.pid().expect("the coordinator runs");
    let old = set_file_size_limit(pid, 1);
    let before = projects.status("p").await;
    let refused = host.report(vec![success_report(ids[1], &output(1))]).await.expect_err("a report on a full disk");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("cannot write its database now"), "{refused:?}");
    assert!(refused.message().contains("try again later"), "{refused:?}");
    assert_eq!(projects.status("p").await, before, "nothing of the refused report was kept");
    let again = host.report(vec![success_report(ids[1], &output(1))]).await.expect_err("still full");
    assert_eq!(again.code(), Code::ResourceExhausted, "{again:?}");

    // Room again: the same coordinator process takes the report, the rest and new work.
    set_file_size_limit(pid, old.rlim_cur);
    let accepted = host.report(vec![success_report(ids[1], &output(1))]).await.expect("a report once there is room");
    assert_eq!(accepted.accepted, vec![ids[1]]);
    let more = host.request_work(1).await.expect("RequestWork once there is room");
    let [last] = more.assignments.as_slice() else { panic!("the fourth copy: {more:?}") };
    let last_output = primes::expected_output(&last.work_unit_name).into_bytes();
    let reports = vec![success_report(ids[2], &output(2)), success_report(last.result_id, &last_output)];
    let rest = host.report(reports).await.expect("the last reports");
    assert_eq!(rest.accepted, vec![ids[2], last.result_id]);
    let done = projects.wait("p").await;
    assert_eq!((done.work_units_done, done.results_valid), (4, 4), "{done:?}");
    assert_eq!(server.pid(), Some(pid), "the coordinator was not restarted");
    assert!(server.log().contains("write connection opened again after a failed group"), "{}", server.log());
}
