//! Command-line arguments and environment variables reach the app: a
//! project's `args` and `[env]` and each JSON Lines work unit's own `args`
//! and `env`, merged (argv[0] the project's name, the work unit's variables
//! overriding the project's, nothing of the host's). `quorum results` shows
//! each work unit's own output, argv and env, and `quorum-worker run --arg
//! --env` reproduces one byte for byte. The coordinator checks them again
//! itself: bad ones sent over gRPC are refused, naming the entry, and
//! nothing is created.

use std::collections::BTreeMap;
use std::path::PathBuf;

use quorum_proto::v1;
use quorum_tests::cli::{ResultLine, parse_jsonl};
use quorum_tests::grpc::{Projects, tiny_policy};
use quorum_tests::{Server, TestDir, Worker, binaries, cli};

/// `tests/apps/print_args.wat`: prints its arguments, one per line, "--",
/// then its variables as NAME=VALUE lines.
fn print_args() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("apps/print_args.wat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_work_unit_gets_its_own_merged_args_and_env() {
    let dir = TestDir::new("app-args");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let inputs = dir.write(
        "inputs.jsonl",
        "{\"name\":\"a\",\"input\":\"\",\"args\":[\"--part\",\"1\"],\"env\":{\"LEVEL\":\"9\"}}\n\
         {\"name\":\"b\",\"input\":\"\",\"args\":[\"two words\",\"\"],\"env\":{\"EXTRA\":\"x=y\"}}\n\
         {\"name\":\"c\",\"input\":\"\"}\n",
    );
    let manifest = format!(
        "name = \"demo\"\napp = {:?}\nargs = [\"--steps\", \"100\"]\n\
         [env]\nMODE = \"fast\"\nLEVEL = \"1\"\n\
         [policy]\nmin_quorum = 1\ntarget_results = 1\n[work_units]\njsonl = {:?}\n",
        print_args().display().to_string(),
        inputs.display().to_string(),
    );
    let path = dir.write("project.toml", manifest);
    cli(&url, ["submit", &path.display().to_string()]).await.success();
    let _worker = Worker::spawn(&url, &dir.join("volunteer"), 1);
    Projects::connect(&url).await.wait("demo").await;

    let lines: Vec<ResultLine> = parse_jsonl(&cli(&url, ["results", "demo"]).await.success());
    let by_name: BTreeMap<&str, &ResultLine> = lines.iter().map(|line| (line.work_unit.as_str(), line)).collect();
    let expected = [
        ("a", "demo\n--steps\n100\n--part\n1\n--\nLEVEL=9\nMODE=fast\n"),
        ("b", "demo\n--steps\n100\ntwo words\n\n--\nEXTRA=x=y\nLEVEL=1\nMODE=fast\n"),
        ("c", "demo\n--steps\n100\n--\nLEVEL=1\nMODE=fast\n"),
    ];
    assert_eq!(by_name.keys().copied().collect::<Vec<_>>(), ["a", "b", "c"], "{lines:?}");
    for (name, output) in expected {
        let line = by_name[name];
        assert_eq!(line.output.as_deref(), Some(output), "work unit {name}: the app saw its own command line and env");
        // What `quorum results` shows is what the app saw.
        let (argv, env) = output.split_once("--\n").expect("the separator");
        assert_eq!(line.argv, argv.lines().collect::<Vec<_>>(), "work unit {name}");
        let env: BTreeMap<String, String> = env
            .lines()
            .map(|var| var.split_once('=').map(|(n, v)| (n.to_owned(), v.to_owned())).expect("NAME=VALUE"))
            .collect();
        assert_eq!(line.env, env, "work unit {name}");
    }

    // Reproduced locally, byte for byte, from what `quorum results` shows.
    let b = by_name["b"];
    let mut command = tokio::process::Command::new(binaries::path(binaries::WORKER));
    command.arg("run").arg(print_args()).args(["--seed", &b.random_seed.to_string()]);
    for arg in &b.argv {
        command.arg(format!("--arg={arg}"));
    }
    for (name, value) in &b.env {
        command.args(["--env", &format!("{name}={value}")]);
    }
    let local = command.output().await.expect("run quorum-worker run");
    assert!(local.status.success(), "quorum-worker run: {local:?}");
    assert_eq!(String::from_utf8_lossy(&local.stdout), b.output.as_deref().unwrap_or_default());
}

#[tokio::test]
async fn the_coordinator_refuses_bad_args_and_env_itself() {
    let dir = TestDir::new("app-args-grpc");
    let server = Server::spawn(dir.path());
    let projects = Projects::connect(&server.url()).await;
    let module = wat::parse_file(print_args()).expect("valid WAT");
    let var = |name: &str, value: &str| v1::EnvVar { name: name.to_owned(), value: value.to_owned() };
    let unit = |name: &str, args: Vec<String>, env: Vec<v1::EnvVar>| v1::WorkUnitInput {
        name: name.to_owned(),
        input: Vec::new(),
        args,
        env,
        files: Vec::new(),
    };
    let request =
        |args: Vec<String>, env: Vec<v1::EnvVar>, work_units: Vec<v1::WorkUnitInput>| v1::CreateProjectRequest {
            name: "demo".to_owned(),
            app_module: module.clone(),
            policy: Some(tiny_policy()),
            args,
            env,
            work_units,
            ..Default::default()
        };
    let good = || unit("good", vec!["-v".to_owned()], vec![var("A", "1")]);
    for (request, message) in [
        (request(vec![], vec![var("A=B", "1")], vec![good()]), "env[0]: variable name \"A=B\" contains '='"),
        (request(vec![], vec![var("A", "1"), var("", "1")], vec![good()]), "env[1]: a variable name must not be empty"),
        (request(vec![], vec![var("A", "1"), var("A", "2")], vec![good()]), "env[1]: variable A is given twice"),
        (request(vec!["ok".into(), "a\0b".into()], vec![], vec![good()]), "args[1] contains a NUL character"),
        (
            request(vec![], vec![], vec![good(), unit("bad", vec![], vec![var("V", "\0")])]),
            "work_units[1].env[0]: the value of V contains a NUL character",
        ),
        (
            request(vec![], vec![], vec![good(), unit("bad", vec!["x".to_owned(); 129], vec![])]),
            "work_units[1].args: 129 arguments, above the maximum of 128",
        ),
        (
            request(vec!["x".repeat(32 * 1024)], vec![], vec![good()]),
            "args and env: arguments and environment take 32769 bytes, above the maximum of 32768",
        ),
    ] {
        let error = projects.client().create_project(request).await.expect_err("refused");
        assert_eq!((error.code(), error.message()), (tonic::Code::InvalidArgument, message), "{error:?}");
    }
    let status = projects.client().get_status(v1::GetStatusRequest::default()).await.expect("status");
    assert!(status.into_inner().projects.is_empty(), "nothing created");

    // Accepted, then a batch with one bad work unit adds nothing.
    projects.client().create_project(request(vec!["-q".to_owned()], vec![], vec![good()])).await.expect("accepted");
    let error = projects
        .client()
        .add_work_units(v1::AddWorkUnitsRequest {
            project: "demo".to_owned(),
            work_units: vec![unit("fine", vec![], vec![]), unit("bad", vec![], vec![var("X\0", "1")])],
            policy: None,
        })
        .await
        .expect_err("refused");
    assert_eq!(
        (error.code(), error.message()),
        (tonic::Code::InvalidArgument, "work_units[1].env[0]: variable name \"X\\0\" contains a NUL character"),
    );
    let work_units = projects.work_units("demo").await;
    assert_eq!(work_units.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["good"], "nothing half-created");
    assert_eq!(work_units[0].argv, ["demo", "-q", "-v"]);
    assert_eq!(work_units[0].env, vec![var("A", "1")]);
}
