//! The reports a worker sends for its tasks: a finished task's, a client
//! error for one that did not run, and a task given back (`detach`,
//! `abort`): a client error with no fuel used, which the coordinator
//! replaces with a new copy at once and counts against no quota.

use quorum_proto::v1::{ReportedOutcome, ResultReport};

use crate::sandbox::{ENGINE, Outcome, Status as TaskStatus};

/// Most results sent in one call.
const MAX_REPORT_BATCH: usize = 1000;
/// Bytes of output a call may carry before the rest waits for the next one
/// (tonic servers refuse messages over 4 MiB by default). A single larger
/// result still goes alone.
const MAX_REPORT_BATCH_BYTES: usize = 3 * 1024 * 1024;

/// How many of `reports` (oldest first) go in one call: at most
/// `MAX_REPORT_BATCH`, within `MAX_REPORT_BATCH_BYTES`, at least one.
pub fn batch_len<'a>(mut reports: impl Iterator<Item = &'a ResultReport>) -> usize {
    let size = |report: &ResultReport| {
        let files: usize = report.output_files.iter().map(|file| file.data.len()).sum();
        report.output.len() + report.stderr_tail.len() + files
    };
    let Some(first) = reports.next() else {
        return 0;
    };
    // The first goes whatever its size.
    let mut bytes = size(first);
    1 + reports
        .take(MAX_REPORT_BATCH - 1)
        .take_while(|report| {
            bytes += size(report);
            bytes <= MAX_REPORT_BATCH_BYTES
        })
        .count()
}

/// Why a task is given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveBack {
    /// `quorum-worker detach`: the volunteer leaves the coordinator.
    Detach,
    /// `quorum-worker abort`: the volunteer gives up this task.
    Abort,
}

/// The report of a finished (not aborted) task.
pub fn report(result_id: i64, outcome: Outcome) -> ResultReport {
    let (reported, output, error_message) = match outcome.status {
        TaskStatus::Success(output) => (ReportedOutcome::Success, output, String::new()),
        TaskStatus::Error(message) => (ReportedOutcome::ClientError, Vec::new(), message),
        TaskStatus::Aborted => (ReportedOutcome::ClientError, Vec::new(), "aborted".to_string()),
    };
    ResultReport {
        result_id,
        outcome: reported.into(),
        output,
        stderr_tail: outcome.stderr_tail,
        fuel_used: outcome.fuel_used,
        run_time_ms: outcome.run_time_ms,
        error_message,
        engine: ENGINE.to_string(),
        resumed: false,
        given_back: false,
        output_files: Vec::new(),
    }
}

/// A client error for a result that did not run.
pub fn error_report(result_id: i64, message: String) -> ResultReport {
    report(
        result_id,
        Outcome { status: TaskStatus::Error(message), stderr_tail: String::new(), fuel_used: 0, run_time_ms: 0 },
    )
}

/// The report of a task given back unfinished (its fuel is not counted: the
/// coordinator sees a copy that did not run).
pub fn given_back(result_id: i64, why: GiveBack) -> ResultReport {
    let what = match why {
        GiveBack::Detach => "detach",
        GiveBack::Abort => "abort",
    };
    ResultReport { given_back: true, ..error_report(result_id, format!("given back by the volunteer ({what})")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_carries_at_most_a_thousand_reports_within_three_mib_and_at_least_one() {
        let sized = |bytes: usize| ResultReport { output: vec![0; bytes], ..error_report(1, String::new()) };
        let mib = 1024 * 1024;
        let cases: Vec<(Vec<ResultReport>, usize)> = vec![
            (Vec::new(), 0),
            (vec![sized(10); 5], 5),
            (vec![sized(0); 2500], 1000),
            (vec![sized(mib); 5], 3),
            (vec![sized(5 * mib), sized(10)], 1),
        ];
        for (reports, expected) in cases {
            assert_eq!(batch_len(reports.iter()), expected, "{} reports", reports.len());
        }
    }
}
