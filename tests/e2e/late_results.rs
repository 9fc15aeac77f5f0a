//! A copy reported after its work unit got its canonical result: the test
//! plays three hosts over gRPC on a policy of quorum 2 with three copies per
//! work unit, so the third copy (host C's) is still out when A and B agree.
//!
//! What the coordinator does with C's copies (`store::scheduling::record_reports`
//! and `abort_unneeded`, `domain::lifecycle::apply_report` and `transition`):
//! - reported in C's first call after the work units ended, the copies are
//!   recorded, then compared with the canonical result: the same output is
//!   valid and earns the same credit as the others, another output is invalid
//!   and earns nothing;
//! - that same call tells C to abort its other copies of ended work units and
//!   retires them as "didn't need"; a report of one of them afterwards is
//!   acknowledged and changes nothing.

use std::collections::BTreeMap;

use quorum_proto::v1;
use quorum_tests::cli::Submitted;
use quorum_tests::grpc::{Host, Projects, success_report};
use quorum_tests::{Server, TestDir, cli, primes};

/// Work units "0-100", "100-200" and "200-300".
const N_WORK_UNITS: u64 = 3;
const CHUNK: u64 = 100;
const WRONG_OUTPUT: &[u8] = b"666\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_result_after_done() {
    let dir = TestDir::new("late-results");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let manifest = dir.write(
        "project.toml",
        primes::manifest("late", 0, N_WORK_UNITS * CHUNK, CHUNK, "min_quorum = 2\ntarget_results = 3"),
    );
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, N_WORK_UNITS);
    let projects = Projects::connect(&url).await;

    // Each host takes one copy of every work unit, before anything is reported.
    let mut hosts = Vec::new();
    for name in ["host-a", "host-b", "host-c"] {
        let mut host = Host::register(&url, name).await;
        let work = host.request_work(N_WORK_UNITS as u32).await.unwrap_or_else(|e| panic!("RequestWork {name}: {e:?}"));
        let copies: BTreeMap<String, i64> = work
            .assignments
            .iter()
            .map(|assignment| (assignment.work_unit_name.clone(), assignment.result_id))
            .collect();
        assert_eq!(copies.len() as u64, N_WORK_UNITS, "{name} gets one copy of each work unit: {work:?}");
        hosts.push((host, copies));
    }
    let [(mut host_a, copies_a), (mut host_b, copies_b), (mut host_c, copies_c)]: [_; 3] =
        hosts.try_into().expect("three hosts");
    let status = projects.status("late").await;
    assert_eq!(status.results_in_progress, 3 * N_WORK_UNITS, "{status:?}");
    assert_eq!(status.results_unsent, 0, "{status:?}");

    // A and B report the correct output of every work unit: all are done.
    for (host, copies) in [(&mut host_a, &copies_a), (&mut host_b, &copies_b)] {
        let reports = copies.iter().map(|(name, &id)| success_report(id, primes::expected_output(name).as_bytes()));
        let response = host.report(reports.collect()).await.expect("ReportResults for A or B");
        assert_eq!(sorted(response.accepted), sorted(copies.values().copied().collect()));
        assert_eq!(response.abort, Vec::<i64>::new(), "A and B hold no copies of ended work units");
    }
    let status = projects.status("late").await;
    assert_eq!(status.work_units_done, N_WORK_UNITS, "{status:?}");
    assert_eq!(status.results_valid, 2 * N_WORK_UNITS, "{status:?}");
    assert_eq!(status.results_in_progress, N_WORK_UNITS, "C's copies are still out: {status:?}");
    let canonical_before = projects.canonical_results("late").await;
    for result in &canonical_before {
        assert!(
            [copies_a[&result.work_unit_name], copies_b[&result.work_unit_name]].contains(&result.result_id),
            "the canonical result is A's or B's: {result:?}"
        );
    }
    let results = by_id(projects.results("late").await);
    let credit = results[&copies_a["0-100"]].granted_credit;
    assert!(credit > 0.0, "a valid result earns credit: {:?}", results[&copies_a["0-100"]]);
    for name in ["0-100", "100-200", "200-300"] {
        for id in [copies_a[name], copies_b[name]] {
            assert_eq!(results[&id].validate_state, "valid", "{:?}", results[&id]);
            assert_eq!(results[&id].granted_credit, credit, "the same fuel earns the same credit: {:?}", results[&id]);
        }
        let c = &results[&copies_c[name]];
        assert_eq!((c.server_state.as_str(), c.validate_state.as_str()), ("in_progress", "pending"), "{c:?}");
    }
    let c_before = projects.host(host_c.id).await;
    assert_eq!((c_before.n_valid, c_before.n_invalid, c_before.total_credit), (0, 0, 0.0), "{c_before:?}");

    // C's first report after the work units ended: the correct output of
    // "0-100" and a wrong output for "100-200". Its copy of "200-300" is
    // aborted by the same call.
    let late_correct = copies_c["0-100"];
    let late_wrong = copies_c["100-200"];
    let aborted = copies_c["200-300"];
    let response = host_c
        .report(vec![
            success_report(late_correct, primes::expected_output("0-100").as_bytes()),
            success_report(late_wrong, WRONG_OUTPUT),
        ])
        .await
        .expect("ReportResults for C");
    assert_eq!(sorted(response.accepted), sorted(vec![late_correct, late_wrong]));
    assert_eq!(response.abort, vec![aborted], "C is told to abort its copy of a work unit that ended");

    let results = by_id(projects.results("late").await);
    let correct = &results[&late_correct];
    assert_eq!(
        (correct.server_state.as_str(), correct.outcome.as_str(), correct.validate_state.as_str()),
        ("over", "success", "valid"),
        "{correct:?}"
    );
    assert_eq!(correct.granted_credit, credit, "a late valid copy earns the same credit: {correct:?}");
    let wrong = &results[&late_wrong];
    assert_eq!(
        (wrong.server_state.as_str(), wrong.outcome.as_str(), wrong.validate_state.as_str()),
        ("over", "success", "invalid"),
        "{wrong:?}"
    );
    assert_eq!(wrong.granted_credit, 0.0, "{wrong:?}");
    let retired = &results[&aborted];
    assert_eq!(
        (retired.server_state.as_str(), retired.outcome.as_str(), retired.validate_state.as_str()),
        ("over", "didnt_need", "pending"),
        "{retired:?}"
    );
    assert_eq!(retired.granted_credit, 0.0, "{retired:?}");

    let c_after = projects.host(host_c.id).await;
    assert_eq!(c_after.n_valid, 1, "{c_after:?}");
    assert_eq!(c_after.n_invalid, 1, "{c_after:?}");
    assert_eq!(c_after.n_in_progress, 0, "{c_after:?}");
    assert_eq!(c_after.total_credit, credit, "{c_after:?}");
    assert_eq!(projects.canonical_results("late").await, canonical_before, "late copies change no canonical result");
    let status = projects.status("late").await;
    assert_eq!(status.work_units_done, N_WORK_UNITS, "{status:?}");
    assert_eq!(status.results_valid, 2 * N_WORK_UNITS + 1, "{status:?}");
    assert_eq!(status.results_invalid, 1, "{status:?}");
    assert_eq!(status.results_in_progress, 0, "{status:?}");
    assert_eq!(status.results_over, 3 * N_WORK_UNITS, "{status:?}");

    // C computed its aborted copy anyway and reports it: acknowledged (so a
    // real worker forgets it), but it stays retired and earns nothing.
    let results_before = projects.results("late").await;
    let status_before = projects.status("late").await;
    let response = host_c
        .report(vec![success_report(aborted, primes::expected_output("200-300").as_bytes())])
        .await
        .expect("ReportResults for C's aborted copy");
    assert_eq!(response.accepted, vec![aborted]);
    assert_eq!(response.abort, Vec::<i64>::new());
    assert_eq!(projects.results("late").await, results_before, "a report of an aborted copy changes nothing");
    assert_eq!(projects.status("late").await, status_before);
    let c_last = projects.host(host_c.id).await;
    assert_eq!(
        (c_last.n_valid, c_last.n_invalid, c_last.n_error, c_last.total_credit),
        (c_after.n_valid, c_after.n_invalid, c_after.n_error, c_after.total_credit),
        "{c_last:?}"
    );
}

fn sorted(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable();
    ids
}

fn by_id(results: Vec<v1::ResultInfo>) -> BTreeMap<i64, v1::ResultInfo> {
    results.into_iter().map(|result| (result.id, result)).collect()
}
