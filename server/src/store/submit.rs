//! Submission: apps (content-addressed), projects and batches of work units.

use super::backend::{QueryBuilder, Tx, query};

use super::bulk;
use super::files;
use super::rows::{self, int};
use super::{Error, Result, Store};
use crate::domain::app_args::AppArgs;
use crate::domain::files::{FileLimits, InputFile, InputFiles};
use crate::domain::lifecycle::{self, WorkUnit, WorkUnitState};
use crate::domain::names::{ProjectName, WorkUnitName};
use crate::domain::policy::{self, Limits, ReplicationPolicy, ValidatorKind};
use crate::domain::validator::Bitwise;
use crate::domain::{Digest, ProjectId, Timestamp, WorkUnitId, scheduler};

/// A project to create, already checked by the domain constructors.
#[derive(Debug, Clone)]
pub struct NewProject {
    pub name: ProjectName,
    pub app_module: Vec<u8>,
    /// SHA-256 of `app_module`, computed by the caller.
    pub app_digest: Digest,
    pub policy: ReplicationPolicy,
    pub limits: Limits,
    pub validator: ValidatorKind,
    /// The module of a custom validator (its digest is in `validator`).
    pub validator_module: Option<Vec<u8>>,
    pub nan_canonicalization: bool,
    /// The scientist's signature of the app, checked by the caller.
    pub app_signature: Option<crate::domain::signing::AppSignature>,
    /// The project seed its work units' random seeds derive from
    /// (`scheduler::project_seed`), stored with the project.
    pub seed: u64,
    /// Arguments and environment variables every work unit's app gets.
    pub app_args: AppArgs,
    /// Files every work unit's app sees as `/input/NAME`, already uploaded.
    pub files: InputFiles,
    pub file_limits: FileLimits,
    /// Its apps keep checkpoints: each copy gets a `/checkpoint` directory.
    pub checkpointing: bool,
}

/// One work unit to add; its name defaults to `wu-<id>`.
#[derive(Debug, Clone)]
pub struct NewWorkUnit {
    pub name: Option<WorkUnitName>,
    pub input: Vec<u8>,
    /// Its own arguments (after the project's) and variables (overriding the project's).
    pub app_args: AppArgs,
    /// Its own input files, besides the project's, already uploaded.
    pub files: InputFiles,
}

impl Store {
    /// Creates a project, its app (unless already stored) and its first work
    /// units, all or nothing.
    pub async fn create_project(
        &self,
        project: &NewProject,
        work_units: &[NewWorkUnit],
        now: Timestamp,
    ) -> Result<(ProjectId, u64)> {
        let mut tx = self.write().await?;
        let exists =
            query("SELECT 1 FROM projects WHERE name = ?").bind(project.name.as_str()).fetch_optional(&mut tx).await?;
        if exists.is_some() {
            return Err(Error::ProjectExists(project.name.to_string()));
        }
        query("INSERT INTO apps (digest, module, size, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(project.app_digest.as_str())
            .bind(&project.app_module)
            .bind(project.app_module.len() as i64)
            .bind(now.0)
            .execute(&mut tx)
            .await?;
        if let (ValidatorKind::Custom { module_digest }, Some(module)) = (&project.validator, &project.validator_module)
        {
            query("INSERT INTO apps (digest, module, size, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING")
                .bind(module_digest.as_str())
                .bind(module)
                .bind(module.len() as i64)
                .bind(now.0)
                .execute(&mut tx)
                .await?;
        }
        let policy = &project.policy;
        let limits = &project.limits;
        let (args, env) = rows::app_args_text(&project.app_args);
        let id: i64 = query(
            "INSERT INTO projects (name, app_digest, state, min_quorum, target_results, max_error_results, \
             max_total_results, deadline_ms, fuel_limit, memory_limit_bytes, output_limit_bytes, wall_time_limit_ms, \
             validator, nan_canonicalization, created_at, max_success_results, adaptive_replication, fuzzy_format, \
             relative_tolerance, absolute_tolerance, validator_digest, priority, stderr_limit_bytes, seed, args, env, \
             input_files_limit_bytes, output_files_limit_bytes, checkpointing) \
             VALUES (?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(project.name.as_str())
        .bind(project.app_digest.as_str())
        .bind(policy.min_quorum())
        .bind(policy.target_results())
        .bind(policy.max_error_results())
        .bind(policy.max_total_results())
        .bind(int(policy.deadline_ms()))
        .bind(int(limits.fuel))
        .bind(int(limits.memory_bytes))
        .bind(int(limits.output_bytes))
        .bind(int(limits.wall_time_ms))
        .bind(project.validator.as_str())
        .bind(project.nan_canonicalization)
        .bind(now.0)
        .bind(policy.max_success_results())
        .bind(policy.adaptive_replication())
        .bind(match &project.validator {
            ValidatorKind::Fuzzy { format, .. } => Some(policy::format_name(*format)),
            ValidatorKind::Bitwise | ValidatorKind::Custom { .. } => None,
        })
        .bind(match &project.validator {
            ValidatorKind::Fuzzy { tolerance, .. } => Some(tolerance.relative()),
            ValidatorKind::Bitwise | ValidatorKind::Custom { .. } => None,
        })
        .bind(match &project.validator {
            ValidatorKind::Fuzzy { tolerance, .. } => Some(tolerance.absolute()),
            ValidatorKind::Bitwise | ValidatorKind::Custom { .. } => None,
        })
        .bind(match &project.validator {
            ValidatorKind::Custom { module_digest } => Some(module_digest.as_str()),
            ValidatorKind::Bitwise | ValidatorKind::Fuzzy { .. } => None,
        })
        .bind(policy.priority())
        .bind(int(limits.stderr_bytes))
        .bind(project.seed as i64)
        .bind(args)
        .bind(env)
        .bind(int(project.file_limits.input_bytes))
        .bind(int(project.file_limits.output_bytes))
        .bind(project.checkpointing)
        .fetch_one(&mut tx)
        .await?
        .try_get("id")?;
        let project_id = ProjectId(id);
        super::signing::record(&mut tx, project_id, project.app_signature.as_ref()).await?;
        files::check_uploaded(&mut tx, project.files.iter()).await?;
        files::insert_project_files(&mut tx, project_id, &project.files).await?;
        let project_files = ProjectFiles { shared: &project.files, limits: project.file_limits };
        let n = if work_units.is_empty() {
            0
        } else {
            insert_work_units(
                &mut tx,
                project_id,
                &project.name,
                project.seed,
                policy,
                None,
                work_units,
                project_files,
                now,
            )
            .await?
            .0
        };
        tx.commit().await?;
        Ok((project_id, n))
    }

    /// Adds a batch of work units to an active project, all or nothing, with
    /// its own replication policy if given. Returns the number added, the id
    /// of the first, and the batch's id.
    pub async fn add_work_units(
        &self,
        project: &ProjectName,
        work_units: &[NewWorkUnit],
        batch_policy: Option<&ReplicationPolicy>,
        now: Timestamp,
    ) -> Result<(u64, WorkUnitId, i64)> {
        let mut tx = self.write().await?;
        let sql = concat!(
            "SELECT p.id, p.state, p.seed, ",
            rows::project_policy_columns!(),
            " FROM projects p WHERE p.name = ?"
        );
        let row = query(sql)
            .bind(project.as_str())
            .fetch_optional(&mut tx)
            .await?
            .ok_or_else(|| Error::ProjectNotFound(project.to_string()))?;
        let state: String = row.try_get("state")?;
        if state != "active" {
            return Err(Error::ProjectCancelled(project.to_string()));
        }
        let policy = rows::policy(&row)?;
        let first = next_work_unit_id(&mut tx).await?;
        let project_id = ProjectId(row.try_get("id")?);
        // Projects created before seeds were stored derive theirs from their name.
        let seed = match row.try_get::<Option<i64>, _>("seed")? {
            Some(seed) => seed as u64,
            None => scheduler::project_seed(project, None),
        };
        let shared = files::project_files(&mut tx, project_id).await?;
        let project_files = ProjectFiles { shared: &shared, limits: rows::file_limits(&row)? };
        let (n, batch) = insert_work_units(
            &mut tx,
            project_id,
            project,
            seed,
            &policy,
            batch_policy,
            work_units,
            project_files,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok((n, WorkUnitId(first), batch))
    }

    /// An app module by its digest.
    pub async fn app_module(&self, digest: &Digest) -> Result<Vec<u8>> {
        query("SELECT module FROM apps WHERE digest = ?")
            .bind(digest.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.try_get("module"))
            .transpose()?
            .ok_or_else(|| Error::AppNotFound(digest.to_string()))
    }
}

/// Creates a batch of `n_work_units`, with its own policy if given.
pub(super) async fn create_batch(
    tx: &mut Tx<'_>,
    project_id: ProjectId,
    n_work_units: u64,
    policy: Option<&ReplicationPolicy>,
    now: Timestamp,
) -> Result<i64> {
    let spec = policy.map(ReplicationPolicy::spec);
    let row = query(
        "INSERT INTO batches (project_id, state, n_work_units, created_at, min_quorum, target_results, \
         max_error_results, max_total_results, max_success_results, deadline_ms, adaptive_replication, priority) \
         VALUES (?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(project_id.0)
    .bind(int(n_work_units))
    .bind(now.0)
    .bind(spec.map(|s| s.min_quorum))
    .bind(spec.map(|s| s.target_results))
    .bind(spec.map(|s| s.max_error_results))
    .bind(spec.map(|s| s.max_total_results))
    .bind(spec.map(|s| s.max_success_results))
    .bind(spec.map(|s| int(s.deadline_ms)))
    .bind(spec.map(|s| s.adaptive_replication))
    .bind(spec.map(|s| s.priority))
    .fetch_one(&mut *tx)
    .await?;
    Ok(row.try_get("id")?)
}

/// The id the next work unit will get. Safe inside a write transaction:
/// the database's writers take turns (`backend::Pool::begin_write`).
async fn next_work_unit_id(tx: &mut Tx<'_>) -> Result<i64> {
    let row = query("SELECT COALESCE(MAX(id), 0) + 1 AS next FROM work_units").fetch_one(&mut *tx).await?;
    Ok(row.try_get("next")?)
}

/// Inserts work units as a new batch, each with its random seed (from
/// `project_seed` and its name), with their first copies as the lifecycle
/// rules ask. Returns how many, and the batch's id. Set-based:
/// multi-row inserts of [`bulk::CHUNK`] work units, then one statement for
/// all their copies.
#[allow(clippy::too_many_arguments)] // One call site per kind of submission.
/// What the work units of a project see of its files: its shared files, and
/// the limit their inputs must stay within.
#[derive(Clone, Copy)]
struct ProjectFiles<'a> {
    shared: &'a InputFiles,
    limits: FileLimits,
}

#[allow(clippy::too_many_arguments)]
async fn insert_work_units(
    tx: &mut Tx<'_>,
    project_id: ProjectId,
    project: &ProjectName,
    project_seed: u64,
    policy: &ReplicationPolicy,
    batch_policy: Option<&ReplicationPolicy>,
    work_units: &[NewWorkUnit],
    project_files: ProjectFiles<'_>,
    now: Timestamp,
) -> Result<(u64, i64)> {
    let batch = create_batch(tx, project_id, work_units.len() as u64, batch_policy, now).await?;
    let policy = batch_policy.unwrap_or(policy);
    let first_id = next_work_unit_id(tx).await?;
    let mut names = std::collections::HashSet::with_capacity(work_units.len());
    let mut rows = Vec::with_capacity(work_units.len());
    for (id, unit) in (first_id..).zip(work_units) {
        let name = match &unit.name {
            Some(name) => name.as_str().to_owned(),
            None => format!("wu-{id}"),
        };
        if !names.insert(name.clone()) {
            return Err(Error::DuplicateWorkUnit { project: project.to_string(), name });
        }
        let seed = scheduler::random_seed(project_seed, &name);
        let (args, env) = rows::app_args_text(&unit.app_args);
        InputFiles::merge(
            project_files.shared,
            &unit.files,
            project_files.limits.input_bytes,
            &format!("work unit {name:?}"),
        )?;
        rows.push((id, name, &unit.input, seed, args, env));
    }
    let own_files: Vec<(WorkUnitId, &InputFile)> = (first_id..)
        .zip(work_units)
        .flat_map(|(id, unit)| unit.files.iter().map(move |file| (WorkUnitId(id), file)))
        .collect();
    files::check_uploaded(tx, own_files.iter().map(|(_, file)| *file)).await?;
    for chunk in rows.chunks(bulk::CHUNK) {
        let mut query = QueryBuilder::new(
            "INSERT INTO work_units (id, project_id, name, input, state, target_results, created_at, batch_id, \
             random_seed, args, env) ",
        );
        query.push_values(chunk, |mut row, (id, name, input, seed, args, env)| {
            row.push_bind(*id)
                .push_bind(project_id.0)
                .push_bind(name.clone())
                .push_bind((*input).clone())
                .push_bind("open")
                .push_bind(policy.target_results())
                .push_bind(now.0)
                .push_bind(batch)
                .push_bind(*seed as i64)
                .push_bind(args.clone())
                .push_bind(env.clone());
        });
        query.push(" ON CONFLICT (project_id, name) DO NOTHING");
        let inserted = query.build().persistent(false).execute(&mut *tx).await?.rows_affected();
        if inserted < chunk.len() as u64 {
            // A name already used by an earlier batch: say which.
            let mut query = QueryBuilder::new("SELECT name FROM work_units WHERE project_id = ");
            query.push_bind(project_id.0);
            query.push(" AND batch_id != ");
            query.push_bind(batch);
            query.push(" AND name IN (");
            let mut separated = query.separated(", ");
            for (_, name, ..) in chunk {
                separated.push_bind(name.clone());
            }
            separated.push_unseparated(") LIMIT 1");
            let row = query.build().persistent(false).fetch_optional(&mut *tx).await?;
            let name = row.map(|row| row.try_get("name")).transpose()?.unwrap_or_default();
            return Err(Error::DuplicateWorkUnit { project: project.to_string(), name });
        }
    }
    files::insert_work_unit_files(tx, &own_files).await?;
    // Every new work unit gets the copies the lifecycle rules ask of an empty
    // one, in work-unit order (so dispatch, which follows ids, sends a work
    // unit's copies together).
    let empty = WorkUnit {
        id: WorkUnitId(first_id),
        state: WorkUnitState::Open,
        target_results: policy.target_results(),
        canonical_result: None,
        single_result: false,
        purged: false,
        typical_credit: 0.0,
    };
    let copies = lifecycle::transition(policy, &empty, &[], &Bitwise, now).new_results;
    if copies > 0 {
        query(
            "WITH RECURSIVE copy(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM copy WHERE n < ?) \
             INSERT INTO results (work_unit_id, project_id, server_state, validate_state, created_at, attempt, priority) \
             SELECT w.id, w.project_id, 'unsent', 'pending', ?, w.attempt, ? FROM work_units w, copy \
             WHERE w.batch_id = ? ORDER BY w.id, copy.n",
        )
        .bind(copies)
        .bind(now.0)
        .bind(policy.priority())
        .bind(batch)
        .execute(&mut *tx)
        .await?;
    }
    tx.work_unit_ids_used().await?;
    Ok((work_units.len() as u64, batch))
}

/// Inserts one unsent copy of a work unit.
pub(super) async fn insert_unsent(
    tx: &mut Tx<'_>,
    work_unit: WorkUnitId,
    project: ProjectId,
    now: Timestamp,
) -> Result<()> {
    query(
        "INSERT INTO results (work_unit_id, project_id, server_state, validate_state, created_at, attempt, priority) \
         SELECT w.id, ?, 'unsent', 'pending', ?, w.attempt, COALESCE(b.priority, p.priority) \
         FROM work_units w JOIN projects p ON p.id = w.project_id LEFT JOIN batches b ON b.id = w.batch_id \
         WHERE w.id = ?",
    )
    .bind(project.0)
    .bind(now.0)
    .bind(work_unit.0)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
