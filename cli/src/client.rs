//! The connection to the coordinator's `Projects` service, and the one place
//! where gRPC errors become messages for people: the server's own message
//! followed by the status code, e.g. "project 'x' already exists
//! (ALREADY_EXISTS)".

use std::time::Duration;

use anyhow::Context as _;
use quorum_proto::v1::projects_client::ProjectsClient;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::token::Secret;

/// Largest gRPC message the CLI sends or accepts (the submission splits its
/// requests well below this).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How long connecting may take before the coordinator counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `Projects` client type: every call carries the API token.
pub type Client = ProjectsClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every call (nothing without a token).
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(quorum_proto::AUTHORIZATION, value.clone());
        }
        Ok(request)
    }
}

/// A connected `Projects` client that remembers its URL for error messages.
#[derive(Clone)]
pub struct Coordinator {
    url: String,
    client: Client,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Coordinator {
    /// Connects to the coordinator at `url` ("http://HOST:PORT"; a bare
    /// "HOST:PORT" gets "http://"), sending `token` with every call. An
    /// https:// coordinator's certificate must chain to `ca_cert` (PEM), or
    /// to the system's roots without it.
    pub async fn connect(url: &str, token: Option<&Secret>, ca_cert: Option<&[u8]>) -> anyhow::Result<Coordinator> {
        let bearer = match token {
            Some(token) => Some(
                format!("Bearer {}", token.expose())
                    .parse()
                    .map_err(|_| anyhow::anyhow!("the API token has characters not allowed in gRPC metadata"))?,
            ),
            None => None,
        };
        let url = quorum_proto::coordinator_url(url).map_err(anyhow::Error::msg)?;
        let mut endpoint = Endpoint::from_shared(url.clone())
            .with_context(|| format!("invalid coordinator URL '{url}'"))?
            .connect_timeout(CONNECT_TIMEOUT);
        if url.starts_with("https://") {
            let tls = match ca_cert {
                Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint = endpoint.tls_config(tls).with_context(|| format!("TLS configuration for {url}"))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|error| anyhow::anyhow!("cannot reach coordinator at {url}: {}", error_chain_text(&error)))?;
        let client = ProjectsClient::with_interceptor(channel, Bearer(bearer))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Coordinator { url, client })
    }

    /// A client for one call (cloning a tonic client is cheap and shares the
    /// connection).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The coordinator's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Turns a failed call into a readable error: the server's message and
    /// the status code.
    pub fn error(&self, status: tonic::Status) -> anyhow::Error {
        describe_status(&self.url, &status)
    }
}

/// An error and its causes joined by ": ", without the repetitions that
/// tonic's transport errors carry ("tcp connect error: tcp connect error").
fn error_chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(cause) = current {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        current = cause.source();
    }
    parts.join(": ")
}

/// The message for a failed call to the coordinator at `url`.
pub fn describe_status(url: &str, status: &tonic::Status) -> anyhow::Error {
    let code = code_name(status.code());
    // The coordinator's text goes to a terminal: its control characters are shown, not run.
    let message =
        crate::output::escape(if status.message().is_empty() { status.code().description() } else { status.message() });
    match status.code() {
        tonic::Code::Unavailable => {
            anyhow::anyhow!("cannot reach coordinator at {url}: {message} ({code})")
        }
        _ => anyhow::anyhow!("{message} ({code})"),
    }
}

/// The canonical gRPC name of a status code, as in the gRPC specification.
fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages() {
        let check = |status: tonic::Status, expected: &str| {
            let actual = format!("{:#}", describe_status("http://127.0.0.1:7737", &status));
            assert_eq!(actual, expected);
        };
        check(
            tonic::Status::already_exists("project 'x' already exists"),
            "project 'x' already exists (ALREADY_EXISTS)",
        );
        check(tonic::Status::not_found("no project 'y'"), "no project 'y' (NOT_FOUND)");
        check(tonic::Status::invalid_argument(""), "Client specified an invalid argument (INVALID_ARGUMENT)");
        check(
            tonic::Status::unavailable("connection reset"),
            "cannot reach coordinator at http://127.0.0.1:7737: connection reset (UNAVAILABLE)",
        );
    }

    #[tokio::test]
    async fn unreachable_coordinator() {
        // Bind then drop a listener: nothing listens on that port any more.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("local address");
        drop(listener);
        let error = Coordinator::connect(&address.to_string(), None, None).await.expect_err("nothing listens");
        let text = format!("{error:#}");
        assert!(text.starts_with(&format!("cannot reach coordinator at http://{address}: ")), "{text}");
        assert!(text.ends_with("Connection refused (os error 111)"), "{text}");
        assert!(!text.contains("tcp connect error: tcp connect error"), "{text}");
    }
}
