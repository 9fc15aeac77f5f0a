//! BOINC's computing preferences: when the worker may compute, and how much
//! memory its tasks may take. Pure rules of the time of day and the machine's
//! readings ([`Readings`], taken by `sensors`), so each is tested with the
//! readings a test chooses.
//!
//! The preferences live in `preferences.toml` in the state directory, under
//! BOINC's names (`run_on_batteries`, `run_if_user_active`,
//! `idle_time_to_run`, `suspend_cpu_usage`, `start_hour`, `end_hour`,
//! `ram_max_used_busy_pct`, `ram_max_used_idle_pct`); `--pref NAME=VALUE`
//! overrides one. The worker reads the file again while it runs, so an edit
//! takes effect without a restart.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The file's name in the state directory.
pub const FILE_NAME: &str = "preferences.toml";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// When to compute. Defaults are BOINC's, but for the CPU-load rule, off:
/// tasks run at idle priority, so other programs already come first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Preferences {
    /// Compute while the computer runs on batteries.
    pub run_on_batteries: bool,
    /// Compute while the computer is in use (keyboard or mouse input within
    /// `idle_time_to_run` minutes).
    pub run_if_user_active: bool,
    /// Minutes without input after which the computer counts as idle.
    pub idle_time_to_run: f64,
    /// Suspend while programs other than the worker use more than this
    /// percentage of the CPU; 0: never.
    pub suspend_cpu_usage: f64,
    /// Compute only from `start_hour` to `end_hour` (local time, fractional
    /// hours, wrapping past midnight); equal values: at any hour.
    pub start_hour: f64,
    pub end_hour: f64,
    /// Percentage of the machine's memory tasks may reserve while it is in
    /// use, and while it is idle.
    pub ram_max_used_busy_pct: f64,
    pub ram_max_used_idle_pct: f64,
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            run_on_batteries: false,
            run_if_user_active: true,
            idle_time_to_run: 3.0,
            suspend_cpu_usage: 0.0,
            start_hour: 0.0,
            end_hour: 0.0,
            ram_max_used_busy_pct: 50.0,
            ram_max_used_idle_pct: 90.0,
        }
    }
}

/// What the worker knows of the machine at one moment; `None` where a
/// reading is not available here (a rule without its reading never suspends).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Readings {
    /// Running on batteries (a battery discharging, no mains online).
    pub on_battery: Option<bool>,
    /// Time since the last keyboard or mouse input.
    pub idle_for: Option<Duration>,
    /// CPU use of other programs since the previous reading, in percent of
    /// the whole machine.
    pub other_cpu_percent: Option<f64>,
    /// Physical memory.
    pub memory_bytes: u64,
}

/// Why computing is suspended.
#[derive(Debug, Clone, PartialEq)]
pub enum Suspend {
    OnBattery,
    UserActive,
    CpuBusy { percent: f64 },
    OutsideHours { start: f64, end: f64 },
}

impl fmt::Display for Suspend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Suspend::OnBattery => write!(f, "on batteries"),
            Suspend::UserActive => write!(f, "computer in use"),
            Suspend::CpuBusy { percent } => write!(f, "other programs use {percent:.0}% of the CPU"),
            Suspend::OutsideHours { start, end } => {
                write!(f, "outside the allowed hours ({}-{})", clock(*start), clock(*end))
            }
        }
    }
}

/// `8`, `8:30`.
fn clock(hour: f64) -> String {
    let minutes = (hour * 60.0).round() as u32;
    if minutes.is_multiple_of(60) {
        format!("{}", minutes / 60)
    } else {
        format!("{}:{:02}", minutes / 60, minutes % 60)
    }
}

/// Whether to compute now (`None`) or why not. `local_hour` is the time of
/// day, local, in hours (0 to 24).
pub fn suspension(prefs: &Preferences, readings: &Readings, local_hour: f64) -> Option<Suspend> {
    if !prefs.run_on_batteries && readings.on_battery == Some(true) {
        return Some(Suspend::OnBattery);
    }
    if !within_hours(prefs.start_hour, prefs.end_hour, local_hour) {
        return Some(Suspend::OutsideHours { start: prefs.start_hour, end: prefs.end_hour });
    }
    if !prefs.run_if_user_active && user_active(prefs, readings) {
        return Some(Suspend::UserActive);
    }
    match readings.other_cpu_percent {
        Some(percent) if prefs.suspend_cpu_usage > 0.0 && percent > prefs.suspend_cpu_usage => {
            Some(Suspend::CpuBusy { percent })
        }
        _ => None,
    }
}

/// `hour` in `[start, end)`, wrapping past midnight; `start == end`: always.
fn within_hours(start: f64, end: f64, hour: f64) -> bool {
    if start == end {
        true
    } else if start < end {
        start <= hour && hour < end
    } else {
        hour >= start || hour < end
    }
}

/// Input within `idle_time_to_run` minutes.
fn user_active(prefs: &Preferences, readings: &Readings) -> bool {
    readings.idle_for.is_some_and(|idle| idle.as_secs_f64() < prefs.idle_time_to_run * 60.0)
}

/// Bytes of memory tasks may reserve together: a share of the machine's,
/// smaller while it is in use. 0 (unknown memory): no budget.
pub fn memory_budget(prefs: &Preferences, readings: &Readings) -> Option<u64> {
    if readings.memory_bytes == 0 {
        return None;
    }
    let pct = if user_active(prefs, readings) { prefs.ram_max_used_busy_pct } else { prefs.ram_max_used_idle_pct };
    Some((readings.memory_bytes as f64 * pct / 100.0) as u64)
}

/// Whether a task reserving `task` bytes may start beside running tasks
/// that reserve `running` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Start,
    /// Not now: it fits once running tasks end.
    Wait,
    /// Never: it alone is over the budget.
    Refuse,
}

pub fn admit(budget: Option<u64>, running: u64, task: u64) -> Admission {
    match budget {
        None => Admission::Start,
        Some(budget) if task > budget => Admission::Refuse,
        Some(budget) if running.saturating_add(task) > budget => Admission::Wait,
        Some(_) => Admission::Start,
    }
}

impl Preferences {
    /// The file's preferences (defaults where it is silent or missing) with
    /// `overrides` (`NAME=VALUE`, VALUE in TOML: `true`, `25`, `8.5`) applied.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Preferences, Error> {
        let origin = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(Error::Read { path: origin, source }),
        };
        let invalid = |origin: &str, message: String| Error::Invalid { origin: origin.to_string(), message };
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| invalid(&origin, e.message().to_string()))?;
        // Where each overridden value came from, to name it in an error.
        let mut overridden = std::collections::HashMap::new();
        for pair in overrides {
            let origin = format!("--pref {pair}");
            let Some((name, value)) = pair.split_once('=') else {
                return Err(invalid(&origin, "expected NAME=VALUE".into()));
            };
            let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {}", value.trim()))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .ok_or_else(|| invalid(&origin, format!("{value:?} is not a value (true, 25, 8.5)")))?;
            table.insert(name.trim().to_string(), value);
            overridden.insert(name.trim().to_string(), origin);
        }
        let prefs: Preferences =
            toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| invalid(&origin, e.message().into()))?;
        prefs.check().map_err(|(name, message)| invalid(overridden.get(name).unwrap_or(&origin), message))?;
        Ok(prefs)
    }

    /// The first value out of its range: its name and why.
    fn check(&self) -> Result<(), (&'static str, String)> {
        let percentages = [
            ("suspend_cpu_usage", self.suspend_cpu_usage),
            ("ram_max_used_busy_pct", self.ram_max_used_busy_pct),
            ("ram_max_used_idle_pct", self.ram_max_used_idle_pct),
        ];
        for (name, value) in percentages {
            if !(0.0..=100.0).contains(&value) {
                return Err((name, format!("{name} must be a percentage (0 to 100), not {value}")));
            }
        }
        for (name, value) in [("start_hour", self.start_hour), ("end_hour", self.end_hour)] {
            if !(0.0..=24.0).contains(&value) {
                return Err((name, format!("{name} must be an hour (0 to 24), not {value}")));
            }
        }
        if !(self.idle_time_to_run >= 0.0 && self.idle_time_to_run.is_finite()) {
            let message = format!("idle_time_to_run must be minutes (0 or more), not {}", self.idle_time_to_run);
            return Err(("idle_time_to_run", message));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readings() -> Readings {
        Readings {
            on_battery: Some(false),
            idle_for: Some(Duration::from_secs(3600)),
            other_cpu_percent: Some(5.0),
            memory_bytes: 8 << 30,
        }
    }

    #[test]
    fn each_rule_suspends_for_its_reason() {
        let defaults = Preferences::default();
        let picky = Preferences {
            run_if_user_active: false,
            suspend_cpu_usage: 25.0,
            start_hour: 22.0,
            end_hour: 6.5,
            ..Preferences::default()
        };
        let batteries_allowed = Preferences { run_on_batteries: true, ..Preferences::default() };
        let night = 23.0;
        let cases: Vec<(&str, &Preferences, Readings, f64, Option<Suspend>)> = vec![
            ("idle machine, defaults", &defaults, readings(), 12.0, None),
            (
                "on batteries",
                &defaults,
                Readings { on_battery: Some(true), ..readings() },
                12.0,
                Some(Suspend::OnBattery),
            ),
            (
                "on batteries, allowed",
                &batteries_allowed,
                Readings { on_battery: Some(true), ..readings() },
                12.0,
                None,
            ),
            ("battery unknown", &defaults, Readings { on_battery: None, ..readings() }, 12.0, None),
            ("in use, defaults run", &defaults, Readings { idle_for: Some(Duration::ZERO), ..readings() }, 12.0, None),
            (
                "in use",
                &picky,
                Readings { idle_for: Some(Duration::from_secs(179)), ..readings() },
                night,
                Some(Suspend::UserActive),
            ),
            (
                "idle long enough",
                &picky,
                Readings { idle_for: Some(Duration::from_secs(180)), ..readings() },
                night,
                None,
            ),
            ("input unknown", &picky, Readings { idle_for: None, ..readings() }, night, None),
            (
                "busy CPU",
                &picky,
                Readings { other_cpu_percent: Some(40.0), ..readings() },
                night,
                Some(Suspend::CpuBusy { percent: 40.0 }),
            ),
            ("busy CPU, rule off", &defaults, Readings { other_cpu_percent: Some(99.0), ..readings() }, 12.0, None),
            ("CPU not measured yet", &picky, Readings { other_cpu_percent: None, ..readings() }, night, None),
            ("inside hours past midnight", &picky, readings(), 3.0, None),
            ("end hour excluded", &picky, readings(), 6.5, Some(Suspend::OutsideHours { start: 22.0, end: 6.5 })),
            ("outside hours", &picky, readings(), 12.0, Some(Suspend::OutsideHours { start: 22.0, end: 6.5 })),
            (
                "battery before hours",
                &picky,
                Readings { on_battery: Some(true), ..readings() },
                12.0,
                Some(Suspend::OnBattery),
            ),
        ];
        for (name, prefs, readings, hour, expected) in cases {
            assert_eq!(suspension(prefs, &readings, hour), expected, "{name}");
        }
    }

    #[test]
    fn hours_within_one_day() {
        let prefs = Preferences { start_hour: 8.0, end_hour: 18.0, ..Preferences::default() };
        for (hour, runs) in [(7.99, false), (8.0, true), (12.0, true), (17.99, true), (18.0, false), (0.0, false)] {
            assert_eq!(suspension(&prefs, &readings(), hour).is_none(), runs, "at {hour}");
        }
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(Suspend::OnBattery.to_string(), "on batteries");
        assert_eq!(Suspend::OutsideHours { start: 22.0, end: 6.5 }.to_string(), "outside the allowed hours (22-6:30)");
        assert_eq!(Suspend::CpuBusy { percent: 41.6 }.to_string(), "other programs use 42% of the CPU");
    }

    #[test]
    fn memory_budget_is_smaller_while_in_use() {
        let prefs = Preferences::default();
        let idle = readings();
        let busy = Readings { idle_for: Some(Duration::from_secs(10)), ..readings() };
        assert_eq!(memory_budget(&prefs, &idle), Some(7_730_941_132));
        assert_eq!(memory_budget(&prefs, &busy), Some(4 << 30));
        assert_eq!(memory_budget(&prefs, &Readings { memory_bytes: 0, ..idle }), None);
    }

    #[test]
    fn admission_by_budget() {
        let cases = [
            (None, 100, 100, Admission::Start),
            (Some(100), 0, 100, Admission::Start),
            (Some(100), 1, 100, Admission::Wait),
            (Some(100), 60, 40, Admission::Start),
            (Some(100), 0, 101, Admission::Refuse),
        ];
        for (budget, running, task, expected) in cases {
            assert_eq!(admit(budget, running, task), expected, "{budget:?} {running} {task}");
        }
    }

    #[test]
    fn file_and_overrides() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(FILE_NAME);
        assert_eq!(Preferences::load(&path, &[]).expect("missing file: defaults"), Preferences::default());
        std::fs::write(&path, "run_on_batteries = true\nstart_hour = 8\nend_hour = 18\n").expect("write");
        let prefs = Preferences::load(&path, &["end_hour=20.5".into(), "suspend_cpu_usage = 30".into()]).expect("load");
        assert!(prefs.run_on_batteries);
        assert_eq!((prefs.start_hour, prefs.end_hour, prefs.suspend_cpu_usage), (8.0, 20.5, 30.0));

        let error = |overrides: &[&str]| {
            let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
            Preferences::load(&path, &overrides).expect_err("invalid").to_string()
        };
        assert!(
            error(&["run_on_battery=true"]).contains("unknown field `run_on_battery`"),
            "{}",
            error(&["run_on_battery=true"])
        );
        assert_eq!(error(&["end_hour=25"]), "--pref end_hour=25: end_hour must be an hour (0 to 24), not 25");
        assert!(error(&["ram_max_used_busy_pct=-1"]).contains("must be a percentage"));
        assert!(error(&["start_hour"]).contains("--pref start_hour: expected NAME=VALUE"));
        assert!(error(&["start_hour=eight"]).contains("is not a value"));
        std::fs::write(&path, "start_hour = \"8\"\n").expect("write");
        let text = Preferences::load(&path, &[]).expect_err("wrong type").to_string();
        assert!(text.starts_with(&path.display().to_string()) && text.contains("invalid type"), "{text}");
    }
}
