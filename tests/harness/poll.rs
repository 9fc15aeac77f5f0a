//! [`poll_until`]: waiting for a state that no event reports (a copy leaving
//! "in progress", a line in a worker's log) by asking again at a short
//! interval. The interval only paces the questions; the overall bound is
//! [`STEP_TIMEOUT`], a guard against hangs, never a synchronisation.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::STEP_TIMEOUT;

/// Calls `probe` every `interval` until it returns `Ok(value)`, then returns
/// the value. `Err(state)` means "not yet" and describes what was seen; after
/// [`STEP_TIMEOUT`] the test panics with `what` and the last state.
pub async fn poll_until<T, F, Fut>(what: &str, interval: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(state) => {
                assert!(started.elapsed() < STEP_TIMEOUT, "waited {STEP_TIMEOUT:?} for {what}; last state: {state}")
            }
        }
        tokio::time::sleep(interval).await;
    }
}
