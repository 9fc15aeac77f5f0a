//! The worker loop against an in-process fake coordinator: registration,
//! re-registration after `Unauthenticated`, app download, parallel runs,
//! reports carried by work requests, the fallback to ReportResults and then
//! to one report per call when one is refused, and a clean shutdown; and the
//! order of journalling: a finished result is in the journal before its core
//! takes the next task.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::{ECHO, FakeServer, RunningWorker, assignment, config, digest};
use quorum_proto::v1::scheduler_server::Scheduler;
use quorum_proto::v1::{
    AppChunk, Assignment, DownloadAppRequest, GetHostRequest, HostInfo, RegisterHostRequest, RegisterHostResponse,
    ReportResultsRequest, ReportResultsResponse, ReportedOutcome, RequestWorkRequest, RequestWorkResponse,
    ResultReport,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

const EXIT_3: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $proc_exit (i32.const 3))))"#;

/// The result id the fake rejects as a bad report.
const BAD_RESULT: i64 = 2;

#[derive(Default)]
struct FakeState {
    n_registrations: i64,
    /// Given out on the first authorized RequestWork, then nothing.
    assignments: Vec<Assignment>,
    /// The first RequestWork is refused as if the server had forgotten the host.
    refused_once: bool,
    /// Accepted reports, by result id.
    accepted: HashMap<i64, ResultReport>,
    /// Times BAD_RESULT was rejected on its own.
    n_bad_rejections: u32,
}

struct Fake {
    /// The cores the worker under test runs with (it says so at registration).
    n_cpus: u32,
    apps: HashMap<String, Vec<u8>>,
    state: Mutex<FakeState>,
    /// Pinged after every ReportResults and RequestWork call.
    reported: mpsc::UnboundedSender<()>,
}

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake state lock")
    }

    fn check_token<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let expected = format!("Bearer token-{}", self.state().n_registrations);
        match request.metadata().get("authorization").map(|value| value.to_str()) {
            Some(Ok(value)) if value == expected => Ok(()),
            _ => Err(Status::unauthenticated("unknown token")),
        }
    }
}

#[tonic::async_trait]
impl Scheduler for Fake {
    async fn register_host(
        &self,
        request: Request<RegisterHostRequest>,
    ) -> Result<Response<RegisterHostResponse>, Status> {
        let request = request.into_inner();
        assert_eq!(request.name, "test-host");
        assert_eq!(request.n_cpus, self.n_cpus);
        assert!(request.engine.starts_with("wasmtime "));
        let mut state = self.state();
        state.n_registrations += 1;
        Ok(Response::new(RegisterHostResponse {
            host_id: state.n_registrations,
            token: format!("token-{}", state.n_registrations),
        }))
    }

    async fn request_work(
        &self,
        request: Request<RequestWorkRequest>,
    ) -> Result<Response<RequestWorkResponse>, Status> {
        self.check_token(&request)?;
        let mut state = self.state();
        if !state.refused_once {
            state.refused_once = true;
            return Err(Status::unauthenticated("host forgotten"));
        }
        let request = request.into_inner();
        let slots = request.slots as usize;
        assert!(slots <= 4, "a buffer of 4 asks for at most 4 slots, asked {slots}");
        // As the real coordinator: one refused report fails the whole call.
        if request.reports.iter().any(|report| report.result_id == BAD_RESULT) {
            return Err(Status::invalid_argument("bad report"));
        }
        let accepted = request.reports.iter().map(|report| report.result_id).collect();
        for report in request.reports {
            state.accepted.insert(report.result_id, report);
        }
        let n = slots.min(state.assignments.len());
        let assignments: Vec<Assignment> = state.assignments.drain(..n).collect();
        drop(state);
        // The test may have stopped listening already.
        let _ = self.reported.send(());
        Ok(Response::new(RequestWorkResponse {
            retry_after_ms: if assignments.is_empty() { 50 } else { 0 },
            assignments,
            abort: Vec::new(),
            accepted,
        }))
    }

    type DownloadAppStream = tokio_stream::Iter<std::vec::IntoIter<Result<AppChunk, Status>>>;
    type DownloadFileStream = tokio_stream::Iter<std::vec::IntoIter<Result<quorum_proto::v1::FileChunk, Status>>>;

    async fn download_file(
        &self,
        _request: Request<quorum_proto::v1::DownloadFileRequest>,
    ) -> Result<Response<Self::DownloadFileStream>, Status> {
        // Input files are tested against the real coordinator (tests/e2e/files.rs).
        Err(Status::unimplemented("the fake scheduler serves no input files"))
    }

    async fn find_peers(
        &self,
        _request: Request<quorum_proto::v1::FindPeersRequest>,
    ) -> Result<Response<quorum_proto::v1::FindPeersResponse>, Status> {
        Err(Status::unimplemented("the fake scheduler knows no peers"))
    }

    async fn download_app(
        &self,
        request: Request<DownloadAppRequest>,
    ) -> Result<Response<Self::DownloadAppStream>, Status> {
        self.check_token(&request)?;
        let digest = request.into_inner().digest;
        let app = self.apps.get(&digest).ok_or_else(|| Status::not_found("no such app"))?;
        let chunks: Vec<Result<AppChunk, Status>> = app
            .chunks(100)
            .enumerate()
            .map(|(index, data)| {
                Ok(AppChunk { data: data.to_vec(), total_size: if index == 0 { app.len() as u64 } else { 0 } })
            })
            .collect();
        Ok(Response::new(tokio_stream::iter(chunks)))
    }

    async fn report_results(
        &self,
        request: Request<ReportResultsRequest>,
    ) -> Result<Response<ReportResultsResponse>, Status> {
        self.check_token(&request)?;
        let reports = request.into_inner().reports;
        let result = {
            let mut state = self.state();
            if reports.iter().any(|report| report.result_id == BAD_RESULT) {
                if reports.len() == 1 {
                    state.n_bad_rejections += 1;
                }
                Err(Status::invalid_argument("bad report"))
            } else {
                let accepted = reports.iter().map(|report| report.result_id).collect();
                for report in reports {
                    state.accepted.insert(report.result_id, report);
                }
                Ok(Response::new(ReportResultsResponse { accepted, abort: Vec::new() }))
            }
        };
        // The test may have stopped listening already.
        let _ = self.reported.send(());
        result
    }

    async fn get_host(&self, _request: Request<GetHostRequest>) -> Result<Response<HostInfo>, Status> {
        Err(Status::unimplemented("not needed by these tests"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_runs_and_reports_against_a_fake_scheduler() {
    let (reported_tx, mut reported_rx) = mpsc::unbounded_channel();
    let fake = Arc::new(Fake {
        n_cpus: 2,
        apps: [ECHO, EXIT_3].into_iter().map(|app| (digest(app.as_bytes()), app.as_bytes().to_vec())).collect(),
        state: Mutex::new(FakeState {
            assignments: vec![
                assignment(1, ECHO, b"one\n"),
                assignment(BAD_RESULT, ECHO, b"two\n"),
                assignment(3, ECHO, b"three\n"),
                assignment(4, EXIT_3, b""),
            ],
            ..FakeState::default()
        }),
        reported: reported_tx,
    });
    let server = FakeServer::start(fake.clone()).await;
    let state_dir = tempfile::tempdir().expect("temp dir");
    let mut worker =
        RunningWorker::start(config(vec![quorum_worker::Attach::new(server.url(), 100.0)], state_dir.path(), 2));

    // The three good results are accepted and the bad one was rejected on
    // its own at least once.
    worker
        .wait_until(&mut reported_rx, || {
            let state = fake.state();
            state.accepted.len() == 3 && state.n_bad_rejections > 0
        })
        .await;
    worker.stop().await;
    let url = server.url();
    server.stop().await;

    {
        let state = fake.state();
        assert_eq!(state.n_registrations, 2, "registered, then again after Unauthenticated");
        for (result_id, output) in [(1, &b"one\n"[..]), (3, b"three\n")] {
            let report = &state.accepted[&result_id];
            assert_eq!(report.outcome(), ReportedOutcome::Success);
            assert_eq!(report.output, output);
            assert!(report.fuel_used > 0);
            assert!(report.engine.starts_with("wasmtime "));
        }
        let failed = &state.accepted[&4];
        assert_eq!(failed.outcome(), ReportedOutcome::ClientError);
        assert_eq!(failed.error_message, "exit code 3");
        assert!(!state.accepted.contains_key(&BAD_RESULT));
    }

    // The identity (in the journal) and both apps were kept in the state directory.
    let journal = quorum_worker::journal::Journal::open_existing(&state_dir.path().join("journal.db"))
        .await
        .expect("the journal exists");
    let identity = journal.identity(&url).await.expect("read").expect("identity kept");
    assert_eq!(identity.host_id, 2);
    for app in [ECHO, EXIT_3] {
        let cached = state_dir.path().join("apps").join(format!("{}.wasm", digest(app.as_bytes())));
        assert_eq!(std::fs::read(cached).expect("cached app"), app.as_bytes());
    }
}

/// Refuses, in the journal itself, to mark a task running while another one
/// is: with one core, that is a core that took its next task before the
/// result it computed was journalled. The refusal fails the worker's write,
/// which stops the worker with an error.
const ONE_RUNNING_TASK: &str = "CREATE TRIGGER one_running_task BEFORE UPDATE OF state ON tasks \
     WHEN NEW.state = 'running' AND OLD.state != 'running' \
     AND (SELECT COUNT(*) FROM tasks WHERE state = 'running') >= 1 \
     BEGIN SELECT RAISE(ABORT, 'a core took a task before its result was journalled'); END";

/// One core and a queue of tasks: each finished result is in the journal
/// (state `finished`, durable) before the core takes the next task, which a
/// trigger in the journal checks at every start. Every result is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_result_is_journalled_before_its_core_takes_the_next_task() {
    const N_TASKS: i64 = 8;
    let first = BAD_RESULT + 1;
    let (reported_tx, mut reported_rx) = mpsc::unbounded_channel();
    let fake = Arc::new(Fake {
        n_cpus: 1,
        apps: [(digest(ECHO.as_bytes()), ECHO.as_bytes().to_vec())].into(),
        state: Mutex::new(FakeState {
            assignments: (first..first + N_TASKS)
                .map(|result_id| assignment(result_id, ECHO, format!("{result_id}\n").as_bytes()))
                .collect(),
            refused_once: true,
            ..FakeState::default()
        }),
        reported: reported_tx,
    });
    let server = FakeServer::start(fake.clone()).await;
    let state_dir = tempfile::tempdir().expect("temp dir");
    let journal_path = state_dir.path().join("journal.db");
    quorum_worker::journal::Journal::open(&journal_path).await.expect("create the journal").close().await;
    {
        use sqlx::Connection as _;
        let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", journal_path.display()))
            .await
            .expect("open the journal");
        sqlx::query(ONE_RUNNING_TASK).execute(&mut db).await.expect("create the trigger");
        db.close().await.expect("close the journal");
    }

    let mut worker =
        RunningWorker::start(config(vec![quorum_worker::Attach::new(server.url(), 100.0)], state_dir.path(), 1));
    worker.wait_until(&mut reported_rx, || fake.state().accepted.len() == N_TASKS as usize).await;
    worker.stop().await;
    server.stop().await;

    for result_id in first..first + N_TASKS {
        let report = fake.state().accepted[&result_id].clone();
        assert_eq!(report.outcome(), ReportedOutcome::Success, "{report:?}");
        assert_eq!(report.output, format!("{result_id}\n").as_bytes());
    }
    let journal = quorum_worker::journal::Journal::open_existing(&journal_path).await.expect("the journal exists");
    let tasks = journal.tasks().await.expect("read the tasks");
    assert_eq!(tasks.len(), N_TASKS as usize, "{tasks:?}");
    assert!(tasks.iter().all(|task| task.state == quorum_worker::journal::TaskState::Reported), "{tasks:?}");
}
