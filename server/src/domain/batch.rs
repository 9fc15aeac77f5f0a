//! Rules for batches (the work units of one submission): the automatic pause
//! of a batch whose app fails (the same error on several distinct hosts and
//! no success) or whose first results are mostly errors (from several
//! distinct hosts, so one host cannot pause a batch), and the care of a
//! batch's tail, so that its last percent does not wait for the slowest host.

/// Results that must be reported before a batch can be paused for being
/// mostly errors.
pub const AUTO_PAUSE_MIN_RESULTS: u32 = 20;
/// Only a batch's first results are watched for errors.
pub const AUTO_PAUSE_WINDOW: u32 = 200;
/// The share of errors among them that pauses the batch.
pub const AUTO_PAUSE_ERROR_SHARE: f64 = 0.8;
/// Distinct hosts that must have reported errors before a batch is paused:
/// one host (or two) erring cannot pause a batch, however many errors it reports.
pub const AUTO_PAUSE_MIN_HOSTS: u32 = 3;
/// Distinct hosts reporting the same error, with no success in the batch,
/// from which the app is at fault: the batch pauses whatever its size.
pub const APP_FAULT_MIN_HOSTS: u32 = 3;
/// The share of ended work units from which a batch is in its tail.
pub const TAIL_SHARE: f64 = 0.9;
/// A host is fast enough for tail copies when its turnaround is at most this
/// multiple of the batch's.
pub const FAST_HOST_FACTOR: f64 = 1.5;

/// A batch's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchState {
    Active,
    /// Not scheduled until resumed; the reason is shown to the operator.
    Paused {
        reason: String,
    },
}

/// What a batch's error watch has seen since the batch was created or resumed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorWatch {
    /// Results reported (successes and errors).
    pub reported: u32,
    pub errors: u32,
    /// Distinct hosts that reported an error, each with its first error message.
    pub erring_hosts: Vec<(i64, String)>,
}

impl ErrorWatch {
    /// Whether the watch still records which hosts err: while the batch's
    /// first results are watched, or while it has had no success.
    pub fn watching(&self) -> bool {
        self.reported <= AUTO_PAUSE_WINDOW || self.errors == self.reported
    }

    /// Counts one report, from `host`, with its error message if it is an error.
    pub fn record(&mut self, host: i64, error: Option<&str>) {
        let watching = self.watching();
        self.reported += 1;
        let Some(error) = error else { return };
        self.errors += 1;
        if watching && !self.erring_hosts.iter().any(|(h, _)| *h == host) {
            self.erring_hosts.push((host, error.to_owned()));
        }
    }

    /// The error message reported by the most distinct hosts, and how many
    /// (the first such message on a tie).
    pub fn common_error(&self) -> Option<(&str, u32)> {
        let mut best: Option<(&str, u32)> = None;
        for (_, error) in &self.erring_hosts {
            let n = self.erring_hosts.iter().filter(|(_, e)| e == error).count() as u32;
            if best.is_none_or(|(_, most)| n > most) {
                best = Some((error, n));
            }
        }
        best
    }
}

/// Whether a batch should be paused, and why:
/// - the app is at fault: at least `APP_FAULT_MIN_HOSTS` distinct hosts
///   reported the same error and none succeeded (a batch of any size);
/// - its first results (from `AUTO_PAUSE_MIN_RESULTS` to
///   `AUTO_PAUSE_WINDOW`) are at least `AUTO_PAUSE_ERROR_SHARE` errors,
///   from at least `AUTO_PAUSE_MIN_HOSTS` distinct hosts.
pub fn auto_pause(watch: &ErrorWatch) -> Option<String> {
    if let Some((error, n_hosts)) = watch.common_error()
        && n_hosts >= APP_FAULT_MIN_HOSTS
        && watch.errors == watch.reported
    {
        return Some(format!(
            "paused automatically: the app fails on every host: {n_hosts} distinct hosts reported the same error \
             ({error:?}) and none succeeded (errors: {} of {} results); fix the app, then resume the batch",
            watch.errors, watch.reported
        ));
    }
    let (reported, errors) = (watch.reported, watch.errors);
    let n_hosts = watch.erring_hosts.len() as u32;
    let mostly_errors = (AUTO_PAUSE_MIN_RESULTS..=AUTO_PAUSE_WINDOW).contains(&reported)
        && f64::from(errors) >= AUTO_PAUSE_ERROR_SHARE * f64::from(reported);
    (mostly_errors && n_hosts >= AUTO_PAUSE_MIN_HOSTS).then(|| {
        format!(
            "paused automatically: {errors} of its first {reported} results were errors, from {n_hosts} distinct hosts; \
             check the app and its inputs (quorum results / list the errors), then resume the batch"
        )
    })
}

/// Whether a batch with `ended` of `total` work units ended is in its tail.
pub fn in_tail(total: u64, ended: u64) -> bool {
    total > 0 && ended as f64 >= TAIL_SHARE * total as f64
}

/// The new moving average after one turnaround sample (weight 1/8 for the sample).
pub fn update_turnaround(average_ms: Option<u64>, sample_ms: u64) -> u64 {
    match average_ms {
        None => sample_ms,
        Some(average) => average - average / 8 + sample_ms / 8,
    }
}

/// What decides who may take a copy of a batch's tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tail {
    /// The batch's moving average turnaround; `None` before its first result.
    pub batch_turnaround_ms: Option<u64>,
    /// The shortest turnaround among the hosts attached now (in recent
    /// contact) that may take the copy (none holding a copy of its work unit,
    /// itself or through its account), the asking one included; `None` when
    /// none has one yet.
    pub fastest_attached_ms: Option<u64>,
    /// How long a copy waits for a fast host before any host may take it.
    pub grace_ms: u64,
}

impl Tail {
    /// The longest turnaround that counts as fast: [`FAST_HOST_FACTOR`] times
    /// the batch's, or times the fastest attached host's when every attached
    /// host is slower than that (the tail then waits for no one).
    pub fn line_ms(&self) -> Option<u64> {
        let batch = self.batch_turnaround_ms?;
        let reference = batch.max(self.fastest_attached_ms.unwrap_or(0));
        Some((FAST_HOST_FACTOR * reference as f64) as u64)
    }

    /// Whether a host with this turnaround may take a tail copy that has
    /// waited `waited_ms` unsent: fast hosts always; a host with no
    /// turnaround yet when no attached host has one either; any host once the
    /// copy has waited the grace. So the tail goes *preferably* to fast
    /// hosts, and never waits while every host that could take it is slower
    /// than the line.
    pub fn may_take(&self, host_turnaround_ms: Option<u64>, waited_ms: u64) -> bool {
        let Some(line) = self.line_ms() else { return true };
        let fast = match host_turnaround_ms {
            Some(host) => host <= line,
            None => self.fastest_attached_ms.is_none(),
        };
        fast || waited_ms >= self.grace_ms
    }
}

/// Whether a copy in progress for `elapsed_ms` is at risk of missing its
/// deadline: it has used half of it, and more than twice the host's usual
/// turnaround. Such a copy of a tail work unit gets a spare copy sent early.
pub fn at_risk(elapsed_ms: u64, deadline_ms: u64, host_turnaround_ms: Option<u64>) -> bool {
    elapsed_ms >= deadline_ms / 2 && host_turnaround_ms.is_none_or(|usual| elapsed_ms > 2 * usual)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports as (host, error message or None for a success).
    type Reports<'a> = Vec<(i64, Option<&'a str>)>;

    /// A watch after reports given as (host, error message or None for a success).
    fn watch(reports: &[(i64, Option<&str>)]) -> ErrorWatch {
        let mut watch = ErrorWatch::default();
        for (host, error) in reports {
            watch.record(*host, *error);
        }
        watch
    }

    /// `n` reports cycling over `hosts`, the first `errors` of them errors with message `error`.
    fn reports<'a>(n: usize, errors: usize, hosts: &[i64], error: &'a str) -> Vec<(i64, Option<&'a str>)> {
        (0..n).map(|i| (hosts[i % hosts.len()], (i < errors).then_some(error))).collect()
    }

    #[test]
    fn a_batch_pauses_on_errors_from_distinct_hosts_only() {
        let many = [1, 2, 3, 4];
        // Each host its own message: the app-fault rule stays out of the way.
        let own = |n: usize, errors: usize| -> Vec<(i64, Option<&'static str>)> {
            const MESSAGES: [&str; 4] = ["a", "b", "c", "d"];
            (0..n).map(|i| (many[i % 4], (i < errors).then_some(MESSAGES[i % 4]))).collect()
        };
        let cases: &[(Reports<'_>, Option<&str>)] = &[
            // Mostly errors, from enough hosts.
            (own(19, 19), None),
            (own(20, 16), Some("16 of its first 20 results were errors, from 4 distinct hosts")),
            (own(20, 15), None),
            (own(200, 199), Some("199 of its first 200 results were errors")),
            (own(201, 201), None),
            // One host alone, or two, never pause a batch.
            (reports(200, 200, &[7], "exit 1"), None),
            (reports(200, 200, &[7, 8], "exit 1"), None),
            // The app's fault: the same error on three hosts and no success, whatever the size.
            (reports(3, 3, &[1, 2, 3], "unknown import"), Some("3 distinct hosts reported the same error")),
            (reports(201, 201, &many, "trap"), Some("4 distinct hosts reported the same error")),
            (reports(3, 3, &[1, 2, 2], "unknown import"), None),
            (vec![(1, Some("a")), (2, Some("b")), (3, Some("c"))], None),
            // A success: not every host fails, and the share rule needs 20 results.
            (vec![(1, None), (2, Some("e")), (3, Some("e")), (4, Some("e"))], None),
        ];
        for (reports, expected) in cases {
            let reason = auto_pause(&watch(reports));
            match expected {
                None => assert_eq!(reason, None, "{reports:?}"),
                Some(part) => assert!(reason.as_deref().is_some_and(|r| r.contains(part)), "{reason:?} {reports:?}"),
            }
        }
    }

    #[test]
    fn the_watch_counts_distinct_hosts_while_it_watches() {
        let w = watch(&[(1, Some("a")), (1, Some("b")), (2, Some("b")), (3, Some("b")), (4, None)]);
        assert_eq!((w.reported, w.errors), (5, 4));
        assert_eq!(w.erring_hosts, vec![(1, "a".to_owned()), (2, "b".to_owned()), (3, "b".to_owned())]);
        assert_eq!(w.common_error(), Some(("b", 2)));
        // Past the window with successes in it, new erring hosts are not recorded.
        let mut w = watch(&reports(201, 1, &[1], "e"));
        assert!(!w.watching());
        w.record(9, Some("e"));
        assert_eq!(w.erring_hosts.len(), 1);
    }

    #[test]
    fn tail_starts_at_ninety_percent() {
        assert!(!in_tail(0, 0));
        assert!(!in_tail(100, 89));
        assert!(in_tail(100, 90));
        assert!(in_tail(10, 10));
    }

    #[test]
    fn turnaround_is_a_moving_average() {
        assert_eq!(update_turnaround(None, 800), 800);
        assert_eq!(update_turnaround(Some(800), 1600), 900);
    }

    #[test]
    fn tail_copies_go_to_fast_hosts_first_and_never_wait_for_no_one() {
        // (batch, fastest attached, host, waited) -> may take; grace 1000.
        let check = |batch, fastest, host, waited, expected| {
            let tail = Tail { batch_turnaround_ms: batch, fastest_attached_ms: fastest, grace_ms: 1000 };
            assert_eq!(tail.may_take(host, waited), expected, "{tail:?} host {host:?} waited {waited}");
        };
        check(Some(100), Some(100), Some(100), 0, true);
        check(Some(100), Some(100), Some(150), 0, true);
        check(Some(100), Some(100), Some(151), 0, false); // slow host, fresh copy, a fast host attached
        check(Some(100), Some(100), Some(151), 1000, true); // the copy waited long enough
        check(Some(100), Some(100), None, 0, false); // unknown host, a fast host attached
        check(None, Some(100), Some(500), 0, true); // nothing known of the batch yet
        // Every attached host slower than the batch's line: the fastest of them sets it.
        check(Some(100), Some(300), Some(300), 0, true);
        check(Some(100), Some(300), Some(450), 0, true);
        check(Some(100), Some(300), Some(451), 0, false);
        // No attached host has a turnaround yet: new hosts may take it.
        check(Some(100), None, None, 0, true);
    }

    #[test]
    fn copies_at_risk() {
        assert!(!at_risk(400, 1000, None));
        assert!(at_risk(500, 1000, None));
        assert!(!at_risk(500, 1000, Some(300)), "within twice the host's usual time");
        assert!(at_risk(601, 1000, Some(300)));
    }
}
