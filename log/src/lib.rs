//! How every quorum binary logs: one line per event on stderr, filtered by
//! `RUST_LOG` (else the binary's default level), as text for people or as
//! JSON Lines for log collectors (`--log-format json`). Text has colours only
//! when stderr is a terminal, so a redirected log holds no ANSI codes.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The format of the log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (the message and the event's fields) and the enclosing `span`s.
    Json,
}

/// Installs the global subscriber: `RUST_LOG` when set and valid, else
/// `default_level` (e.g. "info" for daemons, "warn" for the CLI).
pub fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // A log that cannot be written (stderr on a full disk) loses lines, never
    // the process: tracing's own report of the failure would `eprintln!`,
    // which panics, on the same full disk, in whatever thread logged.
    let builder =
        tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).log_internal_errors(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}
