//! The parallel, verified download of one file from a swarm of peers, as
//! BitTorrent does it: peers that hold only part of the file serve that part.
//!
//! The file is cut into segments of 1 MiB (1,024 BLAKE3 chunks). Each
//! connected peer is asked which ranges it holds (an iroh-blobs observe
//! request, asked again every [`POLL_EVERY`] while it is incomplete), and
//! each idle peer is handed one segment it holds and this peer lacks: the
//! rarest among the known peers first (ties broken by an order of this
//! peer's own, so that peers fetching at once pick different segments).
//! A seed (the coordinator, in the swarm) is asked only for segments no
//! other peer holds, so that it sends each piece about once and the peers
//! pass it on among themselves. The request names the segment's ranges
//! still missing from the local store, and iroh-blobs checks every 16 KiB
//! group of chunks against the file's BLAKE3 tree (the hash in the
//! `FileMeta`) before writing it to the store. A hash mismatch drops the
//! peer for bad data; a failed connection, a refusal or a peer making no
//! progress for the stall timeout drops it too; either way its segment goes
//! back to the queue for the others. New peers arrive through a watch
//! channel (the caller asks the tracker again now and then). When every
//! peer known is dropped, or nothing has arrived for the stall timeout and
//! no request is running, the fetch fails so the caller can use the
//! coordinator's own path.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash as _, Hasher as _};
use std::path::Path;
use std::time::Duration;

use bao_tree::ChunkNum;
use iroh::endpoint::Connection;
use iroh::{Endpoint, EndpointId};
use iroh_blobs::Hash;
use iroh_blobs::api::blobs::{ExportMode, ExportOptions};
use iroh_blobs::api::remote::GetProgressItem;
use iroh_blobs::get::GetError;
use iroh_blobs::get::fsm::DecodeError;
use iroh_blobs::protocol::{ChunkRanges, GetRequest, ObserveRequest};
use iroh_blobs::store::fs::FsStore;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

use crate::address::PeerAddress;
use crate::error::Error;
use crate::meta::FileMeta;

/// BLAKE3 chunks are 1 KiB; a segment is 1,024 of them.
const CHUNK_BYTES: u64 = 1024;
const SEGMENT_CHUNKS: u64 = 1024;
/// How often a peer that holds part of the file is asked what it holds now.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Longest a connection may take to open (within the stall timeout): a
/// peer that has gone away is given up on soon.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a fetch behaves.
#[derive(Clone, Copy, Debug)]
pub struct FetchOptions {
    /// A peer that makes no progress for this long (connecting, or between
    /// two pieces of data) is dropped; when nothing arrives from any peer
    /// for this long, the fetch fails.
    pub stall_timeout: Duration,
    /// Serve the verified part to other peers while fetching (a swarm that
    /// serves at all; the rest waits for [`crate::Swarm::seed`]).
    pub share_while_fetching: bool,
}

impl Default for FetchOptions {
    fn default() -> FetchOptions {
        FetchOptions { stall_timeout: Duration::from_secs(30), share_while_fetching: false }
    }
}

/// Whom a fetch may ask: peers, and seeds asked only for what no peer holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peers {
    /// Other volunteers that hold the file or part of it.
    pub peers: Vec<PeerAddress>,
    /// Sources that hold the whole file and whose upload is the scarcest
    /// (the coordinator): asked only for segments no peer holds.
    pub seeds: Vec<PeerAddress>,
}

/// What a completed fetch got from whom.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// Verified payload bytes received from each peer that sent some, in
    /// the order the peers became known.
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
    /// A seed serving each segment once declined: it sent it to another
    /// peer lately; not a fault.
    Declined,
    Other(String),
}

/// How long a segment a seed declined is not asked of seeds again.
const DECLINED_WAIT: Duration = Duration::from_secs(2);

/// One peer of a fetch, from the moment it is known.
struct Peer {
    address: PeerAddress,
    seed: bool,
    /// The connection, once open (and while the peer is not dropped).
    connection: Option<Connection>,
    /// Which segments the peer said it holds, last time it was asked.
    has: Vec<bool>,
    /// Whether it has said so at least once.
    answered: bool,
    /// Whether it holds the whole file (never asked again).
    complete: bool,
    /// Whether a request for a segment is running.
    busy: bool,
    /// Whether an observe request is running.
    polling: bool,
    last_poll: Option<Instant>,
    dropped: bool,
    bytes: u64,
}

/// What the tasks of a fetch report to its loop.
enum Event {
    Connected(usize, Result<Connection, String>),
    Holds(usize, Result<ChunkRanges, String>),
    Segment(usize, u64, Result<u64, PeerFailure>),
}

pub(crate) async fn fetch(
    endpoint: &Endpoint,
    store: &FsStore,
    meta: &FileMeta,
    mut source: watch::Receiver<Peers>,
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
    let segments = total_chunks.div_ceil(SEGMENT_CHUNKS);
    // Segments not yet whole here and not being fetched.
    let mut pending: BTreeSet<u64> = BTreeSet::new();
    let local = store.remote().local(hash).await.map_err(|e| store_error(&e))?;
    if !local.is_complete() {
        for segment in 0..segments {
            if !segment_whole(store, hash, segment, total_chunks).await.map_err(|e| store_error(&e))? {
                pending.insert(segment);
            }
        }
    }
    let own = endpoint.id();
    let mut peers: Vec<Peer> = Vec::new();
    let mut by_id: HashMap<EndpointId, usize> = HashMap::new();
    let mut tasks: JoinSet<Event> = JoinSet::new();
    let mut in_flight = 0usize;
    let mut last_progress = Instant::now();
    let mut last_failure = String::from("no peer given");
    let mut source_open = true;
    let mut named = Some(source.borrow_and_update().clone());
    // The segment last asked of a seed: the next one continues its run.
    let mut last_seed_segment: Option<u64> = None;
    // Segments a seed declined lately (it sent them to another peer).
    let mut declined: HashMap<u64, Instant> = HashMap::new();

    loop {
        // Peers the tracker named since the last turn.
        for (address, seed) in named.take().into_iter().flat_map(|named| {
            let seeds = named.seeds.into_iter().map(|address| (address, true));
            named.peers.into_iter().map(|address| (address, false)).chain(seeds).collect::<Vec<_>>()
        }) {
            let id = address.endpoint_addr().id;
            if id == own || by_id.contains_key(&id) {
                continue;
            }
            let index = peers.len();
            by_id.insert(id, index);
            peers.push(Peer {
                address: address.clone(),
                seed,
                connection: None,
                has: vec![false; segments as usize],
                answered: false,
                complete: false,
                busy: false,
                polling: false,
                last_poll: None,
                dropped: false,
                bytes: 0,
            });
            if pending.is_empty() {
                continue;
            }
            let endpoint = endpoint.clone();
            let limit = options.stall_timeout.min(CONNECT_TIMEOUT);
            tasks.spawn(async move {
                let connection = match timeout(limit, endpoint.connect(address.endpoint_addr(), iroh_blobs::ALPN)).await
                {
                    Ok(Ok(connection)) => Ok(connection),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no connection within {limit:?}")),
                };
                Event::Connected(index, connection)
            });
        }

        // Ask connected, incomplete peers what they hold, now and then.
        let now = Instant::now();
        for (index, peer) in peers.iter_mut().enumerate() {
            let Some(connection) = &peer.connection else { continue };
            if peer.dropped || peer.complete || peer.polling || peer.last_poll.is_some_and(|at| now - at < POLL_EVERY) {
                continue;
            }
            peer.polling = true;
            peer.last_poll = Some(now);
            let (store, connection, stall) = (store.clone(), connection.clone(), options.stall_timeout);
            tasks.spawn(async move { Event::Holds(index, holds(&store, connection, hash, stall).await) });
        }

        // Hand each idle peer a segment it holds.
        let order_key = |segment: u64| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (own.as_bytes(), segment).hash(&mut hasher);
            hasher.finish()
        };
        let idle = |peer: &Peer| !peer.dropped && !peer.busy && peer.connection.is_some();
        if !pending.is_empty() && peers.iter().any(idle) {
            // How many live peers (seeds aside) hold each segment.
            let mut holders = vec![0usize; segments as usize];
            for peer in peers.iter().filter(|peer| !peer.seed && !peer.dropped) {
                for (count, has) in holders.iter_mut().zip(&peer.has) {
                    *count += usize::from(*has);
                }
            }
            // Seeds wait until every other live peer has said what it holds.
            let peers_known = peers.iter().all(|peer| peer.seed || peer.dropped || peer.answered);
            for (index, peer) in peers.iter_mut().enumerate() {
                if pending.is_empty() {
                    break;
                }
                if !idle(peer) || (peer.seed && !peers_known) {
                    continue;
                }
                let choice = if peer.seed {
                    declined.retain(|_, at| at.elapsed() < DECLINED_WAIT);
                    let askable: BTreeSet<u64> =
                        pending.iter().copied().filter(|segment| !declined.contains_key(segment)).collect();
                    seed_choice(&askable, &holders, last_seed_segment, &order_key)
                } else {
                    peer_choice(&pending, &holders, &peer.has, &order_key)
                };
                let Some(segment) = choice else { continue };
                if peer.seed {
                    last_seed_segment = Some(segment);
                }
                pending.remove(&segment);
                let missing = store
                    .remote()
                    .local_for_request(GetRequest::blob_ranges(hash, segment_ranges(segment, total_chunks)))
                    .await
                    .map_err(|e| store_error(&e))?;
                if missing.is_complete() {
                    continue;
                }
                peer.busy = true;
                in_flight += 1;
                let request = missing.missing();
                let (store, stall) = (store.clone(), options.stall_timeout);
                let connection = peer.connection.clone().expect("checked above");
                tasks.spawn(async move {
                    Event::Segment(index, segment, get_segment(&store, connection, request, stall).await)
                });
            }
        }

        if pending.is_empty() && in_flight == 0 {
            break;
        }
        if in_flight == 0 && last_progress.elapsed() >= options.stall_timeout {
            let missing_bytes = missing_bytes(store, hash, meta.size()).await;
            return Err(Error::NoPeerCompleted { meta: *meta, missing_bytes, reason: last_failure });
        }
        // Every peer known has been dropped: the tracker may name new ones,
        // but the caller's own path is surer than waiting for them.
        let all_dropped = peers.iter().all(|peer| peer.dropped);
        if all_dropped && tasks.is_empty() && (!source_open || !peers.is_empty()) {
            let missing_bytes = missing_bytes(store, hash, meta.size()).await;
            return Err(Error::NoPeerCompleted { meta: *meta, missing_bytes, reason: last_failure });
        }

        let tick = tokio::time::sleep(POLL_EVERY.min(options.stall_timeout));
        tokio::select! {
            changed = source.changed(), if source_open => {
                match changed {
                    Ok(()) => named = Some(source.borrow_and_update().clone()),
                    Err(_) => source_open = false,
                }
            }
            Some(event) = tasks.join_next(), if !tasks.is_empty() => {
                match event.expect("fetch tasks do not panic") {
                    Event::Connected(index, Ok(connection)) => peers[index].connection = Some(connection),
                    Event::Connected(index, Err(reason)) => {
                        tracing::debug!(peer = %peers[index].address, %reason, "peer unreachable");
                        last_failure = format!("{}: {reason}", peers[index].address);
                        peers[index].dropped = true;
                        report.peers_dropped_for_failure.push(peers[index].address.clone());
                    }
                    Event::Holds(index, Ok(ranges)) => {
                        let peer = &mut peers[index];
                        peer.polling = false;
                        peer.answered = true;
                        peer.has = (0..segments).map(|segment| holds_segment(&ranges, segment, total_chunks)).collect();
                        peer.complete = peer.has.iter().all(|has| *has);
                    }
                    Event::Holds(index, Err(reason)) => {
                        // A peer that cannot say what it holds (it does not
                        // serve the file) is of no use.
                        drop_peer(&mut peers[index], &mut report.peers_dropped_for_failure, &reason);
                        last_failure = format!("{}: {reason}", peers[index].address);
                    }
                    Event::Segment(index, segment, outcome) => {
                        in_flight -= 1;
                        peers[index].busy = false;
                        match outcome {
                            Ok(bytes) => {
                                peers[index].bytes += bytes;
                                last_progress = Instant::now();
                            }
                            Err(PeerFailure::Declined) => {
                                pending.insert(segment);
                                declined.insert(segment, Instant::now());
                            }
                            Err(failure) => {
                                pending.insert(segment);
                                let (list, reason) = match failure {
                                    PeerFailure::BadData(reason) => (&mut report.peers_dropped_for_bad_data, reason),
                                    PeerFailure::Other(reason) => (&mut report.peers_dropped_for_failure, reason),
                                    PeerFailure::Declined => unreachable!("handled above"),
                                };
                                tracing::warn!(peer = %peers[index].address, %reason, "dropped a peer");
                                last_failure = format!("{}: {reason}", peers[index].address);
                                drop_peer(&mut peers[index], list, &reason);
                            }
                        }
                    }
                }
            }
            _ = tick => {}
        }
    }
    for peer in &peers {
        if let Some(connection) = &peer.connection {
            connection.close(0u32.into(), b"done");
        }
    }
    tasks.shutdown().await;

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
    // A file served while fetching stays in the store (peers are asking for
    // it); otherwise it moves out of the store.
    let mode = if options.share_while_fetching { ExportMode::Copy } else { ExportMode::TryReference };
    store
        .export_with_opts(ExportOptions { hash, mode, target: dest.clone() })
        .finish()
        .await
        .map_err(|e| store_error(&e))?;
    report.bytes_from_each_peer =
        peers.into_iter().filter(|peer| peer.bytes > 0).map(|peer| (peer.address, peer.bytes)).collect();
    Ok(report)
}

/// The segment to ask a (non-seed) peer for: one it holds and this peer
/// lacks, the rarest among the live peers, ties in this peer's own order.
fn peer_choice(
    pending: &BTreeSet<u64>,
    holders: &[usize],
    has: &[bool],
    order_key: &impl Fn(u64) -> u64,
) -> Option<u64> {
    pending
        .iter()
        .copied()
        .filter(|&segment| has[segment as usize])
        .min_by_key(|&segment| (holders[segment as usize], order_key(segment)))
}

/// The segment to ask a seed for: only one no live peer holds. The one
/// after the last asked of a seed if it is such (a run, walked forward),
/// else a point of the longest run of such segments drawn in this peer's
/// own order (ties too): peers starting together start at different
/// points and walk forward until they meet what another holds, so they
/// rarely ask the seed for the same piece before they can see each other
/// holding it.
fn seed_choice(
    pending: &BTreeSet<u64>,
    holders: &[usize],
    last: Option<u64>,
    order_key: &impl Fn(u64) -> u64,
) -> Option<u64> {
    let free = |segment: u64| pending.contains(&segment) && holders[segment as usize] == 0;
    if let Some(next) = last.map(|last| last + 1)
        && (next as usize) < holders.len()
        && free(next)
    {
        return Some(next);
    }
    // Runs of free segments: (length, start), the longest first.
    let mut best: Option<(u64, u64)> = None;
    let mut run_start = None;
    for segment in 0..=holders.len() as u64 {
        let is_free = (segment as usize) < holders.len() && free(segment);
        match (is_free, run_start) {
            (true, None) => run_start = Some(segment),
            (false, Some(start)) => {
                let length = segment - start;
                let better = match best {
                    None => true,
                    Some((best_length, best_start)) => {
                        (length, std::cmp::Reverse(order_key(start)))
                            > (best_length, std::cmp::Reverse(order_key(best_start)))
                    }
                };
                if better {
                    best = Some((length, start));
                }
                run_start = None;
            }
            _ => {}
        }
    }
    best.and_then(|(length, start)| (start..start + length).min_by_key(|segment| order_key(*segment)))
}

fn drop_peer(peer: &mut Peer, list: &mut Vec<PeerAddress>, reason: &str) {
    if peer.dropped {
        return;
    }
    tracing::debug!(peer = %peer.address, %reason, "peer dropped");
    peer.dropped = true;
    peer.polling = false;
    if let Some(connection) = peer.connection.take() {
        connection.close(0u32.into(), b"dropped");
    }
    list.push(peer.address.clone());
}

/// The chunks of one segment; the last segment runs to the file's last
/// chunk, whose hash also proves the file's size.
fn segment_ranges(segment: u64, total_chunks: u64) -> ChunkRanges {
    let start = segment * SEGMENT_CHUNKS;
    let end = (start + SEGMENT_CHUNKS).min(total_chunks);
    ChunkRanges::from(ChunkNum(start)..ChunkNum(end))
}

fn holds_segment(holds: &ChunkRanges, segment: u64, total_chunks: u64) -> bool {
    segment_ranges(segment, total_chunks).is_subset(holds)
}

/// Whether the local store already holds all of `segment`.
async fn segment_whole(store: &FsStore, hash: Hash, segment: u64, total_chunks: u64) -> Result<bool, String> {
    let request = GetRequest::blob_ranges(hash, segment_ranges(segment, total_chunks));
    let local = store.remote().local_for_request(request).await.map_err(|e| e.to_string())?;
    Ok(local.is_complete())
}

/// What a peer holds now: the first answer to an observe request.
async fn holds(store: &FsStore, connection: Connection, hash: Hash, stall: Duration) -> Result<ChunkRanges, String> {
    use tokio_stream::StreamExt as _;
    let mut answers = std::pin::pin!(store.remote().observe(connection, ObserveRequest::new(hash)));
    match timeout(stall, answers.next()).await {
        Err(_) => Err(format!("no answer for {stall:?}")),
        Ok(None) => Err("the peer did not say what it holds".into()),
        Ok(Some(Err(error))) => Err(error.to_string()),
        Ok(Some(Ok(bitfield))) => Ok(bitfield.ranges),
    }
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
    if error.iroh_error_code() == Some(iroh_blobs::protocol::ERR_LIMIT) {
        return PeerFailure::Declined;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(segment: u64) -> u64 {
        segment
    }

    #[test]
    fn a_peer_is_asked_for_the_rarest_segment_it_holds() {
        let pending: BTreeSet<u64> = [0, 1, 2, 3].into();
        let holders = [3, 1, 2, 1];
        assert_eq!(peer_choice(&pending, &holders, &[true, true, true, true], &identity), Some(1));
        // Ties go by the peer's own order; what it lacks is never asked of it.
        assert_eq!(peer_choice(&pending, &holders, &[true, false, true, true], &|s| 10 - s), Some(3));
        assert_eq!(peer_choice(&pending, &holders, &[false; 4], &identity), None);
        assert_eq!(peer_choice(&[2].into(), &holders, &[true; 4], &identity), Some(2));
    }

    #[test]
    fn a_seed_is_asked_only_for_what_no_peer_holds_walking_runs_and_splitting_the_longest() {
        // 10 segments, none held: a point drawn in the peer's own order.
        let pending: BTreeSet<u64> = (0..10).collect();
        let none = [0usize; 10];
        let from_7 = |s: u64| (s + 10 - 7) % 10;
        assert_eq!(seed_choice(&pending, &none, None, &from_7), Some(7));
        assert_eq!(seed_choice(&pending, &none, None, &identity), Some(0));
        // Then the run goes on forward.
        assert_eq!(seed_choice(&pending, &none, Some(7), &from_7), Some(8));
        // A next segment held by a peer (or no longer pending) ends the run:
        // a point of the longest free run instead (0..4 here, not 7..10).
        let mut holders = none;
        holders[4] = 1;
        holders[5] = 2;
        holders[6] = 1;
        assert_eq!(seed_choice(&pending, &holders, Some(3), &from_7), Some(0));
        assert_eq!(seed_choice(&pending, &holders, Some(3), &|s| 10 - s), Some(3));
        let pending: BTreeSet<u64> = pending.into_iter().filter(|s| *s != 7).collect();
        assert_eq!(seed_choice(&pending, &holders, Some(6), &identity), Some(0));
        // Everything held somewhere: the seed is not asked.
        assert_eq!(seed_choice(&pending, &[1; 10], None, &identity), None);
        // Runs of one length: the peer's own order picks.
        let two: BTreeSet<u64> = [1, 3].into();
        assert_eq!(seed_choice(&two, &[0; 5], None, &identity), Some(1));
        assert_eq!(seed_choice(&two, &[0; 5], None, &|s| 10 - s), Some(3));
    }
}
