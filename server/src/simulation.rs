//! A deterministic simulation of a volunteer population against the real
//! store (a SQLite file) and the real lifecycle rules, with a simulated clock:
//! 2,000 work units, 50 hosts of which some cheat, vanish or fail; and the
//! same project against attackers who register again and again: fresh hosts
//! on fresh accounts that never reply, fresh hosts that report only errors,
//! and a host alone trying to pause the batch. Seeded, no sleeps, no
//! threads: every run is the same.

use std::collections::{HashMap, HashSet};

use crate::domain::app::digest_of;
use crate::domain::lifecycle::Report;
use crate::domain::names::ProjectName;
use crate::domain::policy::{Limits, PolicySpec, ReplicationPolicy, ValidatorKind};
use crate::domain::scheduler::splitmix64;
use crate::domain::{HostId, Timestamp, WorkUnitId};
use crate::store::{NewHost, NewProject, NewWorkUnit, ReportInput, Store};

const N_WORK_UNITS: usize = 2_000;
const STEP_MS: u64 = 60_000;
const DEADLINE_MS: u64 = 3_600_000;
const SLOTS: u32 = 4;
const T0: Timestamp = Timestamp(1_700_000_000_000);

/// How a simulated host behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    Honest,
    /// Returns a random wrong answer for every copy.
    Wrong,
    /// Takes copies and never replies.
    Silent,
    /// Reports an error for every copy.
    Erroring,
    /// Honest until `VANISH_STEP`, then gone for good with the copies it holds.
    Vanishing,
}

const VANISH_STEP: u64 = 5;

/// 50 hosts: 10% wrong, 10% silent, 5% erroring, 5% vanishing, the rest honest.
fn population() -> Vec<Behaviour> {
    let mut hosts = Vec::new();
    hosts.extend([Behaviour::Wrong; 5]);
    hosts.extend([Behaviour::Silent; 5]);
    hosts.extend([Behaviour::Erroring; 3]);
    hosts.extend([Behaviour::Vanishing; 2]);
    hosts.extend([Behaviour::Honest; 35]);
    hosts
}

fn correct_output(input: &[u8]) -> Vec<u8> {
    let mut output = b"sum of ".to_vec();
    output.extend_from_slice(input);
    output
}

/// A small deterministic generator (SplitMix64 in counter mode).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        splitmix64(self.0)
    }
}

/// What one simulation run produced.
struct Outcome {
    /// Copies actually sent to hosts, per work unit.
    copies_per_work_unit: f64,
    work_units_done: u64,
    work_units_failed: u64,
}

/// A store in a temporary directory with the simulated project "sim" of
/// `N_WORK_UNITS` work units (quorum 2, at most `max_total_results` copies each).
async fn sim_project(
    adaptive_replication: bool,
    max_total_results: u32,
    seed: u64,
) -> (tempfile::TempDir, Store, ProjectName) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_with_secret(&dir.path().join("quorum.db"), seed).await.expect("open store");
    let module = b"\0asm\x01\0\0\0".to_vec();
    let policy = ReplicationPolicy::new(PolicySpec {
        min_quorum: 2,
        target_results: 2,
        max_error_results: 3,
        max_total_results,
        max_success_results: 0,
        deadline_ms: DEADLINE_MS,
        adaptive_replication,
        priority: 0,
    })
    .expect("coherent policy");
    let name = ProjectName::parse("sim").expect("valid name");
    let project = NewProject {
        name: name.clone(),
        app_digest: digest_of(&module),
        app_module: module,
        policy,
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
    };
    let units: Vec<NewWorkUnit> = (0..N_WORK_UNITS)
        .map(|i| NewWorkUnit {
            name: None,
            input: format!("{i}").into_bytes(),
            app_args: Default::default(),
            files: Default::default(),
        })
        .collect();
    store.create_project(&project, &units, T0).await.expect("create project");
    (dir, store, name)
}

/// A registration as the simulation makes them.
fn sim_host(name: String, account: String, address: String) -> NewHost {
    NewHost {
        name,
        n_cpus: 4,
        memory_bytes: 1 << 30,
        engine: "wasmtime 48.0.8".into(),
        os: "sim".into(),
        account,
        address,
    }
}

/// The report of a copy: its correct output, a wrong one, or an error.
fn sim_report(result_id: crate::domain::ResultId, output: Option<Vec<u8>>) -> ReportInput {
    let (report, output) = match output {
        None => (
            Report::ClientError { fuel_used: 10, engine: "wasmtime 48.0.8".into(), resumed: false, given_back: false },
            Vec::new(),
        ),
        Some(output) => (
            Report::Success {
                output_digest: digest_of(&output),
                fuel_used: 1_000_000_000,
                engine: "wasmtime 48.0.8".into(),
                resumed: false,
            },
            output,
        ),
    };
    ReportInput {
        result_id,
        report,
        output,
        stderr_tail: String::new(),
        run_time_ms: 1,
        error_message: "exit code 1".into(),
        output_files: Vec::new(),
    }
}

async fn simulate(adaptive_replication: bool, seed: u64) -> Outcome {
    let (_dir, store, name) = sim_project(adaptive_replication, 8, seed).await;

    let behaviours = population();
    let mut hosts: Vec<(HostId, Behaviour)> = Vec::new();
    for (i, &behaviour) in behaviours.iter().enumerate() {
        let host = sim_host(format!("host-{i}"), String::new(), String::new());
        let id = store.register_host(&host, &format!("token-{i}"), T0).await.expect("register");
        hosts.push((id, behaviour));
    }
    let behaviour_of: HashMap<HostId, Behaviour> = hosts.iter().copied().collect();

    let mut rng = Rng(seed);
    let mut inputs: HashMap<WorkUnitId, Vec<u8>> = HashMap::new();
    let mut step = 0_u64;
    loop {
        let now = T0.plus_ms(step * STEP_MS);
        // Hosts contact the coordinator in a different order each step.
        let mut order = hosts.clone();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        for &(host, behaviour) in &order {
            if behaviour == Behaviour::Vanishing && step >= VANISH_STEP {
                continue;
            }
            let leased = store.lease_work(host, SLOTS, now).await.expect("lease");
            let mut reports = Vec::new();
            for assignment in leased {
                inputs.insert(assignment.work_unit_id, assignment.input.clone());
                let report = match behaviour {
                    Behaviour::Honest | Behaviour::Vanishing => Some(correct_output(&assignment.input)),
                    Behaviour::Wrong => Some(format!("wrong {}", rng.next()).into_bytes()),
                    Behaviour::Silent => None,
                    Behaviour::Erroring => Some(Vec::new()),
                };
                let Some(output) = report else { continue };
                let output = (behaviour != Behaviour::Erroring).then_some(output);
                reports.push(sim_report(assignment.result_id, output));
            }
            if !reports.is_empty() {
                store.record_reports(host, &reports, now).await.expect("reports are accepted");
            }
        }
        while store.run_transitioner(now).await.expect("transitioner").more {}
        let status = store.project_status(Some(&name)).await.expect("status").remove(0);
        if status.work_units_open == 0 {
            break;
        }
        step += 1;
        assert!(step < 2_000, "the simulation does not converge: {status:?}");
    }

    // Every work unit ended.
    let status = store.project_status(Some(&name)).await.expect("status").remove(0);
    assert_eq!(status.work_units_done + status.work_units_failed, N_WORK_UNITS as u64);

    // No wrong answer is ever canonical.
    let mut canonical = HashMap::new();
    let mut after = 0;
    loop {
        let page = store.canonical_results(&name, after, 1000).await.expect("canonical results");
        let Some(last) = page.last() else { break };
        after = last.work_unit_id;
        for result in page {
            let input = &inputs[&WorkUnitId(result.work_unit_id)];
            assert_eq!(
                result.output,
                correct_output(input),
                "work unit {} has a wrong canonical result",
                result.work_unit_id
            );
            canonical.insert(result.work_unit_id, result.output_digest);
        }
    }

    // Every valid result equals its canonical result; credit only for valid
    // results; no host ever held two copies of one work unit.
    let mut held = HashSet::new();
    let mut sent = 0_u64;
    let mut credit_by_host: HashMap<i64, f64> = HashMap::new();
    let mut after = 0;
    loop {
        let page = store.list_results(&name, None, after, 10_000).await.expect("results");
        let Some(last) = page.last() else { break };
        after = last.id;
        for result in page {
            if let Some(host) = result.host_id {
                sent += 1;
                assert!(
                    held.insert((result.work_unit_id, host)),
                    "host {host} got two copies of {}",
                    result.work_unit_id
                );
                *credit_by_host.entry(host).or_default() += result.granted_credit;
            }
            if result.validate_state == "valid" {
                assert_eq!(result.output_digest.as_ref(), canonical.get(&result.work_unit_id), "{result:?}");
                assert!(result.granted_credit > 0.0);
            } else {
                assert_eq!(result.granted_credit, 0.0, "credit for a result that is not valid: {result:?}");
            }
        }
    }
    for host in store.list_hosts(T0).await.expect("hosts") {
        let behaviour = behaviour_of[&HostId(host.id)];
        let granted = credit_by_host.get(&host.id).copied().unwrap_or(0.0);
        assert!(
            (host.total_credit - granted).abs() < 1e-6,
            "host {} credit {} != {granted}",
            host.id,
            host.total_credit
        );
        if matches!(behaviour, Behaviour::Wrong | Behaviour::Silent | Behaviour::Erroring) {
            assert_eq!((host.n_valid, host.total_credit), (0, 0.0), "{behaviour:?} host earned credit: {host:?}");
        }
    }
    Outcome {
        copies_per_work_unit: sent as f64 / N_WORK_UNITS as f64,
        work_units_done: status.work_units_done,
        work_units_failed: status.work_units_failed,
    }
}

#[tokio::test]
async fn hostile_population_never_gets_a_wrong_canonical_result() {
    let replicated = simulate(false, 7).await;
    assert!(replicated.work_units_done > 0);
    let adaptive = simulate(true, 7).await;
    eprintln!(
        "copies per work unit: {:.3} replicated, {:.3} adaptive (ratio {:.3}); done {} / failed {} and {} / {}",
        replicated.copies_per_work_unit,
        adaptive.copies_per_work_unit,
        adaptive.copies_per_work_unit / replicated.copies_per_work_unit,
        replicated.work_units_done,
        replicated.work_units_failed,
        adaptive.work_units_done,
        adaptive.work_units_failed,
    );
    assert!(
        adaptive.copies_per_work_unit < replicated.copies_per_work_unit,
        "adaptive replication sends fewer copies: {:.3} vs {:.3}",
        adaptive.copies_per_work_unit,
        replicated.copies_per_work_unit
    );
}

/// Attackers who register again and again (`simulate_attacks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attacker {
    /// A fresh host on a fresh account that takes copies and never replies,
    /// registering again (from its address) once its copies have expired.
    Silent,
    /// A fresh host on a fresh account that reports an error for every copy,
    /// registering again (from its address) once it gets nothing more.
    Erroring,
    /// One host, alone, reporting an error for every copy to pause the batch.
    Pauser,
}

/// What a run with attackers produced.
#[derive(Debug)]
struct AttackOutcome {
    /// Simulated minutes until every work unit ended.
    minutes: u64,
    work_units_done: u64,
    work_units_failed: u64,
    registrations: u64,
    /// Copies the attackers took.
    attacker_copies: u64,
    /// Times the batch was found paused (and resumed, as an operator would).
    pauses: u64,
    /// Work units failed with too many total results (what no replies exhaust).
    failed_total_results: u64,
}

/// Honest hosts attached while attackers register.
const N_HONEST: usize = 5;

/// `N_HONEST` honest hosts, all behind one address (as on loopback, or a
/// NAT), and, with `attack`, 10 never-replying and 5 error-reporting
/// registrations (each from an address of its own) and a lone host trying to
/// pause the batch. The policy is the other simulation's (quorum 2, 3 errors,
/// 8 copies in all).
async fn simulate_attacks(attack: bool, seed: u64) -> AttackOutcome {
    let (_dir, store, name) = sim_project(false, 8, seed).await;
    let mut honest = Vec::new();
    for i in 0..N_HONEST {
        honest.push(
            store
                .register_host(
                    &sim_host(format!("honest-{i}"), String::new(), "192.0.2.1".into()),
                    &format!("h-{i}"),
                    T0,
                )
                .await
                .expect("register"),
        );
    }
    let mut kinds = Vec::new();
    if attack {
        kinds.extend([Attacker::Silent; 10]);
        kinds.extend([Attacker::Erroring; 5]);
        kinds.push(Attacker::Pauser);
    }
    let mut registrations = 0_u64;
    let mut register = async |i: usize, now: Timestamp| {
        registrations += 1;
        let new = sim_host(
            format!("attacker-{i}-{registrations}"),
            format!("account-{registrations}"),
            format!("203.0.113.{i}"),
        );
        store.register_host(&new, &format!("a-{registrations}"), now).await.expect("register")
    };
    // Each attacker's current host and the step it registered at.
    let mut attackers = Vec::new();
    for i in 0..kinds.len() {
        attackers.push((register(i, T0).await, 0_u64));
    }
    let deadline_steps = DEADLINE_MS / STEP_MS;
    let mut rng = Rng(seed);
    let (mut attacker_copies, mut pauses) = (0_u64, 0_u64);
    let mut step = 0_u64;
    loop {
        let now = T0.plus_ms(step * STEP_MS);
        // Honest hosts (`Err(i)`) and attackers (`Ok(i)`), in a different order each step.
        let mut order: Vec<Result<usize, usize>> = (0..honest.len()).map(Err).chain((0..kinds.len()).map(Ok)).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        for who in order {
            let i = match who {
                Ok(i) => i,
                Err(h) => {
                    continue_honest(&store, honest[h], now).await;
                    continue;
                }
            };
            let (host, since) = attackers[i];
            let kind = kinds[i];
            if kind == Attacker::Silent && step > since + deadline_steps {
                // Its copies expired: punished, it registers again.
                attackers[i] = (register(i, now).await, step);
                continue;
            }
            let leased = store.lease_work(host, SLOTS, now).await.expect("lease");
            attacker_copies += leased.len() as u64;
            if kind == Attacker::Erroring && leased.is_empty() && step > since {
                attackers[i] = (register(i, now).await, step);
                continue;
            }
            if kind != Attacker::Silent && !leased.is_empty() {
                let reports: Vec<_> = leased.iter().map(|a| sim_report(a.result_id, None)).collect();
                store.record_reports(host, &reports, now).await.expect("reports are accepted");
            }
        }
        while store.run_transitioner(now).await.expect("transitioner").more {}
        let status = store.project_status(Some(&name)).await.expect("status").remove(0);
        if status.batches.iter().any(|batch| batch.state == "paused") {
            pauses += 1;
            store.resume_batches(&name, None).await.expect("resume");
        }
        if status.work_units_open == 0 {
            let failed_total_results = store
                .list_work_units(&name, 0, N_WORK_UNITS as u32)
                .await
                .expect("work units")
                .iter()
                .filter(|wu| wu.fail_reason.as_deref() == Some("too_many_total_results"))
                .count() as u64;
            let hosts = store.list_hosts(now).await.expect("hosts");
            for host in hosts.iter().filter(|host| host.name.starts_with("attacker")) {
                assert_eq!((host.n_valid, host.total_credit), (0, 0.0), "an attacker earned credit: {host:?}");
            }
            return AttackOutcome {
                minutes: step * STEP_MS / 60_000,
                work_units_done: status.work_units_done,
                work_units_failed: status.work_units_failed,
                registrations,
                attacker_copies,
                pauses,
                failed_total_results,
            };
        }
        step += 1;
        assert!(step < 5_000, "the simulation does not converge: {status:?}");
    }
}

/// An honest host's turn: take copies, report their correct outputs.
async fn continue_honest(store: &Store, host: HostId, now: Timestamp) {
    let leased = store.lease_work(host, SLOTS, now).await.expect("lease");
    let reports: Vec<_> = leased.iter().map(|a| sim_report(a.result_id, Some(correct_output(&a.input)))).collect();
    if !reports.is_empty() {
        store.record_reports(host, &reports, now).await.expect("reports are accepted");
    }
}

#[tokio::test]
async fn attackers_who_register_again_delay_a_project_but_fail_none_of_its_work_units() {
    let baseline = simulate_attacks(false, 11).await;
    let attacked = simulate_attacks(true, 11).await;
    eprintln!("without attackers: {baseline:?}\nwith attackers: {attacked:?}");
    assert_eq!((baseline.work_units_done, baseline.work_units_failed), (N_WORK_UNITS as u64, 0), "{baseline:?}");
    assert_eq!(attacked.failed_total_results, 0, "no replies exhaust no work unit's copies: {attacked:?}");
    assert_eq!(attacked.work_units_failed, 0, "the attackers fail no work unit: {attacked:?}");
    assert_eq!(attacked.work_units_done, N_WORK_UNITS as u64, "{attacked:?}");
    assert_eq!(attacked.pauses, 0, "no attacker paused the batch: {attacked:?}");
    assert!(attacked.registrations > 16, "the attackers registered again: {attacked:?}");
    assert!(attacked.attacker_copies > 0, "the attackers took copies: {attacked:?}");
    assert!(attacked.minutes >= baseline.minutes, "{attacked:?} vs {baseline:?}");
}
