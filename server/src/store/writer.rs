//! Group commit: one task owns the scheduler's write connection and runs the
//! write requests of many concurrent RPCs (`RequestWork`, `ReportResults`)
//! in one SQLite transaction, so that one fsync makes all of them durable.
//!
//! Each request runs in a savepoint of the group's transaction: a request
//! that fails (a refused report) is rolled back to its savepoint and answered
//! with its error while the others go on; nothing it did is kept. Answers are
//! sent only after the group's `COMMIT` has returned, i.e. once the
//! transaction is on disk (WAL with `synchronous=FULL`): an acknowledged
//! report survives a power cut exactly as with one transaction per call. If
//! the commit fails, every request of the group gets an error and none of
//! them changed anything.
//!
//! Requests queue in a channel while a group runs; the next group takes
//! every request waiting, up to [`MAX_GROUP`]. Under light load a group is a
//! single request (no added latency); under heavy load the cost of a commit
//! is shared by many.

use std::collections::VecDeque;

use sqlx::{Acquire as _, Connection as _, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::scheduling::{self, ReportInput, ReportSummary, WorkReply, WorkRequest};
use super::{Error, Result};
use crate::domain::{HostId, Timestamp};
use crate::validators::Validators;

/// Most requests committed together.
pub(super) const MAX_GROUP: usize = 64;
/// Requests that may wait for the writer; callers wait for room beyond it.
const QUEUE: usize = 1024;

/// What the writer is asked.
pub(super) enum Job {
    Write(Request),
    /// Stop after the requests already queued, closing the connection.
    Close(oneshot::Sender<()>),
}

/// A write request and where its answer goes.
pub(super) enum Request {
    RequestWork { host: HostId, request: WorkRequest, now: Timestamp, reply: oneshot::Sender<Result<WorkReply>> },
    Report { host: HostId, reports: Vec<ReportInput>, now: Timestamp, reply: oneshot::Sender<Result<ReportSummary>> },
}

/// A request that ran: its answer, to be sent once the group is committed.
enum Done {
    RequestWork(oneshot::Sender<Result<WorkReply>>, Result<WorkReply>),
    Report(oneshot::Sender<Result<ReportSummary>>, Result<ReportSummary>),
}

impl Done {
    fn is_ok(&self) -> bool {
        match self {
            Done::RequestWork(_, result) => result.is_ok(),
            Done::Report(_, result) => result.is_ok(),
        }
    }

    /// Sends the answer, or `error` instead of a success (the group did not commit).
    fn send(self, error: Option<&str>) {
        // A caller that went away (its RPC was cancelled) needs no answer.
        let _ = match self {
            Done::RequestWork(reply, result) => reply.send(unless_failed(result, error)).map_err(drop),
            Done::Report(reply, result) => reply.send(unless_failed(result, error)).map_err(drop),
        };
    }
}

/// `result`, unless the group's transaction failed with `error`: then nothing
/// the request did was kept, and it fails too.
fn unless_failed<T>(result: Result<T>, error: Option<&str>) -> Result<T> {
    match (result, error) {
        (Ok(_), Some(error)) => Err(Error::GroupCommit(error.to_owned())),
        (result, _) => result,
    }
}

/// Starts the writer task on `connection`; returns where to send requests.
pub(super) fn spawn(connection: SqliteConnection, validators: Validators, secret: u64) -> mpsc::Sender<Job> {
    let (sender, receiver) = mpsc::channel(QUEUE);
    tokio::spawn(run(connection, receiver, validators, secret));
    sender
}

async fn run(mut connection: SqliteConnection, mut jobs: mpsc::Receiver<Job>, validators: Validators, secret: u64) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut close = None;
    while close.is_none() {
        let Some(first) = jobs.recv().await else { break };
        for job in std::iter::once(first).chain(std::iter::from_fn(|| jobs.try_recv().ok())) {
            match job {
                Job::Close(done) => {
                    close = Some(done);
                    break;
                }
                Job::Write(request) => group.push(request),
            }
            if group.len() == MAX_GROUP {
                break;
            }
        }
        if !group.is_empty() {
            run_group(&mut connection, &mut group, &validators, secret).await;
        }
    }
    if let Err(error) = connection.close().await {
        tracing::warn!(%error, "closing the write connection");
    }
    if let Some(done) = close {
        let _ = done.send(());
    }
}

/// Runs `group` in one transaction, each request in its savepoint, commits,
/// then answers every request.
async fn run_group(connection: &mut SqliteConnection, group: &mut Vec<Request>, validators: &Validators, secret: u64) {
    let mut done = Vec::with_capacity(group.len());
    let mut pending: VecDeque<Request> = group.drain(..).collect();
    let outcome = async {
        let mut tx = connection.begin_with("BEGIN IMMEDIATE").await?;
        while let Some(job) = pending.pop_front() {
            let mut savepoint = (&mut tx).begin().await?;
            let ran = match job {
                Request::RequestWork { host, request, now, reply } => {
                    let result =
                        scheduling::request_work(&mut savepoint, validators, secret, host, &request, now).await;
                    Done::RequestWork(reply, result)
                }
                Request::Report { host, reports, now, reply } => {
                    let result = scheduling::record_reports(&mut savepoint, validators, host, &reports, now).await;
                    Done::Report(reply, result)
                }
            };
            // Kept before the savepoint ends: if that fails, the request is
            // answered with the group's error.
            let kept = ran.is_ok();
            done.push(ran);
            if kept {
                savepoint.commit().await?;
            } else {
                savepoint.rollback().await?;
            }
        }
        tx.commit().await?;
        Ok::<_, sqlx::Error>(())
    }
    .await;
    let error = outcome.err().map(|error| {
        tracing::error!(%error, n_requests = done.len() + pending.len(), "group transaction failed; nothing was kept");
        error.to_string()
    });
    for ran in done {
        ran.send(error.as_deref());
    }
    // Requests not reached when the transaction failed.
    for job in pending {
        let error = Error::GroupCommit(error.clone().unwrap_or_default());
        let _ = match job {
            Request::RequestWork { reply, .. } => reply.send(Err(error)).map_err(drop),
            Request::Report { reply, .. } => reply.send(Err(error)).map_err(drop),
        };
    }
}
