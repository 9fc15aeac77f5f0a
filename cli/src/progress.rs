//! Progress of long commands (`quorum wait`, `quorum submit`, `quorum demo`)
//! on stderr, never on stdout (that is for data): an indicatif bar on a
//! terminal, a plain line per tenth otherwise, or JSON Lines events for
//! scripts (`--progress json`, the default with `--json` off a terminal).
//!
//! An event: `{"event":"progress","command":"wait","project":"p",
//! "done":120,"total":200,"message":"3 results in progress"}`, and one with
//! `"event":"finished"` at the end.

use std::io::{IsTerminal as _, Write as _};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// How progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal; otherwise JSON events with --json, lines without.
    #[default]
    Auto,
    /// A bar, redrawn in place.
    Bar,
    /// A line at each tenth of the way.
    Lines,
    /// One JSON object per line per change.
    Json,
    /// Nothing.
    Off,
}

impl ProgressMode {
    /// What `Auto` means here: a bar when stderr is a terminal.
    pub fn resolve(self, json: bool) -> ProgressMode {
        match self {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto if json => ProgressMode::Json,
            ProgressMode::Auto => ProgressMode::Lines,
            other => other,
        }
    }
}

#[derive(Serialize)]
struct Event<'a> {
    event: &'a str,
    command: &'a str,
    project: &'a str,
    done: u64,
    total: u64,
    message: &'a str,
}

/// The progress of one command on one project.
pub struct Progress {
    mode: ProgressMode,
    command: &'static str,
    project: String,
    /// What `done` counts, for lines: "work units ended".
    unit: &'static str,
    bar: Option<ProgressBar>,
    /// The last (done, total, tenth) shown, to show changes only.
    last: Option<(u64, u64, u64)>,
}

impl Progress {
    /// `mode` already resolved ([`ProgressMode::resolve`]).
    pub fn new(mode: ProgressMode, command: &'static str, project: &str, unit: &'static str) -> Progress {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                .expect("a valid template")
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(format!("{project}: {unit}"));
            bar
        });
        Progress { mode, command, project: project.to_owned(), unit, bar, last: None }
    }

    /// `done` of `total`, with a short `message` ("3 results in progress").
    pub fn update(&mut self, done: u64, total: u64, message: &str) {
        let tenth = done.saturating_mul(10) / total.max(1);
        let changed = match self.mode {
            ProgressMode::Lines => {
                self.last.is_none_or(|(_, last_total, last_tenth)| last_tenth != tenth || last_total != total)
            }
            _ => self.last.is_none_or(|(last_done, last_total, _)| (last_done, last_total) != (done, total)),
        };
        if !changed {
            return;
        }
        self.last = Some((done, total, tenth));
        match self.mode {
            ProgressMode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.set_length(total);
                    bar.set_position(done);
                    bar.set_message(message.to_owned());
                }
            }
            ProgressMode::Lines => eprintln!("{}: {done}/{total} {}, {message}", self.project, self.unit),
            ProgressMode::Json => self.event("progress", done, total, message),
            ProgressMode::Auto | ProgressMode::Off => {}
        }
    }

    /// The end: the bar stays as it was drawn last; a final event for scripts.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
        if self.mode == ProgressMode::Json {
            let (done, total, _) = self.last.unwrap_or_default();
            self.event("finished", done, total, "");
        }
    }

    fn event(&self, event: &str, done: u64, total: u64, message: &str) {
        let event = Event { event, command: self.command, project: &self.project, done, total, message };
        let line = serde_json::to_string(&event).expect("an event is JSON");
        // Progress must never fail the command: a closed stderr loses it.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}
