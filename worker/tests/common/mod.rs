//! What the worker's in-process tests share: an echo app, a fake
//! coordinator served on loopback, the worker's configuration for it, and a
//! worker running in the test's process.

#![allow(dead_code, reason = "each test binary uses its own part")]

use std::sync::Arc;
use std::time::Duration;

use quorum_proto::v1::scheduler_server::{Scheduler, SchedulerServer};
use quorum_proto::v1::{Assignment, Limits};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::TcpListenerStream;

/// Copies stdin to stdout (WAT text: wasmtime accepts it as a module).
pub const ECHO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $n i32)
    (block $done
      (loop $next
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 4096))
        (i32.store (i32.const 8) (i32.const 0))
        (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store (i32.const 4) (local.get $n))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (br $next)))))"#;

/// The hex SHA-256 of `bytes`: an app's digest.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A copy of `app` on `input`, of work unit `result_id` × 10.
pub fn assignment(result_id: i64, app: &str, input: &[u8]) -> Assignment {
    Assignment {
        result_id,
        work_unit_id: result_id * 10,
        project: "test".into(),
        app_digest: digest(app.as_bytes()),
        input: input.to_vec(),
        random_seed: 1,
        limits: Some(Limits::default()),
        deadline_unix_ms: 0,
        nan_canonicalization: false,
        work_unit_name: format!("wu-{result_id}"),
        // Unsigned apps run (the worker is not started with --require-signed).
        ..Default::default()
    }
}

/// The fake, served on loopback until `stop` is sent.
pub struct FakeServer {
    address: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl FakeServer {
    pub async fn start<S: Scheduler>(fake: Arc<S>) -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(SchedulerServer::from_arc(fake))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        FakeServer { address, stop, handle }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub async fn stop(self) {
        self.stop.send(()).expect("server still running");
        self.handle.await.expect("server task").expect("server");
    }
}

/// A worker attached as "test-host" (`attachments`), with a buffer of 2 to 4 tasks.
pub fn config(
    attachments: Vec<quorum_worker::Attach>,
    state_dir: &std::path::Path,
    cpus: usize,
) -> quorum_worker::Config {
    quorum_worker::Config {
        attachments,
        state_dir: state_dir.to_path_buf(),
        app_cache_bytes: quorum_worker::DEFAULT_APP_CACHE_BYTES,
        file_cache_bytes: quorum_worker::DEFAULT_FILE_CACHE_BYTES,
        locality: true,
        share_files: false,
        share_listen: "127.0.0.1:0".parse().unwrap(),
        share_upload_bytes_per_sec: None,
        cpus,
        cpu_limit: 100,
        task_priority: quorum_worker::priority::TaskPriority::Idle,
        buffer_low: 2,
        buffer_high: 4,
        name: "test-host".into(),
        account: String::new(),
        max_backoff: Duration::from_millis(200),
        ca_cert: None,
        trust: quorum_worker::signing::Trust::default(),
        preference_overrides: Vec::new(),
        // No batteries to read: the machine running the tests does not suspend them.
        power_supply_dir: state_dir.join("no-power-supply"),
    }
}

/// A worker running in this process, stopped by sending on `stop`.
pub struct RunningWorker {
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningWorker {
    pub fn start(config: quorum_worker::Config) -> RunningWorker {
        let (stop, stopped) = oneshot::channel::<()>();
        let (_commands, commands) = mpsc::unbounded_channel();
        let handle = tokio::spawn(quorum_worker::run(
            config,
            async {
                let _ = stopped.await;
            },
            commands,
        ));
        RunningWorker { stop, handle }
    }

    /// Waits (bounded) until `settled` holds, checked after each call the
    /// fake signals on `calls`; panics if the worker stops first.
    pub async fn wait_until(&mut self, calls: &mut mpsc::UnboundedReceiver<()>, settled: impl Fn() -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                tokio::select! {
                    call = calls.recv() => call.expect("fake scheduler alive"),
                    stopped = &mut self.handle => panic!("the worker stopped: {stopped:?}"),
                }
                if settled() {
                    break;
                }
            }
        })
        .await;
        assert!(waited.is_ok(), "worker did not report in time");
    }

    /// Stops the worker; it must exit cleanly.
    pub async fn stop(self) {
        self.stop.send(()).expect("worker still running");
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("worker stops promptly")
            .expect("worker task")
            .expect("worker exits cleanly");
    }
}
