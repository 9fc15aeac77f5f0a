//! Commands run beside a worker on the same state directory:
//! `quorum-worker status` (what it is doing, read from the journal, and the
//! disk its app cache uses) and
//! `quorum-worker pause` / `resume` (a setting in the journal, so it holds
//! across restarts, plus SIGUSR1 / SIGUSR2 to the running worker so it takes
//! effect at once).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use crate::journal::{Journal, TaskState};
use crate::state::StateDir;

/// Opens the journal of the worker whose state directory is `state_dir`.
async fn open(state_dir: &Path) -> anyhow::Result<Journal> {
    let state = StateDir::open(state_dir).with_context(|| format!("cannot open {}", state_dir.display()))?;
    let path = state.journal_path();
    anyhow::ensure!(
        path.is_file(),
        "no worker journal in {} (has a worker run with this --state-dir?)",
        state_dir.display()
    );
    Journal::open_existing(&path).await.with_context(|| format!("cannot open {}", path.display()))
}

/// The pid of the worker running on this state directory, if one is.
async fn running_pid(journal: &Journal) -> anyhow::Result<Option<i32>> {
    let pid = journal.setting("pid").await?.and_then(|pid| pid.parse::<i32>().ok()).filter(|pid| *pid > 0);
    Ok(pid.filter(|pid| is_alive(*pid)))
}

#[cfg(unix)]
fn is_alive(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid).is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

#[cfg(not(unix))]
fn is_alive(_pid: i32) -> bool {
    false
}

#[cfg(unix)]
fn signal(pid: i32, pause: bool) -> anyhow::Result<()> {
    use rustix::process::{Pid, Signal, kill_process};
    let pid = Pid::from_raw(pid).context("invalid pid")?;
    kill_process(pid, if pause { Signal::USR1 } else { Signal::USR2 })
        .with_context(|| format!("cannot signal the worker (pid {})", pid.as_raw_nonzero()))
}

#[cfg(not(unix))]
fn signal(_pid: i32, _pause: bool) -> anyhow::Result<()> {
    Ok(())
}

/// Pauses (`true`) or resumes the worker; returns what happened, in words.
pub async fn set_paused(state_dir: &Path, paused: bool) -> anyhow::Result<String> {
    let journal = open(state_dir).await?;
    journal.set_setting("paused", if paused { "1" } else { "0" }).await?;
    let verb = if paused { "paused" } else { "resumed" };
    let message = match running_pid(&journal).await? {
        Some(pid) => {
            signal(pid, paused)?;
            format!("{verb} (worker pid {pid})")
        }
        None => format!("{verb}; no worker is running, it takes effect when one starts"),
    };
    journal.close().await;
    Ok(message)
}

/// The app cache's line of `status`: `app cache: 3 apps, 1.2 MiB of 256 MiB`
/// (the budget is the one the last worker started with, when one has).
async fn app_cache_line(state_dir: &Path, budget: Option<u64>) -> anyhow::Result<String> {
    let state = StateDir::open(state_dir).with_context(|| format!("cannot open {}", state_dir.display()))?;
    let apps = tokio::task::spawn_blocking(move || state.list_apps())
        .await
        .context("the app cache listing panicked")?
        .context("cannot list the app cache")?;
    let bytes: u64 = apps.iter().map(|app| app.size).sum();
    let n = apps.len();
    let budget = budget.map(|budget| format!(" of {}", human_bytes(budget))).unwrap_or_default();
    Ok(format!("app cache: {n} app{}, {}{budget}", if n == 1 { "" } else { "s" }, human_bytes(bytes)))
}

/// What the worker is doing, as text: one block per coordinator, one line per task.
pub async fn status(state_dir: &Path) -> anyhow::Result<String> {
    let journal = open(state_dir).await?;
    let pid = running_pid(&journal).await?;
    let paused = journal.setting("paused").await?.as_deref() == Some("1");
    let cpus = journal.setting("cpus").await?.unwrap_or_else(|| "?".into());
    let cpu_limit = journal.setting("cpu_limit").await?.unwrap_or_else(|| "100".into());
    let app_cache_budget = journal.setting("app_cache_bytes").await?.and_then(|bytes| bytes.parse().ok());
    let attachments = journal.attachments().await?;
    let tasks = journal.tasks().await?;
    let stats: std::collections::HashMap<String, f64> =
        journal.app_stats().await?.into_iter().map(|(digest, stats)| (digest, stats.fuel_per_task)).collect();
    journal.close().await;

    let now = now_ms();
    let mut out = String::new();
    let state = match (pid, paused) {
        (Some(pid), false) => format!("running (pid {pid})"),
        (Some(pid), true) => format!("paused (pid {pid})"),
        (None, false) => "not running".to_string(),
        (None, true) => "not running (paused)".to_string(),
    };
    let _ = writeln!(out, "worker: {state}, {cpus} cpus, cpu limit {cpu_limit}%");
    let _ = writeln!(out, "{}", app_cache_line(state_dir, app_cache_budget).await?);
    for attachment in &attachments {
        let host = attachment.host_id.map_or("not registered".to_string(), |id| format!("host {id}"));
        let _ = writeln!(
            out,
            "\n{} ({host}, share {}): credit {:.2}, {} valid, {} invalid, {} errors",
            attachment.server,
            attachment.resource_share,
            attachment.total_credit,
            attachment.n_valid,
            attachment.n_invalid,
            attachment.n_error
        );
        let mine: Vec<_> = tasks.iter().filter(|t| t.server == attachment.server).collect();
        let count = |state: TaskState| mine.iter().filter(|t| t.state == state).count();
        let _ = writeln!(
            out,
            "  tasks: {} running, {} queued, {} to report, {} reported (last 24 h)",
            count(TaskState::Running),
            count(TaskState::Received),
            count(TaskState::Finished),
            count(TaskState::Reported)
        );
        for task in mine.iter().filter(|t| t.state != TaskState::Reported) {
            let progress = match (task.state, stats.get(&task.app_digest)) {
                (TaskState::Finished, _) => "done".to_string(),
                (_, Some(per_task)) if *per_task > 0.0 => {
                    format!("{:.0}%", (task.fuel_done as f64 / per_task * 100.0).min(99.0))
                }
                _ if task.fuel_done > 0 => format!("{} fuel", task.fuel_done),
                _ => "-".to_string(),
            };
            let left = task.deadline_ms - now;
            let deadline =
                if left >= 0 { format!("due in {}", human_duration(left)) } else { "past its deadline".to_string() };
            let outcome = task.outcome.as_deref().map(|o| format!(", {o}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<9} result {} ({} / {}): {progress}, {deadline}{outcome}",
                state_word(task.state),
                task.result_id,
                task.project,
                task.work_unit_name
            );
        }
    }
    if attachments.is_empty() {
        let _ = writeln!(out, "not attached to any coordinator yet");
    }
    Ok(out)
}

fn state_word(state: TaskState) -> &'static str {
    match state {
        TaskState::Received => "queued",
        TaskState::Running => "running",
        TaskState::Finished => "to report",
        TaskState::Reported => "reported",
    }
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

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorum_proto::v1::Assignment;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(12_400), "12s");
        assert_eq!(human_duration(200_000), "3m 20s");
        assert_eq!(human_duration(3_720_000), "1h 02m");
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
        assert!(text.contains("queued    result 5 (primes / wu-5): -, due in 59m"), "{text}");

        let said = set_paused(dir.path(), true).await.expect("pause");
        assert!(said.contains("no worker is running"), "{said}");
        assert!(status(dir.path()).await.expect("status").contains("not running (paused)"));
        set_paused(dir.path(), false).await.expect("resume");
        assert!(status(dir.path()).await.expect("status").contains("worker: not running,"));

        let module = b"\0asm\x01\0\0\0";
        state.write_app(&crate::state::sha256_hex(module), module).expect("cache an app");
        let journal = Journal::open_existing(&state.journal_path()).await.expect("journal");
        journal.set_setting("app_cache_bytes", &(256u64 << 20).to_string()).await.expect("budget");
        journal.close().await;
        let text = status(dir.path()).await.expect("status");
        assert!(text.contains("\napp cache: 1 app, 8 B of 256 MiB\n"), "{text}");
    }
}
