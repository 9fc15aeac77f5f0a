//! Fuzzy and custom validators over real gRPC: hosts played by the test
//! report outputs that differ the way honest floating-point or log-printing
//! apps do, and the coordinator decides agreement with the project's validator.

use quorum_tests::cli::Submitted;
use quorum_tests::grpc::{Host, Projects, success_report};
use quorum_tests::{Server, TestDir, cli, primes};

/// Submits a two-work-unit project with `validator` as its `[validator]` table.
async fn submit(dir: &TestDir, url: &str, name: &str, validator: &str) {
    let mut manifest = primes::manifest(name, 0, 200, 100, "min_quorum = 2");
    manifest.push_str(&format!("[validator]\n{validator}\n"));
    let path = dir.write("project.toml", manifest);
    let submitted: Submitted = cli(url, ["--json", "submit", &path.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, 2);
}

/// Each host takes one copy of each work unit and reports `outputs[i]` for work unit i.
async fn report(host: &mut Host, outputs: &[&str]) {
    let mut assignments = host.request_work(4).await.expect("work").assignments;
    assignments.sort_by_key(|a| a.work_unit_id);
    let reports = assignments
        .iter()
        .zip(outputs)
        .map(|(assignment, output)| success_report(assignment.result_id, output.as_bytes()))
        .collect();
    host.report(reports).await.expect("reports accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzy_validator_accepts_outputs_within_tolerance() {
    let dir = TestDir::new("fuzzy");
    let server = Server::spawn(dir.path());
    let url = server.url();
    submit(&dir, &url, "fuzzy", "kind = \"fuzzy\"\nrelative_tolerance = 1e-6").await;
    let projects = Projects::connect(&url).await;
    let (mut a, mut b, mut c) =
        (Host::register(&url, "a").await, Host::register(&url, "b").await, Host::register(&url, "c").await);

    report(&mut a, &["3.1415926 0.5\n", "1.0\n"]).await;
    report(&mut b, &["3.1415927  0.5000001\n", "2.0\n"]).await;
    let status = projects.status("fuzzy").await;
    assert_eq!((status.work_units_done, status.work_units_open), (1, 1), "within 1e-6: agree; 1 vs 2: not");
    // The inconclusive work unit gets a third copy; C agrees with B.
    report(&mut c, &["2.0000000001\n"]).await;
    let status = projects.wait("fuzzy").await;
    assert_eq!((status.work_units_done, status.results_valid, status.results_invalid), (2, 4, 1));
    let canonical = projects.canonical_results("fuzzy").await;
    assert_eq!(canonical[0].output, b"3.1415926 0.5\n", "the earliest agreeing result is canonical");
    assert_eq!(canonical[1].output, b"2.0\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_validator_module_decides_agreement() {
    let dir = TestDir::new("custom-validator");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let module = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/validators/first_line.wat");
    submit(&dir, &url, "custom", &format!("kind = \"custom\"\nmodule = {module:?}")).await;
    let projects = Projects::connect(&url).await;
    let (mut a, mut b) = (Host::register(&url, "a").await, Host::register(&url, "b").await);

    // The validator compares first lines only.
    report(&mut a, &["42\ntook 3 ms\n", "7\n"]).await;
    report(&mut b, &["42\ntook 5 ms\n", "8\n"]).await;
    let status = projects.status("custom").await;
    assert_eq!((status.validator.as_str(), status.work_units_done, status.work_units_open), ("custom", 1, 1));
    let canonical = projects.canonical_results("custom").await;
    assert_eq!(canonical[0].output, b"42\ntook 3 ms\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_validator_must_be_a_command_module() {
    let dir = TestDir::new("custom-validator-bad");
    let server = Server::spawn(dir.path());
    let url = server.url();
    dir.write("validator.wat", "(module (func (export \"main\")))");
    let mut manifest = primes::manifest("bad", 0, 200, 100, "min_quorum = 2");
    manifest.push_str("[validator]\nkind = \"custom\"\nmodule = \"validator.wat\"\n");
    let path = dir.write("project.toml", manifest);
    let stderr = cli(&url, ["submit", &path.display().to_string()]).await.failure();
    assert!(stderr.contains("validator module") && stderr.contains("_start"), "{stderr}");
}
