//! The machine's readings for the computing preferences ([`Readings`]):
//! batteries from `/sys/class/power_supply`, the time since the last
//! keyboard or mouse input from the access times of `/dev/input` devices and
//! terminals (as BOINC's client reads them on Linux), other programs' CPU use
//! from `/proc/stat` less this process's, memory from `/proc/meminfo`.
//! Behind the [`Sensors`] trait so the worker's tests choose the readings.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::preferences::Readings;

/// Where the readings come from.
pub trait Sensors: Send {
    fn read(&mut self) -> Readings;
}

/// The real machine. `power_supply` is normally `/sys/class/power_supply`.
pub struct System {
    power_supply: PathBuf,
    input_dirs: Vec<PathBuf>,
    /// Busy and total jiffies of the machine, and this process's, at the previous reading.
    previous_cpu: Option<(u64, u64, u64)>,
}

impl System {
    pub fn new(power_supply: PathBuf) -> System {
        System { power_supply, input_dirs: vec!["/dev/input".into(), "/dev/pts".into()], previous_cpu: None }
    }
}

impl Sensors for System {
    fn read(&mut self) -> Readings {
        let cpu = cpu_times();
        let other_cpu_percent = match (self.previous_cpu, cpu) {
            (Some((busy0, total0, own0)), Some((busy1, total1, own1))) if total1 > total0 => {
                let others = busy1.saturating_sub(busy0).saturating_sub(own1.saturating_sub(own0));
                Some(others as f64 * 100.0 / (total1 - total0) as f64)
            }
            _ => None,
        };
        self.previous_cpu = cpu;
        Readings {
            on_battery: on_battery(&self.power_supply),
            idle_for: idle_for(&self.input_dirs),
            other_cpu_percent,
            memory_bytes: total_memory_bytes(),
        }
    }
}

/// A battery discharging and no mains supply online; `None` without a
/// readable power supply directory.
fn on_battery(dir: &Path) -> Option<bool> {
    let entries = std::fs::read_dir(dir).ok()?;
    let read = |path: PathBuf| std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default();
    let (mut mains, mut discharging) = (false, false);
    for entry in entries.flatten() {
        let supply = entry.path();
        match read(supply.join("type")).as_str() {
            "Battery" => discharging |= read(supply.join("status")) == "Discharging",
            "Mains" | "USB" | "USB_C" | "USB_PD" => mains |= read(supply.join("online")) == "1",
            _ => {}
        }
    }
    Some(discharging && !mains)
}

/// Time since the newest access to an input device or terminal; `None` if
/// there are none (a server without a console).
fn idle_for(dirs: &[PathBuf]) -> Option<Duration> {
    let newest = dirs
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten())
        .filter_map(|entry| entry.metadata().ok()?.accessed().ok())
        .max()?;
    Some(SystemTime::now().duration_since(newest).unwrap_or(Duration::ZERO))
}

/// (busy, total) jiffies of the machine from `/proc/stat`, and this
/// process's own (user + system) from `/proc/self/stat`.
fn cpu_times() -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> =
        stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state is 3rd, utime 14th, stime 15th.
    let after = own.rsplit_once(')')?.1;
    let own_fields: Vec<&str> = after.split_whitespace().collect();
    let own_time = own_fields.get(11)?.parse::<u64>().ok()? + own_fields.get(12)?.parse::<u64>().ok()?;
    Some((total - idle, total, own_time))
}

/// Physical memory, from `/proc/meminfo` on Linux; 0 when unknown.
pub fn total_memory_bytes() -> u64 {
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else {
        return 0;
    };
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The local time of day in hours (0 to 24), from the C library's time zone.
pub fn local_hour(now: SystemTime) -> f64 {
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let time = libc::time_t::try_from(secs).unwrap_or(0);
    // SAFETY: localtime_r writes only into `tm`, which outlives the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let converted = unsafe { !libc::localtime_r(&time, &mut tm).is_null() };
    if !converted {
        return (secs % 86_400) as f64 / 3600.0;
    }
    f64::from(tm.tm_hour) + f64::from(tm.tm_min) / 60.0 + f64::from(tm.tm_sec) / 3600.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supply(dir: &Path, name: &str, files: &[(&str, &str)]) {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).expect("dir");
        for (file, text) in files {
            std::fs::write(path.join(file), format!("{text}\n")).expect("write");
        }
    }

    #[test]
    fn batteries_from_the_power_supply_class() {
        let dir = tempfile::tempdir().expect("dir");
        assert_eq!(on_battery(&dir.path().join("missing")), None);
        assert_eq!(on_battery(dir.path()), Some(false), "a desktop without batteries");
        supply(dir.path(), "BAT0", &[("type", "Battery"), ("status", "Discharging")]);
        assert_eq!(on_battery(dir.path()), Some(true));
        supply(dir.path(), "AC", &[("type", "Mains"), ("online", "1")]);
        assert_eq!(on_battery(dir.path()), Some(false), "mains online");
        supply(dir.path(), "AC", &[("type", "Mains"), ("online", "0")]);
        assert_eq!(on_battery(dir.path()), Some(true));
        supply(dir.path(), "BAT0", &[("type", "Battery"), ("status", "Charging")]);
        assert_eq!(on_battery(dir.path()), Some(false));
    }

    #[test]
    fn readings_on_this_machine() {
        let mut sensors = System::new("/sys/class/power_supply".into());
        let first = sensors.read();
        assert!(first.memory_bytes > 0, "Linux has /proc/meminfo");
        assert_eq!(first.other_cpu_percent, None, "CPU use needs two readings");
        let hour = local_hour(SystemTime::now());
        assert!((0.0..24.0).contains(&hour), "{hour}");
    }
}
