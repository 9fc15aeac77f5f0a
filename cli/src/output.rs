//! What the CLI prints: aligned tables for people, and the stable `--json`
//! schemas for programs (snake_case field names as in the protocol, numbers
//! as JSON numbers; fields are only ever added).
//!
//! Everything here writes to a `&mut dyn Write` so that commands choose stdout
//! or a file, and tests a buffer. Text for people never carries a control
//! character from the coordinator: [`escape`] shows them (every table cell,
//! every message with text the coordinator sent); `--json` stays exact.

use std::io::{self, Write};
use std::time::Duration;

use base64::Engine as _;
use quorum_proto::v1;
use serde::Serialize;

use crate::commands::cancel::Scope as CancelScope;
use crate::credit;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table for people: a header line and rows, columns separated by two
/// spaces and padded to their widest cell.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
    /// Columns (indices) left out, in this order, while a line is wider than
    /// [`WIDTH`].
    droppable: Vec<usize>,
    /// Keep every column whatever the width (`--wide`).
    wide: bool,
}

/// The width tables fit unless `--wide` is given.
pub const WIDTH: usize = 100;

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table { columns: columns.to_vec(), rows: Vec::new(), droppable: Vec::new(), wide: false }
    }

    /// The columns to leave out first, in order, when the table is wider than
    /// [`WIDTH`]; each must be one of the headers.
    pub fn droppable(mut self, headers: &[&str]) -> Table {
        self.droppable = headers
            .iter()
            .map(|header| {
                self.columns.iter().position(|(name, _)| name == header).expect("a droppable column is a column")
            })
            .collect();
        self
    }

    /// Keeps every column, however wide the table (`--wide`).
    pub fn wide(mut self, wide: bool) -> Table {
        self.wide = wide;
        self
    }

    /// Adds a row; it must have one cell per column. Cells are [`escape`]d.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len(), "one cell per column");
        self.rows.push(cells.iter().map(|cell| escape(cell)).collect());
    }

    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.columns.iter().map(|(header, _)| header.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        // Leave out droppable columns while a line would be too wide.
        let mut shown = vec![true; self.columns.len()];
        let line_width = |shown: &[bool]| {
            let cells: Vec<usize> = widths.iter().zip(shown).filter(|(_, shown)| **shown).map(|(w, _)| *w).collect();
            cells.iter().sum::<usize>() + 2 * cells.len().saturating_sub(1)
        };
        for &column in &self.droppable {
            if self.wide || line_width(&shown) <= WIDTH {
                break;
            }
            shown[column] = false;
        }
        let headers: Vec<String> = self.columns.iter().map(|(header, _)| header.to_string()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            let cells = row.iter().zip(&widths).zip(&self.columns).zip(&shown).filter(|(_, shown)| **shown);
            for (index, (((cell, width), (_, align)), _)) in cells.enumerate() {
                if index > 0 {
                    line.push_str("  ");
                }
                let padding = " ".repeat(width - cell.chars().count());
                match align {
                    Align::Left => {
                        line.push_str(cell);
                        line.push_str(&padding);
                    }
                    Align::Right => {
                        line.push_str(&padding);
                        line.push_str(cell);
                    }
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// `text` for a terminal: every control character (`char::is_control`: ANSI
/// escapes, carriage returns, the U+001F separator...) shown as an escape
/// instead of acting on the operator's terminal: `\x1b` for the C0 and C1
/// controls and DEL, so that what a host registered is seen, never run.
pub fn escape(text: &str) -> String {
    use std::fmt::Write as _;
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if character.is_control() {
            write!(escaped, "\\x{:02x}", u32::from(character)).expect("writing to a String cannot fail");
        } else {
            escaped.push(character);
        }
    }
    escaped
}

/// Writes one value as a line of JSON.
pub fn write_json(out: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)
}

/// `quorum submit --json`.
#[derive(Debug, Serialize)]
pub struct Submitted {
    pub project: String,
    pub project_id: i64,
    pub app_digest: String,
    /// Work units this submission added.
    pub n_work_units: u64,
    /// The project existed already (with the same app): this submission
    /// added only the work units it did not have.
    pub resumed: bool,
    /// Work units of the manifest the project had already.
    pub n_work_units_present: u64,
}

/// What `quorum submit` prints for people.
pub fn submitted_line(submitted: &Submitted) -> String {
    if submitted.resumed {
        format!(
            "project '{}' (id {}) already existed with this app: added {} {} it did not have ({} already there); \
             app sha256 {}",
            escape(&submitted.project),
            submitted.project_id,
            submitted.n_work_units,
            work_units(submitted.n_work_units),
            submitted.n_work_units_present,
            submitted.app_digest
        )
    } else {
        format!(
            "created project '{}' (id {}) with {} {}; app sha256 {}",
            escape(&submitted.project),
            submitted.project_id,
            submitted.n_work_units,
            work_units(submitted.n_work_units),
            submitted.app_digest
        )
    }
}

/// `quorum cancel --json`.
#[derive(Debug, Serialize)]
pub struct Cancelled {
    pub project: String,
    pub n_work_units_cancelled: u64,
}

/// What `quorum cancel` prints for people, e.g. "cancelled batch 2 of
/// project 'p': 3 open work units cancelled".
pub fn cancelled_line(cancelled: &Cancelled, scope: &CancelScope) -> String {
    let what = match scope {
        CancelScope::Project => format!("project '{}'", cancelled.project),
        CancelScope::Batch(batch) => format!("batch {batch} of project '{}'", cancelled.project),
        CancelScope::WorkUnits(ids) => {
            let noun = if ids.len() == 1 { "work unit" } else { "work units" };
            let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
            format!("{noun} {} of project '{}'", ids.join(", "), cancelled.project)
        }
    };
    format!(
        "cancelled {what}: {} open {} cancelled",
        cancelled.n_work_units_cancelled,
        work_units(cancelled.n_work_units_cancelled)
    )
}

/// `quorum retry --json`.
#[derive(Debug, Serialize)]
pub struct Retried {
    pub project: String,
    pub n_work_units: u64,
    /// The new batch the retried work units now belong to.
    pub batch_id: i64,
}

/// What `quorum retry` prints for people: "retried 1 work unit as batch 2".
pub fn retried_line(retried: &Retried) -> String {
    format!("retried {} {} as batch {}", retried.n_work_units, work_units(retried.n_work_units), retried.batch_id)
}

/// `quorum purge --json`.
#[derive(Debug, Serialize)]
pub struct Purged {
    pub project: String,
    pub n_work_units_purged: u64,
}

/// What `quorum purge` prints for people: "purged 3 ended work units of project 'p'".
pub fn purged_line(purged: &Purged) -> String {
    format!(
        "purged {} ended {} of project '{}'",
        purged.n_work_units_purged,
        work_units(purged.n_work_units_purged),
        purged.project
    )
}

/// "work unit" or "work units", to follow the count `n`.
fn work_units(n: u64) -> &'static str {
    if n == 1 { "work unit" } else { "work units" }
}

/// `quorum delete --json`.
#[derive(Debug, Serialize)]
pub struct Deleted {
    pub project: String,
    pub n_work_units: u64,
    pub n_results: u64,
}

/// What `quorum delete` prints for people.
pub fn deleted_line(deleted: &Deleted) -> String {
    format!(
        "deleted project '{}': {} {} and {} {}",
        escape(&deleted.project),
        deleted.n_work_units,
        work_units(deleted.n_work_units),
        deleted.n_results,
        if deleted.n_results == 1 { "result" } else { "results" }
    )
}

/// `quorum resume --json`.
#[derive(Debug, Serialize)]
pub struct Resumed {
    pub project: String,
    pub n_batches_resumed: u64,
}

/// What `quorum resume` prints for people: "resumed 1 paused batch of project 'p'".
pub fn resumed_line(resumed: &Resumed) -> String {
    let batches = if resumed.n_batches_resumed == 1 { "batch" } else { "batches" };
    format!("resumed {} paused {batches} of project '{}'", resumed.n_batches_resumed, resumed.project)
}

/// `quorum status --json` and `quorum wait --json`: {"projects":[...]}.
#[derive(Debug, Serialize)]
pub struct Statuses {
    pub projects: Vec<ProjectStatus>,
}

/// The protocol's `ReplicationPolicy`.
#[derive(Debug, Serialize)]
pub struct Policy {
    pub min_quorum: u32,
    pub target_results: u32,
    pub max_error_results: u32,
    pub max_total_results: u32,
    pub deadline_secs: u64,
}

/// The protocol's `ProjectStatus`.
#[derive(Debug, Serialize)]
pub struct ProjectStatus {
    pub name: String,
    pub project_id: i64,
    pub state: String,
    pub app_digest: String,
    pub policy: Option<Policy>,
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
    /// Successes reported and not compared yet (waiting for other copies).
    pub results_reported: u64,
    /// "bitwise", "fuzzy" or "custom": how the project's outputs are compared.
    pub validator: String,
    /// The project's batches (the work units of each submission call), by id.
    pub batches: Vec<Batch>,
    /// What holds its open work, most decisive first (`quorum status PROJECT` only).
    pub holds: Vec<Hold>,
}

/// The protocol's `Hold`: one thing that holds a project's work.
#[derive(Debug, Serialize)]
pub struct Hold {
    /// "no_host", "quota_used", "batch_paused", "ended"... (one word).
    pub kind: String,
    pub message: String,
}

/// The protocol's `BatchInfo`.
#[derive(Debug, Serialize)]
pub struct Batch {
    pub id: i64,
    /// "active" or "paused" (not scheduled until resumed).
    pub state: String,
    /// Why the batch is paused; empty when it is active.
    pub pause_reason: String,
    pub n_work_units: u64,
    pub n_ended: u64,
}

impl From<&v1::BatchInfo> for Batch {
    fn from(batch: &v1::BatchInfo) -> Batch {
        Batch {
            id: batch.id,
            state: batch.state.clone(),
            pause_reason: batch.pause_reason.clone(),
            n_work_units: batch.n_work_units,
            n_ended: batch.n_ended,
        }
    }
}

/// The state of a paused batch, as the protocol's `BatchInfo.state` spells it.
pub const BATCH_PAUSED: &str = "paused";

impl From<&v1::ProjectStatus> for ProjectStatus {
    fn from(status: &v1::ProjectStatus) -> ProjectStatus {
        ProjectStatus {
            name: status.name.clone(),
            project_id: status.project_id,
            state: status.state.clone(),
            app_digest: status.app_digest.clone(),
            policy: status.policy.as_ref().map(|policy| Policy {
                min_quorum: policy.min_quorum,
                target_results: policy.target_results,
                max_error_results: policy.max_error_results,
                max_total_results: policy.max_total_results,
                deadline_secs: policy.deadline_secs,
            }),
            work_units_total: status.work_units_total,
            work_units_open: status.work_units_open,
            work_units_done: status.work_units_done,
            work_units_failed: status.work_units_failed,
            results_unsent: status.results_unsent,
            results_in_progress: status.results_in_progress,
            results_over: status.results_over,
            results_valid: status.results_valid,
            results_invalid: status.results_invalid,
            results_error: status.results_error,
            results_no_reply: status.results_no_reply,
            results_reported: status.results_reported,
            validator: status.validator.clone(),
            batches: status.batches.iter().map(Batch::from).collect(),
            holds: status
                .holds
                .iter()
                .map(|hold| Hold { kind: hold.kind.clone(), message: hold.message.clone() })
                .collect(),
        }
    }
}

/// A project's state for people: "ended" once every work unit of an active
/// project has ended, the coordinator's state ("active", "cancelled") otherwise.
pub fn project_state(status: &v1::ProjectStatus) -> &str {
    if status.state == "active" && status.work_units_total > 0 && status.work_units_open == 0 {
        "ended"
    } else {
        &status.state
    }
}

/// The status table: one line per project. ID, VALIDATOR, INVALID and NO
/// REPLY go first when it is wider than [`WIDTH`] (`--wide` keeps them).
pub fn status_table(projects: &[v1::ProjectStatus]) -> Table {
    use Align::{Left, Right};
    let mut table = Table::new(&[
        ("PROJECT", Left),
        ("ID", Right),
        ("STATE", Left),
        ("VALIDATOR", Left),
        ("WORK UNITS", Right),
        ("DONE", Right),
        ("FAILED", Right),
        ("OPEN", Right),
        ("UNSENT", Right),
        ("IN PROGRESS", Right),
        ("REPORTED", Right),
        ("VALID", Right),
        ("INVALID", Right),
        ("ERROR", Right),
        ("NO REPLY", Right),
    ])
    .droppable(&["ID", "VALIDATOR", "NO REPLY", "INVALID", "REPORTED"]);
    for status in projects {
        table.row(vec![
            status.name.clone(),
            status.project_id.to_string(),
            project_state(status).to_owned(),
            if status.validator.is_empty() { "-".to_owned() } else { status.validator.clone() },
            status.work_units_total.to_string(),
            status.work_units_done.to_string(),
            status.work_units_failed.to_string(),
            status.work_units_open.to_string(),
            status.results_unsent.to_string(),
            status.results_in_progress.to_string(),
            status.results_reported.to_string(),
            status.results_valid.to_string(),
            status.results_invalid.to_string(),
            status.results_error.to_string(),
            status.results_no_reply.to_string(),
        ]);
    }
    table
}

/// What holds each project's work, one line per hold, for people:
/// "project 'p': 12 unsent copies wait: no host has registered ...".
pub fn write_holds(out: &mut dyn Write, projects: &[v1::ProjectStatus]) -> io::Result<()> {
    for status in projects {
        for hold in &status.holds {
            writeln!(out, "project '{}': {}", escape(&status.name), escape(&hold.message))?;
        }
    }
    Ok(())
}

/// One line per paused batch, for people, after the status table:
/// "project 'p': batch 3 is paused: REASON (`quorum resume p --batch 3`)".
pub fn write_paused_batches(out: &mut dyn Write, projects: &[v1::ProjectStatus]) -> io::Result<()> {
    for status in projects {
        for batch in status.batches.iter().filter(|batch| batch.state == BATCH_PAUSED) {
            let reason = if batch.pause_reason.is_empty() { "no reason given" } else { &batch.pause_reason };
            let (name, reason) = (escape(&status.name), escape(reason));
            writeln!(
                out,
                "project '{name}': batch {} is paused ({} of {} work units ended): {reason} \
                 (`quorum resume {name} --batch {}`)",
                batch.id, batch.n_ended, batch.n_work_units, batch.id
            )?;
        }
    }
    Ok(())
}

/// `quorum hosts --json`: {"hosts":[...]}.
#[derive(Debug, Serialize)]
pub struct Hosts {
    pub hosts: Vec<Host>,
}

/// The protocol's `HostInfo`.
#[derive(Debug, Serialize)]
pub struct Host {
    pub id: i64,
    pub name: String,
    pub n_cpus: u32,
    pub memory_bytes: u64,
    pub engine: String,
    pub os: String,
    pub created_unix_ms: i64,
    pub last_contact_unix_ms: i64,
    pub n_valid: u64,
    pub n_invalid: u64,
    pub n_error: u64,
    pub n_no_reply: u64,
    pub n_in_progress: u64,
    pub total_credit: f64,
    /// The volunteer account the host belongs to; empty when it has none.
    pub account: String,
    /// Valid results in a row (adaptive replication trusts long streaks).
    pub consecutive_valid: u32,
    /// Results the host may receive per day, over all apps.
    pub daily_quota: u32,
    /// Results sent to it today (UTC), against `daily_quota`.
    pub results_today: u32,
    /// Its quotas per app: an app's errors reduce only what the host gets of that app.
    pub app_quotas: Vec<AppQuota>,
}

/// The protocol's `AppQuota`: a host's quota for one app.
#[derive(Debug, Serialize)]
pub struct AppQuota {
    pub app_digest: String,
    /// The projects running the app.
    pub projects: Vec<String>,
    pub daily_quota: u32,
    /// Results of the app sent to the host today.
    pub results_today: u32,
    /// Nothing more of the app goes to the host today.
    pub exhausted: bool,
}

impl From<&v1::AppQuota> for AppQuota {
    fn from(quota: &v1::AppQuota) -> AppQuota {
        AppQuota {
            app_digest: quota.app_digest.clone(),
            projects: quota.projects.clone(),
            daily_quota: quota.daily_quota,
            results_today: quota.results_today,
            exhausted: quota.exhausted,
        }
    }
}

impl From<&v1::HostInfo> for Host {
    fn from(host: &v1::HostInfo) -> Host {
        Host {
            id: host.id,
            name: host.name.clone(),
            n_cpus: host.n_cpus,
            memory_bytes: host.memory_bytes,
            engine: host.engine.clone(),
            os: host.os.clone(),
            created_unix_ms: host.created_unix_ms,
            last_contact_unix_ms: host.last_contact_unix_ms,
            n_valid: host.n_valid,
            n_invalid: host.n_invalid,
            n_error: host.n_error,
            n_no_reply: host.n_no_reply,
            n_in_progress: host.n_in_progress,
            total_credit: host.total_credit,
            account: host.account.clone(),
            consecutive_valid: host.consecutive_valid,
            daily_quota: host.daily_quota,
            results_today: host.results_today,
            app_quotas: host.app_quotas.iter().map(AppQuota::from).collect(),
        }
    }
}

/// The apps whose quota the host has used up today, by project name (the
/// digest's first 12 digits when no project runs it), or "-".
fn apps_at_quota(host: &v1::HostInfo) -> String {
    let names: Vec<String> = host
        .app_quotas
        .iter()
        .filter(|quota| quota.exhausted)
        .map(|quota| match quota.projects.is_empty() {
            true => quota.app_digest.chars().take(12).collect(),
            false => quota.projects.join(","),
        })
        .collect();
    if names.is_empty() { "-".to_owned() } else { names.join(" ") }
}

/// The hosts table; `now_unix_ms` turns last contacts into ages.
pub fn hosts_table(hosts: &[v1::HostInfo], now_unix_ms: i64) -> Table {
    use Align::{Left, Right};
    let mut table = Table::new(&[
        ("ID", Right),
        ("NAME", Left),
        ("ACCOUNT", Left),
        ("CPUS", Right),
        ("MEMORY", Right),
        ("ENGINE", Left),
        ("OS", Left),
        ("LAST CONTACT", Left),
        ("IN PROGRESS", Right),
        ("VALID", Right),
        ("INVALID", Right),
        ("ERROR", Right),
        ("NO REPLY", Right),
        ("STREAK", Right),
        ("TODAY/QUOTA", Right),
        ("APPS AT QUOTA", Left),
        ("CREDIT", Right),
    ]);
    for host in hosts {
        let account = if host.account.is_empty() { "-".to_owned() } else { host.account.clone() };
        table.row(vec![
            host.id.to_string(),
            host.name.clone(),
            account,
            host.n_cpus.to_string(),
            format_bytes(host.memory_bytes),
            host.engine.clone(),
            host.os.clone(),
            format_age(host.last_contact_unix_ms, now_unix_ms),
            host.n_in_progress.to_string(),
            host.n_valid.to_string(),
            host.n_invalid.to_string(),
            host.n_error.to_string(),
            host.n_no_reply.to_string(),
            host.consecutive_valid.to_string(),
            format!("{}/{}", host.results_today, host.daily_quota),
            apps_at_quota(host),
            format!("{:.1}", host.total_credit),
        ]);
    }
    table
}

/// `quorum credit --json`: {"volunteers":[...]}, best first.
#[derive(Debug, Serialize)]
pub struct Volunteers {
    pub volunteers: Vec<Volunteer>,
}

/// One line of the credit leaderboard.
#[derive(Debug, Serialize)]
pub struct Volunteer {
    pub rank: u64,
    pub volunteer: String,
    pub n_hosts: u64,
    pub n_valid: u64,
    pub total_credit: f64,
}

impl From<&credit::Volunteer> for Volunteer {
    fn from(volunteer: &credit::Volunteer) -> Volunteer {
        Volunteer {
            rank: volunteer.rank,
            volunteer: volunteer.name.clone(),
            n_hosts: volunteer.n_hosts,
            n_valid: volunteer.n_valid,
            total_credit: volunteer.total_credit,
        }
    }
}

/// The credit leaderboard table: one line per volunteer, best first.
pub fn credit_table(volunteers: &[credit::Volunteer]) -> Table {
    use Align::{Left, Right};
    let mut table =
        Table::new(&[("RANK", Right), ("VOLUNTEER", Left), ("HOSTS", Right), ("VALID", Right), ("CREDIT", Right)]);
    for volunteer in volunteers {
        table.row(vec![
            volunteer.rank.to_string(),
            volunteer.name.clone(),
            volunteer.n_hosts.to_string(),
            volunteer.n_valid.to_string(),
            format!("{:.2}", volunteer.total_credit),
        ]);
    }
    table
}

/// "1.5 GiB", "512 MiB", "100 B".
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// "12s ago", "3m ago", "never".
pub fn format_age(then_unix_ms: i64, now_unix_ms: i64) -> String {
    if then_unix_ms <= 0 {
        return "never".to_owned();
    }
    let seconds = u64::try_from((now_unix_ms - then_unix_ms) / 1000).unwrap_or(0);
    // Round to the largest unit so that "1h 2m 3s" stays short.
    let rounded = match seconds {
        0..60 => seconds,
        60..3600 => seconds / 60 * 60,
        3600..86_400 => seconds / 3600 * 3600,
        _ => seconds / 86_400 * 86_400,
    };
    format!("{} ago", humantime::format_duration(Duration::from_secs(rounded)))
}

/// One line of `quorum results` in jsonl: exactly one of `output` (when the
/// output is valid UTF-8) and `output_base64`.
#[derive(Debug, Serialize)]
pub struct ResultLine<'a> {
    pub work_unit_id: i64,
    pub work_unit: &'a str,
    pub result_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_base64: Option<String>,
    pub output_digest: &'a str,
    pub fuel_used: u64,
    /// The work unit's random seed: `quorum-worker run APP --seed N` reproduces the output.
    pub random_seed: u64,
    /// The app's command line, argv\[0\] included (`quorum-worker run --arg`
    /// for each); absent from a coordinator older than arguments.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub argv: &'a [String],
    /// The app's environment variables (`quorum-worker run --env NAME=VALUE`);
    /// absent when there are none.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<&'a str, &'a str>,
    /// The output files the app wrote in /output (`--files DIR` writes them);
    /// absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_files: Vec<OutputFileLine<'a>>,
}

/// An output file of a canonical result, as `quorum results` prints it.
#[derive(Debug, Serialize)]
pub struct OutputFileLine<'a> {
    pub name: &'a str,
    pub digest: &'a str,
    pub size: u64,
}

impl<'a> From<&'a v1::CanonicalResult> for ResultLine<'a> {
    fn from(result: &'a v1::CanonicalResult) -> ResultLine<'a> {
        let (output, output_base64) = match std::str::from_utf8(&result.output) {
            Ok(text) => (Some(text), None),
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(&result.output))),
        };
        ResultLine {
            work_unit_id: result.work_unit_id,
            work_unit: &result.work_unit_name,
            result_id: result.result_id,
            output,
            output_base64,
            output_digest: &result.output_digest,
            fuel_used: result.fuel_used,
            random_seed: result.random_seed,
            argv: &result.argv,
            env: result.env.iter().map(|var| (var.name.as_str(), var.value.as_str())).collect(),
            output_files: result
                .output_files
                .iter()
                .map(|file| OutputFileLine { name: &file.name, digest: &file.digest, size: file.size })
                .collect(),
        }
    }
}

/// The header of `quorum results --format csv`.
pub const CSV_HEADER: &str = "work_unit_id,work_unit,result_id,output_digest,fuel_used,output";

/// One CSV record of a canonical result; a non-UTF-8 output is written as
/// "base64:" followed by its base64.
pub fn write_csv_record(out: &mut dyn Write, result: &v1::CanonicalResult) -> io::Result<()> {
    let output = match std::str::from_utf8(&result.output) {
        Ok(text) => csv_field(text),
        Err(_) => format!("base64:{}", base64::engine::general_purpose::STANDARD.encode(&result.output)),
    };
    writeln!(
        out,
        "{},{},{},{},{},{}",
        result.work_unit_id,
        csv_field(&result.work_unit_name),
        result.result_id,
        csv_field(&result.output_digest),
        result.fuel_used,
        output
    )
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

/// One line of `quorum results --all` in jsonl, and the fields of its csv:
/// a result (copy) as the protocol's `ResultInfo`, with its work unit's name.
#[derive(Debug, Serialize)]
pub struct CopyLine<'a> {
    pub result_id: i64,
    pub work_unit_id: i64,
    pub work_unit: &'a str,
    pub batch_id: i64,
    pub state: &'a str,
    pub server_state: &'a str,
    pub outcome: &'a str,
    pub validate_state: &'a str,
    pub host_id: i64,
    pub output_digest: &'a str,
    pub fuel_used: u64,
    pub run_time_ms: u64,
    pub sent_unix_ms: i64,
    pub deadline_unix_ms: i64,
    pub received_unix_ms: i64,
    pub granted_credit: f64,
    pub engine: &'a str,
    pub error_message: &'a str,
    pub stderr_tail: &'a str,
}

impl<'a> From<&'a v1::ResultInfo> for CopyLine<'a> {
    fn from(result: &'a v1::ResultInfo) -> CopyLine<'a> {
        CopyLine {
            result_id: result.id,
            work_unit_id: result.work_unit_id,
            work_unit: &result.work_unit_name,
            batch_id: result.batch_id,
            state: &result.state,
            server_state: &result.server_state,
            outcome: &result.outcome,
            validate_state: &result.validate_state,
            host_id: result.host_id,
            output_digest: &result.output_digest,
            fuel_used: result.fuel_used,
            run_time_ms: result.run_time_ms,
            sent_unix_ms: result.sent_unix_ms,
            deadline_unix_ms: result.deadline_unix_ms,
            received_unix_ms: result.received_unix_ms,
            granted_credit: result.granted_credit,
            engine: &result.engine,
            error_message: &result.error_message,
            stderr_tail: &result.stderr_tail,
        }
    }
}

/// The header of `quorum results --all --format csv`: [`CopyLine`]'s fields.
pub const COPIES_CSV_HEADER: &str = "result_id,work_unit_id,work_unit,batch_id,state,server_state,outcome,\
validate_state,host_id,output_digest,fuel_used,run_time_ms,sent_unix_ms,deadline_unix_ms,received_unix_ms,\
granted_credit,engine,error_message,stderr_tail";

/// One CSV record of a copy, in [`COPIES_CSV_HEADER`]'s order; fields with
/// commas, quotes or newlines (error messages, stderr) quoted (RFC 4180).
pub fn write_copy_csv_record(out: &mut dyn Write, copy: &CopyLine<'_>) -> io::Result<()> {
    let fields = [
        copy.result_id.to_string(),
        copy.work_unit_id.to_string(),
        csv_field(copy.work_unit),
        copy.batch_id.to_string(),
        csv_field(copy.state),
        csv_field(copy.server_state),
        csv_field(copy.outcome),
        csv_field(copy.validate_state),
        copy.host_id.to_string(),
        csv_field(copy.output_digest),
        copy.fuel_used.to_string(),
        copy.run_time_ms.to_string(),
        copy.sent_unix_ms.to_string(),
        copy.deadline_unix_ms.to_string(),
        copy.received_unix_ms.to_string(),
        copy.granted_credit.to_string(),
        csv_field(copy.engine),
        csv_field(copy.error_message),
        csv_field(copy.stderr_tail),
    ];
    writeln!(out, "{}", fields.join(","))
}

/// The copies table for people: one line per copy, the first line of its
/// error shortened so that a row fits 100 columns.
pub fn copies_table(copies: &[v1::ResultInfo]) -> Table {
    use Align::{Left, Right};
    let mut table = Table::new(&[
        ("RESULT", Right),
        ("WORK UNIT", Left),
        ("STATE", Left),
        ("HOST", Right),
        ("FUEL", Right),
        ("TIME", Right),
        ("ERROR", Left),
    ]);
    for copy in copies {
        let first_line = copy.error_message.lines().next().unwrap_or_default();
        // Fuel and run time are what a host reported; none before that.
        let reported = copy.received_unix_ms > 0;
        table.row(vec![
            copy.id.to_string(),
            shorten(&copy.work_unit_name, 20),
            copy.state.clone(),
            if copy.host_id == 0 { "-".to_owned() } else { copy.host_id.to_string() },
            if reported { copy.fuel_used.to_string() } else { "-".to_owned() },
            if reported { format!("{:.1}s", copy.run_time_ms as f64 / 1000.0) } else { "-".to_owned() },
            shorten(first_line, 36),
        ]);
    }
    table
}

/// `quorum errors --json`.
#[derive(Debug, Serialize)]
pub struct Errors {
    pub project: String,
    pub groups: Vec<ErrorGroup>,
}

/// One error group in `quorum errors --json`: the protocol's `ErrorGroup`.
#[derive(Debug, Serialize)]
pub struct ErrorGroup {
    pub message: String,
    pub n_results: u64,
    pub n_hosts: u64,
    pub n_work_units: u64,
    pub example_work_units: Vec<String>,
    pub latest_result_id: i64,
    pub latest_stderr_tail: String,
    pub latest_unix_ms: i64,
}

impl From<&v1::ErrorGroup> for ErrorGroup {
    fn from(group: &v1::ErrorGroup) -> ErrorGroup {
        ErrorGroup {
            message: group.message.clone(),
            n_results: group.n_results,
            n_hosts: group.n_hosts,
            n_work_units: group.n_work_units,
            example_work_units: group.example_work_units.clone(),
            latest_result_id: group.latest_result_id,
            latest_stderr_tail: group.latest_stderr_tail.clone(),
            latest_unix_ms: group.latest_unix_ms,
        }
    }
}

/// Lines of stderr `quorum errors` shows per group (the last ones).
const STDERR_LINES: usize = 5;

/// `quorum errors` for people: per group its counts and message, example
/// work units, and the last lines of the latest copy's stderr; every line
/// escaped.
pub fn write_error_groups(out: &mut dyn Write, errors: &Errors, now_unix_ms: i64) -> io::Result<()> {
    if errors.groups.is_empty() {
        return writeln!(out, "no errors in project '{}'", escape(&errors.project));
    }
    for (index, group) in errors.groups.iter().enumerate() {
        if index > 0 {
            writeln!(out)?;
        }
        writeln!(
            out,
            "{} {} on {} {}, from {} {}; the latest, result {}, {}:",
            group.n_results,
            if group.n_results == 1 { "copy" } else { "copies" },
            group.n_work_units,
            work_units(group.n_work_units),
            group.n_hosts,
            if group.n_hosts == 1 { "host" } else { "hosts" },
            group.latest_result_id,
            format_age(group.latest_unix_ms, now_unix_ms),
        )?;
        for line in group.message.lines() {
            writeln!(out, "    {}", escape(line))?;
        }
        let examples: Vec<String> = group.example_work_units.iter().map(|name| escape(name)).collect();
        writeln!(out, "  work units: {}", examples.join(", "))?;
        let stderr: Vec<&str> = group.latest_stderr_tail.lines().collect();
        if !stderr.is_empty() {
            writeln!(out, "  stderr (last lines of result {}):", group.latest_result_id)?;
            for line in &stderr[stderr.len().saturating_sub(STDERR_LINES)..] {
                writeln!(out, "    | {}", escape(line))?;
            }
        }
    }
    Ok(())
}

/// `text` cut to at most `max` characters, "..." marking the cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() > max {
        let mut short: String = text.chars().take(max - 3).collect();
        short.push_str("...");
        short
    } else {
        text.to_owned()
    }
}

/// The results table for people: outputs on one line, shortened.
pub fn results_table(results: &[v1::CanonicalResult]) -> Table {
    use Align::{Left, Right};
    let mut table = Table::new(&[
        ("WORK UNIT ID", Right),
        ("WORK UNIT", Left),
        ("RESULT", Right),
        ("FUEL", Right),
        ("SEED", Right),
        ("OUTPUT", Left),
    ]);
    for result in results {
        table.row(vec![
            result.work_unit_id.to_string(),
            result.work_unit_name.clone(),
            result.result_id.to_string(),
            result.fuel_used.to_string(),
            result.random_seed.to_string(),
            short_output(&result.output),
        ]);
    }
    table
}

/// An output shown on one line: escaped, without its final newline, at most
/// 60 characters.
pub fn short_output(output: &[u8]) -> String {
    const MAX: usize = 60;
    let text = match std::str::from_utf8(output) {
        Ok(text) => text.strip_suffix('\n').unwrap_or(text).escape_debug().to_string(),
        Err(_) => format!("<{} bytes, not UTF-8>", output.len()),
    };
    shorten(&text, MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(name: &str, output: &[u8]) -> v1::CanonicalResult {
        v1::CanonicalResult {
            work_unit_id: 3,
            work_unit_name: name.to_owned(),
            result_id: 7,
            output: output.to_vec(),
            output_digest: "ab12".to_owned(),
            fuel_used: 123,
            random_seed: 18_446_744_073_709_551_615,
            ..Default::default()
        }
    }

    fn text(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
        let mut buffer = Vec::new();
        write(&mut buffer).expect("write to a buffer");
        String::from_utf8(buffer).expect("utf-8")
    }

    #[test]
    fn control_characters_are_escaped_for_people() {
        for (text, shown) in [
            ("plain host", "plain host"),
            ("ev\u{1b}[31mil", "ev\\x1b[31mil"),
            ("a\u{1f}b\r\n\t\u{7f}\u{9b}", "a\\x1fb\\x0d\\x0a\\x09\\x7f\\x9b"),
            ("Ünïcode", "Ünïcode"),
        ] {
            assert_eq!(escape(text), shown, "{text:?}");
        }
        let mut table = Table::new(&[("NAME", Align::Left)]);
        table.row(vec!["\u{1b}]0;pwned\u{7}".into()]);
        assert_eq!(text(|out| table.write(out)), "NAME\n\\x1b]0;pwned\\x07\n");
    }

    #[test]
    fn table_aligns_columns() {
        let mut table = Table::new(&[("NAME", Align::Left), ("N", Align::Right), ("X", Align::Left)]);
        table.row(vec!["primes".into(), "5".into(), "".into()]);
        table.row(vec!["p".into(), "12345".into(), "ok".into()]);
        assert_eq!(text(|out| table.write(out)), "NAME        N  X\nprimes      5\np       12345  ok\n");
    }

    #[test]
    fn result_lines() {
        let check = |result: v1::CanonicalResult, jsonl: &str, csv: &str| {
            assert_eq!(text(|out| write_json(out, &ResultLine::from(&result))), format!("{jsonl}\n"));
            assert_eq!(text(|out| write_csv_record(out, &result)), format!("{csv}\n"));
        };
        check(
            canonical("0-10", b"4\n"),
            r#"{"work_unit_id":3,"work_unit":"0-10","result_id":7,"output":"4\n","output_digest":"ab12","fuel_used":123,"random_seed":18446744073709551615}"#,
            "3,0-10,7,ab12,123,\"4\n\"",
        );
        check(
            canonical("a,\"b\"", &[0, 255]),
            r#"{"work_unit_id":3,"work_unit":"a,\"b\"","result_id":7,"output_base64":"AP8=","output_digest":"ab12","fuel_used":123,"random_seed":18446744073709551615}"#,
            "3,\"a,\"\"b\"\"\",7,ab12,123,base64:AP8=",
        );
        check(
            canonical("x", b"plain"),
            r#"{"work_unit_id":3,"work_unit":"x","result_id":7,"output":"plain","output_digest":"ab12","fuel_used":123,"random_seed":18446744073709551615}"#,
            "3,x,7,ab12,123,plain",
        );
        let mut with_args = canonical("x", b"plain");
        with_args.argv = vec!["p".into(), "--steps".into()];
        with_args.env = vec![v1::EnvVar { name: "A".into(), value: "1".into() }];
        check(
            with_args,
            r#"{"work_unit_id":3,"work_unit":"x","result_id":7,"output":"plain","output_digest":"ab12","fuel_used":123,"random_seed":18446744073709551615,"argv":["p","--steps"],"env":{"A":"1"}}"#,
            "3,x,7,ab12,123,plain",
        );
    }

    fn batch(id: i64, state: &str, pause_reason: &str) -> v1::BatchInfo {
        v1::BatchInfo { id, state: state.into(), pause_reason: pause_reason.into(), n_work_units: 100, n_ended: 25 }
    }

    fn project_status(batches: Vec<v1::BatchInfo>) -> v1::ProjectStatus {
        v1::ProjectStatus {
            name: "primes".into(),
            project_id: 1,
            state: "active".into(),
            app_digest: "ff".into(),
            policy: Some(v1::ReplicationPolicy {
                min_quorum: 2,
                target_results: 2,
                max_error_results: 3,
                max_total_results: 8,
                deadline_secs: 3600,
                ..Default::default()
            }),
            validator: "bitwise".into(),
            batches,
            work_units_total: 200,
            work_units_open: 10,
            work_units_done: 190,
            ..Default::default()
        }
    }

    #[test]
    fn status_json_schema() {
        let status = project_status(vec![batch(1, "active", ""), batch(2, "paused", "20 of 20 were errors")]);
        let json = text(|out| write_json(out, &Statuses { projects: vec![ProjectStatus::from(&status)] }));
        assert_eq!(
            json,
            "{\"projects\":[{\"name\":\"primes\",\"project_id\":1,\"state\":\"active\",\"app_digest\":\"ff\",\
             \"policy\":{\"min_quorum\":2,\"target_results\":2,\"max_error_results\":3,\"max_total_results\":8,\"deadline_secs\":3600},\
             \"work_units_total\":200,\"work_units_open\":10,\"work_units_done\":190,\"work_units_failed\":0,\
             \"results_unsent\":0,\"results_in_progress\":0,\"results_over\":0,\"results_valid\":0,\
             \"results_invalid\":0,\"results_error\":0,\"results_no_reply\":0,\"results_reported\":0,\"validator\":\"bitwise\",\
             \"batches\":[{\"id\":1,\"state\":\"active\",\"pause_reason\":\"\",\"n_work_units\":100,\"n_ended\":25},\
             {\"id\":2,\"state\":\"paused\",\"pause_reason\":\"20 of 20 were errors\",\"n_work_units\":100,\"n_ended\":25}],\
             \"holds\":[]}]}\n"
        );
    }

    #[test]
    fn status_table_and_paused_batches() {
        let check = |projects: &[v1::ProjectStatus], wide: bool, expected: &str| {
            let actual = text(|out| {
                status_table(projects).wide(wide).write(out)?;
                write_paused_batches(out, projects)
            });
            assert_eq!(actual, expected);
            assert!(
                wide || actual.lines().take(1 + projects.len()).all(|line| line.chars().count() <= WIDTH),
                "{actual}"
            );
        };
        let header = "PROJECT  STATE   WORK UNITS  DONE  FAILED  OPEN  UNSENT  IN PROGRESS  REPORTED  VALID  ERROR\n";
        let row = "primes   active         200   190       0    10       0            0         0      0      0\n";
        check(&[project_status(vec![batch(1, "active", "")])], false, &format!("{header}{row}"));
        check(
            &[project_status(vec![
                batch(1, "active", ""),
                batch(2, "paused", "20 of 20 were errors"),
                batch(3, "paused", ""),
            ])],
            false,
            &format!(
                "{header}{row}\
                 project 'primes': batch 2 is paused (25 of 100 work units ended): 20 of 20 were errors \
                 (`quorum resume primes --batch 2`)\n\
                 project 'primes': batch 3 is paused (25 of 100 work units ended): no reason given \
                 (`quorum resume primes --batch 3`)\n"
            ),
        );
        // --wide: every column; a coordinator that does not name its validator.
        let mut unnamed = project_status(Vec::new());
        unnamed.validator.clear();
        check(
            &[unnamed],
            true,
            concat!(
                "PROJECT  ID  STATE   VALIDATOR  WORK UNITS  DONE  FAILED  OPEN  UNSENT  IN PROGRESS  REPORTED  VALID  ",
                "INVALID  ERROR  NO REPLY\n",
                "primes    1  active  -                 200   190       0    10       0            0         0      0  ",
                "      0      0         0\n",
            ),
        );
        // A long name: more columns go, in their order, to fit.
        let mut long = project_status(Vec::new());
        long.name = "p".repeat(30);
        let table = text(|out| status_table(&[long.clone()]).write(out));
        assert!(
            table.starts_with(&format!("PROJECT{}  STATE   WORK UNITS  DONE  FAILED  OPEN", " ".repeat(23))),
            "{table}"
        );
        assert!(!table.contains("REPORTED") && table.contains("ERROR"), "{table}");
        // Every work unit ended: "ended", not "active".
        long.work_units_open = 0;
        long.work_units_done = 200;
        assert!(text(|out| status_table(&[long]).write(out)).contains(" ended "));
    }

    #[test]
    fn holds_are_lines_for_people() {
        let mut status = project_status(Vec::new());
        status.holds = vec![
            v1::Hold { kind: "no_host".into(), message: "3 unsent copies wait: no host has registered".into() },
            v1::Hold { kind: "awaiting_quorum".into(), message: "1 reported \x1b[31m".into() },
        ];
        assert_eq!(
            text(|out| write_holds(out, &[status])),
            "project 'primes': 3 unsent copies wait: no host has registered\n\
             project 'primes': 1 reported \\x1b[31m\n"
        );
    }

    #[test]
    fn resumed_json_schema_and_line() {
        let check = |n_batches_resumed: u64, json: &str, line: &str| {
            let resumed = Resumed { project: "primes".into(), n_batches_resumed };
            assert_eq!(text(|out| write_json(out, &resumed)), format!("{json}\n"));
            assert_eq!(resumed_line(&resumed), line);
        };
        check(1, r#"{"project":"primes","n_batches_resumed":1}"#, "resumed 1 paused batch of project 'primes'");
        check(0, r#"{"project":"primes","n_batches_resumed":0}"#, "resumed 0 paused batches of project 'primes'");
        check(3, r#"{"project":"primes","n_batches_resumed":3}"#, "resumed 3 paused batches of project 'primes'");
    }

    #[test]
    fn cancelled_json_schema_and_line() {
        let check = |n_work_units_cancelled: u64, scope: CancelScope, json: &str, line: &str| {
            let cancelled = Cancelled { project: "primes".into(), n_work_units_cancelled };
            assert_eq!(text(|out| write_json(out, &cancelled)), format!("{json}\n"));
            assert_eq!(cancelled_line(&cancelled, &scope), line);
        };
        check(
            3,
            CancelScope::Project,
            r#"{"project":"primes","n_work_units_cancelled":3}"#,
            "cancelled project 'primes': 3 open work units cancelled",
        );
        check(
            1,
            CancelScope::Batch(2),
            r#"{"project":"primes","n_work_units_cancelled":1}"#,
            "cancelled batch 2 of project 'primes': 1 open work unit cancelled",
        );
        check(
            1,
            CancelScope::WorkUnits(vec![4]),
            r#"{"project":"primes","n_work_units_cancelled":1}"#,
            "cancelled work unit 4 of project 'primes': 1 open work unit cancelled",
        );
        check(
            0,
            CancelScope::WorkUnits(vec![4, 7]),
            r#"{"project":"primes","n_work_units_cancelled":0}"#,
            "cancelled work units 4, 7 of project 'primes': 0 open work units cancelled",
        );
    }

    #[test]
    fn retried_json_schema_and_line() {
        let check = |n_work_units: u64, batch_id: i64, json: &str, line: &str| {
            let retried = Retried { project: "primes".into(), n_work_units, batch_id };
            assert_eq!(text(|out| write_json(out, &retried)), format!("{json}\n"));
            assert_eq!(retried_line(&retried), line);
        };
        check(1, 2, r#"{"project":"primes","n_work_units":1,"batch_id":2}"#, "retried 1 work unit as batch 2");
        check(12, 5, r#"{"project":"primes","n_work_units":12,"batch_id":5}"#, "retried 12 work units as batch 5");
    }

    #[test]
    fn purged_json_schema_and_line() {
        let check = |n_work_units_purged: u64, json: &str, line: &str| {
            let purged = Purged { project: "primes".into(), n_work_units_purged };
            assert_eq!(text(|out| write_json(out, &purged)), format!("{json}\n"));
            assert_eq!(purged_line(&purged), line);
        };
        check(3, r#"{"project":"primes","n_work_units_purged":3}"#, "purged 3 ended work units of project 'primes'");
        check(1, r#"{"project":"primes","n_work_units_purged":1}"#, "purged 1 ended work unit of project 'primes'");
        check(0, r#"{"project":"primes","n_work_units_purged":0}"#, "purged 0 ended work units of project 'primes'");
    }

    #[test]
    fn hosts_json_schema_and_table() {
        let host = |id: i64, name: &str, account: &str| v1::HostInfo {
            id,
            name: name.into(),
            n_cpus: 4,
            memory_bytes: 8 << 30,
            engine: "wasmtime".into(),
            os: "linux".into(),
            created_unix_ms: 1_000,
            last_contact_unix_ms: 1_000,
            n_valid: 10,
            n_invalid: 1,
            total_credit: 12.5,
            account: account.into(),
            consecutive_valid: 7,
            daily_quota: 80,
            results_today: 3,
            ..Default::default()
        };
        let mut b = host(2, "b", "");
        b.app_quotas = vec![
            v1::AppQuota {
                app_digest: "ab".repeat(32),
                projects: vec!["failing".into()],
                daily_quota: 1,
                results_today: 1,
                exhausted: true,
            },
            v1::AppQuota {
                app_digest: "cd".repeat(32),
                projects: vec!["good".into()],
                daily_quota: 20_000,
                results_today: 2,
                exhausted: false,
            },
        ];
        let hosts = [host(1, "a", "alice"), b];
        let json = text(|out| write_json(out, &Hosts { hosts: hosts[..1].iter().map(Host::from).collect() }));
        assert_eq!(
            json,
            "{\"hosts\":[{\"id\":1,\"name\":\"a\",\"n_cpus\":4,\"memory_bytes\":8589934592,\"engine\":\"wasmtime\",\
             \"os\":\"linux\",\"created_unix_ms\":1000,\"last_contact_unix_ms\":1000,\"n_valid\":10,\"n_invalid\":1,\
             \"n_error\":0,\"n_no_reply\":0,\"n_in_progress\":0,\"total_credit\":12.5,\"account\":\"alice\",\
             \"consecutive_valid\":7,\"daily_quota\":80,\"results_today\":3,\"app_quotas\":[]}]}\n"
        );
        let json = text(|out| write_json(out, &Host::from(&hosts[1])));
        assert!(
            json.contains(&format!(
                "\"app_quotas\":[{{\"app_digest\":\"{}\",\"projects\":[\"failing\"],\"daily_quota\":1,\
                 \"results_today\":1,\"exhausted\":true}},",
                "ab".repeat(32)
            )),
            "{json}"
        );
        let table = text(|out| hosts_table(&hosts, 13_500).write(out));
        assert_eq!(
            table,
            "ID  NAME  ACCOUNT  CPUS   MEMORY  ENGINE    OS     LAST CONTACT  IN PROGRESS  VALID  INVALID  ERROR  NO REPLY  STREAK  TODAY/QUOTA  APPS AT QUOTA  CREDIT\n\
             \x201  a     alice       4  8.0 GiB  wasmtime  linux  12s ago                 0     10        1      0         0       7         3/80  -                12.5\n\
             \x202  b     -           4  8.0 GiB  wasmtime  linux  12s ago                 0     10        1      0         0       7         3/80  failing          12.5\n"
        );
    }

    #[test]
    fn credit_json_schema_and_table() {
        let volunteers = [
            credit::Volunteer { rank: 1, name: "alice".into(), n_hosts: 2, n_valid: 10, total_credit: 12.5 },
            credit::Volunteer { rank: 2, name: "host 3 (c)".into(), n_hosts: 1, n_valid: 1, total_credit: 0.5 },
        ];
        let json = text(|out| {
            write_json(out, &Volunteers { volunteers: volunteers[..1].iter().map(Volunteer::from).collect() })
        });
        assert_eq!(
            json,
            "{\"volunteers\":[{\"rank\":1,\"volunteer\":\"alice\",\"n_hosts\":2,\"n_valid\":10,\"total_credit\":12.5}]}\n"
        );
        let table = text(|out| credit_table(&volunteers).write(out));
        assert_eq!(
            table,
            "RANK  VOLUNTEER   HOSTS  VALID  CREDIT\n\
             \x20\x20\x201  alice           2     10   12.50\n\
             \x20\x20\x202  host 3 (c)      1      1    0.50\n"
        );
    }

    #[test]
    fn small_formats() {
        assert_eq!(format_bytes(100), "100 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(8 << 30), "8.0 GiB");
        assert_eq!(format_age(0, 5_000), "never");
        assert_eq!(format_age(1_000, 13_500), "12s ago");
        assert_eq!(format_age(1_000, 1_000 + 3_725_000), "1h ago");
        assert_eq!(short_output(b"664579\n"), "664579");
        assert_eq!(short_output(b"a\tb\n\n"), "a\\tb\\n");
        assert_eq!(short_output(&[0xff]), "<1 bytes, not UTF-8>");
        assert_eq!(short_output("x".repeat(100).as_bytes()).len(), 60);
    }
}
