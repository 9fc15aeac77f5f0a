//! Peer-to-peer distribution of project files among volunteers.
//!
//! A file is described once by the coordinator ([`FileMeta::describe`]: its
//! BLAKE3 hash and size, carried in gRPC as [`FileMeta::to_bytes`]). Every
//! peer (workers that opted in, and the coordinator itself) runs one
//! [`Swarm`]: an iroh endpoint (QUIC, bound to one address, no relay, no
//! address lookup, no port mapping) with an iroh-blobs store in its state
//! directory. [`Swarm::seed`] serves a file the peer holds and has verified;
//! [`Swarm::fetch`] downloads one from the peers the coordinator named, in
//! parallel, in ranges that are verified against the BLAKE3 tree before they
//! are written, dropping a peer that sends bad data; peers holding part of
//! a file serve that part, and a seed (the coordinator) is asked only for
//! what no peer holds.
//!
//! Layout:
//! - `meta`: [`FileMeta`], what the coordinator computes per file.
//! - `address`: [`PeerAddress`], what a peer reports and the coordinator
//!   hands to other peers (its tracker role).
//! - `swarm`: [`Swarm`], [`SwarmConfig`], seeding and the endpoint.
//! - `fetch`: the parallel, verified download and its [`FetchReport`].
//! - `serve`: which requests the swarm answers (only seeded files) and the
//!   upload cap, applied in iroh-blobs' provider hooks.
//! - `rate`: the upload cap's token bucket, time as an argument, and the
//!   [`UploadCap`] its senders share.
//! - `error`: [`Error`].
//!
//! Feature `swarm` (default) is the engine; without it the crate is only
//! `meta` (BLAKE3), what the coordinator needs to describe files.

#[cfg(feature = "swarm")]
mod address;
mod error;
#[cfg(feature = "swarm")]
mod fetch;
mod meta;
mod rate;
#[cfg(feature = "swarm")]
mod serve;
#[cfg(feature = "swarm")]
mod swarm;

#[cfg(feature = "swarm")]
pub use address::{ParsePeerAddressError, PeerAddress};
pub use error::Error;
#[cfg(feature = "swarm")]
pub use fetch::{FetchOptions, FetchReport, Peers};
pub use meta::{FileMeta, ParseFileMetaError};
pub use rate::{UploadCap, UploadLimiter};
#[cfg(feature = "swarm")]
pub use swarm::{Swarm, SwarmConfig};
