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
//!
//! The app cache on disk is kept within its budget (`--app-cache-mb`, see
//! `app_cache`) at start, after each download and, while the modules held
//! tasks need fill it beyond the budget, after reports are settled; a module
//! evicted from the disk is dropped from memory too (no queued task needs it).
//!
//! A coordinator given as a group of addresses (`--server URL,URL`) is one
//! attachment: its calls go to the address in use, a call that finds it
//! unreachable is made again at once at the next address, and only once
//! every address failed does the call back off (`failover`); the identity,
//! the journal's rows and the directories are the attachment's, whichever
//! address answers.
//!
//! This module holds the state and the loop (start, turns, shutdown);
//! `compute` what happens on the cores, `calls` what is said to the
//! coordinators, `fetch` the input files tasks need (downloaded beside the
//! calls, a task starting only once all its files are cached and verified).

mod calls;
mod compute;
mod fetch;
mod give_back;
mod suspend;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use anyhow::Context as _;
use quorum_proto::v1::{Assignment, ResultReport};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::client::Client;
use crate::journal::{AppStats, Identity, Journal, TaskState, now_ms};
use crate::sandbox::{Gate, Outcome, Sandbox, TaskControl};
use crate::schedule::{self, Buffer};
use crate::state::StateDir;
use crate::{Command, Config};
use calls::{Answer, Retry, describe};

/// How long running tasks may go on after shutdown is asked for (a task that
/// finishes meanwhile is journalled and reported); then how long the last
/// calls may take.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long tasks interrupted at the end of the grace period have to stop and
/// be journalled (the sandbox notices an abort within an epoch tick, 10 ms).
const INTERRUPT_GRACE: Duration = Duration::from_secs(1);
/// Longest a registration call may take (it is not abandoned at shutdown).
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// The volunteer paused computing (`quorum-worker pause`).
    paused: bool,
    /// The computing preferences suspend it, and why.
    suspended: Option<crate::preferences::Suspend>,
    preferences: crate::preferences::Preferences,
    /// The last error reading the preferences file, said once.
    preferences_error: Option<String>,
    /// Taken while a reading is made off the async threads.
    sensors: Option<Box<dyn crate::sensors::Sensors>>,
    next_sense: Instant,
    /// Bytes of memory tasks may reserve together (`None`: no budget).
    memory_budget: Option<u64>,
    attachments: Vec<Attachment>,
    queue: HashMap<Key, Queued>,
    running: HashMap<Key, Running>,
    /// Finished results not yet accepted, per coordinator, oldest first.
    unreported: Vec<Vec<Unreported>>,
    /// App modules already fetched and verified, by digest.
    apps: HashMap<String, Arc<[u8]>>,
    /// The app cache may be over its budget: it was left over it (the
    /// modules held tasks need fill it), or a task started since the last
    /// trim (the sandbox may have added its compiled module): trim it again
    /// once reports are settled.
    app_cache_to_trim: bool,
    /// Apps the worker knows it cannot get: why, by digest.
    unusable_apps: HashMap<String, String>,
    /// Input files in the cache (verified), by digest.
    cached_files: HashSet<String>,
    /// Input files being downloaded, and when a failed one may be tried again.
    fetching: HashSet<String>,
    fetch_retry: HashMap<String, Retry>,
    /// Input files the worker knows it cannot get: why, by digest.
    unusable_files: HashMap<String, String>,
    /// The peer-to-peer engine: fetching input files from sharing volunteers,
    /// and with `--share-files` serving them (`None`: it could not start).
    swarm: Option<Arc<quorum_p2p::Swarm>>,
    /// The files it serves to peers, with what peers verify them against.
    seeded: HashMap<String, quorum_p2p::FileMeta>,
    app_stats: HashMap<String, AppStats>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    calls_tx: mpsc::UnboundedSender<(usize, Answer)>,
    calls_rx: mpsc::UnboundedReceiver<(usize, Answer)>,
    next_progress: Instant,
}

/// One coordinator this worker is attached to: one address, or a group of
/// addresses serving one database (see `failover`).
struct Attachment {
    /// The attachment's key: its identity, tasks, checkpoints and pinned
    /// keys are filed under it in the journal and the state directory,
    /// whichever address the calls go to.
    server: String,
    /// The coordinator's addresses, in the order given, and a client for
    /// each (connected at its first call). One host token is valid at all of
    /// them: they share one database.
    addresses: Vec<String>,
    clients: Vec<Client>,
    /// Which address calls go to now.
    failover: crate::failover::Failover,
    share: f64,
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
    /// `quorum-worker detach`: report what is finished, give back the rest,
    /// then forget the coordinator (`detached`).
    detaching: bool,
    detached: bool,
}

impl Attachment {
    /// The client of the address calls go to now.
    fn client(&self) -> &Client {
        &self.clients[self.failover.current()]
    }

    /// The address calls go to now.
    fn address(&self) -> &str {
        &self.addresses[self.failover.current()]
    }

    /// Sets the host's token on every address's client.
    fn set_token(&mut self, token: &str) -> Result<(), crate::client::Error> {
        self.clients.iter_mut().try_for_each(|client| client.set_token(token))
    }
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
    /// Stopped on purpose: what to do with it when it comes back.
    fate: Option<Fate>,
}

/// What becomes of a task stopped on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// The coordinator no longer wants it: forget it.
    Forget,
    /// The volunteer gives it back (unless it finished meanwhile).
    GiveBack(crate::reports::GiveBack),
}

struct Unreported {
    report: ResultReport,
    /// Its app, kept in the cache until the report is settled.
    app_digest: String,
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
    pub(crate) async fn new(
        config: Config,
        state: StateDir,
        sandbox: Sandbox,
        sensors: Box<dyn crate::sensors::Sensors>,
    ) -> anyhow::Result<Worker> {
        let preferences = crate::preferences::Preferences::load(
            &config.state_dir.join(crate::preferences::FILE_NAME),
            &config.preference_overrides,
        )?;
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
        let journalled = journal.attachments().await?;
        let recorded: Vec<(String, Vec<String>)> =
            journalled.iter().map(|line| (line.server.clone(), line.addresses.clone())).collect();
        let mut attachments: Vec<Attachment> = Vec::with_capacity(config.attachments.len());
        for attach in &config.attachments {
            // A group keeps the identity it has, whichever of its addresses
            // it was attached with (a worker from before groups: its one URL).
            let server = crate::failover::group_key(&attach.addresses, &recorded).map_err(anyhow::Error::msg)?;
            if let Some(other) = attachments.iter().find(|a| a.server == server) {
                anyhow::bail!(
                    "the coordinators {} and {} are attached as one group (one host identity, {server}): \
                     give them as one --server URL,URL",
                    other.addresses.join(","),
                    attach.addresses.join(",")
                );
            }
            // Start where the last run's calls went, if that address is still given.
            let last = journalled.iter().find(|line| line.server == server).map(|line| line.address.as_str());
            let start = attach.addresses.iter().position(|address| Some(address.as_str()) == last).unwrap_or(0);
            journal.attach(&server, attach.share).await?;
            journal.set_addresses(&server, &attach.addresses, &attach.addresses[start]).await?;
            let identity = journal.identity(&server).await?;
            let mut clients = Vec::with_capacity(attach.addresses.len());
            for address in &attach.addresses {
                let mut client = Client::new(address, config.ca_cert.as_deref())?;
                if let Some(identity) = &identity {
                    client.set_token(&identity.token)?;
                }
                clients.push(client);
            }
            let (usage, usage_at_ms) = journal.usage(&server).await?;
            let max = config.max_backoff;
            attachments.push(Attachment {
                server,
                addresses: attach.addresses.clone(),
                clients,
                failover: crate::failover::Failover::new(attach.addresses.len(), start),
                share: attach.share,
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
                detaching: false,
                detached: false,
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
        let swarm = fetch::start_swarm(&config).await;
        Ok(Worker {
            config,
            state,
            journal,
            sandbox: Arc::new(sandbox),
            pool,
            gate,
            paused: false,
            suspended: None,
            preferences,
            preferences_error: None,
            sensors: Some(sensors),
            next_sense: Instant::now(),
            memory_budget: None,
            attachments,
            queue: HashMap::new(),
            running: HashMap::new(),
            unreported: (0..n).map(|_| Vec::new()).collect(),
            apps: HashMap::new(),
            app_cache_to_trim: false,
            unusable_apps: HashMap::new(),
            cached_files: HashSet::new(),
            fetching: HashSet::new(),
            fetch_retry: HashMap::new(),
            unusable_files: HashMap::new(),
            swarm,
            seeded: HashMap::new(),
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
        self.journal.set_setting("app_cache_bytes", &self.config.app_cache_bytes.to_string()).await?;
        self.journal.set_setting("file_cache_bytes", &self.config.file_cache_bytes.to_string()).await?;
        if self.journal.setting("paused").await?.as_deref() == Some("1") {
            self.set_paused(true).await;
        }
        for (server, result_id) in self.journal.collect_garbage(now_ms()).await? {
            self.remove_checkpoint(&server, result_id);
        }
        self.recover().await?;
        let servers: Vec<&str> = self.attachments.iter().map(|a| a.server.as_str()).collect();
        self.journal.set_setting("servers", &servers.join(" ")).await?;
        // Requests left by a detach or an abort while no worker ran, or cut off.
        self.take_requests().await?;
        self.trim_app_cache().await;
        let cache = self.state.file_cache();
        self.cached_files = tokio::task::spawn_blocking(move || cache.complete()).await.unwrap_or_default();
        self.trim_file_cache().await;
        self.seed_held_files().await;
        info!(
            cpus = self.config.cpus,
            cpu_limit = self.config.cpu_limit,
            servers = %self.attachments.iter().map(|a| a.addresses.join(",")).collect::<Vec<_>>().join(" "),
            "worker started"
        );
        loop {
            self.turn(&mut shutdown).await?;
            if self.attachments.iter().all(|a| a.detached) {
                info!("detached from every coordinator: stopping");
                break;
            }
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
                    Command::Requests => self.take_requests().await?,
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
                        let app_digest = task.assignment.app_digest;
                        self.unreported[index].push(Unreported { report, app_digest, since: Instant::now() });
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
                debug!(server, queued, finished, "recovered tasks from the journal");
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
        if Instant::now() >= self.next_sense {
            self.sense().await;
        }
        self.start_tasks(shutdown).await?;
        if shutdown.requested().await {
            // What is left is `stop`'s.
            return Ok(());
        }
        if Instant::now() >= self.next_progress {
            self.save_progress().await?;
        }
        self.complete_detaches().await?;
        self.launch_fetches();
        for index in 0..self.attachments.len() {
            if !self.attachments[index].busy {
                self.launch_call(index).await;
            }
        }
        Ok(())
    }
}

impl Worker {
    /// The apps of every task the worker holds: queued, running, unreported.
    fn needed_apps(&self) -> HashSet<String> {
        let queued = self.queue.values().map(|q| &q.assignment.app_digest);
        let running = self.running.values().map(|r| &r.app_digest);
        let unreported = self.unreported.iter().flatten().map(|u| &u.app_digest);
        queued.chain(running).chain(unreported).cloned().collect()
    }

    /// Keeps the app cache within its budget (off the async threads), and
    /// drops the modules evicted from memory too: no queued task needs them.
    /// An I/O error is logged, never fatal: the cache is only a cache.
    async fn trim_app_cache(&mut self) {
        let (state, needed, budget) = (self.state.clone(), self.needed_apps(), self.config.app_cache_bytes);
        let trimmed = match tokio::task::spawn_blocking(move || state.trim_apps(&needed, budget)).await {
            Ok(Ok(trimmed)) => trimmed,
            Ok(Err(error)) => {
                warn!(error = %error, "cannot trim the app cache");
                return;
            }
            Err(error) => {
                warn!(error = %error, "the app cache trimmer panicked");
                return;
            }
        };
        for (digest, size) in &trimmed.evicted {
            self.apps.remove(digest);
            debug!(digest, size, "evicted app from the cache");
        }
        self.app_cache_to_trim = trimmed.bytes > budget;
        if !trimmed.evicted.is_empty() || self.app_cache_to_trim {
            debug!(
                evicted = trimmed.evicted.len(),
                n_apps = trimmed.n_apps,
                bytes = trimmed.bytes,
                budget,
                "app cache trimmed"
            );
        }
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

    /// Shutdown. No task starts from here on (nothing below calls
    /// `start_tasks`). Running tasks get the grace period to finish (unless
    /// the worker is paused: they are not computing); those still running
    /// then are interrupted: their checkpoint directories stay and they go
    /// back to the journal's queue, to resume at the next start. Each task is
    /// journalled as it comes back. Then wait briefly for calls in flight (a
    /// registration must not be lost), and try once to report what finished.
    async fn stop(mut self) {
        info!(running = self.running.len(), queued = self.queue.len(), "shutting down");
        if self.computing() {
            self.collect_tasks(Instant::now() + SHUTDOWN_GRACE).await;
        }
        if !self.running.is_empty() {
            debug!(n = self.running.len(), "interrupting {} running tasks", self.running.len());
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
            let mut client = self.attachments[index].client().clone();
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
        self.close_swarm().await;
        if let Err(error) = self.journal.set_setting("pid", "0").await {
            warn!(error = %error, "cannot clear the pid in the journal");
        }
        self.journal.close().await;
    }

    /// Closes the peer-to-peer endpoint and flushes its store, so peers see
    /// the connection closed rather than timing out (and iroh has no
    /// ungraceful drop to complain of). A download still in flight holds
    /// the swarm: it is then dropped with the process.
    async fn close_swarm(&mut self) {
        let Some(swarm) = self.swarm.take() else { return };
        match Arc::try_unwrap(swarm) {
            Ok(swarm) => match tokio::time::timeout(SHUTDOWN_GRACE, swarm.shutdown()).await {
                Ok(Ok(())) => debug!("peer-to-peer endpoint closed"),
                Ok(Err(error)) => warn!(error = %error, "cannot close the peer-to-peer endpoint"),
                Err(_) => warn!("closing the peer-to-peer endpoint timed out"),
            },
            Err(_) => debug!("downloads in flight at shutdown: the peer-to-peer endpoint is dropped with them"),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::{error_report, report};
    use crate::sandbox::{ENGINE, Outcome, Status as TaskStatus};
    use crate::worker::calls::retry_after;
    use quorum_proto::v1::ReportedOutcome;
    use tonic::Status;

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

    #[tokio::test]
    async fn shutdown_can_be_awaited_twice() {
        let mut shutdown = Shutdown::new(async {});
        shutdown.wait().await;
        shutdown.wait().await;
    }
}
