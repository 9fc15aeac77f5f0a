//! The worker loop: one async task that talks to the server, and a rayon pool
//! that computes.
//!
//! Each turn of the loop does one thing: start queued tasks on free slots
//! (fetching their app first if needed), report finished results, ask for
//! work, or wait for a task to finish / a retry timer / shutdown. Calls that
//! fail set a retry time from a [`Backoff`]; nothing is retried in a tight loop.
//! Finished results stay in memory until the server accepts them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use quorum_proto::v1::{Assignment, RegisterHostRequest, ReportedOutcome, ResultReport};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Code;
use tracing::{debug, error, info, warn};

use crate::Config;
use crate::client::{Backoff, Client, DownloadError};
use crate::sandbox::{ENGINE, Limits, Outcome, Sandbox, Status, Task};
use crate::state::{self, Identity, StateDir};

/// How long shutdown waits for interrupted tasks, then for the last report.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Longest a registration call may take.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// Most results sent in one `ReportResults` call.
const MAX_REPORT_BATCH: usize = 1000;
/// Bytes of output a batch may carry before the rest waits for the next call
/// (tonic servers refuse messages over 4 MiB by default). A single larger
/// result still goes alone.
const MAX_REPORT_BATCH_BYTES: usize = 3 * 1024 * 1024;

/// A task's result id and its outcome; `None` if the sandbox panicked.
type Done = (i64, Option<Outcome>);

pub(crate) struct Worker {
    config: Config,
    state: StateDir,
    client: Client,
    sandbox: Arc<Sandbox>,
    pool: rayon::ThreadPool,
    identity: Option<Identity>,
    /// Assignments received and not started yet, oldest first.
    queue: VecDeque<Assignment>,
    /// Abort flags of the tasks on the pool, by result id.
    running: HashMap<i64, Arc<AtomicBool>>,
    /// Finished results the server has not accepted yet.
    unreported: Vec<ResultReport>,
    /// App modules already fetched and verified, by digest.
    apps: HashMap<String, Arc<[u8]>>,
    /// The pool sends finished tasks here.
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    request_retry: Retry,
    report_retry: Retry,
    download_retry: Retry,
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

    /// The call worked: the next one may go at once.
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

    /// Completes when shutdown was requested (at once if it already was).
    async fn wait(&mut self) {
        if let Some(signal) = &mut self.signal {
            signal.as_mut().await;
            self.signal = None;
        }
    }
}

/// `Break` means shutdown was requested.
type Flow = ControlFlow<()>;

/// Where an app module comes from, for one assignment.
enum Fetched {
    Ready(Arc<[u8]>),
    /// The app cannot be used (bad digest, rejected download): the result is an error.
    Unusable(String),
    /// The server could not serve it now: try again later.
    Retry,
    /// The server no longer knows our token.
    Unauthenticated,
}

impl Worker {
    pub(crate) fn new(
        config: Config,
        state: StateDir,
        client: Client,
        sandbox: Sandbox,
        pool: rayon::ThreadPool,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let max = config.max_backoff;
        Worker {
            config,
            state,
            client,
            sandbox: Arc::new(sandbox),
            pool,
            identity: None,
            queue: VecDeque::new(),
            running: HashMap::new(),
            unreported: Vec::new(),
            apps: HashMap::new(),
            done_tx,
            done_rx,
            request_retry: Retry::new(max),
            report_retry: Retry::new(max),
            download_retry: Retry::new(max),
        }
    }

    pub(crate) async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut shutdown = Shutdown::new(shutdown);
        let state = self.state.clone();
        let server = self.config.server.clone();
        let identity = tokio::task::spawn_blocking(move || state.load_identity(&server))
            .await
            .context("identity loader panicked")??;
        if let Some(identity) = identity {
            self.client.set_token(&identity.token)?;
            info!(host_id = identity.host_id, "using stored identity");
            self.identity = Some(identity);
        } else if self.register(&mut shutdown).await.is_break() {
            info!("stopped before registering");
            return Ok(());
        }
        info!(cpus = self.config.cpus, server = %self.config.server, "worker started");
        while self.step(&mut shutdown).await.is_continue() {}
        self.stop().await;
        Ok(())
    }

    /// One turn of the loop.
    async fn step<F: Future<Output = ()>>(&mut self, shutdown: &mut Shutdown<F>) -> Flow {
        self.collect_finished();
        if self.download_retry.due() {
            self.start_tasks(shutdown).await?;
        }
        if !self.unreported.is_empty() && self.report_retry.due() {
            return self.report(shutdown).await;
        }
        if self.free_slots() > 0 && self.request_retry.due() {
            return self.request_work(shutdown).await;
        }
        let wake = self.next_wake();
        tokio::select! {
            _ = shutdown.wait() => ControlFlow::Break(()),
            Some(done) = self.done_rx.recv() => {
                self.finish(done);
                ControlFlow::Continue(())
            }
            _ = sleep_until(wake) => ControlFlow::Continue(()),
        }
    }

    /// Slots to ask the server for: every task running or queued counts, and
    /// the worker keeps up to `cpus` tasks queued behind the `cpus` running.
    fn free_slots(&self) -> usize {
        (2 * self.config.cpus).saturating_sub(self.running.len() + self.queue.len())
    }

    /// The earliest retry time that matters now, if any.
    fn next_wake(&self) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        let mut consider = |when: Instant| wake = Some(wake.map_or(when, |wake| wake.min(when)));
        if !self.unreported.is_empty() {
            consider(self.report_retry.not_before);
        }
        if self.free_slots() > 0 {
            consider(self.request_retry.not_before);
        }
        if !self.queue.is_empty() && self.running.len() < self.config.cpus {
            consider(self.download_retry.not_before);
        }
        wake
    }

    /// Registers (again), retrying with backoff until it works or shutdown.
    async fn register<F: Future<Output = ()>>(&mut self, shutdown: &mut Shutdown<F>) -> Flow {
        let mut backoff = Backoff::new(self.config.max_backoff);
        loop {
            let request = RegisterHostRequest {
                name: self.config.name.clone(),
                n_cpus: u32::try_from(self.config.cpus).unwrap_or(u32::MAX),
                memory_bytes: total_memory_bytes(),
                engine: ENGINE.to_string(),
                os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
                account: self.config.account.clone(),
            };
            // A registration in flight is not abandoned on shutdown: the
            // coordinator may already have created the host, and dropping the
            // answer would leave a host nobody owns. The call is bounded instead.
            let result = match tokio::time::timeout(REGISTER_TIMEOUT, self.client.register(request)).await {
                Ok(result) => result,
                Err(_) => Err(tonic::Status::deadline_exceeded("registration took too long")),
            };
            let failure = match result {
                Ok(response) => match self.client.set_token(&response.token) {
                    Ok(()) => {
                        self.adopt_identity(Identity {
                            server: self.config.server.clone(),
                            host_id: response.host_id,
                            token: response.token,
                        })
                        .await;
                        return ControlFlow::Continue(());
                    }
                    Err(error) => error.to_string(),
                },
                Err(status) => describe(&status),
            };
            let delay = backoff.next_delay();
            warn!(error = %failure, retry_in = ?delay, "cannot register");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait() => return ControlFlow::Break(()),
            }
        }
    }

    async fn adopt_identity(&mut self, identity: Identity) {
        info!(host_id = identity.host_id, "registered");
        let state = self.state.clone();
        let saved = identity.clone();
        match tokio::task::spawn_blocking(move || state.save_identity(&saved)).await {
            Ok(Ok(())) => {}
            // Not fatal: this run keeps its identity; the next one registers again.
            Ok(Err(error)) => error!(error = %error, "cannot save identity"),
            Err(error) => error!(error = %error, "identity writer panicked"),
        }
        self.identity = Some(identity);
    }

    /// The server no longer knows our token: register again, then carry on.
    async fn reregister<F: Future<Output = ()>>(&mut self, shutdown: &mut Shutdown<F>) -> Flow {
        warn!("token rejected (unauthenticated), registering again");
        self.identity = None;
        self.register(shutdown).await
    }

    async fn request_work<F: Future<Output = ()>>(&mut self, shutdown: &mut Shutdown<F>) -> Flow {
        let slots = u32::try_from(self.free_slots()).unwrap_or(u32::MAX);
        let held = self.held();
        let result = tokio::select! {
            result = self.client.request_work(slots, held) => result,
            _ = shutdown.wait() => return ControlFlow::Break(()),
        };
        let response = match result {
            Ok(response) => response,
            Err(status) if status.code() == Code::Unauthenticated => {
                return self.reregister(shutdown).await;
            }
            Err(status) => {
                let delay = self.request_retry.failed();
                warn!(error = %describe(&status), retry_in = ?delay, "cannot request work");
                return ControlFlow::Continue(());
            }
        };
        if !response.abort.is_empty() {
            self.abort(&response.abort);
        }
        if response.assignments.is_empty() {
            let delay = if response.retry_after_ms > 0 {
                self.request_retry.backoff.reset();
                self.request_retry.backoff.retry_after(response.retry_after_ms)
            } else {
                self.request_retry.backoff.next_delay()
            };
            self.request_retry.wait(delay);
            debug!(retry_in = ?delay, "no work");
            return ControlFlow::Continue(());
        }
        self.request_retry.succeeded();
        info!(n = response.assignments.len(), "got {} results", response.assignments.len());
        for assignment in response.assignments {
            if self.knows(assignment.result_id) {
                debug!(result_id = assignment.result_id, "duplicate assignment ignored");
                continue;
            }
            self.queue.push_back(assignment);
        }
        ControlFlow::Continue(())
    }

    /// Every result this worker holds: queued, running, or finished and not yet accepted.
    fn held(&self) -> Vec<i64> {
        let queued = self.queue.iter().map(|assignment| assignment.result_id);
        let finished = self.unreported.iter().map(|report| report.result_id);
        queued.chain(self.running.keys().copied()).chain(finished).collect()
    }

    fn knows(&self, result_id: i64) -> bool {
        self.running.contains_key(&result_id)
            || self.queue.iter().any(|queued| queued.result_id == result_id)
            || self.unreported.iter().any(|report| report.result_id == result_id)
    }

    /// Starts queued tasks on free slots.
    async fn start_tasks<F: Future<Output = ()>>(&mut self, shutdown: &mut Shutdown<F>) -> Flow {
        while self.running.len() < self.config.cpus {
            let Some(assignment) = self.queue.pop_front() else {
                break;
            };
            let fetched = tokio::select! {
                fetched = self.fetch_app(&assignment.app_digest) => fetched,
                _ = shutdown.wait() => return ControlFlow::Break(()),
            };
            match fetched {
                Fetched::Ready(module) => self.spawn(assignment, module),
                Fetched::Unusable(message) => {
                    warn!(result_id = assignment.result_id, error = %message, "finished result (cannot get its app)");
                    self.unreported.push(error_report(assignment.result_id, message));
                }
                Fetched::Retry => {
                    self.queue.push_front(assignment);
                    break;
                }
                Fetched::Unauthenticated => {
                    self.queue.push_front(assignment);
                    return self.reregister(shutdown).await;
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// The app module with `digest`: from memory, the disk cache, or the server.
    async fn fetch_app(&mut self, digest: &str) -> Fetched {
        if let Some(module) = self.apps.get(digest) {
            return Fetched::Ready(module.clone());
        }
        let state = self.state.clone();
        let owned_digest = digest.to_string();
        match tokio::task::spawn_blocking(move || state.read_app(&owned_digest)).await {
            Ok(Ok(Some(bytes))) => return Fetched::Ready(self.remember_app(digest, bytes)),
            Ok(Ok(None)) => {}
            Ok(Err(state::Error::InvalidDigest(digest))) => {
                return Fetched::Unusable(format!("invalid app digest {digest:?}"));
            }
            Ok(Err(error)) => warn!(error = %error, "cannot read the app cache, downloading"),
            Err(error) => warn!(error = %error, "app cache reader panicked, downloading"),
        }
        let bytes = match self.client.download_app(digest).await {
            Ok(bytes) => bytes,
            Err(DownloadError::Status(status)) if status.code() == Code::Unauthenticated => {
                return Fetched::Unauthenticated;
            }
            Err(error) if error.is_transient() => {
                let delay = self.download_retry.failed();
                warn!(digest, error = %error, retry_in = ?delay, "cannot download app");
                return Fetched::Retry;
            }
            Err(error) => return Fetched::Unusable(format!("cannot download app: {error}")),
        };
        self.download_retry.succeeded();
        info!(digest, size = bytes.len(), "downloaded app");
        let module = self.remember_app(digest, bytes);
        let state = self.state.clone();
        let (owned_digest, cached) = (digest.to_string(), module.clone());
        match tokio::task::spawn_blocking(move || state.write_app(&owned_digest, &cached)).await {
            Ok(Ok(())) => {}
            // Not fatal: the module stays in memory for this run.
            Ok(Err(error)) => warn!(error = %error, "cannot cache app on disk"),
            Err(error) => warn!(error = %error, "app cache writer panicked"),
        }
        Fetched::Ready(module)
    }

    fn remember_app(&mut self, digest: &str, bytes: Vec<u8>) -> Arc<[u8]> {
        let module: Arc<[u8]> = bytes.into();
        self.apps.insert(digest.to_string(), module.clone());
        module
    }

    /// Runs `assignment` on the pool; its outcome comes back on `done_rx`.
    fn spawn(&mut self, assignment: Assignment, module: Arc<[u8]>) {
        let result_id = assignment.result_id;
        let limits = assignment.limits.unwrap_or_default();
        let task = Task {
            app_digest: assignment.app_digest,
            module,
            input: assignment.input,
            random_seed: assignment.random_seed,
            limits: Limits::with_defaults(limits.fuel, limits.memory_bytes, limits.output_bytes, limits.wall_time_ms),
            nan_canonicalization: assignment.nan_canonicalization,
        };
        info!(
            result_id,
            work_unit_id = assignment.work_unit_id,
            work_unit = %assignment.work_unit_name,
            project = %assignment.project,
            "started result"
        );
        let abort = Arc::new(AtomicBool::new(false));
        self.running.insert(result_id, abort.clone());
        let sandbox = self.sandbox.clone();
        let done_tx = self.done_tx.clone();
        self.pool.spawn(move || {
            // rayon aborts the process on a panic in a spawned job; a bug in
            // the sandbox must cost one result, not the worker.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| sandbox.run(&task, abort))).ok();
            // The receiver is gone only when the worker has stopped: nothing to do.
            let _ = done_tx.send((result_id, outcome));
        });
    }

    /// Takes every outcome already waiting, without blocking.
    fn collect_finished(&mut self) {
        while let Ok(done) = self.done_rx.try_recv() {
            self.finish(done);
        }
    }

    fn finish(&mut self, (result_id, outcome): Done) {
        // A task that finished before its abort flag was seen is reported
        // anyway: reports are idempotent and the server ignores unneeded ones.
        self.running.remove(&result_id);
        let Some(outcome) = outcome else {
            error!(result_id, "sandbox panicked; dropping the result");
            return;
        };
        if outcome.status == Status::Aborted {
            info!(result_id, "aborted result");
            return;
        }
        let report = report(result_id, outcome);
        match report.outcome() {
            ReportedOutcome::Success => info!(
                result_id,
                fuel_used = report.fuel_used,
                run_time_ms = report.run_time_ms,
                output_bytes = report.output.len(),
                "finished result"
            ),
            _ => info!(
                result_id,
                fuel_used = report.fuel_used,
                run_time_ms = report.run_time_ms,
                error = %report.error_message,
                "finished result (client error)"
            ),
        }
        self.unreported.push(report);
    }

    async fn report<F: Future<Output = ()>>(&mut self, shutdown: &mut Shutdown<F>) -> Flow {
        let n = self.batch_len();
        let result = tokio::select! {
            result = self.client.report_results(&self.unreported[..n]) => result,
            _ = shutdown.wait() => return ControlFlow::Break(()),
        };
        match result {
            Ok(reported) => {
                let batch: HashSet<i64> = self.unreported[..n].iter().map(|report| report.result_id).collect();
                self.settle(reported);
                let all_settled = !self.unreported.iter().any(|report| batch.contains(&report.result_id));
                if all_settled {
                    self.report_retry.succeeded();
                } else {
                    let delay = self.report_retry.failed();
                    warn!(n = self.unreported.len(), retry_in = ?delay, "some results not accepted yet");
                }
                ControlFlow::Continue(())
            }
            Err(status) if status.code() == Code::Unauthenticated => self.reregister(shutdown).await,
            Err(status) => {
                let delay = self.report_retry.failed();
                warn!(error = %describe(&status), unreported = self.unreported.len(), retry_in = ?delay, "cannot report results");
                ControlFlow::Continue(())
            }
        }
    }

    /// How many of the oldest unreported results go in the next call.
    fn batch_len(&self) -> usize {
        let mut bytes = 0;
        let n = self
            .unreported
            .iter()
            .take(MAX_REPORT_BATCH)
            .take_while(|report| {
                bytes += report.output.len() + report.stderr_tail.len();
                bytes <= MAX_REPORT_BATCH_BYTES
            })
            .count();
        n.max(1).min(self.unreported.len())
    }

    /// Forgets what the server accepted or rejected, and aborts what it no longer needs.
    fn settle(&mut self, reported: crate::client::Reported) {
        for (result_id, status) in &reported.rejected {
            warn!(result_id, error = %describe(status), "report rejected, dropping it");
        }
        let settled: HashSet<i64> = reported
            .accepted
            .iter()
            .copied()
            .chain(reported.rejected.iter().map(|(result_id, _)| *result_id))
            .collect();
        self.unreported.retain(|report| !settled.contains(&report.result_id));
        info!(n = reported.accepted.len(), "reported {} results", reported.accepted.len());
        self.abort(&reported.abort);
    }

    /// Drops queued and unreported copies of `result_ids` and interrupts running ones.
    fn abort(&mut self, result_ids: &[i64]) {
        if result_ids.is_empty() {
            return;
        }
        let result_ids: HashSet<i64> = result_ids.iter().copied().collect();
        self.queue.retain(|assignment| !result_ids.contains(&assignment.result_id));
        self.unreported.retain(|report| !result_ids.contains(&report.result_id));
        for result_id in &result_ids {
            if let Some(abort) = self.running.get(result_id) {
                abort.store(true, Ordering::Relaxed);
            }
        }
        info!(n = result_ids.len(), "aborting {} results", result_ids.len());
    }

    /// Shutdown: interrupt running tasks, then try once to report what finished.
    async fn stop(mut self) {
        info!(running = self.running.len(), queued = self.queue.len(), "shutting down");
        self.queue.clear();
        self.collect_finished();
        for abort in self.running.values() {
            abort.store(true, Ordering::Relaxed);
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, self.done_rx.recv()).await {
                Ok(Some(done)) => self.finish(done),
                Ok(None) | Err(_) => break,
            }
        }
        if self.unreported.is_empty() {
            return;
        }
        let n = self.batch_len();
        match tokio::time::timeout(SHUTDOWN_GRACE, self.client.report_results(&self.unreported[..n])).await {
            Ok(Ok(reported)) => self.settle(reported),
            Ok(Err(status)) => warn!(error = %describe(&status), "cannot report results at shutdown"),
            Err(_) => warn!("reporting at shutdown timed out"),
        }
        if !self.unreported.is_empty() {
            warn!(n = self.unreported.len(), "exiting with unreported results");
        }
    }
}

/// A status in one short line: its code and message, without transport internals.
fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// Sleeps until `wake`, or forever when there is nothing to wake for.
async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(wake) => tokio::time::sleep_until(wake).await,
        None => std::future::pending().await,
    }
}

/// The report of a finished (not aborted) task.
fn report(result_id: i64, outcome: Outcome) -> ResultReport {
    let (reported, output, error_message) = match outcome.status {
        Status::Success(output) => (ReportedOutcome::Success, output, String::new()),
        Status::Error(message) => (ReportedOutcome::ClientError, Vec::new(), message),
        Status::Aborted => (ReportedOutcome::ClientError, Vec::new(), "aborted".to_string()),
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

/// A client error for a result that could not even start.
fn error_report(result_id: i64, message: String) -> ResultReport {
    report(
        result_id,
        Outcome { status: Status::Error(message), stderr_tail: String::new(), fuel_used: 0, run_time_ms: 0 },
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
                status: Status::Success(b"42\n".to_vec()),
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
