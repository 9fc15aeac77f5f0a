//! `quorum-server`: parses flags, sets up logging and signals, binds the
//! listener and calls [`quorum_server::run`]; `quorum-server token ...`
//! manages the API tokens in the database instead.
//!
//! On start, when the database has no active admin token, one is created
//! (the first-start bootstrap): its secret is printed once on stdout after
//! the `listening on` line and written to `DB.admin-token` (mode 0600) so
//! that local scripts can pick it up.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use quorum_server::clock::{Clock as _, SystemClock};
use quorum_server::database::Database;
use quorum_server::domain::access::Role;
use quorum_server::domain::names::ProjectName;
use quorum_server::domain::rate::Rate;
use quorum_server::rpc::auth;
use quorum_server::rpc::limits::RateLimits;
use quorum_server::store::{Location, Store};

/// The quorum coordinator: stores projects, hands work units to volunteer
/// workers over gRPC and validates their results.
#[derive(Debug, Parser)]
#[command(name = "quorum-server", version)]
struct Cli {
    /// Address to serve gRPC on (port 0 picks a free port).
    #[arg(long, env = "QUORUM_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:7737")]
    listen: SocketAddr,
    /// Serve TLS with this certificate (PEM, the chain from the server's own).
    ///
    /// Needs --tls-key. Workers and the CLI then connect to https:// URLs.
    #[arg(long, env = "QUORUM_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "QUORUM_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Host registrations allowed per second from one IP address (sustained).
    #[arg(long, value_name = "N", default_value_t = 10.0)]
    register_rate: f64,
    /// Host registrations one IP address may make at once (the bucket's size).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    register_burst: u32,
    /// Scheduler requests allowed per second from one host (sustained).
    ///
    /// A host over its limit gets RESOURCE_EXHAUSTED with a retry-after-ms
    /// metadata entry; other hosts are unaffected.
    #[arg(long, value_name = "N", default_value_t = 100.0)]
    host_rate: f64,
    /// Scheduler requests one host may make at once (the bucket's size).
    #[arg(long, value_name = "N", default_value_t = 200)]
    host_burst: u32,
    /// Serve the live status page (HTML at /, JSON at /status.json) on this
    /// address; off when not given (port 0 picks a free port).
    ///
    /// On a loopback address it needs no token; on any other address every
    /// request needs an admin API token (`Authorization: Bearer TOKEN` or
    /// `?token=TOKEN`): the page lists every project and host.
    #[arg(long, env = "QUORUM_STATUS_PAGE", value_name = "ADDR")]
    status_page: Option<SocketAddr>,
    /// Serve Prometheus metrics (text format at /metrics) on this address;
    /// off when not given (port 0 picks a free port).
    ///
    /// Access as for --status-page: open on loopback, an admin API token
    /// (`Authorization: Bearer TOKEN`) on any other address.
    #[arg(long, env = "QUORUM_METRICS", value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Cap on the rate at which input files are sent to workers, in all, in
    /// megabits per second (e.g. 200); no cap when not given.
    ///
    /// Downloads share it; the rest of the protocol is not slowed.
    #[arg(long, env = "QUORUM_FILE_UPLOAD_MBPS", value_name = "MBPS", value_parser = parse_mbps)]
    file_upload_mbps: Option<u64>,
    /// Seed input files in the peer-to-peer swarm, as a BitTorrent seed:
    /// workers ask the coordinator only for the parts of a file no other
    /// volunteer holds, and pass them on among themselves (those started
    /// with --share-files). Downloads over gRPC stay available to every
    /// worker. Its state is kept beside the database (DB.p2p/).
    #[arg(long, env = "QUORUM_SHARE_FILES")]
    share_files: bool,
    /// The UDP address the coordinator's peer-to-peer engine listens on,
    /// with --share-files (workers must reach it; port 0 picks a free one).
    #[arg(
        long,
        env = "QUORUM_SHARE_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:0",
        requires = "share_files"
    )]
    share_listen: SocketAddr,
    /// The database: a SQLite file (created with the schema if missing), or
    /// a PostgreSQL database as a URL (postgres://USER[:PASSWORD]@HOST[:PORT]/NAME;
    /// the schema is created if missing), which needs --data-dir.
    #[arg(long, global = true, env = "QUORUM_DB", value_name = "PATH|URL", default_value = "quorum.db")]
    db: String,
    /// With a PostgreSQL --db: the folder for what the coordinator keeps
    /// beside its database (input files, the first admin token, its lock,
    /// the swarm's state), as quorum.files/, quorum.admin-token... With a
    /// SQLite file they sit beside it.
    #[arg(long, global = true, env = "QUORUM_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log lines as text for people or as JSON Lines for log collectors.
    #[arg(long, global = true, env = "QUORUM_LOG_FORMAT", value_name = "FORMAT", value_enum, default_value_t)]
    log_format: quorum_log::LogFormat,
    /// Write the log to this file instead of stderr, rotated by size.
    ///
    /// Lines go to PATH only (an error that stops the coordinator is still
    /// printed on stderr), in the --log-format; the file is created mode
    /// 0600. Once PATH passes --log-max-mb it becomes PATH.1 (PATH.1
    /// becomes PATH.2, ...) and a new PATH begins; --log-keep files are
    /// kept in all. Only serving logs there; `token` logs on stderr.
    #[arg(long, env = "QUORUM_LOG_FILE", value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Rotate the log file once it passes this size, in megabytes
    /// (1 MB = 1,000,000 bytes; fractions allowed).
    #[arg(long = "log-max-mb", env = "QUORUM_LOG_MAX_MB", value_name = "MB", default_value = "10", value_parser = quorum_log::parse_megabytes)]
    log_max_bytes: u64,
    /// Log files kept in all, the current one included (3: PATH, PATH.1, PATH.2).
    #[arg(long, env = "QUORUM_LOG_KEEP", value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    log_keep: u32,
    /// Manage the database instead of serving.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list or revoke API tokens (for the `quorum` CLI).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Copy a stopped SQLite coordinator's whole state into an empty
    /// PostgreSQL database, verified, to serve it from there.
    ///
    /// Copies every table (projects, apps, work units, results, hosts and
    /// their tokens, API tokens, credit) in one PostgreSQL transaction,
    /// verified per table by row count and digest before it commits, and
    /// the files beside the database (input files, the first admin token)
    /// into --data-dir (default: the folder of --from). Workers then carry
    /// on with the same host identities against `quorum-server --db URL
    /// --data-dir DIR` started where they point. Refused, with nothing
    /// written, while a coordinator serves --from or --to, when --from is
    /// not a quorum database at this quorum-server's schema version, or
    /// when --to or --data-dir already holds a coordinator's data.
    Migrate {
        /// The SQLite file of the stopped coordinator.
        #[arg(long, value_name = "PATH")]
        from: PathBuf,
        /// The PostgreSQL database (postgres://USER[:PASSWORD]@HOST[:PORT]/NAME): must hold no quorum data.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an API token and print its secret on stdout (shown only once).
    ///
    /// An admin token may do everything; a submit token only acts on the
    /// projects named with --project (creating them, adding work units,
    /// reading, waiting, cancelling, retrying, resuming, purging) and never
    /// lists hosts.
    Create {
        /// What the token may do.
        #[arg(long, value_enum, value_name = "ROLE")]
        role: RoleArg,
        /// A project a submit token may act on; repeat for several.
        #[arg(long = "project", value_name = "NAME")]
        projects: Vec<String>,
    },
    /// List the API tokens (never their secrets).
    List,
    /// Revoke an API token by id: calls with it are refused at once.
    Revoke {
        /// The token's id, as `token list` shows it.
        #[arg(value_name = "ID")]
        id: i64,
    },
}

/// Roles of `token create --role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RoleArg {
    /// Everything.
    Admin,
    /// Only the projects named with --project.
    Submit,
}

/// The database `--db` names, and the path its companions are named after
/// (`BASE.admin-token`, `BASE.lock`, `BASE.files/`, `BASE.p2p/`): the
/// SQLite file itself, or `DIR/quorum` in the --data-dir of a PostgreSQL one.
fn database(cli: &Cli) -> anyhow::Result<Database> {
    Ok(Database::new(Location::parse(&cli.db), cli.data_dir.as_deref())?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A file-size limit (`ulimit -f`) must fail a write, which the store
    // reports and recovers from, not kill the coordinator.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_IGN before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // The file is for serving; the other commands log to stderr.
    let log_file = cli.log_file.as_ref().filter(|_| cli.command.is_none());
    let log_file = log_file.map(|path| quorum_log::FileLog::new(path.clone(), cli.log_max_bytes, cli.log_keep));
    if let Err(error) = quorum_log::init_to(cli.log_format, "info", log_file.as_ref()) {
        eprintln!("error: cannot open --log-file {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let db = database(&cli);
    let outcome = match cli.command {
        Some(Command::Migrate { from, to }) => runtime.block_on(migrate(&from, &to, cli.data_dir.as_deref())),
        None => rate_limits(&cli).and_then(|limits| {
            let tls = tls_identity(cli.tls_cert.as_deref(), cli.tls_key.as_deref())?;
            runtime.block_on(serve(
                cli.listen,
                db?,
                tls,
                limits,
                Endpoints {
                    status_page: cli.status_page,
                    metrics: cli.metrics,
                    file_upload: cli.file_upload_mbps,
                    share_files: cli.share_files.then_some(cli.share_listen),
                },
            ))
        }),
        Some(Command::Token { command }) => db.and_then(|db| runtime.block_on(token(&db, command))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// The rate limits of the flags.
fn rate_limits(cli: &Cli) -> anyhow::Result<RateLimits> {
    Ok(RateLimits {
        registrations: Rate::new(cli.register_rate, cli.register_burst).context("--register-rate/--register-burst")?,
        host_requests: Rate::new(cli.host_rate, cli.host_burst).context("--host-rate/--host-burst")?,
    })
}

/// Reads the TLS certificate and key files, when given.
fn tls_identity(cert: Option<&Path>, key: Option<&Path>) -> anyhow::Result<Option<quorum_server::TlsIdentity>> {
    let (Some(cert), Some(key)) = (cert, key) else { return Ok(None) };
    let cert_pem = std::fs::read(cert).with_context(|| format!("reading --tls-cert {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("reading --tls-key {}", key.display()))?;
    Ok(Some(quorum_server::TlsIdentity { cert_pem, key_pem }))
}

/// The HTTP endpoints asked for.
struct Endpoints {
    status_page: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    /// `--file-upload-mbps`, in bytes per second.
    file_upload: Option<u64>,
    /// `--share-listen`, with `--share-files`.
    share_files: Option<SocketAddr>,
}

/// `--file-upload-mbps`: a positive number of megabits per second, as bytes per second.
fn parse_mbps(text: &str) -> Result<u64, String> {
    let mbps: f64 = text.parse().map_err(|_| format!("invalid rate {text:?}: expected megabits per second"))?;
    if !(mbps > 0.0 && mbps.is_finite()) {
        return Err(format!("invalid rate {text}: must be above zero"));
    }
    Ok(((mbps * 1_000_000.0 / 8.0) as u64).max(1))
}

async fn serve(
    listen: SocketAddr,
    db: Database,
    tls: Option<quorum_server::TlsIdentity>,
    rate_limits: RateLimits,
    endpoints: Endpoints,
) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    // Held until the coordinator stops: a second one on this SQLite file (or
    // with this --data-dir) is refused. Several coordinators may serve one
    // PostgreSQL database, each with a --data-dir of its own: its writers
    // take turns with theirs (`store::backend`).
    let _lock = quorum_server::db_lock::DatabaseLock::acquire(db.base())?;
    // Before binding, so the token file exists once the address is announced.
    let bootstrapped = bootstrap_admin_token(&db).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // The first line on stdout: scripts and tests read the bound port from it.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "quorum-server listening on {addr}").context("writing to stdout")?;
    if let Some((secret, file)) = bootstrapped {
        writeln!(stdout, "admin token (shown once; also written to {}): {secret}", file.display())
            .context("writing to stdout")?;
    }
    stdout.flush().context("writing to stdout")?;
    tracing::info!(%addr, db = %db.location(), tls = tls.is_some(), "coordinator started");
    let config = quorum_server::Config {
        tls,
        rate_limits,
        status_page: endpoints.status_page,
        metrics: endpoints.metrics,
        file_upload_bytes_per_sec: endpoints.file_upload,
        share_files: endpoints.share_files,
        ..quorum_server::Config::with_location(db.location().clone(), db.base().to_owned())
    };
    quorum_server::run(config, listener, shutdown)
        .await
        .with_context(|| format!("coordinator on {}", db.location()))?;
    tracing::info!("coordinator stopped");
    Ok(())
}

/// Creates an admin token when the database has none, and writes it to
/// `BASE.admin-token` ([`Database::admin_token_file`]) with mode 0600. Returns the secret and the file.
///
/// The file is written (atomically, and on disk) before the token is
/// committed, so no kill can leave a token in the database that no file
/// holds: killed before the commit, the database still has no admin token
/// and the next start writes a new file; killed after it, the file already
/// holds the token.
async fn bootstrap_admin_token(db: &Database) -> anyhow::Result<Option<(String, PathBuf)>> {
    let store = Store::open(db.location().clone()).await.with_context(|| format!("opening {}", db.location()))?;
    let created = bootstrap_with(&store, &db.admin_token_file()).await;
    store.close().await;
    created
}

async fn bootstrap_with(store: &Store, file: &Path) -> anyhow::Result<Option<(String, PathBuf)>> {
    if store.has_admin_token().await.context("reading the API tokens")? {
        return Ok(None);
    }
    let secret = auth::new_api_token();
    let file = file.to_owned();
    write_secret_file(&file, &secret).with_context(|| format!("writing the admin token to {}", file.display()))?;
    // Another coordinator of the same PostgreSQL database may have created
    // one meanwhile: then it is in that one's --data-dir, and this file,
    // holding a token the database does not know, goes.
    let created = store.bootstrap_admin_token(&auth::token_hash(&secret), SystemClock.now()).await;
    if !created.context("creating the first admin token")? {
        std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        tracing::info!("another coordinator of this database created the first admin token meanwhile");
        return Ok(None);
    }
    tracing::info!(file = %file.display(), "first admin token created");
    Ok(Some((secret, file)))
}

/// Writes `secret` to `path`, readable by its owner only, atomically: a new
/// temporary file (mode 0600) synced to disk, renamed over `path` (whose
/// mode could be looser), and the folder synced so the rename lasts.
fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    match std::fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    writeln!(file, "{secret}")?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    let folder = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(folder)?.sync_all()
}

/// `quorum-server token ...`.
async fn token(db: &Database, command: TokenCommand) -> anyhow::Result<()> {
    let store = Store::open(db.location().clone()).await.with_context(|| format!("opening {}", db.location()))?;
    let outcome = token_command(&store, command).await;
    store.close().await;
    outcome
}

async fn token_command(store: &Store, command: TokenCommand) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    match command {
        TokenCommand::Create { role, projects } => {
            let role = match role {
                RoleArg::Admin => {
                    anyhow::ensure!(projects.is_empty(), "an admin token acts on every project: drop --project");
                    Role::Admin
                }
                RoleArg::Submit => {
                    anyhow::ensure!(!projects.is_empty(), "a submit token needs at least one --project");
                    let projects = projects
                        .iter()
                        .map(|name| ProjectName::parse(name))
                        .collect::<Result<Vec<_>, _>>()
                        .context("--project")?;
                    Role::submit(projects)
                }
            };
            let secret = auth::new_api_token();
            let id = store
                .create_api_token(&role, &auth::token_hash(&secret), SystemClock.now())
                .await
                .context("storing the token")?;
            eprintln!("created {} token {id} (its secret is shown only now)", role.kind());
            writeln!(stdout, "{secret}")?;
        }
        TokenCommand::List => {
            let tokens = store.list_api_tokens().await.context("reading the tokens")?;
            writeln!(stdout, "{:>4}  {:<7}  {:<8}  PROJECTS", "ID", "ROLE", "STATE")?;
            for token in tokens {
                let projects = match &token.role {
                    Role::Admin => "*".to_owned(),
                    Role::Submit { projects } => projects.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                };
                let state = if token.revoked_at.is_some() { "revoked" } else { "active" };
                writeln!(stdout, "{:>4}  {:<7}  {:<8}  {projects}", token.id, token.role.kind(), state)?;
            }
        }
        TokenCommand::Revoke { id } => {
            let revoked = store.revoke_api_token(id, SystemClock.now()).await.context("revoking the token")?;
            anyhow::ensure!(revoked, "no active API token with id {id}");
            eprintln!("revoked token {id}");
        }
    }
    stdout.flush()?;
    Ok(())
}

/// `quorum-server migrate`: the copy, then a table of what was copied and
/// the command that serves it.
async fn migrate(from: &Path, to: &str, data_dir: Option<&Path>) -> anyhow::Result<()> {
    anyhow::ensure!(
        Location::parse(to).is_postgres(),
        "--to {to} is not a PostgreSQL URL (postgres://USER[:PASSWORD]@HOST[:PORT]/NAME)"
    );
    let folder_of_from = || from.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let data_dir = data_dir.unwrap_or_else(folder_of_from);
    let outcome = quorum_server::migrate::migrate(from, to, data_dir)
        .await
        .with_context(|| format!("migrating {} to {}", from.display(), Location::parse(to)))?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{:<20}  {:>10}  CHECK", "TABLE", "ROWS")?;
    for table in &outcome.tables {
        writeln!(
            stdout,
            "{:<20}  {:>10}  verified (count, sha256 {})",
            table.table,
            table.n_rows,
            &table.digest[..12]
        )?;
    }
    for files in &outcome.files {
        writeln!(
            stdout,
            "copied {} to {} ({} files, {} bytes)",
            files.from.display(),
            files.to.display(),
            files.n_files,
            files.n_bytes
        )?;
    }
    writeln!(stdout, "not copied: the swarm's state (.p2p/, with --share-files), rebuilt when the coordinator starts")?;
    writeln!(
        stdout,
        "next: quorum-server --db {} --data-dir {} (where the workers point; {} stays as it was)",
        outcome.target.location(),
        data_dir.display(),
        from.display()
    )?;
    stdout.flush()?;
    Ok(())
}

/// Installs the SIGINT (Ctrl-C) and SIGTERM handlers now, so that a signal
/// arriving during start-up is not lost (nor kills the process), and returns a
/// future that completes on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        super::Cli::command().debug_assert();
    }
}
