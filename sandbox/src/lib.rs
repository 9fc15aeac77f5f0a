//! quorum-sandbox: runs WebAssembly (WASI preview 1 commands) in wasmtime,
//! deterministically. The worker runs apps with it (one task per result); the
//! coordinator runs projects' custom validators with it. It is the only crate
//! of quorum that depends on wasmtime.
//!
//! A [`Sandbox`] owns two engines (NaN canonicalization off and on), a cache of
//! compiled apps keyed by (digest, nan_canonicalization), and a ticker thread
//! that advances both engines' epochs every 10 ms so wall-time limits, aborts,
//! pauses and the CPU throttle can act on running code; given a directory
//! (`with_compiled_cache`), it also keeps compiled modules on disk across
//! restarts (`compiled`). Every run owns its `Store`.
//!
//! The environment is in `wasi`: no files but the task's checkpoint
//! directory, no network, the task's own arguments and environment variables
//! (none of the host's), virtual clocks, a seeded random source. Limits:
//! fuel (an exact instruction count), linear memory,
//! stdout size, stderr size, wall time.
//!
//! Layout:
//! - this file: [`Sandbox`] (engines, app cache, [`Sandbox::run`]), [`Limits`],
//!   [`Task`], [`Outcome`], and [`Validator`].
//! - `control`: [`Gate`] (pause and CPU throttle shared by a worker's tasks)
//!   and [`TaskControl`] (abort and progress of one task).
//! - `wasi`: the deterministic WASI preview 1 context and captured stdio.
//! - `compiled`: compiled modules on disk, checksummed, keyed by digest and
//!   engine.
//! - `imports`: [`PROVIDED_IMPORTS`], the one list of what apps may import
//!   (the coordinator checks submitted modules against it).
//! - `tests`: unit tests with real wasmtime, inline WAT modules and the C
//!   apps of `examples/hostile` and `examples/checkpoint`.
//!
//! # Apps (quorum's app contract)
//!
//! An app is a WASI preview 1 command (it exports `_start` and imports
//! nothing but `wasi_snapshot_preview1`). It reads its work unit's input on
//! stdin and writes its output on stdout; exit code 0 (or returning from
//! `_start`) is a success, anything else an error. Its command line
//! (`args_get`) and environment (`environ_get`) are the work unit's
//! ([`Task::args`], [`Task::env`]: `argv[0]` is the project's name, then
//! the project's arguments, then the work unit's; the project's variables
//! overridden by the work unit's, in name order), never the host's. It sees
//! no network, a wall clock fixed at 2000-01-01T00:00:00Z, a
//! monotonic clock that never moves, sleeps that return at once, and random
//! bytes drawn from the result's seed: the same input, arguments,
//! environment and seed give the same output, and the same fuel, on every
//! host.
//!
//! ## Checkpoints
//!
//! When the worker gives a task a checkpoint directory
//! ([`Task::checkpoint_dir`]: it does for projects that declare
//! checkpointing), the app sees it, read-write, as **`/checkpoint`**, after
//! its `/input` and `/output` when it has them: everything else
//! (`/etc/passwd`, `/`, `..` out of a preopened directory) fails. An app may keep its state there
//! to survive interruptions; BOINC calls this cooperative checkpointing:
//!
//! - write the state to a temporary file, then rename it over the real one
//!   (`/checkpoint/state.tmp` → `/checkpoint/state`), so that an
//!   interruption at any point leaves either the old or the new state;
//! - on start, read the state if present and resume from it; a state it
//!   cannot parse (after a power cut, a file may be empty) counts as absent;
//! - the output must be byte-identical whether the app was interrupted (any
//!   number of times) or not: every copy of a work unit is compared byte for
//!   byte with the others.
//!
//! The worker keeps the directory across interruptions and restarts of the
//! task (and of the worker) and deletes it once the result is accepted. Fuel
//! is counted per run: a resumed run reports the fuel of its own segment.
//!
//! Determinism caveat: the files' timestamps, inode numbers and the order in
//! which a directory lists its entries are the host's, not virtual ones;
//! apps must not depend on them.
//!
//! ## Limits
//!
//! A task that exceeds a limit ends as an error whose message names it:
//! "fuel limit exceeded", "memory limit exceeded", "output limit exceeded"
//! (stdout), "stderr limit exceeded", "wall time limit exceeded". A trap ends
//! as "trap: " and wasmtime's description (unbounded recursion: "trap: call
//! stack exhausted"). Wall time counts only the time the task could run:
//! time spent paused or throttled by the [`Gate`] is excluded, from the limit
//! and from [`Outcome::run_time_ms`].
//!
//! # Custom validators (part of quorum's app contract)
//!
//! A project may supply a second module, a *validator*, that decides whether
//! two outputs of the same work unit agree, in place of byte-for-byte
//! equality. It must be a WASI preview 1 command (it exports `_start`, and
//! imports nothing but `wasi_snapshot_preview1`). For each comparison the
//! coordinator runs it once ([`Validator::compare`]):
//!
//! - **stdin** is `len(A)` as a little-endian `u64`, the bytes of output A,
//!   `len(B)` as a little-endian `u64`, the bytes of output B, then end of file;
//! - **exit code 0** (or returning from `_start`) means the outputs agree;
//! - **exit code 1** means they disagree;
//! - anything else (another exit code, a trap, exceeding a limit) is an error
//!   of the validator, never a verdict.
//!
//! The environment is the apps' one: no files, `argv = ["app"]`, no
//! environment variables, no network, fixed clocks, random bytes seeded with 0, NaN canonicalization on
//! (so the verdict does not depend on the coordinator's CPU). Limits are
//! [`VALIDATOR_LIMITS`]: 10^10 fuel, 256 MiB of memory, 64 KiB of stdout
//! (stdout is otherwise ignored), 64 KiB of stderr (its tail is kept for
//! error messages), 10 s of wall time. A validator should be symmetric (`compare(a, b) ==
//! compare(b, a)`); quorum does not check it.

pub mod compiled;
mod control;
mod imports;
mod wasi;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{
    Config, Engine, ExternType, InstancePre, Linker, Module, OptLevel, ResourceLimiter, Store, StoreLimits,
    StoreLimitsBuilder, Trap, UpdateDeadline, WasmFeatures,
};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p1::WasiP1Ctx;

use control::Pacer;
pub use control::{Gate, TaskControl};
pub use imports::{PROVIDED_IMPORTS, WASI_PREVIEW1};

/// The engine reported with every result. wasmtime exports no version
/// constant, so this must follow the `wasmtime` version pinned in Cargo.lock.
pub const ENGINE: &str = "wasmtime 48.0.8";

/// How often the ticker advances the engines' epochs.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Worker defaults for limits the assignment leaves at zero.
pub const DEFAULT_FUEL: u64 = 1_000_000_000_000;
pub const DEFAULT_MEMORY_BYTES: u64 = 512 * 1024 * 1024;
pub const DEFAULT_OUTPUT_BYTES: u64 = 16 * 1024 * 1024;
pub const DEFAULT_WALL_TIME: Duration = Duration::from_secs(3600);
pub const DEFAULT_STDERR_BYTES: u64 = 1024 * 1024;
/// Longest wall time accepted (a month): longer is as good as no limit.
const MAX_WALL_TIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// Limits of one validator run (see the crate docs).
pub const VALIDATOR_LIMITS: Limits = Limits {
    fuel: 10_000_000_000,
    memory_bytes: 256 * 1024 * 1024,
    output_bytes: 64 * 1024,
    wall_time: Duration::from_secs(10),
    stderr_bytes: 64 * 1024,
};
/// The random seed of every validator run.
const VALIDATOR_RANDOM_SEED: u64 = 0;
/// Validators run with NaN canonicalization on: the coordinator's verdict
/// must not depend on the CPU it happens to run on.
const VALIDATOR_NAN_CANONICALIZATION: bool = true;

/// Errors creating a sandbox or a validator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot configure the wasmtime engine: {0}")]
    Engine(String),
    #[error("cannot start the epoch ticker thread")]
    Ticker(#[source] std::io::Error),
    /// The validator does not compile, or imports something other than WASI
    /// preview 1.
    #[error("invalid validator module: {0}")]
    InvalidValidator(String),
    /// The validator exports no `_start` taking and returning nothing: it is
    /// not a WASI command.
    #[error("validator has no _start export")]
    ValidatorWithoutStart,
}

/// Why a validator gave no verdict. The Display text names the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompareError {
    /// An exit code other than 0 (agree) and 1 (disagree).
    #[error("validator exited with code {code} (expected 0 to agree or 1 to disagree){}", stderr_suffix(stderr_tail))]
    ExitCode { code: i32, stderr_tail: String },
    /// A trap (`unreachable`, out-of-bounds access, ...), with wasmtime's description.
    #[error("validator trapped: {message}{}", stderr_suffix(stderr_tail))]
    Trap { message: String, stderr_tail: String },
    #[error("validator exceeded its fuel limit")]
    FuelLimit,
    #[error("validator exceeded its memory limit")]
    MemoryLimit,
    #[error("validator exceeded its output limit")]
    OutputLimit,
    #[error("validator exceeded its stderr limit")]
    StderrLimit,
    #[error("validator exceeded its wall time limit")]
    WallTimeLimit,
}

/// `": stderr: ..."` when the validator wrote to stderr, so its own
/// explanation reaches the operator.
fn stderr_suffix(stderr_tail: &str) -> String {
    let trimmed = stderr_tail.trim();
    if trimmed.is_empty() { String::new() } else { format!("; stderr: {trimmed}") }
}

/// Sandbox limits of one task, with zeros already replaced by defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub fuel: u64,
    pub memory_bytes: u64,
    pub output_bytes: u64,
    /// Time the task may run, not counting time paused or throttled.
    pub wall_time: Duration,
    /// Bytes the task may write to stderr in all (only the last 4 KiB are kept).
    pub stderr_bytes: u64,
}

impl Limits {
    /// Builds limits from an assignment's values; 0 means "the worker default".
    pub fn with_defaults(
        fuel: u64,
        memory_bytes: u64,
        output_bytes: u64,
        wall_time_ms: u64,
        stderr_bytes: u64,
    ) -> Self {
        let or = |value: u64, default: u64| if value == 0 { default } else { value };
        let wall_time =
            if wall_time_ms == 0 { DEFAULT_WALL_TIME } else { Duration::from_millis(wall_time_ms).min(MAX_WALL_TIME) };
        Limits {
            fuel: or(fuel, DEFAULT_FUEL),
            memory_bytes: or(memory_bytes, DEFAULT_MEMORY_BYTES),
            output_bytes: or(output_bytes, DEFAULT_OUTPUT_BYTES),
            wall_time,
            stderr_bytes: or(stderr_bytes, DEFAULT_STDERR_BYTES),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::with_defaults(0, 0, 0, 0, 0)
    }
}

/// Everything needed to run one result.
#[derive(Debug, Clone)]
pub struct Task {
    /// Hex SHA-256 of `module`, the compiled-module cache key. The caller has
    /// checked that it matches.
    pub app_digest: String,
    pub module: Arc<[u8]>,
    /// The app's stdin.
    pub input: Vec<u8>,
    pub random_seed: u64,
    pub limits: Limits,
    pub nan_canonicalization: bool,
    /// A host directory the worker owns for this task, preopened read-write
    /// as `/checkpoint` (see "Checkpoints" in the crate docs); `None`: no
    /// `/checkpoint`. It must exist: a directory that cannot be opened
    /// ends the task as an error.
    pub checkpoint_dir: Option<PathBuf>,
    /// A host directory holding the task's input files, preopened read-only
    /// as `/input`; `None`: no `/input`.
    pub input_dir: Option<PathBuf>,
    /// A host directory preopened read-write as `/output`, where the app
    /// writes the output files reported with its result; `None`: no `/output`.
    pub output_dir: Option<PathBuf>,
    /// The app's command line, `argv[0]` included (the assignment's `argv`);
    /// empty: `["app"]`, what apps saw before arguments existed.
    pub args: Vec<String>,
    /// The app's environment variables, in the order given (the
    /// assignment's, already in name order); the host's are never seen.
    pub env: Vec<(String, String)>,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Exit code 0 (or `_start` returned): the app's stdout.
    Success(Vec<u8>),
    /// Trap, non-zero exit, limit exceeded, invalid module: why.
    Error(String),
    /// Stopped through [`TaskControl::abort`] (work no longer needed, or
    /// shutdown): nothing to report.
    Aborted,
}

/// The result of running a task.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    /// The last bytes the app wrote to stderr (lossy UTF-8).
    pub stderr_tail: String,
    /// Fuel consumed: the limit minus what was left.
    pub fuel_used: u64,
    /// Time the task ran, not counting time paused or throttled.
    pub run_time_ms: u64,
}

/// Compiles and runs apps. Share it (`Arc`) between the threads of the pool.
pub struct Sandbox {
    /// Index 0: NaN canonicalization off; 1: on.
    engines: [Engine; 2],
    /// Compiled and linked modules; a module that failed to compile or link
    /// is cached too, with its error, so it is not compiled again per task.
    modules: Mutex<ModuleCache>,
    /// Kept for its `Drop`, which stops the ticker thread once the sandbox
    /// and every [`Validator`] made from it are gone.
    ticker: Arc<Ticker>,
    /// Compiled modules kept on disk across restarts, if given.
    compiled: Option<compiled::CompiledCache>,
    /// Modules compiled from WebAssembly (not loaded from `compiled`).
    compilations: AtomicU64,
}

/// Linked modules (or why they cannot run), by (digest, nan_canonicalization).
type ModuleCache = HashMap<(String, bool), Result<InstancePre<TaskState>, String>>;

/// Per-task store data.
struct TaskState {
    wasi: WasiP1Ctx,
    /// The run's virtual clocks (moved by `poll_oneoff`).
    time: wasi::VirtualTime,
    limiter: MemoryLimiter,
    /// Why the epoch callback interrupted the task, if it did.
    interrupt: Option<Interrupt>,
}

#[derive(Debug, Clone, Copy)]
enum Interrupt {
    WallTime,
    Aborted,
}

impl Sandbox {
    pub fn new() -> Result<Self, Error> {
        let engines = [engine(false)?, engine(true)?];
        let ticker = Arc::new(Ticker::start(engines.clone())?);
        Ok(Sandbox {
            engines,
            modules: Mutex::new(HashMap::new()),
            ticker,
            compiled: None,
            compilations: AtomicU64::new(0),
        })
    }

    /// Keeps compiled modules in `dir` (see [`compiled`]), so that a new
    /// sandbox on the same directory, e.g. after a restart, loads them
    /// instead of compiling.
    pub fn with_compiled_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.compiled = Some(compiled::CompiledCache::new(dir));
        self
    }

    /// The compiled-module cache, to delete an app's files with the app.
    pub fn compiled_cache(&self) -> Option<&compiled::CompiledCache> {
        self.compiled.as_ref()
    }

    /// How many modules this sandbox compiled (rather than loaded compiled).
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// Runs `task` to completion on the current thread (CPU-bound: call it
    /// from a worker pool, never from an async runtime). `control` aborts it
    /// (within about one epoch tick), reports its progress, and holds it
    /// while its gate is paused or throttled. Use one `TaskControl` per run.
    pub fn run(&self, task: &Task, control: Arc<TaskControl>) -> Outcome {
        let started = Instant::now();
        let idle_before = control.idle();
        let run_time_ms = |control: &TaskControl| {
            let idle = control.idle().saturating_sub(idle_before);
            u64::try_from(started.elapsed().saturating_sub(idle).as_millis()).unwrap_or(u64::MAX)
        };
        let failed = |message: String| Outcome {
            status: Status::Error(message),
            stderr_tail: String::new(),
            fuel_used: 0,
            run_time_ms: run_time_ms(&control),
        };
        let pre = match self.prepare(task) {
            Ok(pre) => pre,
            Err(message) => return failed(message),
        };
        let env = wasi::Environment {
            input: task.input.clone(),
            random_seed: task.random_seed,
            output_limit: usize::try_from(task.limits.output_bytes).unwrap_or(usize::MAX),
            stderr_limit: usize::try_from(task.limits.stderr_bytes).unwrap_or(usize::MAX),
            checkpoint_dir: task.checkpoint_dir.as_deref(),
            input_dir: task.input_dir.as_deref(),
            output_dir: task.output_dir.as_deref(),
            args: &task.args,
            env: &task.env,
        };
        let run = match execute(&pre, env, task.limits, started, control.clone()) {
            Ok(run) => run,
            Err(message) => return failed(message),
        };
        let status = match run.ending {
            Ending::Exit(0) => Status::Success(run.stdout),
            Ending::Aborted => Status::Aborted,
            ending => Status::Error(ending.to_string()),
        };
        Outcome { status, stderr_tail: run.stderr_tail, fuel_used: run.fuel_used, run_time_ms: run_time_ms(&control) }
    }

    /// The linked module for `task`, compiled on first use.
    fn prepare(&self, task: &Task) -> Result<InstancePre<TaskState>, String> {
        let key = (task.app_digest.clone(), task.nan_canonicalization);
        if let Some(cached) = self.lock_modules().get(&key) {
            return cached.clone();
        }
        // Compile outside the lock: two threads may compile the same module
        // once each at worst, which is cheaper than serialising compilations.
        let engine = &self.engines[usize::from(task.nan_canonicalization)];
        let compiled =
            self.module(engine, task).and_then(|module| link(engine, &module)).map_err(|error| match error {
                CompileError::Invalid(message) => format!("invalid module: {message}"),
                CompileError::NoStart => "app has no _start export".to_string(),
                CompileError::Wasi(message) => format!("cannot link WASI: {message}"),
            });
        self.lock_modules().entry(key).or_insert(compiled).clone()
    }

    /// `task`'s module for `engine`: loaded from the compiled cache when a
    /// good file is there, else compiled (and then kept there).
    fn module(&self, engine: &Engine, task: &Task) -> Result<Module, CompileError> {
        // Only real digests name files (tests key the memory cache by other text).
        let disk = self.compiled.as_ref().filter(|_| is_hex_digest(&task.app_digest));
        if let Some(cache) = disk
            && let compiled::Loaded::Module(module) = cache.load(engine, &task.app_digest)
        {
            return Ok(module);
        }
        self.compilations.fetch_add(1, Ordering::Relaxed);
        let module = Module::new(engine, &task.module).map_err(|error| CompileError::Invalid(format!("{error:#}")))?;
        if let Some(cache) = disk {
            // Not fatal: the next start compiles again.
            let _ = cache.store(engine, &task.app_digest, &module);
        }
        Ok(module)
    }

    fn lock_modules(&self) -> std::sync::MutexGuard<'_, ModuleCache> {
        // The map is only ever read or inserted into, so a panic elsewhere
        // cannot leave it half-updated.
        self.modules.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A custom validator, compiled and linked once, run once per comparison.
/// `Send + Sync`: share it between threads; every call owns its `Store`.
pub struct Validator {
    /// The module linked against the deterministic WASI, on the sandbox's
    /// NaN-canonicalizing engine.
    pre: InstancePre<TaskState>,
    /// Keeps the epoch ticker running while the validator exists, so its wall
    /// time limit holds even after the [`Sandbox`] is dropped.
    _ticker: Arc<Ticker>,
}

impl Validator {
    /// Compiles `module` (binary WebAssembly, or WAT text) as a validator:
    /// it must be valid, export `_start` and import only WASI preview 1.
    /// Compiling is CPU work (about 100 ms for a 50 KB module): keep it off
    /// async runtime threads.
    pub fn new(sandbox: &Sandbox, module: &[u8]) -> Result<Validator, Error> {
        let engine = &sandbox.engines[usize::from(VALIDATOR_NAN_CANONICALIZATION)];
        let pre = compile(engine, module).map_err(|error| match error {
            CompileError::Invalid(message) => Error::InvalidValidator(message),
            CompileError::NoStart => Error::ValidatorWithoutStart,
            CompileError::Wasi(message) => Error::Engine(format!("cannot link WASI: {message}")),
        })?;
        Ok(Validator { pre, _ticker: sandbox.ticker.clone() })
    }

    /// Runs the validator on outputs `a` and `b` (protocol in the crate
    /// docs): `Ok(true)` if they agree, `Ok(false)` if they do not, `Err` if
    /// the validator failed to decide. Runs on the current thread, for up to
    /// [`VALIDATOR_LIMITS`]'s wall time: call it from a blocking-capable
    /// thread, never from an async runtime's.
    pub fn compare(&self, a: &[u8], b: &[u8]) -> Result<bool, CompareError> {
        let started = Instant::now();
        let env = wasi::Environment {
            input: validator_input(a, b),
            random_seed: VALIDATOR_RANDOM_SEED,
            output_limit: usize::try_from(VALIDATOR_LIMITS.output_bytes).unwrap_or(usize::MAX),
            stderr_limit: usize::try_from(VALIDATOR_LIMITS.stderr_bytes).unwrap_or(usize::MAX),
            checkpoint_dir: None,
            input_dir: None,
            output_dir: None,
            args: &[],
            env: &[],
        };
        // Nothing pauses or aborts a comparison; it is bounded by its limits.
        let control = TaskControl::new(Gate::new());
        let run = match execute(&self.pre, env, VALIDATOR_LIMITS, started, control) {
            Ok(run) => run,
            // Only a checkpoint directory can fail to open, and there is none.
            Err(message) => return Err(CompareError::Trap { message, stderr_tail: String::new() }),
        };
        match run.ending {
            Ending::Exit(0) => Ok(true),
            Ending::Exit(1) => Ok(false),
            Ending::Exit(code) => Err(CompareError::ExitCode { code, stderr_tail: run.stderr_tail }),
            Ending::Trap(message) => Err(CompareError::Trap { message, stderr_tail: run.stderr_tail }),
            Ending::FuelLimit => Err(CompareError::FuelLimit),
            Ending::MemoryLimit => Err(CompareError::MemoryLimit),
            Ending::OutputLimit => Err(CompareError::OutputLimit),
            Ending::StderrLimit => Err(CompareError::StderrLimit),
            // No abort flag is ever set, so `Aborted` cannot happen; were it
            // to, it would still be a run stopped from outside on time.
            Ending::WallTimeLimit | Ending::Aborted => Err(CompareError::WallTimeLimit),
        }
    }
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator").finish_non_exhaustive()
    }
}

/// A validator's stdin: `len(a)` (u64 LE), `a`, `len(b)` (u64 LE), `b`.
fn validator_input(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(16 + a.len() + b.len());
    for output in [a, b] {
        input.extend_from_slice(&(output.len() as u64).to_le_bytes());
        input.extend_from_slice(output);
    }
    input
}

/// How one run of a module ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// `proc_exit(code)`; returning from `_start` is `Exit(0)`.
    Exit(i32),
    /// Stopped through the abort flag.
    Aborted,
    WallTimeLimit,
    OutputLimit,
    StderrLimit,
    MemoryLimit,
    FuelLimit,
    /// Any other trap, described without wasmtime's "wasm trap: " prefix.
    Trap(String),
}

/// The status messages apps' results carry (part of what workers report).
impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Exit(code) => write!(f, "exit code {code}"),
            Ending::Aborted => f.write_str("aborted"),
            Ending::WallTimeLimit => f.write_str("wall time limit exceeded"),
            Ending::OutputLimit => f.write_str("output limit exceeded"),
            Ending::StderrLimit => f.write_str("stderr limit exceeded"),
            Ending::MemoryLimit => f.write_str("memory limit exceeded"),
            Ending::FuelLimit => f.write_str("fuel limit exceeded"),
            Ending::Trap(message) => write!(f, "trap: {message}"),
        }
    }
}

/// What [`execute`] observed.
struct Run {
    ending: Ending,
    /// Everything captured on stdout (within the output limit).
    stdout: Vec<u8>,
    /// The last bytes written to stderr (lossy UTF-8).
    stderr_tail: String,
    /// Fuel consumed: the limit minus what was left.
    fuel_used: u64,
}

/// Instantiates `pre` in a fresh `Store` with the deterministic WASI context
/// `env` and `limits`, and calls `_start`. The wall time counts from
/// `started`, less the time `control`'s gate holds the run; aborting
/// `control` interrupts the run within about one epoch tick. `Err` if the
/// environment cannot be built (the checkpoint directory cannot be opened).
fn execute(
    pre: &InstancePre<TaskState>,
    env: wasi::Environment<'_>,
    limits: Limits,
    started: Instant,
    control: Arc<TaskControl>,
) -> Result<Run, String> {
    let idle_before = control.idle();
    let mut pacer = Pacer::new(control.clone());
    // A task started on a paused gate waits before running at all.
    pacer.wait_while_paused();
    if control.is_aborted() {
        return Ok(Run { ending: Ending::Aborted, stdout: Vec::new(), stderr_tail: String::new(), fuel_used: 0 });
    }
    let wasi::Ctx { wasi, stdout, stderr, time } = wasi::build_ctx(env)?;
    let state = TaskState { wasi, time, limiter: MemoryLimiter::new(limits.memory_bytes), interrupt: None };
    let mut store = Store::new(pre.module().engine(), state);
    store.limiter(|state| &mut state.limiter);
    store.set_fuel(limits.fuel).expect("fuel metering is enabled on both engines");
    let callback_control = control.clone();
    store.epoch_deadline_callback(move |mut ctx| {
        let control = &callback_control;
        control.set_fuel_used(limits.fuel.saturating_sub(ctx.get_fuel().unwrap_or(0)));
        // Blocks while paused, sleeps while throttled.
        pacer.tick();
        let running = started.elapsed().saturating_sub(control.idle().saturating_sub(idle_before));
        let interrupt = if control.is_aborted() {
            Interrupt::Aborted
        } else if running >= limits.wall_time {
            Interrupt::WallTime
        } else {
            return Ok(UpdateDeadline::Continue(1));
        };
        ctx.data_mut().interrupt = Some(interrupt);
        Ok(UpdateDeadline::Interrupt)
    });
    store.set_epoch_deadline(1);

    let result = pre.instantiate(&mut store).and_then(|instance| {
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call(&mut store, ())
    });

    let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    control.set_fuel_used(fuel_used);
    let state = store.data();
    Ok(Run {
        ending: classify(result, state.interrupt, stdout.overflowed(), stderr.overflowed(), state.limiter.denied),
        stdout: stdout.take(),
        stderr_tail: String::from_utf8_lossy(&stderr.take()).into_owned(),
        fuel_used,
    })
}

/// Maps how the run ended to an [`Ending`]; the checks go from the most to
/// the least specific cause.
fn classify(
    result: wasmtime::Result<()>,
    interrupt: Option<Interrupt>,
    output_overflowed: bool,
    stderr_overflowed: bool,
    memory_denied: bool,
) -> Ending {
    match interrupt {
        Some(Interrupt::Aborted) => return Ending::Aborted,
        Some(Interrupt::WallTime) => return Ending::WallTimeLimit,
        None => {}
    }
    if output_overflowed {
        return Ending::OutputLimit;
    }
    if stderr_overflowed {
        return Ending::StderrLimit;
    }
    let error = match result {
        Ok(()) => return Ending::Exit(0),
        Err(error) => error,
    };
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return match exit.0 {
            0 => Ending::Exit(0),
            _ if memory_denied => Ending::MemoryLimit,
            code => Ending::Exit(code),
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Ending::FuelLimit,
        Some(Trap::Interrupt) => Ending::WallTimeLimit,
        _ if memory_denied => Ending::MemoryLimit,
        // Trap's Display starts with "wasm trap: "; "trap: " is enough.
        Some(trap) => {
            let trap = trap.to_string();
            Ending::Trap(trap.strip_prefix("wasm trap: ").unwrap_or(&trap).to_string())
        }
        None => Ending::Trap(format!("{error:#}")),
    }
}

fn engine(nan_canonicalization: bool) -> Result<Engine, Error> {
    Engine::new(&engine_config(nan_canonicalization)).map_err(|error| Error::Engine(format!("{error:#}")))
}

/// The configuration of the sandbox's engines: fuel and epoch interruption
/// on, threads and relaxed SIMD off, Cranelift at `Speed`. Public for
/// `examples/engine_costs.rs`, which measures it against variants of itself.
#[doc(hidden)]
pub fn engine_config(nan_canonicalization: bool) -> Config {
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        // `wasm_threads` needs wasmtime's "threads" feature; disabling the
        // proposal through the feature set works either way.
        .wasm_features(WasmFeatures::THREADS, false)
        .wasm_relaxed_simd(false)
        .cranelift_opt_level(OptLevel::Speed)
        .cranelift_nan_canonicalization(nan_canonicalization);
    config
}

/// Why a module cannot run.
enum CompileError {
    /// It does not compile, or imports something the linker lacks.
    Invalid(String),
    /// No `_start: () -> ()` export.
    NoStart,
    /// WASI itself could not be added to the linker (a bug, not the module's fault).
    Wasi(String),
}

/// Compiles, validates and links a module.
fn compile(engine: &Engine, bytes: &[u8]) -> Result<InstancePre<TaskState>, CompileError> {
    let module = Module::new(engine, bytes).map_err(|error| CompileError::Invalid(format!("{error:#}")))?;
    link(engine, &module)
}

/// 64 lowercase or uppercase hex digits: a SHA-256 digest.
fn is_hex_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks a compiled module's `_start` and links it.
fn link(engine: &Engine, module: &Module) -> Result<InstancePre<TaskState>, CompileError> {
    match module.get_export("_start") {
        Some(ExternType::Func(func)) if func.params().len() == 0 && func.results().len() == 0 => {}
        _ => return Err(CompileError::NoStart),
    }
    let linker = linker(engine).map_err(|error| CompileError::Wasi(format!("{error:#}")))?;
    linker.instantiate_pre(module).map_err(|error| CompileError::Invalid(format!("{error:#}")))
}

/// The linker every app and validator is linked with: the deterministic WASI
/// preview 1 and nothing else ([`PROVIDED_IMPORTS`] lists what it defines).
fn linker(engine: &Engine) -> wasmtime::Result<Linker<TaskState>> {
    let mut linker = Linker::new(engine);
    wasi::add_to_linker(&mut linker, |state: &mut TaskState| &mut state.wasi, |state: &TaskState| &state.time)?;
    Ok(linker)
}

/// `StoreLimits` that remembers whether it refused to grow a memory, so a trap
/// or exit after a failed `memory.grow` is reported as "memory limit exceeded".
struct MemoryLimiter {
    limits: StoreLimits,
    denied: bool,
}

impl MemoryLimiter {
    fn new(memory_bytes: u64) -> Self {
        let memory_bytes = usize::try_from(memory_bytes).unwrap_or(usize::MAX);
        MemoryLimiter { limits: StoreLimitsBuilder::new().memory_size(memory_bytes).build(), denied: false }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.denied |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// The thread that advances the engines' epochs; it stops when dropped.
struct Ticker {
    /// Dropping the sender wakes the thread at once and ends it.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engines: [Engine; 2]) -> Result<Self, Error> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("quorum-epoch-ticker".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })
            .map_err(Error::Ticker)?;
        Ok(Ticker { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The thread only loops on a channel; it cannot have panicked in
            // a way worth reporting while dropping.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
