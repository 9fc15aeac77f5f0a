//! The crate's error type: every failure names the file or peer it concerns.

use std::path::PathBuf;

use crate::meta::FileMeta;

/// What can go wrong starting a swarm, seeding or fetching a file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a local file (the file described, the state
    /// directory, the destination of a fetch).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The iroh endpoint could not be bound to the configured address.
    #[error("cannot listen on {addr}: {message}")]
    Bind { addr: std::net::SocketAddr, message: String },
    /// The blob store in the state directory failed (corrupt database,
    /// full disk...).
    #[error("blob store in {path}: {message}")]
    Store { path: PathBuf, message: String },
    /// `seed` was called on a swarm started with `serve: false`.
    #[error("this swarm does not serve files (serve: false)")]
    NotServing,
    /// The file given to `seed` is not the file described by the meta.
    #[error("{path} does not match {meta}: {message}")]
    NotTheDescribedFile { path: PathBuf, meta: FileMeta, message: String },
    /// No peer could complete the download: every peer failed, was dropped
    /// for bad data, or stalled past the stall timeout. The caller falls
    /// back to the coordinator.
    #[error("no peer could deliver {meta}: {missing_bytes} bytes missing ({reason})")]
    NoPeerCompleted { meta: FileMeta, missing_bytes: u64, reason: String },
}
