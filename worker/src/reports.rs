//! The reports a worker sends for its tasks: a finished task's, a client
//! error for one that did not run, and a task given back (`detach`,
//! `abort`): a client error with no fuel used, which the coordinator
//! replaces with a new copy at once and counts against no quota.

use quorum_proto::v1::{ReportedOutcome, ResultReport};

use crate::sandbox::{ENGINE, Outcome, Status as TaskStatus};

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
