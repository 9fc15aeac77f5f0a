//! What the coordinator's HTTP endpoints share: the status page
//! (`--status-page ADDR`) and the Prometheus metrics (`--metrics ADDR`),
//! each an axum router on a port of its own.
//!
//! - [`Endpoint`]: binds an address, serves a router until the coordinator
//!   starts shutting down, and stops within a grace.
//! - [`Access`]: who may read it, from the address it is bound to. On a
//!   loopback address no token is needed (whoever can reach it can read the
//!   database file too). On any other address every request needs an admin
//!   API token, as `Authorization: Bearer TOKEN` (what Prometheus sends with
//!   `authorization: {credentials: ...}`) or, for a browser's address bar,
//!   `?token=TOKEN`: both endpoints show every project and host, which the
//!   CLI shows only to admins (`Action::ListHosts`). Tokens are checked by
//!   `rpc::auth::role_of` and `Role::authorize`, the decisions the gRPC
//!   service makes, and refusals keep their meaning: 401 for no token or an
//!   unknown one, 403 for a token that may not read it.
//! - [`Refusal`]: a refused (or failed) request as plain text with its HTTP
//!   status, from the one gRPC mapping in `rpc::status`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

use crate::domain::access::Action;
use crate::rpc::{Context, auth};

/// Why an endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding the {what} on {addr}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// Who may read an endpoint, from the address it is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Bound to loopback: no token needed.
    Open,
    /// Bound elsewhere: an admin API token on every request.
    AdminToken,
}

impl Access {
    pub fn for_addr(addr: SocketAddr) -> Access {
        if addr.ip().is_loopback() { Access::Open } else { Access::AdminToken }
    }

    /// Lets the request through, or says why not.
    pub async fn check(self, ctx: &Context, headers: &HeaderMap, uri: &Uri) -> Result<(), Refusal> {
        if self == Access::Open {
            return Ok(());
        }
        let token = presented_token(headers.get(header::AUTHORIZATION), uri.query())?;
        let role = auth::role_of(&ctx.store, token).await.map_err(Refusal::from)?;
        role.authorize(Action::ListHosts).map_err(|error| Refusal::from(tonic::Status::from(error)))
    }
}

/// A running HTTP endpoint.
pub struct Endpoint {
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl Endpoint {
    /// Binds `addr` and serves `router` until `ctx` sees shutdown. `what`
    /// names it in errors and logs ("status page", "metrics endpoint").
    /// The router checks [`Access::for_addr`] of `addr` (the bound address
    /// has the same IP).
    pub async fn start(what: &'static str, addr: SocketAddr, router: Router, ctx: Context) -> Result<Endpoint, Error> {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Bind { what, addr, source })?;
        let bound = listener.local_addr().map_err(|source| Error::Bind { what, addr, source })?;
        let server = tokio::spawn(async move {
            let shutdown = async move { ctx.stopped().await };
            if let Err(error) =
                axum::serve(crate::net::http_listener(listener), router).with_graceful_shutdown(shutdown).await
            {
                tracing::error!(%error, "{what} server failed");
            }
        });
        Ok(Endpoint { addr: bound, server })
    }

    /// The bound address (also when it was asked with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits, once shutdown has started, for open requests to finish, at
    /// most `grace`; then closes what is left.
    pub async fn stop(self, grace: Duration) {
        let abort = self.server.abort_handle();
        if tokio::time::timeout(grace, self.server).await.is_err() {
            tracing::warn!(?grace, addr = %self.addr, "HTTP requests still open after the shutdown grace; closing them");
            abort.abort();
        }
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
            "this endpoint is served on a non-loopback address and needs an admin API token: \
             send `Authorization: Bearer <token>` or add ?token=<token>",
        )),
    }
}

/// A request refused (or failed), as plain text with its HTTP status.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
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

impl From<crate::store::Error> for Refusal {
    fn from(error: crate::store::Error) -> Refusal {
        Refusal::from(tonic::Status::from(error))
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

/// The answer to a path an endpoint does not serve.
pub fn not_found(uri: &Uri, serves: &str) -> Response {
    let message = format!("no such page: {}; this endpoint serves {serves}\n", uri.path());
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message).into_response()
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
        let missing = "this endpoint is served on a non-loopback address and needs an admin API token: \
                       send `Authorization: Bearer <token>` or add ?token=<token>";
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
}
