//! The worker's calls to its coordinators: which call each coordinator needs
//! next (registration, a work request carrying finished reports, a report on
//! its own, an app download, the host's record), launched as tokio tasks at
//! most one in flight per coordinator, and what their answers change: tasks
//! received, reports settled, copies the coordinator no longer wants aborted.

use std::collections::HashSet;
use std::sync::Arc;

use quorum_proto::v1::{HostInfo, RegisterHostRequest, RegisterHostResponse, ResultReport};
use tokio::time::Instant;
use tonic::{Code, Status};
use tracing::{debug, info, warn};

use super::*;
use crate::client::{Backoff, DownloadError, Reported, is_bad_request, is_unreachable};
use crate::failover::{Next, Switched};
use crate::journal::{HostRecord, Identity};
use crate::sandbox::ENGINE;

impl Worker {
    /// Tasks of coordinator `index` queued, not started.
    pub(super) fn queued(&self, index: usize) -> usize {
        self.queue.keys().filter(|key| key.0 == index).count()
    }

    /// Every result coordinator `index` gave this worker and has not accepted back.
    pub(super) fn held(&self, index: usize) -> Vec<i64> {
        let queued = self.queue.keys().chain(self.running.keys()).filter(|key| key.0 == index).map(|key| key.1);
        queued.chain(self.unreported[index].iter().map(|u| u.report.result_id)).collect()
    }

    /// The oldest waiting reports of coordinator `index` that fit in one call.
    pub(super) fn report_batch(&self, index: usize) -> Vec<ResultReport> {
        let waiting = &self.unreported[index];
        let n = crate::reports::batch_len(waiting.iter().map(|u| &u.report));
        waiting[..n].iter().map(|u| u.report.clone()).collect()
    }

    pub(super) fn wants_work(&self, index: usize) -> usize {
        if self.paused || self.attachments[index].detaching {
            return 0;
        }
        self.attachments[index].buffer.wanted(self.queued(index))
    }

    pub(super) fn report_due(&self, index: usize) -> bool {
        let waiting = &self.unreported[index];
        let Some(oldest) = waiting.first() else {
            return false;
        };
        let idle = !self.queue.keys().chain(self.running.keys()).any(|key| key.0 == index);
        idle || waiting.len() >= REPORT_BATCH_TRIGGER || oldest.since.elapsed() >= REPORT_DELAY
    }

    /// A digest some queued task of coordinator `index` needs and lacks.
    pub(super) fn missing_app(&self, index: usize) -> Option<String> {
        self.queue
            .iter()
            .filter(|(key, _)| key.0 == index)
            .map(|(_, q)| &q.assignment.app_digest)
            .find(|digest| !self.apps.contains_key(*digest) && !self.unusable_apps.contains_key(*digest))
            .cloned()
    }

    /// Starts the call coordinator `index` needs most, if any is due.
    pub(super) async fn launch_call(&mut self, index: usize) {
        let attachment = &self.attachments[index];
        if attachment.detached {
            return;
        }
        let mut client = attachment.client().clone();
        let calls = self.calls_tx.clone();
        let send = move |answer: Answer| {
            // The receiver is gone only when the worker has stopped.
            let _ = calls.send((index, answer));
        };
        if attachment.identity.is_none() {
            if !attachment.register_retry.due() || attachment.detaching {
                return;
            }
            let request = RegisterHostRequest {
                name: self.config.name.clone(),
                n_cpus: u32::try_from(self.config.cpus).unwrap_or(u32::MAX),
                memory_bytes: crate::sensors::total_memory_bytes(),
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
            let cached = self.cached_file_list();
            let peer_address = self.peer_address();
            self.attachments[index].busy = true;
            tokio::spawn(async move {
                let result = client.request_work(asked, held, reports, cached, peer_address).await;
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
    pub(super) async fn answered(&mut self, index: usize, answer: Answer) -> anyhow::Result<()> {
        if let Answer::Fetched { digest, result } = answer {
            self.fetched(index, digest, result).await;
            return Ok(());
        }
        self.attachments[index].busy = false;
        let server = self.attachments[index].server.clone();
        if let Some(status) = answer.unreachable() {
            if self.fail_over(index, status) {
                // The next address of the group, at once: the failed call changes nothing else.
                return Ok(());
            }
        } else {
            self.reached(index).await?;
        }
        match answer {
            Answer::Registered(Ok(response)) => {
                let identity = Identity { server: server.clone(), host_id: response.host_id, token: response.token };
                match self.attachments[index].set_token(&identity.token) {
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
                        debug!(server = %server, n, "got {n} results");
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
                    debug!(server = %server, digest, size = bytes.len(), "downloaded app");
                    let module: Arc<[u8]> = bytes.into();
                    self.apps.insert(digest.clone(), module.clone());
                    let state = self.state.clone();
                    match tokio::task::spawn_blocking(move || state.write_app(&digest, &module)).await {
                        Ok(Ok(())) => {}
                        // Not fatal: the module stays in memory for this run.
                        Ok(Err(error)) => warn!(error = %error, "cannot cache app on disk"),
                        Err(error) => warn!(error = %error, "app cache writer panicked"),
                    }
                    self.trim_app_cache().await;
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
            Answer::Fetched { .. } => unreachable!("handled above"),
        }
        Ok(())
    }

    /// A call could not reach the address in use: whether to call the next
    /// address of the group at once (else the caller backs off as usual,
    /// and the next call goes to the next address).
    fn fail_over(&mut self, index: usize, status: &Status) -> bool {
        let attachment = &mut self.attachments[index];
        if attachment.addresses.len() == 1 {
            return false;
        }
        let from = attachment.address().to_owned();
        match attachment.failover.unreachable() {
            Next::TryNow { to, .. } => {
                let to = &attachment.addresses[to];
                debug!(server = %attachment.server, %from, %to, error = %describe(status), "coordinator address unreachable, trying the next");
                true
            }
            Next::BackOff { to } => {
                let to = &attachment.addresses[to];
                debug!(server = %attachment.server, %from, next = %to, error = %describe(status), "every address of the coordinator unreachable, backing off");
                false
            }
        }
    }

    /// The address in use answered: if it is not the one that answered
    /// before, the calls failed over to it; said once, and journalled for
    /// `status` and the next start.
    async fn reached(&mut self, index: usize) -> anyhow::Result<()> {
        let attachment = &mut self.attachments[index];
        if let Some(Switched { from, to }) = attachment.failover.answered() {
            let (from, to) = (&attachment.addresses[from], &attachment.addresses[to]);
            info!(server = %attachment.server, "coordinator {from} down, using {to}");
            self.journal.set_address(&attachment.server, to).await?;
        }
        Ok(())
    }

    /// A call failed: re-register, fall back to separate reports, or back off.
    pub(super) fn call_failed(&mut self, index: usize, what: &str, status: &Status, carried_reports: bool) {
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
    pub(super) fn forget_identity(&mut self, index: usize) {
        let attachment = &mut self.attachments[index];
        warn!(server = %attachment.server, "token rejected (unauthenticated), registering again");
        attachment.identity = None;
    }

    /// Forgets every task of coordinator `index`: queued, running (aborted),
    /// unreported, and the journal's history of them.
    pub(super) async fn drop_tasks(&mut self, index: usize) -> anyhow::Result<()> {
        let server = self.attachments[index].server.clone();
        self.queue.retain(|key, _| key.0 != index);
        for (key, running) in self.running.iter_mut().filter(|(key, _)| key.0 == index) {
            debug!(result_id = key.1, "aborting a task of a previous registration");
            running.fate = Some(Fate::Forget);
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
    pub(super) async fn settle(
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
            debug!(server = %server, n = accepted.len(), "reported {} results", accepted.len());
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
        let any_settled = !settled.is_empty();
        for result_id in settled {
            self.remove_checkpoint(&server, result_id);
        }
        if any_settled && self.app_cache_to_trim {
            // Their apps may go now.
            self.trim_app_cache().await;
        }
        self.abort(index, abort).await
    }

    /// Drops queued and unreported copies of `result_ids` and interrupts running ones.
    pub(super) async fn abort(&mut self, index: usize, result_ids: &[i64]) -> anyhow::Result<()> {
        if result_ids.is_empty() {
            return Ok(());
        }
        let server = self.attachments[index].server.clone();
        let mut forget = Vec::new();
        for result_id in result_ids {
            let key = (index, *result_id);
            if let Some(running) = self.running.get_mut(&key) {
                running.fate = Some(Fate::Forget);
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
        debug!(server = %server, n = result_ids.len(), "aborting {} results", result_ids.len());
        Ok(())
    }

    /// The earliest time something becomes due, if any.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        let mut consider = |when: Instant| wake = Some(wake.map_or(when, |wake| wake.min(when)));
        consider(self.next_sense);
        if !self.running.is_empty() {
            consider(self.next_progress);
        }
        if let Some(retry) = self.next_fetch_retry() {
            consider(retry);
        }
        for (index, attachment) in self.attachments.iter().enumerate() {
            if attachment.busy || attachment.detached {
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
}

/// The answer to a spawned call.
pub(super) enum Answer {
    Registered(Result<RegisterHostResponse, Status>),
    Work {
        asked: u32,
        sent: Vec<i64>,
        result: Result<quorum_proto::v1::RequestWorkResponse, Status>,
    },
    Reported {
        sent: Vec<i64>,
        result: Result<Reported, Status>,
    },
    Downloaded {
        digest: String,
        result: Result<Vec<u8>, DownloadError>,
    },
    Host(Result<HostInfo, Status>),
    /// An input file's download ended (not a call of the loop's: `busy` is untouched).
    Fetched {
        digest: String,
        result: Result<super::fetch::Downloaded, super::fetch::FetchError>,
    },
}

impl Answer {
    /// The status of a call that could not reach the coordinator's address
    /// (see [`is_unreachable`]); `None` when the address answered.
    fn unreachable(&self) -> Option<&Status> {
        let status = match self {
            Answer::Registered(Err(status))
            | Answer::Work { result: Err(status), .. }
            | Answer::Reported { result: Err(status), .. }
            | Answer::Downloaded { result: Err(DownloadError::Status(status)), .. }
            | Answer::Host(Err(status)) => status,
            Answer::Registered(Ok(_))
            | Answer::Work { result: Ok(_), .. }
            | Answer::Reported { result: Ok(_), .. }
            | Answer::Downloaded { .. }
            | Answer::Host(Ok(_))
            | Answer::Fetched { .. } => return None,
        };
        is_unreachable(status.code()).then_some(status)
    }
}

/// When a kind of call may next be made, and the backoff that sets it.
pub(super) struct Retry {
    backoff: Backoff,
    pub(super) not_before: Instant,
}

impl Retry {
    pub(super) fn new(max: Duration) -> Self {
        Retry { backoff: Backoff::new(max), not_before: Instant::now() }
    }

    pub(super) fn due(&self) -> bool {
        Instant::now() >= self.not_before
    }

    pub(super) fn succeeded(&mut self) {
        self.backoff.reset();
        self.not_before = Instant::now();
    }

    /// The call failed: wait a growing, jittered delay; returns it.
    pub(super) fn failed(&mut self) -> Duration {
        let delay = self.backoff.next_delay();
        self.not_before = Instant::now() + delay;
        delay
    }

    pub(super) fn wait(&mut self, delay: Duration) {
        self.not_before = Instant::now() + delay;
    }
}

/// The wait a rate-limited answer asks for, in milliseconds.
pub(super) fn retry_after(status: &Status) -> Option<u64> {
    if status.code() != Code::ResourceExhausted {
        return None;
    }
    status.metadata().get(quorum_proto::RETRY_AFTER_MS)?.to_str().ok()?.parse().ok()
}

/// A status in one short line: its code and message, without transport internals.
/// A failed call for the log: its code, message and causes (e.g. why a TLS
/// handshake failed).
pub(super) fn describe(status: &Status) -> String {
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
