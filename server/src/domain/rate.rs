//! Rate limits: a token bucket per caller (a host, or an address that
//! registers hosts). Pure: time is an argument, the caller keeps the buckets.
//! A bucket holds at most `burst` tokens, gains `per_second` tokens a second,
//! and each call takes one; a call that finds it empty is refused with the
//! time until a token is back.

use super::Timestamp;

/// The shape of a limit: sustained rate and burst.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    per_second: f64,
    burst: f64,
}

/// Why a rate was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("rate must be positive and finite, and burst at least 1 (got {per_second}/s, burst {burst})")]
    Invalid { per_second: String, burst: String },
}

impl Rate {
    pub fn new(per_second: f64, burst: u32) -> Result<Rate, RateError> {
        if !(per_second.is_finite() && per_second > 0.0) || burst == 0 {
            return Err(RateError::Invalid { per_second: per_second.to_string(), burst: burst.to_string() });
        }
        Ok(Rate { per_second, burst: f64::from(burst) })
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }
}

/// One caller's bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    updated: Timestamp,
}

/// A call refused by a rate limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many {what}: retry after {retry_after_ms} ms")]
pub struct Limited {
    /// What was limited, e.g. "registrations from this address".
    pub what: &'static str,
    pub retry_after_ms: u64,
}

/// A call refused: retry after this many milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn full(rate: &Rate, now: Timestamp) -> TokenBucket {
        TokenBucket { tokens: rate.burst, updated: now }
    }

    /// Takes one token at `now`, or says how long until one is back.
    pub fn take(&mut self, rate: &Rate, now: Timestamp) -> Result<(), RetryAfter> {
        // A clock that went back refills nothing and takes nothing away.
        let elapsed_ms = now.0.saturating_sub(self.updated.0).max(0);
        self.tokens = (self.tokens + elapsed_ms as f64 * rate.per_second / 1000.0).min(rate.burst);
        self.updated = Timestamp(self.updated.0.max(now.0));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - self.tokens;
            Err(RetryAfter((missing * 1000.0 / rate.per_second).ceil().max(1.0) as u64))
        }
    }

    /// Whether the bucket is full again at `now` (so it can be forgotten).
    pub fn is_full(&self, rate: &Rate, now: Timestamp) -> bool {
        let elapsed_ms = now.0.saturating_sub(self.updated.0).max(0);
        self.tokens + elapsed_ms as f64 * rate.per_second / 1000.0 >= rate.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket() {
        let rate = Rate::new(2.0, 3).expect("valid");
        let t0 = Timestamp(1_000_000);
        let mut bucket = TokenBucket::full(&rate, t0);
        let check = |bucket: &mut TokenBucket, at_ms: i64, expected: Result<(), u64>| {
            assert_eq!(bucket.take(&rate, t0.plus_ms(at_ms as u64)), expected.map_err(RetryAfter), "at {at_ms} ms");
        };
        check(&mut bucket, 0, Ok(()));
        check(&mut bucket, 0, Ok(()));
        check(&mut bucket, 0, Ok(()));
        check(&mut bucket, 0, Err(500));
        check(&mut bucket, 250, Err(250));
        check(&mut bucket, 500, Ok(()));
        check(&mut bucket, 500, Err(500));
        assert!(!bucket.is_full(&rate, t0.plus_ms(1000)));
        assert!(bucket.is_full(&rate, t0.plus_ms(2000)));
        check(&mut bucket, 10_000, Ok(()));
        check(&mut bucket, 10_000, Ok(()));
        check(&mut bucket, 10_000, Ok(()));
        check(&mut bucket, 10_000, Err(500));
        assert!(Rate::new(0.0, 1).is_err());
        assert!(Rate::new(f64::NAN, 1).is_err());
        assert!(Rate::new(1.0, 0).is_err());
    }
}
