//! quorum-worker: a volunteer host. It registers with each coordinator once,
//! then loops: keep a buffer of work, fetch the apps it lacks, run the tasks
//! in a deterministic WebAssembly sandbox on a rayon pool (earliest deadline
//! first, cores divided between coordinators by resource share), journal
//! everything, report results.
//!
//! Layout:
//! - `sandbox`: the crate `quorum-sandbox`, re-exported: runs one task in
//!   wasmtime (WASI preview 1, fixed clocks, seeded random source, a
//!   `/checkpoint` directory, fuel / memory / output / stderr / wall-time
//!   limits, pause and CPU throttle). No async.
//! - `state`: the state directory: app cache and checkpoint directories.
//! - `files`: input files cached by digest (resumable, verified downloads)
//!   and each task's `/input` and `/output` directories.
//! - `app_cache`: the pure rule keeping the app cache within its budget
//!   (least recently used first, never a module a held task needs).
//! - `journal`: the SQLite journal (identities, tasks and their reports,
//!   per-app speed, settings): what survives crashes.
//! - `preferences`: BOINC's computing preferences (batteries, use, CPU
//!   load, hours, memory) as pure rules of the readings; `sensors` takes the
//!   readings.
//! - `schedule`: the pure scheduling rules (work buffer, deadlines,
//!   resource shares).
//! - `client`: the `Scheduler` gRPC client and the retry backoff.
//! - `failover`: coordinator groups (one attachment, several addresses of
//!   one database): which address to call, the group's identity key.
//! - `signing`: whether to run an app module: its signature, the trusted and pinned project keys.
//! - `worker`: the loop tying them together (async side; CPU work goes to the
//!   pool): `compute` for the cores, `calls` for the coordinators.
//! - `control`: `quorum-worker pause`, `resume`, `detach` and `abort`, run
//!   beside a worker on the same state directory; `status` its status.
//! - `reports`: the reports sent for tasks (finished, not run, given back).
//! - `reproduce`: `quorum-worker run`, one app on one input and seed in the
//!   same sandbox, to reproduce a result locally.
//!
//! Architecture invariant: CPU work (compiling and running apps) never runs on
//! tokio threads; the pool sends outcomes back over a channel.

pub mod app_cache;
pub mod client;
pub mod control;
pub mod failover;
pub mod files;
pub mod journal;
pub mod preferences;
pub mod priority;
pub mod reports;
pub mod reproduce;
pub mod schedule;
pub mod sensors;
pub mod signing;
pub mod state;
pub mod status;
mod worker;

pub use quorum_sandbox as sandbox;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;

/// One coordinator to work for, and its resource share (BOINC's: the cores
/// are divided between coordinators in proportion to their shares).
///
/// The coordinator may be a group of addresses serving one database
/// (`--server http://a:7737,http://b:7737`): the worker is one host there,
/// calls one address at a time and fails over to the next when it is
/// unreachable (see `failover`).
#[derive(Debug, Clone, PartialEq)]
pub struct Attach {
    /// The coordinator's URLs, e.g. `http://127.0.0.1:7737`, in the order
    /// given: at least one, each once. Several are addresses of one
    /// coordinator group (one database), tried in this order.
    pub addresses: Vec<String>,
    pub share: f64,
}

impl Attach {
    /// A coordinator at one address.
    pub fn new(server: impl Into<String>, share: f64) -> Attach {
        Attach { addresses: vec![server.into()], share }
    }
}

/// Everything the worker needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The coordinators, at least one; no address in two of them.
    pub attachments: Vec<Attach>,
    /// Holds the journal, the app cache and checkpoints; created if missing.
    pub state_dir: PathBuf,
    /// Bytes the app cache (`apps/` in the state directory) may hold; the
    /// least recently used modules no held task needs are evicted beyond it.
    pub app_cache_bytes: u64,
    /// Bytes the input file cache (`files/`) may hold: least recently used
    /// files no held task needs are evicted beyond it, and a task whose files
    /// alone exceed it is refused.
    pub file_cache_bytes: u64,
    /// List the cached input files in work requests, so that the scheduler
    /// hands out copies that use them first (BOINC's locality scheduling).
    pub locality: bool,
    /// Share the input files this worker holds with other volunteers
    /// (`--share-files`): serve them over the peer-to-peer engine, and tell
    /// the coordinator so (it names this worker to others who need them).
    pub share_files: bool,
    /// The UDP address the peer-to-peer engine binds (`--share-listen`).
    pub share_listen: std::net::SocketAddr,
    /// Cap on what this worker uploads to peers, in bytes per second.
    pub share_upload_bytes_per_sec: Option<u64>,
    /// Tasks run at once (rayon threads); at least 1.
    pub cpus: usize,
    /// Percent of CPU time tasks may use (BOINC's CPU throttle), 1 to 100.
    pub cpu_limit: u8,
    /// The priority task threads run at (idle by default).
    pub task_priority: priority::TaskPriority,
    /// Keep at least this many tasks queued (over all coordinators)...
    pub buffer_low: usize,
    /// ... and fetch up to this many when below.
    pub buffer_high: usize,
    /// Host name sent at registration.
    pub name: String,
    /// The volunteer account owning this host (empty: none).
    pub account: String,
    /// Cap of the retry backoff.
    pub max_backoff: Duration,
    /// The CA (PEM) that https:// coordinators' certificates must chain to;
    /// the system's roots when `None`.
    pub ca_cert: Option<Vec<u8>>,
    /// Trusted project keys and whether unsigned apps are refused.
    pub trust: signing::Trust,
    /// `NAME=VALUE` pairs overriding the preferences file (`--pref`).
    pub preference_overrides: Vec<String>,
    /// Where batteries are read: `/sys/class/power_supply`.
    pub power_supply_dir: PathBuf,
}

/// The app cache's default budget: 256 MiB.
pub const DEFAULT_APP_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// The input file cache's default budget: 10 GiB.
pub const DEFAULT_FILE_CACHE_BYTES: u64 = 10 * 1024 * 1024 * 1024;

/// Orders for a running worker (from signals: SIGUSR1 pauses, SIGUSR2
/// resumes, SIGHUP: the journal holds requests from `detach` or `abort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Requests,
}

/// Runs the worker until `shutdown` completes (or a fatal error: bad state
/// directory, invalid server URL). Being unable to reach a coordinator is not
/// fatal: the worker keeps retrying.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
    commands: mpsc::UnboundedReceiver<Command>,
) -> anyhow::Result<()> {
    anyhow::ensure!(!config.attachments.is_empty(), "no coordinator given");
    anyhow::ensure!(config.attachments.iter().all(|a| !a.addresses.is_empty()), "a coordinator without an address");
    failover::check_distinct(config.attachments.iter().map(|a| a.addresses.as_slice())).map_err(anyhow::Error::msg)?;
    let state = state::StateDir::open(&config.state_dir)
        .with_context(|| format!("cannot open state directory {}", config.state_dir.display()))?;
    // Held until the worker stops.
    let _lock = state.lock()?;
    let sandbox =
        sandbox::Sandbox::new().context("cannot create the sandbox")?.with_compiled_cache(state.compiled_dir());
    let cpus = config.cpus.max(1);
    let buffer_low = config.buffer_low.max(1);
    let config = Config {
        cpus,
        buffer_low,
        buffer_high: config.buffer_high.max(buffer_low),
        cpu_limit: config.cpu_limit.clamp(1, 100),
        ..config
    };
    let sensors = Box::new(sensors::System::new(config.power_supply_dir.clone()));
    worker::Worker::new(config, state, sandbox, sensors).await?.run(shutdown, commands).await
}
