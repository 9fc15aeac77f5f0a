//! `Swarm`: one peer. An iroh endpoint bound to the configured address
//! (QUIC; relays, address lookup and port mapping all off: peers are
//! reached only at the addresses the coordinator hands out) and an
//! iroh-blobs store in the state directory, with the peer's key beside it
//! so its address survives restarts.
//!
//! A serving swarm answers iroh-blobs requests through the `serve` hooks
//! (only seeded files, the upload cap); a swarm started with `serve: false`
//! registers no protocol at all, so every incoming connection is refused
//! during the handshake and it never uploads a byte.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iroh::endpoint::presets;
use iroh::protocol::Router;
use iroh::{Endpoint, RelayMode, SecretKey};
use iroh_blobs::api::blobs::{AddPathOptions, ImportMode};
use iroh_blobs::store::fs::FsStore;
use iroh_blobs::{BlobFormat, BlobsProtocol};

use crate::address::PeerAddress;
use crate::error::Error;
use crate::fetch::{self, FetchOptions, FetchReport, Peers};
use crate::meta::FileMeta;
use crate::rate::UploadCap;
use crate::serve::{self, ServePolicy};

/// How a swarm starts. `listen_addr` may have port 0 (the address then
/// reports the port bound).
#[derive(Clone, Debug)]
pub struct SwarmConfig {
    /// Holds the peer's key (`peer.key`) and the blob store (`blobs/`):
    /// partial downloads resume from it after a restart.
    pub state_dir: PathBuf,
    /// The one UDP socket the swarm listens and connects on.
    pub listen_addr: SocketAddr,
    /// The cap on what this peer uploads, all connections together (the
    /// volunteer's `--share-upload-mbps`, or the coordinator's
    /// `--file-upload-mbps`, shared with its gRPC downloads).
    pub upload_cap: Option<UploadCap>,
    /// Whether this peer serves seeded files at all; `false` for volunteers
    /// who did not opt in.
    pub serve: bool,
    /// Serve each segment of a file once within this window, declining
    /// requests for it meanwhile as rate-limited (a fetching peer waits for
    /// other peers to pass it on): the coordinator's seed. `None`: serve
    /// whatever is asked (volunteers).
    pub serve_once: Option<std::time::Duration>,
}

/// One peer of the distribution of project files.
#[derive(Debug)]
pub struct Swarm {
    endpoint: Endpoint,
    store: FsStore,
    /// Accepts iroh-blobs connections when serving, refuses all otherwise.
    router: Router,
    /// Whether the swarm was started with `serve: true`.
    serve: bool,
    policy: Arc<ServePolicy>,
    state_dir: PathBuf,
}

impl Swarm {
    /// Opens the state directory and binds the endpoint.
    pub async fn start(config: SwarmConfig) -> Result<Swarm, Error> {
        let io_error = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        tokio::fs::create_dir_all(&config.state_dir).await.map_err(io_error(&config.state_dir))?;
        let secret_key = load_or_create_key(&config.state_dir.join("peer.key")).await?;
        let bind_error = |e: &dyn std::fmt::Display| Error::Bind { addr: config.listen_addr, message: e.to_string() };
        let endpoint = Endpoint::builder(presets::Minimal)
            .secret_key(secret_key)
            .relay_mode(RelayMode::Disabled)
            .clear_address_lookup()
            .clear_ip_transports()
            .bind_addr(config.listen_addr)
            .map_err(|e| bind_error(&e))?
            .bind()
            .await
            .map_err(|e| bind_error(&e))?;
        let store_dir = config.state_dir.join("blobs");
        let store = FsStore::load(&store_dir)
            .await
            .map_err(|e| Error::Store { path: store_dir.clone(), message: e.to_string() })?;
        let policy = Arc::new(ServePolicy::new(config.upload_cap, config.serve_once));
        // A router even when not serving: with no protocol registered, it
        // refuses every incoming connection in the handshake at once (an
        // endpoint that accepted nothing would let peers wait for a timeout).
        let mut router = Router::builder(endpoint.clone());
        if config.serve {
            let hooks = serve::spawn_hooks(policy.clone());
            router = router.accept(iroh_blobs::ALPN, BlobsProtocol::new(&store, Some(hooks)));
        }
        let router = router.spawn();
        tracing::debug!(address = %PeerAddress::from_endpoint(&endpoint.addr()), serve = config.serve, "swarm started");
        Ok(Swarm { endpoint, store, router, serve: config.serve, policy, state_dir: config.state_dir })
    }

    /// What other peers connect to: report it to the coordinator.
    pub fn address(&self) -> PeerAddress {
        PeerAddress::from_endpoint(&self.endpoint.addr())
    }

    /// Serves the file at `path`, which must be the file `meta` describes.
    ///
    /// The file is referenced in place, not copied: it must stay unchanged
    /// while seeded (unseed before deleting or replacing it). Its hash is
    /// computed again here (on the store's own threads), so a file that does
    /// not match its meta is refused. A file changed after seeding is not
    /// served either: iroh-blobs checks what it reads against the tree it
    /// computed here before sending it, and resets the request (the fetching
    /// peer drops this one and goes on with others).
    pub async fn seed(&self, meta: &FileMeta, path: &Path) -> Result<(), Error> {
        if !self.serve {
            return Err(Error::NotServing);
        }
        let path = std::path::absolute(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let not_the_file = |message: String| Error::NotTheDescribedFile { path: path.clone(), meta: *meta, message };
        let size = tokio::fs::metadata(&path).await.map_err(|source| Error::Io { path: path.clone(), source })?.len();
        if size != meta.size() {
            return Err(not_the_file(format!("its size is {size} bytes")));
        }
        let options = AddPathOptions { path: path.clone(), format: BlobFormat::Raw, mode: ImportMode::TryReference };
        let tag = seed_tag(meta);
        let imported =
            self.store.add_path_with_opts(options).with_named_tag(&tag).await.map_err(|e| self.store_error(e))?;
        if imported.hash != meta.blob_hash() {
            self.store.tags().delete(&tag).await.map_err(|e| self.store_error(e))?;
            return Err(not_the_file(format!("its BLAKE3 hash is {}", imported.hash)));
        }
        self.policy.seed(meta.blob_hash());
        tracing::debug!(%meta, path = %path.display(), "seeding");
        Ok(())
    }

    /// Stops serving the file (requests already being answered finish).
    pub async fn unseed(&self, meta: &FileMeta) -> Result<(), Error> {
        self.policy.unseed(&meta.blob_hash());
        self.store.tags().delete(seed_tag(meta)).await.map_err(|e| self.store_error(e))?;
        Ok(())
    }

    /// Whether the swarm serves the file now.
    pub fn is_seeding(&self, meta: &FileMeta) -> bool {
        self.serve && self.policy.is_seeded(&meta.blob_hash())
    }

    /// Downloads the file `meta` describes from the peers `source` names
    /// (it may name more as the fetch goes on), in parallel, into `dest`
    /// (which must not exist yet), verifying every range before it is
    /// written. A peer that sends data that does not verify is dropped (and
    /// listed in the report); the others go on. Fails with
    /// [`Error::NoPeerCompleted`] when nothing arrived for
    /// `options.stall_timeout` with no request running (every peer failed,
    /// was dropped or holds nothing missing), or when every peer is dropped
    /// and `source` is closed: the caller then fetches from the
    /// coordinator. Dropping the future cancels the download; what was
    /// verified is kept in the state directory, and a later fetch of the
    /// same file asks only for the rest.
    ///
    /// With `options.share_while_fetching` (and a swarm that serves), the
    /// verified part is served to other peers as it arrives, as BitTorrent
    /// does; otherwise, and in any case for the whole file, call
    /// [`Swarm::seed`] with `dest` afterwards. A fetch that fails stops
    /// serving the part it had.
    pub async fn fetch(
        &self,
        meta: &FileMeta,
        source: tokio::sync::watch::Receiver<Peers>,
        dest: &Path,
        options: FetchOptions,
    ) -> Result<FetchReport, Error> {
        let share = options.share_while_fetching && self.serve;
        let hash = meta.blob_hash();
        let already_seeded = self.policy.is_seeded(&hash);
        if share && !already_seeded {
            self.policy.seed(hash);
        }
        let options = FetchOptions { share_while_fetching: share, ..options };
        let outcome = fetch::fetch(&self.endpoint, &self.store, meta, source, dest, options).await;
        if share && !already_seeded && outcome.is_err() {
            self.policy.unseed(&hash);
        }
        outcome
    }

    /// The upload cap the swarm's provider hook applies (the configured
    /// one), `None` when uncapped.
    pub fn upload_limit_bytes_per_sec(&self) -> Option<u64> {
        self.policy.upload_limit()
    }

    /// Payload bytes this swarm has sent to peers since it started.
    pub fn uploaded_bytes(&self) -> u64 {
        self.policy.uploaded_bytes()
    }

    /// Closes connections, stops serving and flushes the store.
    pub async fn shutdown(self) -> Result<(), Error> {
        // The router closes the endpoint; when serving, iroh-blobs' protocol
        // shuts the store down with it.
        self.router.shutdown().await.map_err(|e| self.store_error(e))?;
        if !self.serve {
            self.store.shutdown().await.map_err(|e| self.store_error(e))?;
        }
        Ok(())
    }

    fn store_error(&self, error: impl std::fmt::Display) -> Error {
        Error::Store { path: self.state_dir.join("blobs"), message: error.to_string() }
    }
}

/// The store's tag that keeps a seeded file: one per file.
fn seed_tag(meta: &FileMeta) -> String {
    format!("seed/{}", meta.blob_hash())
}

/// Reads the peer's key, or creates it (mode 0600) on the first start.
async fn load_or_create_key(path: &Path) -> Result<SecretKey, Error> {
    let io_error = |source| Error::Io { path: path.to_owned(), source };
    match tokio::fs::read(path).await {
        Ok(bytes) => {
            let bytes: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| io_error(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a 32-byte key")))?;
            Ok(SecretKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            let mut options = tokio::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            options.mode(0o600);
            use tokio::io::AsyncWriteExt as _;
            let mut file = options.open(path).await.map_err(io_error)?;
            file.write_all(&key.to_bytes()).await.map_err(io_error)?;
            file.sync_all().await.map_err(io_error)?;
            Ok(key)
        }
        Err(e) => Err(io_error(e)),
    }
}
