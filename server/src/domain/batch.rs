//! Rules for batches (the work units of one submission): the automatic pause
//! of a batch whose first results are mostly errors, and the care of a
//! batch's tail, so that its last percent does not wait for the slowest host.

/// Results that must be reported before a batch can be paused automatically.
pub const AUTO_PAUSE_MIN_RESULTS: u32 = 20;
/// Only a batch's first results are watched for errors.
pub const AUTO_PAUSE_WINDOW: u32 = 200;
/// The share of errors among them that pauses the batch.
pub const AUTO_PAUSE_ERROR_SHARE: f64 = 0.8;
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

/// Whether a batch whose first `reported` results include `errors` errors
/// should be paused, and why.
pub fn auto_pause(reported: u32, errors: u32) -> Option<String> {
    if !(AUTO_PAUSE_MIN_RESULTS..=AUTO_PAUSE_WINDOW).contains(&reported) {
        return None;
    }
    (f64::from(errors) >= AUTO_PAUSE_ERROR_SHARE * f64::from(reported)).then(|| {
        format!(
            "paused automatically: {errors} of its first {reported} results were errors; \
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
    /// contact), the asking one included; `None` when none has one yet.
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

    #[test]
    fn a_batch_of_errors_pauses_only_after_enough_results() {
        assert_eq!(auto_pause(19, 19), None, "too few results to judge");
        assert!(auto_pause(20, 16).is_some());
        assert_eq!(auto_pause(20, 15), None, "75% errors");
        assert!(auto_pause(200, 199).is_some());
        assert_eq!(auto_pause(201, 201), None, "only the first results are watched");
        assert!(auto_pause(20, 20).unwrap().contains("20 of its first 20 results were errors"));
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
