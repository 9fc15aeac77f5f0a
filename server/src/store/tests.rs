//! Store tests against a real database, with `now` chosen by the test.
//!
//! This file is compiled twice: as `tests` on a SQLite file, and as
//! `tests_postgres` on a PostgreSQL database of its own per test
//! (`test_databases`), so that every test checks both engines.

use super::scheduling::{Answer, Call};
use super::test_databases;
use super::*;
use crate::domain::app::digest_of;
use crate::domain::lifecycle::{Report, ReportError};
use crate::domain::names::{ProjectName, WorkUnitName};
use crate::domain::policy::{Limits, ReplicationPolicy, ValidatorKind};
use crate::domain::{HostId, ResultId, Timestamp};

const T0: Timestamp = Timestamp(1_700_000_000_000);
const DEADLINE_MS: u64 = 60_000;

struct Fixture {
    store: Store,
    database: test_databases::TestDatabase,
}

/// The engine this copy of the tests runs on.
fn engine() -> test_databases::Engine {
    test_databases::engine_of(module_path!())
}

async fn fixture() -> Fixture {
    let database = test_databases::new_database(engine()).await;
    let store = Store::open(database.location.clone()).await.expect("open store");
    Fixture { store, database }
}

fn name(text: &str) -> ProjectName {
    ProjectName::parse(text).unwrap()
}

fn project(text: &str, min_quorum: u32, target: u32) -> NewProject {
    let module = b"\0asm\x01\0\0\0".to_vec();
    NewProject {
        name: name(text),
        app_digest: digest_of(&module),
        app_module: module,
        policy: crate::domain::policy::tests::policy(min_quorum, target, 3, 8, DEADLINE_MS).unwrap(),
        limits: Limits::DEFAULT,
        validator: ValidatorKind::Bitwise,
        validator_module: None,
        nan_canonicalization: false,
        app_signature: None,
        seed: 0,
        app_args: Default::default(),
        files: Default::default(),
        file_limits: crate::domain::files::FileLimits::DEFAULT,
        checkpointing: false,
    }
}

fn units(n: usize) -> Vec<NewWorkUnit> {
    (0..n)
        .map(|i| NewWorkUnit {
            name: None,
            input: format!("{i}").into_bytes(),
            app_args: Default::default(),
            files: Default::default(),
        })
        .collect()
}

async fn host(store: &Store, name: &str) -> HostId {
    account_host(store, name, "").await
}

/// A host of volunteer account `account` (`""`: a host standing alone).
async fn account_host(store: &Store, name: &str, account: &str) -> HostId {
    registered_host(store, name, account, "").await
}

/// A host of volunteer account `account` registering from `address`.
async fn registered_host(store: &Store, name: &str, account: &str, address: &str) -> HostId {
    let new = NewHost {
        name: name.into(),
        n_cpus: 2,
        memory_bytes: 1 << 30,
        engine: "test".into(),
        os: "test".into(),
        account: account.into(),
        address: address.into(),
    };
    store.register_host(&new, &format!("hash-{name}"), T0).await.unwrap()
}

fn success(result: ResultId, output: &str) -> ReportInput {
    ReportInput {
        result_id: result,
        report: Report::Success {
            output_digest: digest_of(output.as_bytes()),
            fuel_used: 3_000_000_000,
            engine: "test".into(),
            resumed: false,
        },
        output: output.as_bytes().to_vec(),
        stderr_tail: String::new(),
        run_time_ms: 5,
        error_message: String::new(),
        output_files: Vec::new(),
    }
}

async fn status(store: &Store, project: &str) -> ProjectStatus {
    store.project_status(Some(&name(project))).await.unwrap().remove(0)
}

#[tokio::test]
async fn agreeing_hosts_make_a_canonical_result() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(3), T0).await.unwrap();
    let (a, b) = (host(&f.store, "a").await, host(&f.store, "b").await);
    let for_a = f.store.lease_work(a, 10, T0).await.unwrap();
    let for_b = f.store.lease_work(b, 10, T0).await.unwrap();
    assert_eq!((for_a.len(), for_b.len()), (3, 3), "one copy of each work unit per host");
    assert!(f.store.lease_work(a, 10, T0).await.unwrap().is_empty(), "never two copies to one host");

    let reports_a: Vec<_> = for_a.iter().map(|x| success(x.result_id, &format!("out {}", x.work_unit_id))).collect();
    let reports_b: Vec<_> = for_b.iter().map(|x| success(x.result_id, &format!("out {}", x.work_unit_id))).collect();
    f.store.record_reports(a, &reports_a, T0).await.unwrap();
    assert_eq!(status(&f.store, "p").await.work_units_done, 0);
    let summary = f.store.record_reports(b, &reports_b, T0).await.unwrap();
    assert_eq!(summary.accepted.len(), 3);

    let s = status(&f.store, "p").await;
    assert_eq!((s.work_units_done, s.results_valid, s.results_invalid), (3, 6, 0));
    let canonical = f.store.canonical_results(&name("p"), 0, 100).await.unwrap();
    assert_eq!(canonical.len(), 3);
    assert_eq!(canonical[0].output, format!("out {}", canonical[0].work_unit_id).into_bytes());
    let hosts = f.store.list_hosts(T0).await.unwrap();
    assert_eq!(hosts[0].n_valid, 3);
    assert!((hosts[0].total_credit - 9.0).abs() < 1e-9, "3 results x 3e9 fuel = 9 credit");
}

#[tokio::test]
async fn a_wrong_output_never_becomes_canonical() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(1), T0).await.unwrap();
    let (good, bad, other) = (host(&f.store, "good").await, host(&f.store, "bad").await, host(&f.store, "o").await);
    let g = f.store.lease_work(good, 1, T0).await.unwrap().remove(0);
    let b = f.store.lease_work(bad, 1, T0).await.unwrap().remove(0);
    f.store.record_reports(bad, &[success(b.result_id, "wrong")], T0).await.unwrap();
    f.store.record_reports(good, &[success(g.result_id, "right")], T0).await.unwrap();
    assert_eq!(status(&f.store, "p").await.work_units_done, 0, "disagreement is inconclusive");
    let o = f.store.lease_work(other, 1, T0).await.unwrap().remove(0);
    f.store.record_reports(other, &[success(o.result_id, "right")], T0).await.unwrap();
    let canonical = f.store.canonical_results(&name("p"), 0, 10).await.unwrap();
    assert_eq!(canonical[0].output, b"right");
    let results = f.store.list_results(&name("p"), None, 0, 10).await.unwrap();
    let bad_result = results.iter().find(|r| r.id == b.result_id.0).unwrap();
    assert_eq!(bad_result.validate_state, "invalid");
    assert_eq!(f.store.list_hosts(T0).await.unwrap()[1].n_invalid, 1);
}

#[tokio::test]
async fn refused_reports_change_nothing() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(1), T0).await.unwrap();
    let (a, b) = (host(&f.store, "a").await, host(&f.store, "b").await);
    let x = f.store.lease_work(a, 1, T0).await.unwrap().remove(0);
    let y = f.store.lease_work(b, 1, T0).await.unwrap().remove(0);

    // b reports its own copy and a's in one batch: the whole batch is refused.
    let error = f.store.record_reports(b, &[success(y.result_id, "v"), success(x.result_id, "v")], T0).await;
    assert!(matches!(error, Err(Error::Report(ReportError::NotYourResult { .. }))), "{error:?}");
    assert_eq!(status(&f.store, "p").await.results_in_progress, 2, "nothing was recorded");
    let unknown = f.store.record_reports(b, &[success(ResultId(999), "v")], T0).await;
    assert!(matches!(unknown, Err(Error::Report(ReportError::NotYourResult { .. }))));

    // The same report twice is acknowledged twice and counted once.
    f.store.record_reports(a, &[success(x.result_id, "v")], T0).await.unwrap();
    let again = f.store.record_reports(a, &[success(x.result_id, "v")], T0).await.unwrap();
    assert_eq!(again.accepted, vec![x.result_id]);
    assert_eq!(status(&f.store, "p").await.results_over, 1);
    // A different output for the same copy is refused.
    let conflict = f.store.record_reports(a, &[success(x.result_id, "w")], T0).await;
    assert!(matches!(conflict, Err(Error::Report(ReportError::ConflictingReport { .. }))));
}

#[tokio::test]
async fn deadlines_turn_copies_into_no_reply_and_reissue_them() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(1), T0).await.unwrap();
    let (a, b, c) = (host(&f.store, "a").await, host(&f.store, "b").await, host(&f.store, "c").await);
    let x = f.store.lease_work(a, 1, T0).await.unwrap().remove(0);
    f.store.lease_work(b, 1, T0).await.unwrap();
    assert_eq!(f.store.next_deadline().await.unwrap(), Some(T0.plus_ms(DEADLINE_MS)));

    let before = f.store.run_transitioner(T0.plus_ms(DEADLINE_MS - 1)).await.unwrap();
    assert_eq!(before.work_units, 0);
    f.store.record_reports(a, &[success(x.result_id, "v")], T0).await.unwrap();
    let after = f.store.run_transitioner(T0.plus_ms(DEADLINE_MS)).await.unwrap();
    assert_eq!(after.work_units, 1);
    let s = status(&f.store, "p").await;
    assert_eq!((s.results_no_reply, s.results_unsent), (1, 1), "b's copy timed out and a new one was made");
    assert_eq!(f.store.list_hosts(T0).await.unwrap()[1].n_no_reply, 1);

    let z = f.store.lease_work(c, 1, T0.plus_ms(DEADLINE_MS)).await.unwrap().remove(0);
    f.store.record_reports(c, &[success(z.result_id, "v")], T0.plus_ms(DEADLINE_MS)).await.unwrap();
    assert_eq!(status(&f.store, "p").await.work_units_done, 1);
}

#[tokio::test]
async fn a_failed_submission_leaves_nothing_behind() {
    let f = fixture().await;
    let mut batch = units(3);
    batch[0].name = Some(WorkUnitName::parse("same").unwrap());
    batch[2].name = Some(WorkUnitName::parse("same").unwrap());
    let error = f.store.create_project(&project("p", 2, 2), &batch, T0).await;
    assert!(matches!(error, Err(Error::DuplicateWorkUnit { .. })), "{error:?}");
    assert!(matches!(f.store.project_status(Some(&name("p"))).await, Err(Error::ProjectNotFound(_))));
    assert!(f.store.project_status(None).await.unwrap().is_empty());

    f.store.create_project(&project("p", 2, 2), &units(2), T0).await.unwrap();
    let duplicate = f.store.create_project(&project("p", 2, 2), &units(2), T0).await;
    assert!(matches!(duplicate, Err(Error::ProjectExists(_))));
    let mut clash = units(1);
    clash[0].name = Some(WorkUnitName::parse("wu-1").unwrap());
    let error = f.store.add_work_units(&name("p"), &clash, None, T0).await;
    assert!(matches!(error, Err(Error::DuplicateWorkUnit { .. })), "{error:?}");
    assert_eq!(status(&f.store, "p").await.work_units_total, 2);
    let (n, _, _) = f.store.add_work_units(&name("p"), &units(4), None, T0).await.unwrap();
    assert_eq!((n, status(&f.store, "p").await.work_units_total), (4, 6));
}

#[tokio::test]
async fn cancelling_retires_copies_and_aborts_those_in_flight() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(2), T0).await.unwrap();
    let a = host(&f.store, "a").await;
    let leased = f.store.lease_work(a, 1, T0).await.unwrap();
    assert_eq!(f.store.cancel_project(&name("p"), T0).await.unwrap(), 2);
    let s = status(&f.store, "p").await;
    assert_eq!((s.state.as_str(), s.work_units_failed, s.results_unsent), ("cancelled", 2, 0));

    let other = f.store.create_project(&project("q", 1, 1), &units(1), T0).await.unwrap();
    assert_eq!(other.1, 1);
    let mut reply = f.store.request_work(a, work(vec![], None, 10), T0).await.unwrap();
    assert_eq!(reply.abort, vec![leased[0].result_id], "the cancelled copy is aborted");
    let q = reply.assignments.remove(0);
    assert!(reply.assignments.is_empty(), "nothing from the cancelled project");
    let summary = f.store.record_reports(a, &[success(q.result_id, "v")], T0).await.unwrap();
    assert!(summary.abort.is_empty(), "an abort is told once");
    let late = f.store.record_reports(a, &[success(leased[0].result_id, "v")], T0).await.unwrap();
    assert_eq!(late.accepted, vec![leased[0].result_id], "a report of an aborted copy is acknowledged");
    assert_eq!(status(&f.store, "q").await.work_units_done, 1);
}

#[tokio::test]
async fn concurrent_leases_and_reports_all_succeed() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(40), T0).await.unwrap();
    let mut hosts = Vec::new();
    for i in 0..8 {
        hosts.push(host(&f.store, &format!("h{i}")).await);
    }
    let leases = hosts.iter().map(|&h| {
        let store = f.store.clone();
        tokio::spawn(async move {
            let leased = store.lease_work(h, 10, T0).await?;
            let reports: Vec<_> = leased.iter().map(|x| success(x.result_id, "same")).collect();
            if !reports.is_empty() {
                store.record_reports(h, &reports, T0).await?;
            }
            Ok::<_, Error>(leased)
        })
    });
    let mut total = 0;
    for lease in leases {
        let leased = lease.await.unwrap().expect("no SQLITE_BUSY under concurrency");
        let distinct: std::collections::HashSet<_> = leased.iter().map(|x| x.work_unit_id).collect();
        assert_eq!(distinct.len(), leased.len(), "never two copies of one work unit to a host");
        total += leased.len();
    }
    assert_eq!(total, 80);
    assert_eq!(status(&f.store, "p").await.work_units_done, 40);
}

/// Two colluding hosts return the same wrong output whenever they both hold a
/// copy of the work unit; honest hosts return the right one. The colluders ask
/// for work first. Returns whether the wrong output became canonical.
async fn collusion(min_quorum: u32, colluders_account: [&str; 2]) -> bool {
    let f = fixture().await;
    let mut project = project("p", min_quorum, min_quorum);
    project.policy = crate::domain::policy::tests::policy(min_quorum, min_quorum, 3, 12, DEADLINE_MS).unwrap();
    f.store.create_project(&project, &units(1), T0).await.unwrap();
    let mut colluders = Vec::new();
    for (i, account) in colluders_account.iter().enumerate() {
        colluders.push(account_host(&f.store, &format!("colluder-{i}"), account).await);
    }
    let mut honest = Vec::new();
    for i in 0..10 {
        honest.push(host(&f.store, &format!("honest-{i}")).await);
    }
    for &colluder in &colluders {
        for copy in f.store.lease_work(colluder, 1, T0).await.unwrap() {
            f.store.record_reports(colluder, &[success(copy.result_id, "wrong")], T0).await.unwrap();
        }
    }
    for &h in &honest {
        if status(&f.store, "p").await.work_units_open == 0 {
            break;
        }
        for copy in f.store.lease_work(h, 1, T0).await.unwrap() {
            f.store.record_reports(h, &[success(copy.result_id, "right")], T0).await.unwrap();
        }
    }
    let canonical = f.store.canonical_results(&name("p"), 0, 10).await.unwrap();
    assert_eq!(canonical.len(), 1, "the work unit ends with a canonical result");
    canonical[0].output == b"wrong"
}

/// Which policies two colluding hosts defeat when both get copies of one work
/// unit, and which they cannot. The README's "Choosing a policy" states this.
#[tokio::test]
async fn colluding_hosts_defeat_small_quorums_unless_accounts_are_distinct() {
    // Two accounts: a pair agreeing on a wrong output wins wherever 2 is enough.
    assert!(collusion(2, ["a", "b"]).await, "quorum 2: both copies go to the colluders");
    assert!(collusion(3, ["a", "b"]).await, "quorum 3: 2 of 3 agree");
    assert!(!collusion(4, ["a", "b"]).await, "quorum 4 needs 3 agreeing results");
    assert!(!collusion(5, ["a", "b"]).await, "quorum 5 needs 3 agreeing results");
    // One account: the second colluder never gets a copy of the same work unit.
    assert!(!collusion(2, ["mallory", "mallory"]).await, "quorum 2, one copy per account");
    assert!(!collusion(3, ["mallory", "mallory"]).await, "quorum 3, one copy per account");
}

#[tokio::test]
async fn a_custom_validator_module_decides_agreement() {
    let f = fixture().await;
    let validator = wat::parse_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/validators/first_line.wat"))
        .expect("the example validator compiles");
    let mut project = project("p", 2, 2);
    project.validator = ValidatorKind::Custom { module_digest: digest_of(&validator) };
    project.validator_module = Some(validator);
    f.store.create_project(&project, &units(2), T0).await.unwrap();
    let (a, b, c) = (host(&f.store, "a").await, host(&f.store, "b").await, host(&f.store, "c").await);
    let for_a = f.store.lease_work(a, 2, T0).await.unwrap();
    let for_b = f.store.lease_work(b, 2, T0).await.unwrap();
    // Work unit 1: same first line, different diagnostics: they agree.
    // Work unit 2: different first lines: inconclusive, a third copy settles it.
    f.store
        .record_reports(a, &[success(for_a[0].result_id, "42\nran in 3 ms"), success(for_a[1].result_id, "7\n")], T0)
        .await
        .unwrap();
    f.store
        .record_reports(b, &[success(for_b[0].result_id, "42\nran in 5 ms"), success(for_b[1].result_id, "8\n")], T0)
        .await
        .unwrap();
    let s = status(&f.store, "p").await;
    assert_eq!((s.work_units_done, s.results_unsent), (1, 1));
    let z = f.store.lease_work(c, 1, T0).await.unwrap().remove(0);
    f.store.record_reports(c, &[success(z.result_id, "8\nother log")], T0).await.unwrap();
    let canonical = f.store.canonical_results(&name("p"), 0, 10).await.unwrap();
    assert_eq!(canonical[0].output, b"42\nran in 3 ms");
    assert_eq!(canonical[1].output, b"8\n");
    assert_eq!(status(&f.store, "p").await.results_invalid, 1);
}

fn error_report(result: ResultId) -> ReportInput {
    ReportInput {
        result_id: result,
        report: Report::ClientError { fuel_used: 10, engine: "test".into(), resumed: false, given_back: false },
        output: Vec::new(),
        stderr_tail: String::new(),
        run_time_ms: 1,
        error_message: "exit code 3".into(),
        output_files: Vec::new(),
    }
}

#[tokio::test]
async fn a_batch_whose_first_results_are_errors_is_paused_until_resumed() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(30), T0).await.unwrap();
    let hosts = [host(&f.store, "a").await, host(&f.store, "b").await, host(&f.store, "c").await];
    let mut leased = Vec::new();
    for &h in &hosts {
        leased.push((h, f.store.lease_work(h, 10, T0).await.unwrap()));
    }
    for (h, copies) in &leased {
        let reports: Vec<_> = copies.iter().map(|c| error_report(c.result_id)).collect();
        f.store.record_reports(*h, &reports, T0).await.unwrap();
    }
    let s = status(&f.store, "p").await;
    assert_eq!(s.batches.len(), 1);
    assert_eq!(s.batches[0].state, "paused");
    let reason = s.batches[0].pause_reason.clone().unwrap();
    // Three distinct hosts reported the same error and none succeeded: the app's fault.
    assert!(reason.contains("the app fails on every host"), "{reason}");
    assert!(reason.contains("3 distinct hosts reported the same error (\"exit code 3\")"), "{reason}");
    assert!(s.work_units_open > 0 && s.results_unsent > 0);

    let fresh = host(&f.store, "d").await;
    assert!(f.store.lease_work(fresh, 10, T0).await.unwrap().is_empty(), "a paused batch is not scheduled");
    assert_eq!(f.store.resume_batches(&name("p"), None).await.unwrap(), 1);
    assert_eq!(status(&f.store, "p").await.batches[0].state, "active");
    assert!(!f.store.lease_work(fresh, 10, T0).await.unwrap().is_empty(), "resumed");
    let missing = f.store.resume_batches(&name("p"), Some(99)).await;
    assert!(matches!(missing, Err(Error::BatchNotFound { .. })), "{missing:?}");
}

#[tokio::test]
async fn copies_given_back_unstarted_never_pause_a_batch() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(30), T0).await.unwrap();
    for name in ["a", "b", "c", "d"] {
        let h = host(&f.store, name).await;
        let copies = f.store.lease_work(h, 10, T0).await.unwrap();
        let given_back: Vec<_> = copies
            .iter()
            .map(|c| ReportInput {
                report: Report::ClientError { fuel_used: 0, engine: "test".into(), resumed: false, given_back: true },
                error_message: "given back by the volunteer (detach)".into(),
                output_files: Vec::new(),
                ..error_report(c.result_id)
            })
            .collect();
        f.store.record_reports(h, &given_back, T0).await.unwrap();
    }
    let s = status(&f.store, "p").await;
    assert_eq!(s.batches[0].state, "active", "{:?}", s.batches[0].pause_reason);
    assert!(s.results_unsent > 0, "given back copies are replaced at once");
}

/// A batch of 10 work units at quorum 1 whose first 9 are done by a fast host
/// (1 s turnaround): the batch is in its tail.
async fn tail_fixture(deadline_ms: u64) -> (Fixture, HostId) {
    let f = fixture().await;
    let mut project = project("p", 1, 1);
    project.policy = crate::domain::policy::tests::policy(1, 1, 3, 8, deadline_ms).unwrap();
    f.store.create_project(&project, &units(10), T0).await.unwrap();
    let fast = host(&f.store, "fast").await;
    let copies = f.store.lease_work(fast, 9, T0).await.unwrap();
    let reports: Vec<_> = copies.iter().map(|c| success(c.result_id, "v")).collect();
    f.store.record_reports(fast, &reports, T0.plus_ms(1000)).await.unwrap();
    assert_eq!(status(&f.store, "p").await.work_units_done, 9);
    (f, fast)
}

#[tokio::test]
async fn the_tail_of_a_batch_goes_to_fast_hosts_first() {
    let (f, _fast) = tail_fixture(100_000).await;
    // A slow host: 50 s turnaround on another project.
    let slow = host(&f.store, "slow").await;
    f.store.create_project(&project("other", 1, 1), &units(1), T0).await.unwrap();
    let mut other = f.store.lease_work(slow, 10, T0).await.unwrap();
    other.retain(|a| a.project == "other");
    f.store.record_reports(slow, &[success(other[0].result_id, "v")], T0.plus_ms(50_000)).await.unwrap();

    // The last copy was created at T0; the slow host may take it only after the
    // grace period (a tenth of the deadline), then it is no longer refused.
    let refused = f.store.lease_work(slow, 1, T0.plus_ms(9_999)).await.unwrap();
    assert!(refused.is_empty(), "a tail copy does not go to a slow host at once");
    let taken = f.store.lease_work(slow, 1, T0.plus_ms(10_000)).await.unwrap();
    assert_eq!(taken.len(), 1, "after the grace period it does");
}

#[tokio::test]
async fn a_tail_copy_at_risk_gets_a_spare_copy_early() {
    let (f, _fast) = tail_fixture(100_000).await;
    let unknown = host(&f.store, "new").await;
    let last = f.store.lease_work(unknown, 1, T0.plus_ms(20_000)).await.unwrap();
    assert_eq!(last.len(), 1, "no turnaround known yet for this batch's hosts... the copy went out");
    f.store.run_transitioner(T0.plus_ms(69_999)).await.unwrap();
    assert_eq!(status(&f.store, "p").await.results_unsent, 0, "not yet at risk: less than half the deadline");
    let pass = f.store.run_transitioner(T0.plus_ms(70_000)).await.unwrap();
    assert_eq!(pass.work_units, 1);
    assert_eq!(status(&f.store, "p").await.results_unsent, 1, "a spare copy was sent early");
    let work_units = f.store.list_work_units(&name("p"), 9, 10).await.unwrap();
    assert_eq!(work_units[0].target_results, 2, "the work unit's own target, not the project's, is read back");
    f.store.run_transitioner(T0.plus_ms(80_000)).await.unwrap();
    assert_eq!(status(&f.store, "p").await.results_unsent, 1, "one spare per work unit");
}

#[tokio::test]
async fn failed_work_units_are_retried_with_a_new_policy_and_batches_cancelled() {
    let f = fixture().await;
    let mut strict = project("p", 2, 2);
    strict.policy = crate::domain::policy::tests::policy(2, 2, 0, 2, DEADLINE_MS).unwrap();
    f.store.create_project(&strict, &units(2), T0).await.unwrap();
    let a = host(&f.store, "a").await;
    // One error fails a work unit at max_error_results = 0; its other copy is still out.
    let copies = f.store.lease_work(a, 2, T0).await.unwrap();
    let other = host(&f.store, "other").await;
    let still_out = f.store.lease_work(other, 1, T0).await.unwrap().remove(0);
    assert_eq!(still_out.work_unit_id, copies[0].work_unit_id);
    f.store.record_reports(a, &[error_report(copies[0].result_id)], T0).await.unwrap();
    let failed = copies[0].work_unit_id;
    assert_eq!(status(&f.store, "p").await.work_units_failed, 1);
    let open = f.store.retry_work_units(&name("p"), &[copies[1].work_unit_id], None, T0).await;
    assert!(matches!(open, Err(Error::NotFailed { .. })), "{open:?}");

    let nothing = f.store.retry_work_units(&name("q"), &[], None, T0).await;
    assert!(matches!(nothing, Err(Error::ProjectNotFound(_))), "{nothing:?}");

    // Retried as a new batch with a lenient policy: a new attempt, fresh copies.
    let lenient = crate::domain::policy::tests::policy(1, 1, 3, 4, DEADLINE_MS).unwrap();
    let (n, batch) = f.store.retry_work_units(&name("p"), &[], Some(&lenient), T0).await.unwrap();
    assert_eq!(n, 1);
    let again = f.store.retry_work_units(&name("p"), &[], None, T0).await;
    assert!(matches!(again, Err(Error::NothingToRetry(_))), "nothing failed any more: {again:?}");
    let old_copy = f.store.list_results(&name("p"), None, 0, 100).await.unwrap();
    let old_copy = old_copy.iter().find(|r| r.id == still_out.result_id.0).unwrap();
    assert_eq!((old_copy.server_state.as_str(), old_copy.outcome.as_deref()), ("over", Some("didnt_need")));
    // Its late report is acknowledged and changes nothing.
    f.store.record_reports(other, &[success(still_out.result_id, "late")], T0).await.unwrap();
    let s = status(&f.store, "p").await;
    assert_eq!((s.work_units_open, s.work_units_failed, s.batches.len()), (2, 0, 2));
    let b = host(&f.store, "b").await;
    let retried = f.store.lease_work(b, 2, T0).await.unwrap();
    let copy = retried.iter().find(|c| c.work_unit_id == failed).expect("a fresh copy of the retried work unit");
    f.store.record_reports(b, &[success(copy.result_id, "v")], T0).await.unwrap();
    assert_eq!(status(&f.store, "p").await.work_units_done, 1, "quorum 1 under the batch's policy");

    // Cancelling a batch fails its open work units only.
    let n = f.store.cancel_work_units(&name("p"), &CancelScope::Batch(batch), T0).await.unwrap();
    assert_eq!(n, 0, "the retried work unit is already done");
    let n = f.store.cancel_work_units(&name("p"), &CancelScope::Batch(1), T0).await.unwrap();
    assert_eq!(n, 1);
    let s = status(&f.store, "p").await;
    assert_eq!((s.work_units_done, s.work_units_failed, s.work_units_open), (1, 1, 0));
    let missing =
        f.store.cancel_work_units(&name("p"), &CancelScope::WorkUnits(vec![crate::domain::WorkUnitId(99)]), T0).await;
    assert!(matches!(missing, Err(Error::WorkUnitNotFound { .. })), "{missing:?}");
}

/// Project "p" of 3 work units at priority 0, then a batch of 2 ("urgent-1",
/// "urgent-2") at priority 5.
async fn project_with_urgent_batch(f: &Fixture) {
    f.store.create_project(&project("p", 1, 1), &units(3), T0).await.unwrap();
    let spec = crate::domain::policy::PolicySpec { priority: 5, ..project("p", 1, 1).policy.spec() };
    let urgent = ReplicationPolicy::new(spec).unwrap();
    let mut later = units(2);
    later[0].name = Some(WorkUnitName::parse("urgent-1").unwrap());
    later[1].name = Some(WorkUnitName::parse("urgent-2").unwrap());
    f.store.add_work_units(&name("p"), &later, Some(&urgent), T0).await.unwrap();
}

#[tokio::test]
async fn higher_priority_batches_go_out_first() {
    let f = fixture().await;
    project_with_urgent_batch(&f).await;
    let a = host(&f.store, "a").await;
    let first: Vec<String> =
        f.store.lease_work(a, 3, T0).await.unwrap().into_iter().map(|x| x.work_unit_name).collect();
    assert_eq!(first, ["urgent-1", "urgent-2", "wu-1"]);
}

#[tokio::test]
async fn a_copy_reported_after_the_purge_is_too_late() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 3), &units(1), T0).await.unwrap();
    let (a, b, c) = (host(&f.store, "a").await, host(&f.store, "b").await, host(&f.store, "c").await);
    let x = f.store.lease_work(a, 1, T0).await.unwrap().remove(0);
    let y = f.store.lease_work(b, 1, T0).await.unwrap().remove(0);
    let z = f.store.lease_work(c, 1, T0).await.unwrap().remove(0);
    f.store.record_reports(a, &[success(x.result_id, "v")], T0).await.unwrap();
    f.store.record_reports(b, &[success(y.result_id, "v")], T0).await.unwrap();
    assert_eq!(f.store.purge_project(&name("p"), T0).await.unwrap(), 1);
    assert_eq!(f.store.purge_project(&name("p"), T0).await.unwrap(), 0, "idempotent");
    f.store.record_reports(c, &[success(z.result_id, "v")], T0).await.unwrap();
    let late = f.store.list_results(&name("p"), None, 0, 10).await.unwrap().remove(2);
    assert_eq!((late.validate_state.as_str(), late.granted_credit), ("too_late", 0.0));
    let canonical = f.store.canonical_results(&name("p"), 0, 10).await.unwrap();
    assert_eq!(canonical[0].output, b"v", "the canonical output survives the purge");
}

#[tokio::test]
async fn lost_results_are_found_again() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(3), T0).await.unwrap();
    let a = host(&f.store, "a").await;
    let leased = f.store.lease_work(a, 3, T0).await.unwrap();
    let ids: Vec<ResultId> = leased.iter().map(|x| x.result_id).collect();
    // Asks with room for every copy it could have lost (a holds all three
    // work units, so no new copy can come).
    let lost = |host, held: &[ResultId], now| {
        let store = f.store.clone();
        let request = work(vec![], Some(held.to_vec()), 3);
        async move { store.request_work(host, request, now).await.unwrap() }
    };
    assert!(lost(a, &ids, T0).await.assignments.is_empty(), "nothing lost");
    let found = lost(a, &ids[..1], T0).await;
    assert_eq!(found.n_lost, 2);
    let found = found.assignments;
    assert_eq!(found.iter().map(|x| x.result_id).collect::<Vec<_>>(), ids[1..].to_vec());
    assert_eq!(found[0].deadline, leased[1].deadline, "the original deadline stands");
    assert_eq!(found[0].input, leased[1].input);
    let b = host(&f.store, "b").await;
    let for_b = lost(b, &[], T0).await;
    assert_eq!(for_b.n_lost, 0, "only the host's own copies");
    assert!(for_b.assignments.iter().all(|x| !ids.contains(&x.result_id)), "{for_b:?}");
    let late = T0.plus_ms(DEADLINE_MS);
    assert!(lost(a, &[], late).await.assignments.is_empty(), "not past their deadline");
}

fn work(reports: Vec<ReportInput>, held: Option<Vec<ResultId>>, slots: u32) -> WorkRequest {
    WorkRequest { reports, held, slots, cached_files: Default::default() }
}

#[tokio::test]
async fn one_request_reports_resends_leases_and_aborts() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(4), T0).await.unwrap();
    let (a, b) = (host(&f.store, "a").await, host(&f.store, "b").await);
    let first = f.store.request_work(a, work(Vec::new(), Some(Vec::new()), 2), T0).await.unwrap();
    assert_eq!((first.assignments.len(), first.n_lost), (2, 0));
    let for_b = f.store.request_work(b, work(Vec::new(), None, 2), T0).await.unwrap().assignments;

    // a reports its first copy, says it holds nothing else (the second was
    // lost) and asks for 2: the lost copy comes back, then one new copy.
    let report = success(first.assignments[0].result_id, "v");
    let reply = f.store.request_work(a, work(vec![report.clone()], Some(Vec::new()), 2), T0).await.unwrap();
    assert_eq!(reply.accepted, vec![first.assignments[0].result_id]);
    assert_eq!(reply.n_lost, 1);
    assert_eq!(reply.assignments[0], first.assignments[1], "the lost copy, as first sent");
    assert_eq!(reply.assignments.len(), 2);
    assert!(reply.abort.is_empty());

    // The same report again is acknowledged and not counted twice.
    let held: Vec<ResultId> = reply.assignments.iter().map(|x| x.result_id).collect();
    let again = f.store.request_work(a, work(vec![report], Some(held.clone()), 0), T0).await.unwrap();
    assert_eq!((again.accepted.len(), again.assignments.len()), (1, 0));
    assert_eq!(status(&f.store, "p").await.results_over, 1);

    // b's agreeing report ends the first work unit; its reply aborts nothing of
    // b's, and the whole project is cancelled: a's next call is told to abort.
    let b_report = for_b.iter().find(|x| x.work_unit_id == first.assignments[0].work_unit_id).unwrap();
    f.store.request_work(b, work(vec![success(b_report.result_id, "v")], None, 0), T0).await.unwrap();
    assert_eq!(status(&f.store, "p").await.work_units_done, 1);
    f.store.cancel_project(&name("p"), T0).await.unwrap();
    let aborted = f.store.request_work(a, work(Vec::new(), Some(held.clone()), 1), T0).await.unwrap();
    let mut abort = aborted.abort.clone();
    abort.sort();
    let mut expected = held;
    expected.sort();
    assert_eq!(abort, expected);
    assert!(aborted.assignments.is_empty());
}

#[tokio::test]
async fn a_refused_report_in_a_work_request_changes_nothing() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(3), T0).await.unwrap();
    let (a, b) = (host(&f.store, "a").await, host(&f.store, "b").await);
    let x = f.store.lease_work(a, 1, T0).await.unwrap().remove(0);
    let y = f.store.lease_work(b, 1, T0).await.unwrap().remove(0);
    let before = status(&f.store, "p").await;
    // b reports its copy and a's, and asks for work: refused as a whole.
    let request = work(vec![success(y.result_id, "v"), success(x.result_id, "v")], Some(Vec::new()), 5);
    let error = f.store.request_work(b, request, T0).await;
    assert!(matches!(error, Err(Error::Report(ReportError::NotYourResult { .. }))), "{error:?}");
    let after = status(&f.store, "p").await;
    assert_eq!(
        (after.results_unsent, after.results_in_progress, after.results_over),
        (before.results_unsent, before.results_in_progress, before.results_over),
        "no report recorded, no copy leased"
    );
    let hosts = f.store.list_hosts(T0).await.unwrap();
    assert_eq!(hosts.iter().map(|h| h.n_in_progress).sum::<u64>(), 2);
}

#[tokio::test]
async fn a_resumed_copy_is_validated_on_its_output_and_credited_from_a_whole_copy() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(1), T0).await.unwrap();
    let (a, b) = (host(&f.store, "a").await, host(&f.store, "b").await);
    let x = f.store.lease_work(a, 1, T0).await.unwrap().remove(0);
    let y = f.store.lease_work(b, 1, T0).await.unwrap().remove(0);
    // a resumed from a checkpoint and ran only a third of the instructions.
    let mut resumed = success(x.result_id, "v");
    resumed.report = Report::Success {
        output_digest: digest_of(b"v"),
        fuel_used: 1_000_000_000,
        engine: "test".into(),
        resumed: true,
    };
    f.store.record_reports(a, &[resumed], T0).await.unwrap();
    f.store.record_reports(b, &[success(y.result_id, "v")], T0).await.unwrap();
    let s = status(&f.store, "p").await;
    assert_eq!((s.work_units_done, s.results_valid), (1, 2));
    let results = f.store.list_results(&name("p"), None, 0, 10).await.unwrap();
    for result in &results {
        assert!((result.granted_credit - 3.0).abs() < 1e-9, "credit of the whole copy (3e9 fuel): {result:?}");
    }
}

#[tokio::test]
async fn concurrent_work_requests_commit_together_and_a_refused_one_keeps_nothing() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(40), T0).await.unwrap();
    let mut hosts = Vec::new();
    for i in 0..8 {
        hosts.push(host(&f.store, &format!("h{i}")).await);
    }
    let first: Vec<Vec<Assignment>> = {
        let calls = hosts.iter().map(|&h| {
            let store = f.store.clone();
            tokio::spawn(async move { store.request_work(h, work(Vec::new(), Some(Vec::new()), 10), T0).await })
        });
        let mut leased = Vec::new();
        for call in calls {
            leased.push(call.await.unwrap().unwrap().assignments);
        }
        leased
    };
    assert_eq!(first.iter().map(Vec::len).sum::<usize>(), 80);
    // Every host reports its copies and asks again, concurrently; host 0 also
    // reports host 1's first copy: its whole call is refused, the others are not.
    let stolen = first[1][0].result_id;
    let calls = hosts.iter().zip(&first).enumerate().map(|(i, (&h, leased))| {
        let store = f.store.clone();
        let mut reports: Vec<_> = leased.iter().map(|x| success(x.result_id, "same")).collect();
        if i == 0 {
            reports.push(success(stolen, "same"));
        }
        tokio::spawn(async move { store.request_work(h, work(reports, Some(Vec::new()), 10), T0).await })
    });
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.unwrap());
    }
    assert!(matches!(outcomes[0], Err(Error::Report(ReportError::NotYourResult { .. }))), "{:?}", outcomes[0]);
    for outcome in &outcomes[1..] {
        assert_eq!(outcome.as_ref().unwrap().accepted.len(), 10);
    }
    let s = status(&f.store, "p").await;
    assert_eq!(s.results_over, 70, "host 0's ten reports were not kept");
    assert_eq!(s.results_in_progress, 10);
    // Host 0 reports again, correctly: everything validates.
    let reports: Vec<_> = first[0].iter().map(|x| success(x.result_id, "same")).collect();
    f.store.request_work(hosts[0], work(reports, Some(Vec::new()), 0), T0).await.unwrap();
    assert_eq!(status(&f.store, "p").await.work_units_done, 40);
}

// Groups of scheduler calls, run by `scheduling::run_calls` directly (as the
// writer runs them: one transaction for the whole group).

/// The coordinator's secret in group tests (no project here uses adaptive
/// replication: no draw decides anything).
const SECRET: u64 = 7;

/// Runs `calls` as one group on `store`, as the writer does: `run_calls`
/// inside one transaction, then commit. Panics on a database failure.
async fn run_group(store: &Store, calls: &[Call], now: Timestamp) -> Vec<Result<Answer>> {
    let mut tx = store.write().await.expect("begin");
    let (answers, found) =
        super::scheduling::run_calls(&mut tx, &store.validators, SECRET, &store.frontiers, calls, now)
            .await
            .expect("no database failure");
    tx.commit().await.expect("commit");
    found.keep(&store.frontiers);
    assert_eq!(answers.len(), calls.len(), "one answer per call");
    answers
}

/// A `RequestWork` call.
fn ask(host: HostId, reports: Vec<ReportInput>, held: Option<Vec<ResultId>>, slots: u32) -> Call {
    Call::RequestWork { host, request: work(reports, held, slots) }
}

/// A `ReportResults` call.
fn report(host: HostId, reports: Vec<ReportInput>) -> Call {
    Call::Report { host, reports }
}

fn reply(answer: &Result<Answer>) -> &WorkReply {
    match answer {
        Ok(Answer::RequestWork(reply)) => reply,
        other => panic!("expected a work reply, got {other:?}"),
    }
}

fn summary(answer: &Result<Answer>) -> &ReportSummary {
    match answer {
        Ok(Answer::Report(summary)) => summary,
        other => panic!("expected a report summary, got {other:?}"),
    }
}

fn work_units_of(assignments: &[Assignment]) -> Vec<crate::domain::WorkUnitId> {
    assignments.iter().map(|x| x.work_unit_id).collect()
}

/// Copies sent to `host` today, as stored.
async fn results_today(store: &Store, host: HostId) -> i64 {
    query_scalar("SELECT results_today FROM hosts WHERE id = ?").bind(host.0).fetch_one(&store.pool).await.unwrap()
}

/// Every copy of `project`, by id, as its debug text (to compare states).
async fn copies(store: &Store, project: &str) -> HashMap<i64, String> {
    let results = store.list_results(&name(project), None, 0, 1000).await.unwrap();
    results.into_iter().map(|r| (r.id, format!("{r:?}"))).collect()
}

#[tokio::test]
async fn a_refused_call_in_a_group_writes_nothing_and_the_other_calls_go_on() {
    let f = fixture().await;
    // q: one work unit, whose copy `a` holds when q is cancelled (an abort due to a).
    f.store.create_project(&project("q", 1, 1), &units(1), T0).await.unwrap();
    let (a, b, c, d) =
        (host(&f.store, "a").await, host(&f.store, "b").await, host(&f.store, "c").await, host(&f.store, "d").await);
    let q_copy = f.store.lease_work(a, 1, T0).await.unwrap().remove(0);
    let mut p = project("p", 2, 2);
    p.limits.output_bytes = 8;
    f.store.create_project(&p, &units(4), T0).await.unwrap();
    let for_a = f.store.lease_work(a, 2, T0).await.unwrap();
    let for_b = f.store.lease_work(b, 2, T0).await.unwrap();
    let for_c = f.store.lease_work(c, 2, T0).await.unwrap();
    assert_eq!(work_units_of(&for_a), work_units_of(&for_b), "a and b hold copies of work units 1 and 2");
    let (a1, a2, b1, b2) = (for_a[0].result_id, for_a[1].result_id, for_b[0].result_id, for_b[1].result_id);
    let (c3, c4) = (for_c[0].result_id, for_c[1].result_id);
    // Cancelled after a's last call: a is told to abort its copy on its next accepted call.
    f.store.cancel_project(&name("q"), T0).await.unwrap();
    let (p_before, q_before) = (copies(&f.store, "p").await, copies(&f.store, "q").await);
    let today_before = [results_today(&f.store, a).await, results_today(&f.store, b).await];

    let calls = [
        report(b, vec![success(b1, "v")]),
        // a reports its copy and c's, says it holds nothing (a2 would be lost)
        // and asks for work: refused.
        ask(a, vec![success(a1, "v"), success(c3, "v")], Some(Vec::new()), 4),
        // c's second output is above the project's limit: refused.
        report(c, vec![success(c3, "v"), success(c4, "far too long")]),
        // b reports b2, then b1 with another output than call 0 did: refused.
        ask(b, vec![success(b2, "v"), success(b1, "w")], Some(Vec::new()), 2),
        ask(d, Vec::new(), None, 2),
    ];
    let answers = run_group(&f.store, &calls, T0).await;

    assert_eq!(summary(&answers[0]).accepted, vec![b1]);
    assert!(matches!(answers[1], Err(Error::Report(ReportError::NotYourResult { .. }))), "{:?}", answers[1]);
    assert!(matches!(answers[2], Err(Error::OutputTooLarge { .. })), "{:?}", answers[2]);
    assert!(matches!(answers[3], Err(Error::Report(ReportError::ConflictingReport { .. }))), "{:?}", answers[3]);
    let for_d = &reply(&answers[4]).assignments;
    assert_eq!(work_units_of(for_d), work_units_of(&for_c), "d gets the last unsent copies");

    // Nothing of the refused calls: their copies are as they were (no report,
    // no abort of a's cancelled copy), nothing new was leased to their hosts.
    let (p_after, q_after) = (copies(&f.store, "p").await, copies(&f.store, "q").await);
    for id in [a1, a2, b2, c3, c4] {
        assert_eq!(p_after[&id.0], p_before[&id.0], "copy {id:?} of a refused call");
    }
    assert_eq!(q_after[&q_copy.result_id.0], q_before[&q_copy.result_id.0], "a was not answered: its abort stays");
    assert_eq!([results_today(&f.store, a).await, results_today(&f.store, b).await], today_before, "no lease");
    let in_progress: HashMap<i64, u64> =
        f.store.list_hosts(T0).await.unwrap().into_iter().map(|h| (h.id, h.n_in_progress)).collect();
    assert_eq!([in_progress[&a.0], in_progress[&b.0], in_progress[&c.0], in_progress[&d.0]], [3, 1, 2, 2]);
    assert_eq!(status(&f.store, "p").await.work_units_done, 0, "a1 was not recorded: work unit 1 is not done");

    // The other calls' effects are there: b1 recorded as call 0 reported it,
    // d's copies leased to d.
    let results = f.store.list_results(&name("p"), None, 0, 100).await.unwrap();
    let b1_after = results.iter().find(|r| r.id == b1.0).unwrap();
    assert_eq!((b1_after.server_state.as_str(), b1_after.outcome.as_deref()), ("over", Some("success")));
    assert_eq!(b1_after.output_digest.as_deref(), Some(digest_of(b"v").as_str()));
    for x in for_d {
        let copy = results.iter().find(|r| r.id == x.result_id.0).unwrap();
        assert_eq!((copy.server_state.as_str(), copy.host_id), ("in_progress", Some(d.0)));
    }
    // a's next call, accepted, is told to abort its cancelled copy.
    let next = f.store.request_work(a, work(Vec::new(), None, 0), T0).await.unwrap();
    assert_eq!(next.abort, vec![q_copy.result_id]);
}

#[tokio::test]
async fn two_calls_of_one_host_in_a_group_never_get_two_copies_of_a_work_unit() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(2), T0).await.unwrap();
    let (a, b) = (host(&f.store, "a").await, host(&f.store, "b").await);
    let calls = [ask(a, Vec::new(), None, 2), ask(a, Vec::new(), None, 2), ask(b, Vec::new(), None, 2)];
    let answers = run_group(&f.store, &calls, T0).await;
    let (first, second, for_b) =
        (&reply(&answers[0]).assignments, &reply(&answers[1]).assignments, &reply(&answers[2]).assignments);
    assert_eq!(first.len(), 2);
    assert!(second.is_empty(), "a already got a copy of both work units in this group: {second:?}");
    assert_eq!(work_units_of(for_b), work_units_of(first), "b gets the other copy of each");
    for wu in work_units_of(first) {
        let holders: Vec<Option<i64>> =
            f.store.list_results(&name("p"), Some(wu.0), 0, 10).await.unwrap().into_iter().map(|r| r.host_id).collect();
        assert_eq!(holders.len(), 2);
        assert_ne!(holders[0], holders[1], "work unit {wu:?}: two hosts");
    }
}

#[tokio::test]
async fn two_hosts_of_one_account_in_a_group_never_get_copies_of_one_work_unit() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(2), T0).await.unwrap();
    let alice_1 = account_host(&f.store, "alice-1", "alice").await;
    let alice_2 = account_host(&f.store, "alice-2", "alice").await;
    let (bob, carol) = (account_host(&f.store, "bob", "bob").await, host(&f.store, "carol").await);
    let calls = [
        ask(alice_1, Vec::new(), None, 1),
        ask(alice_2, Vec::new(), None, 2),
        ask(bob, Vec::new(), None, 2),
        ask(carol, Vec::new(), None, 2),
    ];
    let answers = run_group(&f.store, &calls, T0).await;
    let got: Vec<Vec<crate::domain::WorkUnitId>> =
        answers.iter().map(|answer| work_units_of(&reply(answer).assignments)).collect();
    let both = work_units_of(&reply(&answers[2]).assignments);
    assert_eq!(both.len(), 2, "bob, first of another account, gets one copy of each work unit");
    assert_eq!(got[0], vec![both[0]], "alice-1 asks for one: the oldest");
    assert_eq!(got[1], vec![both[1]], "alice-2 gets only the work unit alice-1 did not get");
    assert!(got[3].is_empty(), "two copies of each work unit: none left for carol: {:?}", got[3]);
}

#[tokio::test]
async fn a_hosts_daily_quota_holds_across_its_calls_in_one_group() {
    let f = fixture().await;
    f.store.create_project(&project("p", 1, 1), &units(10), T0).await.unwrap();
    let (a, b) = (host(&f.store, "a").await, host(&f.store, "b").await);
    query("UPDATE hosts SET daily_quota = 3 WHERE id = ?").bind(a.0).execute(&f.store.pool).await.unwrap();
    let calls = [ask(a, Vec::new(), None, 2), ask(a, Vec::new(), None, 2), ask(b, Vec::new(), None, 2)];
    let answers = run_group(&f.store, &calls, T0).await;
    let got: Vec<usize> = answers.iter().map(|answer| reply(answer).assignments.len()).collect();
    assert_eq!(got, [2, 1, 2], "a's second call gets only what is left of a's quota of 3");
    assert_eq!(results_today(&f.store, a).await, 3, "both calls' copies are counted");
    let later = run_group(&f.store, &[ask(a, Vec::new(), None, 2)], T0.plus_ms(1)).await;
    assert!(reply(&later[0]).assignments.is_empty(), "the quota is used up for the day");
}

#[tokio::test]
async fn earlier_calls_in_a_group_get_the_highest_priority_then_oldest_copies() {
    let f = fixture().await;
    project_with_urgent_batch(&f).await;
    let (a, b, c) = (host(&f.store, "a").await, host(&f.store, "b").await, host(&f.store, "c").await);
    let calls = [ask(a, Vec::new(), None, 2), ask(b, Vec::new(), None, 2), ask(c, Vec::new(), None, 2)];
    let answers = run_group(&f.store, &calls, T0).await;
    let got: Vec<Vec<String>> = answers
        .iter()
        .map(|answer| reply(answer).assignments.iter().map(|x| x.work_unit_name.clone()).collect())
        .collect();
    assert_eq!(got, [vec!["urgent-1", "urgent-2"], vec!["wu-1", "wu-2"], vec!["wu-3"]]);
}

#[tokio::test]
async fn reports_completing_a_quorum_in_a_group_validate_it_and_abort_the_copy_left() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 3), &units(1), T0).await.unwrap();
    let (a, b, c) = (host(&f.store, "a").await, host(&f.store, "b").await, host(&f.store, "c").await);
    let x = f.store.lease_work(a, 1, T0).await.unwrap().remove(0).result_id;
    let y = f.store.lease_work(b, 1, T0).await.unwrap().remove(0).result_id;
    let z = f.store.lease_work(c, 1, T0).await.unwrap().remove(0).result_id;
    // c's call comes first in the group, before the reports that end the work unit.
    let calls = [
        ask(c, Vec::new(), Some(vec![z]), 1),
        report(a, vec![success(x, "v")]),
        ask(b, vec![success(y, "v")], Some(Vec::new()), 0),
    ];
    let answers = run_group(&f.store, &calls, T0).await;
    assert_eq!(reply(&answers[0]).abort, vec![z], "c stops its copy: the work unit ended in this group");
    assert!(reply(&answers[0]).assignments.is_empty());
    assert!(summary(&answers[1]).abort.is_empty());
    assert_eq!((reply(&answers[2]).accepted.clone(), reply(&answers[2]).abort.clone()), (vec![y], vec![]));

    let canonical = f.store.canonical_results(&name("p"), 0, 10).await.unwrap();
    assert_eq!(canonical.len(), 1, "the work unit is done, with a canonical result");
    assert!([x.0, y.0].contains(&canonical[0].result_id));
    assert_eq!(canonical[0].output, b"v");
    let results = f.store.list_results(&name("p"), None, 0, 10).await.unwrap();
    let states: Vec<(i64, &str, Option<&str>, &str)> = results
        .iter()
        .map(|r| (r.id, r.server_state.as_str(), r.outcome.as_deref(), r.validate_state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            (x.0, "over", Some("success"), "valid"),
            (y.0, "over", Some("success"), "valid"),
            (z.0, "over", Some("didnt_need"), "pending")
        ]
    );
}

#[tokio::test]
async fn lost_copies_in_a_group_go_back_only_to_their_host_and_only_before_their_deadline() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(3), T0).await.unwrap();
    let (a, b) = (host(&f.store, "a").await, host(&f.store, "b").await);
    let expired = f.store.lease_work(a, 1, T0).await.unwrap().remove(0);
    let due = f.store.lease_work(a, 1, T0.plus_ms(10_000)).await.unwrap().remove(0);
    let now = T0.plus_ms(DEADLINE_MS);
    assert_eq!(expired.deadline, now, "the first copy's deadline has come");
    // b says it holds nothing, a too: only a's copy still due is a's lost copy.
    let calls = [ask(b, Vec::new(), Some(Vec::new()), 0), ask(a, Vec::new(), Some(Vec::new()), 2)];
    let answers = run_group(&f.store, &calls, now).await;
    let (for_b, for_a) = (reply(&answers[0]), reply(&answers[1]));
    assert_eq!((for_b.n_lost, for_b.assignments.len()), (0, 0), "a's copies never go to b");
    assert_eq!(for_a.n_lost, 1);
    assert_eq!(for_a.assignments[0], due, "the lost copy, as first sent, deadline included");
    assert_eq!(for_a.assignments.len(), 2, "then one new copy");
    let new = &for_a.assignments[1];
    assert!(
        ![expired.work_unit_id, due.work_unit_id].contains(&new.work_unit_id),
        "the new copy is of a third work unit: {new:?}"
    );
    let results = f.store.list_results(&name("p"), None, 0, 10).await.unwrap();
    let expired_after = results.iter().find(|r| r.id == expired.result_id.0).unwrap();
    assert_eq!((expired_after.host_id, expired_after.deadline), (Some(a.0), Some(expired.deadline.0)), "untouched");
}

#[tokio::test]
async fn a_trusted_host_gets_a_work_unit_alone_and_its_other_copy_is_not_sent() {
    let f = fixture().await;
    let mut adaptive = project("p", 2, 2);
    let spec = crate::domain::policy::PolicySpec { adaptive_replication: true, ..adaptive.policy.spec() };
    adaptive.policy = ReplicationPolicy::new(spec).unwrap();
    f.store.create_project(&adaptive, &units(1), T0).await.unwrap();
    let a = host(&f.store, "a").await;
    // A streak of 1,000 valid results: accepted alone with a chance of 0.999.
    query("UPDATE hosts SET consecutive_valid = 1000 WHERE id = ?").bind(a.0).execute(&f.store.pool).await.unwrap();
    let leased = f.store.lease_work(a, 1, T0).await.unwrap();
    assert_eq!(leased.len(), 1);
    let results = f.store.list_results(&name("p"), None, 0, 10).await.unwrap();
    let sent = results.iter().find(|r| r.id == leased[0].result_id.0).unwrap();
    assert_eq!((sent.server_state.as_str(), sent.outcome.as_deref()), ("in_progress", None), "{sent:?}");
    let other = results.iter().find(|r| r.id != leased[0].result_id.0).unwrap();
    assert_eq!((other.server_state.as_str(), other.outcome.as_deref()), ("over", Some("didnt_need")), "{other:?}");
    let b = host(&f.store, "b").await;
    assert!(f.store.lease_work(b, 1, T0).await.unwrap().is_empty(), "no second copy goes out");
    f.store.record_reports(a, &[success(leased[0].result_id, "v")], T0).await.unwrap();
    assert_eq!(status(&f.store, "p").await.work_units_done, 1, "accepted on the single result");
}

// The scheduler's walk is complete: a host is refused only when no copy it
// may take waits.

/// Work units of a project "backlog" (quorum 2), each with one copy reported
/// by `holder` (waiting for a second host) and one unsent copy, made with SQL
/// so that a million of them take seconds.
async fn backlog_held_by(store: &Store, holder: HostId, n: i64) {
    store.create_project(&project("backlog", 2, 2), &units(1), T0).await.unwrap();
    let mut tx = store.write().await.unwrap();
    let project: i64 = query_scalar("SELECT id FROM projects WHERE name = 'backlog'").fetch_one(&mut tx).await.unwrap();
    query("UPDATE results SET server_state = 'over', outcome = 'success', host_id = ? WHERE project_id = ? AND id = (SELECT MIN(id) FROM results WHERE project_id = ?)")
        .bind(holder.0)
        .bind(project)
        .bind(project)
        .execute(&mut tx)
        .await
        .unwrap();
    query(
        "WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
         INSERT INTO work_units (project_id, name, input, state, target_results, created_at) \
         SELECT ?, 'b' || i, ?, 'open', 2, ? FROM n",
    )
    .bind(n)
    .bind(project)
    .bind(vec![0_u8])
    .bind(T0.0)
    .execute(&mut tx)
    .await
    .unwrap();
    query(
        "INSERT INTO results (work_unit_id, project_id, server_state, outcome, validate_state, host_id, sent_at, \
         received_at, output_digest, created_at) \
         SELECT id, project_id, 'over', 'success', 'pending', ?, ?, ?, 'd', ? FROM work_units \
         WHERE project_id = ? AND name LIKE 'b%' ORDER BY id",
    )
    .bind(holder.0)
    .bind(T0.0)
    .bind(T0.0)
    .bind(T0.0)
    .bind(project)
    .execute(&mut tx)
    .await
    .unwrap();
    query(
        "INSERT INTO results (work_unit_id, project_id, server_state, validate_state, created_at) \
         SELECT id, project_id, 'unsent', 'pending', ? FROM work_units WHERE project_id = ? AND name LIKE 'b%' ORDER BY id",
    )
    .bind(T0.0)
    .bind(project)
    .execute(&mut tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn behind_a_million_copies_a_host_may_not_take_it_gets_the_one_it_may() {
    let f = fixture().await;
    let lone = host(&f.store, "lone").await;
    backlog_held_by(&f.store, lone, 1_000_000).await;
    assert_eq!(status(&f.store, "backlog").await.results_unsent, 1_000_000);
    f.store.create_project(&project("small", 1, 1), &units(1), T0).await.unwrap();
    let got = f.store.lease_work(lone, 4, T0).await.unwrap();
    assert_eq!(work_units_of(&got).len(), 1, "{got:?}");
    assert_eq!(got[0].project, "small");
    // The walk remembered the backlog: the host's frontier is past it, and
    // the next copy it may take, added later, is found at once.
    let walker = super::frontiers::Walker::Host(lone);
    let frontier = f.store.frontiers.peek(&walker);
    let last_backlog: i64 = query_scalar("SELECT MAX(id) FROM results WHERE server_state = 'unsent'")
        .fetch_one(&f.store.pool)
        .await
        .unwrap();
    assert!(frontier.get(&0).is_some_and(|&last| last >= last_backlog), "{frontier:?}");
    assert!(f.store.lease_work(lone, 4, T0).await.unwrap().is_empty(), "nothing else it may take");
    f.store.add_work_units(&name("small"), &units(2), None, T0).await.unwrap();
    assert_eq!(f.store.lease_work(lone, 4, T0).await.unwrap().len(), 2, "new copies land after the frontier");
    // Another host takes the backlog from its start.
    let other = host(&f.store, "other").await;
    let got = f.store.lease_work(other, 3, T0).await.unwrap();
    assert_eq!(got.iter().map(|a| a.project.as_str()).collect::<Vec<_>>(), ["backlog"; 3]);
}

#[tokio::test]
async fn a_lone_host_takes_one_copy_of_every_work_unit_of_every_project() {
    let f = fixture().await;
    // 190 copies in all: within a new host's daily quota.
    for (project_name, n) in [("primes", 80), ("integral", 90), ("third", 20)] {
        f.store.create_project(&project(project_name, 2, 2), &units(n), T0).await.unwrap();
    }
    let lone = host(&f.store, "lone").await;
    // A host with a proven record: its quota is not what stops it here.
    query("UPDATE hosts SET daily_quota = 1000 WHERE id = ?").bind(lone.0).execute(&f.store.pool).await.unwrap();
    let mut taken = std::collections::HashSet::new();
    loop {
        let got = f.store.lease_work(lone, 7, T0).await.unwrap();
        if got.is_empty() {
            break;
        }
        for copy in got {
            assert!(taken.insert(copy.work_unit_id), "two copies of {:?}", copy.work_unit_id);
        }
    }
    assert_eq!(taken.len(), 190, "one copy of each work unit, whatever the order of the unsent copies");
    for project_name in ["primes", "integral", "third"] {
        let s = status(&f.store, project_name).await;
        assert_eq!(s.results_unsent, s.work_units_open, "{project_name}: the rest needs another host");
    }
}

#[tokio::test]
async fn a_batch_resumed_behind_a_frontier_is_walked_again() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(30), T0).await.unwrap();
    query("UPDATE batches SET state = 'paused', pause_reason = 'test'").execute(&f.store.pool).await.unwrap();
    assert_eq!(status(&f.store, "p").await.batches[0].state, "paused");
    // A host walks the unsent copies while the batch is paused: none for it.
    let late = host(&f.store, "late").await;
    f.store.create_project(&project("q", 1, 1), &units(1), T0).await.unwrap();
    let got = f.store.lease_work(late, 5, T0).await.unwrap();
    assert_eq!(got.iter().map(|a| a.project.as_str()).collect::<Vec<_>>(), ["q"]);
    f.store.resume_batches(&name("p"), None).await.unwrap();
    assert_eq!(f.store.lease_work(late, 5, T0).await.unwrap().len(), 5, "the resumed batch's copies are found");
}

#[tokio::test]
async fn when_every_attached_host_is_slower_than_the_tail_line_the_tail_goes_out_at_once() {
    // The batch's first results came from a fast host (1 s turnaround); the
    // grace for slow hosts is 10 hours (a tenth of the deadline).
    let (f, _fast) = tail_fixture(100 * 3_600_000).await;
    let slow = host(&f.store, "slow").await;
    f.store.create_project(&project("other", 1, 1), &units(1), T0).await.unwrap();
    let start = T0.plus_ms(2_000);
    let other = f.store.lease_work(slow, 10, start).await.unwrap();
    assert_eq!(other.iter().map(|a| a.project.as_str()).collect::<Vec<_>>(), ["other"], "the fast host is attached");
    // Its turnaround: 50 s, far above 1.5 x the batch's 1 s.
    f.store.record_reports(slow, &[success(other[0].result_id, "v")], start.plus_ms(50_000)).await.unwrap();
    let refused = f.store.lease_work(slow, 1, start.plus_ms(50_000)).await.unwrap();
    assert!(refused.is_empty(), "the fast host is still attached: the tail waits for it");
    // Ten minutes without the fast host: every attached host is slower than the line.
    let later = T0.plus_ms(1_000 + 10 * 60 * 1000 + 1);
    let last = f.store.lease_work(slow, 1, later).await.unwrap();
    assert_eq!(last.len(), 1, "no attached host is faster: the last copy goes out without waiting for the grace");
}

#[tokio::test]
async fn lost_copies_are_sent_again_within_slots() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(3), T0).await.unwrap();
    let a = host(&f.store, "a").await;
    let leased = f.store.lease_work(a, 3, T0).await.unwrap();
    let none = f.store.request_work(a, work(vec![], Some(Vec::new()), 0), T0).await.unwrap();
    assert_eq!((none.n_lost, none.assignments.len()), (0, 0), "slots = 0: nothing is sent, lost or new");
    let one = f.store.request_work(a, work(vec![], Some(Vec::new()), 1), T0).await.unwrap();
    assert_eq!(one.n_lost, 1);
    assert_eq!(one.assignments.iter().map(|x| x.result_id).collect::<Vec<_>>(), [leased[0].result_id]);
}

#[tokio::test]
async fn an_account_with_the_old_separator_still_holds_one_copy_per_work_unit() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(2), T0).await.unwrap();
    let (a, b) = (account_host(&f.store, "a", "eve\u{1f}x").await, account_host(&f.store, "b", "eve\u{1f}x").await);
    let for_a = f.store.lease_work(a, 2, T0).await.unwrap();
    assert_eq!(for_a.len(), 2);
    assert!(f.store.lease_work(b, 2, T0).await.unwrap().is_empty(), "b's account already holds both work units");
}

#[tokio::test]
async fn hosts_of_one_account_share_their_walk_past_what_the_account_holds() {
    let f = fixture().await;
    let first = account_host(&f.store, "first", "lab").await;
    backlog_held_by(&f.store, first, 1_000).await;
    f.store.create_project(&project("small", 1, 1), &units(2), T0).await.unwrap();
    let got = f.store.lease_work(first, 1, T0).await.unwrap();
    assert_eq!(got.iter().map(|a| a.project.as_str()).collect::<Vec<_>>(), ["small"]);
    // A second host of the account starts where the first left off: past the
    // backlog its account holds.
    let second = account_host(&f.store, "second", "lab").await;
    let walker = super::frontiers::Walker::Account("lab".to_owned());
    let frontier = f.store.frontiers.peek(&walker);
    let past = frontier[&0];
    let got = f.store.lease_work(second, 5, T0).await.unwrap();
    assert_eq!(got.iter().map(|a| a.project.as_str()).collect::<Vec<_>>(), ["small"], "nothing else for the account");
    assert!(f.store.frontiers.peek(&walker)[&0] >= past);
    // A host of another account takes the backlog.
    let other = account_host(&f.store, "other", "elsewhere").await;
    assert_eq!(f.store.lease_work(other, 2, T0).await.unwrap().len(), 2);
}

/// A success report of `output` claiming `fuel_used` on `engine`.
fn claimed_success(result: ResultId, output: &str, fuel_used: u64, engine: &str) -> ReportInput {
    let mut report = success(result, output);
    report.report = Report::Success {
        output_digest: digest_of(output.as_bytes()),
        fuel_used,
        engine: engine.into(),
        resumed: false,
    };
    report
}

/// Credit of each host, by name.
async fn credits(store: &Store) -> Vec<(String, f64)> {
    store.list_hosts(T0).await.unwrap().into_iter().map(|h| (h.name, h.total_credit)).collect()
}

#[tokio::test]
async fn a_host_claiming_huge_fuel_on_another_engine_inflates_no_credit() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(1), T0).await.unwrap();
    let (cheat, honest) = (host(&f.store, "cheat").await, host(&f.store, "honest").await);
    let c = f.store.lease_work(cheat, 1, T0).await.unwrap().remove(0);
    let h = f.store.lease_work(honest, 1, T0).await.unwrap().remove(0);
    // The cheat reports first, so its copy is the canonical one.
    f.store
        .record_reports(cheat, &[claimed_success(c.result_id, "right", 9_000_000_000_000_000_000, "fake 1")], T0)
        .await
        .unwrap();
    f.store
        .record_reports(honest, &[claimed_success(h.result_id, "right", 600_000, "wasmtime 48.0.8")], T0)
        .await
        .unwrap();
    let canonical = f.store.canonical_results(&name("p"), 0, 10).await.unwrap();
    assert_eq!(canonical[0].result_id, c.result_id.0, "the cheat's copy is canonical");
    assert_eq!(credits(&f.store).await, [("cheat".to_owned(), 0.0006), ("honest".to_owned(), 0.0006)]);
    let results = f.store.list_results(&name("p"), None, 0, 10).await.unwrap();
    assert!(results.iter().all(|r| r.granted_credit == 0.0006), "{results:?}");
}

#[tokio::test]
async fn a_work_unit_accepted_alone_earns_at_most_the_typical_replicated_credit() {
    // A fixed secret: the single copy's draw is then the same on every run
    // (a random one refuses it once in 1,000 runs at a streak of 1,000).
    let database = test_databases::new_database(engine()).await;
    let store = Store::open_with_secret(database.location.clone(), 7).await.expect("open store");
    let f = Fixture { store, database };
    let mut adaptive = project("p", 2, 2);
    let spec = crate::domain::policy::PolicySpec { adaptive_replication: true, ..adaptive.policy.spec() };
    adaptive.policy = ReplicationPolicy::new(spec).unwrap();
    f.store.create_project(&adaptive, &units(4), T0).await.unwrap();
    // Three work units validated by replication: credits 3, 2 and 4 (the
    // lowest claim of each pair): typical credit 3.
    let (b, c) = (host(&f.store, "b").await, host(&f.store, "c").await);
    let for_b = f.store.lease_work(b, 3, T0).await.unwrap();
    let for_c = f.store.lease_work(c, 3, T0).await.unwrap();
    for ((x, y), fuel) in for_b.iter().zip(&for_c).zip([3_000_000_000, 2_000_000_000, 4_000_000_000]) {
        assert_eq!(x.work_unit_id, y.work_unit_id);
        f.store.record_reports(b, &[claimed_success(x.result_id, "v", fuel, "test")], T0).await.unwrap();
        f.store.record_reports(c, &[claimed_success(y.result_id, "v", fuel * 10, "other")], T0).await.unwrap();
    }
    assert_eq!(credits(&f.store).await, [("b".to_owned(), 9.0), ("c".to_owned(), 9.0)]);
    // A trusted host alone on the fourth, claiming far more: typical credit.
    let a = host(&f.store, "a").await;
    query("UPDATE hosts SET consecutive_valid = 1000 WHERE id = ?").bind(a.0).execute(&f.store.pool).await.unwrap();
    let alone = f.store.lease_work(a, 1, T0).await.unwrap().remove(0);
    f.store
        .record_reports(a, &[claimed_success(alone.result_id, "v", 9_000_000_000_000_000_000, "x")], T0)
        .await
        .unwrap();
    assert_eq!(status(&f.store, "p").await.work_units_done, 4, "accepted on the single result");
    let a_credit = credits(&f.store).await.into_iter().find(|(name, _)| name == "a").unwrap().1;
    assert_eq!(a_credit, 3.0, "the median of the replicated credits, not the claim");
}

#[tokio::test]
async fn accounts_stored_before_they_were_canonical_are_rewritten_at_open() {
    let f = fixture().await;
    let store = &f.store;
    account_host(store, "a", "  Ünïcode Bob ").await;
    account_host(store, "b", "alice").await;
    account_host(store, "c", "").await;
    let reopened = Store::open(f.database.location.clone()).await.unwrap();
    let accounts: Vec<String> = reopened.list_hosts(T0).await.unwrap().into_iter().map(|h| h.account).collect();
    assert_eq!(accounts, ["ünïcode bob", "alice", ""]);
}

/// A project like `project(text, 2, 2)` whose app is another module (`tag`
/// in a custom section), so its digest differs.
fn app_project(text: &str, tag: &[u8]) -> NewProject {
    let mut module = b"\0asm\x01\0\0\0\0".to_vec();
    module.push(tag.len() as u8 + 1);
    module.push(tag.len() as u8);
    module.extend_from_slice(tag);
    NewProject { app_digest: digest_of(&module), app_module: module, ..project(text, 2, 2) }
}

#[tokio::test]
async fn an_app_failing_everywhere_costs_its_hosts_nothing_in_a_good_project() {
    use crate::domain::trust::{INITIAL_DAILY_QUOTA, MAX_DAILY_QUOTA};
    let f = fixture().await;
    let (good, bad) = (project("good", 2, 2), app_project("bad", b"bad"));
    // The failing project first: its copies come first in the queue.
    f.store.create_project(&bad, &units(30), T0).await.unwrap();
    f.store.create_project(&good, &units(30), T0).await.unwrap();
    let hosts = [host(&f.store, "a").await, host(&f.store, "b").await, host(&f.store, "c").await];
    let mut now = T0;
    for _ in 0..100 {
        for &h in &hosts {
            let copies = f.store.lease_work(h, 4, now).await.unwrap();
            let reports: Vec<_> = copies
                .iter()
                .map(|c| match c.project.as_str() {
                    "bad" => error_report(c.result_id),
                    _ => success(c.result_id, &format!("out {}", c.work_unit_id)),
                })
                .collect();
            if !reports.is_empty() {
                f.store.record_reports(h, &reports, now).await.unwrap();
            }
        }
        now = now.plus_ms(1000);
        if status(&f.store, "good").await.work_units_open == 0 {
            break;
        }
    }
    let s = status(&f.store, "good").await;
    assert_eq!((s.work_units_done, s.results_error), (30, 0), "the good project completes: {s:?}");
    let s = status(&f.store, "bad").await;
    assert!(s.results_error >= 3 && s.work_units_done == 0, "{s:?}");
    // The failing app is the app's fault, and says so.
    let reason = s.batches[0].pause_reason.clone().unwrap_or_default();
    assert_eq!(s.batches[0].state, "paused", "{s:?}");
    assert!(reason.contains("the app fails on every host") && reason.contains("exit code 3"), "{reason}");
    for host in f.store.list_hosts(now).await.unwrap() {
        // Nothing reduced the host's own quota: the valid results raised it.
        assert!(host.daily_quota > INITIAL_DAILY_QUOTA, "{host:?}");
        assert!(host.n_error > 0, "every host ran the failing app: {host:?}");
        let quota = |digest: &crate::domain::Digest| {
            host.app_quotas.iter().find(|q| q.app_digest == digest.as_str()).cloned().expect("a quota per app run")
        };
        let (good_quota, bad_quota) = (quota(&good.app_digest), quota(&bad.app_digest));
        assert_eq!((good_quota.daily_quota, good_quota.exhausted), (MAX_DAILY_QUOTA, false), "{host:?}");
        assert_eq!(good_quota.projects, ["good"]);
        assert!(bad_quota.daily_quota < INITIAL_DAILY_QUOTA, "the failing app's quota paid: {host:?}");
    }
}

#[tokio::test]
async fn errors_are_blamed_on_the_host_once_others_succeed() {
    use crate::domain::trust::INITIAL_DAILY_QUOTA;
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(1), T0).await.unwrap();
    let (a, b, c) = (host(&f.store, "a").await, host(&f.store, "b").await, host(&f.store, "c").await);
    let for_a = f.store.lease_work(a, 1, T0).await.unwrap();
    f.store.record_reports(a, &[error_report(for_a[0].result_id)], T0).await.unwrap();
    let quota_of = |hosts: &[HostInfo], h: HostId| hosts.iter().find(|x| x.id == h.0).unwrap().daily_quota;
    let hosts = f.store.list_hosts(T0).await.unwrap();
    assert_eq!(quota_of(&hosts, a), INITIAL_DAILY_QUOTA, "maybe the app's fault: the host keeps its quota");
    for h in [b, c] {
        let copy = f.store.lease_work(h, 1, T0).await.unwrap();
        f.store.record_reports(h, &[success(copy[0].result_id, "v")], T0).await.unwrap();
    }
    assert_eq!(status(&f.store, "p").await.work_units_done, 1);
    let hosts = f.store.list_hosts(T0).await.unwrap();
    assert_eq!(quota_of(&hosts, a), INITIAL_DAILY_QUOTA / 2, "others succeeded: the error was the host's");
    assert_eq!(quota_of(&hosts, b), INITIAL_DAILY_QUOTA * 2);
}

#[tokio::test]
async fn a_lone_host_cannot_pause_a_batch() {
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(40), T0).await.unwrap();
    let (a, b, c) = (host(&f.store, "a").await, host(&f.store, "b").await, host(&f.store, "c").await);
    let fail_all = async |h: HostId, n: u32| {
        let copies = f.store.lease_work(h, n, T0).await.unwrap();
        let reports: Vec<_> = copies.iter().map(|c| error_report(c.result_id)).collect();
        f.store.record_reports(h, &reports, T0).await.unwrap();
        copies.len()
    };
    // Its whole quota (20 copies), all errors: the first 20 results of the batch.
    assert_eq!(fail_all(a, 20).await, 20);
    let s = status(&f.store, "p").await;
    assert_eq!((s.results_error, s.batches[0].state.as_str()), (20, "active"), "one host alone: {s:?}");
    // A second host erring does not pause it either; a third, with the same error, does.
    fail_all(b, 1).await;
    assert_eq!(status(&f.store, "p").await.batches[0].state, "active");
    fail_all(c, 1).await;
    assert_eq!(status(&f.store, "p").await.batches[0].state, "paused");
    // After a resume the erring hosts count afresh: the lone host cannot pause it again.
    assert_eq!(f.store.resume_batches(&name("p"), None).await.unwrap(), 1);
    let d = host(&f.store, "d").await;
    fail_all(d, 20).await;
    let s = status(&f.store, "p").await;
    assert_eq!(s.batches[0].state, "active", "{s:?}");
}

#[tokio::test]
async fn registering_again_does_not_reset_a_punished_quota() {
    use crate::domain::trust::INITIAL_DAILY_QUOTA;
    let f = fixture().await;
    f.store.create_project(&project("p", 2, 2), &units(40), T0).await.unwrap();
    // A host that takes its whole quota and never replies.
    let silent = registered_host(&f.store, "silent", "mallory", "203.0.113.7").await;
    assert_eq!(f.store.lease_work(silent, 100, T0).await.unwrap().len(), INITIAL_DAILY_QUOTA as usize);
    let later = T0.plus_ms(DEADLINE_MS);
    while f.store.run_transitioner(later).await.unwrap().more {}
    let store = &f.store;
    let quota = async |h: HostId| store.host(h, later).await.unwrap().daily_quota;
    let punished = quota(silent).await;
    assert_eq!(punished, 1, "halved by each of its no replies");
    // Registering again, under the same account or from the same address,
    // starts at the punished quota; elsewhere at the initial one.
    let cases = [
        ("same-account", "mallory", "198.51.100.1", punished),
        ("same-address", "", "203.0.113.7", punished),
        ("same-address-new-account", "mallory-2", "203.0.113.7", punished),
        ("stranger", "alice", "198.51.100.2", INITIAL_DAILY_QUOTA),
        ("no-address", "", "", INITIAL_DAILY_QUOTA),
    ];
    for (name, account, address, expected) in cases {
        let h = registered_host(&f.store, name, account, address).await;
        assert_eq!(quota(h).await, expected, "{name}");
    }
    // A host with validated results is not held against its address (hosts
    // behind one address, or on loopback, keep their own quotas).
    query("UPDATE hosts SET n_valid = 5 WHERE address = '203.0.113.7'").execute(&f.store.pool).await.unwrap();
    let h = registered_host(&f.store, "after-honest", "", "203.0.113.7").await;
    assert_eq!(quota(h).await, INITIAL_DAILY_QUOTA);
    let h = registered_host(&f.store, "account-still", "mallory", "").await;
    assert_eq!(quota(h).await, punished, "the account's record stays");
}

#[tokio::test]
async fn fresh_hosts_that_never_reply_do_not_fail_a_work_unit() {
    let f = fixture().await;
    // max_total_results 3, target 2: two no replies from hosts that had results
    // validated would fail it (see the domain's tests).
    let mut p = project("p", 2, 2);
    p.policy = crate::domain::policy::tests::policy(2, 2, 3, 3, DEADLINE_MS).unwrap();
    f.store.create_project(&p, &units(1), T0).await.unwrap();
    let mut now = T0;
    for round in 0..2 {
        for i in 0..2 {
            let fresh =
                registered_host(&f.store, &format!("fresh-{round}-{i}"), "", &format!("192.0.2.{round}{i}")).await;
            assert_eq!(f.store.lease_work(fresh, 1, now).await.unwrap().len(), 1, "round {round}");
        }
        now = now.plus_ms(DEADLINE_MS);
        while f.store.run_transitioner(now).await.unwrap().more {}
        let s = status(&f.store, "p").await;
        assert_eq!((s.work_units_open, s.results_no_reply), (1, 2 * (round + 1)), "{s:?}");
    }
    // Hosts that reply complete it.
    for name in ["honest-1", "honest-2"] {
        let h = host(&f.store, name).await;
        let copy = f.store.lease_work(h, 1, now).await.unwrap();
        f.store.record_reports(h, &[success(copy[0].result_id, "v")], now).await.unwrap();
    }
    let s = status(&f.store, "p").await;
    assert_eq!((s.work_units_done, s.work_units_failed), (1, 0), "{s:?}");
}

/// A project's and its work units' arguments and environment variables are
/// stored and come back merged in each assignment (argv[0] the project's
/// name, the work unit's variables overriding the project's), the same when
/// a lost copy is sent again, and in the listings; work units added later
/// get the project's too.
#[tokio::test]
async fn args_and_env_round_trip_into_assignments() {
    use crate::domain::app_args::AppArgs;
    let strings = |items: &[&str]| items.iter().map(|&item| item.to_owned()).collect::<Vec<String>>();
    let vars = |items: &[(&str, &str)]| {
        items.iter().map(|&(name, value)| (name.to_owned(), value.to_owned())).collect::<Vec<(String, String)>>()
    };
    let f = fixture().await;
    let mut new = project("p", 1, 1);
    new.app_args =
        AppArgs::new(strings(&["--steps", "100"]), vars(&[("MODE", "fast"), ("LEVEL", "1")])).expect("valid");
    let with_own = NewWorkUnit {
        name: Some(WorkUnitName::parse("own").unwrap()),
        input: b"1".to_vec(),
        app_args: AppArgs::new(strings(&["--part", "2", ""]), vars(&[("LEVEL", "9"), ("A", "a=b")])).expect("valid"),
        files: Default::default(),
    };
    let plain = NewWorkUnit {
        name: Some(WorkUnitName::parse("plain").unwrap()),
        input: b"2".to_vec(),
        app_args: AppArgs::default(),
        files: Default::default(),
    };
    f.store.create_project(&new, &[with_own, plain], T0).await.unwrap();
    let later = NewWorkUnit {
        name: Some(WorkUnitName::parse("later").unwrap()),
        input: b"3".to_vec(),
        app_args: AppArgs::new(Vec::new(), vars(&[("MODE", "slow")])).expect("valid"),
        files: Default::default(),
    };
    f.store.add_work_units(&name("p"), &[later], None, T0).await.unwrap();

    let a = host(&f.store, "a").await;
    let leased = f.store.lease_work(a, 3, T0).await.unwrap();
    let by_name = |copies: &[Assignment], wanted: &str| {
        copies.iter().find(|copy| copy.work_unit_name == wanted).cloned().expect("leased")
    };
    let own = by_name(&leased, "own");
    assert_eq!(own.argv, strings(&["p", "--steps", "100", "--part", "2", ""]));
    assert_eq!(own.env, vars(&[("A", "a=b"), ("LEVEL", "9"), ("MODE", "fast")]));
    let plain = by_name(&leased, "plain");
    assert_eq!(plain.argv, strings(&["p", "--steps", "100"]));
    assert_eq!(plain.env, vars(&[("LEVEL", "1"), ("MODE", "fast")]));
    let later = by_name(&leased, "later");
    assert_eq!(later.argv, strings(&["p", "--steps", "100"]));
    assert_eq!(later.env, vars(&[("LEVEL", "1"), ("MODE", "slow")]));

    // The copy of "own" lost on the way comes back with the same command line.
    let held: Vec<ResultId> = leased.iter().filter(|copy| copy.work_unit_name != "own").map(|x| x.result_id).collect();
    let reply = f.store.request_work(a, work(Vec::new(), Some(held), 3), T0).await.unwrap();
    assert_eq!(reply.n_lost, 1);
    assert_eq!(reply.assignments, vec![own.clone()], "the lost copy, as first sent");

    let listed = f.store.list_work_units(&name("p"), 0, 10).await.unwrap();
    assert_eq!(listed[0].argv, own.argv);
    assert_eq!(listed[0].env, own.env);
    f.store.record_reports(a, &[success(own.result_id, "out")], T0).await.unwrap();
    let canonical = f.store.canonical_results(&name("p"), 0, 10).await.unwrap();
    assert_eq!((canonical[0].argv.clone(), canonical[0].env.clone()), (own.argv, own.env));

    // A project without any: argv[0] alone, no variables.
    f.store.create_project(&project("bare", 1, 1), &units(1), T0).await.unwrap();
    let b = host(&f.store, "b").await;
    let bare = f.store.lease_work(b, 10, T0).await.unwrap();
    let bare = bare.iter().find(|copy| copy.project == "bare").expect("a copy of bare");
    assert_eq!((bare.argv.clone(), bare.env.clone()), (strings(&["bare"]), Vec::new()));
}

#[tokio::test]
async fn input_files_must_be_uploaded_and_reach_the_copies_that_use_them() {
    use crate::domain::files::{FileError, FileLimits, InputFile, InputFiles};
    let f = fixture().await;
    let file = |name: &str, content: &[u8]| InputFile::parse(name, digest_of(content).as_str(), content.len() as u64);
    let reference = file("reference.dat", b"shared bytes").unwrap();
    let chunk = file("chunk.dat", b"own bytes").unwrap();
    let unit = |wu: &str, own: Vec<InputFile>| NewWorkUnit {
        name: Some(WorkUnitName::parse(wu).unwrap()),
        input: Vec::new(),
        app_args: Default::default(),
        files: InputFiles::new(own).unwrap(),
    };
    let mut new = project("p", 1, 1);
    new.files = InputFiles::new(vec![reference.clone()]).unwrap();

    // Nothing uploaded: refused, naming the file, and nothing is created.
    let error = f.store.create_project(&new, &[unit("a", vec![chunk.clone()])], T0).await.unwrap_err();
    assert!(matches!(&error, Error::FileNotUploaded { name, .. } if name == "reference.dat"), "{error}");
    assert!(
        matches!(f.store.project_status(Some(&name("p"))).await, Err(Error::ProjectNotFound(_))),
        "no half-created project"
    );

    f.store.record_file(&reference.digest, reference.size, None, T0).await.unwrap();
    let missing = f.store.missing_files(&[reference.digest.clone(), chunk.digest.clone()]).await.unwrap();
    assert_eq!(missing, vec![chunk.digest.clone()]);
    let error = f.store.create_project(&new, &[unit("a", vec![chunk.clone()])], T0).await.unwrap_err();
    assert!(matches!(&error, Error::FileNotUploaded { name, .. } if name == "chunk.dat"), "{error}");
    f.store.record_file(&chunk.digest, chunk.size, None, T0).await.unwrap();

    // A size that is not the stored one, a name shadowing a shared file, a total over the limit.
    let wrong_size = InputFile { size: 1, ..chunk.clone() };
    let error = f.store.create_project(&new, &[unit("a", vec![wrong_size])], T0).await.unwrap_err();
    assert!(matches!(error, Error::FileSizeMismatch { given: 1, .. }), "{error}");
    let shadow = InputFile { name: reference.name.clone(), ..chunk.clone() };
    let error = f.store.create_project(&new, &[unit("a", vec![shadow])], T0).await.unwrap_err();
    assert!(matches!(error, Error::Files(FileError::Shadows(_))), "{error}");
    let small = NewProject { file_limits: FileLimits { input_bytes: reference.size, output_bytes: 0 }, ..new.clone() };
    let error = f.store.create_project(&small, &[unit("a", vec![chunk.clone()])], T0).await.unwrap_err();
    assert!(matches!(error, Error::Files(FileError::InputsOverLimit { .. })), "{error}");

    f.store.create_project(&new, &[unit("a", vec![chunk.clone()]), unit("b", Vec::new())], T0).await.unwrap();
    f.store.add_work_units(&name("p"), &[unit("c", vec![chunk.clone()])], None, T0).await.unwrap();
    let holder = host(&f.store, "holder").await;
    let other = host(&f.store, "other").await;
    assert!(!f.store.host_may_download(holder, &reference.digest).await.unwrap(), "no copy held yet");
    let copies = f.store.lease_work(holder, 10, T0).await.unwrap();
    let files_of = |wu: &str| {
        let copy = copies.iter().find(|c| c.work_unit_name == wu).expect("a copy");
        copy.files.iter().map(|f| f.file.name.as_str().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(files_of("a"), ["chunk.dat", "reference.dat"], "shared and own, in name order");
    assert_eq!(files_of("b"), ["reference.dat"]);
    assert_eq!(files_of("c"), ["chunk.dat", "reference.dat"], "a later batch sees the shared files too");
    assert!(f.store.host_may_download(holder, &reference.digest).await.unwrap());
    assert!(f.store.host_may_download(holder, &chunk.digest).await.unwrap());
    assert!(!f.store.host_may_download(other, &chunk.digest).await.unwrap(), "only hosts holding a copy");

    // Output files reported with a success are kept with the result.
    let a = copies.iter().find(|c| c.work_unit_name == "a").unwrap().result_id;
    let output = crate::domain::files::OutputFile {
        name: crate::domain::files::FileName::parse("out.txt").unwrap(),
        digest: digest_of(b"42"),
        size: 2,
    };
    let mut report = success(a, "stdout");
    report.output_files = vec![ReportedFile { file: output.clone(), data: Some(b"42".to_vec()) }];
    let error = f.store.record_reports(holder, std::slice::from_ref(&report), T0).await.unwrap_err();
    assert!(matches!(error, Error::Files(FileError::OutputsOverLimit { limit: 0, .. })), "the project allows none");
}

#[tokio::test]
async fn output_files_are_stored_with_the_result() {
    use crate::domain::files::{FileLimits, FileName, OutputFile};
    let f = fixture().await;
    let new = NewProject { file_limits: FileLimits { input_bytes: 1 << 20, output_bytes: 100 }, ..project("p", 1, 1) };
    f.store.create_project(&new, &units(1), T0).await.unwrap();
    let h = host(&f.store, "h").await;
    let copy = f.store.lease_work(h, 1, T0).await.unwrap().remove(0);
    assert_eq!(copy.output_files_bytes, 100);
    let file = |name: &str, data: &[u8]| ReportedFile {
        file: OutputFile { name: FileName::parse(name).unwrap(), digest: digest_of(data), size: data.len() as u64 },
        data: Some(data.to_vec()),
    };
    let mut report = success(copy.result_id, "stdout");
    report.output_files = vec![file("a.txt", b"aa"), file("b.txt", b"b")];
    f.store.record_reports(h, std::slice::from_ref(&report), T0).await.unwrap();
    let stored = f.store.result_files(&[copy.result_id]).await.unwrap();
    let names: Vec<(&str, &[u8])> =
        stored[&copy.result_id].iter().map(|f| (f.file.name.as_str(), f.data.as_deref().unwrap())).collect();
    assert_eq!(names, [("a.txt", b"aa".as_slice()), ("b.txt", b"b".as_slice())]);
    f.store.cancel_project(&name("p"), T0).await.unwrap();
    let deleted = f.store.delete_project(&name("p")).await.unwrap();
    assert_eq!(deleted.n_results, 1);
    assert!(f.store.result_files(&[copy.result_id]).await.unwrap().is_empty(), "deleted with its project");
}

#[tokio::test]
async fn hosts_holding_a_work_units_files_get_its_copies_first() {
    use crate::domain::files::{InputFile, InputFiles};
    let f = fixture().await;
    let file = |name: &str, content: &[u8]| InputFile::parse(name, digest_of(content).as_str(), content.len() as u64);
    let (a, b) = (file("data", b"file a").unwrap(), file("data", b"file b").unwrap());
    for input in [&a, &b] {
        f.store.record_file(&input.digest, input.size, Some(b"meta"), T0).await.unwrap();
    }
    let unit = |wu: &str, own: &InputFile| NewWorkUnit {
        name: Some(WorkUnitName::parse(wu).unwrap()),
        input: Vec::new(),
        app_args: Default::default(),
        files: InputFiles::new(vec![own.clone()]).unwrap(),
    };
    let units = [unit("a1", &a), unit("b1", &b), unit("a2", &a), unit("b2", &b)];
    f.store.create_project(&project("p", 1, 1), &units, T0).await.unwrap();
    let holder = host(&f.store, "holds-b").await;
    let ask = |slots: u32| WorkRequest { slots, cached_files: [b.digest.to_string()].into(), ..WorkRequest::default() };
    let first = f.store.request_work(holder, ask(1), T0).await.unwrap().assignments;
    assert_eq!(first.iter().map(|c| c.work_unit_name.as_str()).collect::<Vec<_>>(), ["b1"], "its file's first");
    let next = f.store.request_work(holder, ask(2), T0).await.unwrap().assignments;
    assert_eq!(next.iter().map(|c| c.work_unit_name.as_str()).collect::<Vec<_>>(), ["b2", "a1"], "then the others");
    let newcomer = host(&f.store, "holds-nothing").await;
    let got = f.store.lease_work(newcomer, 1, T0).await.unwrap();
    assert_eq!(got.iter().map(|c| c.work_unit_name.as_str()).collect::<Vec<_>>(), ["a2"], "dispatch order");
}

#[tokio::test]
async fn a_tail_copy_does_not_wait_for_a_fast_host_that_holds_a_copy_of_its_work_unit() {
    let f = fixture().await;
    let mut new = project("p", 2, 2);
    new.policy = crate::domain::policy::tests::policy(2, 2, 3, 8, 100_000).unwrap();
    f.store.create_project(&new, &units(10), T0).await.unwrap();
    // The fast host computes one copy of every work unit in 1 s.
    let fast = host(&f.store, "fast").await;
    let copies = f.store.lease_work(fast, 10, T0).await.unwrap();
    assert_eq!(copies.len(), 10, "one copy of each work unit");
    let reports: Vec<_> = copies.iter().map(|c| success(c.result_id, "v")).collect();
    f.store.record_reports(fast, &reports, T0.plus_ms(1000)).await.unwrap();
    // The slow host computes the other copy of nine of them in 50 s: the batch is in its tail.
    let slow = host(&f.store, "slow").await;
    let nine = f.store.lease_work(slow, 9, T0.plus_ms(1000)).await.unwrap();
    let reports: Vec<_> = nine.iter().map(|c| success(c.result_id, "v")).collect();
    f.store.record_reports(slow, &reports, T0.plus_ms(51_000)).await.unwrap();
    assert_eq!(status(&f.store, "p").await.work_units_done, 9);
    // The fast host is attached and faster, but holds a copy of the last work
    // unit: it can never take this one, so the slow host gets it at once.
    let last = f.store.lease_work(slow, 1, T0.plus_ms(51_000)).await.unwrap();
    assert_eq!(last.len(), 1, "the last copy waits for no host that may not take it");
}

#[tokio::test]
async fn canonical_results_are_read_in_the_order_they_were_chosen_and_leave_with_their_project() {
    use crate::domain::assimilation::Cursor;
    let f = fixture().await;
    f.store.create_project(&project("p", 1, 1), &units(4), T0).await.unwrap();
    let a = host(&f.store, "a").await;
    let leased = f.store.lease_work(a, 10, T0).await.unwrap();
    assert_eq!(leased.len(), 4);
    let before = f.store.canonical_results_since(&name("p"), Cursor::START, 10).await.unwrap();
    assert!(before.results.is_empty() && before.any_open);
    // Reported one at a time, out of id order: the order is that of validation.
    let order = [2, 0, 3, 1];
    for index in order {
        let copy = &leased[index];
        f.store.record_reports(a, &[success(copy.result_id, "out")], T0).await.unwrap();
    }
    let expected: Vec<i64> = order.iter().map(|&index| leased[index].work_unit_id.0).collect();
    let all = f.store.canonical_results_since(&name("p"), Cursor::START, 10).await.unwrap();
    assert!(!all.any_open, "every work unit is done");
    assert_eq!(all.results.iter().map(|(_, result)| result.work_unit_id).collect::<Vec<_>>(), expected);
    assert!(all.results.windows(2).all(|pair| pair[0].0 < pair[1].0), "cursors increase");
    // Paged: after the second cursor, the last two.
    let rest = f.store.canonical_results_since(&name("p"), all.results[1].0, 10).await.unwrap();
    assert_eq!(rest.results.iter().map(|(_, result)| result.work_unit_id).collect::<Vec<_>>(), expected[2..]);
    let page = f.store.canonical_results_since(&name("p"), Cursor::START, 3).await.unwrap();
    assert_eq!(page.results.len(), 3);

    // Deleted with its project: a new project of the same name starts empty.
    f.store.delete_project(&name("p")).await.unwrap();
    f.store.create_project(&project("p", 1, 1), &units(1), T0).await.unwrap();
    let fresh = f.store.canonical_results_since(&name("p"), Cursor::START, 10).await.unwrap();
    assert!(fresh.results.is_empty() && fresh.any_open);
}

/// A second store over the fixture's database: another coordinator.
async fn second_coordinator(f: &Fixture) -> Store {
    Store::open(f.database.location.clone()).await.expect("open a second store on the same database")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_coordinators_over_one_database_never_hand_out_a_copy_twice() {
    let f = fixture().await;
    let stores = [f.store.clone(), second_coordinator(&f).await];
    f.store.create_project(&project("p", 2, 2), &units(300), T0).await.unwrap();
    let mut hosts = Vec::new();
    for i in 0..32 {
        hosts.push(host(&stores[i % 2], &format!("h{i}")).await);
    }
    // Round after round, every host asks one coordinator for work (all at
    // once), then reports to the other, until nothing is left.
    let mut copies = std::collections::HashSet::new();
    loop {
        let asks = hosts.iter().enumerate().map(|(i, &h)| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move { (h, store.lease_work(h, 3, T0).await) })
        });
        let mut round = Vec::new();
        for ask in asks.collect::<Vec<_>>() {
            let (h, leased) = ask.await.unwrap();
            let leased = leased.expect("no call fails under concurrency");
            let work_units: std::collections::HashSet<_> = leased.iter().map(|x| x.work_unit_id).collect();
            assert_eq!(work_units.len(), leased.len(), "never two copies of one work unit to a host");
            for copy in &leased {
                assert!(copies.insert(copy.result_id), "copy {:?} handed out twice", copy.result_id);
            }
            if !leased.is_empty() {
                round.push((h, leased));
            }
        }
        if round.is_empty() {
            break;
        }
        let reports = round.into_iter().enumerate().map(|(i, (h, leased))| {
            let store = stores[(i + 1) % 2].clone();
            tokio::spawn(async move {
                let reports: Vec<_> = leased.iter().map(|x| success(x.result_id, "same")).collect();
                store.record_reports(h, &reports, T0).await
            })
        });
        for report in reports.collect::<Vec<_>>() {
            report.await.unwrap().expect("every report of a copy handed out once is accepted");
        }
    }
    assert_eq!(copies.len(), 600, "every copy handed out once");
    for store in &stores {
        let s = status(store, "p").await;
        assert_eq!((s.work_units_done, s.work_units_open), (300, 0), "both see the same end");
    }
    let credit: f64 = stores[1].list_hosts(T0).await.unwrap().iter().map(|h| h.total_credit).sum();
    assert!(credit > 0.0);
    assert_eq!(credit, f.store.list_hosts(T0).await.unwrap().iter().map(|h| h.total_credit).sum::<f64>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinators_pass_each_deadline_once() {
    let f = fixture().await;
    let stores = [f.store.clone(), second_coordinator(&f).await, second_coordinator(&f).await];
    f.store.create_project(&project("p", 2, 2), &units(400), T0).await.unwrap();
    let mut leased = Vec::new();
    for i in 0..8 {
        let h = host(&f.store, &format!("h{i}")).await;
        leased.extend(stores[i % 3].lease_work(h, 100, T0).await.unwrap());
    }
    let work_units: std::collections::HashSet<_> = leased.iter().map(|x| x.work_unit_id).collect();
    let unsent = status(&f.store, "p").await.results_unsent;
    // Their transitioners wake at once after every deadline.
    let late = Timestamp(T0.0 + DEADLINE_MS as i64 + 1);
    let passes = stores.iter().map(|store| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut n = 0;
            loop {
                let pass = store.run_transitioner(late).await?;
                n += pass.work_units;
                if !pass.more {
                    return Ok::<_, Error>(n);
                }
            }
        })
    });
    let mut n_transitioned = 0;
    for pass in passes {
        n_transitioned += pass.await.unwrap().expect("no pass fails");
    }
    assert_eq!(n_transitioned, work_units.len(), "each work unit brought up to date by one of them");
    let s = status(&stores[1], "p").await;
    assert_eq!(s.results_unsent, unsent + leased.len() as u64, "one new copy per copy timed out, not two");
}

#[tokio::test]
async fn a_batch_resumed_through_one_coordinator_is_scheduled_by_the_other() {
    let f = fixture().await;
    let other = second_coordinator(&f).await;
    f.store.create_project(&project("p", 2, 2), &units(30), T0).await.unwrap();
    for h in [host(&f.store, "a").await, host(&f.store, "b").await, host(&f.store, "c").await] {
        let copies = f.store.lease_work(h, 10, T0).await.unwrap();
        let reports: Vec<_> = copies.iter().map(|c| error_report(c.result_id)).collect();
        f.store.record_reports(h, &reports, T0).await.unwrap();
    }
    assert_eq!(status(&f.store, "p").await.batches[0].state, "paused");
    // A later batch: a host's walk through the other coordinator passes the
    // paused copies (left out of the walk) and takes the later ones.
    f.store.add_work_units(&name("p"), &units(2), None, T0).await.unwrap();
    let fresh = host(&other, "d").await;
    let later = other.lease_work(fresh, 10, T0).await.unwrap();
    assert_eq!(later.len(), 2, "one copy of each later work unit: {later:?}");
    assert!(other.lease_work(fresh, 10, T0).await.unwrap().is_empty(), "nothing else while paused");
    assert_eq!(f.store.resume_batches(&name("p"), None).await.unwrap(), 1);
    let resumed = other.lease_work(fresh, 10, T0).await.unwrap();
    assert_eq!(resumed.len(), 10, "the resumed copies, behind the host's frontier, are found: {resumed:?}");
}
