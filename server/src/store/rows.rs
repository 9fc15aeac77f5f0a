//! Conversions between database rows and domain types. A row that does not
//! convert is reported as `Error::Corrupt`, never silently defaulted.

use super::backend::{Executor, Row, query};
use super::{Error, Result};
use crate::domain::app_args::{self, AppArgs};
use crate::domain::files::FileLimits;
use crate::domain::fuzzy::Tolerance;
use crate::domain::lifecycle::{Outcome, ResultCopy, ServerState, ValidateState, WorkUnit, WorkUnitState};
use crate::domain::names::ProjectName;
use crate::domain::policy::{self, Limits, PolicySpec, ReplicationPolicy, ValidatorKind};
use crate::domain::trust::{HostTrust, Quota};
use crate::domain::{Digest, HostId, ResultId, Timestamp, WorkUnitId, scheduler};

/// Columns `result_copy` reads, to splice with `concat!` into SELECTs on `results r`.
macro_rules! result_copy_columns {
    () => {
        "r.id, r.host_id, r.server_state, r.outcome, r.validate_state, r.deadline, r.output_digest, r.fuel_used, \
         r.granted_credit, r.engine, r.resumed, r.given_back, \
         COALESCE((SELECT CASE WHEN h.n_valid > 0 THEN 1 ELSE 0 END FROM hosts h WHERE h.id = r.host_id), 0) AS host_proven"
    };
}

/// Columns `policy`, `limits` and `validator` read for a work unit, to splice
/// with `concat!` into SELECTs on `projects p LEFT JOIN batches b`: a batch's
/// own policy, when it has one, overrides the project's (all fields or none).
macro_rules! work_unit_policy_columns {
    () => {
        "COALESCE(b.min_quorum, p.min_quorum) AS min_quorum, \
         COALESCE(b.target_results, p.target_results) AS policy_target_results, \
         COALESCE(b.max_error_results, p.max_error_results) AS max_error_results, \
         COALESCE(b.max_total_results, p.max_total_results) AS max_total_results, \
         COALESCE(b.max_success_results, p.max_success_results) AS max_success_results, \
         COALESCE(b.deadline_ms, p.deadline_ms) AS deadline_ms, \
         COALESCE(b.adaptive_replication, p.adaptive_replication) AS adaptive_replication, \
         COALESCE(b.priority, p.priority) AS priority, \
         p.fuel_limit, p.memory_limit_bytes, p.output_limit_bytes, p.wall_time_limit_ms, p.stderr_limit_bytes, \
         p.validator, p.nan_canonicalization, p.fuzzy_format, p.relative_tolerance, p.absolute_tolerance, p.validator_digest, \
         p.input_files_limit_bytes, p.output_files_limit_bytes, p.checkpointing"
    };
}

/// Columns `policy` and `limits` read, to splice with `concat!` into SELECTs on `projects p`.
/// The policy's `target_results` is aliased: work units have their own.
macro_rules! project_policy_columns {
    () => {
        "p.min_quorum, p.target_results AS policy_target_results, p.max_error_results, p.max_total_results, p.deadline_ms, p.fuel_limit, \
         p.memory_limit_bytes, p.output_limit_bytes, p.wall_time_limit_ms, p.stderr_limit_bytes, p.validator, \
         p.nan_canonicalization, p.max_success_results, p.adaptive_replication, p.fuzzy_format, p.relative_tolerance, \
         p.absolute_tolerance, p.validator_digest, p.priority, p.input_files_limit_bytes, p.output_files_limit_bytes, \
         p.checkpointing"
    };
}

/// Columns `merged_args` reads, to splice with `concat!` into SELECTs on
/// `projects p` and `work_units w`.
macro_rules! app_args_columns {
    () => {
        "p.args AS project_args, p.env AS project_env, w.args AS work_unit_args, w.env AS work_unit_env"
    };
}

pub(super) use {app_args_columns, project_policy_columns, result_copy_columns, work_unit_policy_columns};

/// The `args` and `env` columns of an [`AppArgs`]: JSON text (an array of
/// strings, an object from name to value), NULL when there are none.
pub fn app_args_text(app_args: &AppArgs) -> (Option<String>, Option<String>) {
    let args = (!app_args.args().is_empty())
        .then(|| serde_json::to_string(app_args.args()).expect("a list of strings always serializes"));
    let env = (!app_args.env().is_empty())
        .then(|| serde_json::to_string(app_args.env()).expect("a map of strings always serializes"));
    (args, env)
}

/// An [`AppArgs`] from its `args` and `env` columns (named `args_column`,
/// `env_column` in the row), checked again as on submission.
pub fn app_args(row: &Row, table: &'static str, args_column: &str, env_column: &str) -> Result<AppArgs> {
    let args: Option<String> = row.try_get(args_column)?;
    let env: Option<String> = row.try_get(env_column)?;
    let args: Vec<String> = match args {
        Some(text) => serde_json::from_str(&text).map_err(|error| corrupt(table, format!("args {text:?}: {error}")))?,
        None => Vec::new(),
    };
    let env: std::collections::BTreeMap<String, String> = match env {
        Some(text) => serde_json::from_str(&text).map_err(|error| corrupt(table, format!("env {text:?}: {error}")))?,
        None => Default::default(),
    };
    AppArgs::new(args, env.into_iter().collect()).map_err(|error| corrupt(table, error.to_string()))
}

/// The command line and environment of a copy, from the columns of
/// [`app_args_columns`] and its project's name (argv\[0\]).
pub fn merged_args(row: &Row, project: &str) -> Result<app_args::Merged> {
    let project_args = app_args(row, "projects", "project_args", "project_env")?;
    let work_unit_args = app_args(row, "work_units", "work_unit_args", "work_unit_env")?;
    Ok(app_args::merge(project, &project_args, &work_unit_args))
}

fn corrupt(table: &'static str, detail: impl Into<String>) -> Error {
    Error::Corrupt { table, detail: detail.into() }
}

pub fn u32_column(row: &Row, column: &str) -> Result<u32> {
    let value: i64 = row.try_get(column)?;
    u32::try_from(value).map_err(|_| corrupt("?", format!("{column} = {value} is out of range")))
}

/// A nullable non-negative INTEGER column.
pub fn optional_u64(row: &Row, column: &str) -> Result<Option<u64>> {
    let value: Option<i64> = row.try_get(column)?;
    value.map(|v| u64::try_from(v).map_err(|_| corrupt("?", format!("{column} = {v} is negative")))).transpose()
}

pub fn u64_column(row: &Row, column: &str) -> Result<u64> {
    let value: Option<i64> = row.try_get(column)?;
    let value = value.unwrap_or(0);
    u64::try_from(value).map_err(|_| corrupt("?", format!("{column} = {value} is negative")))
}

/// A result row's three state fields, parsed.
pub fn copy_fields(row: &Row) -> Result<(ServerState, Option<Outcome>, ValidateState)> {
    let server_state: String = row.try_get("server_state")?;
    let outcome: Option<String> = row.try_get("outcome")?;
    let validate_state: String = row.try_get("validate_state")?;
    Ok((
        ServerState::parse(&server_state)
            .ok_or_else(|| corrupt("results", format!("server_state {server_state:?}")))?,
        match outcome {
            None => None,
            Some(text) => Some(Outcome::parse(&text).ok_or_else(|| corrupt("results", format!("outcome {text:?}")))?),
        },
        ValidateState::parse(&validate_state)
            .ok_or_else(|| corrupt("results", format!("validate_state {validate_state:?}")))?,
    ))
}

pub fn result_copy(row: &Row) -> Result<ResultCopy> {
    let (server_state, outcome, validate_state) = copy_fields(row)?;
    let output_digest: Option<String> = row.try_get("output_digest")?;
    Ok(ResultCopy {
        id: ResultId(row.try_get("id")?),
        host_id: row.try_get::<Option<i64>, _>("host_id")?.map(HostId),
        server_state,
        outcome,
        validate_state,
        deadline: row.try_get::<Option<i64>, _>("deadline")?.map(Timestamp),
        output_digest: output_digest.map(Digest::from_hex),
        fuel_used: u64_column(row, "fuel_used")?,
        granted_credit: row.try_get("granted_credit")?,
        engine: row.try_get("engine")?,
        resumed: row.try_get("resumed")?,
        given_back: row.try_get("given_back")?,
        host_proven: row.try_get("host_proven")?,
    })
}

/// A work unit from a row with `id, state, fail_reason, target_results, canonical_result_id, single_result`;
/// its typical credit is left at 0 (nothing vouched) for the caller to load
/// when it is accepted on a single result.
pub fn work_unit(row: &Row) -> Result<WorkUnit> {
    Ok(WorkUnit {
        id: WorkUnitId(row.try_get("id")?),
        state: work_unit_state(row)?,
        target_results: u32_column(row, "target_results")?,
        canonical_result: row.try_get::<Option<i64>, _>("canonical_result_id")?.map(ResultId),
        single_result: row.try_get("single_result")?,
        purged: row.try_get::<Option<i64>, _>("purged_at")?.is_some(),
        typical_credit: 0.0,
    })
}

/// A work unit's random seed from a row with its `work_unit_id` and
/// `random_seed` columns: the stored seed, or for a work unit created before
/// seeds were stored, the id-derived one its copies were always given.
pub fn random_seed(row: &Row) -> Result<u64> {
    Ok(match row.try_get::<Option<i64>, _>("random_seed")? {
        Some(seed) => seed as u64,
        None => scheduler::legacy_random_seed(WorkUnitId(row.try_get("work_unit_id")?)),
    })
}

/// A work unit's state from a row with its `state` and `fail_reason` columns.
pub fn work_unit_state(row: &Row) -> Result<WorkUnitState> {
    let state: String = row.try_get("state")?;
    let fail_reason: Option<String> = row.try_get("fail_reason")?;
    WorkUnitState::parse(&state, fail_reason.as_deref())
        .ok_or_else(|| corrupt("work_units", format!("state {state:?} / {fail_reason:?}")))
}

pub fn policy(row: &Row) -> Result<ReplicationPolicy> {
    ReplicationPolicy::new(PolicySpec {
        min_quorum: u32_column(row, "min_quorum")?,
        target_results: u32_column(row, "policy_target_results")?,
        max_error_results: u32_column(row, "max_error_results")?,
        max_total_results: u32_column(row, "max_total_results")?,
        max_success_results: u32_column(row, "max_success_results")?,
        deadline_ms: u64_column(row, "deadline_ms")?,
        adaptive_replication: row.try_get("adaptive_replication")?,
        priority: row.try_get("priority")?,
    })
    .map_err(|e| corrupt("projects", e.to_string()))
}

/// The project's validator from the columns of `project_policy_columns`.
pub fn validator(row: &Row) -> Result<ValidatorKind> {
    let kind: String = row.try_get("validator")?;
    match kind.as_str() {
        "bitwise" => Ok(ValidatorKind::Bitwise),
        "fuzzy" => {
            let format: Option<String> = row.try_get("fuzzy_format")?;
            let format = policy::parse_format(format.as_deref().unwrap_or(""))
                .map_err(|e| corrupt("projects", e.to_string()))?;
            let tolerance = Tolerance::new(
                row.try_get::<Option<f64>, _>("relative_tolerance")?.unwrap_or(0.0),
                row.try_get::<Option<f64>, _>("absolute_tolerance")?.unwrap_or(0.0),
            )
            .map_err(|e| corrupt("projects", e.to_string()))?;
            Ok(ValidatorKind::Fuzzy { format, tolerance })
        }
        "custom" => {
            let digest: Option<String> = row.try_get("validator_digest")?;
            let digest = digest
                .as_deref()
                .and_then(Digest::parse)
                .ok_or_else(|| corrupt("projects", "custom validator without a module digest"))?;
            Ok(ValidatorKind::Custom { module_digest: digest })
        }
        other => Err(corrupt("projects", format!("validator {other:?}"))),
    }
}

pub fn limits(row: &Row) -> Result<Limits> {
    Ok(Limits {
        fuel: u64_column(row, "fuel_limit")?,
        memory_bytes: u64_column(row, "memory_limit_bytes")?,
        output_bytes: u64_column(row, "output_limit_bytes")?,
        wall_time_ms: u64_column(row, "wall_time_limit_ms")?,
        stderr_bytes: u64_column(row, "stderr_limit_bytes")?,
    })
}

/// The project's limits on files from the columns of `project_policy_columns`
/// (NULL for projects created before files: the defaults).
pub fn file_limits(row: &Row) -> Result<FileLimits> {
    Ok(FileLimits {
        input_bytes: optional_u64(row, "input_files_limit_bytes")?.unwrap_or(FileLimits::DEFAULT_INPUT_BYTES),
        output_bytes: optional_u64(row, "output_files_limit_bytes")?.unwrap_or(0),
    })
}

/// A `u64` as SQLite's INTEGER; values above `i64::MAX` are refused by the domain before they get here.
pub fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Columns `host_trust` reads, to splice with `concat!` into SELECTs on `hosts h`.
macro_rules! host_trust_columns {
    () => {
        "h.consecutive_valid, h.daily_quota, h.results_today, h.quota_day"
    };
}

pub(super) use host_trust_columns;

pub fn host_trust(row: &Row) -> Result<HostTrust> {
    Ok(HostTrust {
        consecutive_valid: u32_column(row, "consecutive_valid")?,
        quota: Quota {
            daily: u32_column(row, "daily_quota")?,
            used: u32_column(row, "results_today")?,
            day: row.try_get("quota_day")?,
        },
    })
}

/// The id of the project named `project`, or [`Error::ProjectNotFound`]; on
/// the pool or within a transaction.
pub async fn project_id<'c>(executor: impl Executor<'c>, project: &ProjectName) -> Result<i64> {
    let row = query("SELECT id FROM projects WHERE name = ?")
        .bind(project.as_str())
        .fetch_optional(executor)
        .await?
        .ok_or_else(|| Error::ProjectNotFound(project.to_string()))?;
    Ok(row.try_get("id")?)
}

/// [`Error::BatchNotFound`] unless `batch` is one of the project's.
pub async fn check_batch<'c>(
    executor: impl Executor<'c>,
    project_id: i64,
    project: &ProjectName,
    batch: i64,
) -> Result<()> {
    let exists = query("SELECT 1 FROM batches WHERE id = ? AND project_id = ?")
        .bind(batch)
        .bind(project_id)
        .fetch_optional(executor)
        .await?;
    match exists {
        Some(_) => Ok(()),
        None => Err(Error::BatchNotFound { project: project.to_string(), batch }),
    }
}
