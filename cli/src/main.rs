//! The `quorum` binary: parses the command line, installs logging on stderr,
//! runs the command and turns its outcome into an exit code (0 success,
//! 1 what was asked about failed or timed out, 2 any other error; 0 on a
//! broken pipe so that `quorum results p | head` is quiet).

use std::process::ExitCode;

use clap::Parser;
use quorum_cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    quorum_log::init(quorum_log::LogFormat::Text, "warn");

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(quorum_cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(quorum_cli::exit_code(&error))
        }
    }
}

/// True when the error comes from writing to a closed stdout (`| head`).
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
