//! `quorum submit` refuses bad input with exit code 2 and a message naming
//! the problem, and creates nothing: the coordinator lists no project after.
//! Every case goes through [`check_rejected`].

use quorum_tests::cli::{Statuses, Submitted};
use quorum_tests::grpc::Projects;
use quorum_tests::{Server, TestDir, cli, primes};

/// Writes `files` (relative path, contents) and `manifest` as `project.toml`
/// in a fresh test directory, submits it to a fresh server, and checks that
/// the submission failed with exit code 2, that stderr contains every one of
/// `expected` (case-insensitively) and that no project exists.
async fn check_rejected(name: &str, files: &[(&str, &[u8])], manifest: &str, expected: &[&str]) {
    let dir = TestDir::new(name);
    let server = Server::spawn(dir.path());
    let url = server.url();
    for (path, contents) in files {
        dir.write(path, contents);
    }
    let manifest_path = dir.write("project.toml", manifest);
    let stderr = cli(&url, ["submit", &manifest_path.display().to_string()]).await.failure();
    for fragment in expected {
        assert!(
            stderr.to_lowercase().contains(&fragment.to_lowercase()),
            "the error should mention {fragment:?}; stderr:\n{stderr}"
        );
    }
    let statuses: Statuses = cli(&url, ["--json", "status"]).await.json();
    assert!(statuses.projects.is_empty(), "a rejected submission created a project: {statuses:?}");
}

/// A valid primes manifest with `extra` appended at top level (before any
/// table) and `policy` as the body of `[policy]`.
fn manifest_with(extra: &str, policy: &str) -> String {
    let valid = primes::manifest("bad", 0, 1_000, 100, policy);
    format!("{extra}\n{valid}")
}

#[tokio::test]
async fn toml_syntax_error_is_rejected() {
    // Line 1 is an unquoted string.
    check_rejected(
        "toml-syntax",
        &[],
        &manifest_with("colour = red", "min_quorum = 2"),
        &["project.toml", "line 1", "colour = red"],
    )
    .await;
}

#[tokio::test]
async fn unknown_field_is_rejected() {
    check_rejected(
        "unknown-field",
        &[],
        &manifest_with("colour = \"red\"", "min_quorum = 2"),
        &["project.toml", "unknown field `colour`"],
    )
    .await;
}

#[tokio::test]
async fn min_quorum_above_target_results_is_rejected() {
    check_rejected(
        "incoherent-policy",
        &[],
        &manifest_with("", "min_quorum = 3\ntarget_results = 2"),
        &["policy.target_results", "at least min_quorum (3)"],
    )
    .await;
}

#[tokio::test]
async fn app_that_is_not_webassembly_is_rejected() {
    check_rejected(
        "not-wasm",
        &[("app.wasm", b"this is not a WebAssembly module\n")],
        "name = \"bad\"\napp = \"app.wasm\"\n[work_units]\nrange = { start = 0, end = 10, chunk = 5 }\n",
        &["app.wasm", "WebAssembly"],
    )
    .await;
}

#[tokio::test]
async fn app_without_start_is_rejected() {
    check_rejected(
        "no-start",
        &[("app.wat", br#"(module (func (export "main")))"#)],
        "name = \"bad\"\napp = \"app.wat\"\n[work_units]\nrange = { start = 0, end = 10, chunk = 5 }\n",
        &["_start", "app.wat"],
    )
    .await;
}

#[tokio::test]
async fn missing_jsonl_inputs_are_rejected() {
    let manifest = format!(
        "name = \"bad\"\napp = {:?}\n[work_units]\njsonl = \"missing-inputs.jsonl\"\n",
        primes::app_path().display().to_string()
    );
    check_rejected("missing-jsonl", &[], &manifest, &["missing-inputs.jsonl"]).await;
}

#[tokio::test]
async fn duplicate_project_name_is_rejected() {
    let dir = TestDir::new("duplicate");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let manifest = dir.write("project.toml", primes::manifest("twice", 0, 1_000, 100, "min_quorum = 2"));
    let manifest = manifest.display().to_string();
    let first: Submitted = cli(&url, ["--json", "submit", &manifest]).await.json();
    assert_eq!(first.n_work_units, 10);
    let before: Statuses = cli(&url, ["--json", "status"]).await.json();

    let stderr = cli(&url, ["submit", &manifest]).await.failure();
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("twice"), "the error names the project: {stderr}");

    let after: Statuses = cli(&url, ["--json", "status"]).await.json();
    assert_eq!(after.projects, before.projects, "the first project is intact");
    assert_eq!(after.projects.len(), 1);
    assert_eq!(after.projects[0].project_id, first.project_id);
    assert_eq!(after.projects[0].work_units_total, 10);
    let work_units = Projects::connect(&url).await.work_units("twice").await;
    assert_eq!(work_units.len(), 10, "no work unit was added: {work_units:?}");
}
