//! The `quorum-worker` binary: parses flags, installs logging and signal
//! handlers, then runs [`quorum_worker::run`] until SIGINT or SIGTERM.
//! Exit codes: 0 after a clean stop, 2 on error (`error: ...` on stderr).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// A quorum volunteer worker: asks the coordinator for work, runs it in a
/// deterministic WebAssembly sandbox, reports the results.
///
/// Logs one line per event on stderr (filter with RUST_LOG, default info).
/// Stops cleanly on SIGINT (Ctrl-C) or SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "quorum-worker", version)]
struct Cli {
    /// URL of the quorum coordinator.
    #[arg(long, env = "QUORUM_SERVER", value_name = "URL", default_value = "http://127.0.0.1:7737")]
    server: String,

    /// Directory holding this host's identity and app cache.
    ///
    /// Contains host.json (server, host id and secret token, mode 0600) and
    /// apps/<digest>.wasm. Created if missing.
    #[arg(long, env = "QUORUM_WORKER_STATE", value_name = "DIR", default_value = "./quorum-worker-state")]
    state_dir: PathBuf,

    /// Tasks to run at once [default: all logical cores].
    ///
    /// The worker also keeps up to this many more tasks queued locally.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    cpus: Option<u32>,

    /// Host name sent at registration [default: this machine's hostname].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// The volunteer account this host belongs to.
    ///
    /// Two hosts of one account never get copies of the same work unit, so a
    /// volunteer's machines cannot vouch for each other. Empty: the host stands alone.
    #[arg(long, env = "QUORUM_ACCOUNT", value_name = "NAME", default_value = "")]
    account: String,

    /// Cap of the retry backoff, in milliseconds.
    ///
    /// Failed calls are retried after an exponential, jittered delay starting
    /// at 100 ms and never longer than this; so is the server's retry_after_ms.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    max_backoff_ms: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let cpus = match cli.cpus {
        Some(cpus) => cpus as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let config = quorum_worker::Config {
        server: cli.server,
        state_dir: cli.state_dir,
        cpus,
        name: cli.name.unwrap_or_else(hostname),
        account: cli.account,
        max_backoff: Duration::from_millis(cli.max_backoff_ms),
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        quorum_worker::run(config, shutdown).await
    })
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
    fn defaults_match_the_contract() {
        let cli = Cli::try_parse_from(["quorum-worker"]).expect("no flags needed");
        // Environment variables may override these in a developer's shell.
        if std::env::var_os("QUORUM_SERVER").is_none() {
            assert_eq!(cli.server, "http://127.0.0.1:7737");
        }
        if std::env::var_os("QUORUM_WORKER_STATE").is_none() {
            assert_eq!(cli.state_dir, PathBuf::from("./quorum-worker-state"));
        }
        assert_eq!(cli.max_backoff_ms, 30_000);
        assert_eq!(cli.cpus, None);
        assert!(Cli::try_parse_from(["quorum-worker", "--cpus", "0"]).is_err());
        let cli =
            Cli::try_parse_from(["quorum-worker", "--cpus", "3", "--max-backoff-ms", "500"]).expect("valid flags");
        assert_eq!((cli.cpus, cli.max_backoff_ms), (Some(3), 500));
    }
}
