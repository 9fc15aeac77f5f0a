//! What the coordinator knows of a host's reliability: its streak of valid
//! results (for adaptive replication), its daily quota (so a broken host
//! cannot drain the queue) and its quota per app (so a broken app cannot
//! lock a host out of the others).
//!
//! Unlike BOINC, the quota grows back only on validated results, never on a
//! mere reported success, and only replicated validations lengthen the streak.
//!
//! Blame goes to the cause (see `HostEvent`): a client error reduces only the
//! host's quota for that app, since the app may fail everywhere; it reduces
//! the host's own quota once other hosts succeed on the same work unit (then
//! the error was the host's). A host that errs across apps is caught the same
//! way, in every app that works on other hosts. A missed deadline is always
//! the host's.
//!
//! Newcomers earn trust: a new host starts with `INITIAL_DAILY_QUOTA`, which
//! doubles with each validated result. A host registering under the account
//! of a punished host, or from the address of a punished host that never had
//! a result validated, inherits the punished quota ([`initial_quota`]) and
//! its punished quotas per app, so registering again resets nothing. Only punishment is inherited, never a
//! quota shared: honest hosts behind one address (or loopback) keep theirs.

use super::lifecycle::HostEvent;
use super::{ResultId, Timestamp, scheduler};

/// Streak of consecutive valid results from which a host may be trusted alone.
pub const ADAPTIVE_MIN_STREAK: u32 = 10;
/// A new host's daily quota of results: small, it doubles with every
/// validated result (20 → 20,000 in ten).
pub const INITIAL_DAILY_QUOTA: u32 = 20;
/// The highest daily quota a host can earn.
pub const MAX_DAILY_QUOTA: u32 = 20_000;
/// Copies ended as no reply or error by hosts with no validated result that
/// a work unit does not count toward its `max_total_results` (see
/// `lifecycle::transition`; errors count toward `max_error_results` only
/// while no other copy of the work unit succeeded):
/// fresh registrations that never reply delay a work unit but cannot fail it
/// while hosts that do reply are attached. Bounded, so a work unit that only
/// such hosts ever take still ends.
pub const NEWCOMER_ALLOWANCE: u32 = 4;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// A number of results a day and how many were used today: a host's own
/// quota and its quota for one app are both one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Results that may be sent per day.
    pub daily: u32,
    /// Results sent on `day`.
    pub used: u32,
    /// The day (since the Unix epoch, UTC) `used` counts.
    pub day: i64,
}

impl Quota {
    /// A quota of `daily` results, none used.
    pub fn new(daily: u32) -> Quota {
        Quota { daily, used: 0, day: 0 }
    }

    /// Results sent today, as of `now`.
    pub fn used_today(&self, now: Timestamp) -> u32 {
        if day_of(now) == self.day { self.used } else { 0 }
    }

    /// How many more results may be sent today.
    pub fn remaining_today(&self, now: Timestamp) -> u32 {
        self.daily.saturating_sub(self.used_today(now))
    }

    /// Counts `n` results sent at `now`.
    pub fn record_sent(&mut self, n: u32, now: Timestamp) {
        let day = day_of(now);
        if day != self.day {
            self.day = day;
            self.used = 0;
        }
        self.used = self.used.saturating_add(n);
    }

    fn double(&mut self) {
        self.daily = self.daily.saturating_mul(2).min(MAX_DAILY_QUOTA);
    }

    /// Halves the quota, starting from `at_most` if that is lower; never below one.
    fn halve_from(&mut self, at_most: u32) {
        self.daily = (self.daily.min(at_most) / 2).max(1);
    }
}

/// A host's trust record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostTrust {
    /// Valid results in a row, counting only those compared with another copy.
    pub consecutive_valid: u32,
    /// Results the host may receive per day, over all apps.
    pub quota: Quota,
}

impl Default for HostTrust {
    fn default() -> Self {
        HostTrust { consecutive_valid: 0, quota: Quota::new(INITIAL_DAILY_QUOTA) }
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
                self.quota.double();
            }
            HostEvent::Invalid => self.consecutive_valid = 0,
            // The app may fail everywhere: only the app's quota pays (`AppQuota`).
            HostEvent::ClientError | HostEvent::Unstarted => {}
            HostEvent::NoReply | HostEvent::HostError => {
                self.consecutive_valid = 0;
                self.quota.halve_from(u32::MAX);
            }
        }
    }
}

/// A host's quota for one app (BOINC keeps one per host and app version): a
/// host's errors in an app reduce what it gets of that app only. It starts
/// unlimited (the host's own quota limits) and, on an error, halves from the
/// lower of itself and the host's quota, so it bites at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppQuota(pub Quota);

impl Default for AppQuota {
    fn default() -> Self {
        AppQuota(Quota::new(MAX_DAILY_QUOTA))
    }
}

impl AppQuota {
    /// Updates the quota after an event on one of the host's results of this
    /// app; `host_quota` is the host's own daily quota.
    pub fn apply(&mut self, event: &HostEvent, host_quota: u32) {
        match event {
            HostEvent::Valid { .. } => self.0.double(),
            HostEvent::ClientError => self.0.halve_from(host_quota),
            // The host's own quota pays for these; an unstarted copy never ran the app.
            HostEvent::Invalid | HostEvent::NoReply | HostEvent::HostError | HostEvent::Unstarted => {}
        }
    }

    /// Whether nothing more of the app may be sent today.
    pub fn exhausted(&self, now: Timestamp) -> bool {
        self.0.remaining_today(now) == 0
    }
}

/// How many more results of an app a host may receive today: the lower of
/// what is left of its own quota and of its quota for the app (`None`: the
/// host has no record for the app yet). Called per candidate copy: zero for
/// one app means "not this app now", while zero from `host.quota` alone means
/// nothing more today.
pub fn remaining(host: &HostTrust, app: Option<&AppQuota>, now: Timestamp) -> u32 {
    let own = host.quota.remaining_today(now);
    app.map_or(own, |app| own.min(app.0.remaining_today(now)))
}

/// The daily quota of a new host, given the lowest quota among the hosts it
/// inherits from (same account, or same address without a validated result):
/// the initial quota, or that punished one if it is lower.
pub fn initial_quota(worst_inherited: Option<u32>) -> u32 {
    worst_inherited.map_or(INITIAL_DAILY_QUOTA, |worst| worst.clamp(1, INITIAL_DAILY_QUOTA))
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

    /// Applies `events` in order to a host with `quota` and an app quota of
    /// `app` (None: no record yet), and checks (host quota, app quota, streak).
    fn check(quota: u32, app: u32, streak: u32, events: &[HostEvent], expected: (u32, u32, u32)) {
        let mut host = HostTrust { consecutive_valid: streak, quota: Quota::new(quota) };
        let mut app = AppQuota(Quota::new(app));
        for event in events {
            app.apply(event, host.quota.daily);
            host.apply(event);
        }
        assert_eq!((host.quota.daily, app.0.daily, host.consecutive_valid), expected, "{events:?}");
    }

    #[test]
    fn errors_are_blamed_on_their_cause() {
        use HostEvent::{ClientError, HostError, Invalid, NoReply};
        const MAX: u32 = MAX_DAILY_QUOTA;
        // An error not (yet) blamed on the host: only its quota for the app
        // halves, from the host's quota if that is lower; the streak stands.
        check(200, MAX, 5, &[ClientError], (200, 100, 5));
        check(200, 40, 5, &[ClientError], (200, 20, 5));
        check(200, MAX, 5, &vec![ClientError; 12], (200, 1, 5));
        // A copy given back unstarted: the app did not run, no quota pays.
        check(200, MAX, 5, &vec![HostEvent::Unstarted; 12], (200, MAX, 5));
        // The host's own faults: its quota halves and its streak resets.
        check(200, MAX, 5, &[HostError], (100, MAX, 0));
        check(200, MAX, 5, &[NoReply], (100, MAX, 0));
        check(200, MAX, 5, &vec![NoReply; 20], (1, MAX, 0));
        // An invalid result neither grows nor halves a quota.
        check(200, 50, 5, &[Invalid], (200, 50, 0));
        // Validated results double both, up to the maximum; only replicated
        // validations lengthen the streak.
        check(20, 1, 0, &[valid(true), valid(true), valid(false)], (160, 8, 2));
        check(MAX / 2 + 1, MAX, 0, &[valid(true)], (MAX, MAX, 1));
    }

    #[test]
    fn quota_counts_per_day() {
        let mut quota = Quota::new(10);
        assert_eq!(quota.remaining_today(NOW), 10);
        quota.record_sent(7, NOW);
        assert_eq!((quota.used_today(NOW), quota.remaining_today(NOW)), (7, 3));
        quota.record_sent(3, NOW);
        assert_eq!(quota.remaining_today(NOW), 0);
        let tomorrow = Timestamp(NOW.0 + DAY_MS);
        assert_eq!((quota.used_today(tomorrow), quota.remaining_today(tomorrow)), (0, 10));
        quota.record_sent(1, tomorrow);
        assert_eq!((quota.used, quota.remaining_today(tomorrow)), (1, 9));
    }

    #[test]
    fn what_a_host_may_still_take_of_an_app() {
        let used = |daily, used| Quota { daily, used, day: day_of(NOW) };
        let host = |daily, used_today| HostTrust { consecutive_valid: 0, quota: used(daily, used_today) };
        let cases: &[(HostTrust, Option<AppQuota>, u32)] = &[
            (host(20, 0), None, 20),
            (host(20, 5), None, 15),
            (host(20, 5), Some(AppQuota::default()), 15),
            (host(20, 5), Some(AppQuota(used(4, 1))), 3),
            (host(20, 5), Some(AppQuota(used(4, 4))), 0),
            (host(20, 20), Some(AppQuota(used(4, 0))), 0),
        ];
        for (host, app, expected) in cases {
            assert_eq!(remaining(host, app.as_ref(), NOW), *expected, "{host:?} {app:?}");
        }
        assert!(AppQuota(used(4, 4)).exhausted(NOW));
        assert!(!AppQuota(used(4, 4)).exhausted(Timestamp(NOW.0 + DAY_MS)), "a new day");
    }

    #[test]
    fn a_new_host_inherits_only_punishment() {
        for (worst, expected) in [
            (None, INITIAL_DAILY_QUOTA),
            (Some(MAX_DAILY_QUOTA), INITIAL_DAILY_QUOTA),
            (Some(INITIAL_DAILY_QUOTA), INITIAL_DAILY_QUOTA),
            (Some(5), 5),
            (Some(1), 1),
            (Some(0), 1),
        ] {
            assert_eq!(initial_quota(worst), expected, "{worst:?}");
        }
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
