//! Signed apps: a project signed with `quorum keygen`'s key whose module is
//! replaced in the coordinator's database (as a compromised coordinator
//! would) is refused by workers, which report each copy as a client error
//! naming the reason and run nothing; and a worker that pinned a project's
//! key refuses the project re-created under the same name with another key.

use quorum_proto::v1;
use quorum_tests::cli::Submitted;
use quorum_tests::grpc::{Projects, TINY_APP, digest, tiny_policy};
use quorum_tests::{Server, TestDir, Worker, cli, primes};
use sqlx::sqlite::SqliteConnectOptions;

/// A primes manifest over `0..n*100` signed by the key at `key` (a path
/// relative to the manifest), one copy per work unit, failing at the first error.
fn signed_manifest(name: &str, n: u64, key: Option<&str>) -> String {
    let text = primes::manifest(name, 0, n * 100, 100, "min_quorum = 1\ntarget_results = 1\nmax_error_results = 0");
    match key {
        Some(key) => text.replacen("[policy]", &format!("signing_key = {key:?}\n[policy]"), 1),
        None => text,
    }
}

/// Makes a project key with `quorum keygen` in the test directory.
async fn keygen(server: &Server, dir: &TestDir, file: &str) -> String {
    let out = dir.join(file);
    let public = cli(&server.url(), ["keygen", "--out", &out.display().to_string()]).await.success();
    public.trim().to_owned()
}

fn error_messages(results: &[v1::ResultInfo]) -> Vec<String> {
    results.iter().map(|result| format!("{}: {}", result.outcome, result.error_message)).collect()
}

#[tokio::test]
async fn a_module_replaced_in_the_coordinators_database_is_refused() {
    let dir = TestDir::new("signed-tampered");
    let server = Server::spawn(dir.path());
    let url = server.url();
    keygen(&server, &dir, "project.key").await;
    let manifest = dir.write("project.toml", signed_manifest("p", 2, Some("project.key")));
    let submitted: Submitted = cli(&url, ["--json", "submit", &manifest.display().to_string()]).await.json();
    assert_eq!(submitted.n_work_units, 2);

    // The coordinator is compromised: another module takes the app's place.
    let db = sqlx::SqlitePool::connect_with(SqliteConnectOptions::new().filename(dir.join("quorum.db")))
        .await
        .expect("open the coordinator's database");
    let forged = digest(TINY_APP);
    sqlx::query("INSERT INTO apps (digest, module, size, created_at) VALUES (?, ?, ?, 0)")
        .bind(&forged)
        .bind(TINY_APP)
        .bind(TINY_APP.len() as i64)
        .execute(&db)
        .await
        .expect("insert the forged app");
    let changed = sqlx::query("UPDATE projects SET app_digest = ? WHERE name = 'p'")
        .bind(&forged)
        .execute(&db)
        .await
        .expect("swap the project's app");
    assert_eq!(changed.rows_affected(), 1);
    db.close().await;

    let worker = Worker::spawn(&url, &dir.join("worker"), 1);
    let projects = Projects::connect(&url).await;
    let status = projects.wait("p").await;
    assert_eq!((status.work_units_done, status.work_units_failed), (0, 2), "{status:?}");
    let results = projects.results("p").await;
    let messages = error_messages(&results);
    assert_eq!(messages.len(), 2, "{messages:?}");
    for message in &messages {
        assert!(message.starts_with("client_error: app refused: signature does not verify"), "{messages:?}");
        assert!(message.contains(&forged), "the reason names the module's digest: {message}");
    }
    let log = worker.log();
    assert!(!log.contains("started result"), "nothing ran:\n{log}");
}

#[tokio::test]
async fn a_worker_that_pinned_a_key_refuses_the_project_recreated_with_another_key() {
    let dir = TestDir::new("signed-key-changed");
    let mut server = Server::spawn_with_db(dir.path(), &dir.join("first.db"));
    let url = server.url();
    let addr = server.addr().to_owned();
    let first_key = keygen(&server, &dir, "first.key").await;
    let second_key = keygen(&server, &dir, "second.key").await;
    assert_ne!(first_key, second_key);
    let manifest = dir.write("project.toml", signed_manifest("p", 2, None));
    let manifest = manifest.display().to_string();
    let first_key_file = dir.join("first.key").display().to_string();
    cli(&url, ["submit", "--signing-key", &first_key_file, &manifest]).await.success();

    // The worker runs the project signed with the first key, and pins it.
    let worker = Worker::spawn(&url, &dir.join("worker"), 1);
    let status = Projects::connect(&url).await.wait("p").await;
    assert_eq!(status.work_units_done, 2, "{status:?}");

    // The coordinator is replaced (a new database at the same address) and
    // the project re-created under the same name with the second key. The
    // worker is stopped meanwhile: a new database numbers results from 1
    // again, and the worker's journal (keyed by coordinator URL and result
    // id) still remembers the first project's results 1 and 2, so a cancelled
    // filler project takes those ids first.
    let mut worker = worker;
    worker.terminate().await;
    server.terminate().await;
    let server = Server::spawn_at(dir.path(), &dir.join("second.db"), &addr);
    let filler = dir.write("filler.toml", signed_manifest("filler", 2, None));
    cli(&server.url(), ["submit", &filler.display().to_string()]).await.success();
    cli(&server.url(), ["cancel", "filler"]).await.success();
    let second_key_file = dir.join("second.key").display().to_string();
    cli(&server.url(), ["submit", "--signing-key", &second_key_file, &manifest]).await.success();
    let worker = Worker::spawn(&url, &dir.join("worker"), 1);
    let projects = Projects::connect(&server.url()).await;
    let status = projects.wait("p").await;
    assert_eq!((status.work_units_done, status.work_units_failed), (0, 2), "{status:?}");
    let messages = error_messages(&projects.results("p").await);
    assert_eq!(messages.len(), 2, "{messages:?}");
    for message in &messages {
        assert!(message.starts_with("client_error: app refused: project \"p\" key changed"), "{messages:?}");
        assert!(message.contains(&second_key) && message.contains(&first_key), "{message}");
    }
    let log = worker.log();
    assert!(!log.contains("started result"), "nothing ran after the key changed:\n{log}");
}

#[tokio::test]
async fn a_signature_that_does_not_verify_is_refused_at_submission() {
    let dir = TestDir::new("signed-bad-submission");
    let server = Server::spawn(dir.path());
    let projects = Projects::connect(&server.url()).await;
    let public = keygen(&server, &dir, "project.key").await;
    let public = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, public).expect("base64");
    let request = |signature: Vec<u8>, public_key: Vec<u8>| v1::CreateProjectRequest {
        name: "p".to_owned(),
        app_module: TINY_APP.to_vec(),
        policy: Some(tiny_policy()),
        app_signature: signature,
        app_public_key: public_key,
        ..Default::default()
    };
    for (signature, public_key, expected) in [
        (vec![1; 64], vec![], "give both or neither"),
        (vec![1; 64], vec![2; 31], "not an ed25519 public key"),
        (vec![1; 63], public.clone(), "not an ed25519 signature"),
        (vec![1; 64], vec![2; 32], "not a valid ed25519 public key"),
        (vec![1; 64], public.clone(), "does not verify"),
    ] {
        let error = projects.client().create_project(request(signature, public_key)).await.expect_err("refused");
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
        assert!(error.message().contains(expected), "{error:?}");
    }
    let all = projects.client().get_status(v1::GetStatusRequest::default()).await.expect("GetStatus").into_inner();
    assert!(all.projects.is_empty(), "nothing was created: {all:?}");
}
