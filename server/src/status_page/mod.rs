//! The live status page: a read-only HTTP server of its own
//! (`--status-page ADDR`) for operators' browsers, BOINC's server_status.php
//! done live.
//!
//! - `GET /`: one HTML page (`page.html`, embedded) with the current
//!   [`Snapshot`] inlined as JSON; its small script renders it (projects
//!   with progress bars, batches, the throughput plot as inline SVG, hosts,
//!   errors by message) and then polls `GET /status.json` every two seconds,
//!   re-rendering without a reload. One renderer, in the page: the server
//!   never builds HTML from data, so nothing a host registered can become
//!   markup (the script sets text only; the inlined JSON escapes `<`, `>`, `&`).
//! - `GET /status.json`: the same [`Snapshot`] (fields documented there and
//!   in the README); projects carry the fields of `quorum status --json`.
//! - Anything else: 404; another method on these paths: 405.
//!
//! Access: on a loopback address no token is needed (whoever can reach it
//! can read the database file too). On any other address every request
//! needs an admin API token, as `Authorization: Bearer TOKEN` or, for a
//! browser's address bar, `?token=TOKEN`: the page lists every project and
//! every host, which the CLI shows only to admins (`Action::ListHosts`); a
//! submit token has `quorum status` for its own projects. Tokens are
//! checked by `rpc::auth::role_of` and `Role::authorize`, the decisions the
//! gRPC service makes, and refusals keep their meaning: 401 for no token or
//! an unknown one, 403 for a token that may not read it.
//!
//! The numbers come from the store's views (see `snapshot`); the throughput
//! series is sampled in the process (see `throughput`). Both tasks (server
//! and sampler) end when the coordinator starts shutting down.

mod snapshot;
mod throughput;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;

pub use snapshot::Snapshot;
use snapshot::ThroughputSeries;
use throughput::{Sample, Throughput};

use crate::domain::access::Action;
use crate::rpc::{Context, auth};

/// The page, with [`SNAPSHOT_SLOT`] where the first snapshot goes.
const PAGE: &str = include_str!("page.html");

/// Where [`PAGE`] takes the inlined snapshot (inside a JSON script element).
const SNAPSHOT_SLOT: &str = "{{SNAPSHOT}}";

/// Why the status page could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding the status page on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Who may read the page, from the address it is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Bound to loopback: no token needed.
    Open,
    /// Bound elsewhere: an admin API token on every request.
    AdminToken,
}

impl Access {
    fn for_addr(addr: SocketAddr) -> Access {
        if addr.ip().is_loopback() { Access::Open } else { Access::AdminToken }
    }
}

/// What the handlers share.
#[derive(Clone)]
struct Shared {
    ctx: Context,
    access: Access,
    /// Written by the sampler, read by every request (never held across an await).
    throughput: Arc<Mutex<Throughput>>,
}

/// The running status page.
pub struct StatusPage {
    addr: SocketAddr,
    server: JoinHandle<()>,
    sampler: JoinHandle<()>,
}

impl StatusPage {
    /// Binds `addr`, logs `status page on http://ADDR/` (the bound address,
    /// also when `addr` has port 0) and serves until `ctx` sees shutdown.
    pub async fn start(addr: SocketAddr, ctx: Context) -> Result<StatusPage, Error> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(|source| Error::Bind { addr, source })?;
        let access = Access::for_addr(bound);
        tracing::info!(addr = %bound, token_required = access == Access::AdminToken, "status page on http://{bound}/");
        let shared = Shared { ctx: ctx.clone(), access, throughput: Arc::new(Mutex::new(Throughput::new())) };
        let sampler = tokio::spawn(sample(shared.ctx.clone(), shared.throughput.clone()));
        let app = Router::new()
            .route("/", get(page))
            .route("/status.json", get(status_json))
            .fallback(not_found)
            .with_state(shared);
        let server = tokio::spawn(async move {
            let shutdown = async move { ctx.stopped().await };
            if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::error!(%error, "status page server failed");
            }
        });
        Ok(StatusPage { addr: bound, server, sampler })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits, once shutdown has started, for open requests to finish, at
    /// most `grace`; then closes what is left.
    pub async fn stop(self, grace: Duration) {
        let StatusPage { server, sampler, .. } = self;
        let abort = (server.abort_handle(), sampler.abort_handle());
        if tokio::time::timeout(grace, async {
            let _ = server.await;
            let _ = sampler.await;
        })
        .await
        .is_err()
        {
            tracing::warn!(?grace, "status page requests still open after the shutdown grace; closing them");
            abort.0.abort();
            abort.1.abort();
        }
    }
}

/// Samples the cumulative counts every `SAMPLE_INTERVAL` until shutdown.
async fn sample(ctx: Context, throughput: Arc<Mutex<Throughput>>) {
    let mut interval = tokio::time::interval(throughput::SAMPLE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = ctx.stopped() => return,
            _ = interval.tick() => {}
        }
        match ctx.store.project_status(None).await {
            Ok(statuses) => {
                let sample = Sample {
                    at: ctx.clock.now(),
                    results_valid: statuses.iter().map(|status| status.results_valid).sum(),
                    results_error: statuses.iter().map(|status| status.results_error).sum(),
                };
                throughput.lock().unwrap_or_else(PoisonError::into_inner).record(sample);
            }
            Err(error) => tracing::warn!(%error, "sampling the throughput for the status page"),
        }
    }
}

/// `GET /`.
async fn page(State(shared): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    match shared.snapshot(&headers, &uri).await {
        Ok(snapshot) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                // A `?token=` must not leak to other sites.
                (header::REFERRER_POLICY, "no-referrer"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
                ),
            ],
            render(&snapshot),
        )
            .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// `GET /status.json`.
async fn status_json(State(shared): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    match shared.snapshot(&headers, &uri).await {
        Ok(snapshot) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            json(&snapshot),
        )
            .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn not_found(uri: Uri) -> Response {
    let message = format!("no such page: {}; the status page serves / and /status.json", uri.path());
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message + "\n").into_response()
}

impl Shared {
    /// Checks the caller, then reads the snapshot.
    async fn snapshot(&self, headers: &HeaderMap, uri: &Uri) -> Result<Snapshot, Refusal> {
        if self.access == Access::AdminToken {
            let token = presented_token(headers.get(header::AUTHORIZATION), uri.query())?;
            let role = auth::role_of(&self.ctx.store, token).await.map_err(Refusal::from)?;
            role.authorize(Action::ListHosts).map_err(|error| Refusal::from(tonic::Status::from(error)))?;
        }
        let series = ThroughputSeries::of(&self.throughput.lock().unwrap_or_else(PoisonError::into_inner));
        Snapshot::read(&self.ctx.store, series, self.ctx.clock.now())
            .await
            .map_err(|error| Refusal::from(tonic::Status::from(error)))
    }
}

/// The token of a request: its `Authorization: Bearer TOKEN` header, else
/// its `token` query parameter (given as it is: API tokens need no escaping).
fn presented_token<'a>(authorization: Option<&'a HeaderValue>, query: Option<&'a str>) -> Result<&'a str, Refusal> {
    if let Some(value) = authorization {
        return value
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .filter(|token| !token.is_empty())
            .ok_or_else(|| Refusal::unauthenticated("the Authorization header must be `Bearer <API token>`"));
    }
    let from_query = query.into_iter().flat_map(|query| query.split('&')).find_map(|pair| pair.strip_prefix("token="));
    match from_query {
        Some("") => Err(Refusal::unauthenticated("the token query parameter is empty")),
        Some(token) => Ok(token),
        None => Err(Refusal::unauthenticated(
            "this status page is served on a non-loopback address and needs an admin API token: \
             send `Authorization: Bearer <token>` or open /?token=<token>",
        )),
    }
}

/// A request refused (or failed), as plain text with its HTTP status.
#[derive(Debug, PartialEq, Eq)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn unauthenticated(message: &str) -> Refusal {
        Refusal { status: StatusCode::UNAUTHORIZED, message: message.to_owned() }
    }
}

/// The gRPC refusals (from `rpc::auth`, `Role::authorize` and the store,
/// mapped once in `rpc::status`) in HTTP's terms.
impl From<tonic::Status> for Refusal {
    fn from(status: tonic::Status) -> Refusal {
        let code = match status.code() {
            tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
            tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Refusal { status: code, message: status.message().to_owned() }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = format!("{}: {}\n", self.status, self.message);
        let content_type = (header::CONTENT_TYPE, "text/plain; charset=utf-8");
        if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [content_type, (header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.status, [content_type], body).into_response()
        }
    }
}

fn json(snapshot: &Snapshot) -> String {
    serde_json::to_string(snapshot).expect("a snapshot (strings, numbers, lists) always serialises")
}

/// The page with `snapshot` inlined. `<`, `>` and `&` are escaped (JSON's
/// `\u003c`...), so no text in it can close the script element.
fn render(snapshot: &Snapshot) -> String {
    let inlined = json(snapshot).replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026");
    PAGE.replacen(SNAPSHOT_SLOT, &inlined, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_by_address() {
        let check = |addr: &str, expected: Access| {
            assert_eq!(Access::for_addr(addr.parse().expect("an address")), expected, "{addr}");
        };
        check("127.0.0.1:0", Access::Open);
        check("127.0.0.2:8080", Access::Open);
        check("[::1]:8080", Access::Open);
        check("0.0.0.0:8080", Access::AdminToken);
        check("[::]:8080", Access::AdminToken);
        check("192.0.2.7:8080", Access::AdminToken);
    }

    #[test]
    fn tokens_presented() {
        let check = |authorization: Option<&str>, query: Option<&str>, expected: Result<&str, &str>| {
            let header = authorization.map(|value| HeaderValue::from_str(value).expect("a header value"));
            let actual = presented_token(header.as_ref(), query).map_err(|refusal| {
                assert_eq!(refusal.status, StatusCode::UNAUTHORIZED);
                refusal.message
            });
            assert_eq!(actual, expected.map_err(str::to_owned), "{authorization:?} {query:?}");
        };
        check(Some("Bearer quorum_ab"), None, Ok("quorum_ab"));
        check(Some("Bearer quorum_ab"), Some("token=other"), Ok("quorum_ab"));
        check(None, Some("token=quorum_cd"), Ok("quorum_cd"));
        check(None, Some("x=1&token=quorum_cd"), Ok("quorum_cd"));
        check(Some("Basic abc"), None, Err("the Authorization header must be `Bearer <API token>`"));
        check(Some("Bearer "), None, Err("the Authorization header must be `Bearer <API token>`"));
        check(None, Some("token="), Err("the token query parameter is empty"));
        let missing = "this status page is served on a non-loopback address and needs an admin API token: \
                       send `Authorization: Bearer <token>` or open /?token=<token>";
        check(None, None, Err(missing));
        check(None, Some("tokens=x"), Err(missing));
    }

    #[test]
    fn refusals_in_http_terms() {
        let check = |status: tonic::Status, expected: StatusCode| {
            assert_eq!(Refusal::from(status.clone()).status, expected, "{status:?}");
        };
        check(tonic::Status::unauthenticated("no"), StatusCode::UNAUTHORIZED);
        check(tonic::Status::permission_denied("no"), StatusCode::FORBIDDEN);
        check(tonic::Status::unavailable("closing"), StatusCode::SERVICE_UNAVAILABLE);
        check(tonic::Status::internal("logged"), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn inlined_text_cannot_close_the_script() {
        let hostile = "</script><script>alert(1)</script>&amp;";
        let snapshot = Snapshot {
            generated_unix_ms: 1,
            projects: Vec::new(),
            errors: vec![snapshot::ErrorGroup {
                project: "p".to_owned(),
                message: hostile.to_owned(),
                n_results: 1,
                n_hosts: 1,
                n_work_units: 1,
                example_work_units: vec![hostile.to_owned()],
                latest_unix_ms: 1,
            }],
            hosts: snapshot::Hosts { n_hosts: 0, n_active: 0, active_within_secs: 600, list: Vec::new() },
            throughput: ThroughputSeries::of(&Throughput::new()),
        };
        let page = render(&snapshot);
        assert!(!page.contains(SNAPSHOT_SLOT), "the slot is filled");
        assert!(!page.contains(hostile) && !page.contains("alert(1)</script>"), "hostile text inlined as markup");
        assert_eq!(page.matches("</script>").count(), PAGE.matches("</script>").count());
        let start = page.find("{\"generated_unix_ms\"").expect("the snapshot is inlined");
        let end = start + page[start..].find("</script>").expect("its script element closes");
        let parsed: serde_json::Value = serde_json::from_str(&page[start..end]).expect("the inlined JSON parses");
        assert_eq!(parsed["errors"][0]["message"], hostile, "and reads back as the same text");
    }
}
