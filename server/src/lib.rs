//! quorum-server, the coordinator of a quorum volunteer-computing deployment.
//!
//! It stores apps, projects, work units, results and hosts in SQLite, hands
//! results (copies of work units) to volunteer hosts over gRPC, and validates
//! what they report: a result becomes canonical only when enough distinct
//! hosts agree.
//!
//! Layout:
//! - `domain`: the rules (lifecycle, validation, policy, scheduling), pure Rust, no I/O.
//! - `store`: the database (SQLite or PostgreSQL, behind `store::backend`) through sqlx, an API in domain terms; the only SQL.
//! - `rpc`: the gRPC services, thin adapters between protobuf and the store.
//! - `transitioner`: the loop that applies deadlines.
//! - `validators`: custom validator modules, compiled once and run in the sandbox.
//! - `clock`: where `now` comes from.
//! - `database`: the database a coordinator serves and the files it keeps beside it (`BASE.files/`, `BASE.lock`...).
//! - `db_lock`: one coordinator per database.
//! - `migrate`: moving a stopped coordinator from SQLite to PostgreSQL (`quorum-server migrate`).
//! - `http`: what the HTTP endpoints share (binding, access by token, refusals).
//! - `status_page`: the live status page (HTML and JSON over HTTP), when configured.
//! - `metrics`: Prometheus metrics (counted in the process, or read from the store at each scrape).
//! - `seed`: the coordinator as a seed of the peer-to-peer swarm, when configured.
//!
//! Entry point: [`run`], called by `main.rs` and by tests.

pub mod clock;
pub mod database;
pub mod db_lock;
pub mod domain;
pub mod file_store;
pub mod http;
pub mod metrics;
pub mod migrate;
pub mod net;
pub mod rpc;
pub mod seed;
#[cfg(test)]
mod simulation;
pub mod status_page;
pub mod store;
pub mod transitioner;
pub mod validators;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use quorum_proto::v1::projects_server::ProjectsServer;
use quorum_proto::v1::scheduler_server::SchedulerServer;
use tokio::net::TcpListener;

use crate::clock::{Clock, SystemClock};
use crate::rpc::projects::ProjectsService;
use crate::rpc::scheduler::SchedulerService;
use crate::rpc::{Changes, Context, MAX_MESSAGE_BYTES};
use crate::store::Store;

/// The coordinator's configuration.
#[derive(Clone)]
pub struct Config {
    /// The database: a SQLite file (created if missing) or a PostgreSQL database.
    pub db: store::Location,
    /// The path the coordinator's files beside its database are named
    /// after (`BASE.files/`, `BASE.p2p/`): the SQLite file itself, or a
    /// path in the data folder of a PostgreSQL database.
    pub files_base: PathBuf,
    /// Where `now` comes from.
    pub clock: Arc<dyn Clock>,
    /// Serve TLS with this certificate and key; plaintext when `None`.
    pub tls: Option<TlsIdentity>,
    /// Rate limits of registrations and host requests.
    pub rate_limits: rpc::limits::RateLimits,
    /// Serve the status page on this address (HTTP); none when `None`.
    pub status_page: Option<std::net::SocketAddr>,
    /// Serve Prometheus metrics on this address (HTTP); none when `None`.
    pub metrics: Option<std::net::SocketAddr>,
    /// Cap on the bytes per second of input files sent to workers, in all
    /// (gRPC downloads and the swarm together).
    pub file_upload_bytes_per_sec: Option<u64>,
    /// Seed input files in the peer-to-peer swarm on this UDP address; not
    /// when `None`.
    pub share_files: Option<std::net::SocketAddr>,
}

impl Config {
    /// A configuration with the real clock, serving plaintext, on a SQLite file.
    pub fn new(db_path: PathBuf) -> Config {
        Config::with_location(store::Location::Sqlite(db_path.clone()), db_path)
    }

    /// A configuration with the real clock, serving plaintext, on the
    /// database at `db`, its files named after `files_base`.
    pub fn with_location(db: store::Location, files_base: PathBuf) -> Config {
        Config {
            db,
            files_base,
            clock: Arc::new(SystemClock),
            tls: None,
            rate_limits: rpc::limits::RateLimits::default(),
            status_page: None,
            metrics: None,
            file_upload_bytes_per_sec: None,
            share_files: None,
        }
    }
}

/// The coordinator's TLS certificate (chain) and private key, both PEM.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_pem: Vec<u8>,
    /// Secret: never printed.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").field("cert_pem", &self.cert_pem.len()).finish_non_exhaustive()
    }
}

/// Why the coordinator stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening the database: {0}")]
    Store(#[from] store::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error(transparent)]
    Http(#[from] http::Error),
    #[error(transparent)]
    FileStore(#[from] file_store::FileStoreError),
    #[error("the peer-to-peer swarm: {0}")]
    Swarm(#[from] quorum_p2p::Error),
}

/// How long calls in flight may take to finish once shutdown starts (long
/// ones, `WaitProject`, end at once); then the remaining ones are closed.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves the coordinator on `listener` until `shutdown` completes, then
/// lets the transitioner finish its pass and closes the database.
pub async fn run(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
        server = server.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    let store = Store::open(config.db.clone()).await?;
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let metrics = metrics::Metrics::new(&store);
    let file_cap = config.file_upload_bytes_per_sec.map(quorum_p2p::UploadCap::new);
    let seed = match config.share_files {
        Some(listen) => Some(Arc::new(
            seed::Seed::start(seed::Seed::dir_beside(&config.files_base), listen, file_cap.clone()).await?,
        )),
        None => None,
    };
    let ctx = Context {
        metrics: metrics.clone(),
        stopping: stopping.clone(),
        store: store.clone(),
        files: file_store::FileStore::beside(&config.files_base).await?,
        tracker: Arc::new(rpc::files::Tracker::default()),
        file_cap,
        seed: seed.clone(),
        clock: config.clock.clone(),
        changes: Changes::new(),
        limiters: Arc::new(rpc::limits::Limiters::new(config.rate_limits)),
    };

    let status_page = match config.status_page {
        Some(addr) => Some(status_page::StatusPage::start(addr, ctx.clone()).await?),
        None => None,
    };
    let metrics_endpoint = match config.metrics {
        Some(addr) => Some(metrics::MetricsEndpoint::start(addr, ctx.clone(), metrics.clone()).await?),
        None => None,
    };

    tokio::spawn(rpc::share_changes(store.clone(), ctx.changes.clone(), stopping.clone()));
    let (stop_transitioner, transitioner_stopped) = tokio::sync::oneshot::channel::<()>();
    let transitioner =
        tokio::spawn(transitioner::run(store.clone(), config.clock.clone(), ctx.changes.clone(), async {
            let _ = transitioner_stopped.await;
        }));

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<SchedulerServer<SchedulerService>>().await;
    health.set_serving::<ProjectsServer<ProjectsService>>().await;
    // v1 for current tools, v1alpha for older grpcurl, evans and Postman.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(quorum_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let scheduler = SchedulerServer::new(SchedulerService::new(ctx.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let projects = ProjectsServer::new(ProjectsService::new(ctx.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let signal = async move {
        shutdown.await;
        // Long calls end now (UNAVAILABLE); tonic stops accepting and drains.
        let _ = stopping_tx.send(true);
    };
    let serve = server
        .layer(metrics.rpc_layer())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(scheduler)
        .add_service(projects)
        .serve_with_incoming_shutdown(net::grpc_incoming(listener), signal);
    let mut grace = stopping;
    let served = tokio::select! {
        served = serve => served,
        () = async {
            let _ = grace.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "calls still open after the shutdown grace; closing them");
            Ok(())
        }
    };

    if let Some(status_page) = status_page {
        status_page.stop(SHUTDOWN_GRACE).await;
    }
    if let Some(metrics_endpoint) = metrics_endpoint {
        metrics_endpoint.stop(SHUTDOWN_GRACE).await;
    }
    let _ = stop_transitioner.send(());
    let _ = transitioner.await;
    drop(ctx);
    if let Some(seed) = seed.and_then(Arc::into_inner) {
        seed.shutdown().await;
    }
    store.close().await;
    served?;
    Ok(())
}
