//! [`Process`]: a child process whose stderr goes to a log file, killed (and
//! reaped) when dropped. When the test is panicking, drop prints the tail of
//! the log so that the failure shows what the process was doing.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::Duration;

/// Lines of a log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// How long a process may take to exit after SIGTERM before it is killed and
/// the test fails.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(20);

/// A running child process of the test.
#[derive(Debug)]
pub struct Process {
    /// What it is, for messages ("quorum-server", "quorum-worker worker-a").
    label: String,
    /// `None` once it has been killed or has exited and been reaped.
    child: Option<Child>,
    /// Where its stderr goes.
    log_path: PathBuf,
}

impl Process {
    pub fn new(label: String, child: Child, log_path: PathBuf) -> Process {
        Process { label, child: Some(child), log_path }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process runs (it has not exited, nor been killed or
    /// stopped by the test).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(child) => matches!(child.try_wait(), Ok(None)),
        }
    }

    /// SIGKILL, then reap it. Does nothing if it already ended.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error means it already exited; wait() reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for it to exit (killing it and panicking if it does
    /// not within a generous timeout). Returns its exit status.
    ///
    /// Async so that the test's own gRPC connections keep being served while
    /// the process shuts down (a graceful shutdown talks to its clients).
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap_or_else(|| panic!("{} was already stopped", self.label));
        let pid = libc::pid_t::try_from(child.id()).expect("pids fit in pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own
        // child, not yet reaped, so the id cannot have been reused.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "send SIGTERM to {}", self.label);
        let mut waiter = tokio::task::spawn_blocking(move || child.wait());
        match tokio::time::timeout(TERMINATE_TIMEOUT, &mut waiter).await {
            Ok(status) => status.expect("the waiting thread does not panic").expect("wait for the child"),
            Err(_) => {
                // SAFETY: as above; the child is still unreaped (the waiter
                // has not returned), so the pid is still ours.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = waiter.await;
                panic!("{} did not exit within {TERMINATE_TIMEOUT:?} of SIGTERM\n{}", self.label, self.log_tail());
            }
        }
    }

    /// The last lines of the log, with a heading, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        format!(
            "--- last {} lines of {} ({}) ---\n{}\n--- end of {} ---",
            tail.len(),
            self.label,
            self.log_path.display(),
            tail.join("\n"),
            self.label
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}
