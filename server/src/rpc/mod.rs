//! gRPC adapters: each handler validates its request, converts it to domain
//! types, calls the store, and converts the answer back. No rule lives here.
//!
//! Layout:
//! - `scheduler`: the `Scheduler` service spoken by volunteer workers.
//! - `projects`: the `Projects` service spoken by the `quorum` CLI.
//! - `status`: the one mapping from errors to `tonic::Status`.
//! - `limits`: rate limits of registrations (per address) and requests (per host).
//! - `files`: input files in submissions, uploads and downloads, output files in reports.
//! - `auth`: the caller of a request (API token and role, or a refused host token).

pub mod auth;
pub mod files;
pub mod limits;
pub mod projects;
pub mod scheduler;
pub mod status;

use std::sync::Arc;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::store::Store;

/// Largest gRPC message, either way (an app module or a batch of work units).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// What every handler shares.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    /// Where input files' bytes are, beside the database.
    pub files: crate::file_store::FileStore,
    /// Paces input-file downloads to the coordinator's upload cap, if any.
    /// The cap on input files sent (gRPC downloads and the seed together).
    pub file_cap: Option<quorum_p2p::UploadCap>,
    /// The coordinator's seed in the peer-to-peer swarm (`--share-files`).
    pub seed: Option<Arc<crate::seed::Seed>>,
    /// Which sharing hosts hold which files (peer-to-peer transfer).
    pub tracker: Arc<files::Tracker>,
    pub clock: Arc<dyn Clock>,
    pub changes: Changes,
    /// Rate limits of the scheduler's callers.
    pub limiters: Arc<limits::Limiters>,
    /// What the handlers count (dispatches, reports), for `--metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Becomes true when the coordinator starts shutting down: long calls
    /// (`WaitProject`) end at once with UNAVAILABLE so that clients retry.
    pub stopping: watch::Receiver<bool>,
}

impl Context {
    /// Completes once the coordinator is shutting down.
    pub async fn stopped(&self) {
        let mut stopping = self.stopping.clone();
        // An error means the sender is gone: the server is going away too.
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }
}

/// Signals that work units may have changed state, so that `WaitProject`
/// callers re-read instead of polling: changes made here, and (through
/// [`share_changes`]) those the other coordinators of the database announce.
#[derive(Clone)]
pub struct Changes {
    /// Every change, here or elsewhere: what waiters watch.
    all: Arc<watch::Sender<u64>>,
    /// Changes made by this coordinator: what it announces to the others.
    here: Arc<watch::Sender<u64>>,
}

impl Changes {
    pub fn new() -> Changes {
        Changes { all: Arc::new(watch::Sender::new(0)), here: Arc::new(watch::Sender::new(0)) }
    }

    /// Wakes every waiter (and, soon, the other coordinators' waiters).
    pub fn notify(&self) {
        self.here.send_modify(|generation| *generation = generation.wrapping_add(1));
        self.notify_waiters();
    }

    /// Wakes every waiter of this coordinator only (the change was another's).
    fn notify_waiters(&self) {
        self.all.send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.all.subscribe()
    }
}

/// How long announcements to the other coordinators wait for more changes
/// to join them: one `NOTIFY` for the many groups of a busy moment.
const ANNOUNCE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Until `stopping`, tells the other coordinators of the database of this
/// one's changes, and this one's waiters of theirs (`store::changes`):
/// nothing to do on SQLite. A database that cannot be reached is tried again
/// every second; waiters are woken meanwhile (changes may have been missed).
pub async fn share_changes(store: crate::store::Store, changes: Changes, mut stopping: watch::Receiver<bool>) {
    let mut here = changes.here.subscribe();
    let mut elsewhere = None;
    loop {
        if elsewhere.is_none() {
            match store.listen_changes().await {
                Ok(None) => return,
                Ok(Some(listener)) => elsewhere = Some(listener),
                Err(error) => tracing::warn!(%error, "cannot listen for the other coordinators' changes yet"),
            }
        }
        let heard = async {
            match elsewhere.as_mut() {
                Some(listener) => listener.next().await,
                None => {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    Ok(())
                }
            }
        };
        tokio::select! {
            () = async { drop(stopping.wait_for(|stopping| *stopping).await) } => return,
            changed = here.changed() => {
                if changed.is_err() {
                    return;
                }
                tokio::time::sleep(ANNOUNCE_EVERY).await;
                here.borrow_and_update();
                if let Err(error) = store.announce_changes().await {
                    tracing::warn!(%error, "cannot tell the other coordinators of a change");
                }
            }
            heard = heard => {
                if let Err(error) = heard {
                    tracing::warn!(%error, "lost the other coordinators' changes; listening again");
                    elsewhere = None;
                }
                changes.notify_waiters();
            }
        }
    }
}

impl Default for Changes {
    fn default() -> Self {
        Changes::new()
    }
}

/// A host's record as the protocol carries it (ListHosts, GetHost).
/// An app's environment as the protocol carries it, in the order given.
fn env_to_proto(env: Vec<(String, String)>) -> Vec<quorum_proto::v1::EnvVar> {
    env.into_iter().map(|(name, value)| quorum_proto::v1::EnvVar { name, value }).collect()
}

fn host_info(h: crate::store::HostInfo) -> quorum_proto::v1::HostInfo {
    quorum_proto::v1::HostInfo {
        id: h.id,
        name: h.name,
        n_cpus: h.n_cpus,
        memory_bytes: h.memory_bytes,
        engine: h.engine,
        os: h.os,
        created_unix_ms: h.created_at,
        last_contact_unix_ms: h.last_contact_at,
        n_valid: h.n_valid,
        n_invalid: h.n_invalid,
        n_error: h.n_error,
        n_no_reply: h.n_no_reply,
        n_in_progress: h.n_in_progress,
        total_credit: h.total_credit,
        account: h.account,
        consecutive_valid: h.consecutive_valid,
        daily_quota: h.daily_quota,
        results_today: h.results_today,
        app_quotas: h
            .app_quotas
            .into_iter()
            .map(|q| quorum_proto::v1::AppQuota {
                app_digest: q.app_digest,
                projects: q.projects,
                daily_quota: q.daily_quota,
                results_today: q.results_today,
                exhausted: q.exhausted,
            })
            .collect(),
    }
}
