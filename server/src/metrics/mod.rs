//! Prometheus metrics on an HTTP port of their own (`--metrics ADDR`):
//! `GET /metrics` in the Prometheus text format (0.0.4), encoded by the
//! Prometheus project's own client (`prometheus-client`).
//!
//! Two kinds of numbers, named by Prometheus' conventions (counters end in
//! `_total`, units are in the names):
//! - Counted in the process as things happen (they start at zero with it,
//!   as Prometheus expects of counters): gRPC calls by method and code with
//!   their latency (`grpc`, a tower layer), copies dispatched and reports
//!   accepted by outcome (the scheduler's handlers), the writer's group sizes
//!   and durations (`store::WriterMetrics`).
//! - Read from the store at each scrape (gauges): work units and results by
//!   state per project (the numbers of `quorum status --json`), hosts
//!   registered and attached, the database's size on disk. A scrape is a
//!   few aggregate queries, as `quorum status` is; scrapes run one at a time.
//!
//! Access is the status page's (`http::Access`): open on loopback, an admin
//! API token on any other address (Prometheus sends it with
//! `authorization: {credentials: TOKEN}`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `quorum_rpc_duration_seconds` | histogram | service, method, code |
//! | `quorum_results_dispatched_total` | counter | |
//! | `quorum_results_reported_total` | counter | outcome (`success`, `client_error`) |
//! | `quorum_file_sent_bytes_total` | counter | path (`grpc`: `DownloadFile`; `p2p`: the seed, `--share-files`) |
//! | `quorum_writer_group_calls` | histogram | |
//! | `quorum_writer_group_duration_seconds` | histogram | |
//! | `quorum_writer_commit_duration_seconds` | histogram | |
//! | `quorum_work_units` | gauge | project, state (`open`, `done`, `failed`) |
//! | `quorum_results` | gauge | project, state (`unsent`, `in_progress`, `over`) |
//! | `quorum_results_over` | gauge | project, outcome (`valid`, `invalid`, `error`, `no_reply`, `reported`) |
//! | `quorum_hosts` | gauge | |
//! | `quorum_hosts_active` | gauge | |
//! | `quorum_database_size_bytes` | gauge | |
//! | `quorum_build_info` | gauge (1) | version |

pub mod grpc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::http::{self, Access, Endpoint, Refusal};
use crate::rpc::Context;
use crate::store::{self, Store};

/// The report outcomes counted by `quorum_results_reported_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Reported {
    Success,
    ClientError,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectState {
    project: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectOutcome {
    project: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: &'static str,
}

/// The coordinator's metrics: handles to record into, and the registry
/// that encodes them. Cheap to clone (every metric is shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    rpc: grpc::RpcDurations,
    dispatched: Counter,
    reported: Family<OutcomeLabel, Counter>,
    file_sent: Family<PathLabel, Counter>,
    gauges: Gauges,
    /// Scrapes one at a time: each sets the gauges, then encodes.
    scrape: Arc<tokio::sync::Mutex<()>>,
}

/// The gauges set from the store at each scrape.
#[derive(Clone, Default)]
struct Gauges {
    work_units: Family<ProjectState, Gauge>,
    results: Family<ProjectState, Gauge>,
    results_over: Family<ProjectOutcome, Gauge>,
    hosts: Gauge,
    hosts_active: Gauge,
    database_bytes: Gauge,
}

impl Metrics {
    /// The metrics of a coordinator over `store` (whose writer records its
    /// groups into histograms registered here).
    pub fn new(store: &Store) -> Metrics {
        let mut registry = Registry::with_prefix("quorum");
        let rpc = grpc::rpc_durations();
        registry.register_with_unit(
            "rpc_duration",
            "gRPC calls by service, method and status code, from request to trailers",
            Unit::Seconds,
            rpc.clone(),
        );
        let dispatched = Counter::default();
        registry.register(
            "results_dispatched",
            "Copies of work units sent to hosts (again after a loss included)",
            dispatched.clone(),
        );
        let reported = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "results_reported",
            "Reports of results acknowledged to hosts, by outcome (a report sent again counts again)",
            reported.clone(),
        );
        let file_sent = Family::<PathLabel, Counter>::default();
        registry.register_with_unit(
            "file_sent",
            "Bytes of input files sent to workers, by path (gRPC downloads, or the peer-to-peer seed)",
            Unit::Bytes,
            file_sent.clone(),
        );
        let writer = store.writer_metrics();
        registry.register(
            "writer_group_calls",
            "Scheduler calls committed together in one transaction (group commit)",
            writer.group_calls.clone(),
        );
        registry.register_with_unit(
            "writer_group_duration",
            "Time of a group's transaction, from BEGIN to the end of COMMIT (what its calls wait)",
            Unit::Seconds,
            writer.group_seconds.clone(),
        );
        registry.register_with_unit(
            "writer_commit_duration",
            "Time of a group's COMMIT (the fsync that makes its calls durable)",
            Unit::Seconds,
            writer.commit_seconds.clone(),
        );
        let gauges = Gauges::default();
        registry.register("work_units", "Work units by project and state", gauges.work_units.clone());
        registry.register(
            "results",
            "Results (copies of work units) by project and server state",
            gauges.results.clone(),
        );
        registry.register(
            "results_over",
            "Results over by project and outcome (reported: a success not compared yet)",
            gauges.results_over.clone(),
        );
        registry.register("hosts", "Volunteer hosts registered", gauges.hosts.clone());
        registry.register(
            "hosts_active",
            "Volunteer hosts in contact within the last 10 minutes (attached)",
            gauges.hosts_active.clone(),
        );
        registry.register_with_unit(
            "database_size",
            "The SQLite database and its write-ahead log on disk",
            Unit::Bytes,
            gauges.database_bytes.clone(),
        );
        let build = Family::<Version, Gauge>::default();
        build.get_or_create(&Version { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "The coordinator's version (the value is 1)", build);
        Metrics { registry: Arc::new(registry), rpc, dispatched, reported, file_sent, gauges, scrape: Arc::default() }
    }

    /// The tower layer that times every gRPC call.
    pub fn rpc_layer(&self) -> grpc::RpcLayer {
        grpc::RpcLayer::new(self.rpc.clone())
    }

    /// `n` copies were sent to hosts.
    pub fn dispatched(&self, n: usize) {
        self.dispatched.inc_by(n as u64);
    }

    /// `n` reports with `outcome` were acknowledged.
    pub fn reported(&self, outcome: Reported, n: u64) {
        let outcome = match outcome {
            Reported::Success => "success",
            Reported::ClientError => "client_error",
        };
        self.reported.get_or_create(&OutcomeLabel { outcome }).inc_by(n);
    }

    /// `n` bytes of an input file were sent by `DownloadFile`.
    pub fn file_sent_grpc(&self, n: u64) {
        self.file_sent.get_or_create(&PathLabel { path: "grpc" }).inc_by(n);
    }

    /// Sets the gauges from `store` as of `now` (and the seed's bytes sent,
    /// `p2p_sent`, counted by the engine), then encodes everything.
    pub async fn scrape(
        &self,
        store: &Store,
        now: crate::domain::Timestamp,
        p2p_sent: Option<u64>,
    ) -> store::Result<String> {
        let _one_at_a_time = self.scrape.lock().await;
        if let Some(sent) = p2p_sent {
            let counter = self.file_sent.get_or_create(&PathLabel { path: "p2p" });
            counter.inc_by(sent.saturating_sub(counter.get()));
        }
        let statuses = store.project_status(None).await?;
        let hosts = store.host_counts(now).await?;
        let database_bytes = store.size_on_disk().await?;
        let gauges = &self.gauges;
        // Cleared first: a deleted project's series end.
        gauges.work_units.clear();
        gauges.results.clear();
        gauges.results_over.clear();
        for status in &statuses {
            let set = |family: &Family<ProjectState, Gauge>, state, n: u64| {
                family.get_or_create(&ProjectState { project: status.name.clone(), state }).set(gauge(n));
            };
            set(&gauges.work_units, "open", status.work_units_open);
            set(&gauges.work_units, "done", status.work_units_done);
            set(&gauges.work_units, "failed", status.work_units_failed);
            set(&gauges.results, "unsent", status.results_unsent);
            set(&gauges.results, "in_progress", status.results_in_progress);
            set(&gauges.results, "over", status.results_over);
            for (outcome, n) in [
                ("valid", status.results_valid),
                ("invalid", status.results_invalid),
                ("error", status.results_error),
                ("no_reply", status.results_no_reply),
                ("reported", status.results_reported),
            ] {
                let labels = ProjectOutcome { project: status.name.clone(), outcome };
                gauges.results_over.get_or_create(&labels).set(gauge(n));
            }
        }
        gauges.hosts.set(gauge(hosts.n_hosts));
        gauges.hosts_active.set(gauge(hosts.n_active));
        gauges.database_bytes.set(gauge(database_bytes));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        Ok(text)
    }
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What the handler shares.
#[derive(Clone)]
struct Shared {
    ctx: Context,
    metrics: Metrics,
    access: Access,
}

/// The running metrics endpoint.
pub struct MetricsEndpoint {
    endpoint: Endpoint,
}

impl MetricsEndpoint {
    /// Binds `addr`, logs `metrics on http://ADDR/metrics` (the bound
    /// address, also when `addr` has port 0) and serves until `ctx` sees shutdown.
    pub async fn start(addr: SocketAddr, ctx: Context, metrics: Metrics) -> Result<MetricsEndpoint, http::Error> {
        let access = Access::for_addr(addr);
        let shared = Shared { ctx: ctx.clone(), metrics, access };
        let app = Router::new()
            .route("/metrics", get(scrape))
            .fallback(|uri: Uri| async move { http::not_found(&uri, "/metrics") })
            .with_state(shared);
        let endpoint = Endpoint::start("metrics endpoint", addr, app, ctx).await?;
        let bound = endpoint.addr();
        tracing::info!(addr = %bound, token_required = access == Access::AdminToken, "metrics on http://{bound}/metrics");
        Ok(MetricsEndpoint { endpoint })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.endpoint.addr()
    }

    /// Stops within `grace` once shutdown has started.
    pub async fn stop(self, grace: Duration) {
        self.endpoint.stop(grace).await;
    }
}

/// `GET /metrics`.
async fn scrape(State(shared): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let scraped = async {
        shared.access.check(&shared.ctx, &headers, &uri).await?;
        let p2p_sent = shared.ctx.seed.as_ref().map(|seed| seed.uploaded_bytes());
        Ok::<_, Refusal>(shared.metrics.scrape(&shared.ctx.store, shared.ctx.clock.now(), p2p_sent).await?)
    };
    match scraped.await {
        Ok(text) => {
            ([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE), (header::CACHE_CONTROL, "no-store")], text)
                .into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}
