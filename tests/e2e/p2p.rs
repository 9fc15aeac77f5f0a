//! Peer-to-peer transfer of input files between real worker processes: a
//! worker that shares files (`--share-files`) serves one it downloaded to
//! another worker, so the coordinator sends it once; a worker that does not
//! share is never named as a peer, and when the only sharing peer is gone
//! the file still comes, from the coordinator. A coordinator that shares
//! too is a seed: the first worker gets the file from it over the swarm,
//! the next ones from that worker, and its metric counts what it sent. A
//! host that lies (it announces the file, claims to hold all of it and
//! sends corrupt bytes) is dropped by the real worker, which gets the file
//! intact from the seed.

use std::path::PathBuf;

use quorum_tests::grpc::{Host, Projects, digest};
use quorum_tests::worker::worker_command;
use quorum_tests::{Server, TestDir, Worker, cli};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/motifs")
}

/// A project of the motifs app whose one work unit reads `reads`.
fn project(dir: &TestDir, name: &str, reads: &std::path::Path) -> PathBuf {
    project_of(dir, name, reads, 1)
}

/// A project of the motifs app with `units` work units, each reading `reads`.
fn project_of(dir: &TestDir, name: &str, reads: &std::path::Path, units: usize) -> PathBuf {
    let jsonl = dir.write(
        format!("{name}.jsonl"),
        (0..units)
            .map(|i| {
                format!(
                    "{{\"name\":\"wu-{i}\",\"input\":\"\",\"files\":{{\"reads.txt\":{:?}}}}}\n",
                    reads.display().to_string()
                )
            })
            .collect::<String>(),
    );
    dir.write(
        format!("{name}.toml"),
        format!(
            "name = {name:?}\napp = {:?}\nargs = [\"GATTACA\"]\n[files]\n\"reference.txt\" = {:?}\n\
             [policy]\nmin_quorum = 1\ntarget_results = 1\n[limits]\noutput_files = \"1MiB\"\n\
             [work_units]\njsonl = {:?}\n",
            example().join("motif.wasm").display().to_string(),
            example().join("reference.txt").display().to_string(),
            jsonl.display().to_string(),
        ),
    )
}

/// The log lines of `server` that sent the file `digest` to a worker.
fn sends(server: &Server, digest: &str) -> usize {
    server.log().lines().filter(|line| line.contains("sending input file") && line.contains(digest)).count()
}

fn downloaded_from(worker: &Worker, digest: &str) -> Vec<String> {
    worker
        .log()
        .lines()
        .filter(|line| line.contains("downloaded input file") && line.contains(digest))
        .filter_map(|line| {
            line.split("from=").nth(1).map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharing_worker_serves_a_file_to_another_and_only_sharing_workers_serve() {
    let dir = TestDir::new("p2p");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let projects = Projects::connect(&url).await;
    let reads: String = (0..40_000).map(|i| format!("{:0>100}\n", i)).collect();
    let reads_path = dir.write("reads.txt", &reads);
    let file = digest(reads.as_bytes());
    let share = ["--share-files", "--share-listen", "127.0.0.1:0"];

    // A shares: it downloads the file from the coordinator, then serves it.
    cli(&url, ["submit", &project(&dir, "first", &reads_path).display().to_string()]).await.success();
    let mut sharing = Worker::spawn_with(&[&url], &dir.join("sharing"), 1, &share);
    projects.wait("first").await;
    assert_eq!(downloaded_from(&sharing, &file), ["coordinator"], "{}", sharing.log());
    worker_command("pause", &dir.join("sharing")).await;

    // B does not share: it gets the file from A, and the coordinator sends it no byte of it.
    cli(&url, ["submit", &project(&dir, "second", &reads_path).display().to_string()]).await.success();
    let fetching = Worker::spawn_with(&[&url], &dir.join("fetching"), 1, &["--share-listen", "127.0.0.1:0"]);
    projects.wait("second").await;
    assert_eq!(downloaded_from(&fetching, &file), ["peers"], "{}", fetching.log());
    assert_eq!(sends(&server, &file), 1, "the coordinator sent the file once, to A");
    worker_command("pause", &dir.join("fetching")).await;

    // A is gone; B holds the file but does not share it: a third worker
    // gets it from the coordinator, never from B.
    sharing.kill_9();
    cli(&url, ["submit", &project(&dir, "third", &reads_path).display().to_string()]).await.success();
    let third = Worker::spawn_with(&[&url], &dir.join("third"), 1, &["--share-listen", "127.0.0.1:0"]);
    projects.wait("third").await;
    assert_eq!(downloaded_from(&third, &file), ["coordinator"], "{}", third.log());
    assert_eq!(sends(&server, &file), 2);
    // The file arrived intact every way: the three results are the same.
    let mut outputs = Vec::new();
    for name in ["first", "second", "third"] {
        outputs.push(projects.canonical_results(name).await[0].output.clone());
    }
    assert_eq!(outputs[0], b"reads 0 hits 0 reference 7\n");
    assert!(outputs.iter().all(|output| *output == outputs[0]), "{outputs:?}");
}

/// The bytes of input files the coordinator sent, by path (`grpc`, `p2p`),
/// from its metrics at `addr`.
async fn sent(addr: &str) -> (u64, u64) {
    let answer = quorum_tests::http::get(addr, "/metrics", None).await;
    let value = |path: &str| {
        let prefix = format!("quorum_file_sent_bytes_total{{path=\"{path}\"}} ");
        answer.body.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    (value("grpc"), value("p2p"))
}

/// What the coordinator sent of each download, as the worker logs it.
fn from_coordinator(worker: &Worker, digest: &str) -> Vec<u64> {
    worker
        .log()
        .lines()
        .filter(|line| line.contains("downloaded input file") && line.contains(digest))
        .filter_map(|line| line.split("from_coordinator=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharing_coordinator_seeds_a_file_once_and_workers_pass_it_on() {
    let dir = TestDir::new("p2p-seed");
    let flags =
        ["--metrics", "127.0.0.1:0", "--share-files", "--share-listen", "127.0.0.1:0"].map(std::ffi::OsStr::new);
    let server = Server::spawn_with_args(dir.path(), &dir.join("quorum.db"), "127.0.0.1:0", &flags);
    let url = server.url();
    let metrics = server.announced_addr("metrics on http://").await;
    let projects = Projects::connect(&url).await;
    let reads: String = (0..40_000).map(|i| format!("{:0>100}\n", i)).collect();
    let size = reads.len() as u64;
    let reads_path = dir.write("reads.txt", &reads);
    let file = digest(reads.as_bytes());
    let share = ["--share-files", "--share-listen", "127.0.0.1:0"];

    // A: no other peer holds the file; the coordinator's seed sends all of it, over the swarm.
    cli(&url, ["submit", &project(&dir, "first", &reads_path).display().to_string()]).await.success();
    let first = Worker::spawn_with(&[&url], &dir.join("first"), 1, &share);
    projects.wait("first").await;
    assert_eq!(downloaded_from(&first, &file), ["peers"], "{}", first.log());
    assert_eq!(from_coordinator(&first, &file), [size], "{}", first.log());
    // Both input files of the project (reads.txt and the shared reference.txt) came from the seed.
    let both = size + std::fs::metadata(example().join("reference.txt")).unwrap().len();
    let (grpc, p2p) = sent(&metrics).await;
    assert_eq!(grpc, 0);
    assert!((both..2 * both).contains(&p2p), "the seed sent {p2p} bytes of {both} bytes of files");
    worker_command("pause", &dir.join("first")).await;

    // B and C: A holds the whole file, so the seed, asked only for what no
    // peer holds, sends them nothing.
    cli(&url, ["submit", &project_of(&dir, "second", &reads_path, 2).display().to_string()]).await.success();
    let others: Vec<Worker> =
        ["b", "c"].iter().map(|name| Worker::spawn_with(&[&url], &dir.join(name), 1, &share)).collect();
    projects.wait("second").await;
    let fetched: Vec<u64> = others.iter().flat_map(|worker| from_coordinator(worker, &file)).collect();
    assert!(fetched.iter().all(|bytes| *bytes == 0), "{fetched:?}");
    assert!(!fetched.is_empty());
    assert_eq!(sent(&metrics).await, (0, p2p), "the coordinator sent nothing more");
    let outputs = projects.canonical_results("second").await;
    assert_eq!(outputs.len(), 2);
    assert!(outputs.iter().all(|result| result.output == b"reads 0 hits 0 reference 7\n"), "{outputs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_peer_is_dropped_by_a_real_worker_and_the_file_arrives_intact() {
    let dir = TestDir::new("p2p-liar");
    let flags = ["--share-files", "--share-listen", "127.0.0.1:0"].map(std::ffi::OsStr::new);
    let server = Server::spawn_with_args(dir.path(), &dir.join("quorum.db"), "127.0.0.1:0", &flags);
    let url = server.url();
    let projects = Projects::connect(&url).await;
    let reads: String = (0..40_000).map(|i| format!("{:0>100}\n", i)).collect();
    let reads_path = dir.write("reads.txt", &reads);
    let file = digest(reads.as_bytes());

    // The liar registers as a host that shares files and holds this one
    // (before there is any work, so it takes none): the tracker names it to
    // the worker, beside the coordinator's seed, which is asked only for
    // what no peer holds (the liar claims all of it).
    let (_liar_router, liar) = quorum_tests::liar::start(reads.clone().into_bytes()).await;
    let mut liar_host = Host::register(&url, "liar").await;
    let work = liar_host.announce(liar.to_bytes(), vec![file.clone()]).await.unwrap();
    assert!(work.assignments.is_empty());
    cli(&url, ["submit", &project(&dir, "lied-to", &reads_path).display().to_string()]).await.success();

    let worker = Worker::spawn_with(&[&url], &dir.join("worker"), 1, &["--share-listen", "127.0.0.1:0"]);
    projects.wait("lied-to").await;
    let log = worker.log();
    assert!(
        log.lines().any(|line| line.contains("do not verify: dropped") && line.contains(&liar.key())),
        "the worker names the liar it dropped:\n{log}"
    );
    assert_eq!(downloaded_from(&worker, &file), ["peers"], "{log}");
    let results = projects.canonical_results("lied-to").await;
    assert_eq!(results[0].output, b"reads 0 hits 0 reference 7\n");
}
