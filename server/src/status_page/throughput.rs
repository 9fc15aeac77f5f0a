//! The throughput plot's time series: a ring buffer of the coordinator's
//! cumulative result counts, sampled in the process every
//! [`SAMPLE_INTERVAL`], turned into rates per minute. Plain data, time as an
//! argument; the sampling loop lives in `status_page`.
//!
//! Why in memory rather than from the store: the results table has no index
//! on `received_at`, and adding one would cost every report an index write
//! (the scheduler's writes are the coordinator's bottleneck), while a scan
//! of every result every two seconds grows with the project. The price: the
//! series starts empty when the coordinator starts.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::domain::Timestamp;

/// How often the counts are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// How far back the plot reaches.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// The coordinator's cumulative counts at one moment, over every project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at: Timestamp,
    /// Results validated (`valid`) so far.
    pub results_valid: u64,
    /// Results that ended in an error (client or validate error) so far.
    pub results_error: u64,
}

/// One point of the plot: the rates between a sample and the one before.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// The end of the interval (the later sample).
    pub unix_ms: i64,
    pub valid_per_minute: f64,
    pub errors_per_minute: f64,
}

/// The samples of the last [`WINDOW`] (and the one just before it, so the
/// first interval of the window has a rate).
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    samples: VecDeque<Sample>,
}

impl Throughput {
    pub fn new() -> Throughput {
        Throughput::default()
    }

    /// Adds `sample` and forgets what fell out of the window. A sample not
    /// later than the last one is ignored (a clock that went back).
    pub fn record(&mut self, sample: Sample) {
        if self.samples.back().is_some_and(|last| last.at >= sample.at) {
            return;
        }
        self.samples.push_back(sample);
        let start = sample.at.0.saturating_sub(window_ms());
        // Keep one sample at or before the window's start: the first point's base.
        while self.samples.get(1).is_some_and(|second| second.at.0 <= start) {
            self.samples.pop_front();
        }
    }

    /// When the series starts (the first sample kept), if any.
    pub fn since(&self) -> Option<Timestamp> {
        self.samples.front().map(|sample| sample.at)
    }

    /// The rates per minute between consecutive samples, oldest first. A
    /// count that went down (a project deleted or purged) counts as zero.
    pub fn points(&self) -> Vec<Point> {
        let rate = |later: u64, earlier: u64, elapsed_ms: i64| {
            later.saturating_sub(earlier) as f64 * 60_000.0 / elapsed_ms as f64
        };
        self.samples
            .iter()
            .zip(self.samples.iter().skip(1))
            .map(|(earlier, later)| {
                let elapsed_ms = later.at.0 - earlier.at.0;
                Point {
                    unix_ms: later.at.0,
                    valid_per_minute: rate(later.results_valid, earlier.results_valid, elapsed_ms),
                    errors_per_minute: rate(later.results_error, earlier.results_error, elapsed_ms),
                }
            })
            .collect()
    }
}

fn window_ms() -> i64 {
    i64::try_from(WINDOW.as_millis()).expect("an hour of milliseconds fits in i64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, results_valid: u64, results_error: u64) -> Sample {
        Sample { at: Timestamp(at_ms), results_valid, results_error }
    }

    /// Records `samples` in order and compares the points, as (end, valid/min, errors/min).
    fn check(samples: &[Sample], expected: &[(i64, f64, f64)]) {
        let mut throughput = Throughput::new();
        for sample in samples {
            throughput.record(*sample);
        }
        let actual: Vec<(i64, f64, f64)> =
            throughput.points().iter().map(|p| (p.unix_ms, p.valid_per_minute, p.errors_per_minute)).collect();
        assert_eq!(actual, expected, "{samples:?}");
    }

    #[test]
    fn rates_per_minute() {
        check(&[], &[]);
        check(&[sample(0, 5, 0)], &[]);
        // 10 s apart: 5 valid in 10 s is 30 per minute.
        check(&[sample(0, 0, 0), sample(10_000, 5, 1)], &[(10_000, 30.0, 6.0)]);
        check(
            &[sample(0, 0, 0), sample(60_000, 7, 0), sample(120_000, 7, 2)],
            &[(60_000, 7.0, 0.0), (120_000, 0.0, 2.0)],
        );
        // A count going down (a purge) is no negative rate.
        check(&[sample(0, 10, 3), sample(60_000, 4, 1)], &[(60_000, 0.0, 0.0)]);
        // A sample from the past is ignored.
        check(&[sample(60_000, 0, 0), sample(30_000, 9, 9), sample(120_000, 1, 0)], &[(120_000, 1.0, 0.0)]);
    }

    #[test]
    fn keeps_one_window() {
        let mut throughput = Throughput::new();
        let hour = window_ms();
        for minute in 0..=120 {
            throughput.record(sample(minute * 60_000, minute as u64, 0));
        }
        let points = throughput.points();
        assert_eq!(points.len(), 60, "one point per minute of the last hour");
        assert_eq!(points.first().map(|p| p.unix_ms), Some(120 * 60_000 - hour + 60_000));
        assert_eq!(throughput.since(), Some(Timestamp(120 * 60_000 - hour)));
        assert!(points.iter().all(|p| p.valid_per_minute == 1.0), "{points:?}");
    }
}
