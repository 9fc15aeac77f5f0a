//! Scheduling on the volunteer's machine, as pure functions of the worker's
//! state (no I/O, no clock: callers pass the time), so the rules are tested
//! on their own.
//!
//! - **Work buffer**: per coordinator, keep between `low` and `high` tasks
//!   queued (not started); ask for more only when the queue falls below
//!   `low`, and then enough to reach `high`. The buffer is divided between
//!   coordinators by resource share. Short outages do not idle the cores, and
//!   requests stay few.
//! - **Which task next**: a task that can no longer finish by its deadline
//!   at this host's measured speed is abandoned (reported as an error at
//!   once, so the coordinator can send the work elsewhere) rather than
//!   started. A task whose deadline is near (less than twice its estimated
//!   run time away) goes first, earliest deadline first. Otherwise the
//!   coordinator whose usage is furthest below its resource share goes next
//!   (BOINC's resource share), and within it the earliest deadline, then the
//!   oldest task.
//! - **Usage**: the fuel (instructions) spent on a coordinator's tasks,
//!   decaying with a half-life of [`USAGE_HALF_LIFE_MS`], so the split
//!   follows the shares over the last days, not since installation. Fuel is
//!   exact and the same on every run, so the split does not depend on
//!   timing noise.

/// Half-life of a coordinator's usage: one day.
pub const USAGE_HALF_LIFE_MS: f64 = 24.0 * 3600.0 * 1000.0;

/// How many tasks to keep queued for one coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    pub low: usize,
    pub high: usize,
}

impl Buffer {
    /// This coordinator's part of the host's buffer: `share` out of
    /// `total_share`, at least one task low and `low` high.
    pub fn split(low: usize, high: usize, share: f64, total_share: f64) -> Buffer {
        let fraction = if total_share > 0.0 { (share / total_share).clamp(0.0, 1.0) } else { 1.0 };
        let part = |n: usize| (n as f64 * fraction).ceil() as usize;
        let low = part(low).max(1);
        Buffer { low, high: part(high).max(low) }
    }

    /// How many tasks to ask for when `queued` are waiting: none while the
    /// queue holds at least `low`, else enough to reach `high`.
    pub fn wanted(&self, queued: usize) -> usize {
        if queued >= self.low { 0 } else { self.high - queued }
    }
}

/// A queued task, as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Index of its coordinator.
    pub attachment: usize,
    pub deadline_ms: i64,
    /// Order of arrival.
    pub seq: i64,
    /// Estimated run time left at this host's speed, when known.
    pub estimate_ms: Option<u64>,
}

/// What to do with the queue now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Start this candidate (index into the slice).
    Start(usize),
    /// This candidate cannot finish by its deadline: give it up.
    Abandon(usize),
}

/// The next thing to do with `candidates`, or `None` when there are none.
/// `usage[a]` and `shares[a]` are coordinator `a`'s usage and resource share.
pub fn next(candidates: &[Candidate], usage: &[f64], shares: &[f64], now_ms: i64) -> Option<Choice> {
    let edf = |&(_, c): &(usize, &Candidate)| (c.deadline_ms, c.seq);
    let hopeless = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| !can_meet_deadline(c, now_ms))
        .min_by_key(edf)
        .map(|(index, _)| Choice::Abandon(index));
    if hopeless.is_some() {
        return hopeless;
    }
    let urgent = candidates.iter().enumerate().filter(|(_, c)| is_urgent(c, now_ms)).min_by_key(edf);
    if let Some((index, _)) = urgent {
        return Some(Choice::Start(index));
    }
    let debt = |attachment: usize| {
        let share = shares.get(attachment).copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
        usage.get(attachment).copied().unwrap_or(0.0) / share
    };
    let attachment =
        candidates.iter().map(|c| c.attachment).min_by(|a, b| debt(*a).total_cmp(&debt(*b)).then(a.cmp(b)))?;
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.attachment == attachment)
        .min_by_key(edf)
        .map(|(index, _)| Choice::Start(index))
}

/// Whether the task can still finish by its deadline if started now
/// (unknown run times are given the benefit of the doubt).
pub fn can_meet_deadline(candidate: &Candidate, now_ms: i64) -> bool {
    let estimate = candidate.estimate_ms.unwrap_or(0);
    now_ms.saturating_add(i64::try_from(estimate).unwrap_or(i64::MAX)) <= candidate.deadline_ms
}

/// Less than twice the estimated run time is left before the deadline.
fn is_urgent(candidate: &Candidate, now_ms: i64) -> bool {
    match candidate.estimate_ms {
        Some(estimate) => {
            let margin = i64::try_from(estimate.saturating_mul(2)).unwrap_or(i64::MAX);
            candidate.deadline_ms.saturating_sub(now_ms) < margin
        }
        None => false,
    }
}

/// Estimated run time (ms) of a task: the app's fuel per task (less what
/// earlier segments already did) over this host's fuel per second, slowed by
/// the CPU limit. `None` until both have been measured.
pub fn estimate_ms(
    fuel_per_task: Option<f64>,
    fuel_per_second: Option<f64>,
    fuel_done: u64,
    cpu_limit_percent: u8,
) -> Option<u64> {
    let (per_task, per_second) = (fuel_per_task?, fuel_per_second?);
    if per_task <= 0.0 || per_second <= 0.0 {
        return None;
    }
    let left = (per_task - fuel_done as f64).max(0.0);
    let slowdown = 100.0 / f64::from(cpu_limit_percent.clamp(1, 100));
    Some((left / per_second * 1000.0 * slowdown).ceil() as u64)
}

/// `usage` decayed from `then_ms` to `now_ms`.
pub fn decay(usage: f64, then_ms: i64, now_ms: i64) -> f64 {
    let elapsed = now_ms.saturating_sub(then_ms).max(0) as f64;
    usage * 0.5f64.powf(elapsed / USAGE_HALF_LIFE_MS)
}

/// The usage a newly attached coordinator starts with: as if it had had its
/// share all along, so it neither monopolises the host nor waits.
pub fn initial_usage(share: f64, others: &[(f64, f64)]) -> f64 {
    others
        .iter()
        .filter(|(_, share)| *share > 0.0)
        .map(|(usage, other_share)| usage / other_share)
        .min_by(f64::total_cmp)
        .map_or(0.0, |per_share| per_share * share)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(attachment: usize, deadline_ms: i64, seq: i64) -> Candidate {
        Candidate { attachment, deadline_ms, seq, estimate_ms: None }
    }

    #[test]
    fn the_buffer_refills_below_low_up_to_high() {
        let buffer = Buffer { low: 2, high: 8 };
        assert_eq!(buffer.wanted(0), 8);
        assert_eq!(buffer.wanted(1), 7);
        assert_eq!(buffer.wanted(2), 0);
        assert_eq!(buffer.wanted(9), 0);
    }

    #[test]
    fn the_buffer_is_split_by_share() {
        assert_eq!(Buffer::split(4, 16, 100.0, 100.0), Buffer { low: 4, high: 16 });
        assert_eq!(Buffer::split(4, 16, 100.0, 400.0), Buffer { low: 1, high: 4 });
        assert_eq!(Buffer::split(4, 16, 300.0, 400.0), Buffer { low: 3, high: 12 });
        assert_eq!(Buffer::split(1, 1, 1.0, 1000.0), Buffer { low: 1, high: 1 }, "never zero");
    }

    #[test]
    fn one_coordinator_runs_earliest_deadline_first() {
        let candidates = [candidate(0, 300, 1), candidate(0, 100, 3), candidate(0, 100, 2)];
        assert_eq!(next(&candidates, &[0.0], &[1.0], 0), Some(Choice::Start(2)));
        assert_eq!(next(&[], &[0.0], &[1.0], 0), None);
    }

    #[test]
    fn hopeless_tasks_are_abandoned_first() {
        let mut late = candidate(0, 1_000, 1);
        late.estimate_ms = Some(2_000);
        let fine = candidate(0, 500, 2);
        assert_eq!(next(&[fine, late], &[0.0], &[1.0], 0), Some(Choice::Abandon(1)));
        let past = candidate(0, 10, 3);
        assert_eq!(next(&[fine, past], &[0.0], &[1.0], 11), Some(Choice::Abandon(1)), "deadline passed");
        assert!(can_meet_deadline(&fine, 500));
        assert!(!can_meet_deadline(&fine, 501));
    }

    #[test]
    fn urgent_tasks_jump_the_share_order() {
        let mut urgent = candidate(1, 1_000, 5);
        urgent.estimate_ms = Some(600);
        let relaxed = candidate(0, 100_000, 1);
        // Coordinator 1 is far over its share, but its task is near its deadline.
        assert_eq!(next(&[relaxed, urgent], &[0.0, 1e9], &[1.0, 1.0], 0), Some(Choice::Start(1)));
        urgent.estimate_ms = Some(400);
        assert_eq!(next(&[relaxed, urgent], &[0.0, 1e9], &[1.0, 1.0], 0), Some(Choice::Start(0)));
    }

    #[test]
    fn shares_split_the_work_over_time() {
        // Two coordinators, shares 1 and 3, always with work, tasks of equal fuel.
        let shares = [100.0, 300.0];
        let mut usage = [0.0, 0.0];
        let mut runs = [0usize, 0];
        for seq in 0..400 {
            let candidates = [candidate(0, 1_000_000, seq), candidate(1, 1_000_000, seq)];
            let Some(Choice::Start(index)) = next(&candidates, &usage, &shares, 0) else {
                panic!("something must start");
            };
            let attachment = candidates[index].attachment;
            usage[attachment] += 1_000.0;
            runs[attachment] += 1;
        }
        assert_eq!(runs, [100, 300]);
    }

    #[test]
    fn estimates_need_both_measures() {
        assert_eq!(estimate_ms(None, Some(1.0), 0, 100), None);
        assert_eq!(estimate_ms(Some(1_000.0), None, 0, 100), None);
        assert_eq!(estimate_ms(Some(1_000.0), Some(500.0), 0, 100), Some(2_000));
        assert_eq!(estimate_ms(Some(1_000.0), Some(500.0), 500, 100), Some(1_000), "resumed");
        assert_eq!(estimate_ms(Some(1_000.0), Some(500.0), 0, 50), Some(4_000), "throttled");
    }

    #[test]
    fn usage_decays_by_half_each_half_life() {
        let day = USAGE_HALF_LIFE_MS as i64;
        assert_eq!(decay(100.0, 0, day), 50.0);
        assert_eq!(decay(100.0, 5, 5), 100.0);
        assert_eq!(decay(100.0, 10, 5), 100.0, "a clock going back decays nothing");
        assert_eq!(initial_usage(200.0, &[(1_000.0, 100.0), (9_000.0, 300.0)]), 2_000.0);
        assert_eq!(initial_usage(200.0, &[]), 0.0);
    }
}
