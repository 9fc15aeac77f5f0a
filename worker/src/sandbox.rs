//! Runs one task (one result) in wasmtime under WASI preview 1, deterministically.
//!
//! A [`Sandbox`] owns two engines (NaN canonicalization off and on), a cache of
//! compiled modules keyed by (digest, nan_canonicalization), and a ticker
//! thread that advances both engines' epochs every 10 ms so wall-time limits
//! and aborts can interrupt running code. Every task owns its `Store`.
//!
//! The environment is in [`wasi`]: no files, no network, no environment
//! variables, fixed clocks, a seeded random source. Limits: fuel (an exact
//! instruction count), linear memory, stdout size, wall time.

mod wasi;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{
    Config, Engine, ExternType, InstancePre, Linker, Module, OptLevel, ResourceLimiter, Store, StoreLimits,
    StoreLimitsBuilder, Trap, UpdateDeadline, WasmFeatures,
};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p1::WasiP1Ctx;

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
/// Longest wall time accepted, so that `Instant + wall_time` cannot overflow.
const MAX_WALL_TIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// Errors creating a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot configure the wasmtime engine: {0}")]
    Engine(String),
    #[error("cannot start the epoch ticker thread")]
    Ticker(#[source] std::io::Error),
}

/// Sandbox limits of one task, with zeros already replaced by defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub fuel: u64,
    pub memory_bytes: u64,
    pub output_bytes: u64,
    pub wall_time: Duration,
}

impl Limits {
    /// Builds limits from an assignment's values; 0 means "the worker default".
    pub fn with_defaults(fuel: u64, memory_bytes: u64, output_bytes: u64, wall_time_ms: u64) -> Self {
        let or = |value: u64, default: u64| if value == 0 { default } else { value };
        let wall_time =
            if wall_time_ms == 0 { DEFAULT_WALL_TIME } else { Duration::from_millis(wall_time_ms).min(MAX_WALL_TIME) };
        Limits {
            fuel: or(fuel, DEFAULT_FUEL),
            memory_bytes: or(memory_bytes, DEFAULT_MEMORY_BYTES),
            output_bytes: or(output_bytes, DEFAULT_OUTPUT_BYTES),
            wall_time,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::with_defaults(0, 0, 0, 0)
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
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Exit code 0 (or `_start` returned): the app's stdout.
    Success(Vec<u8>),
    /// Trap, non-zero exit, limit exceeded, invalid module: why.
    Error(String),
    /// Stopped through its abort flag (work no longer needed, or shutdown):
    /// nothing to report.
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
    pub run_time_ms: u64,
}

/// Compiles and runs apps. Share it (`Arc`) between the threads of the pool.
pub struct Sandbox {
    /// Index 0: NaN canonicalization off; 1: on.
    engines: [Engine; 2],
    /// Compiled and linked modules; a module that failed to compile or link
    /// is cached too, with its error, so it is not compiled again per task.
    modules: Mutex<ModuleCache>,
    /// Kept for its `Drop`, which stops the ticker thread.
    _ticker: Ticker,
}

/// Linked modules (or why they cannot run), by (digest, nan_canonicalization).
type ModuleCache = HashMap<(String, bool), Result<InstancePre<TaskState>, String>>;

/// Per-task store data.
struct TaskState {
    wasi: WasiP1Ctx,
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
        let ticker = Ticker::start(engines.clone())?;
        Ok(Sandbox { engines, modules: Mutex::new(HashMap::new()), _ticker: ticker })
    }

    /// Runs `task` to completion on the current thread (CPU-bound: call it
    /// from a worker pool, never from an async runtime). Setting `abort`
    /// interrupts it within about one epoch tick.
    pub fn run(&self, task: &Task, abort: Arc<AtomicBool>) -> Outcome {
        let started = Instant::now();
        let pre = match self.prepare(task) {
            Ok(pre) => pre,
            Err(message) => {
                return Outcome {
                    status: Status::Error(message),
                    stderr_tail: String::new(),
                    fuel_used: 0,
                    run_time_ms: elapsed_ms(started),
                };
            }
        };
        let limits = task.limits;
        let output_limit = usize::try_from(limits.output_bytes).unwrap_or(usize::MAX);
        let (wasi, stdout, stderr) = wasi::build_ctx(&task.input, task.random_seed, output_limit);
        let state = TaskState { wasi, limiter: MemoryLimiter::new(limits.memory_bytes), interrupt: None };
        let mut store = Store::new(pre.module().engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.set_fuel(limits.fuel).expect("fuel metering is enabled on both engines");
        let deadline = started + limits.wall_time;
        store.epoch_deadline_callback(move |mut ctx| {
            let interrupt = if abort.load(Ordering::Relaxed) {
                Interrupt::Aborted
            } else if Instant::now() >= deadline {
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

        let remaining = store.get_fuel().unwrap_or(0);
        let state = store.data();
        let status = classify(result, state.interrupt, stdout.overflowed(), state.limiter.denied);
        let status = match status {
            Ok(()) => Status::Success(stdout.take()),
            Err(status) => status,
        };
        Outcome {
            status,
            stderr_tail: String::from_utf8_lossy(&stderr.take()).into_owned(),
            fuel_used: limits.fuel.saturating_sub(remaining),
            run_time_ms: elapsed_ms(started),
        }
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
        let compiled = compile(engine, &task.module);
        self.lock_modules().entry(key).or_insert(compiled).clone()
    }

    fn lock_modules(&self) -> std::sync::MutexGuard<'_, ModuleCache> {
        // The map is only ever read or inserted into, so a panic elsewhere
        // cannot leave it half-updated.
        self.modules.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Maps how the run ended to a status; `Ok(())` is success.
fn classify(
    result: wasmtime::Result<()>,
    interrupt: Option<Interrupt>,
    output_overflowed: bool,
    memory_denied: bool,
) -> Result<(), Status> {
    match interrupt {
        Some(Interrupt::Aborted) => return Err(Status::Aborted),
        Some(Interrupt::WallTime) => {
            return Err(Status::Error("wall time limit exceeded".into()));
        }
        None => {}
    }
    if output_overflowed {
        return Err(Status::Error("output limit exceeded".into()));
    }
    let error = match result {
        Ok(()) => return Ok(()),
        Err(error) => error,
    };
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return match exit.0 {
            0 => Ok(()),
            _ if memory_denied => Err(Status::Error("memory limit exceeded".into())),
            code => Err(Status::Error(format!("exit code {code}"))),
        };
    }
    let message = match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => "fuel limit exceeded".to_string(),
        Some(Trap::Interrupt) => "wall time limit exceeded".to_string(),
        _ if memory_denied => "memory limit exceeded".to_string(),
        // Trap's Display starts with "wasm trap: "; "trap: " is enough.
        Some(trap) => {
            let trap = trap.to_string();
            format!("trap: {}", trap.strip_prefix("wasm trap: ").unwrap_or(&trap))
        }
        None => format!("trap: {error:#}"),
    };
    Err(Status::Error(message))
}

fn engine(nan_canonicalization: bool) -> Result<Engine, Error> {
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
    Engine::new(&config).map_err(|error| Error::Engine(format!("{error:#}")))
}

/// Compiles, validates and links a module.
fn compile(engine: &Engine, bytes: &[u8]) -> Result<InstancePre<TaskState>, String> {
    let module = Module::new(engine, bytes).map_err(|error| format!("invalid module: {error:#}"))?;
    match module.get_export("_start") {
        Some(ExternType::Func(func)) if func.params().len() == 0 && func.results().len() == 0 => {}
        _ => return Err("app has no _start export".into()),
    }
    let mut linker = Linker::new(engine);
    wasi::add_to_linker(&mut linker, |state: &mut TaskState| &mut state.wasi)
        .map_err(|error| format!("cannot link WASI: {error:#}"))?;
    linker.instantiate_pre(&module).map_err(|error| format!("invalid module: {error:#}"))
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
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
