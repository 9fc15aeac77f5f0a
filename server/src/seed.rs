//! The coordinator as a seed of the peer-to-peer swarm (`--share-files`):
//! one iroh endpoint beside the gRPC server (`quorum_p2p::Swarm`, its state
//! in `DB.p2p/`), serving the input files of the file store to workers, as
//! a BitTorrent seed does. Workers ask it only for the parts of a file no
//! other peer holds (`FindPeersResponse.seeds`), so that it sends each part
//! about once and the volunteers pass it on (it declines a segment it sent
//! within [`SERVE_ONCE`], as BitTorrent's super-seeding); its upload shares the
//! `--file-upload-mbps` cap with the gRPC downloads. A file is seeded the
//! first time a host asks for its peers (its BLAKE3 tree is computed then,
//! once per coordinator start); the gRPC download stays the guaranteed
//! path, for workers the coordinator's UDP port does not reach.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use quorum_p2p::{FileMeta, Swarm, SwarmConfig, UploadCap};

use crate::domain::Digest;

/// The seed sends each segment of a file once within this window ("super
/// seeding"): a worker asking for one sent lately is declined and waits for
/// the peers that have it, so that workers starting together do not each
/// take the whole file from the coordinator. Below the workers' stall
/// timeout (20 s), so a segment whose receiver left is sent again in time.
pub const SERVE_ONCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The coordinator's swarm and the files it serves.
#[derive(Debug)]
pub struct Seed {
    swarm: Swarm,
    /// Files seeded (or found not seedable) since the start; held while a
    /// file is being seeded, so that each is imported once.
    seeded: tokio::sync::Mutex<HashSet<Digest>>,
}

impl Seed {
    /// Starts the swarm on `listen`, its state in `state_dir`.
    pub async fn start(
        state_dir: PathBuf,
        listen: SocketAddr,
        cap: Option<UploadCap>,
    ) -> Result<Seed, quorum_p2p::Error> {
        let swarm = Swarm::start(SwarmConfig {
            state_dir,
            listen_addr: listen,
            upload_cap: cap,
            serve: true,
            serve_once: Some(SERVE_ONCE),
        })
        .await?;
        tracing::info!(peer = %swarm.address(), "seeding input files to workers");
        Ok(Seed { swarm, seeded: tokio::sync::Mutex::new(HashSet::new()) })
    }

    /// The swarm's directory beside database `db_path` (`DB.p2p/`).
    pub fn dir_beside(db_path: &Path) -> PathBuf {
        crate::database::beside(db_path, ".p2p")
    }

    /// The address workers connect to.
    pub fn address(&self) -> Vec<u8> {
        self.swarm.address().to_bytes()
    }

    /// Serves file `digest` (at `path`, described by `meta`, the bytes the
    /// store keeps) if not yet; whether it is served. A file that cannot be
    /// seeded is logged, and workers get it from peers or by gRPC.
    pub async fn ensure(&self, digest: &Digest, meta: &[u8], path: &Path) -> bool {
        let mut seeded = self.seeded.lock().await;
        if seeded.contains(digest) {
            return true;
        }
        let meta = match FileMeta::from_bytes(meta) {
            Ok(meta) => meta,
            Err(error) => {
                tracing::error!(%digest, %error, "the stored peer-to-peer description of a file does not parse");
                return false;
            }
        };
        match self.swarm.seed(&meta, path).await {
            Ok(()) => {
                seeded.insert(digest.clone());
                true
            }
            Err(error) => {
                tracing::error!(%digest, %error, "cannot seed an input file: workers get it by gRPC");
                false
            }
        }
    }

    /// Payload bytes the swarm has sent.
    pub fn uploaded_bytes(&self) -> u64 {
        self.swarm.uploaded_bytes()
    }

    /// Closes the swarm's connections and its store.
    pub async fn shutdown(self) {
        if let Err(error) = self.swarm.shutdown().await {
            tracing::warn!(%error, "closing the peer-to-peer swarm");
        }
    }
}
