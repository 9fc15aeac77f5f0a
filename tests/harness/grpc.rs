//! Speaking the quorum.v1 protocol directly, for tests that play a host the
//! real worker never would (a malicious or confused one) and for reading the
//! coordinator's state in detail (`ListResults`, `GetCanonicalResults`).

use std::time::{Duration, Instant};

use quorum_proto::v1;
use quorum_proto::v1::projects_client::ProjectsClient;
use quorum_proto::v1::scheduler_client::SchedulerClient;
use sha2::{Digest as _, Sha256};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::STEP_TIMEOUT;

/// Engine a hand-made host claims to run.
pub const ENGINE: &str = "wasmtime 48.0.8";

/// The smallest WASI command: one function exported as `_start`.
pub const TINY_APP: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x07, 0x0a, 0x01, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, // export "_start"
    0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code: an empty body
];

/// A small coherent policy: one copy per work unit, one error allowed.
pub fn tiny_policy() -> v1::ReplicationPolicy {
    v1::ReplicationPolicy {
        min_quorum: 1,
        target_results: 1,
        max_error_results: 1,
        max_total_results: 2,
        deadline_secs: 60,
        ..Default::default()
    }
}

/// Page size of the listing helpers.
const PAGE: u32 = 500;

/// Opens a channel to `url` (`http://127.0.0.1:PORT`).
pub async fn channel(url: &str) -> Channel {
    let endpoint = Channel::from_shared(url.to_owned()).expect("a valid server URL");
    tokio::time::timeout(STEP_TIMEOUT, endpoint.connect())
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
        .unwrap_or_else(|error| panic!("connect to {url}: {error}"))
}

/// A scheduler client with no token.
pub async fn scheduler_client(url: &str) -> SchedulerClient<Channel> {
    SchedulerClient::new(channel(url).await)
}

/// Wraps `message` in a request carrying `authorization: Bearer TOKEN`.
pub fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(quorum_proto::AUTHORIZATION, format!("Bearer {token}").parse().expect("a hex token is valid metadata"));
    request
}

/// Lowercase hex SHA-256, as the protocol writes digests.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A successful report of `output` for `result_id`.
pub fn success_report(result_id: i64, output: &[u8]) -> v1::ResultReport {
    v1::ResultReport {
        result_id,
        outcome: v1::ReportedOutcome::Success.into(),
        output: output.to_vec(),
        stderr_tail: String::new(),
        fuel_used: 1_000,
        run_time_ms: 1,
        error_message: String::new(),
        engine: ENGINE.to_owned(),
        resumed: false,
        given_back: false,
        output_files: Vec::new(),
    }
}

/// A host registered by the test itself, speaking the scheduler protocol.
#[derive(Debug, Clone)]
pub struct Host {
    pub id: i64,
    /// The secret from `RegisterHost`, sent as `Bearer` on every call.
    token: String,
    client: SchedulerClient<Channel>,
}

impl Host {
    /// Registers a host named `name` with one CPU.
    pub async fn register(url: &str, name: &str) -> Host {
        let mut client = scheduler_client(url).await;
        let registered = client
            .register_host(v1::RegisterHostRequest {
                name: name.to_owned(),
                n_cpus: 1,
                memory_bytes: 1 << 30,
                engine: ENGINE.to_owned(),
                os: "linux x86_64".to_owned(),
                // Fields added later (e.g. a volunteer account) keep their
                // defaults: the host stands alone.
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("RegisterHost {name}: {status:?}"))
            .into_inner();
        assert!(!registered.token.is_empty(), "RegisterHost returned an empty token");
        Host { id: registered.host_id, token: registered.token, client }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// `RequestWork(slots)` with this host's token.
    pub async fn request_work(&mut self, slots: u32) -> Result<v1::RequestWorkResponse, Status> {
        let request = with_token(v1::RequestWorkRequest { slots, ..Default::default() }, &self.token);
        self.client.request_work(request).await.map(tonic::Response::into_inner)
    }

    /// `RequestWork` for one copy, saying the host shares files at
    /// `peer_address` and holds `cached_files` (the tracker then names it).
    pub async fn announce(
        &mut self,
        peer_address: Vec<u8>,
        cached_files: Vec<String>,
    ) -> Result<v1::RequestWorkResponse, Status> {
        let request = v1::RequestWorkRequest { slots: 1, peer_address, cached_files, ..Default::default() };
        self.client.request_work(with_token(request, &self.token)).await.map(tonic::Response::into_inner)
    }

    /// `ReportResults(reports)` with this host's token.
    pub async fn report(&mut self, reports: Vec<v1::ResultReport>) -> Result<v1::ReportResultsResponse, Status> {
        let request = with_token(v1::ReportResultsRequest { reports }, &self.token);
        self.client.report_results(request).await.map(tonic::Response::into_inner)
    }
}

/// Adds `authorization: Bearer TOKEN` to every call (nothing without a token).
#[derive(Debug, Clone)]
pub struct Bearer(Option<String>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            let value =
                format!("Bearer {token}").parse().map_err(|_| Status::internal("token is not valid metadata"))?;
            request.metadata_mut().insert(quorum_proto::AUTHORIZATION, value);
        }
        Ok(request)
    }
}

/// A `Projects` client sending a fixed token (or none).
pub type ProjectsApi = ProjectsClient<InterceptedService<Channel, Bearer>>;

/// The `Projects` service, with helpers that page through listings and panic
/// on errors (the tests that expect errors call `client()` directly).
#[derive(Debug, Clone)]
pub struct Projects {
    client: ProjectsApi,
}

impl Projects {
    /// Connects with the admin token of the server at `url` (see
    /// [`crate::server::admin_token_for`]).
    pub async fn connect(url: &str) -> Projects {
        let token = crate::server::admin_token_for(url);
        Projects::connect_with_token(url, token.as_deref()).await
    }

    /// Connects calling with `token` (none when `None`).
    pub async fn connect_with_token(url: &str, token: Option<&str>) -> Projects {
        let client = ProjectsClient::with_interceptor(channel(url).await, Bearer(token.map(str::to_owned)));
        Projects { client }
    }

    /// A raw client, for calls without a helper.
    pub fn client(&self) -> ProjectsApi {
        self.client.clone()
    }

    /// The status of one project.
    pub async fn status(&self, project: &str) -> v1::ProjectStatus {
        let response = self
            .client()
            .get_status(v1::GetStatusRequest { project: project.to_owned() })
            .await
            .unwrap_or_else(|status| panic!("GetStatus {project}: {status:?}"))
            .into_inner();
        one_status(response, project)
    }

    /// Every result (copy) of a project, by id.
    pub async fn results(&self, project: &str) -> Vec<v1::ResultInfo> {
        let mut all = Vec::new();
        loop {
            let page = self
                .client()
                .list_results(v1::ListResultsRequest {
                    project: project.to_owned(),
                    work_unit_id: 0,
                    after_id: all.last().map_or(0, |result: &v1::ResultInfo| result.id),
                    limit: PAGE,
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|status| panic!("ListResults {project}: {status:?}"))
                .into_inner()
                .results;
            if page.is_empty() {
                return all;
            }
            all.extend(page);
        }
    }

    /// Every work unit of a project, by id.
    pub async fn work_units(&self, project: &str) -> Vec<v1::WorkUnitInfo> {
        let mut all = Vec::new();
        loop {
            let page = self
                .client()
                .list_work_units(v1::ListWorkUnitsRequest {
                    project: project.to_owned(),
                    after_id: all.last().map_or(0, |work_unit: &v1::WorkUnitInfo| work_unit.id),
                    limit: PAGE,
                })
                .await
                .unwrap_or_else(|status| panic!("ListWorkUnits {project}: {status:?}"))
                .into_inner()
                .work_units;
            if page.is_empty() {
                return all;
            }
            all.extend(page);
        }
    }

    /// Every canonical result of a project, by work unit id.
    pub async fn canonical_results(&self, project: &str) -> Vec<v1::CanonicalResult> {
        let mut all = Vec::new();
        loop {
            let page = self
                .client()
                .get_canonical_results(v1::GetCanonicalResultsRequest {
                    project: project.to_owned(),
                    after_work_unit_id: all.last().map_or(0, |result: &v1::CanonicalResult| result.work_unit_id),
                    limit: PAGE,
                })
                .await
                .unwrap_or_else(|status| panic!("GetCanonicalResults {project}: {status:?}"))
                .into_inner()
                .results;
            if page.is_empty() {
                return all;
            }
            all.extend(page);
        }
    }

    /// Every host.
    pub async fn hosts(&self) -> Vec<v1::HostInfo> {
        self.client()
            .list_hosts(v1::ListHostsRequest {})
            .await
            .unwrap_or_else(|status| panic!("ListHosts: {status:?}"))
            .into_inner()
            .hosts
    }

    /// One host by id.
    pub async fn host(&self, host_id: i64) -> v1::HostInfo {
        self.hosts()
            .await
            .into_iter()
            .find(|host| host.id == host_id)
            .unwrap_or_else(|| panic!("ListHosts has no host {host_id}"))
    }

    /// Waits (server side, `WaitProject`) until every work unit of the
    /// project has ended; panics after [`STEP_TIMEOUT`].
    pub async fn wait(&self, project: &str) -> v1::ProjectStatus {
        let started = Instant::now();
        loop {
            let remaining = STEP_TIMEOUT.saturating_sub(started.elapsed());
            let mut client = self.client();
            let call = client.wait_project(v1::WaitProjectRequest {
                project: project.to_owned(),
                timeout_ms: u64::try_from(remaining.as_millis()).expect("fits in u64"),
            });
            let response = tokio::time::timeout(remaining + Duration::from_secs(10), call)
                .await
                .unwrap_or_else(|_| panic!("WaitProject {project} did not answer"))
                .unwrap_or_else(|status| panic!("WaitProject {project}: {status:?}"))
                .into_inner();
            let status = one_status(response, project);
            if status.work_units_open == 0 {
                return status;
            }
            assert!(
                started.elapsed() < STEP_TIMEOUT,
                "project {project} did not end within {STEP_TIMEOUT:?}: {status:?}"
            );
        }
    }

    /// Calls `condition` on the project's status until it holds, asking
    /// again every `interval`; panics after [`STEP_TIMEOUT`]. For states no
    /// event reports (e.g. "a worker holds copies in progress").
    pub async fn poll_status_until(
        &self,
        project: &str,
        interval: Duration,
        what: &str,
        condition: impl FnMut(&v1::ProjectStatus) -> bool,
    ) -> v1::ProjectStatus {
        let condition = std::cell::RefCell::new(condition);
        crate::poll::poll_until(what, interval, || async {
            let status = self.status(project).await;
            if (condition.borrow_mut())(&status) { Ok(status) } else { Err(format!("{status:?}")) }
        })
        .await
    }
}

fn one_status(response: v1::GetStatusResponse, project: &str) -> v1::ProjectStatus {
    let mut projects = response.projects;
    assert_eq!(projects.len(), 1, "expected the status of {project} only, got {projects:?}");
    let status = projects.remove(0);
    assert_eq!(status.name, project);
    status
}
