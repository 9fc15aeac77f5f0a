//! The deterministic WASI preview 1 environment an app (or a validator) sees.
//!
//! Everything an app could observe about the host is fixed here: the clocks
//! never move, randomness comes from a generator seeded by the assignment,
//! stdout and stderr are captured in memory, and `poll_oneoff` (sleeping) returns
//! at once instead of blocking a worker thread for as long as the app asks.
//! The only filesystem is the task's checkpoint directory, preopened as
//! `/checkpoint` when the worker gives one. The command line and the
//! environment variables are the task's (part of its work unit), never the
//! host's.

use std::io;
use std::path::Path;
use std::pin::Pin;
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

/// What one run sees: stdin, the random seed, the stdout and stderr limits,
/// the host directory preopened as `/checkpoint`, if any, the command line
/// and the environment variables.
pub struct Environment<'a> {
    pub input: Vec<u8>,
    pub random_seed: u64,
    pub output_limit: usize,
    pub stderr_limit: usize,
    pub checkpoint_dir: Option<&'a Path>,
    /// `argv`, `argv[0]` included; empty: `["app"]`.
    pub args: &'a [String],
    /// The variables, in the order `environ_get` lists them.
    pub env: &'a [(String, String)],
}

/// `argv[0]` when the task gives no command line.
const DEFAULT_ARGV0: &str = "app";

/// Builds the WASI context of one run and returns it with handles on its
/// captured stdout and stderr; `Err` (a message) if the checkpoint directory
/// cannot be opened.
pub fn build_ctx(env: Environment<'_>) -> Result<(WasiP1Ctx, CapturePipe, CapturePipe), String> {
    let Environment { input, random_seed, output_limit, stderr_limit, checkpoint_dir, args, env } = env;
    let stdout = CapturePipe::limited(output_limit);
    let stderr = CapturePipe::tail(STDERR_TAIL_BYTES, stderr_limit);
    let mut builder = WasiCtxBuilder::new();
    if let Some(dir) = checkpoint_dir {
        builder
            .preopened_dir(dir, CHECKPOINT_GUEST_PATH, FsPerms::ReadWrite)
            .map_err(|error| format!("cannot open the checkpoint directory {}: {error:#}", dir.display()))?;
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
        .wall_clock(FixedWallClock)
        .monotonic_clock(FixedMonotonicClock)
        // Two independent streams from the same seed: secure and insecure
        // randomness must not return the same bytes.
        .secure_random(SplitMix64::new(random_seed))
        .insecure_random(SplitMix64::new(random_seed ^ 0x5DEE_CE66_D1CE_4E5B))
        .insecure_random_seed(u128::from(random_seed))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    Ok((builder.build_p1(), stdout, stderr))
}

/// Adds WASI preview 1 to `linker`, with `poll_oneoff` replaced by the
/// deterministic version below.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    wasi: impl Fn(&mut T) -> &mut WasiP1Ctx + Copy + Send + Sync + 'static,
) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, wasi)?;
    linker.allow_shadowing(true);
    linker.func_wrap("wasi_snapshot_preview1", "poll_oneoff", poll_oneoff::<T>)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// WASI errno values used by `poll_oneoff`.
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
/// Sizes of `subscription` and `event` in WASI preview 1's ABI.
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;

/// `poll_oneoff` in virtual time: every subscription is ready at once. Clock
/// subscriptions (sleeps) expire immediately, and stdio is in memory so it is
/// always ready. wasmtime-wasi's own version calls `std::thread::sleep`, which
/// no epoch deadline can interrupt and whose timing the app could observe.
fn poll_oneoff<T>(
    mut caller: Caller<'_, T>,
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
    let data = memory.data_mut(&mut caller);
    let subscriptions = subscriptions as u32 as usize;
    let events = events as u32 as usize;
    for index in 0..n {
        let subscription = subscriptions + index * SUBSCRIPTION_SIZE;
        let Some(bytes) = data.get(subscription..subscription + 9) else {
            return ERRNO_FAULT;
        };
        let mut userdata = [0u8; 8];
        userdata.copy_from_slice(&bytes[..8]);
        let event_type = bytes[8];
        let event = events + index * EVENT_SIZE;
        let Some(out) = data.get_mut(event..event + EVENT_SIZE) else {
            return ERRNO_FAULT;
        };
        out.fill(0);
        out[..8].copy_from_slice(&userdata);
        // error (u16 at 8) stays 0: success; type (u8 at 10) echoes the subscription.
        out[10] = event_type;
    }
    let n_events_out = n_events_out as u32 as usize;
    let Some(out) = data.get_mut(n_events_out..n_events_out + 4) else {
        return ERRNO_FAULT;
    };
    out.copy_from_slice(&(n as u32).to_le_bytes());
    ERRNO_SUCCESS
}

struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::from_secs(FIXED_WALL_CLOCK_SECS)
    }
}

struct FixedMonotonicClock;

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        FIXED_MONOTONIC_NANOS
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
