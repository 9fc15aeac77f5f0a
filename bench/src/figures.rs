//! What a benchmark run measured: the [`Figures`] printed as one summary line
//! or as JSON (`--json`), and the arithmetic behind them (percentiles,
//! steady-state rates between 10% and 90% of the validated results).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// The steady state starts when this share of the results is validated...
pub const STEADY_FROM: f64 = 0.1;
/// ...and ends at this share.
pub const STEADY_TO: f64 = 0.9;

/// Every figure of one `lifecycle` run. The JSON field names are a stable
/// interface (the CI smoke test reads them).
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    // The configuration.
    pub hosts: u32,
    pub slots: u32,
    pub quorum: u32,
    pub work_units: u64,
    pub backlog: u64,
    /// Work units ahead of the measured ones that no host may take a copy of.
    pub held_backlog: u64,
    /// HTTP/2 connections the simulated hosts share.
    pub channels: u32,
    /// Coordinators over the database (their CPU is added up; peak RSS is the largest).
    pub coordinators: u32,

    // Submission (work units and backlog, through CreateProject/AddWorkUnits).
    pub work_units_submitted: u64,
    pub submit_seconds: f64,
    pub work_units_submitted_per_sec: f64,

    // The run.
    /// Whether every measured work unit ended before `--duration` elapsed.
    pub completed: bool,
    /// From the first RequestWork to the status showing every work unit ended.
    pub run_seconds: f64,
    pub work_units_done: u64,
    pub work_units_failed: u64,
    /// Copies of the measured work units handed out (RequestWork).
    pub results_dispatched: u64,
    /// Copies of the measured work units reported (ReportResults).
    pub results_reported: u64,
    /// `results_valid` of the measured project at the end.
    pub results_validated: u64,
    /// Copies of backlog work units the hosts got once the measured work was
    /// all handed out (reported too, as a real worker would).
    pub backlog_results_reported: u64,
    /// Steady state: between 10% and 90% of the validated results.
    pub steady_dispatched_per_sec: f64,
    pub steady_reported_per_sec: f64,
    pub steady_validated_per_sec: f64,
    /// Seconds of the steady-state window (0: too short to sample; the rates
    /// are then those of the whole run).
    pub steady_seconds: f64,
    /// Validated results per second over the whole run.
    pub overall_validated_per_sec: f64,
    /// From the last ReportResults reply to the status showing every work
    /// unit ended.
    pub validation_lag_ms: f64,

    // Dispatch latency (RequestWork round trip, as a host sees it).
    pub request_work_calls: u64,
    pub request_work_p50_ms: f64,
    pub request_work_p99_ms: f64,
    pub request_work_max_ms: f64,
    pub report_results_calls: u64,
    pub report_results_p50_ms: f64,
    pub report_results_p99_ms: f64,

    // Cost.
    /// Coordinator CPU (user + system) from the first RequestWork to the end.
    pub coordinator_cpu_seconds: f64,
    /// Coordinator CPU per 1,000 reported results (measured and backlog).
    pub coordinator_cpu_seconds_per_1000_results: f64,
    /// Coordinator CPU during submission.
    pub coordinator_submit_cpu_seconds: f64,
    /// With `--postgres` on a server of this machine whose data directory
    /// the bench can read: the server's CPU (its postmaster and every
    /// backend) from the first RequestWork to the end, and per 1,000
    /// reported results. `None` otherwise.
    pub postgres_cpu_seconds: Option<f64>,
    pub postgres_cpu_seconds_per_1000_results: Option<f64>,
    /// Coordinator peak resident memory (VmHWM).
    pub coordinator_peak_rss_mb: f64,
    /// CPU of the load generator itself over the run (it shares the machine).
    pub bench_cpu_seconds: f64,
    /// RequestWork and ReportResults calls that failed (and were retried
    /// after a second, as a real worker does), and failed GetStatus samples.
    pub rpc_errors: u64,
}

impl Figures {
    /// The one-line summary.
    pub fn summary(&self) -> String {
        let mut line = String::new();
        let _ = write!(
            line,
            "lifecycle: {} hosts x {} slots, quorum {}, {} work units (+{} backlog, +{} held): \
             submitted {:.0} wu/s; steady {:.0} dispatched/s, {:.0} reported/s, {:.0} validated/s; \
             lag {:.0} ms; RequestWork p50 {:.2} ms p99 {:.2} ms; coordinator {:.3} CPU s/1000 results, \
             peak RSS {:.0} MB; {}/{} done in {:.1} s",
            self.hosts,
            self.slots,
            self.quorum,
            self.work_units,
            self.backlog,
            self.held_backlog,
            self.work_units_submitted_per_sec,
            self.steady_dispatched_per_sec,
            self.steady_reported_per_sec,
            self.steady_validated_per_sec,
            self.validation_lag_ms,
            self.request_work_p50_ms,
            self.request_work_p99_ms,
            self.coordinator_cpu_seconds_per_1000_results,
            self.coordinator_peak_rss_mb,
            self.work_units_done,
            self.work_units,
            self.run_seconds,
        );
        if let Some(postgres) = self.postgres_cpu_seconds_per_1000_results {
            let _ = write!(line, "; PostgreSQL {postgres:.3} CPU s/1000 results");
        }
        if self.rpc_errors > 0 {
            let _ = write!(line, "; {} failed calls", self.rpc_errors);
        }
        if !self.completed {
            line.push_str(" (INCOMPLETE: --duration elapsed)");
        }
        line
    }
}

/// The `p`-th percentile (0-100) of `sorted`, by nearest rank; 0 when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds as a float, for the figures.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// One progress sample: seconds since the start, and counters at that time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub seconds: f64,
    pub validated: u64,
    pub dispatched: u64,
    pub reported: u64,
}

/// Rates (dispatched, reported, validated per second) and the length of the
/// window between the first sample with at least 10% of `total_validated`
/// validated and the first with at least 90%. `None` when the window holds
/// fewer than two distinct samples (a run too short to sample).
pub fn steady_rates(samples: &[Sample], total_validated: u64) -> Option<(f64, f64, f64, f64)> {
    let threshold = |share: f64| (share * total_validated as f64).ceil() as u64;
    let start = samples.iter().find(|s| s.validated >= threshold(STEADY_FROM))?;
    let end = samples.iter().find(|s| s.validated >= threshold(STEADY_TO))?;
    let seconds = end.seconds - start.seconds;
    if seconds <= 0.0 {
        return None;
    }
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
    Some((
        rate(start.dispatched, end.dispatched),
        rate(start.reported, end.reported),
        rate(start.validated, end.validated),
        seconds,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&sorted, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&sorted[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn steady_state_is_between_ten_and_ninety_percent() {
        let sample = |seconds, validated| Sample { seconds, validated, dispatched: validated * 2, reported: validated };
        let samples =
            [sample(0.0, 0), sample(1.0, 5), sample(2.0, 10), sample(4.0, 50), sample(6.0, 90), sample(9.0, 100)];
        let (dispatched, reported, validated, seconds) = steady_rates(&samples, 100).expect("a window");
        assert_eq!(seconds, 4.0);
        assert_eq!(validated, 20.0);
        assert_eq!(reported, 20.0);
        assert_eq!(dispatched, 40.0);
        assert_eq!(steady_rates(&[sample(0.0, 0), sample(1.0, 100)], 100), None, "one sample in the window");
    }
}
