//! A deterministic simulation of a volunteer population against the real
//! store (a SQLite file) and the real lifecycle rules, with a simulated clock:
//! 2,000 work units, 50 hosts of which some cheat, vanish or fail. Seeded,
//! no sleeps, no threads: every run is the same.

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

async fn simulate(adaptive_replication: bool, seed: u64) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_with_secret(&dir.path().join("quorum.db"), seed).await.expect("open store");
    let module = b"\0asm\x01\0\0\0".to_vec();
    let policy = ReplicationPolicy::new(PolicySpec {
        min_quorum: 2,
        target_results: 2,
        max_error_results: 3,
        max_total_results: 8,
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
    };
    let units: Vec<NewWorkUnit> =
        (0..N_WORK_UNITS).map(|i| NewWorkUnit { name: None, input: format!("{i}").into_bytes() }).collect();
    store.create_project(&project, &units, T0).await.expect("create project");

    let behaviours = population();
    let mut hosts: Vec<(HostId, Behaviour)> = Vec::new();
    for (i, &behaviour) in behaviours.iter().enumerate() {
        let host = NewHost {
            name: format!("host-{i}"),
            n_cpus: 4,
            memory_bytes: 1 << 30,
            engine: "wasmtime 48.0.8".into(),
            os: "sim".into(),
            account: String::new(),
            address: String::new(),
        };
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
                let report = if behaviour == Behaviour::Erroring {
                    Report::ClientError { fuel_used: 10, engine: "wasmtime 48.0.8".into(), resumed: false }
                } else {
                    Report::Success {
                        output_digest: digest_of(&output),
                        fuel_used: 1_000_000_000,
                        engine: "wasmtime 48.0.8".into(),
                        resumed: false,
                    }
                };
                let output = if behaviour == Behaviour::Erroring { Vec::new() } else { output };
                reports.push(ReportInput {
                    result_id: assignment.result_id,
                    report,
                    output,
                    stderr_tail: String::new(),
                    run_time_ms: 1,
                    error_message: String::new(),
                });
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
