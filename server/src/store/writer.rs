//! Group commit: one task owns the scheduler's write connection and runs the
//! write calls of many concurrent RPCs (`RequestWork`, `ReportResults`)
//! together: one SQLite transaction, one fsync, and a few set-based
//! statements for the whole group (`scheduling::run_calls`), not a few per
//! call.
//!
//! A call that must be refused (a report the domain refuses) is decided
//! before anything is written and nothing of its work is written (only its
//! host's last contact, at most once a minute: the host did call); the
//! others go on.
//! Answers are sent only after the group's `COMMIT` has returned, i.e. once
//! the transaction is on disk (WAL with `synchronous=FULL`): an acknowledged
//! report survives a power cut exactly as with one transaction per call. If
//! a statement or the commit fails, every call of the group gets an error and
//! none of them changed anything.
//!
//! Calls queue in a channel while a group runs; the next group takes every
//! call waiting, up to [`MAX_GROUP`]. Under light load a group is a single
//! call (no added latency); under heavy load the cost of a commit and of each
//! statement is shared by many.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::{mpsc, oneshot};

use std::sync::Arc;

use super::backend::{Connection, WriterOptions};
use super::frontiers::Frontiers;
use super::scheduling::{self, Answer, Call};
use super::{Error, Result};
use crate::domain::Timestamp;
use crate::validators::Validators;

/// Most calls run together.
pub(super) const MAX_GROUP: usize = 128;
/// Times a group that conflicted with another coordinator's transaction is run.
const CONFLICT_ATTEMPTS: usize = 5;
/// Calls that may wait for the writer; callers wait for room beyond it.
const QUEUE: usize = 1024;

/// What the writer records of every group it runs: histograms shared with
/// the metrics endpoint (clones share their counts).
#[derive(Clone)]
pub struct WriterMetrics {
    /// Calls per group: 1, 2, 4... [`MAX_GROUP`].
    pub group_calls: Histogram,
    /// From `BEGIN` to the end of `COMMIT` (what the group's callers wait), seconds.
    pub group_seconds: Histogram,
    /// The `COMMIT` alone (the fsync), seconds.
    pub commit_seconds: Histogram,
}

impl Default for WriterMetrics {
    fn default() -> WriterMetrics {
        let seconds = || Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        WriterMetrics {
            group_calls: Histogram::new(exponential_buckets(1.0, 2.0, MAX_GROUP.ilog2() as u16 + 1)),
            group_seconds: seconds(),
            commit_seconds: seconds(),
        }
    }
}

/// What the writer is asked.
pub(super) enum Job {
    Write(Request),
    /// Stop after the calls already queued, closing the connection.
    Close(oneshot::Sender<()>),
}

/// A write call, when it was made, and where its answer goes.
pub(super) struct Request {
    pub call: Call,
    pub now: Timestamp,
    pub reply: oneshot::Sender<Result<Answer>>,
}

/// Starts the writer on `connection` (opened with `options`), on a thread
/// of its own; returns where to send calls.
///
/// The writer waits for SQLite after every statement (sqlx runs each
/// connection on a thread of its own). On the shared runtime, each of those
/// wake-ups could wait for a worker busy with gRPC; on its own
/// single-threaded runtime it goes on at once.
pub(super) fn spawn(
    connection: Connection,
    options: WriterOptions,
    validators: Validators,
    secret: u64,
    frontiers: Arc<Frontiers>,
    metrics: WriterMetrics,
) -> Result<mpsc::Sender<Job>> {
    let (sender, receiver) = mpsc::channel(QUEUE);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Error::Writer)?;
    let writer = Writer { connection: Some(connection), options, validators, secret, frontiers, metrics };
    std::thread::Builder::new()
        .name("quorum-writer".to_owned())
        .spawn(move || runtime.block_on(writer.run(receiver)))
        .map_err(Error::Writer)?;
    Ok(sender)
}

/// The writer task's state.
struct Writer {
    /// `None` after a group failed: the next group opens a new one, so a
    /// failure (a full disk) never leaves a connection inside a broken
    /// transaction; calls succeed again once SQLite can write.
    connection: Option<Connection>,
    options: WriterOptions,
    validators: Validators,
    secret: u64,
    frontiers: Arc<Frontiers>,
    metrics: WriterMetrics,
}

impl Writer {
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
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
                self.run_group(&mut group).await;
            }
        }
        if let Some(connection) = self.connection.take()
            && let Err(error) = connection.close().await
        {
            tracing::warn!(%error, "closing the write connection");
        }
        if let Some(done) = close {
            let _ = done.send(());
        }
    }

    /// Runs `group` in one transaction, commits, then answers every call.
    async fn run_group(&mut self, group: &mut Vec<Request>) {
        let (calls, replies): (Vec<(Call, Timestamp)>, Vec<_>) =
            group.drain(..).map(|request| ((request.call, request.now), request.reply)).unzip();
        // The group's clock: the latest call's (calls are made a few
        // milliseconds apart at most; none is answered as if earlier than it was made).
        let now = calls.iter().map(|(_, now)| *now).max().unwrap_or(Timestamp(0));
        let calls: Vec<Call> = calls.into_iter().map(|(call, _)| call).collect();
        let started = std::time::Instant::now();
        let mut outcome = self.transaction(&calls, now).await;
        // A conflict with another coordinator's transaction (PostgreSQL)
        // left nothing behind: the group runs again, a few times.
        for _ in 1..CONFLICT_ATTEMPTS {
            let Err(Error::Conflict(reason)) = &outcome else { break };
            tracing::debug!(%reason, n_calls = calls.len(), "group conflicted with another transaction; running it again");
            outcome = self.transaction(&calls, now).await;
        }
        let elapsed = started.elapsed();
        self.metrics.group_calls.observe(calls.len() as f64);
        self.metrics.group_seconds.observe(elapsed.as_secs_f64());
        match outcome {
            Ok(answers) => {
                tracing::debug!(n_calls = calls.len(), elapsed_us = elapsed.as_micros() as u64, "group committed");
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // A caller that went away (its RPC was cancelled) needs no answer.
                    let _ = reply.send(answer);
                }
            }
            Err(error) => {
                tracing::error!(%error, n_calls = replies.len(), "group transaction failed; nothing was kept");
                // SQLite rolls back what the closed connection had begun.
                if let Some(connection) = self.connection.take() {
                    connection.close_hard().await;
                }
                for reply in replies {
                    let _ = reply.send(Err(match &error {
                        Error::CannotWrite(message) => Error::CannotWrite(message.clone()),
                        Error::Unavailable(message) => Error::Unavailable(message.clone()),
                        Error::Conflict(message) => Error::Conflict(message.clone()),
                        other => Error::GroupCommit(other.to_string()),
                    }));
                }
            }
        }
    }

    /// The group's transaction, on the connection (opened again if the last group failed).
    async fn transaction(&mut self, calls: &[Call], now: Timestamp) -> Result<Vec<Result<Answer>>> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            empty @ None => {
                let connection = self.options.connect().await?;
                tracing::info!("write connection opened again after a failed group");
                empty.insert(connection)
            }
        };
        let mut tx = connection.begin_group().await?;
        let (answers, found) =
            scheduling::run_calls(&mut tx, &self.validators, self.secret, &self.frontiers, calls, now).await?;
        let commit = std::time::Instant::now();
        tx.commit().await?;
        self.metrics.commit_seconds.observe(commit.elapsed().as_secs_f64());
        // Only what was committed moves the hosts' frontiers.
        found.keep(&self.frontiers);
        Ok(answers)
    }
}
