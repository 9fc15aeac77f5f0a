//! The `quorum-worker` binary: parses flags, installs logging and signal
//! handlers, then runs [`quorum_worker::run`] until SIGINT or SIGTERM; or
//! runs one of the `status`, `pause`, `resume`, `detach`, `abort` commands, or `run` (one app
//! on one input, to reproduce a result locally).
//! Exit codes: 0 after a clean stop, 2 on error (`error: ...` on stderr).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::sync::mpsc;

/// A quorum volunteer worker: asks coordinators for work, runs it in a
/// deterministic WebAssembly sandbox, reports the results.
///
/// Logs one line per event on stderr (filter with RUST_LOG, default info:
/// a line when a task starts and one when it ends, registrations, problems),
/// or in a rotated file with --log-file, as a service would.
/// Stops cleanly on SIGINT (Ctrl-C) or SIGTERM; SIGUSR1 pauses computing,
/// SIGUSR2 resumes, SIGHUP acts on `detach` and `abort` requests.
/// Everything it must not lose is in STATE_DIR/journal.db: after a crash it
/// reports finished results and resumes unfinished tasks.
#[derive(Debug, Parser)]
#[command(name = "quorum-worker", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// A coordinator to work for, as `URL` or `URL,share=N`. Repeat it to
    /// attach to several; the cores are divided in proportion to the shares
    /// (default share 100).
    ///
    /// Several addresses of one coordinator group (one project's database
    /// served at several addresses: a standby coordinator, or several
    /// coordinator processes over one PostgreSQL database) are one
    /// attachment: `URL,URL[,...][,share=N]`. The worker is then one host
    /// there: it calls one address at a time, in the order given, moves on
    /// to the next at once when one is unreachable, keeps the one that
    /// answers, and never registers again for it. Its identity, tasks and
    /// `status` line are keyed by the address it first attached with, so an
    /// address can be added to an existing worker's group. In
    /// QUORUM_SERVER, attachments are separated by spaces.
    #[arg(long = "server", env = "QUORUM_SERVER", value_name = "URL[,URL...][,share=N]", value_delimiter = ' ', default_value = "http://127.0.0.1:7737", value_parser = parse_attach)]
    servers: Vec<quorum_worker::Attach>,

    /// Directory holding this host's journal, app cache and checkpoints.
    ///
    /// Contains journal.db (identities, tasks, settings; mode 0600),
    /// apps/<digest>.wasm and checkpoints/. Created if missing. Default:
    /// the user's data directory, $XDG_DATA_HOME/quorum-worker (or
    /// ~/.local/share/quorum-worker), the same from any working directory;
    /// give one for a system install (e.g. /var/lib/quorum-worker).
    #[arg(long, env = "QUORUM_WORKER_STATE", value_name = "DIR", global = true)]
    state_dir: Option<PathBuf>,

    /// Disk the app cache (STATE_DIR/apps) may use, in MiB; fractions are
    /// allowed (0.5 is 512 KiB).
    ///
    /// Beyond it, the least recently used app modules that no task the worker
    /// holds (queued, running or not yet reported) needs are deleted, after
    /// each download and at start; they are downloaded again if a later task
    /// needs them. Modules needed by held tasks are always kept, even over
    /// the budget. `quorum-worker status` shows the cache's use.
    #[arg(long, value_name = "MIB", default_value = "256", value_parser = parse_app_cache_mb)]
    app_cache_mb: u64,

    /// Most disk the cache of input files (`files/` in the state directory)
    /// may take, in MiB.
    ///
    /// Files no held task needs are evicted beyond it, least recently used
    /// first; those of held tasks are kept. A task whose input files alone
    /// exceed it, or that the disk has no room for, is given back with a
    /// message saying so.
    #[arg(long, value_name = "MIB", default_value = "10240", value_parser = parse_app_cache_mb)]
    file_cache_mb: u64,

    /// Do not tell the coordinator which input files are cached (it then
    /// hands out copies without regard to them); for benchmarks.
    #[arg(long, hide = true)]
    no_locality: bool,

    /// Share the input files this worker holds with other volunteers.
    ///
    /// Off by default. Files are served peer to peer (QUIC, verified by
    /// BLAKE3 range by range on the receiving side), only files this worker
    /// downloaded for its own tasks and verified, only while cached; the
    /// coordinator names this worker to other hosts that need one. Without
    /// it the worker still fetches from sharing peers, and serves nothing.
    #[arg(long)]
    share_files: bool,

    /// The UDP address the peer-to-peer engine listens on (other volunteers
    /// connect to it when this worker shares files).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
    share_listen: std::net::SocketAddr,

    /// Cap on what this worker uploads to peers, in megabits per second
    /// (e.g. 20); no cap when not given.
    #[arg(long, value_name = "MBPS", requires = "share_files", value_parser = parse_mbps)]
    share_upload_mbps: Option<u64>,

    /// Log lines as text for people or as JSON Lines for log collectors.
    #[arg(long, env = "QUORUM_LOG_FORMAT", value_name = "FORMAT", value_enum, default_value_t, global = true)]
    log_format: quorum_log::LogFormat,

    /// Write the log to this file instead of stderr, rotated by size.
    ///
    /// For a worker run as a service: its lines go to PATH only (an error
    /// that stops it is still printed on stderr), in the --log-format, and
    /// the file is created mode 0600 (it names the coordinators). Once PATH
    /// passes --log-max-mb it becomes PATH.1 (PATH.1 becomes PATH.2, ...)
    /// and a new PATH begins; --log-keep files are kept in all. Only the
    /// worker itself logs there; its commands (status, pause, run...) log
    /// on stderr.
    #[arg(long, env = "QUORUM_WORKER_LOG_FILE", value_name = "PATH")]
    log_file: Option<PathBuf>,

    /// Rotate the log file once it passes this size, in megabytes
    /// (1 MB = 1,000,000 bytes; fractions allowed).
    #[arg(long = "log-max-mb", env = "QUORUM_WORKER_LOG_MAX_MB", value_name = "MB", default_value = "10", value_parser = quorum_log::parse_megabytes)]
    log_max_bytes: u64,

    /// Log files kept in all, the current one included (3: PATH, PATH.1, PATH.2).
    #[arg(long, env = "QUORUM_WORKER_LOG_KEEP", value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    log_keep: u32,

    /// Tasks to run at once [default: all logical cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    cpus: Option<u32>,

    /// Use at most this percentage of CPU time (BOINC's CPU throttle): tasks
    /// run and rest in turn.
    #[arg(long, value_name = "PERCENT", default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=100))]
    cpu_limit: u8,

    /// The priority tasks compute at: idle (Linux's SCHED_IDLE and nice 19,
    /// so the volunteer's own programs always come first) or normal.
    #[arg(long, value_name = "PRIORITY", value_enum, default_value_t = PriorityArg::Idle)]
    task_priority: PriorityArg,

    /// Ask for more work when fewer than this many tasks are queued [default: 2 × cpus].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    buffer_low: Option<u32>,

    /// Fill the queue up to this many tasks [default: 6 × cpus].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    buffer_high: Option<u32>,

    /// Host name sent at registration [default: this machine's hostname].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// The volunteer account this host belongs to.
    ///
    /// Two hosts of one account never get copies of the same work unit, so a
    /// volunteer's machines cannot vouch for each other. Empty: the host stands alone.
    #[arg(long, env = "QUORUM_ACCOUNT", value_name = "NAME", default_value = "")]
    account: String,

    /// Trust only this CA (PEM) for https:// coordinators.
    ///
    /// Without it, an https:// coordinator's certificate must chain to the
    /// system's trusted roots. The certificate is always verified.
    #[arg(long, env = "QUORUM_CA_CERT", value_name = "PEM", global = true)]
    ca_cert: Option<PathBuf>,

    /// Trust only this public key for a project's signed app: PROJECT=BASE64
    /// (as `quorum keygen` prints it). Repeat for several projects.
    ///
    /// Without it, the first key a project signs with is pinned (per
    /// coordinator and project) and any later change is refused.
    #[arg(long = "trust-key", value_name = "PROJECT=BASE64", value_parser = quorum_worker::signing::parse_trust_key)]
    trust_keys: Vec<(String, [u8; 32])>,

    /// Refuse unsigned apps (each task of one is reported as a client error).
    ///
    /// Without it, unsigned apps run, unless their project signed before.
    #[arg(long)]
    require_signed: bool,

    /// Cap of the retry backoff, in milliseconds.
    ///
    /// Failed calls are retried after an exponential, jittered delay starting
    /// at 100 ms and never longer than this; so is the server's retry_after_ms.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    max_backoff_ms: u64,

    /// Overrides one computing preference of STATE_DIR/preferences.toml:
    /// run_on_batteries, run_if_user_active, idle_time_to_run (minutes),
    /// suspend_cpu_usage (percent, 0: off), start_hour, end_hour (local
    /// time), ram_max_used_busy_pct, ram_max_used_idle_pct. Repeatable.
    ///
    /// The file is read again every second, so edits take effect at once.
    /// Defaults: not on batteries, also while the computer is in use, at any
    /// hour, whatever the other programs' CPU use (tasks compute at idle
    /// priority), tasks reserving at most 50% of memory while the computer
    /// is in use and 90% while idle.
    #[arg(long = "pref", value_name = "NAME=VALUE")]
    preference_overrides: Vec<String>,

    /// Where batteries are read (Linux's power supply class).
    #[arg(
        long,
        env = "QUORUM_POWER_SUPPLY_DIR",
        value_name = "DIR",
        default_value = "/sys/class/power_supply",
        hide = true
    )]
    power_supply_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints what the worker on STATE_DIR is doing: each task's project,
    /// state (queued, running, suspended, to report), progress, elapsed and
    /// remaining time and deadline, and the host's credit and counters asked
    /// fresh from each coordinator.
    Status {
        /// One JSON object, for scripts.
        #[arg(long)]
        json: bool,
        /// Show it again every two seconds, until Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
    /// Pauses computing (held across restarts) until `resume`.
    Pause,
    /// Resumes computing after `pause`.
    Resume,
    /// Leaves a coordinator: reports what is finished, gives back the other
    /// tasks (it sends them to other hosts at once, not at their deadline)
    /// and forgets this host's identity there.
    ///
    /// Done by the running worker if one runs on STATE_DIR (this waits until
    /// it has), else directly. A worker still started with --server URL
    /// registers there again as a new host.
    Detach {
        /// The coordinator, as `quorum-worker status` shows it.
        #[arg(value_name = "URL", value_parser = quorum_proto::coordinator_url)]
        server: String,
    },
    /// Gives one queued or running task back to its coordinator, which sends
    /// it to another host at once.
    Abort {
        /// The task's result id, as `quorum-worker status` shows it.
        #[arg(value_name = "RESULT_ID")]
        result_id: i64,
        /// Its coordinator, when several gave this worker a result with this id.
        #[arg(long = "server", value_name = "URL", value_parser = quorum_proto::coordinator_url)]
        server: Option<String>,
    },
    /// Runs APP once on one input and random seed in the worker's own
    /// sandbox and prints its output, to reproduce a result locally.
    ///
    /// With a work unit's input and the seed `quorum results` shows for it,
    /// the output is byte for byte the one the hosts reported. The app's
    /// output goes to stdout; its stderr tail and the fuel it used go to
    /// stderr. Exit code 0 when the app succeeds, 2 otherwise.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The app module (.wasm, or .wat text).
    #[arg(value_name = "APP")]
    app: PathBuf,
    /// The work unit's random seed (`quorum results` shows it).
    #[arg(long, value_name = "N")]
    seed: u64,
    /// The work unit's input, given to the app on stdin [default: empty].
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Fuel limit, as the project's `limits.fuel` [default: the worker's].
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    fuel: u64,
    /// Run with NaN canonicalization, as a project with `nan_canonicalization = true`.
    #[arg(long)]
    nan_canonicalization: bool,
    /// One element of the app's command line, argv[0] first (repeat it).
    ///
    /// The work unit's `argv` as `quorum results --json` shows it, in order,
    /// starting with argv[0] (the project's name), e.g.
    /// `--arg primes --arg=--steps --arg 100`. None: argv = ["app"], as for a
    /// project without arguments on a coordinator older than them.
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,
    /// An environment variable of the app, NAME=VALUE (repeat it).
    ///
    /// The work unit's `env` as `quorum results --json` shows it. The app
    /// sees them in name order, as on a worker; none of this machine's.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env_var)]
    env: Vec<(String, String)>,
    /// A folder holding the work unit's input files under the names the app
    /// opens, preopened read-only as /input [default: no /input].
    #[arg(long, value_name = "DIR")]
    input_dir: Option<PathBuf>,
    /// A folder for the app's output files, preopened as /output (created if
    /// missing) [default: no /output].
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
}

/// `NAME=VALUE`, split at the first `=`; the name must not be empty.
fn parse_env_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        Some(_) => Err(format!("{text:?}: the variable's name is empty")),
        None => Err(format!("{text:?}: expected NAME=VALUE")),
    }
}

/// `URL[,URL...][,share=N]`: one coordinator, as the addresses of its
/// group (each once, none empty), then its share (N > 0) if not the default.
/// `URL` and `URL,share=N` are a group of one.
fn parse_attach(text: &str) -> Result<quorum_worker::Attach, String> {
    let mut addresses: Vec<String> = Vec::new();
    let mut share = None;
    for item in text.split(',') {
        if let Some(value) = item.strip_prefix("share=") {
            if share.is_some() {
                return Err(format!("{text:?}: share given twice"));
            }
            let value: f64 = value.parse().map_err(|_| format!("invalid share {value:?}: expected a number"))?;
            if !(value > 0.0 && value.is_finite()) {
                return Err(format!("invalid share {value}: must be positive"));
            }
            share = Some(value);
            continue;
        }
        if share.is_some() {
            return Err(format!("{text:?}: share=N comes last, after the coordinator's addresses"));
        }
        if item.is_empty() {
            return Err(format!("empty server URL in {text:?}: expected URL[,URL...][,share=N]"));
        }
        let address = quorum_proto::coordinator_url(item)?;
        if addresses.contains(&address) {
            return Err(format!("{address} given twice in the group {text:?}"));
        }
        addresses.push(address);
    }
    if addresses.is_empty() {
        return Err(format!("empty server URL in {text:?}: expected URL[,URL...][,share=N]"));
    }
    Ok(quorum_worker::Attach { addresses, share: share.unwrap_or(DEFAULT_SHARE) })
}

const DEFAULT_SHARE: f64 = 100.0;

/// `--app-cache-mb`: a non-negative number of MiB, as bytes (rounded down).
fn parse_app_cache_mb(text: &str) -> Result<u64, String> {
    let mib: f64 = text.parse().map_err(|_| format!("invalid size {text:?}: expected a number of MiB"))?;
    if !(mib >= 0.0 && mib.is_finite()) {
        return Err(format!("invalid size {text}: must be zero or more"));
    }
    // Saturates at u64::MAX for absurd sizes, which means "no limit".
    Ok((mib * 1024.0 * 1024.0).floor() as u64)
}

/// `--share-upload-mbps`: a positive number of megabits per second, as bytes per second.
fn parse_mbps(text: &str) -> Result<u64, String> {
    let mbps: f64 = text.parse().map_err(|_| format!("invalid rate {text:?}: expected megabits per second"))?;
    if !(mbps > 0.0 && mbps.is_finite()) {
        return Err(format!("invalid rate {text}: must be above zero"));
    }
    Ok(((mbps * 1_000_000.0 / 8.0) as u64).max(1))
}

/// Values of `--task-priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PriorityArg {
    /// Only what would be idle time.
    Idle,
    /// The worker's own priority.
    Normal,
}

/// The per-user state directory of the XDG base directory rules:
/// `$XDG_DATA_HOME/quorum-worker` when it is an absolute path, else
/// `$HOME/.local/share/quorum-worker`; `None` without either.
fn default_state_dir(xdg_data_home: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> Option<PathBuf> {
    let data = xdg_data_home.map(PathBuf::from).filter(|dir| dir.is_absolute()).or_else(|| {
        home.map(PathBuf::from).filter(|dir| dir.is_absolute()).map(|home| home.join(".local").join("share"))
    })?;
    Some(data.join("quorum-worker"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The file is for serving; the other commands log to stderr.
    let log_file = cli.log_file.as_ref().filter(|_| cli.command.is_none());
    let log_file = log_file.map(|path| quorum_log::FileLog::new(path.clone(), cli.log_max_bytes, cli.log_keep));
    if let Err(error) = quorum_log::init_to(cli.log_format, "info", log_file.as_ref()) {
        eprintln!("error: cannot open --log-file {error}");
        return ExitCode::from(2);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Run(args)) = &cli.command {
        return reproduce(args);
    }
    let state_dir = match &cli.state_dir {
        Some(dir) => dir.clone(),
        None => default_state_dir(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME")).context(
            "no --state-dir given and neither XDG_DATA_HOME nor HOME is set: give the worker a state directory",
        )?,
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the tokio runtime")?;
    match cli.command {
        Some(Command::Status { json, watch }) => {
            return runtime.block_on(show_status(&state_dir, read_ca_cert(cli.ca_cert.as_deref())?, json, watch));
        }
        Some(Command::Pause | Command::Resume) => {
            let pause = matches!(cli.command, Some(Command::Pause));
            println!("{}", runtime.block_on(quorum_worker::control::set_paused(&state_dir, pause))?);
            return Ok(());
        }
        Some(Command::Detach { server }) => {
            let ca_cert = read_ca_cert(cli.ca_cert.as_deref())?;
            println!("{}", runtime.block_on(quorum_worker::control::detach(&state_dir, &server, ca_cert.as_deref()))?);
            return Ok(());
        }
        Some(Command::Abort { result_id, server }) => {
            let ca_cert = read_ca_cert(cli.ca_cert.as_deref())?;
            let said = runtime.block_on(quorum_worker::control::abort(
                &state_dir,
                result_id,
                server.as_deref(),
                ca_cert.as_deref(),
            ))?;
            println!("{said}");
            return Ok(());
        }
        Some(Command::Run(_)) | None => {}
    }
    quorum_worker::failover::check_distinct(cli.servers.iter().map(|a| a.addresses.as_slice()))
        .map_err(anyhow::Error::msg)?;
    let cpus = match cli.cpus {
        Some(cpus) => cpus as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let buffer_low = cli.buffer_low.map_or(2 * cpus, |n| n as usize);
    let buffer_high = cli.buffer_high.map_or(6 * cpus, |n| n as usize);
    anyhow::ensure!(buffer_high >= buffer_low, "--buffer-high ({buffer_high}) is below --buffer-low ({buffer_low})");
    let config = quorum_worker::Config {
        attachments: cli.servers,
        state_dir,
        app_cache_bytes: cli.app_cache_mb,
        file_cache_bytes: cli.file_cache_mb,
        locality: !cli.no_locality,
        share_files: cli.share_files,
        share_listen: cli.share_listen,
        share_upload_bytes_per_sec: cli.share_upload_mbps,
        cpus,
        cpu_limit: cli.cpu_limit,
        task_priority: match cli.task_priority {
            PriorityArg::Idle => quorum_worker::priority::TaskPriority::Idle,
            PriorityArg::Normal => quorum_worker::priority::TaskPriority::Normal,
        },
        buffer_low,
        buffer_high,
        name: cli.name.unwrap_or_else(hostname),
        account: cli.account,
        max_backoff: Duration::from_millis(cli.max_backoff_ms),
        trust: quorum_worker::signing::Trust {
            keys: cli.trust_keys.into_iter().collect(),
            require_signed: cli.require_signed,
        },
        ca_cert: read_ca_cert(cli.ca_cert.as_deref())?,
        preference_overrides: cli.preference_overrides,
        power_supply_dir: cli.power_supply_dir,
    };
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        let commands = command_signals()?;
        quorum_worker::run(config, shutdown, commands).await
    })
}

/// `quorum-worker run`: the app's output on stdout, exactly; the rest on stderr.
fn reproduce(args: &RunArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let outcome = quorum_worker::reproduce::run(&quorum_worker::reproduce::Reproduce {
        app: args.app.clone(),
        random_seed: args.seed,
        input: args.input.clone(),
        limits: quorum_worker::sandbox::Limits::with_defaults(args.fuel, 0, 0, 0, 0),
        nan_canonicalization: args.nan_canonicalization,
        args: args.args.clone(),
        env: args.env.clone(),
        input_dir: args.input_dir.clone(),
        output_dir: args.output_dir.clone(),
    })?;
    if !outcome.stderr_tail.is_empty() {
        eprint!("{}", outcome.stderr_tail);
    }
    eprintln!("fuel used: {}", outcome.fuel_used);
    match outcome.status {
        quorum_worker::sandbox::Status::Success(output) => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&output).and_then(|()| stdout.flush()).context("cannot write the output")?;
            Ok(())
        }
        quorum_worker::sandbox::Status::Error(message) => anyhow::bail!("the app failed: {message}"),
        quorum_worker::sandbox::Status::Aborted => anyhow::bail!("the run was aborted"),
    }
}

/// Completes on SIGINT or SIGTERM. Handlers are installed before returning,
/// so a signal arriving during start-up is not lost.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("Ctrl-C received");
            }
        })
    }
}

/// SIGUSR1 pauses, SIGUSR2 resumes (what `quorum-worker pause` / `resume` send).
fn command_signals() -> anyhow::Result<mpsc::UnboundedReceiver<quorum_worker::Command>> {
    let (sender, receiver) = mpsc::unbounded_channel();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut pause = signal(SignalKind::user_defined1()).context("cannot handle SIGUSR1")?;
        let mut resume = signal(SignalKind::user_defined2()).context("cannot handle SIGUSR2")?;
        let mut requests = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        tokio::spawn(async move {
            loop {
                let command = tokio::select! {
                    Some(()) = pause.recv() => quorum_worker::Command::Pause,
                    Some(()) = resume.recv() => quorum_worker::Command::Resume,
                    Some(()) = requests.recv() => quorum_worker::Command::Requests,
                    else => break,
                };
                if sender.send(command).is_err() {
                    break;
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop(sender);
    Ok(receiver)
}

/// `quorum-worker status [--json] [--watch]`.
async fn show_status(
    state_dir: &std::path::Path,
    ca_cert: Option<Vec<u8>>,
    json: bool,
    watch: bool,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    loop {
        let status = quorum_worker::status::gather(state_dir, ca_cert.as_deref(), true).await?;
        let text = if json {
            serde_json::to_string(&status)? + "\n"
        } else {
            quorum_worker::status::render(&status, quorum_worker::journal::now_ms())
        };
        let mut stdout = std::io::stdout().lock();
        if watch && !json {
            // Clear the terminal and go home, as watch(1) does.
            write!(stdout, "\x1b[2J\x1b[H")?;
        }
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        drop(stdout);
        if !watch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn read_ca_cert(path: Option<&std::path::Path>) -> anyhow::Result<Option<Vec<u8>>> {
    path.map(|path| std::fs::read(path).with_context(|| format!("reading --ca-cert {}", path.display()))).transpose()
}

/// This machine's host name, or "quorum-worker" when it cannot be found.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "quorum-worker".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_default_state_directory_is_the_users_data_directory() {
        let os = |text: &str| Some(std::ffi::OsString::from(text));
        let expect = |text: &str| Some(PathBuf::from(text));
        assert_eq!(super::default_state_dir(os("/x/data"), os("/home/v")), expect("/x/data/quorum-worker"));
        assert_eq!(super::default_state_dir(None, os("/home/v")), expect("/home/v/.local/share/quorum-worker"));
        // Relative values are ignored, as the XDG rules say.
        assert_eq!(super::default_state_dir(os("data"), os("/home/v")), expect("/home/v/.local/share/quorum-worker"));
        assert_eq!(super::default_state_dir(os(""), None), None);
        assert_eq!(super::default_state_dir(None, os("rel")), None);
    }

    #[test]
    fn defaults_match_the_contract() {
        let cli = Cli::try_parse_from(["quorum-worker"]).expect("no flags needed");
        // Environment variables may override these in a developer's shell.
        if std::env::var_os("QUORUM_SERVER").is_none() {
            assert_eq!(cli.servers, [quorum_worker::Attach::new("http://127.0.0.1:7737", 100.0)]);
        }
        if std::env::var_os("QUORUM_WORKER_STATE").is_none() {
            assert_eq!(cli.state_dir, None, "the per-user default, resolved at start");
        }
        assert_eq!(cli.max_backoff_ms, 30_000);
        assert_eq!(cli.app_cache_mb, quorum_worker::DEFAULT_APP_CACHE_BYTES, "256 MiB");
        if std::env::var_os("QUORUM_WORKER_LOG_FILE").is_none() {
            assert_eq!(cli.log_file, None, "stderr unless asked");
        }
        if std::env::var_os("QUORUM_WORKER_LOG_MAX_MB").is_none()
            && std::env::var_os("QUORUM_WORKER_LOG_KEEP").is_none()
        {
            assert_eq!((cli.log_max_bytes, cli.log_keep), (10_000_000, 3));
        }
        let cli = Cli::try_parse_from(["quorum-worker", "--log-file", "w.log", "--log-max-mb", "0.5"]).expect("valid");
        assert_eq!((cli.log_file, cli.log_max_bytes), (Some(PathBuf::from("w.log")), 500_000));
        assert!(Cli::try_parse_from(["quorum-worker", "--log-max-mb", "0"]).is_err());
        assert!(Cli::try_parse_from(["quorum-worker", "--log-keep", "0"]).is_err());
        assert_eq!((cli.cpus, cli.cpu_limit, cli.buffer_low, cli.buffer_high), (None, 100, None, None));
        assert!(cli.command.is_none());
        assert!(Cli::try_parse_from(["quorum-worker", "--cpus", "0"]).is_err());
        assert!(Cli::try_parse_from(["quorum-worker", "--cpu-limit", "0"]).is_err());
        assert!(Cli::try_parse_from(["quorum-worker", "--cpu-limit", "101"]).is_err());
        let cli =
            Cli::try_parse_from(["quorum-worker", "--cpus", "3", "--max-backoff-ms", "500"]).expect("valid flags");
        assert_eq!((cli.cpus, cli.max_backoff_ms), (Some(3), 500));
    }

    #[test]
    fn the_app_cache_budget_is_in_mib_with_fractions() {
        let bytes =
            |mib: &str| Cli::try_parse_from(["quorum-worker", "--app-cache-mb", mib]).map(|cli| cli.app_cache_mb).ok();
        assert_eq!(bytes("1"), Some(1024 * 1024));
        assert_eq!(bytes("0.5"), Some(512 * 1024));
        assert_eq!(bytes("0.001"), Some(1048), "rounded down");
        assert_eq!(bytes("0"), Some(0));
        for bad in ["-1", "x", "inf", "NaN", ""] {
            assert_eq!(bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn several_servers_with_shares() {
        let cli = Cli::try_parse_from(["quorum-worker", "--server", "http://a:1", "--server", "http://b:2,share=300"])
            .expect("valid flags");
        assert_eq!(
            cli.servers,
            [quorum_worker::Attach::new("http://a:1", 100.0), quorum_worker::Attach::new("http://b:2", 300.0),]
        );
        // A bare HOST:PORT is an http:// coordinator; another scheme is refused at once.
        let bare = Cli::try_parse_from(["quorum-worker", "--server", "127.0.0.1:7737,share=50"]).expect("valid");
        assert_eq!(bare.servers, [quorum_worker::Attach::new("http://127.0.0.1:7737", 50.0)]);
        for bad in
            ["http://a,share=0", "http://a,share=-1", "http://a,share=x", ",share=5", "http://a,share=inf", "ftp://a:1"]
        {
            assert!(Cli::try_parse_from(["quorum-worker", "--server", bad]).is_err(), "{bad}");
        }
    }

    /// Parses one `--server` value: its addresses and share, or the error.
    fn check_attach(text: &str, expected: Result<(&[&str], f64), &str>) {
        let parsed = parse_attach(text);
        match expected {
            Ok((addresses, share)) => {
                let addresses = addresses.iter().map(|a| (*a).to_owned()).collect();
                assert_eq!(parsed, Ok(quorum_worker::Attach { addresses, share }), "{text}");
            }
            Err(needle) => {
                let error = parsed.expect_err(text);
                assert!(error.contains(needle), "{text}: {error:?} should say {needle:?}");
            }
        }
    }

    #[test]
    fn a_group_of_addresses_is_one_server() {
        check_attach("http://a:1,http://b:2", Ok((&["http://a:1", "http://b:2"], 100.0)));
        check_attach("http://a:1,http://b:2,share=200", Ok((&["http://a:1", "http://b:2"], 200.0)));
        check_attach("a:1,https://b:2,c:3", Ok((&["http://a:1", "https://b:2", "http://c:3"], 100.0)));
        // One address stays as it was.
        check_attach("http://a:1", Ok((&["http://a:1"], 100.0)));
        check_attach("http://a:1,share=7", Ok((&["http://a:1"], 7.0)));
        // Duplicates within a group, also once written bare.
        check_attach("http://a:1,http://a:1", Err("http://a:1 given twice in the group"));
        check_attach("a:1,http://a:1", Err("http://a:1 given twice in the group"));
        // Empty items.
        check_attach("http://a:1,,http://b:2", Err("empty server URL"));
        check_attach("http://a:1,", Err("empty server URL"));
        check_attach(",http://a:1", Err("empty server URL"));
        check_attach("", Err("empty server URL"));
        check_attach("share=5", Err("empty server URL"));
        // The share last, once; every address checked.
        check_attach("http://a:1,share=5,http://b:2", Err("share=N comes last"));
        check_attach("http://a:1,share=5,share=6", Err("share given twice"));
        check_attach("http://a:1,ftp://b:2", Err("expected http://HOST:PORT"));
        check_attach("http://a:1,http://b:2,share=0", Err("must be positive"));
    }

    #[test]
    fn groups_from_flags_and_the_environment() {
        let cli = Cli::try_parse_from([
            "quorum-worker",
            "--server",
            "http://a:1,http://b:1,share=200",
            "--server",
            "http://c:1",
        ])
        .expect("valid flags");
        assert_eq!(
            cli.servers,
            [
                quorum_worker::Attach { addresses: vec!["http://a:1".into(), "http://b:1".into()], share: 200.0 },
                quorum_worker::Attach::new("http://c:1", 100.0),
            ]
        );
        // QUORUM_SERVER separates attachments by spaces (clap's delimiter,
        // checked here on the flag, which shares it).
        let cli = Cli::try_parse_from(["quorum-worker", "--server", "http://a:1,http://b:1 http://c:1,share=5"])
            .expect("valid flags");
        assert_eq!(
            cli.servers,
            [
                quorum_worker::Attach { addresses: vec!["http://a:1".into(), "http://b:1".into()], share: 100.0 },
                quorum_worker::Attach::new("http://c:1", 5.0),
            ]
        );
        // An address in two groups is refused when the worker starts.
        let cli = Cli::try_parse_from(["quorum-worker", "--server", "http://a:1,http://b:1", "--server", "b:1"])
            .expect("each value is valid");
        let error = quorum_worker::failover::check_distinct(cli.servers.iter().map(|a| a.addresses.as_slice()))
            .expect_err("b in two groups");
        assert!(error.contains("http://b:1 given twice"), "{error}");
    }

    #[test]
    fn commands_take_the_state_dir() {
        let cli = Cli::try_parse_from(["quorum-worker", "status", "--state-dir", "/tmp/x"]).expect("valid");
        assert!(matches!(cli.command, Some(Command::Status { json: false, watch: false })));
        assert_eq!(cli.state_dir, Some(PathBuf::from("/tmp/x")));
        assert!(matches!(
            Cli::try_parse_from(["quorum-worker", "pause"]).expect("valid").command,
            Some(Command::Pause)
        ));
        let cli =
            Cli::try_parse_from(["quorum-worker", "run", "app.wasm", "--seed", "7", "--input", "in"]).expect("valid");
        let Some(Command::Run(args)) = cli.command else { panic!("run: {cli:?}") };
        assert_eq!((args.app, args.seed, args.input, args.fuel), ("app.wasm".into(), 7, Some("in".into()), 0));
        assert!(Cli::try_parse_from(["quorum-worker", "run", "app.wasm"]).is_err(), "--seed is required");
    }
}
