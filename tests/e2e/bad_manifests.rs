//! `quorum submit` refuses bad input with exit code 2 and a message naming
//! the problem, and creates nothing: the coordinator lists no project after.
//! Every case goes through [`check_rejected`].

use quorum_tests::cli::{Statuses, Submitted};
use quorum_tests::group::{Coordinators, Setup};
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

/// A project name that another submission took is refused, naming what
/// differs, and changes nothing; the same manifest again adds nothing (it
/// completes an interrupted submission: see `operations`).
#[tokio::test]
async fn a_project_name_taken_by_another_submission_is_rejected() {
    project_name_taken_is_rejected(Setup::Sqlite).await;
}

/// The second submissions go to the other coordinator of a PostgreSQL group.
#[tokio::test]
async fn a_project_name_taken_by_another_submission_is_rejected_on_two_postgres_coordinators() {
    project_name_taken_is_rejected(Setup::PostgresPair).await;
}

async fn project_name_taken_is_rejected(setup: Setup) {
    let dir = TestDir::new("duplicate");
    let group = Coordinators::start(setup, dir.path());
    let first_url = group.url(0);
    let url = group.url(1);
    let manifest = dir.write("project.toml", primes::manifest("twice", 0, 1_000, 100, "min_quorum = 2"));
    let manifest = manifest.display().to_string();
    let first: Submitted = cli(&first_url, ["--json", "submit", &manifest]).await.json();
    assert_eq!((first.n_work_units, first.resumed), (10, false));
    let before: Statuses = cli(&url, ["--json", "status"]).await.json();

    let again: Submitted = cli(&url, ["--json", "submit", &manifest]).await.json();
    assert_eq!(
        (again.project_id, again.n_work_units, again.resumed, again.n_work_units_present),
        (first.project_id, 0, true, 10)
    );

    dir.write("other.wat", "(module (memory (export \"memory\") 1) (func (export \"_start\")))");
    let other_app = dir.write(
        "other-app.toml",
        "name = \"twice\"\napp = \"other.wat\"\n[work_units]\nrange = { start = 0, end = 1000, chunk = 100 }\n",
    );
    let stderr = cli(&url, ["submit", &other_app.display().to_string()]).await.failure();
    assert!(
        stderr.contains("'twice' already exists with another app"),
        "the error names the project and why: {stderr}"
    );
    assert!(stderr.contains("quorum delete twice"), "the error says what to do: {stderr}");

    // A work unit of the same name with another input.
    dir.write("inputs.jsonl", "{\"name\":\"0-100\",\"input\":\"0 1000000\\n\"}\n");
    let other_inputs = dir.write(
        "other-inputs.toml",
        format!(
            "name = \"twice\"\napp = {:?}\n[work_units]\njsonl = \"inputs.jsonl\"\n",
            primes::app_path().display().to_string()
        ),
    );
    let stderr = cli(&url, ["submit", &other_inputs.display().to_string()]).await.failure();
    assert!(stderr.contains("already has a work unit") && stderr.contains("another input"), "{stderr}");

    let after: Statuses = cli(&url, ["--json", "status"]).await.json();
    assert_eq!(after.projects, before.projects, "the first project is intact");
    let work_units = Projects::connect(&url).await.work_units("twice").await;
    assert_eq!(work_units.len(), 10, "no work unit was added: {work_units:?}");
}

#[tokio::test]
async fn env_name_with_equals_is_rejected() {
    check_rejected(
        "env-equals",
        &[],
        &format!("{}[env]\n\"A=B\" = \"1\"\n", manifest_with("", "min_quorum = 2")),
        &["project.toml: env: variable name \"A=B\" contains '='"],
    )
    .await;
}

#[tokio::test]
async fn work_unit_arg_with_nul_is_rejected() {
    check_rejected(
        "jsonl-arg-nul",
        &[
            ("app.wat", b"(module (memory (export \"memory\") 1) (func (export \"_start\")))"),
            ("inputs.jsonl", b"{\"input\":\"\"}\n{\"input\":\"\",\"args\":[\"ok\",\"a\\u0000b\"]}\n"),
        ],
        "name = \"bad\"\napp = \"app.wat\"\nargs = [\"--steps\"]\n[work_units]\njsonl = \"inputs.jsonl\"\n",
        &["inputs.jsonl:2: args: element 1 contains a NUL character"],
    )
    .await;
}
