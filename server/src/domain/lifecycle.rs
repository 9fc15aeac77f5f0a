//! The lifecycle of work units and their results: BOINC's transitioner and
//! validator rules as pure functions.
//!
//! A result (one copy of a work unit) has three state fields: its server state
//! (unsent, in progress, over), its outcome once over, and its validate state.
//! A work unit is open, done (it has a canonical result) or failed (with a
//! reason). Every event — a report, a deadline passing, a cancellation — is
//! handled by loading one work unit with all its results, calling a function
//! here with `now`, and storing the returned changes in one transaction. The
//! functions are idempotent: calling them again on their own output changes
//! nothing, so a coordinator that crashes between two steps just runs the step
//! again.

use super::policy::ReplicationPolicy;
use super::trust;
use super::validator::{self, Comparator};
use super::{Digest, HostId, ResultId, Timestamp, WorkUnitId};

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant,)* }

        impl $name {
            /// The name used in the database, the protocol and the CLI.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            /// The inverse of `as_str`.
            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }

            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
        }
    };
}

named_enum!(
    /// Where a result is in its journey to a host and back.
    ServerState {
        /// Created, waiting for a host.
        Unsent = "unsent",
        /// Sent to a host, which has until the deadline to report.
        InProgress = "in_progress",
        /// Finished one way or another; see the outcome.
        Over = "over",
    }
);

named_enum!(
    /// How a result ended.
    Outcome {
        /// The host computed it and returned an output.
        Success = "success",
        /// The app failed on the host (trap, non-zero exit, limit exceeded).
        ClientError = "client_error",
        /// The deadline passed without a report.
        NoReply = "no_reply",
        /// Not needed any more: its work unit ended before the copy ran.
        DidntNeed = "didnt_need",
        /// The output could not be read by the validator.
        ValidateError = "validate_error",
        /// Its project was cancelled while the copy was out.
        Cancelled = "cancelled",
    }
);

named_enum!(
    /// What the validator made of a result.
    ValidateState {
        /// Not compared yet.
        Pending = "pending",
        /// Agrees with the canonical result.
        Valid = "valid",
        /// Disagrees with the canonical result.
        Invalid = "invalid",
        /// Compared without any agreement; another copy was sent.
        Inconclusive = "inconclusive",
        /// Arrived after the work unit's data was purged.
        TooLate = "too_late",
    }
);

named_enum!(
    /// One word for where a copy stands, from its three fields: what the
    /// CLI shows and filters by (`ResultInfo.state`).
    CopyState {
        Unsent = "unsent",
        InProgress = "in_progress",
        /// A success the validator has not compared yet.
        Reported = "reported",
        Valid = "valid",
        Invalid = "invalid",
        Inconclusive = "inconclusive",
        TooLate = "too_late",
        /// The app failed on the host (outcome `client_error`).
        Error = "error",
        ValidateError = "validate_error",
        NoReply = "no_reply",
        DidntNeed = "didnt_need",
        Cancelled = "cancelled",
    }
);

impl CopyState {
    /// The state of a copy with these fields. An over copy is named by its
    /// outcome, a success by its validate state.
    pub fn of(server: ServerState, outcome: Option<Outcome>, validate: ValidateState) -> CopyState {
        match (server, outcome) {
            (ServerState::Unsent, _) => CopyState::Unsent,
            (ServerState::InProgress, _) => CopyState::InProgress,
            (ServerState::Over, Some(Outcome::Success) | None) => match validate {
                ValidateState::Pending => CopyState::Reported,
                ValidateState::Valid => CopyState::Valid,
                ValidateState::Invalid => CopyState::Invalid,
                ValidateState::Inconclusive => CopyState::Inconclusive,
                ValidateState::TooLate => CopyState::TooLate,
            },
            (ServerState::Over, Some(Outcome::ClientError)) => CopyState::Error,
            (ServerState::Over, Some(Outcome::ValidateError)) => CopyState::ValidateError,
            (ServerState::Over, Some(Outcome::NoReply)) => CopyState::NoReply,
            (ServerState::Over, Some(Outcome::DidntNeed)) => CopyState::DidntNeed,
            (ServerState::Over, Some(Outcome::Cancelled)) => CopyState::Cancelled,
        }
    }

    /// The fields of the copies in this state, as (server state, outcome,
    /// validate state), `None` where any value matches: the inverse of
    /// [`CopyState::of`], for filtering in the store.
    pub fn fields(self) -> (ServerState, Option<Outcome>, Option<ValidateState>) {
        let success = |validate| (ServerState::Over, Some(Outcome::Success), Some(validate));
        let over = |outcome| (ServerState::Over, Some(outcome), None);
        match self {
            CopyState::Unsent => (ServerState::Unsent, None, None),
            CopyState::InProgress => (ServerState::InProgress, None, None),
            CopyState::Reported => success(ValidateState::Pending),
            CopyState::Valid => success(ValidateState::Valid),
            CopyState::Invalid => success(ValidateState::Invalid),
            CopyState::Inconclusive => success(ValidateState::Inconclusive),
            CopyState::TooLate => success(ValidateState::TooLate),
            CopyState::Error => over(Outcome::ClientError),
            CopyState::ValidateError => over(Outcome::ValidateError),
            CopyState::NoReply => over(Outcome::NoReply),
            CopyState::DidntNeed => over(Outcome::DidntNeed),
            CopyState::Cancelled => over(Outcome::Cancelled),
        }
    }
}

named_enum!(
    /// Why a work unit failed.
    FailReason {
        /// More error results than `max_error_results`.
        TooManyErrors = "too_many_errors",
        /// Needed another copy but already had `max_total_results`.
        TooManyTotalResults = "too_many_total_results",
        /// More successes than `max_success_results` without agreement: the app looks nondeterministic.
        TooManySuccessResults = "too_many_success_results",
        /// Its project was cancelled.
        Cancelled = "cancelled",
    }
);

/// A work unit's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkUnitState {
    Open,
    Done,
    Failed(FailReason),
}

impl WorkUnitState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkUnitState::Open => "open",
            WorkUnitState::Done => "done",
            WorkUnitState::Failed(_) => "failed",
        }
    }

    pub fn fail_reason(self) -> Option<FailReason> {
        match self {
            WorkUnitState::Failed(reason) => Some(reason),
            WorkUnitState::Open | WorkUnitState::Done => None,
        }
    }

    /// Rebuilds a state from its stored name and fail reason.
    pub fn parse(state: &str, fail_reason: Option<&str>) -> Option<WorkUnitState> {
        match (state, fail_reason) {
            ("open", None) => Some(WorkUnitState::Open),
            ("done", None) => Some(WorkUnitState::Done),
            ("failed", Some(reason)) => FailReason::parse(reason).map(WorkUnitState::Failed),
            _ => None,
        }
    }
}

/// A work unit as the lifecycle rules see it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkUnit {
    pub id: WorkUnitId,
    pub state: WorkUnitState,
    /// Copies to keep alive (BOINC's `target_nresults`); raised when validation is inconclusive.
    pub target_results: u32,
    pub canonical_result: Option<ResultId>,
    /// Accepted on a single result from a trusted host (adaptive replication);
    /// cleared, and replication restored, if that result fails.
    pub single_result: bool,
    /// Its data (input, other copies' outputs) was purged: late copies are too late.
    pub purged: bool,
    /// The most credit a copy accepted alone (`single_result`) may earn: its
    /// project's typical credit, from replicated work units only (see
    /// [`typical_credit`]), so that no host vouching for itself can raise
    /// it. Read only when `single_result`; the store loads it for those.
    pub typical_credit: f64,
}

/// One copy of a work unit as the lifecycle rules see it.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultCopy {
    pub id: ResultId,
    pub host_id: Option<HostId>,
    pub server_state: ServerState,
    pub outcome: Option<Outcome>,
    pub validate_state: ValidateState,
    pub deadline: Option<Timestamp>,
    /// SHA-256 of the output, for successes.
    pub output_digest: Option<Digest>,
    /// Instructions the copy used, as its host reported.
    pub fuel_used: u64,
    /// Credit granted to its host when it was found valid.
    pub granted_credit: f64,
    /// The engine that ran it, as reported (fuel is comparable within one engine version).
    pub engine: Option<String>,
    /// The task was interrupted and resumed from a checkpoint: `fuel_used`
    /// counts only the segments it ran, so it is neither compared with other
    /// copies' fuel nor used for credit when a copy that ran in one piece agrees.
    pub resumed: bool,
    /// A client error its host gave back unfinished (detached, aborted, or
    /// unable to meet the deadline): no error of the app or the input.
    pub given_back: bool,
    /// Its host has had a result validated: when the copy ends as no reply, it
    /// counts toward `max_total_results` (newcomers' do not, up to
    /// `trust::NEWCOMER_ALLOWANCE`).
    pub host_proven: bool,
}

impl ResultCopy {
    /// A new copy, waiting for a host.
    pub fn unsent(id: ResultId) -> ResultCopy {
        ResultCopy {
            id,
            host_id: None,
            server_state: ServerState::Unsent,
            outcome: None,
            validate_state: ValidateState::Pending,
            deadline: None,
            output_digest: None,
            fuel_used: 0,
            granted_credit: 0.0,
            engine: None,
            resumed: false,
            given_back: false,
            host_proven: false,
        }
    }

    fn is_success(&self) -> bool {
        self.outcome == Some(Outcome::Success)
    }

    fn is_error(&self) -> bool {
        matches!(self.outcome, Some(Outcome::ClientError | Outcome::ValidateError))
    }

    /// A client error its host gave back unfinished (see `given_back`). It
    /// says nothing about the app or the input.
    pub fn is_given_back(&self) -> bool {
        self.outcome == Some(Outcome::ClientError) && self.given_back
    }

    /// A success that still counts toward agreement.
    fn is_candidate(&self) -> bool {
        self.is_success() && matches!(self.validate_state, ValidateState::Pending | ValidateState::Inconclusive)
    }

    fn is_alive(&self) -> bool {
        matches!(self.server_state, ServerState::Unsent | ServerState::InProgress) || self.is_candidate()
    }
}

/// What a host says about a copy it computed.
#[derive(Clone, Debug, PartialEq)]
/// `resumed`: the task was interrupted and resumed from a checkpoint (its
/// fuel counts only the segments it ran).
pub enum Report {
    Success {
        output_digest: Digest,
        fuel_used: u64,
        engine: String,
        resumed: bool,
    },
    /// `given_back`: the host gives the copy back unfinished.
    ClientError {
        fuel_used: u64,
        engine: String,
        resumed: bool,
        given_back: bool,
    },
}

/// A report the coordinator must refuse; nothing is changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("result {result} was not sent to this host")]
    NotYourResult { result: ResultId },
    #[error("result {result} was already reported with a different outcome or output")]
    ConflictingReport { result: ResultId },
}

/// What to do with an acceptable report.
#[derive(Clone, Debug, PartialEq)]
pub enum ReportDecision {
    /// Store the copy as given; then run `transition` on its work unit.
    Record(ResultCopy),
    /// The same report was already stored (a retry): acknowledge, change nothing.
    AlreadyRecorded,
    /// The copy is no longer wanted (aborted or cancelled): acknowledge, change nothing.
    Ignore,
}

/// Checks a host's report for one of its copies. A late report (after the
/// deadline turned the copy into "no reply") is still recorded, as BOINC does.
pub fn apply_report(result: &ResultCopy, host: HostId, report: &Report) -> Result<ReportDecision, ReportError> {
    if result.host_id != Some(host) {
        return Err(ReportError::NotYourResult { result: result.id });
    }
    let recorded = |outcome, output_digest: Option<Digest>, fuel_used, engine: &str, resumed, given_back| {
        ReportDecision::Record(ResultCopy {
            server_state: ServerState::Over,
            outcome: Some(outcome),
            validate_state: ValidateState::Pending,
            output_digest,
            fuel_used,
            engine: Some(engine.to_owned()),
            resumed,
            given_back,
            ..result.clone()
        })
    };
    match (result.server_state, result.outcome) {
        (ServerState::Unsent, _) => Err(ReportError::NotYourResult { result: result.id }),
        (ServerState::InProgress, _) | (ServerState::Over, Some(Outcome::NoReply)) => Ok(match report {
            Report::Success { output_digest, fuel_used, engine, resumed } => {
                recorded(Outcome::Success, Some(output_digest.clone()), *fuel_used, engine, *resumed, false)
            }
            Report::ClientError { fuel_used, engine, resumed, given_back } => {
                recorded(Outcome::ClientError, None, *fuel_used, engine, *resumed, *given_back)
            }
        }),
        (ServerState::Over, Some(Outcome::Success)) => match report {
            Report::Success { output_digest, .. } if result.output_digest.as_ref() == Some(output_digest) => {
                Ok(ReportDecision::AlreadyRecorded)
            }
            Report::Success { .. } | Report::ClientError { .. } => {
                Err(ReportError::ConflictingReport { result: result.id })
            }
        },
        (ServerState::Over, Some(Outcome::ClientError | Outcome::ValidateError)) => match report {
            Report::ClientError { .. } => Ok(ReportDecision::AlreadyRecorded),
            Report::Success { .. } => Err(ReportError::ConflictingReport { result: result.id }),
        },
        (ServerState::Over, Some(Outcome::DidntNeed | Outcome::Cancelled) | None) => Ok(ReportDecision::Ignore),
    }
}

/// A change to a host's counters and trust caused by a report or a transition.
#[derive(Clone, Debug, PartialEq)]
pub enum HostEvent {
    /// Found valid; `replicated` when it was compared with another copy
    /// (only those lengthen the host's streak).
    Valid {
        credit: f64,
        replicated: bool,
    },
    Invalid,
    NoReply,
    /// A client error not blamed on the host (yet): the app may fail on every
    /// host, so only the host's quota for the app pays.
    ClientError,
    /// A client error that was the host's: other hosts succeeded on the same
    /// work unit (it got a canonical result from them).
    HostError,
    /// A client error for a copy the host never ran (no fuel used): it gave
    /// the copy back, e.g. because it could not meet the deadline. Counted as
    /// an error; it reduces no quota (the app did not run), unless others
    /// succeed on the work unit (`HostError`).
    Unstarted,
}

/// The host events of a recorded report (validity comes later): an error
/// (`ClientError`), blamed on the host at once (`HostError`) if its work unit
/// already has its canonical result from other hosts; other errors are
/// blamed when the work unit gets it (see `transition`).
pub fn report_events(recorded: &ResultCopy, work_unit_state: WorkUnitState) -> Vec<HostEvent> {
    if !recorded.is_error() {
        return Vec::new();
    }
    let error = if recorded.fuel_used == 0 { HostEvent::Unstarted } else { HostEvent::ClientError };
    match work_unit_state {
        WorkUnitState::Done => vec![error, HostEvent::HostError],
        WorkUnitState::Open | WorkUnitState::Failed(_) => vec![error],
    }
}

/// How many errors of a work unit do not count toward its `max_error_results`:
/// once another copy succeeded (the input works, so the errors are their
/// hosts'), errors from hosts with no validated result, up to
/// `trust::NEWCOMER_ALLOWANCE`. Without a success every error counts: an
/// input that fails everywhere still fails its work unit.
fn newcomer_errors_forgiven(results: &[ResultCopy]) -> usize {
    if !results.iter().any(ResultCopy::is_success) {
        return 0;
    }
    let n = results.iter().filter(|r| r.is_error() && !r.is_given_back() && !r.host_proven).count();
    n.min(trust::NEWCOMER_ALLOWANCE as usize)
}

/// How many copies of a work unit do not count toward its `max_total_results`:
/// no replies and errors from hosts with no validated result, up to
/// `trust::NEWCOMER_ALLOWANCE` (errors count toward `max_error_results` unless
/// another copy succeeded: `newcomer_errors_forgiven`).
fn newcomer_copies_forgiven(results: &[ResultCopy]) -> u32 {
    let n = results.iter().filter(|r| (r.outcome == Some(Outcome::NoReply) || r.is_error()) && !r.host_proven).count();
    (n as u32).min(trust::NEWCOMER_ALLOWANCE)
}

/// Everything a transition decided, for the store to persist in one transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The work unit after the transition.
    pub work_unit: WorkUnit,
    /// Copies whose state changed, as they are now.
    pub changed_results: Vec<ResultCopy>,
    /// How many new unsent copies to create.
    pub new_results: u32,
    /// Counter changes for the hosts concerned.
    pub host_events: Vec<(HostId, HostEvent)>,
}

impl Transition {
    /// True when the store has nothing to write.
    pub fn is_noop(&self, before: &WorkUnit) -> bool {
        self.changed_results.is_empty() && self.new_results == 0 && &self.work_unit == before
    }
}

/// Credit for one valid result: the reference fuel of its valid copies (see
/// [`credit_fuel`]) in billions of instructions, so every valid copy earns
/// the same and no host can inflate it.
pub fn credit_for(reference_fuel_used: u64) -> f64 {
    reference_fuel_used as f64 / 1e9
}

/// The fuel credit is computed from, among the valid copies of a work unit
/// (the agreeing group and late copies that agree with it): the lowest fuel
/// among the copies that ran in one piece; if every one resumed from a
/// checkpoint (a resumed copy counts only the segments it ran), the lowest
/// among them. A credit is what every agreeing copy vouches for: a report
/// claiming more fuel, another engine string (whose fuel is then not
/// compared) or `resumed` gains nothing.
pub fn credit_fuel(valid: &[&ResultCopy]) -> u64 {
    let lowest = |resumed: bool| valid.iter().filter(|r| r.resumed == resumed).map(|r| r.fuel_used).min();
    lowest(false).or_else(|| lowest(true)).unwrap_or(0)
}

/// A project's typical credit, the bound of a copy accepted alone: the median
/// (the lower one of an even count) of the credits of its latest replicated
/// canonical results, each already the lowest its agreeing copies vouched
/// for, so a lone host cannot raise it; 0 when there are none (nothing
/// vouches for any amount yet).
pub fn typical_credit(replicated_credits: &[f64]) -> f64 {
    let mut credits: Vec<f64> = replicated_credits.iter().copied().filter(|c| c.is_finite() && *c >= 0.0).collect();
    if credits.is_empty() {
        return 0.0;
    }
    credits.sort_by(f64::total_cmp);
    credits[(credits.len() - 1) / 2]
}

/// The transitioner: brings a work unit and its results up to date at `now`.
///
/// In order: copies past their deadline become "no reply"; too many errors fail
/// the work unit; once `min_quorum` successes are in, the validator looks for
/// agreement; copies are created to keep `target_results` alive, up to
/// `max_total_results` (newcomers' no replies and errors, up to a bound, not
/// counted);
/// late successes of a done work unit are compared with its canonical result;
/// unsent copies of an ended work unit become "didn't need". When the work
/// unit gets its canonical result, its client errors are blamed on their
/// hosts (`HostEvent::HostError`).
pub fn transition(
    policy: &ReplicationPolicy,
    work_unit: &WorkUnit,
    results: &[ResultCopy],
    comparator: &dyn Comparator,
    now: Timestamp,
) -> Transition {
    let mut wu = work_unit.clone();
    let mut rs = results.to_vec();
    let mut new_results = 0;

    for r in &mut rs {
        if r.server_state == ServerState::InProgress && r.deadline.is_some_and(|d| d <= now) {
            r.server_state = ServerState::Over;
            r.outcome = Some(Outcome::NoReply);
        }
    }

    // A single trusted result that failed: back to normal replication.
    if wu.single_result && wu.state == WorkUnitState::Open {
        let failed = rs
            .iter()
            .any(|r| r.is_error() || r.outcome == Some(Outcome::NoReply) || r.validate_state == ValidateState::Invalid);
        if failed {
            wu.single_result = false;
            wu.target_results = wu.target_results.max(policy.target_results());
        }
    }

    if wu.state == WorkUnitState::Open {
        // A copy given back is no error of the input.
        let n_errors = rs.iter().filter(|r| r.is_error() && !r.is_given_back()).count() - newcomer_errors_forgiven(&rs);
        if n_errors > policy.max_error_results() as usize {
            wu.state = WorkUnitState::Failed(FailReason::TooManyErrors);
        }
    }

    // Successes the validator cannot read are validate errors.
    for r in rs.iter_mut().filter(|r| r.is_candidate() && r.validate_state == ValidateState::Pending) {
        if !comparator.readable(r) {
            r.outcome = Some(Outcome::ValidateError);
        }
    }

    if wu.state == WorkUnitState::Open {
        validate(policy, &mut wu, &mut rs, comparator);
    }

    if wu.state == WorkUnitState::Open {
        let alive = rs.iter().filter(|r| r.is_alive()).count() as u32;
        let needed = wu.target_results.saturating_sub(alive);
        if needed > 0 {
            let total = rs.len() as u32 - newcomer_copies_forgiven(&rs);
            if total + needed > policy.max_total_results() {
                wu.state = WorkUnitState::Failed(FailReason::TooManyTotalResults);
            } else {
                new_results = needed;
            }
        } else {
            // More copies alive than wanted (a work unit now accepted on a single
            // result): the newest unsent ones are not needed.
            let mut surplus = alive - wu.target_results;
            for r in rs.iter_mut().rev().filter(|r| r.server_state == ServerState::Unsent) {
                if surplus == 0 {
                    break;
                }
                r.server_state = ServerState::Over;
                r.outcome = Some(Outcome::DidntNeed);
                surplus -= 1;
            }
        }
    }

    if wu.state == WorkUnitState::Done {
        check_late_successes(&wu, &mut rs, comparator);
    }

    if wu.state != WorkUnitState::Open {
        for r in &mut rs {
            if r.server_state == ServerState::Unsent {
                r.server_state = ServerState::Over;
                r.outcome = Some(Outcome::DidntNeed);
            }
        }
    }

    let valid: Vec<&ResultCopy> = rs.iter().filter(|r| r.validate_state == ValidateState::Valid).collect();
    let mut credit = credit_for(credit_fuel(&valid));
    if wu.single_result {
        // Nobody else vouched for this copy's fuel.
        credit = credit.min(wu.typical_credit);
    }
    let mut changed_results = Vec::new();
    let mut host_events = Vec::new();
    for (before, mut after) in results.iter().zip(rs) {
        if after.validate_state == ValidateState::Valid && before.validate_state != ValidateState::Valid {
            after.granted_credit = credit;
        }
        if after == *before {
            continue;
        }
        if let Some(host) = after.host_id {
            if after.outcome == Some(Outcome::NoReply) && before.outcome != Some(Outcome::NoReply) {
                host_events.push((host, HostEvent::NoReply));
            }
            if after.outcome == Some(Outcome::ValidateError) && before.outcome != Some(Outcome::ValidateError) {
                host_events.push((host, HostEvent::Invalid));
            }
            if after.validate_state != before.validate_state {
                match after.validate_state {
                    ValidateState::Valid => host_events
                        .push((host, HostEvent::Valid { credit: after.granted_credit, replicated: !wu.single_result })),
                    ValidateState::Invalid => host_events.push((host, HostEvent::Invalid)),
                    ValidateState::Pending | ValidateState::Inconclusive | ValidateState::TooLate => {}
                }
            }
        }
        changed_results.push(after);
    }
    // The work unit got its canonical result from other hosts: its errors were their hosts'.
    if work_unit.state == WorkUnitState::Open && wu.state == WorkUnitState::Done {
        for r in results.iter().filter(|r| r.outcome == Some(Outcome::ClientError)) {
            if let Some(host) = r.host_id {
                host_events.push((host, HostEvent::HostError));
            }
        }
    }
    Transition { work_unit: wu, changed_results, new_results, host_events }
}

/// Once `min_quorum` candidate successes exist (one for a work unit accepted
/// on a single result), looks for a group of at least `min_quorum/2 + 1` that
/// agree. Found: its pivot is canonical, the group valid, the other candidates
/// invalid, the work unit done. Not found: every candidate is inconclusive and
/// one more copy is wanted, unless there are already more successes than
/// `max_success_results`: then the app looks nondeterministic and the work unit fails.
fn validate(policy: &ReplicationPolicy, wu: &mut WorkUnit, rs: &mut [ResultCopy], comparator: &dyn Comparator) {
    let candidates: Vec<(ResultId, &ResultCopy)> = rs.iter().filter(|r| r.is_candidate()).map(|r| (r.id, r)).collect();
    let n_candidates = candidates.len() as u32;
    let min_quorum = if wu.single_result { 1 } else { policy.min_quorum() };
    if n_candidates < min_quorum {
        return;
    }
    let agreement_size = min_quorum as usize / 2 + 1;
    match validator::find_agreement(&candidates, agreement_size, |a, b| validator::agree(comparator, a, b)) {
        Some(agreement) => {
            wu.state = WorkUnitState::Done;
            wu.canonical_result = Some(agreement.canonical);
            for r in rs.iter_mut().filter(|r| r.is_candidate()) {
                r.validate_state =
                    if agreement.members.contains(&r.id) { ValidateState::Valid } else { ValidateState::Invalid };
            }
        }
        None => {
            for r in rs.iter_mut().filter(|r| r.is_candidate()) {
                r.validate_state = ValidateState::Inconclusive;
            }
            if n_candidates > policy.max_success_results() {
                wu.state = WorkUnitState::Failed(FailReason::TooManySuccessResults);
            } else {
                wu.target_results = wu.target_results.max(n_candidates + 1);
            }
        }
    }
}

/// Compares successes that arrived after the work unit got its canonical result.
fn check_late_successes(wu: &WorkUnit, rs: &mut [ResultCopy], comparator: &dyn Comparator) {
    if wu.purged {
        for r in rs.iter_mut().filter(|r| r.is_candidate()) {
            r.validate_state = ValidateState::TooLate;
        }
        return;
    }
    let Some(canonical) = wu.canonical_result.and_then(|id| rs.iter().find(|r| r.id == id)).cloned() else {
        return;
    };
    for r in rs.iter_mut().filter(|r| r.is_candidate()) {
        r.validate_state =
            if validator::agree(comparator, r, &canonical) { ValidateState::Valid } else { ValidateState::Invalid };
    }
}

/// Cancels a work unit: it fails as cancelled; unsent copies become "didn't
/// need"; copies in progress are aborted at their host's next contact.
pub fn cancel(work_unit: &WorkUnit, results: &[ResultCopy], now: Timestamp, policy: &ReplicationPolicy) -> Transition {
    let mut cancelled = work_unit.clone();
    if cancelled.state == WorkUnitState::Open {
        cancelled.state = WorkUnitState::Failed(FailReason::Cancelled);
    }
    transition(policy, &cancelled, results, &validator::Bitwise, now)
}

/// What becomes of a copy in progress whose host is told to abort it.
pub fn abort_outcome(work_unit_state: WorkUnitState) -> Outcome {
    match work_unit_state {
        WorkUnitState::Failed(FailReason::Cancelled) => Outcome::Cancelled,
        WorkUnitState::Open | WorkUnitState::Done | WorkUnitState::Failed(_) => Outcome::DidntNeed,
    }
}

#[cfg(test)]
mod tests;
