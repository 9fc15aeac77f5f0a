//! Input files of the tasks the worker holds: which are missing, their
//! downloads from the coordinator (in the background, beside the calls, at
//! most [`MAX_FETCHES`] at once, resumed from what an interrupted one left,
//! each file verified before any task sees it), the file cache's budget, a
//! task's `/input` and `/output` directories, and the output files read back
//! into its report. The files on disk are `crate::files`'s.

use std::collections::HashSet;
use std::path::PathBuf;

use quorum_proto::v1::{Assignment, OutputFile};
use tokio::io::AsyncWriteExt as _;
use tokio::time::Instant;
use tonic::{Code, Status};
use tracing::{debug, info, warn};

use super::*;
use crate::client::is_bad_request;
use crate::files::{FileCache, FileError};
use crate::reports::error_report;

/// Most input files downloaded at once, over all coordinators.
const MAX_FETCHES: usize = 2;
/// A download that receives nothing for this long is cut off, to resume later.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a download did not complete.
#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
    #[error("download failed: {:?}: {}", .0.code(), .0.message())]
    Status(#[from] Status),
    #[error("the download stalled (nothing for {}s)", STALL_TIMEOUT.as_secs())]
    Stalled,
    #[error("the coordinator sent {received} bytes of a file announced as {announced}")]
    SizeMismatch { announced: u64, received: u64 },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("the file writer panicked")]
    Panicked,
}

impl FetchError {
    /// Whether trying again may succeed. A digest mismatch is worth one more
    /// try from zero (the part was discarded), as is a stall or a server in trouble.
    fn is_transient(&self) -> bool {
        match self {
            FetchError::Status(status) => !is_bad_request(status.code()),
            FetchError::Stalled | FetchError::SizeMismatch { .. } | FetchError::Panicked => true,
            FetchError::File(FileError::DigestMismatch { .. } | FileError::Io { .. }) => true,
            FetchError::File(FileError::InvalidDigest(_) | FileError::InvalidName(_)) => false,
        }
    }
}

/// How long a peer may send nothing before it is dropped from a download
/// (and how long a download from peers may get nothing at all).
const PEER_STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How soon a download from peers asks the coordinator for peers again
/// (sharing hosts that started fetching the file since): at first soon, as
/// hosts that start together learn of each other only so, then twice as
/// long each time, up to [`PEER_REFRESH_MAX`].
const PEER_REFRESH: Duration = Duration::from_millis(500);
const PEER_REFRESH_MAX: Duration = Duration::from_secs(8);

/// Starts the peer-to-peer engine (`STATE_DIR/p2p`): serving with
/// `--share-files`, fetching only without. A worker whose engine cannot
/// start (the address is taken...) says why and fetches from the coordinator.
pub(super) async fn start_swarm(config: &crate::Config) -> Option<Arc<quorum_p2p::Swarm>> {
    let swarm_config = quorum_p2p::SwarmConfig {
        state_dir: config.state_dir.join("p2p"),
        listen_addr: config.share_listen,
        upload_cap: config.share_upload_bytes_per_sec.map(quorum_p2p::UploadCap::new),
        serve: config.share_files,
        serve_once: None,
    };
    match quorum_p2p::Swarm::start(swarm_config).await {
        Ok(swarm) => {
            if config.share_files {
                info!(peer = %swarm.address(), "sharing input files with other volunteers");
            }
            Some(Arc::new(swarm))
        }
        Err(error) => {
            warn!(%error, "cannot start the peer-to-peer engine: input files come from the coordinator only");
            None
        }
    }
}

/// Where a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Peers,
    Coordinator,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Peers => "peers",
            Source::Coordinator => "coordinator",
        }
    }
}

/// Downloads input file `digest` (`size` bytes) into the cache: from the
/// peers the coordinator names, when it names some and the file has a
/// p2p description, else (or when they fail) from the coordinator, resuming
/// what a previous attempt left; returns its size once its SHA-256 verified.
/// With `share`, the file is then served to peers.
async fn fetch_file(
    mut client: Client,
    cache: FileCache,
    digest: String,
    size: u64,
    p2p: Option<(Arc<quorum_p2p::Swarm>, quorum_p2p::FileMeta)>,
    share: bool,
) -> Result<Downloaded, FetchError> {
    let started = Instant::now();
    let mut got = None;
    if let Some((swarm, meta)) = &p2p {
        match from_peers(&mut client, &cache, &digest, swarm, meta, share).await {
            Ok(Some((size, from_seeds))) => got = Some((size, Source::Peers, from_seeds)),
            Ok(None) => {}
            Err(error) => {
                warn!(%digest, %error, "cannot get input file from peers: downloading it from the coordinator")
            }
        }
    }
    let (size, source, from_coordinator) = match got {
        Some(got) => got,
        None => {
            let (size, received) = from_coordinator(client, cache.clone(), digest.clone(), size).await?;
            (size, Source::Coordinator, received)
        }
    };
    if let (true, Some((swarm, meta))) = (share, &p2p) {
        let path = cache.path(&digest)?;
        if let Err(error) = swarm.seed(meta, &path).await {
            warn!(%digest, %error, "cannot share an input file with peers");
        }
    }
    Ok(Downloaded { size, source, from_coordinator, took: started.elapsed() })
}

/// A download that completed.
#[derive(Debug)]
pub(super) struct Downloaded {
    pub size: u64,
    pub source: Source,
    /// Bytes of it the coordinator sent (by gRPC, or as the swarm's seed).
    pub from_coordinator: u64,
    pub took: Duration,
}

/// The file from peers, if the coordinator names any (`None`: neither a
/// peer nor a seed holds it), with the bytes the seeds sent. The
/// coordinator is asked for peers again soon, then less often, while the
/// download runs ([`PEER_REFRESH`]). With `share`, the parts
/// verified are served to other peers as they arrive.
async fn from_peers(
    client: &mut Client,
    cache: &FileCache,
    digest: &str,
    swarm: &quorum_p2p::Swarm,
    meta: &quorum_p2p::FileMeta,
    share: bool,
) -> Result<Option<(u64, u64)>, String> {
    let first = find_peers(client, digest).await?;
    if first.peers.is_empty() && first.seeds.is_empty() {
        return Ok(None);
    }
    let first_seeds = first.seeds.clone();
    let (named, source) = tokio::sync::watch::channel(first);
    let refresher = {
        let (mut client, digest) = (client.clone(), digest.to_owned());
        tokio::spawn(async move {
            let mut every = PEER_REFRESH;
            loop {
                tokio::time::sleep(every).await;
                every = (every * 2).min(PEER_REFRESH_MAX);
                match find_peers(&mut client, &digest).await {
                    Ok(peers) => {
                        named.send_replace(peers);
                    }
                    Err(error) => debug!(%digest, %error, "cannot ask for peers again"),
                }
            }
        })
    };
    let dest = cache.peer_download_path(digest).map_err(|error| error.to_string())?;
    let options = quorum_p2p::FetchOptions { stall_timeout: PEER_STALL_TIMEOUT, share_while_fetching: share };
    let report = swarm.fetch(meta, source, &dest, options).await;
    refresher.abort();
    let report = report.map_err(|error| error.to_string())?;
    for liar in &report.peers_dropped_for_bad_data {
        warn!(%digest, peer = %liar, "a peer sent bytes that do not verify: dropped");
    }
    let seeds = source_seeds(&report, &first_seeds);
    let (c, d) = (cache.clone(), digest.to_owned());
    let size = tokio::task::spawn_blocking(move || c.adopt(&d, &dest))
        .await
        .map_err(|_| "verifying the file panicked".to_string())?
        .map_err(|error| error.to_string())?;
    Ok(Some((size, seeds)))
}

/// The bytes of a fetch that came from seeds (the coordinator).
fn source_seeds(report: &quorum_p2p::FetchReport, seeds: &[quorum_p2p::PeerAddress]) -> u64 {
    report.bytes_from_each_peer.iter().filter(|(peer, _)| seeds.contains(peer)).map(|(_, bytes)| bytes).sum()
}

/// The peers and seeds the coordinator names for file `digest`.
async fn find_peers(client: &mut Client, digest: &str) -> Result<quorum_p2p::Peers, String> {
    let named = client.find_peers(digest).await.map_err(|status| format!("FindPeers: {}", status.message()))?;
    let parse = |list: Vec<Vec<u8>>| -> Vec<quorum_p2p::PeerAddress> {
        list.iter().filter_map(|bytes| quorum_p2p::PeerAddress::from_bytes(bytes).ok()).collect()
    };
    Ok(quorum_p2p::Peers { peers: parse(named.peers), seeds: parse(named.seeds) })
}

/// Downloads input file `digest` (`size` bytes) from the coordinator, from
/// what a previous attempt left; returns its size once verified, and the
/// bytes received this time.
async fn from_coordinator(
    mut client: Client,
    cache: FileCache,
    digest: String,
    size: u64,
) -> Result<(u64, u64), FetchError> {
    let blocking = |f: Box<dyn FnOnce() -> Result<u64, FileError> + Send>| async move {
        tokio::task::spawn_blocking(f).await.map_err(|_| FetchError::Panicked)?.map_err(FetchError::from)
    };
    let (c, d) = (cache.clone(), digest.clone());
    let mut offset = blocking(Box::new(move || c.partial_len(&d))).await?;
    if offset > size {
        offset = 0;
    }
    let (c, d) = (cache.clone(), digest.clone());
    let part = tokio::task::spawn_blocking(move || c.append(&d, offset)).await.map_err(|_| FetchError::Panicked)??;
    let mut part = tokio::fs::File::from_std(part);
    if offset < size || size == 0 {
        let mut stream = client.download_file(&digest, offset).await?;
        let mut received = offset;
        let mut announced = None;
        loop {
            let chunk = match tokio::time::timeout(STALL_TIMEOUT, stream.message()).await {
                Err(_) => return Err(FetchError::Stalled),
                Ok(chunk) => chunk?,
            };
            let Some(chunk) = chunk else { break };
            let total = *announced.get_or_insert(chunk.total_size);
            received += chunk.data.len() as u64;
            if total != size || received > size {
                return Err(FetchError::SizeMismatch { announced: size, received: received.max(total) });
            }
            part.write_all(&chunk.data)
                .await
                .map_err(|source| FileError::Io { path: PathBuf::from(&digest), source })?;
        }
        if received != size {
            part.flush().await.map_err(|source| FileError::Io { path: PathBuf::from(&digest), source })?;
            return Err(FetchError::SizeMismatch { announced: size, received });
        }
    }
    part.flush().await.map_err(|source| FileError::Io { path: PathBuf::from(&digest), source })?;
    drop(part);
    let (c, d) = (cache, digest);
    let size = blocking(Box::new(move || c.finish(&d))).await?;
    Ok((size, size.saturating_sub(offset)))
}

impl Worker {
    /// The input files of every task the worker holds (queued or running):
    /// never evicted from the cache.
    fn needed_files(&self) -> HashSet<String> {
        let queued = self.queue.values().map(|q| &q.assignment);
        let running = self.running.values().map(|r| &r.assignment);
        queued.chain(running).flat_map(|a| a.files.iter().map(|f| f.digest.clone())).collect()
    }

    /// The cached files a work request lists (locality scheduling), at most
    /// 1000; none with `--no-locality` (for comparison in benchmarks).
    pub(super) fn cached_file_list(&self) -> Vec<String> {
        if !self.config.locality {
            return Vec::new();
        }
        let mut list: Vec<String> = self.cached_files.iter().cloned().collect();
        list.sort();
        list.truncate(1000);
        list
    }

    /// This worker's peer address, for work requests, when it shares files.
    pub(super) fn peer_address(&self) -> Vec<u8> {
        match (&self.swarm, self.config.share_files) {
            (Some(swarm), true) => swarm.address().to_bytes(),
            _ => Vec::new(),
        }
    }

    /// Whether every input file of `assignment` is cached.
    pub(super) fn files_ready(&self, assignment: &Assignment) -> bool {
        assignment.files.iter().all(|file| self.cached_files.contains(&file.digest))
    }

    /// Starts the downloads queued tasks need, oldest task first, within
    /// [`MAX_FETCHES`], from the task's own coordinator.
    pub(super) fn launch_fetches(&mut self) {
        if self.fetching.len() >= MAX_FETCHES {
            return;
        }
        let mut queued: Vec<(&Key, &Queued)> = self.queue.iter().collect();
        queued.sort_by_key(|(_, q)| q.seq);
        let mut wanted: Vec<(usize, String, u64, Vec<u8>)> = Vec::new();
        for (key, q) in queued {
            for file in &q.assignment.files {
                let known = self.cached_files.contains(&file.digest)
                    || self.fetching.contains(&file.digest)
                    || self.unusable_files.contains_key(&file.digest)
                    || wanted.iter().any(|(_, digest, ..)| *digest == file.digest);
                let due = self.fetch_retry.get(&file.digest).is_none_or(Retry::due);
                if !known && due {
                    wanted.push((key.0, file.digest.clone(), file.size, file.p2p_meta.clone()));
                }
            }
        }
        for (index, digest, size, meta) in wanted {
            if self.fetching.len() >= MAX_FETCHES {
                break;
            }
            let attachment = &self.attachments[index];
            if attachment.identity.is_none() || attachment.detached {
                continue;
            }
            let (client, cache, calls) = (attachment.client().clone(), self.state.file_cache(), self.calls_tx.clone());
            self.fetching.insert(digest.clone());
            debug!(server = %attachment.server, %digest, size, "downloading input file");
            let meta = quorum_p2p::FileMeta::from_bytes(&meta).ok();
            let p2p = self.swarm.clone().zip(meta);
            let share = self.config.share_files;
            if let (true, Some((_, meta))) = (share, &p2p) {
                self.seeded.insert(digest.clone(), *meta);
            }
            tokio::spawn(async move {
                let result = fetch_file(client, cache, digest.clone(), size, p2p, share).await;
                // The receiver is gone only when the worker has stopped.
                let _ = calls.send((index, Answer::Fetched { digest, result }));
            });
        }
    }

    /// Handles the end of a download.
    pub(super) async fn fetched(&mut self, index: usize, digest: String, result: Result<Downloaded, FetchError>) {
        self.fetching.remove(&digest);
        let server = self.attachments[index].server.clone();
        match result {
            Ok(Downloaded { size, source, from_coordinator, took }) => {
                let seconds = format!("{:.1}", took.as_secs_f64());
                info!(server = %server, %digest, size, from = %source.as_str(), from_coordinator, %seconds, "downloaded input file");
                self.fetch_retry.remove(&digest);
                self.cached_files.insert(digest);
                self.trim_file_cache().await;
            }
            Err(FetchError::Status(status)) if status.code() == Code::Unauthenticated => {
                self.forget_identity(index);
            }
            Err(error) if error.is_transient() => {
                let max = self.config.max_backoff;
                let delay = self.fetch_retry.entry(digest.clone()).or_insert_with(|| Retry::new(max)).failed();
                warn!(server = %server, %digest, error = %error, retry_in = ?delay, "cannot download input file");
            }
            Err(error) => {
                warn!(server = %server, %digest, error = %error, "cannot download input file: giving up on it");
                self.unusable_files.insert(digest, error.to_string());
            }
        }
    }

    /// When the next download retry is due, if one waits.
    pub(super) fn next_fetch_retry(&self) -> Option<Instant> {
        if self.fetch_retry.is_empty() {
            return None;
        }
        let needed = self.needed_files();
        self.fetch_retry
            .iter()
            .filter(|(digest, _)| needed.contains(*digest) && !self.fetching.contains(*digest))
            .map(|(_, retry)| retry.not_before)
            .min()
    }

    /// Ends the queued tasks whose files cannot be had: an error report
    /// naming the file when a download failed for good; a task given back
    /// when its files cannot fit in the file cache's budget or on the disk
    /// (the host's limit, not the app's fault).
    pub(super) async fn refuse_unfetchable(&mut self) -> anyhow::Result<()> {
        if self.queue.values().all(|q| q.assignment.files.is_empty()) {
            return Ok(());
        }
        let budget = self.config.file_cache_bytes;
        let free = crate::files::free_bytes(&self.config.state_dir);
        let mut refused = Vec::new();
        for (key, q) in &self.queue {
            if let Some((file, why)) =
                q.assignment.files.iter().find_map(|file| self.unusable_files.get(&file.digest).map(|why| (file, why)))
            {
                refused.push((*key, format!("cannot download input file {:?}: {why}", file.name), false));
                continue;
            }
            let total: u64 = q.assignment.files.iter().map(|f| f.size).sum();
            let missing: u64 =
                q.assignment.files.iter().filter(|f| !self.cached_files.contains(&f.digest)).map(|f| f.size).sum();
            if total > budget {
                refused.push((
                    *key,
                    format!(
                        "refused: its input files take {} MiB, more than this worker's file cache may hold \
                         (--file-cache-mb {})",
                        total.div_ceil(1 << 20),
                        budget >> 20
                    ),
                    true,
                ));
            } else if free.is_some_and(|free| missing > free.saturating_sub(DISK_MARGIN_BYTES)) {
                refused.push((
                    *key,
                    format!(
                        "refused: its input files need {} MiB more on disk, and the state directory's disk has {} MiB free",
                        missing.div_ceil(1 << 20),
                        free.unwrap_or(0) >> 20
                    ),
                    true,
                ));
            }
        }
        for (key, message, given_back) in refused {
            let queued = self.queue.remove(&key).expect("key from the queue");
            warn!(server = %self.attachments[key.0].server, result_id = key.1, "{message}");
            let report = ResultReport { given_back, ..error_report(key.1, message) };
            self.record_finished(vec![Completed::unrun(key.0, queued.assignment.app_digest, report)]).await?;
        }
        Ok(())
    }

    /// With `--share-files`, serves again (after a restart) the cached
    /// input files of the tasks held: their descriptions are in the tasks'
    /// assignments. Each is hashed again as it is seeded.
    pub(super) async fn seed_held_files(&mut self) {
        let Some(swarm) = self.swarm.clone().filter(|_| self.config.share_files) else { return };
        let queued = self.queue.values().map(|q| &q.assignment);
        let running = self.running.values().map(|r| &r.assignment);
        let mut files: Vec<(String, quorum_p2p::FileMeta)> = queued
            .chain(running)
            .flat_map(|a| a.files.iter())
            .filter(|file| self.cached_files.contains(&file.digest) && !self.seeded.contains_key(&file.digest))
            .filter_map(|file| Some((file.digest.clone(), quorum_p2p::FileMeta::from_bytes(&file.p2p_meta).ok()?)))
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files.dedup_by(|a, b| a.0 == b.0);
        let cache = self.state.file_cache();
        for (digest, meta) in files {
            let seeded = match cache.path(&digest) {
                Ok(path) => swarm.seed(&meta, &path).await.map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match seeded {
                Ok(()) => {
                    debug!(%digest, "sharing a cached input file again");
                    self.seeded.insert(digest, meta);
                }
                Err(error) => warn!(%digest, %error, "cannot share a cached input file"),
            }
        }
    }

    /// Keeps the file cache within its budget (off the async threads).
    pub(super) async fn trim_file_cache(&mut self) {
        let (cache, needed, budget) = (self.state.file_cache(), self.needed_files(), self.config.file_cache_bytes);
        match tokio::task::spawn_blocking(move || cache.trim(&needed, budget)).await {
            Ok(Ok(evicted)) => {
                for digest in evicted {
                    debug!(%digest, "evicted input file from the cache");
                    self.cached_files.remove(&digest);
                    if let (Some(meta), Some(swarm)) = (self.seeded.remove(&digest), &self.swarm)
                        && let Err(error) = swarm.unseed(&meta).await
                    {
                        warn!(%digest, %error, "cannot stop sharing an evicted file");
                    }
                }
            }
            Ok(Err(error)) => warn!(error = %error, "cannot trim the file cache"),
            Err(error) => warn!(error = %error, "the file cache trimmer panicked"),
        }
    }

    /// Lays out the task's `/input` and `/output` (see `files::TaskFiles`):
    /// the directories to preopen, or why the task cannot run.
    pub(super) async fn prepare_files(
        &mut self,
        server: &str,
        result_id: i64,
        assignment: &Assignment,
    ) -> Result<(Option<PathBuf>, Option<PathBuf>), String> {
        let output = assignment.limits.is_some_and(|limits| limits.output_files_bytes > 0);
        if assignment.files.is_empty() && !output {
            return Ok((None, None));
        }
        let inputs: Vec<(String, String)> =
            assignment.files.iter().map(|file| (file.name.clone(), file.digest.clone())).collect();
        let (state, server) = (self.state.clone(), server.to_owned());
        let has_inputs = !inputs.is_empty();
        let prepared = tokio::task::spawn_blocking(move || {
            let cache = state.file_cache();
            for (_, digest) in &inputs {
                cache.touch(digest);
            }
            let task = state.task_files(&server, result_id);
            task.prepare(&cache, &inputs, output).map(|()| task)
        })
        .await
        .map_err(|_| "preparing the task's files panicked".to_string())?
        .map_err(|error| format!("cannot prepare the task's input files: {error}"))?;
        Ok((has_inputs.then(|| prepared.input_dir()), output.then(|| prepared.output_dir())))
    }

    /// The output files a successful task wrote, read into its report; a
    /// task whose outputs break the project's limit becomes a client error.
    pub(super) async fn attach_outputs(&mut self, server: &str, report: &mut ResultReport, assignment: &Assignment) {
        let limit = assignment.limits.map_or(0, |limits| limits.output_files_bytes);
        if limit == 0 || report.outcome() != quorum_proto::v1::ReportedOutcome::Success {
            return;
        }
        let task = self.state.task_files(server, report.result_id);
        match tokio::task::spawn_blocking(move || task.read_outputs(limit)).await {
            Ok(Ok(files)) => {
                report.output_files = files.into_iter().map(|(name, data)| OutputFile { name, data }).collect();
            }
            Ok(Err(message)) => fail(report, message),
            Err(_) => fail(report, "reading the output files panicked".to_string()),
        }
    }
}

/// Turns a success into a client error (its fuel, run time and stderr kept).
fn fail(report: &mut ResultReport, message: String) {
    report.outcome = quorum_proto::v1::ReportedOutcome::ClientError.into();
    report.output.clear();
    report.output_files.clear();
    report.error_message = message;
}

/// Disk space left free for the volunteer whatever the tasks need.
const DISK_MARGIN_BYTES: u64 = 512 << 20;
