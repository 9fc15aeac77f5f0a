//! quorum-worker: a volunteer host. It registers with the coordinator once,
//! then loops: ask for work to fill its slots, fetch the apps it lacks, run the
//! tasks in a deterministic WebAssembly sandbox on a rayon pool, report results.
//!
//! Layout:
//! - `sandbox`: the crate `quorum-sandbox`, re-exported: runs one task in
//!   wasmtime (WASI preview 1, fixed clocks, seeded random source, fuel /
//!   memory / output / wall-time limits). No I/O, no async.
//! - `state`: the state directory: identity (`host.json`) and app cache.
//! - `client`: the `Scheduler` gRPC client and the retry backoff.
//! - `worker`: the loop tying them together (async side; CPU work goes to the pool).
//!
//! Architecture invariant: CPU work (compiling and running apps) never runs on
//! tokio threads; the pool sends outcomes back over a channel.

pub mod client;
pub mod state;
mod worker;

pub use quorum_sandbox as sandbox;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

/// Everything the worker needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// URL of the coordinator, e.g. `http://127.0.0.1:7737`.
    pub server: String,
    /// Holds `host.json` (identity) and `apps/<digest>.wasm`; created if missing.
    pub state_dir: PathBuf,
    /// Tasks run at once (rayon threads); at least 1.
    pub cpus: usize,
    /// Host name sent at registration.
    pub name: String,
    /// The volunteer account owning this host (empty: none).
    pub account: String,
    /// Cap of the retry backoff.
    pub max_backoff: Duration,
}

/// Runs the worker until `shutdown` completes (or a fatal error: bad state
/// directory, invalid server URL). Being unable to reach the server is not
/// fatal: the worker keeps retrying.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let state = state::StateDir::open(&config.state_dir)
        .with_context(|| format!("cannot open state directory {}", config.state_dir.display()))?;
    let client = client::Client::new(&config.server)?;
    let sandbox = sandbox::Sandbox::new().context("cannot create the sandbox")?;
    let cpus = config.cpus.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cpus)
        .thread_name(|index| format!("quorum-task-{index}"))
        .build()
        .context("cannot start the task thread pool")?;
    let config = Config { cpus, ..config };
    worker::Worker::new(config, state, client, sandbox, pool).run(shutdown).await
}
