//! Peer-to-peer transfer of input files between real worker processes: a
//! worker that shares files (`--share-files`) serves one it downloaded to
//! another worker, so the coordinator sends it once; a worker that does not
//! share is never named as a peer, and when the only sharing peer is gone
//! the file still comes, from the coordinator.

use std::path::PathBuf;

use quorum_tests::grpc::{Projects, digest};
use quorum_tests::worker::worker_command;
use quorum_tests::{Server, TestDir, Worker, cli};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/motifs")
}

/// A project of the motifs app whose one work unit reads `reads`.
fn project(dir: &TestDir, name: &str, reads: &std::path::Path) -> PathBuf {
    let jsonl = dir.write(
        format!("{name}.jsonl"),
        format!("{{\"name\":\"only\",\"input\":\"\",\"files\":{{\"reads.txt\":{:?}}}}}\n", reads.display().to_string()),
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
