//! The upload cap: a token bucket over the bytes a party sends, time as an
//! argument ([`UploadLimiter`]), and the handle its senders share
//! ([`UploadCap`]). The swarm's `serve` hook asks it, before each 16 KiB
//! chunk it sends, how long to wait; a coordinator's gRPC downloads ask the
//! same cap, so that both paths together keep to it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One upload cap shared by every sender of a party (clones share it).
#[derive(Clone, Debug)]
pub struct UploadCap(Arc<Mutex<UploadLimiter>>);

impl UploadCap {
    /// A cap of `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> UploadCap {
        UploadCap(Arc::new(Mutex::new(UploadLimiter::new(bytes_per_sec))))
    }

    /// The cap in bytes per second.
    pub fn bytes_per_sec(&self) -> u64 {
        self.lock().bytes_per_sec()
    }

    /// Grants `bytes` now: how long the sender waits before sending them.
    pub fn grant(&self, bytes: u64) -> Duration {
        self.lock().grant(Instant::now(), bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UploadLimiter> {
        // The lock is held only to compute a wait; a panic cannot leave the bucket half-updated.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How far ahead of the cap a swarm may send at once: a quarter of a
/// second's worth of bytes, at least one 16 KiB chunk group.
const BURST: Duration = Duration::from_millis(250);
const MIN_BURST_BYTES: u64 = 16 * 1024;

/// A token bucket of `bytes_per_sec`, refilled continuously, holding at most
/// a burst of a quarter of a second (at least 16 KiB).
#[derive(Debug)]
pub struct UploadLimiter {
    bytes_per_sec: u64,
    /// When the bytes already granted will have been paid for at the cap;
    /// `None` until the first grant.
    paid_until: Option<Instant>,
}

impl UploadLimiter {
    /// A limiter for `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> UploadLimiter {
        UploadLimiter { bytes_per_sec: bytes_per_sec.max(1), paid_until: None }
    }

    /// The cap in bytes per second.
    pub fn bytes_per_sec(&self) -> u64 {
        self.bytes_per_sec
    }

    /// Grants `bytes` at `now`, returning how long the sender must wait
    /// before sending them so that the cap holds.
    pub fn grant(&mut self, now: Instant, bytes: u64) -> Duration {
        let burst = BURST.max(self.duration_of(MIN_BURST_BYTES));
        // An idle bucket refills up to the burst, never beyond.
        let start = match self.paid_until {
            Some(paid_until) if paid_until > now => paid_until,
            _ => now,
        };
        let paid_until = start + self.duration_of(bytes);
        self.paid_until = Some(paid_until);
        paid_until.saturating_duration_since(now).saturating_sub(burst)
    }

    fn duration_of(&self, bytes: u64) -> Duration {
        Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grants `chunks` (at offsets in ms from the start, bytes) and checks
    /// the waits in ms.
    fn check(bytes_per_sec: u64, chunks: &[(u64, u64)], expected_waits_ms: &[u64]) {
        let start = Instant::now();
        let mut limiter = UploadLimiter::new(bytes_per_sec);
        let waits: Vec<u64> = chunks
            .iter()
            .map(|&(at_ms, bytes)| {
                let wait = limiter.grant(start + Duration::from_millis(at_ms), bytes);
                wait.as_millis() as u64
            })
            .collect();
        assert_eq!(waits, expected_waits_ms);
    }

    #[test]
    fn waits_keep_the_rate_after_the_burst() {
        // 100 KB/s: a burst of 25 KB goes at once, then every 10 KB waits 100 ms more.
        check(100_000, &[(0, 10_000), (0, 10_000), (0, 10_000), (0, 10_000)], &[0, 0, 50, 150]);
        // Sending at the rate never waits.
        check(100_000, &[(0, 10_000), (100, 10_000), (200, 10_000)], &[0, 0, 0]);
        // An idle bucket does not save more than the burst.
        check(100_000, &[(0, 10_000), (10_000, 30_000), (10_000, 10_000)], &[0, 50, 150]);
        // A tiny cap still lets one 16 KiB chunk group through before waiting.
        check(1_000, &[(0, 16_384), (0, 16_384)], &[0, 16_384]);
    }
}
