//! Computing: which queued task starts on a free core (the only place a task
//! starts), its app and signature checked first, and what becomes of a task
//! that comes back from the pool (a finished result journalled with its
//! report, an interrupted one queued again with its checkpoint, an unwanted
//! one forgotten); running tasks' progress and the pause.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use quorum_proto::v1::{Assignment, ReportedOutcome, ResultReport};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::*;
use crate::journal::{AppStats, Finished};
use crate::preferences::{self, Admission};
use crate::reports::{error_report, given_back, report};
use crate::sandbox::DEFAULT_MEMORY_BYTES;
use crate::sandbox::{Limits, Status as TaskStatus, Task, TaskControl};
use crate::schedule::{Candidate, Choice};
use crate::signing;
use crate::state;

impl Worker {
    /// Starts queued tasks on free cores, in the order `schedule` picks; the
    /// only place a task starts. Each start first checks that the worker is
    /// neither paused nor asked to shut down.
    pub(super) async fn start_tasks<F: Future<Output = ()>>(
        &mut self,
        shutdown: &mut Shutdown<F>,
    ) -> anyhow::Result<()> {
        while self.running.len() < self.config.cpus && self.computing() && !shutdown.requested().await {
            let now = now_ms();
            let ready: Vec<Key> = self.ready_keys().await;
            let keys = self.within_memory_budget(ready).await?;
            if keys.is_empty() {
                break;
            }
            let candidates: Vec<Candidate> = keys
                .iter()
                .map(|key| {
                    let queued = &self.queue[key];
                    Candidate {
                        attachment: key.0,
                        deadline_ms: deadline_ms(&queued.assignment),
                        seq: queued.seq,
                        estimate_ms: self.estimate(&queued.assignment.app_digest, queued.fuel_before),
                    }
                })
                .collect();
            let usage: Vec<f64> = (0..self.attachments.len()).map(|index| self.current_usage(index)).collect();
            let shares: Vec<f64> = self.attachments.iter().map(|a| a.share).collect();
            match schedule::next(&candidates, &usage, &shares, now) {
                Some(Choice::Start(index)) => self.spawn(keys[index]).await?,
                Some(Choice::Abandon(index)) => {
                    let key = keys[index];
                    let queued = self.queue.remove(&key).expect("candidates come from the queue");
                    let left_ms = queued.assignment.deadline_unix_ms.saturating_sub(now);
                    let message = match candidates[index].estimate_ms {
                        Some(estimate) => format!(
                            "abandoned: cannot finish by the deadline at this host's speed (needs about {} s, {} s left)",
                            estimate.div_ceil(1000),
                            left_ms.max(0) / 1000
                        ),
                        None => "abandoned: the deadline passed before the task could start".to_string(),
                    };
                    warn!(server = %self.attachments[key.0].server, result_id = key.1, "{message}");
                    // Given back: the host's speed, not the app or the input.
                    let report = ResultReport { given_back: true, ..error_report(key.1, message) };
                    self.record_finished(vec![Completed::unrun(key.0, queued.assignment.app_digest, report)]).await?;
                }
                None => break,
            }
        }
        Ok(())
    }

    /// The tasks among `keys` that fit in the memory budget beside the
    /// running ones (by the memory limit they reserve); those that never
    /// can are reported as client errors.
    async fn within_memory_budget(&mut self, keys: Vec<Key>) -> anyhow::Result<Vec<Key>> {
        let running: u64 = self.running.values().map(|r| reserved_memory(&r.assignment)).sum();
        let mut fit = Vec::with_capacity(keys.len());
        for key in keys {
            let reserved = reserved_memory(&self.queue[&key].assignment);
            match preferences::admit(self.memory_budget, running, reserved) {
                Admission::Start => fit.push(key),
                // Starts once running tasks end.
                Admission::Wait => {}
                Admission::Refuse => {
                    let queued = self.queue.remove(&key).expect("key from the queue");
                    let message = format!(
                        "refused: reserves {} MiB of memory, more than this host lets tasks use ({} MiB: ram_max_used_busy_pct / ram_max_used_idle_pct)",
                        reserved >> 20,
                        self.memory_budget.unwrap_or(0) >> 20
                    );
                    warn!(server = %self.attachments[key.0].server, result_id = key.1, "{message}");
                    let report = error_report(key.1, message);
                    self.record_finished(vec![Completed::unrun(key.0, queued.assignment.app_digest, report)]).await?;
                }
            }
        }
        Ok(fit)
    }

    /// Queued tasks whose app is in memory (loading cached apps from disk,
    /// and turning tasks whose app cannot be had into error reports).
    pub(super) async fn ready_keys(&mut self) -> Vec<Key> {
        let digests: HashSet<String> = self.queue.values().map(|q| q.assignment.app_digest.clone()).collect();
        for digest in digests {
            if self.apps.contains_key(&digest) || self.unusable_apps.contains_key(&digest) {
                continue;
            }
            let state = self.state.clone();
            let owned = digest.clone();
            match tokio::task::spawn_blocking(move || state.read_app(&owned)).await {
                Ok(Ok(Some(bytes))) => {
                    self.apps.insert(digest, bytes.into());
                }
                Ok(Ok(None)) => {}
                Ok(Err(state::Error::InvalidDigest(_))) => {
                    self.unusable_apps.insert(digest.clone(), format!("invalid app digest {digest:?}"));
                }
                Ok(Err(error)) => warn!(error = %error, "cannot read the app cache, downloading"),
                Err(error) => warn!(error = %error, "app cache reader panicked, downloading"),
            }
        }
        let unusable: Vec<Key> = self
            .queue
            .iter()
            .filter(|(_, q)| self.unusable_apps.contains_key(&q.assignment.app_digest))
            .map(|(key, _)| *key)
            .collect();
        for key in unusable {
            let queued = self.queue.remove(&key).expect("key from the queue");
            let message = self.unusable_apps[&queued.assignment.app_digest].clone();
            let report = error_report(key.1, message.clone());
            match self.record_finished(vec![Completed::unrun(key.0, queued.assignment.app_digest, report)]).await {
                Ok(()) => warn!(result_id = key.1, error = %message, "finished result (cannot get its app)"),
                Err(error) => error!(error = %error, "cannot journal a finished result"),
            }
        }
        if let Err(error) = self.refuse_unfetchable().await {
            error!(error = %error, "cannot journal a refused result");
        }
        self.queue
            .iter()
            .filter(|(_, q)| self.apps.contains_key(&q.assignment.app_digest) && self.files_ready(&q.assignment))
            .map(|(key, _)| *key)
            .collect()
    }

    /// Estimated run time left for a task of `app_digest`.
    pub(super) fn estimate(&self, app_digest: &str, fuel_done: u64) -> Option<u64> {
        let stats = self.app_stats.get(app_digest)?;
        let per_task = (stats.fuel_per_task > 0.0).then_some(stats.fuel_per_task);
        schedule::estimate_ms(per_task, Some(stats.fuel_per_second), fuel_done, self.gate.cpu_limit())
    }

    /// A coordinator's usage including what its running tasks did so far.
    pub(super) fn current_usage(&self, index: usize) -> f64 {
        let running: u64 = self
            .running
            .iter()
            .filter(|(key, _)| key.0 == index)
            .map(|(_, r)| r.control.fuel_used().saturating_sub(r.fuel_counted))
            .sum();
        self.attachments[index].usage + running as f64
    }

    /// Whether the app of `assignment` may run (see `signing`): its signature
    /// and the project's trusted or pinned key. Pins the key the first time.
    /// `Ok(Err(reason))` refuses the task.
    pub(super) async fn check_signature(
        &mut self,
        server: &str,
        assignment: &Assignment,
        module: &Arc<[u8]>,
    ) -> anyhow::Result<Result<(), String>> {
        let pinned = self.journal.pinned_key(server, &assignment.project).await?;
        let (project, module, trust) = (assignment.project.clone(), module.clone(), self.config.trust.clone());
        let (signature, public_key) = (assignment.app_signature.clone(), assignment.app_public_key.clone());
        // Hashing the module and verifying are CPU work: off the async threads.
        let verdict = tokio::task::spawn_blocking(move || {
            signing::check(&project, &module, &signature, &public_key, pinned.as_deref(), &trust)
        })
        .await
        .context("the signature check panicked")?;
        match verdict {
            Ok(Some(key)) => {
                self.journal.pin_key(server, &assignment.project, &key, now_ms()).await?;
                Ok(Ok(()))
            }
            Ok(None) => Ok(Ok(())),
            Err(reason) => Ok(Err(reason)),
        }
    }

    /// Runs the queued task `key` on the pool; its outcome comes back on `done_rx`.
    pub(super) async fn spawn(&mut self, key: Key) -> anyhow::Result<()> {
        let queued = self.queue.remove(&key).expect("spawned tasks come from the queue");
        let assignment = queued.assignment;
        let server = self.attachments[key.0].server.clone();
        let module = self.apps[&assignment.app_digest].clone();
        if let Err(reason) = self.check_signature(&server, &assignment, &module).await? {
            warn!(server = %server, result_id = key.1, project = %assignment.project, "{reason}");
            let report = error_report(key.1, reason);
            return self.record_finished(vec![Completed::unrun(key.0, assignment.app_digest, report)]).await;
        }
        let state = self.state.clone();
        let (dir_server, result_id, digest) = (server.clone(), key.1, assignment.app_digest.clone());
        let checkpointing = assignment.checkpointing;
        let prepared = tokio::task::spawn_blocking(move || {
            // Used now: the last to be evicted from the app cache.
            if let Err(error) = state.touch_app(&digest) {
                debug!(error = %error, "cannot mark the app as used in the cache");
            }
            if !checkpointing {
                return Ok(None);
            }
            state.prepare_checkpoint_dir(&dir_server, result_id).map(Some)
        })
        .await
        .context("checkpoint directory preparation panicked")?;
        let (checkpoint_dir, resumed): (Option<PathBuf>, bool) = match prepared {
            Ok(Some((dir, resumed))) => (Some(dir), resumed),
            // The project's apps keep no checkpoints: no /checkpoint.
            Ok(None) => (None, false),
            Err(error) => {
                // The task can still run, without a place to checkpoint.
                warn!(error = %error, result_id, "cannot prepare the checkpoint directory");
                (None, false)
            }
        };
        let (input_dir, output_dir) = match self.prepare_files(&server, key.1, &assignment).await {
            Ok(dirs) => dirs,
            Err(message) => {
                warn!(server = %server, result_id = key.1, "{message}");
                let report = error_report(key.1, message);
                return self.record_finished(vec![Completed::unrun(key.0, assignment.app_digest, report)]).await;
            }
        };
        let fuel_before = if resumed { queued.fuel_before } else { 0 };
        let limits = assignment.limits.unwrap_or_default();
        let task = Task {
            input_dir,
            output_dir,
            app_digest: assignment.app_digest.clone(),
            module,
            input: assignment.input.clone(),
            random_seed: assignment.random_seed,
            limits: Limits::with_defaults(
                limits.fuel.saturating_sub(fuel_before).max(u64::from(limits.fuel > 0)),
                limits.memory_bytes,
                limits.output_bytes,
                limits.wall_time_ms,
                limits.stderr_bytes,
            ),
            nan_canonicalization: assignment.nan_canonicalization,
            checkpoint_dir,
            args: assignment.argv.clone(),
            env: assignment.env.iter().map(|var| (var.name.clone(), var.value.clone())).collect(),
        };
        info!(
            server = %server,
            result_id,
            work_unit = %assignment.work_unit_name,
            project = %assignment.project,
            resumed,
            "{}",
            if resumed { "resumed result from its checkpoint" } else { "started result" }
        );
        // Its compiled module may join the app cache.
        self.app_cache_to_trim = true;
        let control = TaskControl::new(self.gate.clone());
        self.running.insert(
            key,
            Running {
                control: control.clone(),
                app_digest: assignment.app_digest.clone(),
                resumed,
                fuel_before,
                fuel_counted: 0,
                seq: queued.seq,
                assignment,
                fate: None,
            },
        );
        let sandbox = self.sandbox.clone();
        let done_tx = self.done_tx.clone();
        self.pool.spawn(move || {
            // rayon aborts the process on a panic in a spawned job; a bug in
            // the sandbox must cost one result, not the worker.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| sandbox.run(&task, control))).ok();
            // The receiver is gone only when the worker has stopped: nothing to do.
            let _ = done_tx.send((key, outcome));
        });
        // Journalled once the core is busy: until then the task is
        // `received`, which a restart treats the same way.
        self.journal.start(&server, result_id, fuel_before, now_ms()).await?;
        Ok(())
    }

    /// Journals the tasks that came back from the pool: finished results with
    /// their reports (all in one durable transaction), interrupted tasks back
    /// to the queue with their checkpoint, unwanted ones forgotten. Starts
    /// nothing: the freed cores are refilled by the turn, afterwards.
    pub(super) async fn finish(&mut self, done: Vec<Done>) -> anyhow::Result<()> {
        let mut completed = Vec::with_capacity(done.len());
        for (key, outcome) in done {
            let Some(running) = self.running.remove(&key) else {
                continue;
            };
            // The usage the next choice sees includes what just finished.
            let segment_fuel = outcome.as_ref().map_or(0, |o| o.fuel_used);
            self.attachments[key.0].usage += segment_fuel.saturating_sub(running.fuel_counted) as f64;
            let server = self.attachments[key.0].server.clone();
            match running.fate {
                Some(Fate::Forget) => {
                    info!(server = %server, result_id = key.1, "aborted result");
                    self.journal.forget(&server, &[key.1]).await?;
                    self.remove_checkpoint(&server, key.1);
                    continue;
                }
                // Given back, unless it finished before it could stop.
                Some(Fate::GiveBack(why)) if outcome.as_ref().is_none_or(|o| o.status == TaskStatus::Aborted) => {
                    info!(server = %server, result_id = key.1, "gave back result");
                    completed.push(Completed::unrun(key.0, running.app_digest, given_back(key.1, why)));
                    continue;
                }
                Some(Fate::GiveBack(_)) | None => {}
            }
            let Some(outcome) = outcome else {
                error!(result_id = key.1, "sandbox panicked; the result is an error");
                let report = error_report(key.1, "the worker's sandbox failed (a bug in quorum-worker)".into());
                completed.push(Completed::unrun(key.0, running.app_digest, report));
                continue;
            };
            if outcome.status == TaskStatus::Aborted {
                // Interrupted at shutdown: back to the queue, keeping its checkpoint.
                let fuel = running.fuel_before.saturating_add(outcome.fuel_used);
                self.journal.interrupted(&server, key.1, fuel).await?;
                info!(server = %server, result_id = key.1, fuel_done = fuel, "interrupted result (kept to resume)");
                self.queue.insert(key, Queued { assignment: running.assignment, seq: running.seq, fuel_before: fuel });
                continue;
            }
            let segment = Some((outcome.fuel_used, outcome.run_time_ms));
            let whole = !running.resumed && matches!(outcome.status, TaskStatus::Success(_));
            let mut report = report(key.1, outcome);
            self.attach_outputs(&server, &mut report, &running.assignment).await;
            report.resumed = running.resumed;
            report.fuel_used = report.fuel_used.saturating_add(running.fuel_before);
            completed.push(Completed { index: key.0, app_digest: running.app_digest, report, segment, whole });
        }
        self.record_finished(completed).await
    }

    /// Journals finished results (one transaction, on disk before anything
    /// else happens), then queues their reports. A result that ran is logged
    /// as "finished result" only once journalled.
    pub(super) async fn record_finished(&mut self, completed: Vec<Completed>) -> anyhow::Result<()> {
        if completed.is_empty() {
            return Ok(());
        }
        // The app's averages, learnt in order; kept once the journal has them.
        let mut learnt: HashMap<&str, AppStats> = HashMap::new();
        let mut finished = Vec::with_capacity(completed.len());
        for task in &completed {
            let outcome = match task.report.outcome() {
                ReportedOutcome::Success => "success".to_string(),
                _ => format!("client error: {}", task.report.error_message),
            };
            let whole_fuel = task.whole.then_some(task.report.fuel_used);
            let digest = task.app_digest.as_str();
            let stats = task.segment.and_then(|(fuel, run_time_ms)| {
                let previous = learnt.get(digest).or_else(|| self.app_stats.get(digest)).copied();
                AppStats::learn(previous, fuel, run_time_ms, whole_fuel)
            });
            if let Some(stats) = stats {
                learnt.insert(digest, stats);
            }
            let server = self.attachments[task.index].server.as_str();
            finished.push(Finished { server, report: &task.report, app_digest: digest, stats, outcome });
        }
        self.journal.finish(&finished, now_ms()).await?;
        let learnt: Vec<(String, AppStats)> =
            learnt.into_iter().map(|(digest, stats)| (digest.to_string(), stats)).collect();
        drop(finished);
        self.app_stats.extend(learnt);
        for task in completed {
            if task.segment.is_some() {
                let (server, report) = (&self.attachments[task.index].server, &task.report);
                match report.outcome() {
                    ReportedOutcome::Success => info!(
                        server = %server,
                        result_id = report.result_id,
                        fuel_used = report.fuel_used,
                        run_time_ms = report.run_time_ms,
                        resumed = report.resumed,
                        "finished result"
                    ),
                    _ => info!(
                        server = %server,
                        result_id = report.result_id,
                        fuel_used = report.fuel_used,
                        error = %report.error_message,
                        "finished result (client error)"
                    ),
                }
            }
            let unreported = Unreported { report: task.report, app_digest: task.app_digest, since: Instant::now() };
            self.unreported[task.index].push(unreported);
        }
        Ok(())
    }

    /// Journals running tasks' progress and the coordinators' usage.
    pub(super) async fn save_progress(&mut self) -> anyhow::Result<()> {
        self.next_progress = Instant::now() + PROGRESS_EVERY;
        let now = now_ms();
        for (key, running) in &mut self.running {
            let used = running.control.fuel_used();
            self.attachments[key.0].usage += used.saturating_sub(running.fuel_counted) as f64;
            running.fuel_counted = running.fuel_counted.max(used);
        }
        for attachment in &mut self.attachments {
            attachment.usage = schedule::decay(attachment.usage, attachment.usage_at_ms, now);
            attachment.usage_at_ms = now;
        }
        let snapshots: Vec<(&str, i64, u64)> = self
            .running
            .iter()
            .map(|(key, r)| (self.attachments[key.0].server.as_str(), key.1, r.control.fuel_used()))
            .collect();
        self.journal.progress(&snapshots).await?;
        let usages: Vec<(&str, f64)> = self.attachments.iter().map(|a| (a.server.as_str(), a.usage)).collect();
        self.journal.save_usage(&usages, now).await?;
        Ok(())
    }

    pub(super) fn remove_checkpoint(&self, server: &str, result_id: i64) {
        if let Err(error) = self.state.remove_checkpoint_dir(server, result_id) {
            warn!(error = %error, result_id, "cannot delete a checkpoint directory");
        }
    }
}

/// The memory a task may take: its limit, or the sandbox's default.
fn reserved_memory(assignment: &Assignment) -> u64 {
    match assignment.limits.map_or(0, |limits| limits.memory_bytes) {
        0 => DEFAULT_MEMORY_BYTES,
        bytes => bytes,
    }
}
