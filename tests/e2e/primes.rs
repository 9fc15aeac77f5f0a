//! The happy path: a coordinator, three workers and the CLI compute the
//! primes example; every canonical output is checked against a prime count
//! done here, and every CLI view (status, results, hosts) agrees; on one
//! coordinator over SQLite, and on two over one PostgreSQL database (the
//! workers and the CLI calls spread over both).

use std::collections::BTreeSet;

use quorum_tests::cli::{Hosts, ResultLine, Statuses, Submitted, parse_csv, parse_jsonl};
use quorum_tests::group::{Coordinators, Setup};
use quorum_tests::{TestDir, Worker, cli, primes};

const N_WORK_UNITS: u64 = 200;
const CHUNK: u64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primes_end_to_end() {
    primes_on(Setup::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primes_end_to_end_on_two_postgres_coordinators() {
    primes_on(Setup::PostgresPair).await;
}

async fn primes_on(setup: Setup) {
    let dir = TestDir::new("primes");
    let group = Coordinators::start(setup, dir.path());
    let url = group.url(0);
    let manifest = dir.write(
        "project.toml",
        primes::manifest("primes", 0, N_WORK_UNITS * CHUNK, CHUNK, "min_quorum = 2\ntarget_results = 2"),
    );
    let manifest = manifest.display().to_string();

    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest]).await.json();
    assert_eq!(submitted.project, "primes");
    assert_eq!(submitted.n_work_units, N_WORK_UNITS);
    assert_eq!(submitted.app_digest.len(), 64, "{submitted:?}");

    let _workers: Vec<Worker> =
        (1..=3).map(|n| Worker::spawn(&group.url(n), &dir.join(format!("worker-{n}")), 1)).collect();
    // Waiting on another coordinator than the one most reports go to.
    cli(&group.url(1), ["wait", "primes", "--timeout", "120s"]).await.success();

    // Canonical outputs, as `quorum results` prints them (jsonl by default).
    let lines: Vec<ResultLine> = parse_jsonl(&cli(&url, ["results", "primes"]).await.success());
    assert_eq!(lines.len() as u64, N_WORK_UNITS, "one line per work unit");
    let expected_names: BTreeSet<String> =
        (0..N_WORK_UNITS).map(|i| format!("{}-{}", i * CHUNK, (i + 1) * CHUNK)).collect();
    let names: BTreeSet<String> = lines.iter().map(|line| line.work_unit.clone()).collect();
    assert_eq!(names, expected_names, "one line per work unit, named START-END");
    for line in &lines {
        let expected = primes::expected_output(&line.work_unit);
        assert_eq!(line.output.as_deref(), Some(expected.as_str()), "canonical output of {}", line.work_unit);
        assert_eq!(line.output_base64, None, "{line:?}");
        assert_eq!(line.output_digest, quorum_tests::grpc::digest(expected.as_bytes()), "{line:?}");
        assert!(line.fuel_used > 0, "{line:?}");
    }

    // The same as CSV in a file: a header and one line per work unit.
    let csv_path = dir.join("results.csv");
    let csv_arg = csv_path.display().to_string();
    let stdout = cli(&url, ["results", "primes", "--format", "csv", "--out", &csv_arg]).await.success();
    assert_eq!(stdout, "", "--out writes the results to the file only");
    let csv = std::fs::read_to_string(&csv_path).expect("read results.csv");
    // Outputs end with a newline, so their fields are quoted and span two
    // physical lines: count CSV records, not lines.
    let records = parse_csv(&csv);
    assert_eq!(records.len() as u64, N_WORK_UNITS + 1, "a header and one record per work unit");
    assert_eq!(records[0].join(","), "work_unit_id,work_unit,result_id,output_digest,fuel_used,output");
    for record in &records[1..] {
        let [_, work_unit, _, output_digest, _, output] = record.as_slice() else {
            panic!("a record has 6 fields: {record:?}");
        };
        let expected = primes::expected_output(work_unit);
        assert_eq!(output, &expected, "{record:?}");
        assert_eq!(output_digest, &quorum_tests::grpc::digest(expected.as_bytes()));
    }

    let statuses: Statuses = cli(&group.url(1), ["--json", "status"]).await.json();
    assert_eq!(statuses.projects.len(), 1, "{statuses:?}");
    let status = &statuses.projects[0];
    assert_eq!(status.name, "primes");
    assert_eq!(status.work_units_total, N_WORK_UNITS, "{status:?}");
    assert_eq!(status.work_units_done, N_WORK_UNITS, "{status:?}");
    assert_eq!(status.work_units_open, 0, "{status:?}");
    assert_eq!(status.work_units_failed, 0, "{status:?}");
    assert_eq!(status.results_valid, 2 * N_WORK_UNITS, "{status:?}");
    assert_eq!(status.results_invalid, 0, "{status:?}");
    assert_eq!(status.results_error, 0, "{status:?}");

    let hosts: Hosts = cli(&group.url(1), ["--json", "hosts"]).await.json();
    assert_eq!(hosts.hosts.len(), 3, "{hosts:?}");
    let host_names: BTreeSet<&str> = hosts.hosts.iter().map(|host| host.name.as_str()).collect();
    assert_eq!(host_names, BTreeSet::from(["worker-1", "worker-2", "worker-3"]));
    let n_valid: u64 = hosts.hosts.iter().map(|host| host.n_valid).sum();
    assert_eq!(n_valid, 2 * N_WORK_UNITS, "{hosts:?}");
    let total_credit: f64 = hosts.hosts.iter().map(|host| host.total_credit).sum();
    assert!(total_credit > 0.0, "{hosts:?}");
    for host in &hosts.hosts {
        assert_eq!(host.n_cpus, 1, "{host:?}");
        assert_eq!(host.n_invalid, 0, "{host:?}");
        assert_eq!(host.n_error, 0, "{host:?}");
        assert_eq!(host.n_in_progress, 0, "{host:?}");
        assert_eq!(host.n_valid > 0, host.total_credit > 0.0, "credit goes with valid results: {host:?}");
    }
}
