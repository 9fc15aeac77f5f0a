//! `quorum-worker run APP --seed N [--input FILE] [--arg ARG]... [--env
//! NAME=VALUE]... [--input-dir DIR] [--output-dir DIR]`: runs one app on one input in the very sandbox the worker
//! runs tasks in (same engine configuration, same deterministic WASI, same
//! limits), so that anyone can reproduce a result locally: with the work
//! unit's input, and the seed, command line and environment `quorum results`
//! shows, the output (and the fuel, on the same engine version) are those
//! every honest host reported.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

use crate::sandbox::{Gate, Limits, Outcome, Sandbox, Task, TaskControl};

/// One local run.
#[derive(Debug, Clone)]
pub struct Reproduce {
    /// The app: a `.wasm` module (WAT text is accepted too).
    pub app: PathBuf,
    /// The work unit's random seed, as `quorum results` shows it.
    pub random_seed: u64,
    /// The work unit's input; `None`: empty.
    pub input: Option<PathBuf>,
    /// The project's limits (zeros: the worker's defaults).
    pub limits: Limits,
    /// The project's NaN canonicalization setting.
    pub nan_canonicalization: bool,
    /// The work unit's command line, argv\[0\] included; empty: `["app"]`.
    pub args: Vec<String>,
    /// The work unit's environment variables, in any order: the app sees
    /// them in name order, as on a worker. A name given twice is an error.
    pub env: Vec<(String, String)>,
    /// The folder preopened read-only as `/input`, and the one preopened as
    /// `/output` (created if missing); `None`: none.
    pub input_dir: Option<PathBuf>,
    pub output_dir: Option<PathBuf>,
}

/// Runs the app once on the current thread and returns how it ended.
pub fn run(reproduce: &Reproduce) -> anyhow::Result<Outcome> {
    let module = std::fs::read(&reproduce.app).with_context(|| format!("cannot read {}", reproduce.app.display()))?;
    let input = match &reproduce.input {
        Some(path) => std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        None => Vec::new(),
    };
    let mut env = reproduce.env.clone();
    env.sort();
    if let Some(pair) = env.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        anyhow::bail!("environment variable {} is given twice", pair[0].0);
    }
    if let Some(dir) = &reproduce.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let sandbox = Sandbox::new().context("cannot start the sandbox")?;
    let task = Task {
        app_digest: hex::encode(Sha256::digest(&module)),
        module: Arc::from(module),
        input,
        random_seed: reproduce.random_seed,
        limits: reproduce.limits,
        nan_canonicalization: reproduce.nan_canonicalization,
        checkpoint_dir: None,
        input_dir: reproduce.input_dir.clone(),
        output_dir: reproduce.output_dir.clone(),
        args: reproduce.args.clone(),
        env,
    };
    Ok(sandbox.run(&task, TaskControl::new(Gate::new())))
}
