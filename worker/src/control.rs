//! Commands run beside a worker on the same state directory:
//! `quorum-worker status` (what it is doing, read from the journal),
//! `quorum-worker pause` / `resume` (a setting in the journal, so it holds
//! across restarts, plus SIGUSR1 / SIGUSR2 to the running worker so it takes
//! effect at once), and `quorum-worker detach` / `abort`, which give work
//! back: through the running worker (a request in the journal and SIGHUP;
//! the command waits until it is done), or, when none runs, directly (the
//! state directory locked, the reports sent, the journal updated).

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use quorum_proto::v1::ResultReport;

use crate::client::Client;
use crate::journal::{Journal, Request, TaskLine, TaskState};
use crate::reports::{GiveBack, given_back};
use crate::state::{StateDir, StateLock};

/// Opens the journal of the worker whose state directory is `state_dir`.
pub(crate) async fn open(state_dir: &Path) -> anyhow::Result<Journal> {
    let state = StateDir::open(state_dir).with_context(|| format!("cannot open {}", state_dir.display()))?;
    let path = state.journal_path();
    anyhow::ensure!(
        path.is_file(),
        "no worker journal in {} (has a worker run with this --state-dir?)",
        state_dir.display()
    );
    Journal::open_existing(&path).await.with_context(|| format!("cannot open {}", path.display()))
}

/// The pid of the worker running on this state directory, if one is.
pub(crate) async fn running_pid(journal: &Journal) -> anyhow::Result<Option<i32>> {
    let pid = journal.setting("pid").await?.and_then(|pid| pid.parse::<i32>().ok()).filter(|pid| *pid > 0);
    Ok(pid.filter(|pid| is_alive(*pid)))
}

#[cfg(unix)]
fn is_alive(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid).is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

#[cfg(not(unix))]
fn is_alive(_pid: i32) -> bool {
    false
}

/// What a signal tells the running worker.
#[derive(Clone, Copy)]
enum Order {
    Pause,
    Resume,
    /// The journal holds requests (detach, abort).
    Requests,
}

#[cfg(unix)]
fn signal(pid: i32, order: Order) -> anyhow::Result<()> {
    use rustix::process::{Pid, Signal, kill_process};
    let pid = Pid::from_raw(pid).context("invalid pid")?;
    let signal = match order {
        Order::Pause => Signal::USR1,
        Order::Resume => Signal::USR2,
        Order::Requests => Signal::HUP,
    };
    kill_process(pid, signal).with_context(|| format!("cannot signal the worker (pid {})", pid.as_raw_nonzero()))
}

#[cfg(not(unix))]
fn signal(_pid: i32, _order: Order) -> anyhow::Result<()> {
    Ok(())
}

/// Pauses (`true`) or resumes the worker; returns what happened, in words.
pub async fn set_paused(state_dir: &Path, paused: bool) -> anyhow::Result<String> {
    let journal = open(state_dir).await?;
    journal.set_setting("paused", if paused { "1" } else { "0" }).await?;
    let verb = if paused { "paused" } else { "resumed" };
    let message = match running_pid(&journal).await? {
        Some(pid) => {
            signal(pid, if paused { Order::Pause } else { Order::Resume })?;
            format!("{verb} (worker pid {pid})")
        }
        None => format!("{verb}; no worker is running, it takes effect when one starts"),
    };
    journal.close().await;
    Ok(message)
}

/// How long `detach` and `abort` wait for the running worker to act.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `quorum-worker detach URL`: reports what is finished, gives back the
/// rest and forgets the coordinator; returns what happened, in words.
pub async fn detach(state_dir: &Path, server: &str, ca_cert: Option<&[u8]>) -> anyhow::Result<String> {
    let journal = open(state_dir).await?;
    let Some(server) = attachment_key(&journal, server).await? else {
        anyhow::bail!("this worker is not attached to {server} (see `quorum-worker status`)");
    };
    let server = server.as_str();
    let mine: Vec<TaskLine> = journal.tasks().await?.into_iter().filter(|t| t.server == server).collect();
    let count = |states: &[TaskState]| mine.iter().filter(|t| states.contains(&t.state)).count();
    let (give_back, finished) = (count(&[TaskState::Received, TaskState::Running]), count(&[TaskState::Finished]));
    let said = format!(
        "detached from {server}: {give_back} tasks given back, {finished} finished results reported; \
         its identity and tasks are forgotten"
    );
    if let Some(pid) = running_pid(&journal).await? {
        running_attached(&journal, pid, server).await?;
        journal.request(&Request::Detach { server: server.to_string() }).await?;
        signal(pid, Order::Requests)?;
        let done = wait_for(|| async { Ok(!journal.attachments().await?.iter().any(|a| a.server == server)) }).await?;
        journal.close().await;
        return Ok(if done {
            format!("{said} (by the worker, pid {pid})")
        } else {
            format!(
                "the worker (pid {pid}) is detaching from {server}: it forgets it once the coordinator has \
                 accepted every report (is it reachable? see the worker's log)"
            )
        });
    }
    journal.close().await;
    let (_lock, journal) = lock(state_dir).await?;
    let mut reports = Vec::new();
    for task in journal.pending(server).await? {
        reports.push(match task.report {
            Some(report) => report,
            None => given_back(task.assignment.result_id, GiveBack::Detach),
        });
    }
    send_reports(&journal, server, &reports, ca_cert).await?;
    journal.detach(server).await?;
    journal.close().await;
    Ok(said)
}

/// `quorum-worker abort RESULT_ID`: gives that task back to its coordinator
/// (`server` when several coordinators have a result with that id).
pub async fn abort(
    state_dir: &Path,
    result_id: i64,
    server: Option<&str>,
    ca_cert: Option<&[u8]>,
) -> anyhow::Result<String> {
    let journal = open(state_dir).await?;
    // Any address of a coordinator group names it.
    let server = match server {
        Some(given) => Some(attachment_key(&journal, given).await?.unwrap_or_else(|| given.to_owned())),
        None => None,
    };
    let server = server.as_deref();
    let tasks: Vec<TaskLine> = journal
        .tasks()
        .await?
        .into_iter()
        .filter(|t| t.result_id == result_id && server.is_none_or(|s| s == t.server))
        .collect();
    let task = match tasks.as_slice() {
        [] => anyhow::bail!("no result {result_id} in this worker's journal (see `quorum-worker status`)"),
        [task] => task.clone(),
        _ => anyhow::bail!("several coordinators gave this worker a result {result_id}: say which with --server URL"),
    };
    anyhow::ensure!(
        matches!(task.state, TaskState::Received | TaskState::Running),
        "result {result_id} is {}: only queued or running tasks can be given back",
        crate::status::state_word(task.state)
    );
    let said = format!("gave back result {result_id} ({} / {}) to {}", task.project, task.work_unit_name, task.server);
    if let Some(pid) = running_pid(&journal).await? {
        running_attached(&journal, pid, &task.server).await?;
        journal.request(&Request::Abort { server: task.server.clone(), result_id }).await?;
        signal(pid, Order::Requests)?;
        let done = wait_for(|| async {
            let tasks = journal.tasks().await?;
            let state = tasks.iter().find(|t| t.server == task.server && t.result_id == result_id).map(|t| t.state);
            Ok(!matches!(state, Some(TaskState::Received | TaskState::Running)))
        })
        .await?;
        journal.close().await;
        anyhow::ensure!(done, "the worker (pid {pid}) has not given result {result_id} back yet; see its log");
        return Ok(format!("{said} (by the worker, pid {pid})"));
    }
    journal.close().await;
    let (_lock, journal) = lock(state_dir).await?;
    send_reports(&journal, &task.server, &[given_back(result_id, GiveBack::Abort)], ca_cert).await?;
    journal.forget(&task.server, &[result_id]).await?;
    journal.close().await;
    Ok(said)
}

/// The key of the attachment `url` names: its key, or one of its addresses
/// (a coordinator group's).
async fn attachment_key(journal: &Journal, url: &str) -> anyhow::Result<Option<String>> {
    let attachments = journal.attachments().await?;
    let named = attachments
        .iter()
        .find(|a| a.server == url)
        .or_else(|| attachments.iter().find(|a| a.addresses.iter().any(|address| address == url)));
    Ok(named.map(|a| a.server.clone()))
}

/// The running worker works for `server` (it acts only for those).
async fn running_attached(journal: &Journal, pid: i32, server: &str) -> anyhow::Result<()> {
    let servers = journal.setting("servers").await?.unwrap_or_default();
    anyhow::ensure!(
        servers.split(' ').any(|s| s == server),
        "the running worker (pid {pid}) does not work for {server}: stop it, then run this again"
    );
    Ok(())
}

/// Polls `done` until it holds or [`REQUEST_TIMEOUT`] passes; whether it held.
async fn wait_for<F, Fut>(mut done: F) -> anyhow::Result<bool>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let until = std::time::Instant::now() + REQUEST_TIMEOUT;
    while std::time::Instant::now() < until {
        if done().await? {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

/// The state directory locked (no worker may start meanwhile) and its journal.
async fn lock(state_dir: &Path) -> anyhow::Result<(StateLock, Journal)> {
    let state = StateDir::open(state_dir).with_context(|| format!("cannot open {}", state_dir.display()))?;
    let lock = state.lock()?;
    Ok((lock, open(state_dir).await?))
}

/// Sends `reports` to `server` with the host's token; every one must be
/// accepted (or refused as bad, which the coordinator will not take later
/// either). Nothing is changed in the journal here.
async fn send_reports(
    journal: &Journal,
    server: &str,
    reports: &[ResultReport],
    ca_cert: Option<&[u8]>,
) -> anyhow::Result<()> {
    let Some(identity) = journal.identity(server).await? else {
        // Never registered: the coordinator gave it nothing.
        return Ok(());
    };
    // A coordinator group: the address in use first, the next one when it is unreachable.
    let attachments = journal.attachments().await?;
    let addresses = match attachments.iter().find(|a| a.server == server) {
        Some(line) => crate::status::in_use_first(line),
        None => vec![server.to_owned()],
    };
    let mut clients = Vec::with_capacity(addresses.len());
    for address in &addresses {
        let mut client = Client::new(address, ca_cert)?;
        client.set_token(&identity.token)?;
        clients.push(client);
    }
    let mut current = 0;
    let mut rest = reports;
    while !rest.is_empty() {
        let (batch, later) = rest.split_at(crate::reports::batch_len(rest.iter()));
        rest = later;
        let reported = loop {
            match clients[current].report_results(batch).await {
                Ok(reported) => break reported,
                Err(status) if crate::client::is_unreachable(status.code()) && current + 1 < clients.len() => {
                    current += 1;
                }
                Err(status) => anyhow::bail!(
                    "cannot report to {server}: {:?}: {}; nothing was changed, try again when it is reachable",
                    status.code(),
                    status.message()
                ),
            }
        };
        let settled: Vec<i64> =
            reported.accepted.iter().copied().chain(reported.rejected.iter().map(|r| r.0)).collect();
        let missing: Vec<i64> = batch.iter().map(|r| r.result_id).filter(|id| !settled.contains(id)).collect();
        anyhow::ensure!(
            missing.is_empty(),
            "{server} did not accept results {missing:?}; nothing was changed, try again"
        );
    }
    Ok(())
}
