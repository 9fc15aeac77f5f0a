//! What the coordinator knows of a host's reliability: its streak of valid
//! results (for adaptive replication) and its daily quota (so a broken host
//! cannot drain the queue).
//!
//! Unlike BOINC, the quota grows back only on validated results, never on a
//! mere reported success, and only replicated validations lengthen the streak.

use super::lifecycle::HostEvent;
use super::{ResultId, Timestamp, scheduler};

/// Streak of consecutive valid results from which a host may be trusted alone.
pub const ADAPTIVE_MIN_STREAK: u32 = 10;
/// A new host's daily quota of results.
pub const INITIAL_DAILY_QUOTA: u32 = 200;
/// The highest daily quota a host can earn.
pub const MAX_DAILY_QUOTA: u32 = 20_000;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// A host's trust record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostTrust {
    /// Valid results in a row, counting only those compared with another copy.
    pub consecutive_valid: u32,
    /// Results the host may receive per day.
    pub daily_quota: u32,
    /// Results sent to the host on `quota_day`.
    pub results_today: u32,
    /// The day (since the Unix epoch, UTC) `results_today` counts.
    pub quota_day: i64,
}

impl Default for HostTrust {
    fn default() -> Self {
        HostTrust { consecutive_valid: 0, daily_quota: INITIAL_DAILY_QUOTA, results_today: 0, quota_day: 0 }
    }
}

impl HostTrust {
    /// Updates the record after an event on one of the host's results.
    pub fn apply(&mut self, event: &HostEvent) {
        match event {
            HostEvent::Valid { replicated, .. } => {
                if *replicated {
                    self.consecutive_valid = self.consecutive_valid.saturating_add(1);
                }
                self.daily_quota = self.daily_quota.saturating_mul(2).min(MAX_DAILY_QUOTA);
            }
            HostEvent::Invalid => self.consecutive_valid = 0,
            HostEvent::NoReply | HostEvent::ClientError => {
                self.consecutive_valid = 0;
                self.daily_quota = (self.daily_quota / 2).max(1);
            }
        }
    }

    /// How many more results the host may receive today.
    pub fn remaining_today(&self, now: Timestamp) -> u32 {
        if day_of(now) != self.quota_day {
            self.daily_quota
        } else {
            self.daily_quota.saturating_sub(self.results_today)
        }
    }

    /// Counts `n` results sent at `now`.
    pub fn record_sent(&mut self, n: u32, now: Timestamp) {
        let day = day_of(now);
        if day != self.quota_day {
            self.quota_day = day;
            self.results_today = 0;
        }
        self.results_today = self.results_today.saturating_add(n);
    }
}

/// A draw uniform in [0, 1) for a result, from the coordinator's secret:
/// reproducible for a given secret, unpredictable to hosts.
pub fn draw(secret: u64, result: ResultId) -> f64 {
    let mixed = scheduler::splitmix64(secret ^ result.0 as u64);
    (mixed >> 11) as f64 / (1_u64 << 53) as f64
}

fn day_of(now: Timestamp) -> i64 {
    now.0.div_euclid(DAY_MS)
}

/// Adaptive replication: whether a work unit whose first copy goes to a host
/// with this streak is accepted on that single result. `draw` is uniform in
/// [0, 1); the chance is `1 - 1/streak` from a streak of `ADAPTIVE_MIN_STREAK`.
pub fn accept_single(consecutive_valid: u32, draw: f64) -> bool {
    consecutive_valid >= ADAPTIVE_MIN_STREAK && draw < 1.0 - 1.0 / f64::from(consecutive_valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(DAY_MS * 20_000 + 5);

    fn valid(replicated: bool) -> HostEvent {
        HostEvent::Valid { credit: 1.0, replicated }
    }

    #[test]
    fn streak_counts_replicated_validations_and_resets_on_any_failure() {
        let mut trust = HostTrust::default();
        for _ in 0..3 {
            trust.apply(&valid(true));
        }
        trust.apply(&valid(false));
        assert_eq!(trust.consecutive_valid, 3);
        for failure in [HostEvent::Invalid, HostEvent::NoReply, HostEvent::ClientError] {
            trust.consecutive_valid = 5;
            trust.apply(&failure);
            assert_eq!(trust.consecutive_valid, 0, "{failure:?}");
        }
    }

    #[test]
    fn quota_halves_on_errors_and_grows_only_on_validated_results() {
        let mut trust = HostTrust::default();
        trust.apply(&HostEvent::ClientError);
        assert_eq!(trust.daily_quota, INITIAL_DAILY_QUOTA / 2);
        trust.apply(&HostEvent::NoReply);
        assert_eq!(trust.daily_quota, INITIAL_DAILY_QUOTA / 4);
        trust.apply(&HostEvent::Invalid);
        assert_eq!(trust.daily_quota, INITIAL_DAILY_QUOTA / 4, "an invalid result neither grows nor halves it");
        for _ in 0..20 {
            trust.apply(&HostEvent::ClientError);
        }
        assert_eq!(trust.daily_quota, 1, "never below one");
        trust.apply(&valid(true));
        assert_eq!(trust.daily_quota, 2);
        for _ in 0..30 {
            trust.apply(&valid(true));
        }
        assert_eq!(trust.daily_quota, MAX_DAILY_QUOTA);
    }

    #[test]
    fn quota_counts_per_day() {
        let mut trust = HostTrust { daily_quota: 10, ..HostTrust::default() };
        assert_eq!(trust.remaining_today(NOW), 10);
        trust.record_sent(7, NOW);
        assert_eq!(trust.remaining_today(NOW), 3);
        trust.record_sent(3, NOW);
        assert_eq!(trust.remaining_today(NOW), 0);
        let tomorrow = Timestamp(NOW.0 + DAY_MS);
        assert_eq!(trust.remaining_today(tomorrow), 10);
        trust.record_sent(1, tomorrow);
        assert_eq!((trust.results_today, trust.remaining_today(tomorrow)), (1, 9));
    }

    #[test]
    fn single_acceptance_needs_a_long_streak_and_a_lucky_draw() {
        assert!(!accept_single(9, 0.0));
        assert!(accept_single(10, 0.0));
        assert!(accept_single(10, 0.89));
        assert!(!accept_single(10, 0.9));
        assert!(accept_single(100, 0.98));
        assert!(!accept_single(100, 0.99));
    }
}
