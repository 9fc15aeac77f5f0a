//! The worker loop failing over between two addresses of one coordinator
//! group, in process: two fake schedulers over one shared "database". The
//! first address records a work request's reports, then dies before its
//! answer leaves (as a coordinator SIGKILLed after its commit); from then on
//! it is unreachable. The worker calls the second address at once, sends the
//! unacknowledged reports again (acknowledged once: the database already has
//! them), keeps the second address, and never registers again.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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

const N_TASKS: i64 = 6;
const TOKEN: &str = "Bearer token-1";

/// What the group's addresses share: the coordinator's database.
#[derive(Default)]
struct Database {
    n_registrations: i64,
    /// Handed out by the first work requests, then nothing.
    unsent: Vec<Assignment>,
    /// Reports stored, by result id (once each).
    accepted: HashMap<i64, ResultReport>,
    /// How many times each result's report arrived, over both addresses.
    receipts: HashMap<i64, u32>,
    /// The reports the first address stored before it died.
    stored_then_lost: Vec<i64>,
}

/// One address of the group.
struct Address {
    database: Arc<Mutex<Database>>,
    /// Dies at its first call that carries reports, after storing them.
    dies_after_storing_reports: bool,
    dead: AtomicBool,
    /// Calls it received while dead.
    calls_while_dead: AtomicU32,
    /// Pinged after every call that stored reports.
    reported: mpsc::UnboundedSender<()>,
}

impl Address {
    fn database(&self) -> std::sync::MutexGuard<'_, Database> {
        self.database.lock().expect("database lock")
    }

    /// Unreachable once dead; else the token must be the one registration's.
    fn check<T>(&self, request: &Request<T>, needs_token: bool) -> Result<(), Status> {
        if self.dead.load(Ordering::SeqCst) {
            self.calls_while_dead.fetch_add(1, Ordering::SeqCst);
            return Err(Status::unavailable("this coordinator is gone"));
        }
        let token = request.metadata().get("authorization").and_then(|value| value.to_str().ok());
        if needs_token && token != Some(TOKEN) {
            return Err(Status::unauthenticated("unknown token"));
        }
        Ok(())
    }

    /// Stores `reports` (a repeated one is acknowledged, stored once, as the
    /// real coordinator does); the dying address then loses its answer.
    fn store(&self, reports: Vec<ResultReport>) -> Result<Vec<i64>, Status> {
        let ids: Vec<i64> = reports.iter().map(|report| report.result_id).collect();
        {
            let mut database = self.database();
            for report in reports {
                *database.receipts.entry(report.result_id).or_default() += 1;
                database.accepted.entry(report.result_id).or_insert(report);
            }
            if self.dies_after_storing_reports && !ids.is_empty() {
                self.dead.store(true, Ordering::SeqCst);
                database.stored_then_lost.extend(&ids);
            }
        }
        let _ = self.reported.send(());
        if self.dead.load(Ordering::SeqCst) {
            return Err(Status::unavailable("connection reset: the coordinator died before answering"));
        }
        Ok(ids)
    }
}

#[tonic::async_trait]
impl Scheduler for Address {
    async fn register_host(
        &self,
        request: Request<RegisterHostRequest>,
    ) -> Result<Response<RegisterHostResponse>, Status> {
        self.check(&request, false)?;
        let mut database = self.database();
        database.n_registrations += 1;
        let n = database.n_registrations;
        Ok(Response::new(RegisterHostResponse { host_id: n, token: format!("token-{n}") }))
    }

    async fn request_work(
        &self,
        request: Request<RequestWorkRequest>,
    ) -> Result<Response<RequestWorkResponse>, Status> {
        self.check(&request, true)?;
        let request = request.into_inner();
        let accepted = self.store(request.reports)?;
        let mut database = self.database();
        let n = (request.slots as usize).min(database.unsent.len());
        let assignments: Vec<Assignment> = database.unsent.drain(..n).collect();
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
        Err(Status::unimplemented("no input files here"))
    }

    async fn find_peers(
        &self,
        _request: Request<quorum_proto::v1::FindPeersRequest>,
    ) -> Result<Response<quorum_proto::v1::FindPeersResponse>, Status> {
        Err(Status::unimplemented("no peers here"))
    }

    async fn download_app(
        &self,
        request: Request<DownloadAppRequest>,
    ) -> Result<Response<Self::DownloadAppStream>, Status> {
        self.check(&request, true)?;
        assert_eq!(request.into_inner().digest, digest(ECHO.as_bytes()));
        let chunk = AppChunk { data: ECHO.as_bytes().to_vec(), total_size: ECHO.len() as u64 };
        Ok(Response::new(tokio_stream::iter(vec![Ok(chunk)])))
    }

    async fn report_results(
        &self,
        request: Request<ReportResultsRequest>,
    ) -> Result<Response<ReportResultsResponse>, Status> {
        self.check(&request, true)?;
        let accepted = self.store(request.into_inner().reports)?;
        Ok(Response::new(ReportResultsResponse { accepted, abort: Vec::new() }))
    }

    async fn get_host(&self, request: Request<GetHostRequest>) -> Result<Response<HostInfo>, Status> {
        self.check(&request, true)?;
        Ok(Response::new(HostInfo { id: 1, ..HostInfo::default() }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_an_address_lost_go_to_the_next_which_is_kept_without_registering_again() {
    let database = Arc::new(Mutex::new(Database {
        unsent: (1..=N_TASKS).map(|id| assignment(id, ECHO, format!("{id}\n").as_bytes())).collect(),
        ..Database::default()
    }));
    let (reported_tx, mut reported) = mpsc::unbounded_channel();
    let address = |dies_after_storing_reports| {
        Arc::new(Address {
            database: database.clone(),
            dies_after_storing_reports,
            dead: AtomicBool::new(false),
            calls_while_dead: AtomicU32::new(0),
            reported: reported_tx.clone(),
        })
    };
    let (a, b) = (address(true), address(false));
    let (server_a, server_b) = (FakeServer::start(a.clone()).await, FakeServer::start(b.clone()).await);
    let (url_a, url_b) = (server_a.url(), server_b.url());

    let state_dir = tempfile::tempdir().expect("temp dir");
    let attachments = vec![quorum_worker::Attach { addresses: vec![url_a.clone(), url_b.clone()], share: 100.0 }];
    let mut config = config(attachments, state_dir.path(), 1);
    config.buffer_high = 3;
    let mut worker = RunningWorker::start(config);
    worker
        .wait_until(&mut reported, || database.lock().expect("database lock").accepted.len() == N_TASKS as usize)
        .await;
    worker.stop().await;
    server_a.stop().await;
    server_b.stop().await;

    {
        let database = database.lock().expect("database lock");
        assert_eq!(database.n_registrations, 1, "failover registers no second host");
        for result_id in 1..=N_TASKS {
            let report = &database.accepted[&result_id];
            assert_eq!(report.outcome(), ReportedOutcome::Success);
            assert_eq!(report.output, format!("{result_id}\n").into_bytes());
        }
        assert!(!database.stored_then_lost.is_empty(), "the first address stored reports before dying");
        for result_id in 1..=N_TASKS {
            let expected = if database.stored_then_lost.contains(&result_id) { 2 } else { 1 };
            assert_eq!(
                database.receipts[&result_id], expected,
                "result {result_id}: the reports whose answer was lost sent again to the second address, \
                 the others once"
            );
        }
        assert_eq!(a.calls_while_dead.load(Ordering::SeqCst), 0, "the second address, once it answered, is kept");
    }

    // One identity, filed under the first address; the second in use.
    let journal = quorum_worker::journal::Journal::open_existing(&state_dir.path().join("journal.db"))
        .await
        .expect("the journal exists");
    let lines = journal.attachments().await.expect("attachments");
    assert_eq!(lines.len(), 1, "one attachment");
    assert_eq!((lines[0].server.as_str(), lines[0].address.as_str()), (url_a.as_str(), url_b.as_str()));
    assert_eq!(lines[0].addresses, [url_a.clone(), url_b.clone()]);
    assert_eq!(journal.identity(&url_a).await.expect("read").expect("identity kept").host_id, 1);
    assert!(
        journal
            .tasks()
            .await
            .expect("tasks")
            .iter()
            .all(|task| task.state == quorum_worker::journal::TaskState::Reported)
    );
}
