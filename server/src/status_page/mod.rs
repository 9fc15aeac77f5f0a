//! The live status page: a read-only HTTP server of its own
//! (`--status-page ADDR`) for operators' browsers, BOINC's server_status.php
//! done live.
//!
//! - `GET /`: one HTML page (`page.html`, embedded) with the current
//!   [`Snapshot`] inlined as JSON; its small script renders it (projects
//!   with progress bars, batches, the throughput plot as inline SVG, hosts,
//!   errors by message) and then polls `GET /status.json` every two seconds,
//!   re-rendering without a reload. One renderer, in the page: the server
//!   never builds HTML from data, so nothing a host registered can become
//!   markup (the script sets text only; the inlined JSON escapes `<`, `>`, `&`).
//! - `GET /status.json`: the same [`Snapshot`] (fields documented there and
//!   in the README); projects carry the fields of `quorum status --json`.
//! - Anything else: 404; another method on these paths: 405.
//!
//! Access: `http::Access`, as for the metrics: open on loopback, an
//! admin API token on any other address.
//!
//! The numbers come from the store's views (see `snapshot`); the throughput
//! series is sampled in the process (see `throughput`). Both tasks (server
//! and sampler) end when the coordinator starts shutting down.

mod snapshot;
mod throughput;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;

pub use snapshot::Snapshot;
use snapshot::ThroughputSeries;
use throughput::{Sample, Throughput};

use crate::http::{self, Access, Endpoint, Refusal};
use crate::rpc::Context;

/// The page, with [`SNAPSHOT_SLOT`] where the first snapshot goes.
const PAGE: &str = include_str!("page.html");

/// Where [`PAGE`] takes the inlined snapshot (inside a JSON script element).
const SNAPSHOT_SLOT: &str = "{{SNAPSHOT}}";

/// What the handlers share.
#[derive(Clone)]
struct Shared {
    ctx: Context,
    access: Access,
    /// Written by the sampler, read by every request (never held across an await).
    throughput: Arc<Mutex<Throughput>>,
}

/// The running status page.
pub struct StatusPage {
    endpoint: Endpoint,
    sampler: JoinHandle<()>,
}

impl StatusPage {
    /// Binds `addr`, logs `status page on http://ADDR/` (the bound address,
    /// also when `addr` has port 0) and serves until `ctx` sees shutdown.
    pub async fn start(addr: SocketAddr, ctx: Context) -> Result<StatusPage, http::Error> {
        // The access depends on the bound address: decided before binding from the asked one (the same IP).
        let access = Access::for_addr(addr);
        let shared = Shared { ctx: ctx.clone(), access, throughput: Arc::new(Mutex::new(Throughput::new())) };
        let app = Router::new()
            .route("/", get(page))
            .route("/status.json", get(status_json))
            .fallback(|uri: Uri| async move { http::not_found(&uri, "/ and /status.json") })
            .with_state(shared.clone());
        let endpoint = Endpoint::start("status page", addr, app, ctx).await?;
        let bound = endpoint.addr();
        tracing::info!(addr = %bound, token_required = access == Access::AdminToken, "status page on http://{bound}/");
        let sampler = tokio::spawn(sample(shared.ctx.clone(), shared.throughput.clone()));
        Ok(StatusPage { endpoint, sampler })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.endpoint.addr()
    }

    /// Waits, once shutdown has started, for open requests to finish, at
    /// most `grace`; then closes what is left.
    pub async fn stop(self, grace: Duration) {
        let StatusPage { endpoint, sampler } = self;
        endpoint.stop(grace).await;
        sampler.abort();
        let _ = sampler.await;
    }
}

/// Samples the cumulative counts every `SAMPLE_INTERVAL` until shutdown.
async fn sample(ctx: Context, throughput: Arc<Mutex<Throughput>>) {
    let mut interval = tokio::time::interval(throughput::SAMPLE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = ctx.stopped() => return,
            _ = interval.tick() => {}
        }
        match ctx.store.project_status(None).await {
            Ok(statuses) => {
                let sample = Sample {
                    at: ctx.clock.now(),
                    results_valid: statuses.iter().map(|status| status.results_valid).sum(),
                    results_error: statuses.iter().map(|status| status.results_error).sum(),
                };
                throughput.lock().unwrap_or_else(PoisonError::into_inner).record(sample);
            }
            Err(error) => tracing::warn!(%error, "sampling the throughput for the status page"),
        }
    }
}

/// `GET /`.
async fn page(State(shared): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    match shared.snapshot(&headers, &uri).await {
        Ok(snapshot) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                // A `?token=` must not leak to other sites.
                (header::REFERRER_POLICY, "no-referrer"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
                ),
            ],
            render(&snapshot),
        )
            .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// `GET /status.json`.
async fn status_json(State(shared): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    match shared.snapshot(&headers, &uri).await {
        Ok(snapshot) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            json(&snapshot),
        )
            .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

impl Shared {
    /// Checks the caller, then reads the snapshot.
    async fn snapshot(&self, headers: &HeaderMap, uri: &Uri) -> Result<Snapshot, Refusal> {
        self.access.check(&self.ctx, headers, uri).await?;
        let series = ThroughputSeries::of(&self.throughput.lock().unwrap_or_else(PoisonError::into_inner));
        Ok(Snapshot::read(&self.ctx.store, series, self.ctx.clock.now()).await?)
    }
}

fn json(snapshot: &Snapshot) -> String {
    serde_json::to_string(snapshot).expect("a snapshot (strings, numbers, lists) always serialises")
}

/// The page with `snapshot` inlined. `<`, `>` and `&` are escaped (JSON's
/// `\u003c`...), so no text in it can close the script element.
fn render(snapshot: &Snapshot) -> String {
    let inlined = json(snapshot).replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026");
    PAGE.replacen(SNAPSHOT_SLOT, &inlined, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlined_text_cannot_close_the_script() {
        let hostile = "</script><script>alert(1)</script>&amp;";
        let snapshot = Snapshot {
            generated_unix_ms: 1,
            projects: Vec::new(),
            errors: vec![snapshot::ErrorGroup {
                project: "p".to_owned(),
                message: hostile.to_owned(),
                n_results: 1,
                n_hosts: 1,
                n_work_units: 1,
                example_work_units: vec![hostile.to_owned()],
                latest_unix_ms: 1,
            }],
            hosts: snapshot::Hosts { n_hosts: 0, n_active: 0, active_within_secs: 600, list: Vec::new() },
            throughput: ThroughputSeries::of(&Throughput::new()),
        };
        let page = render(&snapshot);
        assert!(!page.contains(SNAPSHOT_SLOT), "the slot is filled");
        assert!(!page.contains(hostile) && !page.contains("alert(1)</script>"), "hostile text inlined as markup");
        assert_eq!(page.matches("</script>").count(), PAGE.matches("</script>").count());
        let start = page.find("{\"generated_unix_ms\"").expect("the snapshot is inlined");
        let end = start + page[start..].find("</script>").expect("its script element closes");
        let parsed: serde_json::Value = serde_json::from_str(&page[start..end]).expect("the inlined JSON parses");
        assert_eq!(parsed["errors"][0]["message"], hostile, "and reads back as the same text");
    }
}
