//! `quorum retry PROJECT [--work-unit ID...] [policy flags]`: failed work
//! units start a new attempt as a new batch (RetryWorkUnits). Policy flags
//! replace fields of the project's current policy (read with GetStatus) to
//! make the new batch's policy; without them the batch has the project's.

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use quorum_proto::v1;

use super::Context;
use crate::output;

/// The policy flags of `quorum retry`: the fields of the project's
/// replication policy to replace for the new batch (BOINC's names, as in the
/// manifest's `[policy]`). None given: the batch has the project's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct PolicyOverrides {
    /// Agreeing successful results needed to accept a work unit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub min_quorum: Option<u32>,

    /// Copies sent at first (at least --min-quorum).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub target_results: Option<u32>,

    /// More error results than this fail a work unit.
    #[arg(long, value_name = "N")]
    pub max_error_results: Option<u32>,

    /// More copies in all than this fail a work unit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_total_results: Option<u32>,

    /// More successes than this without agreement fail a work unit.
    ///
    /// 0: the coordinator's default (--max-total-results).
    #[arg(long, value_name = "N")]
    pub max_success_results: Option<u32>,

    /// Time a host has from dispatch to report (e.g. "90s", "1h"); whole
    /// seconds, at least 1s.
    #[arg(long, value_name = "DURATION", value_parser = parse_deadline)]
    pub deadline: Option<Duration>,

    /// Copies of higher-priority work go out first (may be negative).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub priority: Option<i32>,

    /// Accept a work unit on one result from a host with a long streak of
    /// valid results ("true" or "false").
    #[arg(long, value_name = "BOOL")]
    pub adaptive_replication: Option<bool>,
}

impl PolicyOverrides {
    /// True when no policy flag was given.
    pub fn is_empty(&self) -> bool {
        self == &PolicyOverrides::default()
    }

    /// `current` with the given fields replaced.
    pub fn apply(&self, current: &v1::ReplicationPolicy) -> v1::ReplicationPolicy {
        v1::ReplicationPolicy {
            min_quorum: self.min_quorum.unwrap_or(current.min_quorum),
            target_results: self.target_results.unwrap_or(current.target_results),
            max_error_results: self.max_error_results.unwrap_or(current.max_error_results),
            max_total_results: self.max_total_results.unwrap_or(current.max_total_results),
            deadline_secs: self.deadline.map_or(current.deadline_secs, |deadline| deadline.as_secs()),
            max_success_results: self.max_success_results.unwrap_or(current.max_success_results),
            adaptive_replication: self.adaptive_replication.unwrap_or(current.adaptive_replication),
            priority: self.priority.unwrap_or(current.priority),
        }
    }
}

/// Parses `--deadline`: a humantime duration of whole seconds, at least 1s
/// (the protocol carries seconds).
fn parse_deadline(text: &str) -> Result<Duration, String> {
    let deadline = humantime::parse_duration(text).map_err(|error| format!("invalid duration '{text}': {error}"))?;
    if deadline < Duration::from_secs(1) || deadline.subsec_nanos() != 0 {
        return Err(format!("must be a whole number of seconds, at least 1s, got '{text}'"));
    }
    Ok(deadline)
}

pub async fn run(ctx: &Context, project: &str, work_units: &[i64], overrides: &PolicyOverrides) -> anyhow::Result<()> {
    let coordinator = ctx.connect().await?;
    let policy = if overrides.is_empty() {
        None
    } else {
        let response = coordinator
            .client()
            .get_status(v1::GetStatusRequest { project: project.to_owned() })
            .await
            .map_err(|status| coordinator.error(status))?
            .into_inner();
        let status = response
            .projects
            .into_iter()
            .find(|status| status.name == project)
            .with_context(|| format!("no project '{project}' on {}", coordinator.url()))?;
        let current =
            status.policy.with_context(|| format!("the coordinator did not send the policy of project '{project}'"))?;
        Some(overrides.apply(&current))
    };
    let response = coordinator
        .client()
        .retry_work_units(v1::RetryWorkUnitsRequest {
            project: project.to_owned(),
            work_unit_ids: work_units.to_vec(),
            policy,
        })
        .await
        .map_err(|status| coordinator.error(status))?
        .into_inner();
    let retried = output::Retried {
        project: project.to_owned(),
        n_work_units: response.n_work_units,
        batch_id: response.batch_id,
    };
    let mut out = super::stdout();
    if ctx.json {
        output::write_json(&mut out, &retried)?;
    } else {
        writeln!(out, "{}", output::retried_line(&retried))?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_policy() -> v1::ReplicationPolicy {
        v1::ReplicationPolicy {
            min_quorum: 2,
            target_results: 3,
            max_error_results: 4,
            max_total_results: 6,
            deadline_secs: 3_600,
            max_success_results: 0,
            adaptive_replication: true,
            priority: 5,
        }
    }

    #[test]
    fn policy_overrides_replace_only_the_given_fields() {
        let check = |overrides: PolicyOverrides, expected: v1::ReplicationPolicy| {
            assert_eq!(overrides.apply(&project_policy()), expected, "for {overrides:?}");
        };
        let none = PolicyOverrides::default();
        check(none.clone(), project_policy());
        check(
            PolicyOverrides { max_error_results: Some(0), ..none.clone() },
            v1::ReplicationPolicy { max_error_results: 0, ..project_policy() },
        );
        check(
            PolicyOverrides { min_quorum: Some(1), target_results: Some(1), ..none.clone() },
            v1::ReplicationPolicy { min_quorum: 1, target_results: 1, ..project_policy() },
        );
        check(
            PolicyOverrides {
                max_total_results: Some(10),
                max_success_results: Some(8),
                deadline: Some(Duration::from_secs(90)),
                ..none.clone()
            },
            v1::ReplicationPolicy {
                max_total_results: 10,
                max_success_results: 8,
                deadline_secs: 90,
                ..project_policy()
            },
        );
        check(
            PolicyOverrides { priority: Some(-2), adaptive_replication: Some(false), ..none },
            v1::ReplicationPolicy { priority: -2, adaptive_replication: false, ..project_policy() },
        );
    }

    #[test]
    fn empty_only_without_policy_flags() {
        assert!(PolicyOverrides::default().is_empty());
        assert!(!PolicyOverrides { max_error_results: Some(0), ..Default::default() }.is_empty());
        assert!(!PolicyOverrides { adaptive_replication: Some(false), ..Default::default() }.is_empty());
        assert!(!PolicyOverrides { priority: Some(0), ..Default::default() }.is_empty());
    }

    #[test]
    fn deadlines() {
        let check = |text: &str, expected: Result<u64, &str>| {
            let actual = parse_deadline(text).map(|deadline| deadline.as_secs());
            assert_eq!(actual, expected.map_err(str::to_owned), "for {text:?}");
        };
        check("90s", Ok(90));
        check("1h 30m", Ok(5_400));
        check("1s", Ok(1));
        check("500ms", Err("must be a whole number of seconds, at least 1s, got '500ms'"));
        check("1500ms", Err("must be a whole number of seconds, at least 1s, got '1500ms'"));
        check("0s", Err("must be a whole number of seconds, at least 1s, got '0s'"));
        assert!(parse_deadline("soon").is_err());
    }
}
