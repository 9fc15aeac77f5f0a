//! Input and output files through the whole platform, with the C example
//! `examples/motifs` (built with clang and wasi-libc): a shared file and
//! each work unit's own under `/input`, an argument, an output file in
//! `/output` compared between copies and fetched with `quorum results
//! --files`; each host downloads the shared file once however many of its
//! work units use it; `quorum-worker run --input-dir --output-dir`
//! reproduces a result. A download killed half-way resumes where it
//! stopped. Bad files are refused at submission, naming them, with nothing
//! created; a worker whose file cache cannot hold a task's files gives it back.

use std::path::PathBuf;
use std::time::Duration;

use quorum_proto::v1;
use quorum_tests::cli::{ResultLine, parse_jsonl};
use quorum_tests::grpc::{Projects, digest, tiny_policy};
use quorum_tests::poll::poll_until;
use quorum_tests::{Server, TestDir, Worker, binaries, cli};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/motifs")
}

const MOTIF: &str = "GATTACA";

/// What `motif.c` computes for one chunk of reads: its stdout and `hits.txt`.
fn expected(reads: &str, reference: &str) -> (String, String) {
    let occurrences = |text: &str| -> Vec<usize> {
        (0..text.len().saturating_sub(MOTIF.len() - 1)).filter(|&i| text[i..].starts_with(MOTIF)).collect()
    };
    let (mut matching, mut hits, mut lines) = (0, 0, String::new());
    for (number, read) in reads.lines().enumerate() {
        let found = occurrences(read);
        if !found.is_empty() {
            matching += 1;
            hits += found.len();
            let offsets: Vec<String> = found.iter().map(ToString::to_string).collect();
            lines.push_str(&format!("{}: {}\n", number + 1, offsets.join(" ")));
        }
    }
    (format!("reads {matching} hits {hits} reference {}\n", occurrences(reference).len()), lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_app_reads_input_files_and_writes_output_files() {
    let dir = TestDir::new("files");
    let server = Server::spawn(dir.path());
    let url = server.url();
    cli(&url, ["submit", &example().join("project.toml").display().to_string()]).await.success();
    let workers = [Worker::spawn(&url, &dir.join("w1"), 2), Worker::spawn(&url, &dir.join("w2"), 2)];
    Projects::connect(&url).await.wait("motifs").await;

    let files = dir.join("outputs");
    let text = cli(&url, ["results", "motifs", "--files", &files.display().to_string()]).await.success();
    let lines: Vec<ResultLine> = parse_jsonl(&text);
    assert_eq!(lines.len(), 4, "{text}");
    let reference = std::fs::read_to_string(example().join("reference.txt")).unwrap();
    for line in &lines {
        let reads = std::fs::read_to_string(example().join(format!("reads/{}.txt", line.work_unit))).unwrap();
        let (stdout, hits) = expected(&reads, &reference);
        assert_eq!(line.output.as_deref(), Some(stdout.as_str()), "work unit {}", line.work_unit);
        assert!(!hits.is_empty(), "the example's chunks all hold the motif");
        let written = std::fs::read_to_string(files.join(&line.work_unit).join("hits.txt")).unwrap();
        assert_eq!(written, hits, "work unit {}: /output/hits.txt fetched with --files", line.work_unit);
        assert_eq!(line.output_files.len(), 1);
        assert_eq!(line.output_files[0].name, "hits.txt");
        assert_eq!(line.output_files[0].digest, digest(hits.as_bytes()));
        assert_eq!(line.argv, ["motifs", MOTIF], "the project's argument reached the app");
    }

    // Quorum 2 on two hosts: each computed all four work units, and
    // downloaded the shared reference once, each chunk once.
    let reference_digest = digest(reference.as_bytes());
    for worker in &workers {
        let log = worker.log();
        let downloads = |digest: &str| {
            log.lines().filter(|line| line.contains("downloaded input file") && line.contains(digest)).count()
        };
        assert_eq!(downloads(&reference_digest), 1, "{}: the shared file once\n{log}", worker.name());
        for chunk in 0..4 {
            let reads = std::fs::read(example().join(format!("reads/chunk-{chunk}.txt"))).unwrap();
            assert_eq!(downloads(&digest(&reads)), 1, "{}: chunk {chunk} once", worker.name());
        }
    }

    // The result reproduces locally from its files, argument and seed.
    let line = &lines[0];
    let inputs = dir.join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::copy(example().join("reference.txt"), inputs.join("reference.txt")).unwrap();
    std::fs::copy(example().join(format!("reads/{}.txt", line.work_unit)), inputs.join("reads.txt")).unwrap();
    let outputs = dir.join("reproduced");
    let output = tokio::process::Command::new(binaries::path(binaries::WORKER))
        .arg("run")
        .arg(example().join("motif.wasm"))
        .args(["--seed", &line.random_seed.to_string(), "--arg", "motifs", "--arg", MOTIF])
        .arg("--input-dir")
        .arg(&inputs)
        .arg("--output-dir")
        .arg(&outputs)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), line.output.clone().unwrap());
    assert_eq!(
        std::fs::read(outputs.join("hits.txt")).unwrap(),
        std::fs::read(files.join(&line.work_unit).join("hits.txt")).unwrap()
    );
}

/// A project of the example's app with the given `[files]` lines, extra
/// `[limits]` lines and JSON Lines work units, quorum 1.
fn write_project(dir: &TestDir, name: &str, files_table: &str, limits: &str, jsonl: &str) -> PathBuf {
    let inputs = dir.write(format!("{name}.jsonl"), jsonl);
    let manifest = format!(
        "name = {name:?}\napp = {:?}\nargs = [\"{MOTIF}\"]\n[files]\n{files_table}\n\
         [policy]\nmin_quorum = 1\ntarget_results = 1\n[limits]\noutput_files = \"64KiB\"\n{limits}\n\
         [work_units]\njsonl = {:?}\n",
        example().join("motif.wasm").display().to_string(),
        inputs.display().to_string(),
    );
    dir.write(format!("{name}.toml"), manifest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_download_resumes_where_it_stopped() {
    let dir = TestDir::new("files-resume");
    // 16 MiB of reads at 40 Mbit/s: about 3 s, time enough to kill the worker mid-way.
    let server = Server::spawn_with_args(
        dir.path(),
        &dir.join("quorum.db"),
        "127.0.0.1:0",
        &["--file-upload-mbps".as_ref(), "40".as_ref()],
    );
    let url = server.url();
    let read = "ACGT".repeat(25);
    let reads: String = (0..(16 << 20) / 101)
        .map(|i| if i == 7 { format!("{MOTIF}{}\n", &read[7..]) } else { format!("{read}\n") })
        .collect();
    let reads_path = dir.write("big.txt", &reads);
    let reference_path = dir.write("reference.txt", "GATTACAGATTACA\n");
    let manifest = write_project(
        &dir,
        "big",
        &format!("\"reference.txt\" = {:?}", reference_path.display().to_string()),
        "",
        &format!(
            "{{\"name\":\"big\",\"input\":\"\",\"files\":{{\"reads.txt\":{:?}}}}}\n",
            reads_path.display().to_string()
        ),
    );
    cli(&url, ["submit", &manifest.display().to_string()]).await.success();

    let state = dir.join("volunteer");
    let mut worker = Worker::spawn(&url, &state, 1);
    let reads_digest = digest(reads.as_bytes());
    let part = state.join("files").join(format!("{reads_digest}.part"));
    poll_until("a part of the download on disk", Duration::from_millis(10), || async {
        match std::fs::metadata(&part) {
            Ok(metadata) if metadata.len() >= 2 << 20 => Ok(()),
            Ok(metadata) => Err(format!("{} bytes", metadata.len())),
            Err(error) => Err(error.to_string()),
        }
    })
    .await;
    worker.kill_9();
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept < reads.len() as u64, "killed before the end");

    let _worker = Worker::spawn(&url, &state, 1);
    Projects::connect(&url).await.wait("big").await;
    let lines: Vec<ResultLine> = parse_jsonl(&cli(&url, ["results", "big"]).await.success());
    assert_eq!(lines[0].output.as_deref(), Some("reads 1 hits 1 reference 2\n"), "the file arrived intact");
    // The second download started where the first stopped, not at zero.
    let log = server.log();
    let offsets: Vec<u64> = log
        .lines()
        .filter(|line| line.contains("sending input file") && line.contains(&reads_digest))
        .filter_map(|line| line.split("offset=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(offsets.len(), 2, "{log}");
    assert_eq!(offsets[0], 0);
    assert!(offsets[1] >= 2 << 20 && offsets[1] <= kept, "resumed at {} of {kept} kept", offsets[1]);
    assert!(!part.exists(), "the part file became the cached file");
    assert!(state.join("files").join(&reads_digest).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_refused_at_submission_and_nothing_is_created() {
    let dir = TestDir::new("files-bad");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let reads = dir.write("reads.txt", "ACGT\n");
    let unit =
        format!("{{\"name\":\"a\",\"input\":\"\",\"files\":{{\"reads.txt\":{:?}}}}}\n", reads.display().to_string());
    let cases = [
        ("dots", "\"..\" = \"reads.txt\"", "", unit.clone(), "file name \"..\" is not allowed"),
        ("slash", "\"a/b\" = \"reads.txt\"", "", unit.clone(), "path separator"),
        (
            "missing",
            "\"reference.txt\" = \"nowhere.txt\"",
            "",
            unit.clone(),
            "cannot read input file \"reference.txt\"",
        ),
        (
            "shadow",
            "\"reads.txt\" = \"reads.txt\"",
            "",
            unit.clone(),
            "both a shared file of the project and a file of the work unit",
        ),
        (
            "limit",
            "\"reference.txt\" = \"reads.txt\"",
            "input_files = 6",
            unit.clone(),
            "over the project's input_files limit of 6 bytes",
        ),
    ];
    for (name, files_table, limits, jsonl, message) in cases {
        // Every path in the cases is the reads file, but for the missing one.
        let files_table = files_table.replace("= \"reads.txt\"", &format!("= {:?}", reads.display().to_string()));
        let manifest = write_project(&dir, name, &files_table, limits, &jsonl);
        let failure = cli(&url, ["submit", &manifest.display().to_string()]).await.failure();
        assert!(failure.contains(message), "{name}: {failure}");
        let status = cli(&url, ["status", name]).await.failure();
        assert!(status.contains("not found"), "{name}: nothing created: {status}");
    }

    let projects = Projects::connect(&url).await.client();
    let request = |files: Vec<v1::FileRef>| v1::CreateProjectRequest {
        name: "grpc".to_owned(),
        app_module: std::fs::read(example().join("motif.wasm")).unwrap(),
        policy: Some(tiny_policy()),
        files,
        ..Default::default()
    };
    let never =
        v1::FileRef { name: "reference.txt".into(), digest: digest(b"never uploaded"), size: 14, p2p_meta: Vec::new() };
    let status = projects.clone().create_project(request(vec![never.clone()])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("\"reference.txt\"") && status.message().contains("was not uploaded"),
        "{status:?}"
    );
    let bad_digest = v1::FileRef { digest: "not-hex".into(), ..never.clone() };
    let status = projects.clone().create_project(request(vec![bad_digest])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("files[0]"), "{status:?}");

    // An upload whose bytes are not the announced ones is refused and not stored.
    let upload = v1::UploadFileRequest {
        project: "grpc".into(),
        digest: never.digest.clone(),
        size: 14,
        data: b"other bytes!!!".to_vec(),
    };
    let status = projects.clone().upload_file(tokio_stream::iter([upload])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("digest"), "{status:?}");
    let missing = projects
        .clone()
        .find_files(v1::FindFilesRequest { digests: vec![never.digest.clone()] })
        .await
        .unwrap()
        .into_inner()
        .missing;
    assert_eq!(missing, std::slice::from_ref(&never.digest), "still missing");
    let status = projects.clone().get_status(v1::GetStatusRequest { project: "grpc".into() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_gives_back_a_task_whose_files_it_cannot_hold() {
    let dir = TestDir::new("files-budget");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let reads = dir.write("reads.txt", "ACGT\n".repeat(300_000));
    let reference = dir.write("reference.txt", "GATTACA\n");
    let manifest = write_project(
        &dir,
        "budget",
        &format!("\"reference.txt\" = {:?}", reference.display().to_string()),
        "",
        &format!("{{\"name\":\"a\",\"input\":\"\",\"files\":{{\"reads.txt\":{:?}}}}}\n", reads.display().to_string()),
    );
    cli(&url, ["submit", &manifest.display().to_string()]).await.success();
    let worker = Worker::spawn_with(&[&url], &dir.join("small"), 1, &["--file-cache-mb", "1"]);
    let message = "more than this worker's file cache may hold (--file-cache-mb 1)";
    poll_until("the task given back, saying why", Duration::from_millis(20), || async {
        if worker.log().contains(message) { Ok(()) } else { Err(worker.log()) }
    })
    .await;
    // Reported to the coordinator as a copy given back, with the reason.
    poll_until("the copy reported with the reason", Duration::from_millis(20), || async {
        let copies = cli(&url, ["results", "budget", "--all"]).await.success();
        if copies.contains(message) { Ok(()) } else { Err(copies) }
    })
    .await;
    assert!(
        !dir.join("small").join("files").join(digest(&std::fs::read(&reads).unwrap())).exists(),
        "nothing downloaded"
    );
}

/// Output files of two hosts: a large one goes to the coordinator's file
/// store (not into a row) and comes back whole; copies whose output files
/// differ while their stdout agrees do not agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_files_are_compared_and_large_ones_kept_in_the_file_store() {
    use quorum_tests::grpc::{Host, success_report};
    let dir = TestDir::new("files-outputs");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let projects = Projects::connect(&url).await;
    let mut policy = tiny_policy();
    policy.min_quorum = 2;
    policy.target_results = 2;
    let work_unit = |name: &str| v1::WorkUnitInput { name: name.into(), ..Default::default() };
    projects
        .client()
        .create_project(v1::CreateProjectRequest {
            name: "outputs".into(),
            app_module: std::fs::read(example().join("motif.wasm")).unwrap(),
            policy: Some(policy),
            limits: Some(v1::Limits { output_files_bytes: 1 << 20, ..Default::default() }),
            work_units: vec![work_unit("same"), work_unit("differ")],
            ..Default::default()
        })
        .await
        .unwrap();
    let large: Vec<u8> = (0..300_000_u32).map(|i| (i % 251) as u8).collect();
    let report = |result_id: i64, name: &str, data: &[u8]| v1::ResultReport {
        output_files: vec![v1::OutputFile { name: name.into(), data: data.to_vec() }],
        ..success_report(result_id, b"stdout\n")
    };
    let mut hosts = [Host::register(&url, "h1").await, Host::register(&url, "h2").await];
    for (i, host) in hosts.iter_mut().enumerate() {
        let copies = host.request_work(2).await.unwrap().assignments;
        assert_eq!(copies.len(), 2);
        assert_eq!(copies[0].limits.unwrap().output_files_bytes, 1 << 20);
        let reports = copies
            .iter()
            .map(|copy| match (copy.work_unit_name.as_str(), i) {
                ("same", _) => report(copy.result_id, "big.bin", &large),
                (_, 0) => report(copy.result_id, "small.txt", b"one"),
                _ => report(copy.result_id, "small.txt", b"two"),
            })
            .collect();
        host.report(reports).await.unwrap();
    }
    projects
        .poll_status_until("outputs", Duration::from_millis(20), "one work unit done", |s| s.work_units_done == 1)
        .await;
    let canonical = projects.canonical_results("outputs").await;
    assert_eq!(canonical.len(), 1, "only the work unit whose output files agree");
    assert_eq!(canonical[0].work_unit_name, "same");
    let file = &canonical[0].output_files[0];
    assert_eq!((file.name.as_str(), file.size), ("big.bin", large.len() as u64));
    assert_eq!(file.data, large, "read back whole from the file store");
    assert!(dir.join("quorum.db.files").join(&file.digest).exists(), "kept in the file store");
    let copies = projects.results("outputs").await;
    let differ: Vec<&str> =
        copies.iter().filter(|r| r.work_unit_name == "differ").map(|r| r.validate_state.as_str()).collect();
    assert_eq!(differ, ["inconclusive", "inconclusive"], "stdout agrees, the output files do not: {copies:?}");
}

/// An app sees exactly the directories its project declares, in order: none
/// by default (fd 3 is free), `/checkpoint` with `checkpointing = true`,
/// `/input` with input files and `/output` with `output_files`, before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_sees_only_the_directories_its_project_declares() {
    let dir = TestDir::new("files-preopens");
    let server = Server::spawn(dir.path());
    let url = server.url();
    let app = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("apps/preopens.wat");
    let data = dir.write("data.txt", "x");
    let projects = [
        ("bare", "", ""),
        ("ckpt", "checkpointing = true\n", ""),
        (
            "all",
            "checkpointing = true\n",
            &*format!("[files]\n\"data.txt\" = {:?}\n[limits]\noutput_files = 100\n", data.display().to_string()),
        ),
    ];
    for (name, top, tables) in projects {
        let manifest = dir.write(
            format!("{name}.toml"),
            format!(
                "name = {name:?}\napp = {:?}\n{top}{tables}[policy]\nmin_quorum = 1\ntarget_results = 1\n\
                 [work_units]\nrange = {{ start = 0, end = 1, chunk = 1 }}\n",
                app.display().to_string()
            ),
        );
        cli(&url, ["submit", &manifest.display().to_string()]).await.success();
    }
    let _worker = Worker::spawn(&url, &dir.join("volunteer"), 1);
    let projects_api = Projects::connect(&url).await;
    for (name, expected) in [("bare", ""), ("ckpt", "/checkpoint\n"), ("all", "/input\n/output\n/checkpoint\n")] {
        projects_api.wait(name).await;
        let lines: Vec<ResultLine> = parse_jsonl(&cli(&url, ["results", name]).await.success());
        assert_eq!(lines[0].output.as_deref(), Some(expected), "project {name}");
    }
}
