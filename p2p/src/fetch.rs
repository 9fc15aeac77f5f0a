//! The parallel, verified download of one file from several peers.
//!
//! The file is cut into segments of 1 MiB (1,024 BLAKE3 chunks). One loop
//! hands each connected peer one segment at a time: the request names the
//! segment's ranges still missing from the local store, and iroh-blobs
//! checks every 16 KiB group of chunks against the file's BLAKE3 tree (the
//! hash in the `FileMeta`) before writing it to the store. A hash mismatch
//! drops the peer for bad data; a failed connection, a refusal or a peer
//! making no progress for the stall timeout drops it too; either way its
//! segment goes back to the queue for the others. When no peer is left and
//! segments remain, the fetch fails so the caller can use the coordinator.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use bao_tree::ChunkNum;
use iroh::Endpoint;
use iroh::endpoint::Connection;
use iroh_blobs::Hash;
use iroh_blobs::api::blobs::{ExportMode, ExportOptions};
use iroh_blobs::api::remote::GetProgressItem;
use iroh_blobs::get::GetError;
use iroh_blobs::get::fsm::DecodeError;
use iroh_blobs::protocol::{ChunkRanges, GetRequest};
use iroh_blobs::store::fs::FsStore;
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::address::PeerAddress;
use crate::error::Error;
use crate::meta::FileMeta;

/// BLAKE3 chunks are 1 KiB; a segment is 1,024 of them.
const CHUNK_BYTES: u64 = 1024;
const SEGMENT_CHUNKS: u64 = 1024;

/// How a fetch gives up.
#[derive(Clone, Copy, Debug)]
pub struct FetchOptions {
    /// A peer that makes no progress for this long (connecting, or between
    /// two pieces of data) is dropped; with no peer left, the fetch fails.
    pub stall_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> FetchOptions {
        FetchOptions { stall_timeout: Duration::from_secs(30) }
    }
}

/// What a completed fetch got from whom.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// Verified payload bytes received from each peer that sent some, in
    /// the order of the peers given.
    pub bytes_from_each_peer: Vec<(PeerAddress, u64)>,
    /// Peers that sent data that did not verify against the file's hash.
    pub peers_dropped_for_bad_data: Vec<PeerAddress>,
    /// Peers dropped for any other reason: unreachable, refusing (not
    /// seeding the file), or stalled.
    pub peers_dropped_for_failure: Vec<PeerAddress>,
}

/// Why one request to one peer ended without its segment.
enum PeerFailure {
    BadData(String),
    Other(String),
}

pub(crate) async fn fetch(
    endpoint: &Endpoint,
    store: &FsStore,
    meta: &FileMeta,
    peers: &[PeerAddress],
    dest: &Path,
    options: FetchOptions,
) -> Result<FetchReport, Error> {
    let dest = std::path::absolute(dest).map_err(|source| Error::Io { path: dest.to_owned(), source })?;
    let hash = meta.blob_hash();
    let store_error = |e: &dyn std::fmt::Display| Error::Store { path: dest.clone(), message: e.to_string() };
    let mut report = FetchReport::default();
    if meta.size() == 0 {
        // iroh-blobs has no data to send for an empty file; its hash alone says
        // whether the meta is the empty file's.
        if hash != Hash::new([]) {
            return Err(Error::NoPeerCompleted {
                meta: *meta,
                missing_bytes: 0,
                reason: "an empty file with another file's hash".into(),
            });
        }
        tokio::fs::write(&dest, []).await.map_err(|source| Error::Io { path: dest.clone(), source })?;
        return Ok(report);
    }

    let total_chunks = meta.size().div_ceil(CHUNK_BYTES);
    // A file already whole in the store (an earlier fetch that ended before
    // its export) needs no peer at all.
    let already_whole = store.observe(hash).await.map_err(|e| store_error(&e))?.is_complete();
    let mut pending: VecDeque<u64> =
        if already_whole { VecDeque::new() } else { (0..total_chunks.div_ceil(SEGMENT_CHUNKS)).collect() };
    let mut bytes_from: BTreeMap<usize, u64> = BTreeMap::new();
    let mut idle: Vec<(usize, Connection)> = Vec::new();
    let mut connecting = JoinSet::new();
    for (index, peer) in peers.iter().enumerate() {
        let endpoint = endpoint.clone();
        let addr = peer.endpoint_addr();
        let stall = options.stall_timeout;
        connecting.spawn(async move {
            let connection = match timeout(stall, endpoint.connect(addr, iroh_blobs::ALPN)).await {
                Ok(Ok(connection)) => Ok(connection),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no connection within {stall:?}")),
            };
            (index, connection)
        });
    }
    let mut requests: JoinSet<(usize, Connection, u64, Result<u64, PeerFailure>)> = JoinSet::new();
    let mut last_failure = String::from("no peer given");

    loop {
        while let Some(segment) = pending.front().copied() {
            let Some((index, connection)) = idle.pop() else { break };
            pending.pop_front();
            let ranges = segment_ranges(segment, total_chunks);
            let missing = store
                .remote()
                .local_for_request(GetRequest::blob_ranges(hash, ranges))
                .await
                .map_err(|e| store_error(&e))?;
            if missing.is_complete() {
                idle.push((index, connection));
                continue;
            }
            let request = missing.missing();
            let store = store.clone();
            let stall = options.stall_timeout;
            requests.spawn(async move {
                let outcome = get_segment(&store, connection.clone(), request, stall).await;
                (index, connection, segment, outcome)
            });
        }
        if pending.is_empty() && requests.is_empty() {
            break;
        }
        if idle.is_empty() && requests.is_empty() && connecting.is_empty() {
            let missing_bytes = missing_bytes(store, hash, meta.size()).await;
            return Err(Error::NoPeerCompleted { meta: *meta, missing_bytes, reason: last_failure });
        }
        tokio::select! {
            Some(connected) = connecting.join_next(), if !connecting.is_empty() => {
                let (index, connection) = connected.expect("connection tasks do not panic");
                match connection {
                    Ok(connection) => idle.push((index, connection)),
                    Err(reason) => {
                        tracing::debug!(peer = %peers[index], %reason, "peer unreachable");
                        last_failure = format!("{}: {reason}", peers[index]);
                        report.peers_dropped_for_failure.push(peers[index].clone());
                    }
                }
            }
            Some(done) = requests.join_next(), if !requests.is_empty() => {
                let (index, connection, segment, outcome) = done.expect("request tasks do not panic");
                match outcome {
                    Ok(bytes) => {
                        *bytes_from.entry(index).or_default() += bytes;
                        idle.push((index, connection));
                    }
                    Err(failure) => {
                        pending.push_front(segment);
                        connection.close(0u32.into(), b"dropped");
                        let (list, reason) = match failure {
                            PeerFailure::BadData(reason) => (&mut report.peers_dropped_for_bad_data, reason),
                            PeerFailure::Other(reason) => (&mut report.peers_dropped_for_failure, reason),
                        };
                        tracing::warn!(peer = %peers[index], %reason, "dropped a peer");
                        last_failure = format!("{}: {reason}", peers[index]);
                        list.push(peers[index].clone());
                    }
                }
            }
        }
    }
    for (_, connection) in idle {
        connection.close(0u32.into(), b"done");
    }

    // Every segment verified; the store agrees the file is whole before it
    // leaves it.
    let bitfield = store.observe(hash).await.map_err(|e| store_error(&e))?;
    if !bitfield.is_complete() {
        let missing_bytes = missing_bytes(store, hash, meta.size()).await;
        return Err(Error::NoPeerCompleted {
            meta: *meta,
            missing_bytes,
            reason: "incomplete after every segment".into(),
        });
    }
    store
        .export_with_opts(ExportOptions { hash, mode: ExportMode::TryReference, target: dest.clone() })
        .finish()
        .await
        .map_err(|e| store_error(&e))?;
    report.bytes_from_each_peer = bytes_from.into_iter().map(|(index, bytes)| (peers[index].clone(), bytes)).collect();
    Ok(report)
}

/// The chunks of one segment; the last segment runs to the file's last
/// chunk, whose hash also proves the file's size.
fn segment_ranges(segment: u64, total_chunks: u64) -> ChunkRanges {
    let start = segment * SEGMENT_CHUNKS;
    let end = (start + SEGMENT_CHUNKS).min(total_chunks);
    ChunkRanges::from(ChunkNum(start)..ChunkNum(end))
}

/// Runs one request, returning the payload bytes it verified; fails when
/// the peer goes `stall` without sending anything.
async fn get_segment(
    store: &FsStore,
    connection: Connection,
    request: GetRequest,
    stall: Duration,
) -> Result<u64, PeerFailure> {
    use tokio_stream::StreamExt as _;
    let mut progress = std::pin::pin!(store.remote().execute_get(connection, request).stream());
    loop {
        match timeout(stall, progress.next()).await {
            Err(_) => return Err(PeerFailure::Other(format!("no data for {stall:?}"))),
            Ok(None) => return Err(PeerFailure::Other("the request ended without a result".into())),
            Ok(Some(GetProgressItem::Progress(_))) => {}
            Ok(Some(GetProgressItem::Done(stats))) => return Ok(stats.payload_bytes_read),
            Ok(Some(GetProgressItem::Error(error))) => return Err(classify(error)),
        }
    }
}

fn classify(error: GetError) -> PeerFailure {
    let reason = error.to_string();
    match &error {
        GetError::Decode {
            source: DecodeError::LeafHashMismatch { .. } | DecodeError::ParentHashMismatch { .. },
            ..
        } => PeerFailure::BadData(reason),
        _ => PeerFailure::Other(reason),
    }
}

async fn missing_bytes(store: &FsStore, hash: Hash, size: u64) -> u64 {
    match store.remote().local(hash).await {
        Ok(local) => size.saturating_sub(local.local_bytes()),
        Err(_) => size,
    }
}
