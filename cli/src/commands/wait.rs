//! `quorum wait PROJECT [--timeout D]`: blocks, through the server-side
//! `WaitProject`, until every work unit of the project has ended. A
//! coordinator that restarts meanwhile (UNAVAILABLE, a dropped connection)
//! is called again with backoff, within the timeout.

use std::io::Write;
use std::time::{Duration, Instant};

use quorum_proto::v1;

use super::Context;
use crate::client::Coordinator;
use crate::progress::{Progress, ProgressMode};

/// The longest single `WaitProject` call; longer waits make several.
const LONGEST_CALL: Duration = Duration::from_secs(60);
/// The longest call while progress is shown: how fresh its counts are.
const PROGRESS_CALL: Duration = Duration::from_secs(2);

/// The first and the longest pause before calling a coordinator that was
/// unavailable again.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const LONGEST_BACKOFF: Duration = Duration::from_secs(5);

/// Whether a failed call may succeed if made again: the coordinator said
/// UNAVAILABLE (it is shutting down, or cannot be reached), or the
/// connection failed under the call (a status made here from a transport
/// error carries that error as its source; one the coordinator sent has none).
fn is_transient(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable => true,
        tonic::Code::Unknown | tonic::Code::Cancelled => std::error::Error::source(status).is_some(),
        _ => false,
    }
}

/// How much longer than its own timeout the CLI gives a `WaitProject` call
/// before it decides that the coordinator is not answering.
const ANSWER_GRACE: Duration = Duration::from_secs(30);

pub async fn run(ctx: &Context, project: &str, timeout: Option<Duration>) -> anyhow::Result<()> {
    let coordinator = ctx.connect().await?;
    tracing::info!(project, "waiting for the project's work units to end");
    let mut progress = Progress::new(ctx.progress, "wait", project, "work units ended");
    // Shown progress needs fresh counts: shorter calls.
    let poll = if ctx.progress == ProgressMode::Off { LONGEST_CALL } else { PROGRESS_CALL };
    let status = wait_until_ended(&coordinator, project, timeout, poll, |status| {
        progress.update(
            status.work_units_done + status.work_units_failed,
            status.work_units_total,
            &format!("{} results in progress", status.results_in_progress),
        );
        Ok(())
    })
    .await;
    progress.finish();
    let status = status?;
    let mut out = super::stdout();
    super::status::print_statuses(&mut out, ctx, std::slice::from_ref(&status))?;
    out.flush()?;
    if status.work_units_failed > 0 {
        return Err(crate::Unmet(format!(
            "project '{project}' ended with {} failed work units of {} (see `quorum errors {project}`)",
            status.work_units_failed, status.work_units_total
        ))
        .into());
    }
    Ok(())
}

/// Waits until the project has no open work unit, or fails once `timeout`
/// (None: no limit) has passed. Each `WaitProject` call lasts at most `poll`;
/// `progress` sees the status after each call and may abort the wait.
pub async fn wait_until_ended(
    coordinator: &Coordinator,
    project: &str,
    timeout: Option<Duration>,
    poll: Duration,
    mut progress: impl FnMut(&v1::ProjectStatus) -> anyhow::Result<()>,
) -> anyhow::Result<v1::ProjectStatus> {
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let remaining = timeout.map(|timeout| timeout.saturating_sub(started.elapsed()));
        let call_timeout = remaining.map_or(poll, |remaining| remaining.min(poll));
        let call_started = Instant::now();
        let mut client = coordinator.client();
        let call = client.wait_project(v1::WaitProjectRequest {
            project: project.to_owned(),
            timeout_ms: u64::try_from(call_timeout.as_millis()).unwrap_or(u64::MAX),
        });
        let response = tokio::time::timeout(call_timeout + ANSWER_GRACE, call).await.map_err(|_| {
            anyhow::anyhow!(
                "the coordinator at {} did not answer WaitProject within {}",
                coordinator.url(),
                humantime::format_duration(call_timeout + ANSWER_GRACE)
            )
        })?;
        let response = match response {
            Ok(response) => response.into_inner(),
            Err(status) if is_transient(&status) && timeout.is_none_or(|timeout| started.elapsed() < timeout) => {
                tracing::warn!(
                    error = %coordinator.error(status),
                    retry_in = ?backoff,
                    "the coordinator is unavailable; calling again"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(LONGEST_BACKOFF);
                continue;
            }
            Err(status) => return Err(coordinator.error(status)),
        };
        backoff = FIRST_BACKOFF;
        let status = response
            .projects
            .into_iter()
            .find(|status| status.name == project)
            .ok_or_else(|| anyhow::anyhow!("the coordinator returned no status for project '{project}'"))?;
        progress(&status)?;
        if status.work_units_open == 0 {
            return Ok(status);
        }
        if timeout.is_some_and(|timeout| started.elapsed() >= timeout) {
            return Err(crate::Unmet(format!(
                "timed out after {}: project '{project}' still has {} open work units of {} \
                 ({} done, {} failed)",
                humantime::format_duration(Duration::from_secs(started.elapsed().as_secs())),
                status.work_units_open,
                status.work_units_total,
                status.work_units_done,
                status.work_units_failed
            ))
            .into());
        }
        // WaitProject returns early only when the project ended; should a
        // coordinator return at once anyway, do not hammer it.
        if call_started.elapsed() < Duration::from_millis(100) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
