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

    let mut reflection = ServerReflectionClient::new(channel);
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
