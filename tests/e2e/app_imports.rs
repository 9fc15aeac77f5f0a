//! Apps and custom validators are checked at submission against the imports
//! the sandbox provides: a module importing anything else could run on no
//! host, so `quorum submit` fails (exit 2) naming every offending import, the
//! coordinator's `CreateProject` refuses it itself with InvalidArgument (it
//! never trusts the CLI), and nothing is created.

use quorum_proto::v1;
use quorum_tests::cli::Statuses;
use quorum_tests::grpc::{Projects, tiny_policy};
use quorum_tests::{Server, TestDir, cli, primes};

/// A WASI command that also imports a solver from the host and a socket call
/// WASI preview 1 does not have.
const OUTSIDE_THE_SANDBOX: &str = r#"(module
  (import "env" "external_solver" (func (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_open" (func (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")))
"#;

const OFFENDING: [&str; 2] = ["env::external_solver", "wasi_snapshot_preview1::sock_open"];

async fn assert_nothing_created(url: &str) {
    let statuses: Statuses = cli(url, ["--json", "status"]).await.json();
    assert!(statuses.projects.is_empty(), "a refused submission created a project: {statuses:?}");
}

#[tokio::test]
async fn submit_refuses_an_app_importing_what_the_sandbox_lacks() {
    let dir = TestDir::new("app-imports-cli");
    let server = Server::spawn(dir.path());
    let url = server.url();
    dir.write("app.wat", OUTSIDE_THE_SANDBOX);
    let manifest = dir.write(
        "project.toml",
        "name = \"solver\"\napp = \"app.wat\"\n[work_units]\nrange = { start = 0, end = 10, chunk = 5 }\n",
    );
    let stderr = cli(&url, ["submit", &manifest.display().to_string()]).await.failure();
    assert!(stderr.contains("INVALID_ARGUMENT") && stderr.contains("app_module"), "{stderr}");
    for import in OFFENDING {
        assert!(stderr.contains(import), "the error names {import}:\n{stderr}");
    }
    assert!(!stderr.contains("fd_write"), "a provided import is not blamed:\n{stderr}");
    assert_nothing_created(&url).await;
}

#[tokio::test]
async fn submit_refuses_a_custom_validator_importing_what_the_sandbox_lacks() {
    let dir = TestDir::new("validator-imports-cli");
    let server = Server::spawn(dir.path());
    let url = server.url();
    dir.write("validator.wat", OUTSIDE_THE_SANDBOX);
    let manifest = format!(
        "{}\n[validator]\nkind = \"custom\"\nmodule = \"validator.wat\"\n",
        primes::manifest("checked", 0, 1_000, 500, "min_quorum = 2")
    );
    let manifest = dir.write("project.toml", manifest);
    let stderr = cli(&url, ["submit", &manifest.display().to_string()]).await.failure();
    assert!(stderr.contains("INVALID_ARGUMENT") && stderr.contains("validator_module"), "{stderr}");
    for import in OFFENDING {
        assert!(stderr.contains(import), "the error names {import}:\n{stderr}");
    }
    assert_nothing_created(&url).await;
}

#[tokio::test]
async fn create_project_checks_imports_itself() {
    let dir = TestDir::new("app-imports-grpc");
    let server = Server::spawn(dir.path());
    let projects = Projects::connect(&server.url()).await;
    let module = wat::parse_str(OUTSIDE_THE_SANDBOX).expect("valid WAT");
    let request =
        |app_module: Vec<u8>, validator: v1::ValidatorKind, validator_module: Vec<u8>| v1::CreateProjectRequest {
            name: "solver".to_owned(),
            app_module,
            policy: Some(tiny_policy()),
            validator: validator.into(),
            validator_module,
            ..Default::default()
        };
    let good = wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#).expect("WAT");
    for (request, field) in [
        (request(module.clone(), v1::ValidatorKind::Bitwise, Vec::new()), "app_module"),
        (request(good.clone(), v1::ValidatorKind::Custom, module.clone()), "validator_module"),
    ] {
        let error = projects.client().create_project(request).await.expect_err("refused");
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
        assert!(error.message().starts_with(&format!("{field}: ")), "{error:?}");
        for import in OFFENDING {
            assert!(error.message().contains(import), "{error:?}");
        }
    }
    assert_nothing_created(&server.url()).await;
    // The same project with a module of WASI imports only is accepted.
    projects.client().create_project(request(good, v1::ValidatorKind::Bitwise, Vec::new())).await.expect("accepted");
}
