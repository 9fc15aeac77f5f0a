//! `quorum`, the command line for scientists and operators: submit a project
//! (an app and its work units) to a coordinator, follow it, read its
//! validated (canonical) results, list hosts, cancel, retry failed work
//! units, purge ended ones, resume paused batches, and run the whole system locally with `quorum demo`.
//!
//! Layout:
//! - `Cli`, `Command`: the command line, parsed by clap (this file).
//! - `manifest`: `project.toml` parsed into domain types (`Manifest`,
//!   `Policy`, `Limits`, `WorkUnitSource`), the app module and the work units.
//!   Knows nothing of gRPC.
//! - `credit`: the credit leaderboard of `quorum credit`, a pure function
//!   of the hosts.
//! - `client`: the connection to the coordinator and the one place where gRPC
//!   errors become readable messages.
//! - `output`: tables for people and the stable `--json` schemas.
//! - `signing`: project keys (`quorum keygen`) and app signatures.
//! - `manual`: man pages made from the clap definitions (`quorum man-pages`).
//! - `progress`: progress bars, lines or JSON events of long commands.
//! - `token`: where the API token comes from (flag, file, environment).
//! - `commands`: one module per command, each a thin adapter between the
//!   three above.
//!
//! Exit codes (see `main.rs`): 0 success, 2 error with `error: {:#}` on
//! stderr; a broken pipe on stdout exits 0 quietly.

pub mod client;
pub mod commands;
pub mod credit;
pub mod manifest;
mod manual;
pub mod output;
pub mod progress;
pub mod signing;
pub mod token;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// The quorum admin CLI: submit projects to a coordinator, follow them and
/// read their validated results.
///
/// Data goes to stdout (tables for people, JSON with --json), logs to stderr
/// (filter them with RUST_LOG). Exit codes: 0 success; 1 what was asked
/// about failed or timed out (`quorum wait` past its timeout, or a project
/// that ended with failed work units); 2 a usage error, a connection error
/// or an error the coordinator answered.
#[derive(Debug, Parser)]
#[command(name = "quorum", version, propagate_version = true)]
pub struct Cli {
    /// URL of the coordinator (quorum-server).
    ///
    /// A bare "HOST:PORT" is taken as "http://HOST:PORT".
    #[arg(long, global = true, env = "QUORUM_SERVER", value_name = "URL", default_value = "http://127.0.0.1:7737")]
    pub server: String,

    /// The API token to call the coordinator with (admin or submit).
    ///
    /// Without --token or --token-file, the QUORUM_TOKEN environment variable,
    /// then a file named by QUORUM_TOKEN_FILE. Prefer a file: a flag shows in
    /// the process list.
    #[arg(long, global = true, value_name = "TOKEN", value_parser = token::parse_secret, conflicts_with = "token_file")]
    pub token: Option<token::Secret>,

    /// A file holding the API token (readable by its owner only, e.g. mode 600).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Trust only this CA (PEM) for an https:// coordinator.
    ///
    /// Without it, the certificate must chain to the system's trusted roots.
    #[arg(long, global = true, env = "QUORUM_CA_CERT", value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,

    /// Print machine-readable JSON on stdout instead of tables.
    ///
    /// The schemas are stable: fields are only ever added.
    #[arg(long, global = true)]
    pub json: bool,

    /// Show every column of tables, however wide (they fit 100 columns otherwise).
    #[arg(long, global = true)]
    pub wide: bool,

    /// How `wait`, long `submit`s and `demo` show progress on stderr.
    ///
    /// auto: a bar on a terminal, else JSON Lines events with --json
    /// ({"event":"progress"|"finished","command","project","done","total",
    /// "message"}), else a line per tenth.
    #[arg(long, global = true, value_enum, value_name = "MODE", default_value_t)]
    pub progress: progress::ProgressMode,

    #[command(subcommand)]
    pub command: Command,
}

/// The commands, one module each under `commands/`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a project from a manifest (project.toml) with all its work units.
    ///
    /// The manifest is checked, the app loaded (a .wat app is converted to a
    /// binary module) and every work unit built before anything is sent: a
    /// mistake anywhere sends nothing. Up to about 48 MiB of work units go in
    /// one atomic call; larger submissions create the project with a first
    /// batch, then add the rest in batches of 10,000.
    ///
    /// --json prints {"project","project_id","app_digest","n_work_units"}.
    Submit {
        /// The project manifest; its paths are relative to its folder.
        #[arg(value_name = "MANIFEST")]
        manifest: PathBuf,

        /// Sign the app with this project key (made by `quorum keygen`).
        ///
        /// Overrides the manifest's `signing_key`. Workers verify the
        /// signature before running the app and pin the project's key.
        #[arg(long, value_name = "FILE")]
        signing_key: Option<PathBuf>,
    },

    /// Make an ed25519 project key for signing apps.
    ///
    /// Writes the private key to FILE (mode 0600; never replaces a file) and
    /// the public key to FILE.pub, and prints the public key (base64), the
    /// form `quorum-worker --trust-key PROJECT=BASE64` takes. Keep the
    /// private key off the coordinator: whoever holds it can sign apps that
    /// volunteers will run.
    Keygen {
        /// Where to write the private key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },

    /// Show the state of one project or of all of them.
    ///
    /// Counts work units by state (open, done, failed) and results by state,
    /// names each project's validator, and lists every paused batch with the
    /// reason it was paused (resume it with `quorum resume`). --json prints
    /// {"projects":[...]} with the fields of the protocol's ProjectStatus,
    /// batches included.
    Status {
        /// The project to show; every project when omitted.
        #[arg(value_name = "PROJECT")]
        project: Option<String>,
    },

    /// Print the canonical (validated) results of a project.
    ///
    /// One record per work unit that has a canonical result, in work unit id
    /// order. jsonl: {"work_unit_id","work_unit","result_id","output" (when
    /// valid UTF-8) or "output_base64","output_digest","fuel_used"}. csv:
    /// header `work_unit_id,work_unit,result_id,output_digest,fuel_used,output`
    /// (a non-UTF-8 output is written as "base64:" followed by its base64).
    Results {
        /// The project whose results to print.
        #[arg(value_name = "PROJECT")]
        project: String,

        /// Output format.
        #[arg(long, value_enum, value_name = "FORMAT", default_value_t = ResultsFormat::Jsonl)]
        format: ResultsFormat,

        /// Write the results to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,

        /// Every result (copy) of every work unit, not only the canonical
        /// ones: its state, host, fuel, run time, error message and stderr tail.
        ///
        /// jsonl: {"result_id","work_unit_id","work_unit","batch_id","state",
        /// "server_state","outcome","validate_state","host_id","fuel_used",
        /// "run_time_ms","error_message","stderr_tail",...}; csv: the same
        /// fields; the table shows the first line of each error.
        #[arg(long)]
        all: bool,

        /// With --all: only the results in this state.
        #[arg(long, value_enum, value_name = "STATE", requires = "all")]
        state: Option<CopyState>,

        /// With --all: only the results of this batch's work units.
        #[arg(long, value_name = "ID", requires = "all", value_parser = clap::value_parser!(i64).range(1..))]
        batch: Option<i64>,

        /// Also write the canonical results' output files (what their apps
        /// wrote in /output) under this folder: DIR/WORK_UNIT/NAME (created;
        /// a work unit whose name is not a plain file name goes in wu-ID).
        #[arg(long, value_name = "DIR", conflicts_with = "all")]
        files: Option<PathBuf>,
    },

    /// Delete a project and everything of it: work units, results, batches,
    /// and its app unless another project uses it. Irreversible.
    ///
    /// One transaction: it happens entirely or not at all. Refused while
    /// hosts hold copies of the project: `quorum cancel` it first, and
    /// delete it once its copies are back (hosts abort them at their next
    /// contact) or past their deadlines. Volunteers keep their credit.
    /// --json prints {"project","n_work_units","n_results"}.
    Delete {
        /// The project to delete.
        #[arg(value_name = "PROJECT")]
        project: String,
    },

    /// Group a project's errors by message: how many copies, hosts and work
    /// units each error hit, example work units and the latest stderr.
    ///
    /// Errors are copies whose app failed on a host (outcome client_error:
    /// a trap, a non-zero exit, a limit) or whose output the validator could
    /// not read (validate_error). The most frequent first. --json prints
    /// {"project","groups":[...]} with the fields of the protocol's ErrorGroup.
    Errors {
        /// The project whose errors to show.
        #[arg(value_name = "PROJECT")]
        project: String,

        /// Only the errors of this batch's work units.
        #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
        batch: Option<i64>,
    },

    /// List the volunteer hosts and their counters.
    ///
    /// Shows each host's account, its streak of valid results in a row and
    /// the number of results it may receive per day. --json prints
    /// {"hosts":[...]} with the fields of the protocol's HostInfo.
    Hosts,

    /// Show the credit leaderboard: credit per volunteer account.
    ///
    /// The hosts of one account are summed; a host without an account stands
    /// alone as "host ID (NAME)". Sorted by credit, most first, then by name.
    /// --json prints
    /// {"volunteers":[{"rank","volunteer","n_hosts","n_valid","total_credit"}]}.
    Credit {
        /// Show only the first N volunteers.
        ///
        /// Every volunteer when omitted.
        #[arg(long, value_name = "N")]
        top: Option<NonZeroUsize>,
    },

    /// Cancel a project, one of its batches or some of its work units.
    ///
    /// Without options the whole project is cancelled: its open work units
    /// fail as cancelled and it gets no new work. With --batch or --work-unit
    /// only those work units are cancelled (the ones still open) and the
    /// project stays active. Hosts holding copies of a cancelled work unit are
    /// told to abort them. --json prints {"project","n_work_units_cancelled"}.
    Cancel {
        /// The project to cancel, or whose work units to cancel.
        #[arg(value_name = "PROJECT")]
        project: String,

        /// Cancel only the open work units of this batch (its id, as `quorum
        /// status --json` shows it).
        #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..), conflicts_with = "work_units")]
        batch: Option<i64>,

        /// Cancel only this work unit (its id); repeat for several.
        ///
        /// Work units that have already ended are left as they are.
        #[arg(long = "work-unit", value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
        work_units: Vec<i64>,
    },

    /// Retry failed work units as a new batch, optionally with a new policy.
    ///
    /// Every failed work unit of the project is retried, or only those given
    /// with --work-unit (each must have failed, or nothing is retried). Each
    /// starts a new attempt: copies of its earlier attempts no longer count.
    /// The new batch uses the project's replication policy; any policy flag
    /// gives it the project's current policy with that field replaced (the
    /// coordinator checks the result is coherent). --json prints
    /// {"project","n_work_units","batch_id"}.
    Retry {
        /// The project whose failed work units to retry.
        #[arg(value_name = "PROJECT")]
        project: String,

        /// Retry only this work unit (its id); repeat for several.
        ///
        /// Every failed work unit of the project when omitted.
        #[arg(long = "work-unit", value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
        work_units: Vec<i64>,

        #[command(flatten)]
        policy: commands::retry::PolicyOverrides,
    },

    /// Purge the data of a project's ended work units to free space.
    ///
    /// Drops the inputs of every ended (done or failed) work unit and the
    /// outputs of their non-canonical copies. Canonical results stay readable
    /// with `quorum results`; a copy of a purged work unit reported later is
    /// marked too late. Open work units are untouched, and purging again only
    /// purges work units that ended since. --json prints
    /// {"project","n_work_units_purged"}.
    Purge {
        /// The project to purge.
        #[arg(value_name = "PROJECT")]
        project: String,
    },

    /// Resume paused batches of a project so that their copies are sent again.
    ///
    /// The coordinator pauses a batch (the work units of one submission)
    /// whose first results are mostly errors; `quorum status` shows it with
    /// the reason. Resuming starts its error watch over. Without --batch,
    /// every paused batch of the project is resumed. --json prints
    /// {"project","n_batches_resumed"}.
    Resume {
        /// The project whose batches to resume.
        #[arg(value_name = "PROJECT")]
        project: String,

        /// Resume only this batch (its id, as `quorum status` shows it).
        ///
        /// Every paused batch of the project when omitted.
        #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
        batch: Option<i64>,
    },

    /// Block until every work unit of a project has ended (done or failed).
    ///
    /// Prints the project's status at the end. Exits with 1 when the timeout
    /// passes while work units are still open, or when the project ended with
    /// failed work units (see `quorum errors PROJECT`).
    Wait {
        /// The project to wait for.
        #[arg(value_name = "PROJECT")]
        project: String,

        /// Give up after this long (e.g. "90s", "5m", "2h"); no limit when omitted.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<Duration>,
    },

    /// Run the whole system locally: a coordinator, two workers, one example.
    ///
    /// Starts quorum-server and two quorum-worker processes found next to this
    /// executable (build them with `cargo build --release`), submits an
    /// example project, waits for it, prints its status, its validated
    /// results and their checked total, then stops everything. The global
    /// --server flag is not used: the demo runs its own coordinator on a free
    /// local port.
    Demo {
        /// Folder for the demo's database, worker state and logs.
        ///
        /// Its previous database and worker state are wiped first.
        #[arg(long, value_name = "DIR", default_value = "quorum-demo")]
        dir: PathBuf,

        /// The example project to run.
        #[arg(long, value_enum, value_name = "EXAMPLE", default_value_t = commands::demo::Example::Primes)]
        example: commands::demo::Example,

        /// Give up when the project has not finished after this long.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
        timeout: Duration,
    },

    /// Print a shell completion script for quorum on stdout.
    ///
    /// E.g. `quorum completions bash > /etc/bash_completion.d/quorum`, or
    /// `quorum completions zsh > ~/.zfunc/_quorum`.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },

    /// Write man pages for quorum and each of its commands into a folder.
    ///
    /// `quorum.1` and `quorum-COMMAND.1`, roff, made from this help text;
    /// e.g. `quorum man-pages /usr/local/share/man/man1`.
    ManPages {
        /// The folder to write them in (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Formats of `quorum results`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResultsFormat {
    /// One JSON object per line (JSON Lines).
    Jsonl,
    /// Comma-separated values with a header line (RFC 4180 quoting).
    Csv,
    /// Aligned columns for people (outputs shortened).
    Table,
}

/// Where a result (copy) stands, as `quorum results --all --state` takes it
/// (the protocol's `ResultInfo.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum CopyState {
    /// Waiting for a host.
    Unsent,
    /// Sent to a host, before its deadline.
    InProgress,
    /// Reported successfully, awaiting validation.
    Reported,
    /// Agrees with the canonical result.
    Valid,
    /// Disagrees with the canonical result.
    Invalid,
    /// Compared without agreement; another copy was sent.
    Inconclusive,
    /// Reported after its work unit was purged.
    TooLate,
    /// The app failed on the host.
    Error,
    /// The validator could not read its output.
    ValidateError,
    /// Its deadline passed without a report.
    NoReply,
    /// Not needed: its work unit ended first.
    DidntNeed,
    /// Its project or work unit was cancelled.
    Cancelled,
}

impl CopyState {
    /// The name the protocol uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyState::Unsent => "unsent",
            CopyState::InProgress => "in_progress",
            CopyState::Reported => "reported",
            CopyState::Valid => "valid",
            CopyState::Invalid => "invalid",
            CopyState::Inconclusive => "inconclusive",
            CopyState::TooLate => "too_late",
            CopyState::Error => "error",
            CopyState::ValidateError => "validate_error",
            CopyState::NoReply => "no_reply",
            CopyState::DidntNeed => "didnt_need",
            CopyState::Cancelled => "cancelled",
        }
    }
}

/// Parses a humantime duration ("90s", "5m", "1h 30m") for clap.
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| format!("invalid duration '{text}': {error}"))
}

/// Runs one parsed command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = commands::Context {
        server: cli.server,
        json: cli.json,
        wide: cli.wide,
        progress: cli.progress.resolve(cli.json),
        token: cli.token,
        token_file: cli.token_file,
        ca_cert: cli.ca_cert,
    };
    match cli.command {
        Command::Submit { manifest, signing_key } => {
            commands::submit::run(&ctx, &manifest, signing_key.as_deref()).await
        }
        Command::Keygen { out } => {
            let public = signing::keygen(&out)?;
            println!("{public}");
            eprintln!(
                "project key written to {} (keep it private) and its public key to {}",
                out.display(),
                signing::public_key_path(&out).display()
            );
            Ok(())
        }
        Command::Status { project } => commands::status::run(&ctx, project.as_deref()).await,
        Command::Results { project, format, out, all: false, files, .. } => {
            commands::results::run(&ctx, &project, format, out.as_deref(), files.as_deref()).await
        }
        Command::Results { project, format, out, all: true, state, batch, .. } => {
            let filter = commands::results::CopyFilter { state, batch };
            commands::results::run_all(&ctx, &project, format, out.as_deref(), filter).await
        }
        Command::Errors { project, batch } => commands::errors::run(&ctx, &project, batch).await,
        Command::Delete { project } => commands::delete::run(&ctx, &project).await,
        Command::Hosts => commands::hosts::run(&ctx).await,
        Command::Credit { top } => commands::credit::run(&ctx, top).await,
        Command::Cancel { project, batch, work_units } => {
            commands::cancel::run(&ctx, &project, commands::cancel::Scope::new(batch, work_units)).await
        }
        Command::Retry { project, work_units, policy } => {
            commands::retry::run(&ctx, &project, &work_units, &policy).await
        }
        Command::Purge { project } => commands::purge::run(&ctx, &project).await,
        Command::Resume { project, batch } => commands::resume::run(&ctx, &project, batch).await,
        Command::Wait { project, timeout } => commands::wait::run(&ctx, &project, timeout).await,
        Command::Demo { dir, example, timeout } => commands::demo::run(&ctx, &dir, example, timeout).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "quorum", &mut std::io::stdout());
            Ok(())
        }
        Command::ManPages { dir } => {
            let written = manual::write_man_pages(&dir)?;
            eprintln!("wrote {written} man pages to {}", dir.display());
            Ok(())
        }
    }
}

/// What was asked about failed or timed out: `quorum` exits with 1 for it
/// (2 for every other error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unmet(pub String);

/// The exit code for an error of [`run`]: 1 for an [`Unmet`] anywhere in
/// its chain, 2 otherwise.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.chain().any(|cause| cause.is::<Unmet>()) { 1 } else { 2 }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn copy_states_are_named_on_the_command_line_as_in_the_protocol() {
        for state in CopyState::value_variants() {
            let name = state.to_possible_value().expect("every state is shown");
            assert_eq!(name.get_name(), state.as_str());
        }
    }

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_contract_command_lines() {
        // `--server` is given every time so that a QUORUM_SERVER in the
        // environment cannot change the outcome; it is global, so it may
        // come after the command.
        let check = |args: &[&str], expected: &str| {
            let cli = Cli::try_parse_from(args).expect("valid command line");
            let actual = format!("{} json={} {:?}", cli.server, cli.json, cli.command);
            assert_eq!(actual, expected, "for {args:?}");
        };
        check(
            &["quorum", "--server", "http://h:1", "submit", "p.toml"],
            r#"http://h:1 json=false Submit { manifest: "p.toml", signing_key: None }"#,
        );
        check(&["quorum", "status", "--json", "--server", "h:2"], "h:2 json=true Status { project: None }");
        check(
            &["quorum", "--server=h:3", "results", "p", "--format", "csv", "--out", "r.csv"],
            r#"h:3 json=false Results { project: "p", format: Csv, out: Some("r.csv"), all: false, state: None, batch: None, files: None }"#,
        );
        check(
            &["quorum", "--server=h:3", "results", "p"],
            r#"h:3 json=false Results { project: "p", format: Jsonl, out: None, all: false, state: None, batch: None, files: None }"#,
        );
        check(
            &["quorum", "--server=h:4", "wait", "p", "--timeout", "5m"],
            r#"h:4 json=false Wait { project: "p", timeout: Some(300s) }"#,
        );
        check(
            &["quorum", "--server=h:5", "demo", "--example", "integral"],
            r#"h:5 json=false Demo { dir: "quorum-demo", example: Integral, timeout: 600s }"#,
        );
        check(&["quorum", "--server=h:6", "credit"], "h:6 json=false Credit { top: None }");
        check(&["quorum", "--server=h:6", "credit", "--top", "3", "--json"], "h:6 json=true Credit { top: Some(3) }");
        check(&["quorum", "--server=h:7", "resume", "p"], r#"h:7 json=false Resume { project: "p", batch: None }"#);
        check(
            &["quorum", "--server=h:7", "resume", "p", "--batch", "3", "--json"],
            r#"h:7 json=true Resume { project: "p", batch: Some(3) }"#,
        );
        check(
            &["quorum", "--server=h:8", "cancel", "p"],
            r#"h:8 json=false Cancel { project: "p", batch: None, work_units: [] }"#,
        );
        check(
            &["quorum", "--server=h:8", "cancel", "p", "--batch", "2", "--json"],
            r#"h:8 json=true Cancel { project: "p", batch: Some(2), work_units: [] }"#,
        );
        check(
            &["quorum", "--server=h:8", "cancel", "p", "--work-unit", "3", "--work-unit", "5"],
            r#"h:8 json=false Cancel { project: "p", batch: None, work_units: [3, 5] }"#,
        );
        check(
            &["quorum", "--server=h:9", "retry", "p"],
            "h:9 json=false Retry { project: \"p\", work_units: [], policy: PolicyOverrides { min_quorum: None, \
             target_results: None, max_error_results: None, max_total_results: None, max_success_results: None, \
             deadline: None, priority: None, adaptive_replication: None } }",
        );
        check(
            &[
                "quorum",
                "--server=h:9",
                "retry",
                "p",
                "--work-unit",
                "3",
                "--work-unit",
                "4",
                "--min-quorum",
                "1",
                "--target-results",
                "2",
                "--max-error-results",
                "0",
                "--max-total-results",
                "9",
                "--max-success-results",
                "5",
                "--deadline",
                "90s",
                "--priority",
                "-3",
                "--adaptive-replication",
                "true",
            ],
            "h:9 json=false Retry { project: \"p\", work_units: [3, 4], policy: PolicyOverrides { min_quorum: Some(1), \
             target_results: Some(2), max_error_results: Some(0), max_total_results: Some(9), \
             max_success_results: Some(5), deadline: Some(90s), priority: Some(-3), adaptive_replication: Some(true) } }",
        );
        check(&["quorum", "--server=h:10", "purge", "p", "--json"], r#"h:10 json=true Purge { project: "p" }"#);
        assert!(Cli::try_parse_from(["quorum", "resume", "p", "--batch", "0"]).is_err());
        assert!(Cli::try_parse_from(["quorum", "resume"]).is_err());
        assert!(Cli::try_parse_from(["quorum", "results", "p", "--format", "xml"]).is_err());
        assert!(Cli::try_parse_from(["quorum", "credit", "--top", "0"]).is_err());
        assert!(Cli::try_parse_from(["quorum", "wait", "p", "--timeout", "soon"]).is_err());
        assert!(Cli::try_parse_from(["quorum", "purge"]).is_err());
        assert!(Cli::try_parse_from(["quorum", "cancel", "p", "--work-unit", "0"]).is_err());
        assert!(Cli::try_parse_from(["quorum", "retry", "p", "--min-quorum", "0"]).is_err());
        assert!(Cli::try_parse_from(["quorum", "retry", "p", "--deadline", "500ms"]).is_err());
        assert!(Cli::try_parse_from(["quorum", "retry", "p", "--adaptive-replication", "maybe"]).is_err());
        assert!(Cli::try_parse_from(["quorum", "retry", "p", "--max-error-results", "-1"]).is_err());
    }

    #[test]
    fn cancel_takes_a_batch_or_work_units_not_both() {
        let check = |args: &[&str], expected: Result<commands::cancel::Scope, clap::error::ErrorKind>| {
            let actual = Cli::try_parse_from(args).map_err(|error| error.kind()).map(|cli| match cli.command {
                Command::Cancel { batch, work_units, .. } => commands::cancel::Scope::new(batch, work_units),
                other => panic!("not a cancel: {other:?}"),
            });
            assert_eq!(actual, expected, "for {args:?}");
        };
        use commands::cancel::Scope;
        check(&["quorum", "cancel", "p"], Ok(Scope::Project));
        check(&["quorum", "cancel", "p", "--batch", "4"], Ok(Scope::Batch(4)));
        check(&["quorum", "cancel", "p", "--work-unit", "7"], Ok(Scope::WorkUnits(vec![7])));
        check(&["quorum", "cancel", "p", "--work-unit", "7", "--work-unit", "8"], Ok(Scope::WorkUnits(vec![7, 8])));
        check(
            &["quorum", "cancel", "p", "--batch", "4", "--work-unit", "7"],
            Err(clap::error::ErrorKind::ArgumentConflict),
        );
        check(
            &["quorum", "cancel", "p", "--work-unit", "7", "--batch", "4"],
            Err(clap::error::ErrorKind::ArgumentConflict),
        );
        check(&["quorum", "cancel", "p", "--batch", "0"], Err(clap::error::ErrorKind::ValueValidation));
    }
}
