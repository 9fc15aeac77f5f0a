//! Whether the worker computes: the volunteer's pause (`quorum-worker
//! pause`, held in the journal) and the computing preferences (`preferences`:
//! batteries, use, CPU load, hours), sensed every second. Either one stops
//! the gate, so running tasks stop computing where they are and no task
//! starts; work is still fetched while the preferences suspend (the buffer
//! is for the hours the computer cannot compute), not while paused.

use std::time::SystemTime;

use tokio::time::Instant;
use tracing::{info, warn};

use super::*;
use crate::preferences::{self, Preferences, Suspend};
use crate::sensors;

/// How often the readings are taken and the preferences file read again.
pub(super) const SENSE_EVERY: Duration = Duration::from_secs(1);

impl Worker {
    /// Neither paused nor suspended.
    pub(super) fn computing(&self) -> bool {
        !self.paused && self.suspended.is_none()
    }

    pub(super) async fn set_paused(&mut self, paused: bool) {
        if paused == self.paused {
            return;
        }
        self.paused = paused;
        self.apply_gate();
        if paused {
            info!("paused: tasks stop computing until resumed");
        } else {
            info!("resumed");
        }
        if let Err(error) = self.journal.set_setting("paused", if paused { "1" } else { "0" }).await {
            warn!(error = %error, "cannot journal the pause setting");
        }
    }

    /// Reads the preferences file and the machine, then suspends or resumes.
    pub(super) async fn sense(&mut self) {
        self.next_sense = Instant::now() + SENSE_EVERY;
        match Preferences::load(&self.preferences_path(), &self.config.preference_overrides) {
            Ok(prefs) if prefs != self.preferences => {
                info!(preferences = %serde_json::to_string(&prefs).unwrap_or_default(), "preferences changed");
                self.preferences = prefs;
                self.preferences_error = None;
            }
            Ok(_) => self.preferences_error = None,
            Err(error) => {
                // The last good preferences stay; said once per change of error.
                let text = error.to_string();
                if self.preferences_error.as_deref() != Some(text.as_str()) {
                    warn!(error = %text, "cannot read the preferences, keeping the previous ones");
                    self.preferences_error = Some(text);
                }
            }
        }
        let Some(mut sensors) = self.sensors.take() else {
            return;
        };
        let (sensors, readings) = match tokio::task::spawn_blocking(move || {
            let readings = sensors.read();
            (sensors, readings)
        })
        .await
        {
            Ok(taken) => taken,
            Err(error) => {
                warn!(error = %error, "the sensors panicked; computing without them");
                return;
            }
        };
        self.sensors = Some(sensors);
        let hour = sensors::local_hour(SystemTime::now());
        self.memory_budget = preferences::memory_budget(&self.preferences, &readings);
        self.set_suspended(preferences::suspension(&self.preferences, &readings, hour)).await;
    }

    async fn set_suspended(&mut self, suspended: Option<Suspend>) {
        if suspended == self.suspended {
            return;
        }
        // A reason that changes in degree only (the CPU load) is not news.
        let kind = |s: &Option<Suspend>| s.as_ref().map(std::mem::discriminant);
        let news = kind(&suspended) != kind(&self.suspended);
        self.suspended = suspended;
        if !news {
            return;
        }
        match &self.suspended {
            Some(reason) => info!("computing suspended: {reason}"),
            None => info!("computing resumed"),
        }
        self.apply_gate();
        let text = self.suspended.as_ref().map(ToString::to_string).unwrap_or_default();
        if let Err(error) = self.journal.set_setting("suspended", &text).await {
            warn!(error = %error, "cannot journal the suspension");
        }
    }

    fn apply_gate(&self) {
        if self.computing() {
            self.gate.resume();
        } else {
            self.gate.pause();
        }
    }

    pub(super) fn preferences_path(&self) -> std::path::PathBuf {
        self.config.state_dir.join(preferences::FILE_NAME)
    }
}
