//! The worker's side of the `Scheduler` gRPC service, and its retry backoff.
//!
//! The channel connects lazily and reconnects by itself, so a coordinator that
//! is down only makes calls fail (`Unavailable`); the caller retries with
//! [`Backoff`]. Every call but `RegisterHost` carries `authorization: Bearer <token>`.

use std::time::Duration;

use quorum_proto::v1::scheduler_client::SchedulerClient;
use quorum_proto::v1::{
    DownloadAppRequest, GetHostRequest, HostInfo, RegisterHostRequest, RegisterHostResponse, ReportResultsRequest,
    RequestWorkRequest, RequestWorkResponse, ResultReport,
};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

use crate::state;

/// Deadline of unary calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of a whole app download.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest app module the worker accepts.
pub const MAX_APP_BYTES: u64 = 256 * 1024 * 1024;
/// Largest message the worker accepts (assignments carry their inputs).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid server URL {url:?}")]
    InvalidUrl {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the server gave a token that is not valid metadata")]
    InvalidToken,
    #[error("TLS configuration for {url:?}")]
    Tls {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Why an app download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The call failed; worth retrying when the code is transient.
    #[error("download failed: {:?}: {}", .0.code(), .0.message())]
    Status(#[from] Status),
    #[error("app announced as {0} bytes, more than the {MAX_APP_BYTES} accepted")]
    TooLarge(u64),
    #[error("app size mismatch: announced {announced} bytes, received {received}")]
    SizeMismatch { announced: u64, received: u64 },
    #[error(transparent)]
    Digest(#[from] state::Error),
}

impl DownloadError {
    /// Whether trying again later may succeed (the server or network is
    /// having trouble), as opposed to the app being unusable.
    pub fn is_transient(&self) -> bool {
        match self {
            DownloadError::Status(status) => !is_bad_request(status.code()),
            DownloadError::TooLarge(_) | DownloadError::SizeMismatch { .. } | DownloadError::Digest(_) => false,
        }
    }
}

/// Codes with which the server rejects a request itself rather than failing
/// to serve it: retrying the same request cannot help.
pub fn is_bad_request(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::NotFound
            | Code::AlreadyExists
    )
}

/// Codes that say the coordinator could not be reached or did not answer
/// in time, rather than answering: the address is down, restarting or cut
/// off (`Unavailable`: connection refused or reset, a coordinator shutting
/// down), the call's own deadline passed (`Cancelled`, tonic's code for a
/// request timeout; `DeadlineExceeded`, the worker's own timeouts), or the
/// connection broke mid-call (`Unknown`, tonic's code for a transport error
/// it cannot classify; a coordinator's own refusals always carry a precise
/// code). Another address of the coordinator group may answer: the worker
/// fails over on these (see `failover`).
pub fn is_unreachable(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown)
}

/// What a `ReportResults` round achieved.
#[derive(Debug, Default)]
pub struct Reported {
    /// Accepted by the server: forget them.
    pub accepted: Vec<i64>,
    /// Rejected one by one as bad reports: logged, then forgotten.
    pub rejected: Vec<(i64, Status)>,
    /// Results the server no longer needs.
    pub abort: Vec<i64>,
}

/// A `Scheduler` client holding the host's token. Cheap to clone: clones
/// share one connection.
#[derive(Clone)]
pub struct Client {
    scheduler: SchedulerClient<Channel>,
    /// `Bearer <token>`, once registered.
    authorization: Option<AsciiMetadataValue>,
}

impl Client {
    /// A client for `url`; no connection is made until the first call. An
    /// https:// URL is verified against `ca_cert` (PEM), or the system's
    /// roots without it.
    pub fn new(url: &str, ca_cert: Option<&[u8]>) -> Result<Self, Error> {
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|source| Error::InvalidUrl { url: url.to_string(), source })?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if url.starts_with("https://") {
            let tls = match ca_cert {
                Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint = endpoint.tls_config(tls).map_err(|source| Error::Tls { url: url.to_string(), source })?;
        }
        let scheduler = SchedulerClient::new(endpoint.connect_lazy()).max_decoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Client { scheduler, authorization: None })
    }

    /// Sets the token sent with every call but `register`.
    pub fn set_token(&mut self, token: &str) -> Result<(), Error> {
        let value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| Error::InvalidToken)?;
        self.authorization = Some(value);
        Ok(())
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert(quorum_proto::AUTHORIZATION, value.clone());
        }
        request
    }

    fn unary<T>(&self, message: T) -> Request<T> {
        let mut request = self.request(message);
        request.set_timeout(CALL_TIMEOUT);
        request
    }

    pub async fn register(&mut self, message: RegisterHostRequest) -> Result<RegisterHostResponse, Status> {
        let mut request = Request::new(message);
        request.set_timeout(CALL_TIMEOUT);
        Ok(self.scheduler.register_host(request).await?.into_inner())
    }

    /// Asks for up to `slots` results, listing every result the worker still
    /// holds so that the coordinator sends again those whose assignment was
    /// lost, and carrying finished `reports` (one round trip for both).
    pub async fn request_work(
        &mut self,
        slots: u32,
        held: Vec<i64>,
        reports: Vec<ResultReport>,
        cached_files: Vec<String>,
        peer_address: Vec<u8>,
    ) -> Result<RequestWorkResponse, Status> {
        let request =
            self.unary(RequestWorkRequest { slots, held, held_is_complete: true, reports, cached_files, peer_address });
        Ok(self.scheduler.request_work(request).await?.into_inner())
    }

    /// This host's record at the coordinator (credit, counters).
    pub async fn get_host(&mut self) -> Result<HostInfo, Status> {
        let request = self.unary(GetHostRequest {});
        Ok(self.scheduler.get_host(request).await?.into_inner())
    }

    /// Downloads the module with `digest`, checking its announced size and its SHA-256.
    pub async fn download_app(&mut self, digest: &str) -> Result<Vec<u8>, DownloadError> {
        let request = self.request(DownloadAppRequest { digest: digest.to_string() });
        let download = async {
            let mut stream = self.scheduler.download_app(request).await?.into_inner();
            let mut announced = None;
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.message().await? {
                let total = *announced.get_or_insert(chunk.total_size);
                if total > MAX_APP_BYTES {
                    return Err(DownloadError::TooLarge(total));
                }
                let received = (bytes.len() + chunk.data.len()) as u64;
                if received > total {
                    return Err(DownloadError::SizeMismatch { announced: total, received });
                }
                if bytes.is_empty() {
                    bytes.reserve_exact(total as usize);
                }
                bytes.extend_from_slice(&chunk.data);
            }
            let announced = announced.unwrap_or(0);
            if bytes.len() as u64 != announced {
                return Err(DownloadError::SizeMismatch { announced, received: bytes.len() as u64 });
            }
            state::verify_digest(digest, &bytes)?;
            Ok(bytes)
        };
        tokio::time::timeout(DOWNLOAD_TIMEOUT, download)
            .await
            .map_err(|_| Status::deadline_exceeded("app download timed out"))?
    }

    /// Starts the download of input file `digest` from byte `offset`: the
    /// stream of its chunks (the first carries the file's size).
    pub async fn download_file(
        &mut self,
        digest: &str,
        offset: u64,
    ) -> Result<tonic::Streaming<quorum_proto::v1::FileChunk>, Status> {
        // No deadline on the whole call (a large file takes what the link
        // takes): the caller times out a stalled stream chunk by chunk.
        let request = self.request(quorum_proto::v1::DownloadFileRequest { digest: digest.to_string(), offset });
        Ok(self.scheduler.download_file(request).await?.into_inner())
    }

    /// The peers that hold input file `digest` (their addresses, encoded).
    pub async fn find_peers(&mut self, digest: &str) -> Result<quorum_proto::v1::FindPeersResponse, Status> {
        let request = self.unary(quorum_proto::v1::FindPeersRequest { digest: digest.to_string() });
        Ok(self.scheduler.find_peers(request).await?.into_inner())
    }

    /// Reports `reports` in one call. If the server rejects the batch as bad
    /// (see [`is_bad_request`]), resends them one by one and sorts out the bad
    /// ones; a transient error then stops the round, leaving the rest
    /// neither accepted nor rejected (to be retried). A transient error on the
    /// batch itself is returned.
    pub async fn report_results(&mut self, reports: &[ResultReport]) -> Result<Reported, Status> {
        let request = self.unary(ReportResultsRequest { reports: reports.to_vec() });
        let status = match self.scheduler.report_results(request).await {
            Ok(response) => {
                let response = response.into_inner();
                return Ok(Reported { accepted: response.accepted, rejected: Vec::new(), abort: response.abort });
            }
            Err(status) if reports.len() > 1 && is_bad_request(status.code()) => status,
            Err(status) if is_bad_request(status.code()) => {
                return Ok(Reported { rejected: vec![(reports[0].result_id, status)], ..Reported::default() });
            }
            Err(status) => return Err(status),
        };
        tracing::warn!(n = reports.len(), code = ?status.code(), message = status.message(), "batch report rejected, reporting one by one");
        let mut reported = Reported::default();
        for report in reports {
            let request = self.unary(ReportResultsRequest { reports: vec![report.clone()] });
            match self.scheduler.report_results(request).await {
                Ok(response) => {
                    let response = response.into_inner();
                    reported.accepted.extend(response.accepted);
                    reported.abort.extend(response.abort);
                }
                Err(status) if is_bad_request(status.code()) => {
                    reported.rejected.push((report.result_id, status));
                }
                Err(status) => {
                    tracing::warn!(code = ?status.code(), message = status.message(), "reporting one by one interrupted");
                    break;
                }
            }
        }
        Ok(reported)
    }
}

/// Exponential backoff with "equal jitter": the n-th delay is uniform in
/// `[cap/2, cap]` where `cap = min(max, 100 ms * 2^n)`. The jitter spreads
/// the retries of many workers; the lower half guarantees that once the cap
/// is reached, a worker calls a coordinator that is down at most once per
/// `max / 2` for each kind of call: no busy loop, whatever the draws.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    max: Duration,
}

const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_FLOOR: Duration = Duration::from_millis(10);

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Backoff { attempt: 0, max: max.max(BACKOFF_FLOOR) }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.cap().as_millis() as u64;
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(rand::random_range(cap / 2..=cap))
    }

    /// The upper bound of the next delay.
    fn cap(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        BACKOFF_BASE.saturating_mul(factor).clamp(BACKOFF_FLOOR, self.max)
    }

    /// The server asked to wait `retry_after_ms`: honour it, up to the cap.
    pub fn retry_after(&self, retry_after_ms: u64) -> Duration {
        Duration::from_millis(retry_after_ms).min(self.max)
    }

    /// A call succeeded: start again from the smallest delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_up_to_its_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(500));
        let caps: Vec<u64> = (0..6)
            .map(|_| {
                let cap = backoff.cap();
                let delay = backoff.next_delay();
                assert!(delay >= cap / 2 && delay <= cap, "{delay:?} outside [{:?}, {cap:?}]", cap / 2);
                cap.as_millis() as u64
            })
            .collect();
        assert_eq!(caps, [100, 200, 400, 500, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.cap(), BACKOFF_BASE);
        assert_eq!(backoff.retry_after(10_000), Duration::from_millis(500));
        assert_eq!(backoff.retry_after(20), Duration::from_millis(20));
    }

    #[test]
    fn bad_request_codes() {
        assert!(is_bad_request(Code::InvalidArgument));
        assert!(is_bad_request(Code::AlreadyExists));
        assert!(!is_bad_request(Code::Unavailable));
        assert!(!is_bad_request(Code::Unauthenticated));
    }

    #[test]
    fn unreachable_codes() {
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Cancelled, Code::Unknown] {
            assert!(is_unreachable(code), "{code:?}");
        }
        // The coordinator answered: another address would say the same.
        for code in [Code::Unauthenticated, Code::ResourceExhausted, Code::InvalidArgument, Code::Internal, Code::Ok] {
            assert!(!is_unreachable(code), "{code:?}");
        }
    }

    #[tokio::test]
    async fn calls_to_a_closed_port_fail_as_unavailable() {
        // Bind then drop a listener to get a port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let mut client = Client::new(&format!("http://{address}"), None).expect("client");
        let status =
            client.request_work(1, Vec::new(), Vec::new(), Vec::new(), Vec::new()).await.expect_err("nobody listens");
        assert_eq!(status.code(), Code::Unavailable);
        assert!(is_unreachable(status.code()));
    }
}
