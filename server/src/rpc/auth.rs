//! Who is calling: the bearer token of a request, turned into the caller's
//! role on the `Projects` service ([`caller`]), and the refusal of an API
//! token presented to the `Scheduler` ([`not_a_host`]). What each role may do
//! is decided by `domain::access`; every `Projects` handler calls [`caller`]
//! first, then `Role::authorize` once it has parsed the project's name.
//!
//! Tokens travel in the `authorization` metadata entry as `Bearer <token>`;
//! only their SHA-256 hashes are stored (API tokens and host tokens alike).

use rand::Rng as _;
use sha2::{Digest as _, Sha256};
use tonic::{Request, Status};

use super::Context;
use crate::domain::access::{AccessError, Role};
use crate::store::{Store, TokenKind};

/// Prefix of API tokens, so that people can tell them from host tokens.
pub const API_TOKEN_PREFIX: &str = "quorum_";

/// The token of `request`'s `authorization: Bearer <token>` metadata.
pub fn bearer<T>(request: &Request<T>, what: &str) -> Result<String, Status> {
    let value = request
        .metadata()
        .get(quorum_proto::AUTHORIZATION)
        .ok_or_else(|| Status::unauthenticated(format!("missing authorization metadata (Bearer <{what}>)")))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .ok_or_else(|| Status::unauthenticated(format!("authorization must be `Bearer <{what}>`")))
}

/// The stored form of a token: its SHA-256, in hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new API token secret: the prefix and 32 random bytes in hex.
pub fn new_api_token() -> String {
    let mut secret = [0_u8; 32];
    rand::rng().fill_bytes(&mut secret);
    format!("{API_TOKEN_PREFIX}{}", hex::encode(secret))
}

/// The role of the API token calling `request`. No token, or one the
/// coordinator does not know (or revoked): Unauthenticated. A host's token:
/// PermissionDenied.
/// Refusals are logged at WARN with the peer and the reason (never the
/// token), at most once a second per peer.
pub async fn caller<T>(ctx: &Context, request: &Request<T>) -> Result<Role, Status> {
    let role = match bearer(request, "API token") {
        Ok(token) => role_of(&ctx.store, &token).await,
        Err(status) => Err(status),
    };
    if let Err(status) = &role
        && matches!(status.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied)
    {
        let peer = request.remote_addr().map(|addr| addr.ip());
        if let Some(unlogged) = ctx.limiters.refusal(peer, ctx.clock.now()) {
            let peer = peer.map_or_else(|| "unknown".to_owned(), |peer| peer.to_string());
            tracing::warn!(%peer, reason = status.message(), unlogged, "refused an API call");
        }
    }
    role
}

/// The role of API token `token` (its secret, as the caller sent it): the
/// decision [`caller`] makes, shared with the status page's HTTP requests.
pub async fn role_of(store: &Store, token: &str) -> Result<Role, Status> {
    match store.token_kind(&token_hash(token)).await? {
        TokenKind::Api { id, role } => {
            tracing::debug!(token_id = id, role = role.kind(), "API call");
            Ok(role)
        }
        TokenKind::Host => Err(AccessError::HostToken.into()),
        TokenKind::Unknown => Err(Status::unauthenticated("API token not recognised (unknown or revoked)")),
    }
}

/// The refusal of a scheduler call whose token is not a host's: an API
/// token gets PermissionDenied (it is known, but not as a host), anything
/// else Unauthenticated.
pub async fn not_a_host(ctx: &Context, token_hash: &str) -> Status {
    match ctx.store.token_kind(token_hash).await {
        Ok(TokenKind::Api { .. }) => AccessError::ApiTokenAsHost.into(),
        Ok(TokenKind::Host | TokenKind::Unknown) => Status::from(crate::store::Error::UnknownHost),
        Err(error) => error.into(),
    }
}
