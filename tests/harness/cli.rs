//! [`cli()`]: runs the `quorum` admin CLI against a server, and the types of
//! its `--json` output (the stable schemas of the contract), parsed with serde
//! so that a renamed or missing field fails the test by name.

use std::ffi::OsStr;
use std::fmt;
use std::process::{Output, Stdio};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{STEP_TIMEOUT, binaries};

/// Runs `quorum --server SERVER_URL ARGS...` with the server's admin token
/// (in `QUORUM_TOKEN`, when the harness started that server) and returns what
/// it did. The process is killed if it outlives [`STEP_TIMEOUT`] (the test
/// then fails).
pub async fn cli<I, S>(server_url: &str, args: I) -> CliOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let token = crate::server::admin_token_for(server_url);
    cli_with_token(server_url, token.as_deref(), args).await
}

/// As [`cli()`] with `QUORUM_TOKEN` set to `token`, or unset when `None`.
pub async fn cli_with_token<I, S>(server_url: &str, token: Option<&str>, args: I) -> CliOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|arg| arg.as_ref().to_os_string()).collect();
    let command_line = format!(
        "quorum --server {server_url} {}",
        args.iter().map(|arg| arg.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );
    let mut command = tokio::process::Command::new(binaries::path(binaries::CLI));
    command.env_remove("QUORUM_TOKEN").env_remove("QUORUM_TOKEN_FILE");
    if let Some(token) = token {
        command.env("QUORUM_TOKEN", token);
    }
    let child = command
        .arg("--server")
        .arg(server_url)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn quorum");
    let output = tokio::time::timeout(STEP_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{command_line}` did not finish within {STEP_TIMEOUT:?}"))
        .expect("wait for quorum");
    CliOutput { command_line, output }
}

/// What one run of the CLI did.
pub struct CliOutput {
    /// The command, for messages.
    command_line: String,
    output: Output,
}

impl CliOutput {
    /// The exit code (`None` when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Asserts exit code 0 and returns stdout.
    pub fn success(&self) -> String {
        assert_eq!(self.code(), Some(0), "expected success\n{self}");
        self.stdout()
    }

    /// Asserts exit code 0 and parses stdout as one JSON value of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        let stdout = self.success();
        serde_json::from_str(&stdout).unwrap_or_else(|error| {
            panic!("stdout is not the expected JSON ({}): {error}\n{self}", std::any::type_name::<T>())
        })
    }

    /// Asserts the CLI failed with exit code 2, an empty stdout and a stderr
    /// starting with `error: `; returns stderr.
    pub fn failure(&self) -> String {
        assert_eq!(self.code(), Some(2), "expected exit code 2\n{self}");
        let stderr = self.stderr();
        assert!(stderr.starts_with("error: "), "stderr should start with `error: `\n{self}");
        assert!(self.output.stdout.is_empty(), "stdout should be empty on error\n{self}");
        stderr
    }
}

impl fmt::Display for CliOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.command_line)?;
        writeln!(f, "status: {}", self.output.status)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout())?;
        write!(f, "--- stderr ---\n{}", self.stderr())
    }
}

impl fmt::Debug for CliOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `quorum submit --json`.
#[derive(Debug, Deserialize)]
pub struct Submitted {
    pub project: String,
    pub project_id: i64,
    pub app_digest: String,
    pub n_work_units: u64,
    pub resumed: bool,
    pub n_work_units_present: u64,
}

/// `quorum cancel --json`.
#[derive(Debug, Deserialize)]
pub struct Cancelled {
    pub project: String,
    pub n_work_units_cancelled: u64,
}

/// `quorum retry --json`.
#[derive(Debug, Deserialize)]
pub struct Retried {
    pub project: String,
    pub n_work_units: u64,
    pub batch_id: i64,
}

/// `quorum purge --json`.
#[derive(Debug, Deserialize)]
pub struct Purged {
    pub project: String,
    pub n_work_units_purged: u64,
}

/// `quorum resume --json`.
#[derive(Debug, Deserialize)]
pub struct Resumed {
    pub project: String,
    pub n_batches_resumed: u64,
}

/// `quorum status --json` (and `quorum wait --json`).
#[derive(Debug, Deserialize)]
pub struct Statuses {
    pub projects: Vec<ProjectStatus>,
}

/// One project of `quorum status --json`: the protocol's `ProjectStatus`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProjectStatus {
    pub name: String,
    pub project_id: i64,
    pub state: String,
    pub app_digest: String,
    pub work_units_total: u64,
    pub work_units_open: u64,
    pub work_units_done: u64,
    pub work_units_failed: u64,
    pub results_unsent: u64,
    pub results_in_progress: u64,
    pub results_over: u64,
    pub results_valid: u64,
    pub results_invalid: u64,
    pub results_error: u64,
    pub results_no_reply: u64,
    pub results_reported: u64,
    /// "bitwise", "fuzzy" or "custom".
    pub validator: String,
    pub batches: Vec<Batch>,
    /// What holds the project's work (`quorum status PROJECT` only).
    pub holds: Vec<Hold>,
}

/// One hold of `quorum status PROJECT --json`: the protocol's `Hold`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Hold {
    pub kind: String,
    pub message: String,
}

/// One batch of `quorum status --json`: the protocol's `BatchInfo`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Batch {
    pub id: i64,
    /// "active" or "paused".
    pub state: String,
    /// Empty while the batch is active.
    pub pause_reason: String,
    pub n_work_units: u64,
    pub n_ended: u64,
}

/// `quorum hosts --json`.
#[derive(Debug, Deserialize)]
pub struct Hosts {
    pub hosts: Vec<HostInfo>,
}

/// One host of `quorum hosts --json`: the protocol's `HostInfo`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HostInfo {
    pub id: i64,
    pub name: String,
    pub n_cpus: u32,
    pub n_valid: u64,
    pub n_invalid: u64,
    pub n_error: u64,
    pub n_no_reply: u64,
    pub n_in_progress: u64,
    pub total_credit: f64,
    /// Results the host may receive per day, over all apps.
    pub daily_quota: u32,
    /// Results sent to it today.
    pub results_today: u32,
    /// Its quotas per app.
    pub app_quotas: Vec<AppQuota>,
}

/// One app quota of a host in `quorum hosts --json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AppQuota {
    pub app_digest: String,
    pub projects: Vec<String>,
    pub daily_quota: u32,
    pub results_today: u32,
    pub exhausted: bool,
}

/// One line of `quorum results PROJECT` (jsonl).
#[derive(Debug, Deserialize)]
pub struct ResultLine {
    pub work_unit_id: i64,
    pub work_unit: String,
    pub result_id: i64,
    pub output: Option<String>,
    pub output_base64: Option<String>,
    pub output_digest: String,
    pub fuel_used: u64,
    pub random_seed: u64,
    /// The app's command line (absent: none shown).
    #[serde(default)]
    pub argv: Vec<String>,
    /// The app's environment variables.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// The output files of the canonical result (absent: none).
    #[serde(default)]
    pub output_files: Vec<OutputFileLine>,
}

/// An output file as `quorum results` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct OutputFileLine {
    pub name: String,
    pub digest: String,
    pub size: u64,
}

/// Parses JSON Lines (one value per non-empty line).
pub fn parse_jsonl<T: DeserializeOwned>(text: &str) -> Vec<T> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("line {} is not valid: {error}: {line}", index + 1))
        })
        .collect()
}

/// Splits CSV text (RFC 4180: fields with commas, quotes or line breaks are
/// quoted, quotes doubled) into records of fields.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (in_quotes, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => in_quotes = false,
            (true, c) => field.push(c),
            (false, '"') => in_quotes = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(!in_quotes, "unterminated quoted CSV field");
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

#[cfg(test)]
mod tests {
    use super::parse_csv;

    #[test]
    fn csv_records() {
        let check = |text: &str, expected: &[&[&str]]| {
            let expected: Vec<Vec<String>> =
                expected.iter().map(|record| record.iter().map(|field| (*field).to_owned()).collect()).collect();
            assert_eq!(parse_csv(text), expected, "{text:?}");
        };
        check("a,b\n1,2\n", &[&["a", "b"], &["1", "2"]]);
        check("a,b\r\n1,\"x\ny\"\n", &[&["a", "b"], &["1", "x\ny"]]);
        check("\"say \"\"hi\"\"\",\"a,b\"", &[&["say \"hi\"", "a,b"]]);
    }
}
