//! The transitioner loop: wakes at the next deadline of a copy in progress and
//! runs the store's transitioner step until nothing is left to do.
//!
//! The step (`Store::run_transitioner`) is what tests drive with their own
//! `now`; this loop only decides when to call it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::rpc::Changes;
use crate::store::{self, Store};

/// Longest sleep between two passes: bounds how late a deadline created after
/// the loop went to sleep (by a project with a shorter deadline) is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Runs passes until `shutdown` completes; finishes the current pass first.
pub async fn run(store: Store, clock: Arc<dyn Clock>, changes: Changes, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let sleep = match pass(&store, clock.as_ref(), &changes).await {
            Ok(sleep) => sleep,
            Err(error) => {
                tracing::error!(%error, "transitioner pass failed; retrying");
                MAX_SLEEP
            }
        };
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Runs the transitioner until no expired copy remains; returns how long to
/// sleep until the next deadline.
async fn pass(store: &Store, clock: &dyn Clock, changes: &Changes) -> store::Result<Duration> {
    loop {
        let now = clock.now();
        let step = store.run_transitioner(now).await?;
        if step.work_units > 0 {
            tracing::info!(n_work_units = step.work_units, "deadlines passed; work units updated");
            changes.notify();
        }
        if !step.more {
            let next = store.next_deadline().await?;
            let wait = next.map_or(MAX_SLEEP, |deadline| {
                Duration::from_millis(u64::try_from(deadline.0 - now.0 + 1).unwrap_or(0))
            });
            return Ok(wait.min(MAX_SLEEP));
        }
    }
}
