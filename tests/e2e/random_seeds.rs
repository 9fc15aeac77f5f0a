//! Reproducible randomness: a work unit's random seed derives from stable
//! names (the project seed, given by the manifest or derived from the
//! project's name, and the work unit's name), never from database ids. The
//! same inputs submitted again under another project name with the same
//! manifest `seed` draw the same random bytes; different work units draw
//! different ones; `quorum results` shows each seed, and `quorum-worker run`
//! reproduces the output locally from the input and that seed.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use quorum_tests::cli::{ResultLine, parse_jsonl};
use quorum_tests::grpc::Projects;
use quorum_tests::{Server, TestDir, Worker, binaries, cli};

/// `examples/hostile/clockrand.wasm`: prints the clocks and random bytes it sees.
fn clockrand() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/hostile/clockrand.wasm")
}

/// Submits clockrand over work units "a", "b" and "c" as `project`, with
/// `seed` (a line of the manifest, or nothing), one copy per work unit.
async fn submit(dir: &TestDir, url: &str, project: &str, seed: &str) {
    let inputs = dir.write(
        "inputs.jsonl",
        "{\"name\":\"a\",\"input\":\"\"}\n{\"name\":\"b\",\"input\":\"\"}\n{\"name\":\"c\",\"input\":\"\"}\n",
    );
    let manifest = format!(
        "name = {project:?}\napp = {:?}\n{seed}\n[policy]\nmin_quorum = 1\ntarget_results = 1\n\
         [work_units]\njsonl = {:?}\n",
        clockrand().display().to_string(),
        inputs.display().to_string(),
    );
    let path = dir.write(format!("{project}.toml"), manifest);
    cli(url, ["submit", &path.display().to_string()]).await.success();
}

/// The canonical results of `project` by work unit name: (seed, output).
async fn draws(url: &str, project: &str) -> BTreeMap<String, (u64, String)> {
    let lines: Vec<ResultLine> = parse_jsonl(&cli(url, ["results", project]).await.success());
    lines.into_iter().map(|line| (line.work_unit, (line.random_seed, line.output.expect("text output")))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_inputs_resubmitted_draw_the_same_random_numbers() {
    let dir = TestDir::new("random-seeds");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let projects = Projects::connect(&url).await;
    // An unrelated project first, so that the work unit ids of the two
    // resubmissions differ from each other's.
    submit(&dir, &url, "unseeded", "").await;
    submit(&dir, &url, "first", "seed = 42").await;
    submit(&dir, &url, "again", "seed = 42").await;
    let _worker = Worker::spawn(&url, &dir.join("volunteer"), 1);
    for project in ["unseeded", "first", "again"] {
        projects.wait(project).await;
    }
    let first = draws(&url, "first").await;
    let again = draws(&url, "again").await;
    let unseeded = draws(&url, "unseeded").await;
    assert_eq!(first.keys().collect::<Vec<_>>(), ["a", "b", "c"], "{first:?}");
    assert_eq!(first, again, "the same names and seed: the same seeds and random bytes");
    let entropy = |output: &str| output.lines().find(|line| line.starts_with("getentropy: ")).expect("line").to_owned();
    let all: Vec<&(u64, String)> = first.values().chain(unseeded.values()).collect();
    let seeds: HashSet<u64> = all.iter().map(|(seed, _)| *seed).collect();
    let bytes: HashSet<String> = all.iter().map(|(_, output)| entropy(output)).collect();
    assert_eq!(
        (seeds.len(), bytes.len()),
        (6, 6),
        "other work units, or another project seed: other seeds and bytes: {first:?} {unseeded:?}"
    );

    // The table shows the seeds too.
    let table = cli(&url, ["results", "first", "--format", "table"]).await.success();
    assert!(table.lines().next().is_some_and(|header| header.contains("SEED")), "{table}");
    assert!(table.contains(&first["a"].0.to_string()), "{table}");

    // Reproduced locally from the input (here empty) and the seed.
    let (seed, output) = &first["b"];
    let input = dir.write("b.input", "");
    let local = tokio::process::Command::new(binaries::path(binaries::WORKER))
        .arg("run")
        .arg(clockrand())
        .args(["--seed", &seed.to_string(), "--input"])
        .arg(&input)
        .output()
        .await
        .expect("run quorum-worker run");
    assert!(local.status.success(), "quorum-worker run: {local:?}");
    assert_eq!(String::from_utf8_lossy(&local.stdout), *output, "the local run reproduces the canonical result");
    assert!(String::from_utf8_lossy(&local.stderr).contains("fuel used: "), "{local:?}");
}
