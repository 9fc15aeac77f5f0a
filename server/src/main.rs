//! `quorum-server`: parses flags, sets up logging and signals, binds the
//! listener and calls [`quorum_server::run`].

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

/// The quorum coordinator: stores projects, hands work units to volunteer
/// workers over gRPC and validates their results.
#[derive(Debug, Parser)]
#[command(name = "quorum-server", version)]
struct Cli {
    /// Address to serve gRPC on (port 0 picks a free port).
    #[arg(long, env = "QUORUM_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:7737")]
    listen: SocketAddr,
    /// SQLite database file; created with the schema if missing.
    #[arg(long, env = "QUORUM_DB", value_name = "PATH", default_value = "quorum.db")]
    db: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(serve(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let listener =
        tokio::net::TcpListener::bind(cli.listen).await.with_context(|| format!("binding {}", cli.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // The one line on stdout: scripts and tests read the bound port from it.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "quorum-server listening on {addr}").context("writing to stdout")?;
    stdout.flush().context("writing to stdout")?;
    tracing::info!(%addr, db = %cli.db.display(), "coordinator started");
    quorum_server::run(quorum_server::Config::new(cli.db.clone()), listener, shutdown)
        .await
        .with_context(|| format!("coordinator on {}", cli.db.display()))?;
    tracing::info!("coordinator stopped");
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
