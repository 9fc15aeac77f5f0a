//! Unit tests of the lifecycle rules: one scenario per transition and failure reason.

use super::*;
use crate::domain::policy::ReplicationPolicy;
use crate::domain::validator::Bitwise;

const NOW: Timestamp = Timestamp(1_000_000);

fn policy(min_quorum: u32, target: u32, max_errors: u32, max_total: u32) -> ReplicationPolicy {
    crate::domain::policy::tests::policy(min_quorum, target, max_errors, max_total, 60_000).unwrap()
}

fn digest(c: char) -> Digest {
    Digest::from_hex(c.to_string().repeat(64))
}

fn open_wu(target: u32) -> WorkUnit {
    WorkUnit {
        id: WorkUnitId(1),
        state: WorkUnitState::Open,
        target_results: target,
        canonical_result: None,
        single_result: false,
        purged: false,
        typical_credit: 0.0,
    }
}

/// A compact description of a copy: `.` unsent, `>` in progress, `!` in progress
/// past its deadline, `e` error, `n` no reply, `N` no reply from a newcomer (a
/// host with no validated result), a letter a success with that output. Every
/// host but the newcomers has had results validated.
fn copies(spec: &str) -> Vec<ResultCopy> {
    spec.chars()
        .enumerate()
        .map(|(i, c)| {
            let id = ResultId(i as i64 + 1);
            let host = Some(HostId(i as i64 + 1));
            let mut r = ResultCopy::unsent(id);
            r.host_proven = c != 'N';
            match c {
                '.' => {}
                '>' | '!' => {
                    r.host_id = host;
                    r.server_state = ServerState::InProgress;
                    r.deadline = Some(if c == '>' { NOW.plus_ms(1) } else { NOW });
                }
                'e' | 'g' | 'n' | 'N' => {
                    r.host_id = host;
                    r.server_state = ServerState::Over;
                    r.outcome = Some(if c == 'n' || c == 'N' { Outcome::NoReply } else { Outcome::ClientError });
                    // `g`: a copy given back by its host.
                    r.given_back = c == 'g';
                }
                letter => {
                    r.host_id = host;
                    r.server_state = ServerState::Over;
                    r.outcome = Some(Outcome::Success);
                    r.output_digest = Some(digest(letter));
                    r.fuel_used = 2_000_000_000;
                    r.engine = Some("wasmtime 48.0.8".into());
                }
            }
            r
        })
        .collect()
}

/// The validate states of every copy, as a string: `p`ending, `v`alid, `i`nvalid, `c` inconclusive, `-` not a success.
fn validate_states(wu_results: &[ResultCopy], t: &Transition) -> String {
    wu_results
        .iter()
        .map(|r| t.changed_results.iter().find(|c| c.id == r.id).unwrap_or(r))
        .map(|r| match (r.outcome, r.validate_state) {
            (Some(Outcome::Success), ValidateState::Pending) => 'p',
            (Some(Outcome::Success), ValidateState::Valid) => 'v',
            (Some(Outcome::Success), ValidateState::Invalid) => 'i',
            (Some(Outcome::Success), ValidateState::Inconclusive) => 'c',
            _ => '-',
        })
        .collect()
}

struct Expect {
    state: WorkUnitState,
    new_results: u32,
    validate: &'static str,
}

fn check(policy: ReplicationPolicy, target: u32, spec: &str, expected: Expect) -> Transition {
    let wu = open_wu(target);
    let results = copies(spec);
    let t = transition(&policy, &wu, &results, &Bitwise, NOW);
    assert_eq!(t.work_unit.state, expected.state, "state for {spec:?}");
    assert_eq!(t.new_results, expected.new_results, "new copies for {spec:?}");
    assert_eq!(validate_states(&results, &t), expected.validate, "validate states for {spec:?}");
    // Idempotent: applying the transition and running it again changes nothing.
    let mut after = results.clone();
    for c in &t.changed_results {
        *after.iter_mut().find(|r| r.id == c.id).unwrap() = c.clone();
    }
    for i in 0..t.new_results {
        after.push(ResultCopy::unsent(ResultId(1000 + i as i64)));
    }
    let again = transition(&policy, &t.work_unit, &after, &Bitwise, NOW);
    assert!(again.is_noop(&t.work_unit), "second transition of {spec:?} changed {again:?}");
    t
}

#[test]
fn new_work_unit_gets_target_copies() {
    check(policy(2, 2, 3, 8), 2, "", Expect { state: WorkUnitState::Open, new_results: 2, validate: "" });
    check(policy(2, 3, 3, 8), 3, "..", Expect { state: WorkUnitState::Open, new_results: 1, validate: "--" });
}

#[test]
fn waiting_for_quorum_changes_nothing() {
    let t = check(policy(2, 2, 3, 8), 2, "a>", Expect { state: WorkUnitState::Open, new_results: 0, validate: "p-" });
    assert!(t.changed_results.is_empty());
}

#[test]
fn agreement_makes_canonical_and_grants_credit() {
    let t = check(policy(2, 2, 3, 8), 2, "aa", Expect { state: WorkUnitState::Done, new_results: 0, validate: "vv" });
    assert_eq!(t.work_unit.canonical_result, Some(ResultId(1)));
    assert_eq!(
        t.host_events,
        vec![
            (HostId(1), HostEvent::Valid { credit: 2.0, replicated: true }),
            (HostId(2), HostEvent::Valid { credit: 2.0, replicated: true })
        ]
    );
}

#[test]
fn disagreement_is_inconclusive_and_sends_another_copy() {
    let t = check(policy(2, 2, 3, 8), 2, "ab", Expect { state: WorkUnitState::Open, new_results: 1, validate: "cc" });
    assert_eq!(t.work_unit.target_results, 3);
    check(policy(2, 2, 3, 8), 3, "abb", Expect { state: WorkUnitState::Done, new_results: 0, validate: "ivv" });
}

#[test]
fn quorum_three_needs_two_of_three() {
    check(policy(3, 3, 3, 8), 3, "ab>", Expect { state: WorkUnitState::Open, new_results: 0, validate: "pp-" });
    let t = check(policy(3, 3, 3, 8), 3, "aba", Expect { state: WorkUnitState::Done, new_results: 0, validate: "viv" });
    assert_eq!(t.host_events[1], (HostId(2), HostEvent::Invalid));
}

#[test]
fn quorum_one_accepts_the_first_success() {
    check(policy(1, 1, 3, 4), 1, "a", Expect { state: WorkUnitState::Done, new_results: 0, validate: "v" });
}

#[test]
fn deadline_turns_copy_into_no_reply_and_reissues() {
    let t = check(policy(2, 2, 3, 8), 2, "a!", Expect { state: WorkUnitState::Open, new_results: 1, validate: "p-" });
    assert_eq!(t.changed_results[0].outcome, Some(Outcome::NoReply));
    assert_eq!(t.host_events, vec![(HostId(2), HostEvent::NoReply)]);
    check(policy(2, 2, 3, 8), 2, "a>", Expect { state: WorkUnitState::Open, new_results: 0, validate: "p-" });
}

#[test]
fn errors_are_replaced_until_too_many() {
    check(policy(2, 2, 3, 8), 2, "ae", Expect { state: WorkUnitState::Open, new_results: 1, validate: "p-" });
    check(policy(2, 2, 3, 8), 2, "eee.", Expect { state: WorkUnitState::Open, new_results: 1, validate: "----" });
    let t = check(
        policy(2, 2, 3, 8),
        2,
        "eeee.",
        Expect { state: WorkUnitState::Failed(FailReason::TooManyErrors), new_results: 0, validate: "-----" },
    );
    assert_eq!(t.changed_results.last().unwrap().outcome, Some(Outcome::DidntNeed));
}

#[test]
fn copies_given_back_are_replaced_without_counting_as_errors() {
    // Three copies given back unstarted (max 3 errors): still open, replaced.
    check(policy(2, 2, 3, 8), 2, "gggg", Expect { state: WorkUnitState::Open, new_results: 2, validate: "----" });
    check(policy(2, 2, 3, 8), 2, "ggeeeg", Expect { state: WorkUnitState::Open, new_results: 2, validate: "------" });
    // Only max_total_results bounds them.
    check(
        policy(2, 2, 3, 6),
        2,
        "gggggg",
        Expect { state: WorkUnitState::Failed(FailReason::TooManyTotalResults), new_results: 0, validate: "------" },
    );
}

#[test]
fn too_many_total_results_fails() {
    check(
        policy(2, 2, 8, 4),
        5,
        "abcd",
        Expect { state: WorkUnitState::Failed(FailReason::TooManyTotalResults), new_results: 0, validate: "cccc" },
    );
    // As in BOINC: when the copies needed do not all fit, the work unit fails at once.
    check(
        policy(2, 2, 8, 3),
        3,
        "n",
        Expect { state: WorkUnitState::Failed(FailReason::TooManyTotalResults), new_results: 0, validate: "-" },
    );
    check(policy(2, 2, 8, 3), 2, "n", Expect { state: WorkUnitState::Open, new_results: 2, validate: "-" });
}

#[test]
fn done_work_unit_retires_unsent_copies_and_keeps_in_progress() {
    let t = check(policy(2, 3, 3, 8), 3, "aa.", Expect { state: WorkUnitState::Done, new_results: 0, validate: "vv-" });
    assert_eq!(t.changed_results[2].outcome, Some(Outcome::DidntNeed));
    check(policy(2, 3, 3, 8), 3, "aa>", Expect { state: WorkUnitState::Done, new_results: 0, validate: "vv-" });
}

#[test]
fn late_success_is_compared_with_the_canonical_result() {
    let policy = policy(2, 2, 3, 8);
    let mut results = copies("aaab");
    for r in &mut results[..2] {
        r.validate_state = ValidateState::Valid;
    }
    let wu = WorkUnit { state: WorkUnitState::Done, canonical_result: Some(ResultId(1)), ..open_wu(2) };
    let t = transition(&policy, &wu, &results, &Bitwise, NOW);
    assert_eq!(validate_states(&results, &t), "vvvi");
    assert_eq!(
        t.host_events,
        vec![(HostId(3), HostEvent::Valid { credit: 2.0, replicated: true }), (HostId(4), HostEvent::Invalid)]
    );
}

#[test]
fn cancel_fails_the_work_unit_and_retires_unsent_copies() {
    let policy = policy(2, 2, 3, 8);
    let results = copies("a.>");
    let t = cancel(&open_wu(2), &results, NOW, &policy);
    assert_eq!(t.work_unit.state, WorkUnitState::Failed(FailReason::Cancelled));
    assert_eq!(t.new_results, 0);
    assert_eq!(t.changed_results.len(), 1);
    assert_eq!(t.changed_results[0].outcome, Some(Outcome::DidntNeed));
    assert_eq!(abort_outcome(t.work_unit.state), Outcome::Cancelled);
    assert_eq!(abort_outcome(WorkUnitState::Done), Outcome::DidntNeed);
}

fn in_progress_for(host: i64) -> ResultCopy {
    ResultCopy {
        host_id: Some(HostId(host)),
        server_state: ServerState::InProgress,
        deadline: Some(NOW),
        ..ResultCopy::unsent(ResultId(9))
    }
}

#[test]
fn reports_are_checked_against_the_copy() {
    let success = Report::Success { output_digest: digest('a'), fuel_used: 5, engine: "e".into(), resumed: false };
    let copy = in_progress_for(1);
    let Ok(ReportDecision::Record(recorded)) = apply_report(&copy, HostId(1), &success) else {
        panic!("report of an in-progress copy must be recorded");
    };
    assert_eq!((recorded.server_state, recorded.outcome), (ServerState::Over, Some(Outcome::Success)));
    assert_eq!(apply_report(&recorded, HostId(1), &success), Ok(ReportDecision::AlreadyRecorded));
    let other = Report::Success { output_digest: digest('b'), fuel_used: 5, engine: "e".into(), resumed: false };
    assert_eq!(apply_report(&recorded, HostId(1), &other), Err(ReportError::ConflictingReport { result: ResultId(9) }));
    assert_eq!(
        apply_report(
            &recorded,
            HostId(1),
            &Report::ClientError { fuel_used: 1, engine: "e".into(), resumed: false, given_back: false }
        ),
        Err(ReportError::ConflictingReport { result: ResultId(9) })
    );
    assert_eq!(apply_report(&copy, HostId(2), &success), Err(ReportError::NotYourResult { result: ResultId(9) }));
    assert_eq!(
        apply_report(&ResultCopy::unsent(ResultId(9)), HostId(1), &success),
        Err(ReportError::NotYourResult { result: ResultId(9) })
    );
}

#[test]
fn late_and_retired_reports() {
    let success = Report::Success { output_digest: digest('a'), fuel_used: 5, engine: "e".into(), resumed: false };
    let no_reply =
        ResultCopy { server_state: ServerState::Over, outcome: Some(Outcome::NoReply), ..in_progress_for(1) };
    assert!(matches!(apply_report(&no_reply, HostId(1), &success), Ok(ReportDecision::Record(_))));
    let aborted = ResultCopy { outcome: Some(Outcome::DidntNeed), ..no_reply.clone() };
    assert_eq!(apply_report(&aborted, HostId(1), &success), Ok(ReportDecision::Ignore));
    let cancelled = ResultCopy { outcome: Some(Outcome::Cancelled), ..no_reply };
    assert_eq!(apply_report(&cancelled, HostId(1), &success), Ok(ReportDecision::Ignore));
}

#[test]
fn state_names_round_trip() {
    for s in [ServerState::Unsent, ServerState::InProgress, ServerState::Over] {
        assert_eq!(ServerState::parse(s.as_str()), Some(s));
    }
    for o in [
        Outcome::Success,
        Outcome::ClientError,
        Outcome::NoReply,
        Outcome::DidntNeed,
        Outcome::ValidateError,
        Outcome::Cancelled,
    ] {
        assert_eq!(Outcome::parse(o.as_str()), Some(o));
    }
    for v in [
        ValidateState::Pending,
        ValidateState::Valid,
        ValidateState::Invalid,
        ValidateState::Inconclusive,
        ValidateState::TooLate,
    ] {
        assert_eq!(ValidateState::parse(v.as_str()), Some(v));
    }
    for w in [WorkUnitState::Open, WorkUnitState::Done, WorkUnitState::Failed(FailReason::TooManyErrors)] {
        assert_eq!(WorkUnitState::parse(w.as_str(), w.fail_reason().map(FailReason::as_str)), Some(w));
    }
}

#[test]
fn too_many_successes_without_agreement_fails() {
    let spec = crate::domain::policy::PolicySpec { max_success_results: 3, ..policy(2, 2, 3, 8).spec() };
    let strict = ReplicationPolicy::new(spec).unwrap();
    check(strict, 3, "abc", Expect { state: WorkUnitState::Open, new_results: 1, validate: "ccc" });
    check(
        strict,
        4,
        "abcd",
        Expect { state: WorkUnitState::Failed(FailReason::TooManySuccessResults), new_results: 0, validate: "cccc" },
    );
}

#[test]
fn same_engine_copies_with_different_fuel_do_not_agree() {
    let policy = policy(2, 2, 3, 8);
    let mut results = copies("aa");
    results[1].fuel_used += 1;
    let t = transition(&policy, &open_wu(2), &results, &Bitwise, NOW);
    assert_eq!((t.work_unit.state, t.new_results), (WorkUnitState::Open, 1), "inconclusive: fuel differs");
    results[1].engine = Some("wasmtime 49.0.0".into());
    let t = transition(&policy, &open_wu(2), &results, &Bitwise, NOW);
    assert_eq!(t.work_unit.state, WorkUnitState::Done, "different engines are compared on output only");
}

/// Credits granted by a transition, by host.
fn credits(t: &Transition) -> Vec<(i64, f64)> {
    t.host_events
        .iter()
        .filter_map(|(host, event)| match event {
            HostEvent::Valid { credit, .. } => Some((host.0, *credit)),
            HostEvent::Invalid
            | HostEvent::NoReply
            | HostEvent::ClientError
            | HostEvent::HostError
            | HostEvent::Unstarted => None,
        })
        .collect()
}

#[test]
fn a_resumed_copy_agrees_whatever_its_fuel_and_credit_comes_from_a_whole_copy() {
    let policy = policy(2, 2, 3, 8);
    // The canonical copy (the first) resumed: credit comes from the whole one.
    let mut results = copies("aa");
    results[0].resumed = true;
    results[0].fuel_used = 500_000_000;
    let t = transition(&policy, &open_wu(2), &results, &Bitwise, NOW);
    assert_eq!(t.work_unit.state, WorkUnitState::Done, "fuel of a resumed copy is not compared");
    assert_eq!(t.work_unit.canonical_result, Some(ResultId(1)));
    assert_eq!(credits(&t), vec![(1, 2.0), (2, 2.0)]);
    // Quorum 3, 2 of 3: the whole copy outside the group does not count.
    let mut results = copies("aab");
    results[0].resumed = true;
    results[0].fuel_used = 700_000_000;
    results[1].resumed = true;
    results[1].fuel_used = 900_000_000;
    results[2].fuel_used = 5_000_000_000;
    let t = transition(&policy_q3(), &open_wu(3), &results, &Bitwise, NOW);
    assert_eq!(t.work_unit.state, WorkUnitState::Done);
    assert_eq!(credits(&t), vec![(1, 0.7), (2, 0.7)], "all resumed: the lowest fuel of the group");
}

fn policy_q3() -> ReplicationPolicy {
    policy(3, 3, 3, 8)
}

#[test]
fn credit_fuel_is_the_lowest_whole_copy() {
    let copy = |id, fuel, resumed| ResultCopy { fuel_used: fuel, resumed, ..ResultCopy::unsent(ResultId(id)) };
    let check = |copies: &[ResultCopy], expected: u64| {
        let valid: Vec<&ResultCopy> = copies.iter().collect();
        assert_eq!(credit_fuel(&valid), expected, "{copies:?}");
    };
    check(&[copy(1, 10, false), copy(2, 12, false)], 10);
    check(&[copy(1, 12, false), copy(2, 10, false)], 10);
    check(&[copy(1, 10, false), copy(2, 4, true)], 10);
    check(&[copy(1, 3, true), copy(2, 7, true), copy(3, 5, true)], 3);
    check(&[copy(1, 3, true), copy(2, 7, false), copy(3, 9, false)], 7);
    check(&[copy(1, u64::MAX, false), copy(2, 9, false)], 9);
    check(&[], 0);
}

/// Whatever one copy of an agreeing pair claims (its fuel, its engine, that
/// it resumed), both hosts are credited what the honest copy vouches for: 2.
#[test]
fn no_claim_of_one_copy_raises_the_credit() {
    let policy = policy(2, 2, 3, 8);
    type Claim = fn(&mut ResultCopy);
    let claims: [(&str, Claim); 6] = [
        ("honest", |_| {}),
        ("more fuel, another engine", |r| {
            r.fuel_used = 9_000_000_000_000_000_000;
            r.engine = Some("wasmtime 99.0.0".into());
        }),
        ("more fuel, no engine", |r| {
            r.fuel_used = u64::MAX;
            r.engine = None;
        }),
        ("resumed with more fuel", |r| {
            r.fuel_used = 9_000_000_000_000;
            r.resumed = true;
        }),
        ("resumed, another engine", |r| {
            r.fuel_used = u64::MAX;
            r.resumed = true;
            r.engine = Some("x".into());
        }),
        ("empty engine", |r| {
            r.fuel_used = 7_000_000_000;
            r.engine = Some(String::new());
        }),
    ];
    for (name, claim) in claims {
        // The claimant's copy first (canonical) and second.
        for claimant in [0, 1] {
            let mut results = copies("aa");
            claim(&mut results[claimant]);
            let t = transition(&policy, &open_wu(2), &results, &Bitwise, NOW);
            assert_eq!(t.work_unit.state, WorkUnitState::Done, "{name}");
            assert_eq!(credits(&t), vec![(1, 2.0), (2, 2.0)], "{name}, claimant copy {claimant}");
        }
    }
}

#[test]
fn typical_credit_is_the_median_of_replicated_credits() {
    for (credits, expected) in [
        (&[][..], 0.0),
        (&[3.0][..], 3.0),
        (&[5.0, 1.0, 3.0][..], 3.0),
        (&[4.0, 1.0, 3.0, 2.0][..], 2.0),
        (&[1.0, 1.0, 9e9][..], 1.0),
        (&[f64::NAN, 2.0, f64::INFINITY, -1.0][..], 2.0),
    ] {
        assert_eq!(typical_credit(credits), expected, "{credits:?}");
    }
}

fn single(target: u32) -> WorkUnit {
    WorkUnit { single_result: true, typical_credit: 5.0, ..open_wu(target) }
}

#[test]
fn a_single_trusted_result_is_accepted_alone() {
    let policy = policy(2, 2, 3, 8);
    // The second copy, still unsent, is retired.
    let results = copies(">.");
    let t = transition(&policy, &single(1), &results, &Bitwise, NOW);
    assert_eq!((t.work_unit.state, t.new_results), (WorkUnitState::Open, 0));
    assert_eq!(t.changed_results.len(), 1);
    assert_eq!((t.changed_results[0].id, t.changed_results[0].outcome), (ResultId(2), Some(Outcome::DidntNeed)));

    let results = copies("a");
    let t = transition(&policy, &single(1), &results, &Bitwise, NOW);
    assert_eq!(t.work_unit.state, WorkUnitState::Done);
    assert_eq!(t.host_events, vec![(HostId(1), HostEvent::Valid { credit: 2.0, replicated: false })]);
}

/// A copy accepted alone earns at most its project's typical credit,
/// whatever it claims; below it, what it claims.
#[test]
fn a_single_result_earns_at_most_the_typical_credit() {
    let policy = policy(2, 2, 3, 8);
    for (fuel, resumed, typical, expected) in [
        (2_000_000_000, false, 5.0, 2.0),
        (9_000_000_000_000_000_000, false, 5.0, 5.0),
        (u64::MAX, true, 5.0, 5.0),
        (2_000_000_000, false, 0.0, 0.0),
        (9_000_000_000, false, 1.5, 1.5),
    ] {
        let mut results = copies("a");
        results[0].fuel_used = fuel;
        results[0].resumed = resumed;
        results[0].engine = Some("another engine".into());
        let work_unit = WorkUnit { typical_credit: typical, ..single(1) };
        let t = transition(&policy, &work_unit, &results, &Bitwise, NOW);
        assert_eq!(t.work_unit.state, WorkUnitState::Done);
        assert_eq!(credits(&t), vec![(1, expected)], "fuel {fuel}, resumed {resumed}, typical {typical}");
    }
}

#[test]
fn a_failed_single_result_restores_replication() {
    let policy = policy(2, 2, 3, 8);
    for spec in ["e", "!"] {
        let t = transition(&policy, &single(1), &copies(spec), &Bitwise, NOW);
        assert!(!t.work_unit.single_result, "{spec}");
        assert_eq!((t.work_unit.target_results, t.new_results), (2, 2), "{spec}");
    }
}

#[test]
fn events_of_reports() {
    let mut copy = in_progress_for(1);
    assert_eq!(report_events(&copy, WorkUnitState::Open), vec![]);
    copy.outcome = Some(Outcome::ClientError);
    assert_eq!(report_events(&copy, WorkUnitState::Open), vec![HostEvent::Unstarted], "no fuel: it never ran");
    copy.fuel_used = 10;
    let (error, blamed) = (HostEvent::ClientError, HostEvent::HostError);
    assert_eq!(report_events(&copy, WorkUnitState::Open), vec![error.clone()], "maybe the app's fault");
    assert_eq!(report_events(&copy, WorkUnitState::Done), vec![error.clone(), blamed], "others succeeded");
    assert_eq!(report_events(&copy, WorkUnitState::Failed(FailReason::TooManyErrors)), vec![error]);
}

#[test]
fn errors_are_blamed_on_their_hosts_once_others_agree() {
    // (policy, target, copies, host events expected)
    let valid = |host| (HostId(host), HostEvent::Valid { credit: 2.0, replicated: true });
    let blamed = |host| (HostId(host), HostEvent::HostError);
    let cases = [
        // Errors and no canonical result yet: nobody is blamed.
        (policy(2, 2, 3, 8), 2, "ea", vec![]),
        (policy(2, 2, 3, 8), 2, "eee", vec![]),
        // Others agree: the erring hosts are blamed, once.
        (policy(2, 2, 3, 8), 2, "eaa", vec![valid(2), valid(3), blamed(1)]),
        (policy(2, 2, 3, 8), 2, "aeea", vec![valid(1), valid(4), blamed(2), blamed(3)]),
        // A failed work unit blames no one: the app may fail on every host.
        (policy(2, 2, 3, 8), 2, "eeeea", vec![]),
    ];
    for (policy, target, spec, expected) in cases {
        let results = copies(spec);
        let t = transition(&policy, &open_wu(target), &results, &Bitwise, NOW);
        assert_eq!(t.host_events, expected, "{spec}");
        let again = transition(&policy, &t.work_unit, &results, &Bitwise, NOW);
        assert!(!again.host_events.contains(&blamed(1)), "blamed once: {spec}");
    }
}

#[test]
fn newcomers_no_replies_do_not_exhaust_max_total_results() {
    // max_total_results 3, target 2: which copies fail the work unit.
    let cases = [
        ("nn", WorkUnitState::Failed(FailReason::TooManyTotalResults), 0),
        ("NN", WorkUnitState::Open, 2),
        ("NNa", WorkUnitState::Open, 1),
        ("NNNNa", WorkUnitState::Open, 1),
        // Bounded: the fifth newcomer's no reply counts.
        ("NNNNNa", WorkUnitState::Open, 1),
        ("NNNNNNa", WorkUnitState::Failed(FailReason::TooManyTotalResults), 0),
        ("NNnn", WorkUnitState::Failed(FailReason::TooManyTotalResults), 0),
    ];
    for (spec, state, new_results) in cases {
        let t = transition(&policy(2, 2, 3, 3), &open_wu(2), &copies(spec), &Bitwise, NOW);
        assert_eq!((t.work_unit.state, t.new_results), (state, new_results), "{spec}");
    }
}

#[test]
fn newcomers_errors_count_only_until_another_copy_succeeds() {
    // max_error_results 1: two errors fail the work unit, unless they are
    // newcomers' and another copy succeeded (then they were their hosts').
    let mut newcomers = copies("eea");
    for r in &mut newcomers[..2] {
        r.host_proven = false;
    }
    let mut no_success = copies("ee");
    for r in &mut no_success {
        r.host_proven = false;
    }
    let cases = [
        (copies("eea"), WorkUnitState::Failed(FailReason::TooManyErrors)),
        (newcomers, WorkUnitState::Open),
        (no_success, WorkUnitState::Failed(FailReason::TooManyErrors)),
    ];
    for (results, state) in cases {
        let t = transition(&policy(2, 2, 1, 8), &open_wu(2), &results, &Bitwise, NOW);
        assert_eq!(t.work_unit.state, state, "{results:?}");
    }
}

#[test]
fn newcomers_copies_beyond_the_allowance_count() {
    let cases = [("NNNNNa", WorkUnitState::Open, 1)];
    for (spec, state, new_results) in cases {
        let t = transition(&policy(2, 2, 3, 3), &open_wu(2), &copies(spec), &Bitwise, NOW);
        assert_eq!((t.work_unit.state, t.new_results), (state, new_results), "{spec}");
    }
}

#[test]
fn unreadable_outputs_are_validate_errors() {
    use crate::domain::fuzzy::{Format, Tolerance, parse};
    use crate::domain::validator::Fuzzy;
    let policy = policy(2, 2, 3, 8);
    let results = copies("ab");
    let comparator = Fuzzy {
        tolerance: Tolerance::new(0.0, 0.5).unwrap(),
        parsed: std::collections::HashMap::from([(ResultId(1), parse(Format::Whitespace, b"1.0"))]),
    };
    let t = transition(&policy, &open_wu(2), &results, &comparator, NOW);
    assert_eq!(t.new_results, 1, "the unreadable copy is replaced");
    assert_eq!(t.changed_results[0].outcome, Some(Outcome::ValidateError));
    assert_eq!(t.host_events, vec![(HostId(2), HostEvent::Invalid)]);
}

#[test]
fn a_late_success_after_the_purge_is_too_late() {
    let policy = policy(2, 2, 3, 8);
    let mut results = copies("aaa");
    for r in &mut results[..2] {
        r.validate_state = ValidateState::Valid;
    }
    let wu = WorkUnit { state: WorkUnitState::Done, canonical_result: Some(ResultId(1)), purged: true, ..open_wu(2) };
    let t = transition(&policy, &wu, &results, &Bitwise, NOW);
    assert_eq!(t.changed_results[0].validate_state, ValidateState::TooLate);
    assert!(t.host_events.is_empty(), "no credit, no penalty");
}

/// `CopyState::fields` selects exactly the copies `CopyState::of` names:
/// every combination of the three fields (with an outcome once over) is
/// matched by the fields of its own state and by no other state's.
#[test]
fn copy_state_fields_select_exactly_the_copies_of_that_state() {
    let matches = |state: CopyState, server: ServerState, outcome: Option<Outcome>, validate: ValidateState| {
        let (s, o, v) = state.fields();
        s == server && o.is_none_or(|o| Some(o) == outcome) && v.is_none_or(|v| v == validate)
    };
    for &server in ServerState::ALL {
        let outcomes: Vec<Option<Outcome>> = match server {
            ServerState::Over => Outcome::ALL.iter().copied().map(Some).collect(),
            _ => vec![None],
        };
        for outcome in outcomes {
            for &validate in ValidateState::ALL {
                let state = CopyState::of(server, outcome, validate);
                let selected: Vec<CopyState> =
                    CopyState::ALL.iter().copied().filter(|&s| matches(s, server, outcome, validate)).collect();
                assert_eq!(selected, vec![state], "{server:?} {outcome:?} {validate:?}");
            }
        }
    }
    for &state in CopyState::ALL {
        assert_eq!(CopyState::parse(state.as_str()), Some(state));
    }
}
