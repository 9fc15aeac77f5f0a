//! Hostile apps through the real processes: one `quorum-worker` runs a
//! project per app of `examples/hostile` (C compiled to WASI), each with
//! limits tight enough to end it in well under a second. Every hostile result
//! is a client error naming the limit or the trap, the worker survives them
//! all, and a normal project of the same run succeeds. `snoop` (looking
//! around the host) succeeds with everything denied, and `clockrand` (clocks
//! and random bytes) gives byte-identical outputs on two hosts, so its work
//! unit gets a canonical result at quorum 2.

use std::path::PathBuf;

use quorum_tests::cli::Submitted;
use quorum_tests::grpc::Projects;
use quorum_tests::{Server, TestDir, Worker, cli, primes};

/// One hostile project: its name, its app under `examples/hostile`, the body
/// of its `[limits]` table and the error message its only result must carry.
struct Hostile {
    project: &'static str,
    app: &'static str,
    limits: &'static str,
    error: &'static str,
}

const HOSTILE: [Hostile; 6] = [
    Hostile { project: "spin-fuel", app: "spin.wasm", limits: "fuel = 10_000_000", error: "fuel limit exceeded" },
    Hostile {
        project: "spin-wall",
        app: "spin.wasm",
        limits: "fuel = 1_000_000_000_000_000\nwall_time = \"200ms\"",
        error: "wall time limit exceeded",
    },
    Hostile { project: "membomb", app: "membomb.wasm", limits: "memory = \"16MiB\"", error: "memory limit exceeded" },
    Hostile { project: "flood", app: "flood.wasm", limits: "output_bytes = 65536", error: "output limit exceeded" },
    // The project's stderr limit travels with each assignment to the worker.
    Hostile {
        project: "stderr-flood",
        app: "stderr_flood.wasm",
        limits: "stderr_bytes = 65536",
        error: "stderr limit exceeded",
    },
    Hostile { project: "recurse", app: "recurse.wasm", limits: "", error: "trap: call stack exhausted" },
];

/// What `snoop` prints in the sandbox (the same with or without a checkpoint
/// directory; `sandbox/src/tests/apps.rs` checks both).
const SNOOP_OUTPUT: &str = include_str!("../../examples/hostile/snoop.expected");

/// The normal project of the run: primes over 0..3000, three work units.
const PRIMES_END: u64 = 3_000;
const PRIMES_CHUNK: u64 = 1_000;

/// The committed module `examples/hostile/NAME`.
fn hostile_app(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/hostile").join(name);
    assert!(path.is_file(), "{} is missing (scripts/build-apps builds it)", path.display());
    path
}

/// Submits a project of one work unit (named "only", input "4294967295": the
/// depth `recurse` reads; the other apps ignore stdin) running
/// `examples/hostile/APP`.
async fn submit_one(dir: &TestDir, url: &str, project: &str, app: &str, policy: &str, limits: &str) {
    let inputs = dir.write(format!("{project}.jsonl"), "{\"name\": \"only\", \"input\": \"4294967295\"}\n");
    let manifest = format!(
        "name = {project:?}\napp = {:?}\n[policy]\n{policy}\n[limits]\n{limits}\n[work_units]\njsonl = {:?}\n",
        hostile_app(app).display().to_string(),
        inputs.display().to_string(),
    );
    let path = dir.write(format!("{project}.toml"), manifest);
    let submitted: Submitted = cli(url, ["--json", "submit", &path.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, 1, "{project}");
}

/// One copy, accepted alone; a single error fails the work unit (a second
/// copy could never go to the same host anyway).
const ONE_COPY: &str = "min_quorum = 1\ntarget_results = 1\nmax_error_results = 0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_survives_every_hostile_app() {
    let dir = TestDir::new("hostile-apps");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let projects = Projects::connect(&url).await;

    // Well-behaved projects first: copies go out in submission order, so the
    // worker's daily quota (halved by every error) is raised by valid results
    // before the errors come.
    let manifest = dir.write(
        "primes.toml",
        primes::manifest("primes", 0, PRIMES_END, PRIMES_CHUNK, "min_quorum = 1\ntarget_results = 1"),
    );
    cli(&url, ["submit", &manifest.display().to_string()]).await.success();
    submit_one(&dir, &url, "snoop", "snoop.wasm", ONE_COPY, "").await;
    submit_one(&dir, &url, "clockrand", "clockrand.wasm", "min_quorum = 2\ntarget_results = 2", "").await;
    for hostile in &HOSTILE {
        submit_one(&dir, &url, hostile.project, hostile.app, ONE_COPY, hostile.limits).await;
    }

    let mut worker = Worker::spawn(&url, &dir.join("volunteer"), 1);
    for project in ["primes", "snoop"].into_iter().chain(HOSTILE.iter().map(|hostile| hostile.project)) {
        projects.wait(project).await;
    }
    assert!(worker.is_running(), "the worker survived every hostile app\n{}", worker.log());
    let volunteer = projects.hosts().await.into_iter().find(|host| host.name == "volunteer").expect("host").id;

    for hostile in &HOSTILE {
        let status = projects.status(hostile.project).await;
        assert_eq!((status.work_units_failed, status.results_error), (1, 1), "{}: {status:?}", hostile.project);
        let results = projects.results(hostile.project).await;
        let [result] = results.as_slice() else { panic!("{}: one copy: {results:?}", hostile.project) };
        assert_eq!(
            (result.outcome.as_str(), result.error_message.as_str(), result.host_id),
            ("client_error", hostile.error, volunteer),
            "{}: {result:?}",
            hostile.project
        );
    }
    let stderr_flood = &projects.results("stderr-flood").await[0];
    assert!(
        stderr_flood.stderr_tail.len() <= 4096 && stderr_flood.stderr_tail.ends_with("EEEE\n"),
        "the report keeps the last 4 KiB of stderr: {:?}",
        stderr_flood.stderr_tail
    );
    let membomb = &projects.results("membomb").await[0];
    assert!(membomb.stderr_tail.contains("malloc failed"), "{membomb:?}");

    // The normal project of the same run.
    let status = projects.status("primes").await;
    assert_eq!(status.work_units_done, PRIMES_END / PRIMES_CHUNK, "{status:?}");
    for canonical in projects.canonical_results("primes").await {
        assert_eq!(String::from_utf8_lossy(&canonical.output), primes::expected_output(&canonical.work_unit_name));
    }

    // snoop: a success, with everything denied.
    let canonical = projects.canonical_results("snoop").await;
    assert_eq!(canonical.len(), 1, "{canonical:?}");
    // On a worker, argv[0] is the project's name (the sandbox alone says "app").
    assert_eq!(String::from_utf8_lossy(&canonical[0].output), SNOOP_OUTPUT.replace("argv[0] = app", "argv[0] = snoop"));

    // clockrand: the first host's copy waits for a second host.
    let _second = Worker::spawn(&url, &dir.join("second"), 1);
    let status = projects.wait("clockrand").await;
    assert_eq!((status.work_units_done, status.results_valid), (1, 2), "{status:?}");
    let results = projects.results("clockrand").await;
    assert_ne!(results[0].host_id, results[1].host_id, "{results:?}");
    assert_eq!(results[0].output_digest, results[1].output_digest, "{results:?}");
    let canonical = projects.canonical_results("clockrand").await;
    let output = String::from_utf8_lossy(&canonical[0].output).into_owned();
    assert!(output.starts_with("time: 946684800\nrealtime: 946684800.000000000\n"), "{output}");
    assert!(worker.is_running(), "{}", worker.log());
}
