//! The worker loop: one async task that owns all state, a rayon pool that
//! computes, and network calls spawned as tokio tasks (at most one in flight
//! per coordinator), so the cores never wait for the network.
//!
//! Each turn: take the tasks that came back from the pool and journal them
//! (finished results with their reports, in one durable transaction), then
//! start queued tasks on the free cores in the order `schedule` picks
//! (fetching apps first), then launch what each coordinator needs:
//! registration, a work request (when its queue is below the buffer's low
//! mark; it carries the finished reports too), a report on its own (when
//! results have waited a while and no request is due), an app download, or a
//! refresh of the host's credit. Then wait for the next event: shutdown
//! first, then a task done, a call answered, a timer, pause or resume. Calls
//! that fail wait a growing, jittered delay; the server's retry hints are
//! honoured; nothing is retried in a tight loop.
//!
//! Tasks start in one place, [`Worker::start_tasks`], called only by a turn,
//! after that turn's completions are journalled: a core takes its next task
//! only once what it computed is in the journal, and the journal never lists
//! more running tasks than there are cores. Before each start the loop looks
//! at the shutdown signal (and the pause); once shutdown is asked for no task
//! starts: [`Worker::stop`] gives running tasks the grace period to finish,
//! interrupts the rest (their checkpoint directories are kept and they go back
//! to the journal's queue, to resume at the next start) and journals each as
//! it stops.
//!
//! Everything the worker must not forget is in the journal before it acts:
//! a task is journalled when received, its report when finished (before the
//! "finished result" line is logged), and it is marked reported once the
//! coordinator accepted it. On start, the journal's pending tasks come back:
//! finished ones are reported, others queued again (resuming from their
//! checkpoint directory when the app left one there).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use quorum_proto::v1::{
    Assignment, HostInfo, RegisterHostRequest, RegisterHostResponse, ReportedOutcome, ResultReport,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::{Code, Status};
use tracing::{debug, error, info, warn};

use crate::client::{Backoff, Client, DownloadError, Reported, is_bad_request};
use crate::journal::{AppStats, Finished, HostRecord, Identity, Journal, TaskState};
use crate::sandbox::{ENGINE, Gate, Limits, Outcome, Sandbox, Status as TaskStatus, Task, TaskControl};
use crate::schedule::{self, Buffer, Candidate, Choice};
use crate::signing;
use crate::state::{self, StateDir};
use crate::{Command, Config};

/// How long running tasks may go on after shutdown is asked for (a task that
/// finishes meanwhile is journalled and reported); then how long the last
/// calls may take.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long tasks interrupted at the end of the grace period have to stop and
/// be journalled (the sandbox notices an abort within an epoch tick, 10 ms).
const INTERRUPT_GRACE: Duration = Duration::from_secs(1);
/// Longest a registration call may take (it is not abandoned at shutdown).
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// Most results sent in one call.
const MAX_REPORT_BATCH: usize = 1000;
/// Bytes of output a call may carry before the rest waits for the next one
/// (tonic servers refuse messages over 4 MiB by default). A single larger
/// result still goes alone.
const MAX_REPORT_BATCH_BYTES: usize = 3 * 1024 * 1024;
/// A finished result waits at most this long for a work request to carry it
/// before it is reported on its own.
const REPORT_DELAY: Duration = Duration::from_secs(1);
/// This many waiting results are reported at once.
const REPORT_BATCH_TRIGGER: usize = 64;
/// When a coordinator gave fewer tasks than asked and no hint: wait this long.
const PARTIAL_WORK_RETRY: Duration = Duration::from_secs(1);
/// How often running tasks' progress and the usage are journalled.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How often the host's credit is refreshed (after reports) at most...
const HOST_RECORD_EVERY: Duration = Duration::from_secs(10);
/// ...and how long after a report (validation may follow the report).
const HOST_RECORD_DELAY: Duration = Duration::from_secs(2);

/// A coordinator and a result id: tasks of different coordinators may share ids.
type Key = (usize, i64);

/// A task's outcome from the pool; `None` if the sandbox panicked.
type Done = (Key, Option<Outcome>);

pub(crate) struct Worker {
    config: Config,
    state: StateDir,
    journal: Journal,
    sandbox: Arc<Sandbox>,
    pool: rayon::ThreadPool,
    gate: Arc<Gate>,
    paused: bool,
    attachments: Vec<Attachment>,
    queue: HashMap<Key, Queued>,
    running: HashMap<Key, Running>,
    /// Finished results not yet accepted, per coordinator, oldest first.
    unreported: Vec<Vec<Unreported>>,
    /// App modules already fetched and verified, by digest.
    apps: HashMap<String, Arc<[u8]>>,
    /// Apps the worker knows it cannot get: why, by digest.
    unusable_apps: HashMap<String, String>,
    app_stats: HashMap<String, AppStats>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    calls_tx: mpsc::UnboundedSender<(usize, Answer)>,
    calls_rx: mpsc::UnboundedReceiver<(usize, Answer)>,
    next_progress: Instant,
}

/// One coordinator this worker is attached to.
struct Attachment {
    server: String,
    share: f64,
    client: Client,
    identity: Option<Identity>,
    buffer: Buffer,
    /// A call is in flight.
    busy: bool,
    register_retry: Retry,
    request_retry: Retry,
    report_retry: Retry,
    download_retry: Retry,
    /// RequestWork refused its reports once: report them on their own first.
    report_separately: bool,
    /// Fuel spent on this coordinator's tasks (decayed).
    usage: f64,
    usage_at_ms: i64,
    host_record_due: Option<Instant>,
    /// When the host's record was last asked for.
    host_record_asked: Option<Instant>,
}

struct Queued {
    assignment: Assignment,
    seq: i64,
    /// Fuel of earlier segments (counts only if the checkpoint is there).
    fuel_before: u64,
}

struct Running {
    control: Arc<TaskControl>,
    app_digest: String,
    /// The task resumed from a checkpoint: `fuel_before` counts.
    resumed: bool,
    fuel_before: u64,
    /// Fuel of this segment already added to the coordinator's usage.
    fuel_counted: u64,
    seq: i64,
    assignment: Assignment,
    /// The coordinator no longer wants it: forget it when it stops.
    unwanted: bool,
}

struct Unreported {
    report: ResultReport,
    since: Instant,
}

/// A result whose report is ready, to journal.
struct Completed {
    /// Its coordinator.
    index: usize,
    app_digest: String,
    report: ResultReport,
    /// Fuel and run time of the segment that just ran; `None` for a result
    /// that did not run (abandoned, refused, its app unobtainable).
    segment: Option<(u64, u64)>,
    /// The segment was the whole task and succeeded: it teaches the fuel per task.
    whole: bool,
}

impl Completed {
    /// A result reported without running (or without a usable run).
    fn unrun(index: usize, app_digest: String, report: ResultReport) -> Completed {
        Completed { index, app_digest, report, segment: None, whole: false }
    }
}

/// The answer to a spawned call.
enum Answer {
    Registered(Result<RegisterHostResponse, Status>),
    Work { asked: u32, sent: Vec<i64>, result: Result<quorum_proto::v1::RequestWorkResponse, Status> },
    Reported { sent: Vec<i64>, result: Result<Reported, Status> },
    Downloaded { digest: String, result: Result<Vec<u8>, DownloadError> },
    Host(Result<HostInfo, Status>),
}

/// When a kind of call may next be made, and the backoff that sets it.
struct Retry {
    backoff: Backoff,
    not_before: Instant,
}

impl Retry {
    fn new(max: Duration) -> Self {
        Retry { backoff: Backoff::new(max), not_before: Instant::now() }
    }

    fn due(&self) -> bool {
        Instant::now() >= self.not_before
    }

    fn succeeded(&mut self) {
        self.backoff.reset();
        self.not_before = Instant::now();
    }

    /// The call failed: wait a growing, jittered delay; returns it.
    fn failed(&mut self) -> Duration {
        let delay = self.backoff.next_delay();
        self.not_before = Instant::now() + delay;
        delay
    }

    fn wait(&mut self, delay: Duration) {
        self.not_before = Instant::now() + delay;
    }
}

/// The shutdown future, pollable again after it completed.
struct Shutdown<F> {
    signal: Option<Pin<Box<F>>>,
}

impl<F: Future<Output = ()>> Shutdown<F> {
    fn new(signal: F) -> Self {
        Shutdown { signal: Some(Box::pin(signal)) }
    }

    async fn wait(&mut self) {
        if let Some(signal) = &mut self.signal {
            signal.as_mut().await;
            self.signal = None;
        }
    }

    /// Whether shutdown was asked for, without waiting (polls the signal once).
    async fn requested(&mut self) -> bool {
        if let Some(signal) = &mut self.signal
            && std::future::poll_fn(|cx| Poll::Ready(signal.as_mut().poll(cx).is_ready())).await
        {
            self.signal = None;
        }
        self.signal.is_none()
    }
}

impl Worker {
    pub(crate) async fn new(config: Config, state: StateDir, sandbox: Sandbox) -> anyhow::Result<Worker> {
        let journal = Journal::open(&state.journal_path())
            .await
            .with_context(|| format!("cannot open the journal {}", state.journal_path().display()))?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.cpus)
            .thread_name(|index| format!("quorum-task-{index}"))
            .start_handler({
                let priority = config.task_priority;
                move |_| crate::priority::apply_to_this_thread(priority)
            })
            .build()
            .context("cannot start the task thread pool")?;
        let gate = Gate::new();
        gate.set_cpu_limit(config.cpu_limit);
        let total_share: f64 = config.attachments.iter().map(|a| a.share).sum();
        let now = now_ms();
        let mut attachments = Vec::with_capacity(config.attachments.len());
        for attach in &config.attachments {
            journal.attach(&attach.server, attach.share).await?;
            let identity = journal.identity(&attach.server).await?;
            let mut client = Client::new(&attach.server, config.ca_cert.as_deref())?;
            if let Some(identity) = &identity {
                client.set_token(&identity.token)?;
            }
            let (usage, usage_at_ms) = journal.usage(&attach.server).await?;
            let max = config.max_backoff;
            attachments.push(Attachment {
                server: attach.server.clone(),
                share: attach.share,
                client,
                identity,
                buffer: Buffer::split(config.buffer_low, config.buffer_high, attach.share, total_share),
                busy: false,
                register_retry: Retry::new(max),
                request_retry: Retry::new(max),
                report_retry: Retry::new(max),
                download_retry: Retry::new(max),
                report_separately: false,
                usage: schedule::decay(usage, usage_at_ms, now),
                usage_at_ms: now,
                host_record_due: None,
                host_record_asked: None,
            });
        }
        // A coordinator attached for the first time starts level with the others.
        let levels: Vec<(f64, f64)> =
            attachments.iter().filter(|a| a.usage > 0.0).map(|a| (a.usage, a.share)).collect();
        for attachment in attachments.iter_mut().filter(|a| a.usage == 0.0) {
            attachment.usage = schedule::initial_usage(attachment.share, &levels);
        }
        let app_stats = journal.app_stats().await?.into_iter().collect();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (calls_tx, calls_rx) = mpsc::unbounded_channel();
        let n = attachments.len();
        Ok(Worker {
            config,
            state,
            journal,
            sandbox: Arc::new(sandbox),
            pool,
            gate,
            paused: false,
            attachments,
            queue: HashMap::new(),
            running: HashMap::new(),
            unreported: (0..n).map(|_| Vec::new()).collect(),
            apps: HashMap::new(),
            unusable_apps: HashMap::new(),
            app_stats,
            done_tx,
            done_rx,
            calls_tx,
            calls_rx,
            next_progress: Instant::now() + PROGRESS_EVERY,
        })
    }

    pub(crate) async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> anyhow::Result<()> {
        let mut shutdown = Shutdown::new(shutdown);
        self.journal.set_setting("pid", &std::process::id().to_string()).await?;
        self.journal.set_setting("cpus", &self.config.cpus.to_string()).await?;
        self.journal.set_setting("cpu_limit", &self.config.cpu_limit.to_string()).await?;
        if self.journal.setting("paused").await?.as_deref() == Some("1") {
            self.set_paused(true).await;
        }
        for (server, result_id) in self.journal.collect_garbage(now_ms()).await? {
            self.remove_checkpoint(&server, result_id);
        }
        self.recover().await?;
        info!(
            cpus = self.config.cpus,
            cpu_limit = self.config.cpu_limit,
            servers = %self.attachments.iter().map(|a| a.server.as_str()).collect::<Vec<_>>().join(" "),
            "worker started"
        );
        loop {
            self.turn(&mut shutdown).await?;
            let wake = self.next_wake();
            tokio::select! {
                // Shutdown first: once asked for, no other event is handled here.
                biased;
                _ = shutdown.wait() => break,
                Some(done) = self.done_rx.recv() => self.finish(vec![done]).await?,
                Some((attachment, answer)) = self.calls_rx.recv() => self.answered(attachment, answer).await?,
                Some(command) = commands.recv() => match command {
                    Command::Pause => self.set_paused(true).await,
                    Command::Resume => self.set_paused(false).await,
                },
                _ = sleep_until(wake) => {}
            }
        }
        self.stop().await;
        Ok(())
    }

    /// Brings back what the journal holds for each coordinator.
    async fn recover(&mut self) -> anyhow::Result<()> {
        for index in 0..self.attachments.len() {
            let server = self.attachments[index].server.clone();
            let pending = self.journal.pending(&server).await?;
            let (mut queued, mut finished) = (0, 0);
            for task in pending {
                let key = (index, task.assignment.result_id);
                match (task.state, task.report) {
                    (TaskState::Finished, Some(report)) => {
                        finished += 1;
                        self.unreported[index].push(Unreported { report, since: Instant::now() });
                    }
                    (state, _) => {
                        queued += 1;
                        let fuel_before = task.fuel_before;
                        if state == TaskState::Running {
                            // Cut off by a crash: queued again, like a task
                            // interrupted at shutdown (the journal's running
                            // tasks are those holding a core).
                            self.journal.interrupted(&server, key.1, fuel_before).await?;
                        }
                        self.queue.insert(key, Queued { assignment: task.assignment, seq: task.seq, fuel_before });
                    }
                }
            }
            if queued + finished > 0 {
                info!(server, queued, finished, "recovered tasks from the journal");
            }
        }
        Ok(())
    }

    /// Everything that can be done now without waiting. Completions are
    /// journalled before any task starts, so a freed core is refilled only
    /// once its result is in the journal.
    async fn turn<F: Future<Output = ()>>(&mut self, shutdown: &mut Shutdown<F>) -> anyhow::Result<()> {
        let mut done = Vec::new();
        while let Ok(item) = self.done_rx.try_recv() {
            done.push(item);
        }
        self.finish(done).await?;
        self.start_tasks(shutdown).await?;
        if shutdown.requested().await {
            // What is left is `stop`'s.
            return Ok(());
        }
        if Instant::now() >= self.next_progress {
            self.save_progress().await?;
        }
        for index in 0..self.attachments.len() {
            if !self.attachments[index].busy {
                self.launch_call(index).await;
            }
        }
        Ok(())
    }

    // ---- computing -----------------------------------------------------------

    /// Starts queued tasks on free cores, in the order `schedule` picks; the
    /// only place a task starts. Each start first checks that the worker is
    /// neither paused nor asked to shut down.
    async fn start_tasks<F: Future<Output = ()>>(&mut self, shutdown: &mut Shutdown<F>) -> anyhow::Result<()> {
        while self.running.len() < self.config.cpus && !self.paused && !shutdown.requested().await {
            let now = now_ms();
            let keys: Vec<Key> = self.ready_keys().await;
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
                    let report = error_report(key.1, message);
                    self.record_finished(vec![Completed::unrun(key.0, queued.assignment.app_digest, report)]).await?;
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Queued tasks whose app is in memory (loading cached apps from disk,
    /// and turning tasks whose app cannot be had into error reports).
    async fn ready_keys(&mut self) -> Vec<Key> {
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
        self.queue
            .iter()
            .filter(|(_, q)| self.apps.contains_key(&q.assignment.app_digest))
            .map(|(key, _)| *key)
            .collect()
    }

    /// Estimated run time left for a task of `app_digest`.
    fn estimate(&self, app_digest: &str, fuel_done: u64) -> Option<u64> {
        let stats = self.app_stats.get(app_digest)?;
        let per_task = (stats.fuel_per_task > 0.0).then_some(stats.fuel_per_task);
        schedule::estimate_ms(per_task, Some(stats.fuel_per_second), fuel_done, self.gate.cpu_limit())
    }

    /// A coordinator's usage including what its running tasks did so far.
    fn current_usage(&self, index: usize) -> f64 {
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
    async fn check_signature(
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
    async fn spawn(&mut self, key: Key) -> anyhow::Result<()> {
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
        let (dir_server, result_id) = (server.clone(), key.1);
        let prepared = tokio::task::spawn_blocking(move || state.prepare_checkpoint_dir(&dir_server, result_id))
            .await
            .context("checkpoint directory preparation panicked")?;
        let (checkpoint_dir, resumed): (Option<PathBuf>, bool) = match prepared {
            Ok((dir, resumed)) => (Some(dir), resumed),
            Err(error) => {
                // The task can still run, without a place to checkpoint.
                warn!(error = %error, result_id, "cannot prepare the checkpoint directory");
                (None, false)
            }
        };
        let fuel_before = if resumed { queued.fuel_before } else { 0 };
        let limits = assignment.limits.unwrap_or_default();
        let task = Task {
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
                unwanted: false,
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
    async fn finish(&mut self, done: Vec<Done>) -> anyhow::Result<()> {
        let mut completed = Vec::with_capacity(done.len());
        for (key, outcome) in done {
            let Some(running) = self.running.remove(&key) else {
                continue;
            };
            // The usage the next choice sees includes what just finished.
            let segment_fuel = outcome.as_ref().map_or(0, |o| o.fuel_used);
            self.attachments[key.0].usage += segment_fuel.saturating_sub(running.fuel_counted) as f64;
            let server = self.attachments[key.0].server.clone();
            if running.unwanted {
                info!(server = %server, result_id = key.1, "aborted result");
                self.journal.forget(&server, &[key.1]).await?;
                self.remove_checkpoint(&server, key.1);
                continue;
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
            report.resumed = running.resumed;
            report.fuel_used = report.fuel_used.saturating_add(running.fuel_before);
            completed.push(Completed { index: key.0, app_digest: running.app_digest, report, segment, whole });
        }
        self.record_finished(completed).await
    }

    /// Journals finished results (one transaction, on disk before anything
    /// else happens), then queues their reports. A result that ran is logged
    /// as "finished result" only once journalled.
    async fn record_finished(&mut self, completed: Vec<Completed>) -> anyhow::Result<()> {
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
            self.unreported[task.index].push(Unreported { report: task.report, since: Instant::now() });
        }
        Ok(())
    }

    /// Journals running tasks' progress and the coordinators' usage.
    async fn save_progress(&mut self) -> anyhow::Result<()> {
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

    async fn set_paused(&mut self, paused: bool) {
        if paused == self.paused {
            return;
        }
        self.paused = paused;
        if paused {
            self.gate.pause();
            info!("paused: tasks stop computing until resumed");
        } else {
            self.gate.resume();
            info!("resumed");
        }
        if let Err(error) = self.journal.set_setting("paused", if paused { "1" } else { "0" }).await {
            warn!(error = %error, "cannot journal the pause setting");
        }
    }

    fn remove_checkpoint(&self, server: &str, result_id: i64) {
        if let Err(error) = self.state.remove_checkpoint_dir(server, result_id) {
            warn!(error = %error, result_id, "cannot delete a checkpoint directory");
        }
    }

    // ---- talking to coordinators --------------------------------------------

    /// Tasks of coordinator `index` queued, not started.
    fn queued(&self, index: usize) -> usize {
        self.queue.keys().filter(|key| key.0 == index).count()
    }

    /// Every result coordinator `index` gave this worker and has not accepted back.
    fn held(&self, index: usize) -> Vec<i64> {
        let queued = self.queue.keys().chain(self.running.keys()).filter(|key| key.0 == index).map(|key| key.1);
        queued.chain(self.unreported[index].iter().map(|u| u.report.result_id)).collect()
    }

    /// The oldest waiting reports of coordinator `index` that fit in one call.
    fn report_batch(&self, index: usize) -> Vec<ResultReport> {
        let mut bytes = 0;
        let reports: Vec<ResultReport> = self.unreported[index]
            .iter()
            .take(MAX_REPORT_BATCH)
            .take_while(|u| {
                bytes += u.report.output.len() + u.report.stderr_tail.len();
                bytes <= MAX_REPORT_BATCH_BYTES
            })
            .map(|u| u.report.clone())
            .collect();
        if reports.is_empty() {
            self.unreported[index].iter().take(1).map(|u| u.report.clone()).collect()
        } else {
            reports
        }
    }

    fn wants_work(&self, index: usize) -> usize {
        if self.paused {
            return 0;
        }
        self.attachments[index].buffer.wanted(self.queued(index))
    }

    fn report_due(&self, index: usize) -> bool {
        let waiting = &self.unreported[index];
        let Some(oldest) = waiting.first() else {
            return false;
        };
        let idle = !self.queue.keys().chain(self.running.keys()).any(|key| key.0 == index);
        idle || waiting.len() >= REPORT_BATCH_TRIGGER || oldest.since.elapsed() >= REPORT_DELAY
    }

    /// A digest some queued task of coordinator `index` needs and lacks.
    fn missing_app(&self, index: usize) -> Option<String> {
        self.queue
            .iter()
            .filter(|(key, _)| key.0 == index)
            .map(|(_, q)| &q.assignment.app_digest)
            .find(|digest| !self.apps.contains_key(*digest) && !self.unusable_apps.contains_key(*digest))
            .cloned()
    }

    /// Starts the call coordinator `index` needs most, if any is due.
    async fn launch_call(&mut self, index: usize) {
        let attachment = &self.attachments[index];
        let mut client = attachment.client.clone();
        let calls = self.calls_tx.clone();
        let send = move |answer: Answer| {
            // The receiver is gone only when the worker has stopped.
            let _ = calls.send((index, answer));
        };
        if attachment.identity.is_none() {
            if !attachment.register_retry.due() {
                return;
            }
            let request = RegisterHostRequest {
                name: self.config.name.clone(),
                n_cpus: u32::try_from(self.config.cpus).unwrap_or(u32::MAX),
                memory_bytes: total_memory_bytes(),
                engine: ENGINE.to_string(),
                os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
                account: self.config.account.clone(),
            };
            self.attachments[index].busy = true;
            tokio::spawn(async move {
                let result = match tokio::time::timeout(REGISTER_TIMEOUT, client.register(request)).await {
                    Ok(result) => result,
                    Err(_) => Err(Status::deadline_exceeded("registration took too long")),
                };
                send(Answer::Registered(result));
            });
            return;
        }
        if attachment.download_retry.due()
            && let Some(digest) = self.missing_app(index)
        {
            self.attachments[index].busy = true;
            tokio::spawn(async move {
                let result = client.download_app(&digest).await;
                send(Answer::Downloaded { digest, result });
            });
            return;
        }
        let wanted = self.wants_work(index);
        let report_due = self.report_due(index) && attachment.report_retry.due();
        if report_due && (attachment.report_separately || wanted == 0 || !attachment.request_retry.due()) {
            let reports = self.report_batch(index);
            let sent = reports.iter().map(|r| r.result_id).collect();
            self.attachments[index].busy = true;
            tokio::spawn(async move {
                let result = client.report_results(&reports).await;
                send(Answer::Reported { sent, result });
            });
            return;
        }
        if wanted > 0 && attachment.request_retry.due() {
            let reports = if attachment.report_separately { Vec::new() } else { self.report_batch(index) };
            let sent: Vec<i64> = reports.iter().map(|r| r.result_id).collect();
            let held = self.held(index);
            let asked = u32::try_from(wanted).unwrap_or(u32::MAX);
            self.attachments[index].busy = true;
            tokio::spawn(async move {
                let result = client.request_work(asked, held, reports).await;
                send(Answer::Work { asked, sent, result });
            });
            return;
        }
        if attachment.host_record_due.is_some_and(|due| Instant::now() >= due) {
            self.attachments[index].host_record_due = None;
            self.attachments[index].host_record_asked = Some(Instant::now());
            self.attachments[index].busy = true;
            tokio::spawn(async move {
                send(Answer::Host(client.get_host().await));
            });
        }
    }

    /// Handles the answer to a call of coordinator `index`.
    async fn answered(&mut self, index: usize, answer: Answer) -> anyhow::Result<()> {
        self.attachments[index].busy = false;
        let server = self.attachments[index].server.clone();
        match answer {
            Answer::Registered(Ok(response)) => {
                let identity = Identity { server: server.clone(), host_id: response.host_id, token: response.token };
                match self.attachments[index].client.set_token(&identity.token) {
                    Ok(()) => {
                        info!(server = %server, host_id = identity.host_id, "registered");
                        // A new identity holds nothing: what the journal kept for
                        // this coordinator was given to a host it no longer knows
                        // (e.g. a coordinator started again on a fresh database,
                        // whose result ids start again from 1).
                        self.drop_tasks(index).await?;
                        self.journal.save_identity(&identity).await?;
                        self.attachments[index].identity = Some(identity);
                        self.attachments[index].register_retry.succeeded();
                    }
                    Err(error) => {
                        let delay = self.attachments[index].register_retry.failed();
                        warn!(server = %server, error = %error, retry_in = ?delay, "cannot register");
                    }
                }
            }
            Answer::Registered(Err(status)) => {
                let delay = self.attachments[index].register_retry.failed();
                warn!(server = %server, error = %describe(&status), retry_in = ?delay, "cannot register");
            }
            Answer::Work { asked, sent, result } => match result {
                Ok(response) => {
                    self.settle(index, &response.accepted, &[], &response.abort, &sent).await?;
                    let n = response.assignments.len();
                    let new = self.journal.receive(&server, response.assignments, now_ms()).await?;
                    for (assignment, seq) in new {
                        let key = (index, assignment.result_id);
                        if self.running.contains_key(&key) {
                            continue;
                        }
                        self.queue.insert(key, Queued { assignment, seq, fuel_before: 0 });
                    }
                    let attachment = &mut self.attachments[index];
                    if n > 0 {
                        info!(server = %server, n, "got {n} results");
                    }
                    if (n as u32) < asked {
                        let delay = if response.retry_after_ms > 0 {
                            attachment.request_retry.backoff.retry_after(response.retry_after_ms)
                        } else {
                            PARTIAL_WORK_RETRY.min(self.config.max_backoff)
                        };
                        attachment.request_retry.backoff.reset();
                        attachment.request_retry.wait(delay);
                        debug!(server = %server, retry_in = ?delay, "not as much work as asked");
                    } else {
                        attachment.request_retry.succeeded();
                    }
                }
                Err(status) => self.call_failed(index, "request work", &status, !sent.is_empty()),
            },
            Answer::Reported { sent, result } => match result {
                Ok(reported) => {
                    self.settle(index, &reported.accepted, &reported.rejected, &reported.abort, &sent).await?;
                    let attachment = &mut self.attachments[index];
                    attachment.report_separately = false;
                    let sent: HashSet<i64> = sent.into_iter().collect();
                    if self.unreported[index].iter().any(|u| sent.contains(&u.report.result_id)) {
                        let delay = self.attachments[index].report_retry.failed();
                        warn!(server = %server, retry_in = ?delay, "some results not accepted yet");
                    } else {
                        self.attachments[index].report_retry.succeeded();
                    }
                }
                Err(status) => self.call_failed(index, "report results", &status, false),
            },
            Answer::Downloaded { digest, result } => match result {
                Ok(bytes) => {
                    self.attachments[index].download_retry.succeeded();
                    info!(server = %server, digest, size = bytes.len(), "downloaded app");
                    let module: Arc<[u8]> = bytes.into();
                    self.apps.insert(digest.clone(), module.clone());
                    let state = self.state.clone();
                    match tokio::task::spawn_blocking(move || state.write_app(&digest, &module)).await {
                        Ok(Ok(())) => {}
                        // Not fatal: the module stays in memory for this run.
                        Ok(Err(error)) => warn!(error = %error, "cannot cache app on disk"),
                        Err(error) => warn!(error = %error, "app cache writer panicked"),
                    }
                }
                Err(DownloadError::Status(status)) if status.code() == Code::Unauthenticated => {
                    self.forget_identity(index);
                }
                Err(error) if error.is_transient() => {
                    let delay = self.attachments[index].download_retry.failed();
                    warn!(server = %server, digest, error = %error, retry_in = ?delay, "cannot download app");
                }
                Err(error) => {
                    self.unusable_apps.insert(digest, format!("cannot download app: {error}"));
                }
            },
            Answer::Host(Ok(host)) => {
                let record = HostRecord {
                    total_credit: host.total_credit,
                    n_valid: host.n_valid,
                    n_invalid: host.n_invalid,
                    n_error: host.n_error,
                };
                self.journal.save_host_record(&server, record).await?;
            }
            Answer::Host(Err(status)) => {
                debug!(server = %server, error = %describe(&status), "cannot refresh the host's record");
            }
        }
        Ok(())
    }

    /// A call failed: re-register, fall back to separate reports, or back off.
    fn call_failed(&mut self, index: usize, what: &str, status: &Status, carried_reports: bool) {
        let attachment = &mut self.attachments[index];
        if status.code() == Code::Unauthenticated {
            self.forget_identity(index);
            return;
        }
        if carried_reports && is_bad_request(status.code()) {
            // A report was refused: sort them out with ReportResults, which
            // falls back to one report per call.
            warn!(server = %attachment.server, error = %describe(status), "reports refused with the work request, reporting them apart");
            attachment.report_separately = true;
            return;
        }
        let retry = if what == "report results" { &mut attachment.report_retry } else { &mut attachment.request_retry };
        let delay = match retry_after(status) {
            // Over the coordinator's rate limit: wait as long as it says (up to the cap).
            Some(ms) => {
                let delay = retry.backoff.retry_after(ms);
                retry.wait(delay);
                delay
            }
            None => retry.failed(),
        };
        warn!(server = %attachment.server, error = %describe(status), retry_in = ?delay, "cannot {what}");
    }

    /// The coordinator no longer knows our token: register again.
    fn forget_identity(&mut self, index: usize) {
        let attachment = &mut self.attachments[index];
        warn!(server = %attachment.server, "token rejected (unauthenticated), registering again");
        attachment.identity = None;
    }

    /// Forgets every task of coordinator `index`: queued, running (aborted),
    /// unreported, and the journal's history of them.
    async fn drop_tasks(&mut self, index: usize) -> anyhow::Result<()> {
        let server = self.attachments[index].server.clone();
        self.queue.retain(|key, _| key.0 != index);
        for (key, running) in self.running.iter_mut().filter(|(key, _)| key.0 == index) {
            debug!(result_id = key.1, "aborting a task of a previous registration");
            running.unwanted = true;
            running.control.abort();
        }
        self.unreported[index].clear();
        let dropped = self.journal.forget_server(&server).await?;
        if !dropped.is_empty() {
            warn!(server = %server, n = dropped.len(), "dropped tasks of a previous registration");
        }
        for result_id in dropped {
            self.remove_checkpoint(&server, result_id);
        }
        Ok(())
    }

    /// Applies a coordinator's verdict on reports, and its abort list.
    async fn settle(
        &mut self,
        index: usize,
        accepted: &[i64],
        rejected: &[(i64, Status)],
        abort: &[i64],
        sent: &[i64],
    ) -> anyhow::Result<()> {
        let server = self.attachments[index].server.clone();
        let sent: HashSet<i64> = sent.iter().copied().collect();
        let accepted: Vec<i64> = accepted.iter().copied().filter(|id| sent.contains(id)).collect();
        if !accepted.is_empty() {
            self.journal.reported(&server, &accepted).await?;
            info!(server = %server, n = accepted.len(), "reported {} results", accepted.len());
            let attachment = &mut self.attachments[index];
            if attachment.host_record_due.is_none() {
                let soon = Instant::now() + HOST_RECORD_DELAY;
                let allowed = attachment.host_record_asked.map_or(soon, |asked| asked + HOST_RECORD_EVERY);
                attachment.host_record_due = Some(soon.max(allowed));
            }
        }
        for (result_id, status) in rejected {
            warn!(server = %server, result_id, error = %describe(status), "report rejected, dropping it");
        }
        let rejected: Vec<i64> = rejected.iter().map(|(id, _)| *id).collect();
        self.journal.forget(&server, &rejected).await?;
        let settled: HashSet<i64> = accepted.iter().chain(&rejected).copied().collect();
        self.unreported[index].retain(|u| !settled.contains(&u.report.result_id));
        for result_id in settled {
            self.remove_checkpoint(&server, result_id);
        }
        self.abort(index, abort).await
    }

    /// Drops queued and unreported copies of `result_ids` and interrupts running ones.
    async fn abort(&mut self, index: usize, result_ids: &[i64]) -> anyhow::Result<()> {
        if result_ids.is_empty() {
            return Ok(());
        }
        let server = self.attachments[index].server.clone();
        let mut forget = Vec::new();
        for result_id in result_ids {
            let key = (index, *result_id);
            if let Some(running) = self.running.get_mut(&key) {
                running.unwanted = true;
                running.control.abort();
            } else {
                self.queue.remove(&key);
                forget.push(*result_id);
            }
        }
        let aborted: HashSet<i64> = result_ids.iter().copied().collect();
        self.unreported[index].retain(|u| !aborted.contains(&u.report.result_id));
        self.journal.forget(&server, &forget).await?;
        for result_id in &forget {
            self.remove_checkpoint(&server, *result_id);
        }
        info!(server = %server, n = result_ids.len(), "aborting {} results", result_ids.len());
        Ok(())
    }

    /// Journals running tasks as they come back from the pool, until none is
    /// left or `deadline` passes.
    async fn collect_tasks(&mut self, deadline: Instant) {
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, self.done_rx.recv()).await {
                Ok(Some(done)) => {
                    if let Err(error) = self.finish(vec![done]).await {
                        error!(error = %error, "cannot journal a task at shutdown");
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// The earliest time something becomes due, if any.
    fn next_wake(&self) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        let mut consider = |when: Instant| wake = Some(wake.map_or(when, |wake| wake.min(when)));
        if !self.running.is_empty() {
            consider(self.next_progress);
        }
        for (index, attachment) in self.attachments.iter().enumerate() {
            if attachment.busy {
                continue;
            }
            if attachment.identity.is_none() {
                consider(attachment.register_retry.not_before);
                continue;
            }
            if let Some(oldest) = self.unreported[index].first() {
                consider((oldest.since + REPORT_DELAY).max(attachment.report_retry.not_before));
            }
            if self.wants_work(index) > 0 {
                consider(attachment.request_retry.not_before);
            }
            if self.missing_app(index).is_some() {
                consider(attachment.download_retry.not_before);
            }
            if let Some(due) = attachment.host_record_due {
                consider(due);
            }
        }
        wake
    }

    /// Shutdown. No task starts from here on (nothing below calls
    /// `start_tasks`). Running tasks get the grace period to finish (unless
    /// the worker is paused: they are not computing); those still running
    /// then are interrupted: their checkpoint directories stay and they go
    /// back to the journal's queue, to resume at the next start. Each task is
    /// journalled as it comes back. Then wait briefly for calls in flight (a
    /// registration must not be lost), and try once to report what finished.
    async fn stop(mut self) {
        info!(running = self.running.len(), queued = self.queue.len(), "shutting down");
        if !self.paused {
            self.collect_tasks(Instant::now() + SHUTDOWN_GRACE).await;
        }
        if !self.running.is_empty() {
            info!(n = self.running.len(), "interrupting {} running tasks", self.running.len());
            // A paused task sees its abort at once: the gate stays as it is.
            for running in self.running.values() {
                running.control.abort();
            }
            self.collect_tasks(Instant::now() + INTERRUPT_GRACE).await;
        }
        if !self.running.is_empty() {
            warn!(
                n = self.running.len(),
                "tasks did not stop in time; they resume from their last progress at the next start"
            );
        }
        let deadline = Instant::now() + REGISTER_TIMEOUT.max(SHUTDOWN_GRACE);
        while self.attachments.iter().any(|a| a.busy) {
            match tokio::time::timeout_at(deadline, self.calls_rx.recv()).await {
                Ok(Some((index, answer))) => {
                    if let Err(error) = self.answered(index, answer).await {
                        error!(error = %error, "cannot journal an answer at shutdown");
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        for index in 0..self.attachments.len() {
            if self.unreported[index].is_empty() || self.attachments[index].identity.is_none() {
                continue;
            }
            let reports = self.report_batch(index);
            let sent: Vec<i64> = reports.iter().map(|r| r.result_id).collect();
            let mut client = self.attachments[index].client.clone();
            match tokio::time::timeout(SHUTDOWN_GRACE, client.report_results(&reports)).await {
                Ok(Ok(reported)) => {
                    if let Err(error) =
                        self.settle(index, &reported.accepted, &reported.rejected, &reported.abort, &sent).await
                    {
                        error!(error = %error, "cannot journal reports at shutdown");
                    }
                }
                Ok(Err(status)) => warn!(error = %describe(&status), "cannot report results at shutdown"),
                Err(_) => warn!("reporting at shutdown timed out"),
            }
        }
        let left: usize = self.unreported.iter().map(Vec::len).sum();
        if left > 0 {
            info!(n = left, "exiting with unreported results (kept in the journal)");
        }
        if let Err(error) = self.journal.set_setting("pid", "0").await {
            warn!(error = %error, "cannot clear the pid in the journal");
        }
        self.journal.close().await;
    }
}

/// The wait a rate-limited answer asks for, in milliseconds.
fn retry_after(status: &Status) -> Option<u64> {
    if status.code() != Code::ResourceExhausted {
        return None;
    }
    status.metadata().get(quorum_proto::RETRY_AFTER_MS)?.to_str().ok()?.parse().ok()
}

/// A status in one short line: its code and message, without transport internals.
/// A failed call for the log: its code, message and causes (e.g. why a TLS
/// handshake failed).
fn describe(status: &Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        let part = error.to_string();
        if !text.ends_with(&part) {
            text += ": ";
            text += &part;
        }
        cause = error.source();
    }
    text
}

/// Sleeps until `wake`, or forever when there is nothing to wake for.
async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(wake) => tokio::time::sleep_until(wake).await,
        None => std::future::pending().await,
    }
}

/// The task's deadline; an assignment without one (0) never expires here.
fn deadline_ms(assignment: &Assignment) -> i64 {
    if assignment.deadline_unix_ms > 0 { assignment.deadline_unix_ms } else { i64::MAX }
}

/// Milliseconds since the Unix epoch (deadlines are in this unit).
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The report of a finished (not aborted) task.
fn report(result_id: i64, outcome: Outcome) -> ResultReport {
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
    }
}

/// A client error for a result that did not run.
fn error_report(result_id: i64, message: String) -> ResultReport {
    report(
        result_id,
        Outcome { status: TaskStatus::Error(message), stderr_tail: String::new(), fuel_used: 0, run_time_ms: 0 },
    )
}

/// Physical memory, from `/proc/meminfo` on Linux; 0 when unknown.
fn total_memory_bytes() -> u64 {
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else {
        return 0;
    };
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_carry_outcome_and_engine() {
        let success = report(
            7,
            Outcome {
                status: TaskStatus::Success(b"42\n".to_vec()),
                stderr_tail: String::new(),
                fuel_used: 10,
                run_time_ms: 1,
            },
        );
        assert_eq!(success.outcome(), ReportedOutcome::Success);
        assert_eq!(success.output, b"42\n");
        assert_eq!(success.engine, ENGINE);
        assert_eq!(success.fuel_used, 10);

        let failure = error_report(8, "exit code 3".into());
        assert_eq!(failure.outcome(), ReportedOutcome::ClientError);
        assert_eq!(failure.error_message, "exit code 3");
        assert!(failure.output.is_empty());
    }

    #[test]
    fn rate_limited_answers_say_how_long_to_wait() {
        let mut status = Status::resource_exhausted("slow down");
        assert_eq!(retry_after(&status), None);
        status.metadata_mut().insert(quorum_proto::RETRY_AFTER_MS, 250u64.into());
        assert_eq!(retry_after(&status), Some(250));
        let mut other = Status::unavailable("down");
        other.metadata_mut().insert(quorum_proto::RETRY_AFTER_MS, 250u64.into());
        assert_eq!(retry_after(&other), None, "only rate limits carry a wait");
    }

    #[test]
    fn memory_is_known_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(total_memory_bytes() > 0);
        }
    }

    #[tokio::test]
    async fn shutdown_can_be_awaited_twice() {
        let mut shutdown = Shutdown::new(async {});
        shutdown.wait().await;
        shutdown.wait().await;
    }
}
