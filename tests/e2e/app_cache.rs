//! The worker's app cache within its budget: four projects, each with its own
//! app (the primes app with a different unused constant, so a different
//! module and digest), computed by one worker whose `--app-cache-mb` holds
//! only one of their modules with what the sandbox compiled of it (measured
//! on a first run of one project). Every project completes with correct
//! outputs and no error (a module a held task needs is never evicted; an
//! evicted one is downloaded again when needed), and the cache ends within
//! its budget.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use quorum_tests::cli::Submitted;
use quorum_tests::grpc::{Projects, digest};
use quorum_tests::poll::poll_until;
use quorum_tests::{Server, TestDir, Worker, cli, primes};

const PROJECTS: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
const WORK_UNITS: u64 = 3;
const CHUNK: u64 = 500;

/// The primes app, made a distinct module by an unused global holding `variant`.
fn app_variant(variant: usize) -> String {
    let primes = std::fs::read_to_string(primes::app_path()).expect("read primes.wat");
    // The module's closing parenthesis is the file's last one.
    let end = primes.rfind(')').expect("primes.wat has a module");
    format!("{}\n  (global $variant i32 (i32.const {variant})))\n", &primes[..end])
}

/// The modules in the state directory's app cache, by digest, with the
/// bytes each takes: its `.wasm` file and its compiled files.
fn cached_apps(state_dir: &Path) -> BTreeMap<String, u64> {
    let files = |dir: &str| -> Vec<(String, u64)> {
        std::fs::read_dir(state_dir.join(dir))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| Some((e.file_name().to_str()?.to_owned(), e.metadata().ok()?.len())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut apps: BTreeMap<String, u64> = files("apps")
        .into_iter()
        .filter_map(|(name, size)| Some((name.strip_suffix(".wasm")?.to_owned(), size)))
        .collect();
    for (name, size) in files("compiled") {
        if let Some(total) = name.split('-').next().and_then(|digest| apps.get_mut(digest)) {
            *total += size;
        }
    }
    apps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_its_app_cache_within_budget_and_completes_every_project() {
    let dir = TestDir::new("app-cache");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let mut digests = BTreeMap::new();
    let state_dir = dir.join("volunteer");
    let projects = Projects::connect(&url).await;
    let mut one_app = 0;
    for (variant, name) in PROJECTS.iter().enumerate() {
        let text = app_variant(variant);
        let module = wat::parse_str(&text).expect("a valid variant of primes.wat");
        digests.insert(*name, digest(&module));
        dir.write(format!("{name}.wat"), text);
        let manifest = dir.write(
            format!("{name}.toml"),
            format!(
                "name = {name:?}\napp = \"{name}.wat\"\n[policy]\nmin_quorum = 1\n\
                 [work_units]\nrange = {{ start = 0, end = {}, chunk = {CHUNK} }}\n",
                WORK_UNITS * CHUNK
            ),
        );
        let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
        assert_eq!(submitted.n_work_units, WORK_UNITS);
        if variant == 0 {
            // What one app takes (module and compiled code), from a first
            // run with the default budget.
            let mut first = Worker::spawn(&url, &state_dir, 1);
            projects.wait(name).await;
            assert!(first.terminate().await.success(), "{}", first.log());
            one_app = cached_apps(&state_dir)[&digests[name]];
            assert!(one_app > module.len() as u64, "the compiled code is counted: {one_app} bytes");
        }
    }
    // Room for one app, not two (the variants differ by a few bytes). The
    // budget in MiB is printed with every digit, so the worker parses back
    // `budget` bytes exactly, or a byte less.
    let budget = one_app * 3 / 2;
    let mib = (budget as f64 / (1024.0 * 1024.0)).to_string();
    let budget = budget + 1;
    let worker = Worker::spawn_with(&[&url], &state_dir, 1, &["--app-cache-mb", &mib]);

    for name in PROJECTS {
        let status = projects.wait(name).await;
        assert_eq!(status.app_digest, digests[name], "the module the test measured: {status:?}");
        assert_eq!(
            (status.work_units_done, status.work_units_failed, status.results_error),
            (WORK_UNITS, 0, 0),
            "{name}: no task failed for want of its app: {status:?}\n{}",
            worker.log()
        );
        for result in projects.canonical_results(name).await {
            let output = String::from_utf8_lossy(&result.output);
            assert_eq!(output, primes::expected_output(&result.work_unit_name), "{name}: {result:?}");
        }
    }

    // The last reports settled, the modules no task holds any more are
    // evicted down to the budget.
    let cached = poll_until("the app cache within its budget", Duration::from_millis(20), || async {
        let cached = cached_apps(&state_dir);
        let total: u64 = cached.values().sum();
        if total <= budget { Ok(cached) } else { Err(format!("{total} bytes > {budget}: {cached:?}")) }
    })
    .await;
    assert_eq!(cached.len(), 1, "one module fits: {cached:?}\n{}", worker.log());
    assert!(cached.keys().all(|cached| digests.values().any(|digest| digest == cached)), "{cached:?}");
    let status = worker.command("status").await;
    let line = status.lines().find(|line| line.starts_with("app cache: ")).unwrap_or_else(|| panic!("{status}"));
    assert!(line.starts_with("app cache: 1 app, ") && line.contains(" of "), "its use and budget: {status}");
}
