//! `quorum-worker status`: what the worker on a state directory is doing,
//! read from its journal beside it, with the host's counters asked fresh
//! from each coordinator (the journal's last known ones when it cannot be
//! reached). One [`Status`] value, rendered as text for people or as JSON
//! for scripts (`--json`); `--watch` renders it again every two seconds.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::client::Client;
use crate::control::{open, running_pid};
use crate::journal::now_ms;
use crate::journal::{AttachmentLine, TaskState};
use crate::schedule;
use crate::state::StateDir;

/// How long a coordinator has to answer for fresh counters.
const COUNTERS_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// "running", "paused", "suspended" or "not running".
    pub state: &'static str,
    pub pid: Option<i32>,
    /// Why computing is paused or suspended.
    pub why: Option<String>,
    pub cpus: Option<u32>,
    pub cpu_limit: u8,
    pub app_cache: AppCache,
    /// The input file cache (`files/`): files held (complete or partly
    /// downloaded), their bytes, and its budget.
    pub file_cache: FileCache,
    pub coordinators: Vec<Coordinator>,
}

/// The disk the input file cache uses, and its budget (the one the last
/// worker started with, when one has).
#[derive(Debug, Clone, Serialize)]
pub struct FileCache {
    pub files: usize,
    pub bytes: u64,
    pub budget_bytes: Option<u64>,
}

/// The disk the app cache uses, and its budget (the one the last worker
/// started with, when one has).
#[derive(Debug, Clone, Serialize)]
pub struct AppCache {
    pub apps: usize,
    pub bytes: u64,
    pub budget_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Coordinator {
    /// The attachment's key (its first address when it attached): what
    /// `detach` and `abort --server` take.
    pub server: String,
    /// Its addresses, one unless it is a coordinator group (`--server URL,URL`).
    pub addresses: Vec<String>,
    /// The address the worker's calls went to last.
    pub address: String,
    pub host_id: Option<i64>,
    pub resource_share: f64,
    pub total_credit: f64,
    pub n_valid: u64,
    pub n_invalid: u64,
    pub n_error: u64,
    /// The counters came from the coordinator just now (else: last known).
    pub counters_fresh: bool,
    pub tasks: Vec<TaskStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskStatus {
    pub result_id: i64,
    pub project: String,
    pub work_unit: String,
    /// "queued", "running", "suspended", "to report" or "reported".
    pub state: &'static str,
    /// Fuel done against the app's fuel per task on this host, 0 to 1;
    /// unknown until a task of the app ran here.
    pub progress: Option<f64>,
    pub fuel_done: u64,
    /// Since the task first started (to its end once finished).
    pub elapsed_s: Option<u64>,
    /// Run time left at this host's measured speed.
    pub remaining_s: Option<u64>,
    pub deadline_unix_ms: i64,
    /// "success" or "client error: ..." once finished.
    pub outcome: Option<String>,
}

/// Reads the journal on `state_dir`; asks the coordinators for the host's
/// counters when `fresh`.
pub async fn gather(state_dir: &Path, ca_cert: Option<&[u8]>, fresh: bool) -> anyhow::Result<Status> {
    let journal = open(state_dir).await?;
    let pid = running_pid(&journal).await?;
    let paused = journal.setting("paused").await?.as_deref() == Some("1");
    let suspended = journal.setting("suspended").await?.filter(|reason| !reason.is_empty() && pid.is_some());
    let cpus = journal.setting("cpus").await?.and_then(|n| n.parse().ok());
    let cpu_limit = journal.setting("cpu_limit").await?.and_then(|n| n.parse().ok()).unwrap_or(100);
    let budget_bytes = journal.setting("app_cache_bytes").await?.and_then(|bytes| bytes.parse().ok());
    let file_budget_bytes = journal.setting("file_cache_bytes").await?.and_then(|bytes| bytes.parse().ok());
    let attachments = journal.attachments().await?;
    let mut identities = HashMap::new();
    for attachment in &attachments {
        if let Some(identity) = journal.identity(&attachment.server).await? {
            identities.insert(attachment.server.clone(), identity.token);
        }
    }
    let tasks = journal.tasks().await?;
    let stats: HashMap<String, _> = journal.app_stats().await?.into_iter().collect();
    journal.close().await;

    let (state, why) = match (pid, paused, suspended) {
        (Some(_), true, _) => ("paused", Some("until `quorum-worker resume`".to_string())),
        (Some(_), false, Some(reason)) => ("suspended", Some(reason)),
        (Some(_), false, None) => ("running", None),
        (None, true, _) => ("not running", Some("paused until `quorum-worker resume`".to_string())),
        (None, false, _) => ("not running", None),
    };
    // Running tasks of a paused or suspended worker are not computing.
    let halted = pid.is_some() && why.is_some();
    let now = now_ms();
    let mut coordinators = Vec::with_capacity(attachments.len());
    for attachment in attachments {
        let counters = match identities.get(&attachment.server) {
            Some(token) if fresh => fresh_counters(&in_use_first(&attachment), token, ca_cert).await,
            _ => None,
        };
        let tasks = tasks
            .iter()
            .filter(|t| t.server == attachment.server)
            .map(|t| {
                let stats = stats.get(&t.app_digest);
                let per_task = stats.map(|s| s.fuel_per_task).filter(|f| *f > 0.0);
                let finished = matches!(t.state, TaskState::Finished | TaskState::Reported);
                // A task longer than the app's usual ones has no known progress.
                let fraction = per_task.map(|per_task| t.fuel_done as f64 / per_task).filter(|f| *f < 1.0);
                let progress = if finished { Some(1.0) } else { fraction };
                let elapsed_s = t.started_ms.map(|start| {
                    let end = if finished { t.finished_ms.unwrap_or(now) } else { now };
                    u64::try_from(end - start).unwrap_or(0) / 1000
                });
                let remaining_s = (!finished && fraction.is_some())
                    .then(|| schedule::estimate_ms(per_task, stats.map(|s| s.fuel_per_second), t.fuel_done, cpu_limit))
                    .flatten()
                    .map(|ms| ms.div_ceil(1000));
                TaskStatus {
                    result_id: t.result_id,
                    project: t.project.clone(),
                    work_unit: t.work_unit_name.clone(),
                    state: if halted && t.state == TaskState::Running { "suspended" } else { state_word(t.state) },
                    progress,
                    fuel_done: t.fuel_done,
                    elapsed_s,
                    remaining_s,
                    deadline_unix_ms: t.deadline_ms,
                    outcome: t.outcome.clone(),
                }
            })
            .collect();
        coordinators.push(coordinator(attachment, counters, tasks));
    }
    let state_dir = StateDir::open(state_dir).with_context(|| format!("cannot open {}", state_dir.display()))?;
    let files = state_dir.file_cache();
    let apps = tokio::task::spawn_blocking(move || state_dir.list_apps())
        .await
        .context("the app cache listing panicked")?
        .context("cannot list the app cache")?;
    let app_cache = AppCache { apps: apps.len(), bytes: apps.iter().map(|app| app.size).sum(), budget_bytes };
    let files = tokio::task::spawn_blocking(move || files.list())
        .await
        .context("the file cache listing panicked")?
        .context("cannot list the file cache")?;
    let file_cache =
        FileCache { files: files.len(), bytes: files.iter().map(|f| f.size).sum(), budget_bytes: file_budget_bytes };
    Ok(Status { state, pid, why, cpus, cpu_limit, app_cache, file_cache, coordinators })
}

fn coordinator(line: AttachmentLine, fresh: Option<(f64, u64, u64, u64)>, tasks: Vec<TaskStatus>) -> Coordinator {
    let (total_credit, n_valid, n_invalid, n_error) =
        fresh.unwrap_or((line.total_credit, line.n_valid, line.n_invalid, line.n_error));
    Coordinator {
        server: line.server,
        addresses: line.addresses,
        address: line.address,
        host_id: line.host_id,
        resource_share: line.resource_share,
        total_credit,
        n_valid,
        n_invalid,
        n_error,
        counters_fresh: fresh.is_some(),
        tasks,
    }
}

/// A coordinator's addresses, the one in use first (then the others in order).
pub(crate) fn in_use_first(line: &AttachmentLine) -> Vec<String> {
    let others = line.addresses.iter().filter(|address| **address != line.address);
    std::iter::once(&line.address).chain(others).cloned().collect()
}

/// The host's credit and counters from the coordinator, if one of its
/// `addresses` answers in time (the next tried only when one is unreachable).
async fn fresh_counters(addresses: &[String], token: &str, ca_cert: Option<&[u8]>) -> Option<(f64, u64, u64, u64)> {
    for address in addresses {
        let mut client = Client::new(address, ca_cert).ok()?;
        client.set_token(token).ok()?;
        match tokio::time::timeout(COUNTERS_TIMEOUT, client.get_host()).await {
            Ok(Ok(host)) => return Some((host.total_credit, host.n_valid, host.n_invalid, host.n_error)),
            Ok(Err(status)) if crate::client::is_unreachable(status.code()) => {}
            Ok(Err(_)) => return None,
            Err(_) => {}
        }
    }
    None
}

/// The status as text: the worker, then one block per coordinator with one
/// line per task.
pub fn render(status: &Status, now_ms: i64) -> String {
    let mut out = String::new();
    let pid = status.pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default();
    let why = status.why.as_deref().map(|why| format!(": {why}")).unwrap_or_default();
    let cpus = status.cpus.map_or("?".to_string(), |n| n.to_string());
    let _ = writeln!(out, "worker: {}{why}{pid}, {cpus} cpus, cpu limit {}%", status.state, status.cpu_limit);
    let cache = &status.app_cache;
    let budget = cache.budget_bytes.map(|budget| format!(" of {}", human_bytes(budget))).unwrap_or_default();
    let plural = if cache.apps == 1 { "" } else { "s" };
    let _ = writeln!(out, "app cache: {} app{plural}, {}{budget}", cache.apps, human_bytes(cache.bytes));
    let files = &status.file_cache;
    if files.files > 0 {
        let budget = files.budget_bytes.map(|budget| format!(" of {}", human_bytes(budget))).unwrap_or_default();
        let plural = if files.files == 1 { "" } else { "s" };
        let _ = writeln!(out, "file cache: {} input file{plural}, {}{budget}", files.files, human_bytes(files.bytes));
    }
    for c in &status.coordinators {
        let host = c.host_id.map_or("not registered".to_string(), |id| format!("host {id}"));
        let last_known = if c.counters_fresh || c.host_id.is_none() { "" } else { " (last known: unreachable)" };
        // A coordinator group says which of its addresses is in use.
        let using = if c.addresses.len() > 1 || c.address != c.server {
            format!(", using {} of {}", c.address, c.addresses.join(","))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "\n{} ({host}, share {}{using}): credit {:.2}, {} valid, {} invalid, {} errors{last_known}",
            c.server, c.resource_share, c.total_credit, c.n_valid, c.n_invalid, c.n_error
        );
        let count = |state: &str| c.tasks.iter().filter(|t| t.state == state).count();
        let _ = writeln!(
            out,
            "  tasks: {} running, {} suspended, {} queued, {} to report, {} reported (last 24 h)",
            count("running"),
            count("suspended"),
            count("queued"),
            count("to report"),
            count("reported")
        );
        for task in c.tasks.iter().filter(|t| t.state != "reported") {
            let mut parts = Vec::new();
            match (task.state, task.progress) {
                ("to report", _) => {}
                ("queued", _) if task.fuel_done == 0 => {}
                (_, Some(done)) => parts.push(format!("{:.0}%", done * 100.0)),
                (_, None) => parts.push(format!("{} fuel done", human_count(task.fuel_done))),
            }
            parts.extend(task.elapsed_s.map(|s| format!("{} elapsed", secs(s))));
            parts.extend(task.remaining_s.map(|s| format!("about {} to go", secs(s))));
            let left = task.deadline_unix_ms - now_ms;
            parts.push(if left >= 0 { format!("due in {}", human_duration(left)) } else { "past its deadline".into() });
            parts.extend(task.outcome.clone());
            let _ = writeln!(
                out,
                "  {:<9} result {} ({} / {}): {}",
                task.state,
                task.result_id,
                task.project,
                task.work_unit,
                parts.join(", ")
            );
        }
    }
    if status.coordinators.is_empty() {
        let _ = writeln!(out, "not attached to any coordinator");
    }
    out
}

/// What `status` as text shows for the worker on `state_dir`.
pub async fn status(state_dir: &Path) -> anyhow::Result<String> {
    Ok(render(&gather(state_dir, None, true).await?, now_ms()))
}

pub(crate) fn state_word(state: TaskState) -> &'static str {
    match state {
        TaskState::Received => "queued",
        TaskState::Running => "running",
        TaskState::Finished => "to report",
        TaskState::Reported => "reported",
    }
}

fn secs(s: u64) -> String {
    human_duration(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
}

/// `950`, `45.7 M`, `15.3 G`: a count in three figures.
fn human_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1} k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} M", n as f64 / 1e6),
        _ => format!("{:.1} G", n as f64 / 1e9),
    }
}

/// `700 B`, `1.2 KiB`, `256 MiB`, `1.5 GiB`: one decimal, none when whole.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    format!("{} {}", text.strip_suffix(".0").unwrap_or(&text), UNITS[unit])
}

/// `1h 02m`, `3m 20s`, `12s`.
fn human_duration(ms: i64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::set_paused;
    use crate::journal::Journal;
    use crate::state::StateDir;
    use quorum_proto::v1::Assignment;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(12_400), "12s");
        assert_eq!(human_duration(200_000), "3m 20s");
        assert_eq!(human_duration(3_720_000), "1h 02m");
    }

    #[test]
    fn counts_read_well() {
        for (n, text) in [(950, "950"), (45_723_273, "45.7 M"), (15_251_555_202, "15.3 G")] {
            assert_eq!(human_count(n), text);
        }
    }

    #[test]
    fn sizes_read_well() {
        for (bytes, text) in [
            (0, "0 B"),
            (700, "700 B"),
            (1024, "1 KiB"),
            (1260, "1.2 KiB"),
            (1_258_291, "1.2 MiB"),
            (256 * 1024 * 1024, "256 MiB"),
            (3 << 30, "3 GiB"),
        ] {
            assert_eq!(human_bytes(bytes), text, "{bytes}");
        }
    }

    #[tokio::test]
    async fn status_shows_tasks_and_pause_persists() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(status(dir.path()).await.is_err(), "no journal yet");
        let state = StateDir::open(dir.path()).expect("state");
        let journal = Journal::open(&state.journal_path()).await.expect("journal");
        journal.attach("http://a", 100.0).await.expect("attach");
        let assignment = Assignment {
            result_id: 5,
            project: "primes".into(),
            work_unit_name: "wu-5".into(),
            app_digest: "b".repeat(64),
            deadline_unix_ms: now_ms() + 3_600_000,
            ..Assignment::default()
        };
        journal.receive("http://a", vec![assignment], now_ms()).await.expect("receive");
        journal.close().await;

        let text = status(dir.path()).await.expect("status");
        assert!(text.contains("worker: not running"), "{text}");
        assert!(text.contains("\napp cache: 0 apps, 0 B\n"), "no worker said its budget yet: {text}");
        assert!(text.contains("http://a (not registered, share 100)"), "{text}");
        assert!(text.contains("1 queued"), "{text}");
        assert!(text.contains("queued    result 5 (primes / wu-5): due in 59m"), "{text}");
        let json = serde_json::to_value(gather(dir.path(), None, true).await.expect("gather")).expect("json");
        assert_eq!(json["coordinators"][0]["tasks"][0]["state"], "queued", "{json}");
        assert_eq!(json["coordinators"][0]["counters_fresh"], false, "never registered: {json}");

        let said = set_paused(dir.path(), true).await.expect("pause");
        assert!(said.contains("no worker is running"), "{said}");
        assert!(status(dir.path()).await.expect("status").contains("not running: paused until `quorum-worker resume`"));
        set_paused(dir.path(), false).await.expect("resume");
        assert!(status(dir.path()).await.expect("status").contains("worker: not running,"));

        // A coordinator group shows the address in use.
        let journal = Journal::open_existing(&state.journal_path()).await.expect("journal");
        let group = ["http://a".to_owned(), "http://b".to_owned()];
        journal.set_addresses("http://a", &group, "http://b").await.expect("addresses");
        journal.close().await;
        let text = status(dir.path()).await.expect("status");
        assert!(text.contains("http://a (not registered, share 100, using http://b of http://a,http://b)"), "{text}");
        let json = serde_json::to_value(gather(dir.path(), None, false).await.expect("gather")).expect("json");
        assert_eq!(json["coordinators"][0]["address"], "http://b", "{json}");
        assert_eq!(json["coordinators"][0]["addresses"][1], "http://b", "{json}");

        let module = b"\0asm\x01\0\0\0";
        state.write_app(&crate::state::sha256_hex(module), module).expect("cache an app");
        let journal = Journal::open_existing(&state.journal_path()).await.expect("journal");
        journal.set_setting("app_cache_bytes", &(256u64 << 20).to_string()).await.expect("budget");
        journal.close().await;
        let text = status(dir.path()).await.expect("status");
        assert!(text.contains("\napp cache: 1 app, 8 B of 256 MiB\n"), "{text}");
    }
}
