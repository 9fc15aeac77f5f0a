//! The deterministic WASI preview 1 environment an app (or a validator) sees.
//!
//! Everything an app could observe about the host is fixed here: the clocks
//! are virtual (they start at a fixed time and move only when the app
//! sleeps, by exactly what it asked), randomness comes from a generator
//! seeded by the assignment, stdout and stderr are captured in memory, and
//! `poll_oneoff` answers as WASI does without waiting: ready descriptors at
//! once, else the earliest clock, advancing the virtual clocks to it instead
//! of blocking a worker thread for as long as the app asks. `proc_exit`
//! reports any status as the app gave it.
//! The only filesystem is what the worker gives the task: its input files,
//! read-only, as `/input`, the directory for its output files as `/output`,
//! and its checkpoint directory as `/checkpoint` (preopened in that order,
//! each only when given). The command line and the
//! environment variables are the task's (part of its work unit), never the
//! host's.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// What the wall clock always says: 2000-01-01T00:00:00Z, in seconds since the Unix epoch.
const FIXED_WALL_CLOCK_SECS: u64 = 946_684_800;
/// What the monotonic clock always says, in nanoseconds.
const FIXED_MONOTONIC_NANOS: u64 = 1_000_000_000;
/// How much of stderr is kept for the report (its last bytes).
pub const STDERR_TAIL_BYTES: usize = 4096;
/// Where the checkpoint directory appears inside the sandbox.
pub const CHECKPOINT_GUEST_PATH: &str = "/checkpoint";
/// Where the task's input files appear, read-only.
pub const INPUT_GUEST_PATH: &str = "/input";
/// Where the app writes the output files reported with its result.
pub const OUTPUT_GUEST_PATH: &str = "/output";

/// What one run sees: stdin, the random seed, the stdout and stderr limits,
/// the host directory preopened as `/checkpoint`, if any, the command line
/// and the environment variables.
pub struct Environment<'a> {
    pub input: Vec<u8>,
    pub random_seed: u64,
    pub output_limit: usize,
    pub stderr_limit: usize,
    pub checkpoint_dir: Option<&'a Path>,
    /// The host directories preopened as `/input` (read-only) and `/output`.
    pub input_dir: Option<&'a Path>,
    pub output_dir: Option<&'a Path>,
    /// `argv`, `argv[0]` included; empty: `["app"]`.
    pub args: &'a [String],
    /// The variables, in the order `environ_get` lists them.
    pub env: &'a [(String, String)],
}

/// `argv[0]` when the task gives no command line.
const DEFAULT_ARGV0: &str = "app";

/// The WASI context of one run, with handles on its captured stdout and
/// stderr and on its virtual clocks.
pub struct Ctx {
    pub wasi: WasiP1Ctx,
    pub stdout: CapturePipe,
    pub stderr: CapturePipe,
    pub time: VirtualTime,
}

/// Builds the WASI context of one run; `Err` (a message) if the checkpoint
/// directory cannot be opened.
pub fn build_ctx(env: Environment<'_>) -> Result<Ctx, String> {
    let Environment {
        input,
        random_seed,
        output_limit,
        stderr_limit,
        checkpoint_dir,
        input_dir,
        output_dir,
        args,
        env,
    } = env;
    let stdout = CapturePipe::limited(output_limit);
    let stderr = CapturePipe::tail(STDERR_TAIL_BYTES, stderr_limit);
    let time = VirtualTime::default();
    let mut builder = WasiCtxBuilder::new();
    // Preopens in this order: fd 3, 4, 5 for the ones a task has.
    let preopens = [
        (input_dir, INPUT_GUEST_PATH, FsPerms::ReadOnly, "input"),
        (output_dir, OUTPUT_GUEST_PATH, FsPerms::ReadWrite, "output"),
        (checkpoint_dir, CHECKPOINT_GUEST_PATH, FsPerms::ReadWrite, "checkpoint"),
    ];
    for (dir, guest, perms, what) in preopens {
        let Some(dir) = dir else { continue };
        builder
            .preopened_dir(dir, guest, perms)
            .map_err(|error| format!("cannot open the {what} directory {}: {error:#}", dir.display()))?;
        // Tasks run on threads of their own (never on an async runtime), so
        // file operations may block them instead of going through a
        // blocking-task pool.
        builder.allow_blocking_current_thread(true);
    }
    if args.is_empty() {
        builder.arg(DEFAULT_ARGV0);
    } else {
        builder.args(args);
    }
    builder
        .envs(env)
        .stdin(MemoryInputPipe::new(input))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .wall_clock(WallClock(time.clone()))
        .monotonic_clock(MonotonicClock(time.clone()))
        // Two independent streams from the same seed: secure and insecure
        // randomness must not return the same bytes.
        .secure_random(SplitMix64::new(random_seed))
        .insecure_random(SplitMix64::new(random_seed ^ 0x5DEE_CE66_D1CE_4E5B))
        .insecure_random_seed(u128::from(random_seed))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    Ok(Ctx { wasi: builder.build_p1(), stdout, stderr, time })
}

/// Adds WASI preview 1 to `linker`, with `poll_oneoff` and `proc_exit`
/// replaced by the versions below; `time` finds a run's virtual clocks.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    wasi: impl Fn(&mut T) -> &mut WasiP1Ctx + Copy + Send + Sync + 'static,
    time: fn(&T) -> &VirtualTime,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, wasi)?;
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        move |caller: Caller<'_, T>, subscriptions: i32, events: i32, n: i32, n_out: i32| {
            poll_oneoff(caller, time, subscriptions, events, n, n_out)
        },
    )?;
    // wasmtime-wasi refuses statuses of 126 and above with a trap; WASI's
    // `exitcode` is any u32, reported as the app gave it (as C's int).
    linker.func_wrap("wasi_snapshot_preview1", "proc_exit", |status: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(wasmtime_wasi::I32Exit(status)))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A run's clocks: nanoseconds the app has slept so far, added to both the
/// fixed wall clock and the fixed monotonic clock.
#[derive(Clone, Default)]
pub struct VirtualTime(Arc<AtomicU64>);

impl VirtualTime {
    pub fn elapsed_nanos(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Moves time forward to `nanos` after the start (never backward).
    fn advance_to(&self, nanos: u64) {
        self.0.fetch_max(nanos, Ordering::Relaxed);
    }
}

/// WASI errno values used by `poll_oneoff`.
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
/// Sizes of `subscription` and `event` in WASI preview 1's ABI.
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;

/// A subscription's kind: `eventtype` in WASI preview 1.
const EVENTTYPE_CLOCK: u8 = 0;
/// `subclockflags`: the timeout is an absolute time of the clock.
const SUBSCRIPTION_CLOCK_ABSTIME: u16 = 1;
/// `clockid` of the wall clock (the others count from the monotonic clock).
const CLOCKID_REALTIME: u32 = 0;

/// `poll_oneoff` as WASI answers it, without waiting: descriptor
/// subscriptions (stdin and the captured stdout and stderr are in memory, and
/// files are always ready) are all ready at once, and then no clock fires; a
/// poll on clocks only fires the earliest of them (those due at the same
/// time fire together) and moves the run's virtual clocks to its time. So an
/// app sleeps in no time, yet sees the time it asked pass, the same on every
/// host. wasmtime-wasi's own version calls `std::thread::sleep`, which no
/// epoch deadline can interrupt and whose timing the app could observe.
fn poll_oneoff<T>(
    mut caller: Caller<'_, T>,
    time: fn(&T) -> &VirtualTime,
    subscriptions: i32,
    events: i32,
    n_subscriptions: i32,
    n_events_out: i32,
) -> i32 {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return ERRNO_FAULT;
    };
    let n = n_subscriptions as u32 as usize;
    if n == 0 {
        return ERRNO_INVAL;
    }
    let (data, state) = memory.data_and_store_mut(&mut caller);
    let time = time(state);
    let now = time.elapsed_nanos();
    let (subscriptions, events) = (subscriptions as u32 as usize, events as u32 as usize);
    // Each subscription as (userdata, type, for a clock: when it is due).
    let mut parsed = Vec::with_capacity(n);
    for index in 0..n {
        let at = subscriptions + index * SUBSCRIPTION_SIZE;
        let Some(bytes) = data.get(at..at + SUBSCRIPTION_SIZE) else {
            return ERRNO_FAULT;
        };
        let u64_at = |offset: usize| u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"));
        let event_type = bytes[8];
        let due = (event_type == EVENTTYPE_CLOCK).then(|| {
            let clock_id = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
            let timeout = u64_at(24);
            let flags = u16::from_le_bytes(bytes[40..42].try_into().expect("2 bytes"));
            if flags & SUBSCRIPTION_CLOCK_ABSTIME == 0 {
                now.saturating_add(timeout)
            } else {
                // An absolute time of that clock, back in time since the start.
                let start = if clock_id == CLOCKID_REALTIME {
                    FIXED_WALL_CLOCK_SECS * 1_000_000_000
                } else {
                    FIXED_MONOTONIC_NANOS
                };
                timeout.saturating_sub(start)
            }
        });
        parsed.push((u64_at(0), event_type, due));
    }
    let descriptors_ready = parsed.iter().any(|(_, _, due)| due.is_none());
    let earliest = parsed.iter().filter_map(|(_, _, due)| *due).min();
    let fired: Vec<&(u64, u8, Option<u64>)> =
        parsed.iter().filter(|(_, _, due)| if descriptors_ready { due.is_none() } else { *due == earliest }).collect();
    if !descriptors_ready && let Some(earliest) = earliest {
        time.advance_to(earliest);
    }
    for (index, (userdata, event_type, _)) in fired.iter().enumerate() {
        let at = events + index * EVENT_SIZE;
        let Some(out) = data.get_mut(at..at + EVENT_SIZE) else {
            return ERRNO_FAULT;
        };
        out.fill(0);
        out[..8].copy_from_slice(&userdata.to_le_bytes());
        // error (u16 at 8) stays 0: success; type (u8 at 10) echoes the subscription.
        out[10] = *event_type;
    }
    let n_events_out = n_events_out as u32 as usize;
    let Some(out) = data.get_mut(n_events_out..n_events_out + 4) else {
        return ERRNO_FAULT;
    };
    out.copy_from_slice(&(fired.len() as u32).to_le_bytes());
    ERRNO_SUCCESS
}

/// The wall clock: 2000-01-01T00:00:00Z plus the time the app slept.
struct WallClock(VirtualTime);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::from_secs(FIXED_WALL_CLOCK_SECS) + Duration::from_nanos(self.0.elapsed_nanos())
    }
}

/// The monotonic clock: a fixed start plus the time the app slept.
struct MonotonicClock(VirtualTime);

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        FIXED_MONOTONIC_NANOS.saturating_add(self.0.elapsed_nanos())
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, and good enough for a
/// reproducible random source. Not cryptographic, and it does not need to be:
/// every copy of a work unit must see the same bytes.
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }
}

impl rand::TryRng for SplitMix64 {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(z ^ (z >> 31))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let word = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        Ok(())
    }
}

/// An in-memory stdout or stderr shared between the WASI context and the
/// sandbox, which reads it after the run.
#[derive(Clone)]
pub struct CapturePipe {
    inner: Arc<Mutex<Capture>>,
}

struct Capture {
    bytes: Vec<u8>,
    mode: Mode,
    /// Bytes written so far (kept or not).
    written: usize,
    /// Set when the app wrote past the limit: the task then fails with
    /// "output limit exceeded" (or "stderr limit exceeded"), whatever the app
    /// did next.
    overflowed: bool,
}

#[derive(Clone, Copy)]
enum Mode {
    /// Keep everything, up to this many bytes; writing more traps.
    Limit(usize),
    /// Keep only the last `keep` bytes; writing more than `limit` in all traps.
    Tail { keep: usize, limit: usize },
}

/// How many bytes `check_write` promises. Never 0: wasmtime-wasi's blocking
/// write loops until the permit covers its chunk, so 0 would spin forever.
const WRITE_PERMIT: usize = 1 << 20;

impl CapturePipe {
    fn limited(limit: usize) -> Self {
        Self::new(Mode::Limit(limit))
    }

    fn tail(keep: usize, limit: usize) -> Self {
        Self::new(Mode::Tail { keep, limit })
    }

    fn new(mode: Mode) -> Self {
        CapturePipe { inner: Arc::new(Mutex::new(Capture { bytes: Vec::new(), mode, written: 0, overflowed: false })) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Capture> {
        // A panic while holding this lock would be a bug in `append`, which
        // does not panic; recover the data rather than poisoning the task.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the app wrote more than the limit.
    pub fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// The captured bytes (for a tail pipe, only the kept tail).
    pub fn take(&self) -> Vec<u8> {
        let mut capture = self.lock();
        let mut bytes = std::mem::take(&mut capture.bytes);
        if let Mode::Tail { keep, .. } = capture.mode
            && bytes.len() > keep
        {
            bytes.drain(..bytes.len() - keep);
        }
        bytes
    }

    /// Appends `bytes`; false if that went over the limit.
    fn append(&self, bytes: &[u8]) -> bool {
        let mut capture = self.lock();
        capture.written = capture.written.saturating_add(bytes.len());
        match capture.mode {
            Mode::Limit(limit) => {
                if capture.written > limit {
                    capture.overflowed = true;
                    return false;
                }
                capture.bytes.extend_from_slice(bytes);
            }
            Mode::Tail { keep, limit } => {
                // Kept even when over the limit: the tail then shows what the
                // app was writing when it was stopped.
                capture.bytes.extend_from_slice(bytes);
                // Trim now and then, not on every write.
                if capture.bytes.len() > 2 * keep.max(1024) {
                    let excess = capture.bytes.len() - keep;
                    capture.bytes.drain(..excess);
                }
                if capture.written > limit {
                    capture.overflowed = true;
                    return false;
                }
            }
        }
        true
    }
}

impl IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturePipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturePipe {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturePipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.append(&bytes) { Ok(()) } else { Err(StreamError::trap("stream limit exceeded")) }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl AsyncWrite for CapturePipe {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.append(buf) {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(io::Error::other("stream limit exceeded")))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng as _;

    #[test]
    fn splitmix_is_reproducible_and_seed_dependent() {
        let draw = |seed| {
            let mut rng = SplitMix64::new(seed);
            let mut buf = [0u8; 13];
            rng.fill_bytes(&mut buf);
            (buf, rng.next_u64())
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn tail_pipe_keeps_the_last_bytes() {
        let pipe = CapturePipe::tail(4, usize::MAX);
        for chunk in [&b"hello "[..], b"world", &[b'x'; 3000]] {
            assert!(pipe.append(chunk));
        }
        assert!(pipe.append(b"1234"));
        assert_eq!(pipe.take(), b"1234");
        assert!(!pipe.overflowed());
    }

    #[test]
    fn tail_pipe_overflows_past_its_limit_and_keeps_the_tail() {
        let pipe = CapturePipe::tail(4, 10);
        assert!(pipe.append(b"0123456789"));
        assert!(!pipe.overflowed());
        assert!(!pipe.append(b"ab"));
        assert!(pipe.overflowed());
        assert_eq!(pipe.take(), b"89ab");
    }

    #[test]
    fn limited_pipe_overflows_past_its_limit() {
        let pipe = CapturePipe::limited(5);
        assert!(pipe.append(b"12345"));
        assert!(!pipe.overflowed());
        assert!(!pipe.append(b"6"));
        assert!(pipe.overflowed());
        assert_eq!(pipe.take(), b"12345");
    }
}
