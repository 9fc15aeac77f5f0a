//! The gRPC side of files: input files named in submissions, uploads to the
//! file store (`Projects.UploadFile`, `FindFiles`), downloads by hosts
//! (`Scheduler.DownloadFile`), and output files in reports and canonical
//! results. The rules are in `domain::files`; the bytes in `file_store`.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;

use quorum_proto::v1 as pb;
use tokio_stream::Stream;
use tonic::{Status, Streaming};

use super::Context;
use super::status::invalid;
use crate::domain::access::{Action, Role};
use crate::domain::files::{FileError, FileName, InputFile, InputFiles, OutputFile};
use crate::domain::names::ProjectName;
use crate::domain::{Digest, HostId, app};
use crate::file_store::{FileStore, FileStoreError};
use crate::store::{AssignedFile, ReportedFile};

/// Most digests one `FindFiles` call may ask about.
pub const MAX_FIND: usize = 10_000;

/// A stream of file chunks, as `DownloadFile` answers.
pub type FileChunkStream = Pin<Box<dyn Stream<Item = Result<pb::FileChunk, Status>> + Send>>;

/// The input files of request field `field`, checked (names, digests,
/// unique names); whether they were uploaded is the store's to check.
pub fn input_files(field: &str, files: Vec<pb::FileRef>) -> Result<InputFiles, Status> {
    let files = files
        .into_iter()
        .enumerate()
        .map(|(i, file)| {
            InputFile::parse(&file.name, &file.digest, file.size)
                .map_err(|error| invalid(&format!("{field}[{i}]"), error))
        })
        .collect::<Result<Vec<_>, Status>>()?;
    InputFiles::new(files).map_err(|error| invalid(field, error))
}

pub fn file_refs(files: Vec<AssignedFile>) -> Vec<pb::FileRef> {
    files
        .into_iter()
        .map(|AssignedFile { file, p2p_meta }| pb::FileRef {
            name: file.name.as_str().to_owned(),
            digest: file.digest.to_string(),
            size: file.size,
            p2p_meta: p2p_meta.unwrap_or_default(),
        })
        .collect()
}

/// The longest peer address a host may report (a key and a few socket addresses).
pub const MAX_PEER_ADDRESS_BYTES: usize = 1024;
/// Most peers `FindPeers` names (a BitTorrent tracker names about as many).
pub const MAX_PEERS: usize = 30;
/// How long a sharing host counts as holding a file after it last said so
/// (it says so in every work request).
pub const PEER_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// The sharing hosts holding one file: per host, its peer address and when
/// it last said it holds the file.
type Holders = HashMap<HostId, (Vec<u8>, tokio::time::Instant)>;

/// The tracker: which sharing hosts hold which files, from their work
/// requests. In the coordinator's memory (a restart forgets it until hosts
/// ask for work again; each coordinator process has its own).
#[derive(Debug, Default)]
pub struct Tracker {
    /// By file digest: per host, its peer address and when it last said so.
    holders: std::sync::Mutex<HashMap<String, Holders>>,
    /// The peer address each sharing host gave in its last work request.
    addresses: std::sync::Mutex<HashMap<HostId, Vec<u8>>>,
    /// When stale entries were last dropped (`peers` skips them meanwhile).
    pruned: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// How often the tracker drops what hosts stopped saying.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Tracker {
    /// A sharing host downloaded the file `digest`, or is fetching it from
    /// peers (it serves the parts it has verified; a peer asks it what
    /// those are first).
    pub fn announce(&self, host: HostId, digest: &str) {
        let address = self.addresses.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&host).cloned();
        if let Some(address) = address {
            self.holds(host, &address, &HashSet::from([digest.to_owned()]));
        }
    }

    /// Host `host`, reachable at `address`, holds `digests`.
    pub fn holds(&self, host: HostId, address: &[u8], digests: &HashSet<String>) {
        self.addresses.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(host, address.to_vec());
        let now = tokio::time::Instant::now();
        let mut holders = self.holders.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for digest in digests {
            holders.entry(digest.clone()).or_default().insert(host, (address.to_vec(), now));
        }
        // Forget what hosts stopped saying, now and then (a walk of everything).
        let mut pruned = self.pruned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if pruned.is_none_or(|at| now.duration_since(at) >= PRUNE_EVERY) {
            *pruned = Some(now);
            holders.retain(|_, hosts| {
                hosts.retain(|_, (_, seen)| now.duration_since(*seen) < PEER_TTL);
                !hosts.is_empty()
            });
        }
    }

    /// The peers holding `digest`, `asking` excluded, at most
    /// [`MAX_PEERS`]: in an order of the asking host's own, so that in a
    /// large swarm hosts are handed different peers and spread the load.
    pub fn peers(&self, digest: &str, asking: HostId) -> Vec<Vec<u8>> {
        use std::hash::{Hash as _, Hasher as _};
        let now = tokio::time::Instant::now();
        let holders = self.holders.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut peers: Vec<(u64, &Vec<u8>)> = holders
            .get(digest)
            .into_iter()
            .flatten()
            .filter(|(host, (_, seen))| **host != asking && now.duration_since(*seen) < PEER_TTL)
            .map(|(host, (address, _))| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                (asking.0, host.0).hash(&mut hasher);
                (hasher.finish(), address)
            })
            .collect();
        peers.sort_unstable();
        peers.into_iter().take(MAX_PEERS).map(|(_, address)| address.clone()).collect()
    }
}

/// `FindPeers`: the sharing hosts that hold a file this host may download,
/// and the coordinator's seed when it shares files. A sharing host told of
/// some fetches the file from them: it is named to others from now on (it
/// serves the parts it has verified).
pub async fn find_peers(
    ctx: &Context,
    host: HostId,
    request: pb::FindPeersRequest,
) -> Result<pb::FindPeersResponse, Status> {
    let digest = digest("digest", &request.digest)?;
    if !ctx.store.host_may_download(host, &digest).await? {
        return Err(Status::permission_denied(format!(
            "file {digest} is not an input of any copy this host holds in progress"
        )));
    }
    let peers = ctx.tracker.peers(digest.as_str(), host);
    let mut seeds = Vec::new();
    if let Some(seed) = &ctx.seed
        && let Some(meta) = ctx.store.file_p2p_meta(&digest).await?
        && seed.ensure(&digest, &meta, &ctx.files.path(&digest)).await
    {
        seeds.push(seed.address());
    }
    // Named to others only when it fetches from peers (a host told of
    // none downloads by gRPC, and is named once that download completes).
    if !peers.is_empty() || !seeds.is_empty() {
        ctx.tracker.announce(host, digest.as_str());
    }
    Ok(pb::FindPeersResponse { peers, seeds })
}

fn digest(field: &str, text: &str) -> Result<Digest, Status> {
    Digest::parse(text).ok_or_else(|| invalid(field, format!("{text:?} is not 64 lowercase hex digits (a SHA-256)")))
}

/// `FindFiles`: which of the digests the coordinator lacks.
pub async fn find(ctx: &Context, digests: Vec<String>) -> Result<pb::FindFilesResponse, Status> {
    if digests.len() > MAX_FIND {
        return Err(invalid("digests", format!("{} digests: at most {MAX_FIND} per call", digests.len())));
    }
    let digests = digests
        .iter()
        .enumerate()
        .map(|(i, text)| digest(&format!("digests[{i}]"), text))
        .collect::<Result<Vec<_>, Status>>()?;
    let mut missing: HashSet<Digest> = ctx.store.missing_files(&digests).await?.into_iter().collect();
    // A row whose bytes are gone (a file store restored apart from its
    // database) is missing too: the client uploads it again.
    for digest in &digests {
        if !missing.contains(digest) && !ctx.files.contains(digest).await {
            missing.insert(digest.clone());
        }
    }
    let missing = digests.into_iter().filter(|d| missing.contains(d)).map(|d| d.to_string());
    Ok(pb::FindFilesResponse { missing: missing.collect() })
}

/// `UploadFile`: streams the bytes to the file store, verified against the
/// announced digest and size, then records the file.
pub async fn upload(
    ctx: &Context,
    role: &Role,
    mut stream: Streaming<pb::UploadFileRequest>,
) -> Result<pb::UploadFileResponse, Status> {
    let first = stream.message().await?.ok_or_else(|| invalid("UploadFile", "the stream is empty"))?;
    let project = ProjectName::parse(&first.project)?;
    role.authorize(Action::OnProject(&project))?;
    let announced = digest("digest", &first.digest)?;
    let max = crate::domain::files::FileLimits::MAX_INPUT_BYTES;
    if first.size > max {
        return Err(invalid("size", FileError::LimitTooLarge { field: "a file", value: first.size, max }));
    }
    let mut upload = ctx.files.upload(announced, first.size).await?;
    upload.write(&first.data).await?;
    while let Some(message) = stream.message().await? {
        if !message.project.is_empty() || !message.digest.is_empty() || message.size != 0 {
            return Err(invalid("UploadFile", "only the first message names the project, digest and size"));
        }
        upload.write(&message.data).await?;
    }
    let (digest, size) = upload.finish().await?;
    // What peers will verify its bytes against (BLAKE3), read once from disk.
    let path = ctx.files.path(&digest);
    let meta = tokio::task::spawn_blocking(move || quorum_p2p::FileMeta::describe(&path))
        .await
        .map_err(|_| Status::internal("describing the file panicked"))?
        .map_err(|error| {
            tracing::error!(%error, "cannot describe an uploaded file for peers");
            Status::internal("cannot read the uploaded file back (logged)")
        })?;
    ctx.store.record_file(&digest, size, Some(&meta.to_bytes()), ctx.clock.now()).await?;
    tracing::info!(project = %project, %digest, size, "input file uploaded");
    Ok(pb::UploadFileResponse { digest: digest.to_string(), size })
}

/// `DownloadFile`: the file from `offset`, chunk by chunk, to a host that
/// holds a copy needing it.
pub async fn download(
    ctx: &Context,
    host: HostId,
    request: pb::DownloadFileRequest,
) -> Result<FileChunkStream, Status> {
    let digest = digest("digest", &request.digest)?;
    if !ctx.store.host_may_download(host, &digest).await? {
        return Err(Status::permission_denied(format!(
            "file {digest} is not an input of any copy this host holds in progress"
        )));
    }
    let (file, size) = ctx.files.open_at(&digest, request.offset).await.map_err(|error| match error {
        FileStoreError::Missing(_) => {
            tracing::error!(%digest, "an input file named by a work unit is missing from the file store");
            Status::internal("the coordinator has lost this input file (logged)")
        }
        other => Status::from(other),
    })?;
    tracing::info!(host_id = %host, %digest, offset = request.offset, size, "sending input file");
    let tracker = ctx.tracker.clone();
    let sent = move || tracker.announce(host, digest.as_str());
    let stream = chunk_stream(
        file,
        size,
        request.offset == size,
        ctx.file_cap.clone(),
        ctx.metrics.clone(),
        ctx.stopping.clone(),
        sent,
    );
    Ok(Box::pin(stream))
}

/// The chunks of an open file, read as the stream is polled (never whole in
/// memory), the first carrying the file's size; `empty_first`: the remainder
/// is empty, and one empty chunk still tells the size.
fn chunk_stream(
    file: tokio::fs::File,
    size: u64,
    empty_first: bool,
    cap: Option<quorum_p2p::UploadCap>,
    metrics: crate::metrics::Metrics,
    stopping: tokio::sync::watch::Receiver<bool>,
    sent: impl FnOnce() + Send + 'static,
) -> impl Stream<Item = Result<pb::FileChunk, Status>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let mut file = file;
        let mut total_size = size;
        if empty_first {
            if tx.send(Ok(pb::FileChunk { data: Vec::new(), total_size })).await.is_ok() {
                sent();
            }
            return;
        }
        loop {
            // A shutdown ends downloads at once (the worker resumes later from
            // what it has) instead of holding the coordinator for its grace.
            if *stopping.borrow() {
                let _ = tx.send(Err(Status::unavailable("the coordinator is shutting down"))).await;
                break;
            }
            let message = match FileStore::read_chunk(&mut file).await {
                Ok(data) if data.is_empty() => {
                    // The whole file went out.
                    sent();
                    break;
                }
                Ok(data) => {
                    if let Some(cap) = &cap {
                        tokio::time::sleep(cap.grant(data.len() as u64)).await;
                    }
                    metrics.file_sent_grpc(data.len() as u64);
                    Ok(pb::FileChunk { data, total_size: std::mem::take(&mut total_size) })
                }
                Err(error) => {
                    tracing::error!(%error, "reading an input file for a download");
                    Err(Status::internal("cannot read the input file (logged)"))
                }
            };
            let failed = message.is_err();
            if tx.send(message).await.is_err() || failed {
                break;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Most cached files a work request may list.
pub const MAX_CACHED_FILES: usize = 1000;

/// The input files a host says it holds (`RequestWork.cached_files`): only
/// ever a preference of the scheduler's, so nothing is trusted but the shape.
pub fn cached_files(digests: Vec<String>) -> Result<std::collections::HashSet<String>, Status> {
    if digests.len() > MAX_CACHED_FILES {
        return Err(invalid("cached_files", format!("{} digests: at most {MAX_CACHED_FILES}", digests.len())));
    }
    digests
        .into_iter()
        .enumerate()
        .map(|(i, text)| digest(&format!("cached_files[{i}]"), &text).map(|d| d.to_string()))
        .collect()
}

/// A report's output files, with the digest of each computed here (nothing
/// a host says about them is taken on trust).
pub fn reported_files(field: &str, files: Vec<pb::OutputFile>) -> Result<Vec<ReportedFile>, Status> {
    let mut reported: Vec<ReportedFile> = files
        .into_iter()
        .enumerate()
        .map(|(i, file)| {
            let name = FileName::parse(&file.name).map_err(|error| invalid(&format!("{field}[{i}]"), error))?;
            let digest = app::digest_of(&file.data);
            let size = file.data.len() as u64;
            Ok(ReportedFile { file: OutputFile { name, digest, size }, data: Some(file.data) })
        })
        .collect::<Result<_, Status>>()?;
    reported.sort_by(|a, b| a.file.name.cmp(&b.file.name));
    if let Some(pair) = reported.windows(2).find(|pair| pair[0].file.name == pair[1].file.name) {
        return Err(invalid(field, FileError::Duplicate(pair[0].file.name.as_str().to_owned())));
    }
    Ok(reported)
}

/// Output files larger than this go to the file store, not into a row.
pub const INLINE_OUTPUT_BYTES: usize = 64 << 10;

/// Puts the large output files of `reports` in the file store (each content
/// once), leaving only their digests to the rows.
pub async fn store_large_outputs(ctx: &Context, reports: &mut [crate::store::ReportInput]) -> Result<(), Status> {
    for reported in reports.iter_mut().flat_map(|report| report.output_files.iter_mut()) {
        let Some(data) = reported.data.as_ref().filter(|data| data.len() > INLINE_OUTPUT_BYTES) else { continue };
        let digest = &reported.file.digest;
        if !ctx.files.contains(digest).await {
            let mut upload = ctx.files.upload(digest.clone(), data.len() as u64).await?;
            upload.write(data).await?;
            upload.finish().await?;
        }
        reported.data = None;
    }
    Ok(())
}

/// Output files as `GetCanonicalResults` carries them, with their bytes
/// (read from the file store for the large ones).
pub async fn output_file_infos(ctx: &Context, files: Vec<ReportedFile>) -> Result<Vec<pb::OutputFileInfo>, Status> {
    let mut infos = Vec::with_capacity(files.len());
    for reported in files {
        let data = match reported.data {
            Some(data) => data,
            None => tokio::fs::read(ctx.files.path(&reported.file.digest)).await.map_err(|error| {
                tracing::error!(digest = %reported.file.digest, %error, "an output file is missing from the file store");
                Status::internal("the coordinator cannot read an output file (logged)")
            })?,
        };
        infos.push(pb::OutputFileInfo {
            name: reported.file.name.as_str().to_owned(),
            digest: reported.file.digest.to_string(),
            size: reported.file.size,
            data,
        });
    }
    Ok(infos)
}
