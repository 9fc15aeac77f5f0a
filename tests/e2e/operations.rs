//! What operators rely on: the standard gRPC health check, server reflection
//! (so `grpcurl` works without .proto files), and clean exits on SIGTERM.

use std::time::Duration;

use quorum_tests::grpc::{Projects, channel};
use quorum_tests::{Server, TestDir, Worker};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test]
async fn health_and_reflection() {
    let dir = TestDir::new("health");
    let mut server = Server::spawn(dir.path());
    let channel = channel(&server.url()).await;

    let mut health = HealthClient::new(channel.clone());
    for service in ["", "quorum.v1.Scheduler", "quorum.v1.Projects"] {
        let response = health
            .check(HealthCheckRequest { service: service.to_owned() })
            .await
            .unwrap_or_else(|status| panic!("Health/Check {service:?}: {status:?}"))
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "service {service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("ServerReflectionInfo")
        .into_inner();
    let response = responses.message().await.expect("a reflection response").expect("the stream has one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a list of services, got {response:?}");
    };
    let services: Vec<&str> = list.service.iter().map(|service| service.name.as_str()).collect();
    for expected in ["quorum.v1.Scheduler", "quorum.v1.Projects", "grpc.health.v1.Health"] {
        assert!(services.contains(&expected), "{expected} missing from {services:?}");
    }

    // Older grpcurl, evans and Postman speak v1alpha.
    let mut reflection_v1alpha =
        tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses_v1alpha = reflection_v1alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("ServerReflectionInfo v1alpha")
        .into_inner();
    let response = responses_v1alpha.message().await.expect("a v1alpha response").expect("one response");
    let Some(tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("expected a v1alpha list of services, got {response:?}");
    };
    let services: Vec<&str> = list.service.iter().map(|service| service.name.as_str()).collect();
    for expected in ["quorum.v1.Scheduler", "quorum.v1.Projects", "grpc.health.v1.Health"] {
        assert!(services.contains(&expected), "{expected} missing from v1alpha's {services:?}");
    }
    drop((responses_v1alpha, reflection_v1alpha));

    // Close this test's connection first: shutdown with a connected client
    // is checked by `server_stops_on_sigterm_with_a_client_connected`.
    drop((responses, reflection, health));
    let exit = server.terminate().await;
    assert!(exit.success(), "quorum-server exits 0 on SIGTERM, got {exit}\n{}", server.log());
}

#[tokio::test]
async fn worker_and_server_stop_cleanly_on_sigterm() {
    let dir = TestDir::new("sigterm");
    let mut server = Server::spawn(dir.path());
    let projects = Projects::connect(&server.url()).await;
    let mut worker = Worker::spawn(&server.url(), &dir.join("worker"), 1);

    // No event says "registered and saved": poll `quorum-worker status`,
    // which reads the identity from the worker's journal (a condition wait).
    quorum_tests::poll::poll_until("the worker to journal its identity", Duration::from_millis(20), || async {
        let status = worker.try_command("status").await?;
        if status.contains("(host 1, share 100)") { Ok(()) } else { Err(format!("{status}\n{}", worker.log())) }
    })
    .await;
    assert_eq!(projects.hosts().await.len(), 1, "the worker registered once");

    let exit = worker.terminate().await;
    assert!(exit.success(), "quorum-worker exits 0 on SIGTERM, got {exit}\n{}", worker.log());
    let status = worker.command("status").await;
    assert!(status.contains("worker: not running") && status.contains("(host 1, share 100)"), "{status}");
    drop(projects);
    let exit = server.terminate().await;
    assert!(exit.success(), "quorum-server exits 0 on SIGTERM, got {exit}\n{}", server.log());
    // Both logs went to files, not terminals: plain text, no colour codes.
    for (name, log) in [("quorum-server", server.log()), ("quorum-worker", worker.log())] {
        assert!(log.contains(" INFO "), "{name} logged at INFO: {log}");
        assert!(!log.contains('\u{1b}'), "{name}'s redirected log has no ANSI escape codes: {log:?}");
    }
}

/// Workers keep their connection open between calls: SIGTERM must still stop
/// the coordinator while a client is connected (and idle).
#[tokio::test]
async fn server_stops_on_sigterm_with_a_client_connected() {
    let dir = TestDir::new("sigterm-connected");
    let mut server = Server::spawn(dir.path());
    let projects = Projects::connect(&server.url()).await;
    assert!(projects.hosts().await.is_empty());

    let exit = server.terminate().await;
    assert!(exit.success(), "quorum-server exits 0 on SIGTERM, got {exit}\n{}", server.log());
    drop(projects);
}

/// One coordinator per database: a second `quorum-server` on a database
/// another one serves exits non-zero at once, saying why, and the first one
/// goes on serving. The database and its WAL files are the owner's only.
#[tokio::test]
async fn a_second_coordinator_on_the_same_database_is_refused_and_the_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = TestDir::new("db-lock");
    let db = dir.join("quorum.db");
    let mut server = Server::spawn_with_db(dir.path(), &db);
    let projects = Projects::connect(&server.url()).await;

    let second = tokio::process::Command::new(quorum_tests::binaries::path(quorum_tests::binaries::SERVER))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run a second quorum-server");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second coordinator exits non-zero: {stderr}");
    assert!(
        stderr.contains("another quorum-server is serving") && stderr.contains("quorum.db.lock"),
        "the second coordinator says who holds the database: {stderr}"
    );
    assert!(second.stdout.is_empty(), "the second coordinator never announced an address: {:?}", second.stdout);
    assert!(projects.hosts().await.is_empty(), "the first coordinator still serves");

    for name in ["quorum.db", "quorum.db-wal", "quorum.db-shm", "quorum.db.lock", "quorum.db.admin-token"] {
        let mode =
            std::fs::metadata(dir.join(name)).unwrap_or_else(|error| panic!("{name}: {error}")).permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name} has mode {:o}", mode & 0o777);
    }

    drop(projects);
    let exit = server.terminate().await;
    assert!(exit.success(), "quorum-server exits 0 on SIGTERM, got {exit}\n{}", server.log());
    // The lock went with the process: the database can be served again.
    let mut again = Server::spawn_with_db(dir.path(), &db);
    assert!(again.terminate().await.success(), "{}", again.log());
}

/// A database created open to others (by an older version, or by hand) is
/// narrowed to its owner when the coordinator opens it, with a warning.
#[tokio::test]
async fn a_database_open_to_others_is_narrowed_with_a_warning() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = TestDir::new("db-mode");
    let db = dir.join("quorum.db");
    let mut first = Server::spawn_with_db(dir.path(), &db);
    assert!(first.terminate().await.success(), "{}", first.log());
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod 644");

    let mut server = Server::spawn_with_db(dir.path(), &db);
    let mode = std::fs::metadata(&db).expect("the database").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the database was narrowed to {mode:o}");
    assert!(server.terminate().await.success(), "{}", server.log());
    let log = server.log();
    assert!(log.contains("WARN") && log.contains("narrowed to owner only"), "the narrowing is logged: {log}");
}

/// `--log-format json`: every line of the coordinator's log is one JSON
/// object with a timestamp, a level and the message, for log collectors.
#[tokio::test]
async fn the_coordinator_logs_json_lines_when_asked() {
    let dir = TestDir::new("log-json");
    let args = [std::ffi::OsStr::new("--log-format"), std::ffi::OsStr::new("json")];
    let mut server = Server::spawn_with_args(dir.path(), &dir.join("quorum.db"), "127.0.0.1:0", &args);
    let projects = Projects::connect(&server.url()).await;
    assert!(projects.hosts().await.is_empty());
    drop(projects);
    // Refused calls are logged (once a second per peer at most; never the token).
    let refused = quorum_tests::cli_with_token(&server.url(), Some("quorum_not-a-token"), ["status"]).await;
    assert_eq!(refused.code(), Some(2), "{}", refused.stderr());
    assert!(server.terminate().await.success(), "{}", server.log());

    let log = server.log();
    let refusal = log.lines().find(|line| line.contains("refused an API call")).unwrap_or_else(|| panic!("{log}"));
    assert!(refusal.contains("\"level\":\"WARN\"") && refusal.contains("\"peer\":\"127.0.0.1\""), "{refusal}");
    assert!(refusal.contains("not recognised") && !refusal.contains("not-a-token"), "{refusal}");
    let lines: Vec<&str> = log.lines().filter(|line| !line.is_empty()).collect();
    assert!(!lines.is_empty(), "the coordinator logged something");
    let mut messages = Vec::new();
    for line in lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not a JSON line ({error}): {line:?}"));
        assert!(event["timestamp"].is_string(), "{line}");
        assert!(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&event["level"].as_str().unwrap_or("")), "{line}");
        messages.push(event["fields"]["message"].as_str().unwrap_or_default().to_owned());
    }
    assert!(
        messages.iter().any(|message| message == "coordinator started")
            && messages.iter().any(|message| message == "coordinator stopped"),
        "{messages:?}"
    );
}

/// `quorum wait` outlives a coordinator restart, and does not hold up the
/// coordinator's shutdown: its open `WaitProject` ends with UNAVAILABLE when
/// SIGTERM comes (no call is left for the grace to close), and the CLI calls
/// again, with backoff, until the coordinator is back and the project ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_wait_outlives_a_coordinator_restart_and_does_not_hold_up_its_shutdown() {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};

    let dir = TestDir::new("wait-restart");
    let db = dir.join("quorum.db");
    let mut server = Server::spawn_with_db(dir.path(), &db);
    let url = server.url();
    let addr = server.addr().to_owned();
    let manifest = dir.write("waited.toml", quorum_tests::primes::manifest("waited", 0, 200, 100, "min_quorum = 1"));
    quorum_tests::cli(&url, ["submit", &manifest.display().to_string()]).await.success();

    let mut wait = tokio::process::Command::new(quorum_tests::binaries::path(quorum_tests::binaries::CLI))
        .args(["--server", &url, "wait", "waited", "--timeout", "5m"])
        .env("QUORUM_TOKEN", server.admin_token())
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn quorum wait");
    let mut stdout = wait.stdout.take().expect("piped stdout");
    let mut stderr = tokio::io::BufReader::new(wait.stderr.take().expect("piped stderr")).lines();
    let mut log = String::new();
    while !log.contains("waiting for the project") {
        let line = stderr.next_line().await.expect("read quorum wait's log");
        let line = line.unwrap_or_else(|| panic!("quorum wait ended before waiting:\n{log}"));
        log += &line;
        log.push('\n');
    }
    let rest = tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            log += &line;
            log.push('\n');
        }
        log
    });

    let exit = server.terminate().await;
    assert!(exit.success(), "quorum-server exits 0 on SIGTERM, got {exit}\n{}", server.log());
    let stopped = server.log();
    assert!(stopped.contains("coordinator stopped"), "{stopped}");
    assert!(!stopped.contains("closing them"), "no call was left open for the grace to close:\n{stopped}");

    // Back on the same address; a host computes both work units.
    let mut server = Server::spawn_at(dir.path(), &db, &addr);
    let mut host = quorum_tests::grpc::Host::register(&url, "volunteer").await;
    let work = host.request_work(2).await.expect("RequestWork");
    assert_eq!(work.assignments.len(), 2, "{work:?}");
    let reports = work
        .assignments
        .iter()
        .map(|assignment| {
            quorum_tests::grpc::success_report(
                assignment.result_id,
                quorum_tests::primes::expected_output(&assignment.work_unit_name).as_bytes(),
            )
        })
        .collect();
    host.report(reports).await.expect("ReportResults");

    let status = tokio::time::timeout(quorum_tests::STEP_TIMEOUT, wait.wait())
        .await
        .expect("quorum wait ends once the project has")
        .expect("wait for quorum wait");
    let mut printed = String::new();
    stdout.read_to_string(&mut printed).await.expect("read quorum wait's stdout");
    let log = rest.await.expect("quorum wait's log");
    assert!(status.success(), "quorum wait succeeded across the restart: {status}\n{printed}\n{log}");
    assert!(printed.contains("waited") && printed.lines().count() >= 2, "the final status: {printed}");
    drop(host);
    assert!(server.terminate().await.success(), "{}", server.log());
}

/// The first-start admin token is written to its file before it is stored,
/// so a kill in between leaves a file and no admin token in the database:
/// that state (made here by revoking the token) is recovered at the next
/// start with a new token and a new file, never a CLI locked out.
#[tokio::test]
async fn a_start_without_an_admin_token_writes_a_new_token_file() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = TestDir::new("admin-token-recovery");
    let db = dir.join("quorum.db");
    let file = quorum_tests::server::admin_token_file(&db);
    let mut server = Server::spawn_with_db(dir.path(), &db);
    let first = server.admin_token().to_owned();
    assert_eq!(std::fs::read_to_string(&file).expect("token file").trim(), first);
    assert!(server.terminate().await.success(), "{}", server.log());

    // A file whose token the database does not hold.
    quorum_tests::server::token_command(&db, &["revoke", "1"]).await;
    let mut server = Server::spawn_with_db(dir.path(), &db);
    let second = server.admin_token().to_owned();
    assert_ne!(second, first);
    assert_eq!(std::fs::read_to_string(&file).expect("token file").trim(), second, "the file holds the new token");
    assert_eq!(std::fs::metadata(&file).expect("token file").permissions().mode() & 0o777, 0o600);
    assert!(!dir.join("quorum.db.admin-token.new").exists(), "no temporary file is left");
    let url = server.url();
    quorum_tests::cli::cli_with_token(&url, Some(&second), ["status"]).await.success();
    let refused = quorum_tests::cli::cli_with_token(&url, Some(&first), ["status"]).await;
    assert_eq!(refused.code(), Some(2), "the revoked token is refused: {}", refused.stderr());

    // With an admin token in the database, a restart writes nothing new.
    assert!(server.terminate().await.success(), "{}", server.log());
    let mut server = Server::spawn_with_db(dir.path(), &db);
    assert_eq!(std::fs::read_to_string(&file).expect("token file").trim(), second);
    assert!(server.terminate().await.success(), "{}", server.log());
}

/// A database the coordinator cannot write (a read-only file, or a folder
/// where it cannot create the -wal and -shm files) is refused at start with
/// a message naming the file, before anything is served. As root, file
/// modes bind nobody, so the coordinator then runs as `nobody` (uid 65534).
#[tokio::test]
async fn a_database_it_cannot_write_is_refused_at_start() {
    use std::os::unix::fs::{PermissionsExt as _, chown};

    let dir = TestDir::new("read-only-db");
    let db = dir.join("quorum.db");
    let mut server = Server::spawn_with_db(dir.path(), &db);
    assert!(server.terminate().await.success(), "{}", server.log());
    for leftover in ["quorum.db-wal", "quorum.db-shm"] {
        let _ = std::fs::remove_file(dir.join(leftover));
    }
    let root = unsafe { libc::geteuid() } == 0;
    const NOBODY: u32 = 65534;
    // The binary where `nobody` may run it: a link (or copy) in the test's folder.
    let binary = dir.join("quorum-server");
    let built = quorum_tests::binaries::path(quorum_tests::binaries::SERVER);
    if std::fs::hard_link(&built, &binary).is_err() {
        std::fs::copy(&built, &binary).expect("copy quorum-server");
    }
    let set_mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    set_mode(dir.path(), 0o755);
    if root {
        for name in ["quorum.db", "quorum.db.lock", "quorum.db.admin-token"] {
            chown(dir.join(name), Some(NOBODY), Some(NOBODY)).expect("chown to nobody");
        }
    }
    let start = || {
        let mut command = tokio::process::Command::new(&binary);
        command.args(["--listen", "127.0.0.1:0", "--db"]).arg(&db).stdin(std::process::Stdio::null());
        if root {
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(NOBODY) != 0
                        || libc::setuid(NOBODY) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        command.output()
    };

    // A read-only file.
    set_mode(&db, 0o400);
    let refused = start().await.expect("run quorum-server");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("the database {} cannot be written", db.display())) && stderr.contains("readonly"),
        "{stderr}"
    );
    assert!(refused.stdout.is_empty(), "nothing was announced: {:?}", refused.stdout);

    // A writable file in a folder where its -wal file cannot be created.
    set_mode(&db, 0o600);
    if !root {
        set_mode(dir.path(), 0o555);
    }
    let refused = start().await.expect("run quorum-server");
    set_mode(dir.path(), 0o755);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot be written"), "{stderr}");
    if root {
        for name in ["quorum.db", "quorum.db.lock", "quorum.db.admin-token"] {
            chown(dir.join(name), Some(0), Some(0)).expect("chown back");
        }
    }
}
