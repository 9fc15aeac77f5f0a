//! Rate limits of the scheduler: registrations per peer address and
//! requests per host, each a token bucket (`domain::rate`). A refused call
//! gets ResourceExhausted with a `retry-after-ms` metadata entry, and
//! changes nothing. The buckets live in memory: a restart forgets them.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use crate::domain::rate::{Limited, Rate, TokenBucket};
use crate::domain::{HostId, Timestamp};

/// Buckets kept before the full ones are forgotten.
const MAX_BUCKETS: usize = 100_000;

/// The limits, from the coordinator's flags.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimits {
    /// `RegisterHost` calls per peer IP address.
    pub registrations: Rate,
    /// Authenticated scheduler calls per host.
    pub host_requests: Rate,
}

impl Default for RateLimits {
    /// Generous enough for a load test from one address (1,000 hosts
    /// registering at once) and for a host far busier than a real worker.
    fn default() -> RateLimits {
        RateLimits {
            registrations: Rate::new(10.0, 1000).expect("a valid default"),
            host_requests: Rate::new(100.0, 200).expect("a valid default"),
        }
    }
}

/// The buckets of every caller.
#[derive(Debug)]
pub struct Limiters {
    limits: RateLimits,
    registrations: Mutex<HashMap<IpAddr, TokenBucket>>,
    hosts: Mutex<HashMap<HostId, TokenBucket>>,
    /// Per peer: when a refused call was last logged, and how many since.
    refusals: Mutex<HashMap<IpAddr, (Timestamp, u64)>>,
}

/// A peer's refused calls are logged at most once per this long.
const REFUSAL_LOG_MS: i64 = 1000;

impl Limiters {
    pub fn new(limits: RateLimits) -> Limiters {
        Limiters { limits, registrations: Mutex::default(), hosts: Mutex::default(), refusals: Mutex::default() }
    }

    /// One registration from `peer` (all unknown peers share one bucket).
    pub fn registration(&self, peer: Option<IpAddr>, now: Timestamp) -> Result<(), Limited> {
        let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        take(&self.registrations, peer, &self.limits.registrations, now, "registrations from this address")
    }

    /// A call from `peer` refused for its token: `Some(n)` when it is to be
    /// logged now, `n` being the refusals left unlogged since the last line
    /// (at most one line per peer per [`REFUSAL_LOG_MS`], so a peer cannot
    /// flood the log).
    pub fn refusal(&self, peer: Option<IpAddr>, now: Timestamp) -> Option<u64> {
        let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let mut refusals = self.refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if refusals.len() >= MAX_BUCKETS {
            refusals.retain(|_, (at, _)| now.0 - at.0 < REFUSAL_LOG_MS);
        }
        match refusals.get_mut(&peer) {
            Some((at, unlogged)) if now.0 - at.0 < REFUSAL_LOG_MS => {
                *unlogged += 1;
                None
            }
            Some((at, unlogged)) => {
                *at = now;
                Some(std::mem::take(unlogged))
            }
            None => {
                refusals.insert(peer, (now, 0));
                Some(0)
            }
        }
    }

    /// One request of `host`.
    pub fn host_request(&self, host: HostId, now: Timestamp) -> Result<(), Limited> {
        take(&self.hosts, host, &self.limits.host_requests, now, "requests from this host")
    }
}

fn take<K: Eq + Hash>(
    buckets: &Mutex<HashMap<K, TokenBucket>>,
    key: K,
    rate: &Rate,
    now: Timestamp,
    what: &'static str,
) -> Result<(), Limited> {
    // Held for a few arithmetic operations, never across an await.
    let mut buckets = buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if buckets.len() >= MAX_BUCKETS {
        buckets.retain(|_, bucket| !bucket.is_full(rate, now));
    }
    let bucket = buckets.entry(key).or_insert_with(|| TokenBucket::full(rate, now));
    bucket.take(rate, now).map_err(|retry| Limited { what, retry_after_ms: retry.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_once_a_second_per_peer_with_the_count_between() {
        let limiters = Limiters::new(RateLimits::default());
        let (a, b) = (Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))), Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))));
        assert_eq!(limiters.refusal(a, Timestamp(0)), Some(0));
        assert_eq!(limiters.refusal(a, Timestamp(10)), None);
        assert_eq!(limiters.refusal(a, Timestamp(999)), None);
        assert_eq!(limiters.refusal(b, Timestamp(999)), Some(0), "another peer has its own line");
        assert_eq!(limiters.refusal(a, Timestamp(1000)), Some(2), "the two unlogged ones are counted");
        assert_eq!(limiters.refusal(a, Timestamp(1500)), None);
        assert_eq!(limiters.refusal(None, Timestamp(1500)), Some(0));
    }
}
