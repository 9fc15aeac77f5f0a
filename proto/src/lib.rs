//! The quorum.v1 protocol: messages and gRPC stubs generated from
//! `proto/quorum/v1/quorum.proto`.
//!
//! Layout:
//! - `v1`: the generated messages, plus `scheduler_client`/`projects_client`
//!   (feature `client`) and `scheduler_server`/`projects_server` (feature `server`).
//! - `FILE_DESCRIPTOR_SET`: the encoded descriptors, for gRPC server reflection.
//! - [`coordinator_url`]: a coordinator's address as the CLI and the worker take it.

/// Generated code for the `quorum.v1` package. Never edited by hand.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("quorum.v1");
}

/// Encoded `FileDescriptorSet` of the quorum.v1 protocol, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("quorum_descriptor");

/// Metadata key that carries a host's token on scheduler calls (`Bearer <token>`).
pub const AUTHORIZATION: &str = "authorization";

/// Metadata key of a RESOURCE_EXHAUSTED answer to a call over its rate
/// limit: milliseconds to wait before calling again.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// A coordinator's address as given on a command line, as a URL: `HOST:PORT`
/// becomes `http://HOST:PORT`; `http://` and `https://` URLs stay as they
/// are. Anything else (another scheme, no host, spaces) is refused with a
/// message that says what is expected, so a typo fails at once instead of
/// being retried as an unreachable coordinator.
pub fn coordinator_url(text: &str) -> Result<String, String> {
    let expected = "expected http://HOST:PORT, https://HOST:PORT or HOST:PORT";
    let (scheme, rest) = text.split_once("://").unwrap_or(("http", text));
    let url = format!("{scheme}://{rest}");
    if scheme != "http" && scheme != "https" {
        return Err(format!("coordinator URL {text:?} has the scheme {scheme:?}: {expected}"));
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid coordinator URL {text:?}: {expected}"));
    }
    if url.parse::<tonic::codegen::http::Uri>().is_err() {
        return Err(format!("invalid coordinator URL {text:?}: {expected}"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::coordinator_url;

    #[test]
    fn coordinator_urls() {
        assert_eq!(coordinator_url("127.0.0.1:7737").as_deref(), Ok("http://127.0.0.1:7737"));
        assert_eq!(coordinator_url("localhost:7737").as_deref(), Ok("http://localhost:7737"));
        assert_eq!(coordinator_url("http://a:1").as_deref(), Ok("http://a:1"));
        assert_eq!(coordinator_url("https://quorum.example.org").as_deref(), Ok("https://quorum.example.org"));
        assert_eq!(coordinator_url("[::1]:7737").as_deref(), Ok("http://[::1]:7737"));
        for bad in ["ftp://a:1", "http://", "a b:1", "http:///x", "grpc://a:1"] {
            let error = coordinator_url(bad).expect_err(bad);
            assert!(error.contains("expected http://HOST:PORT"), "{bad}: {error}");
        }
    }
}
