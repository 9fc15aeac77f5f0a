//! The quorum.v1 protocol: messages and gRPC stubs generated from
//! `proto/quorum/v1/quorum.proto`.
//!
//! Layout:
//! - `v1`: the generated messages, plus `scheduler_client`/`projects_client`
//!   (feature `client`) and `scheduler_server`/`projects_server` (feature `server`).
//! - `FILE_DESCRIPTOR_SET`: the encoded descriptors, for gRPC server reflection.

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
