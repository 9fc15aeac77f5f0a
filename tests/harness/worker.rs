//! [`Worker`]: a real `quorum-worker` process pointed at a server.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::binaries;
use crate::process::Process;
use crate::server::unused_path;

/// Cap of the worker's retry backoff, small so that tests move quickly.
pub const MAX_BACKOFF_MS: u64 = 300;

/// A running volunteer worker, killed when dropped.
#[derive(Debug)]
pub struct Worker {
    process: Process,
    /// The host name it registers with: the state directory's file name.
    name: String,
    state_dir: PathBuf,
}

impl Worker {
    /// Starts `quorum-worker --server URL --state-dir STATE_DIR --cpus N
    /// --name NAME --max-backoff-ms 300`, where NAME is the state directory's
    /// file name; stderr goes to `STATE_DIR.log` next to it.
    pub fn spawn(server_url: &str, state_dir: &Path, cpus: u32) -> Worker {
        Worker::spawn_with(&[server_url], state_dir, cpus, &[])
    }

    /// As [`Worker::spawn`], attached to every server of `servers` (each
    /// `URL` or `URL,share=N`, or a coordinator group's addresses
    /// `URL,URL[,...][,share=N]`), with `extra` flags.
    pub fn spawn_with(servers: &[&str], state_dir: &Path, cpus: u32, extra: &[&str]) -> Worker {
        let name = state_dir
            .file_name()
            .and_then(|name| name.to_str())
            .expect("the state directory has a UTF-8 file name")
            .to_owned();
        let parent = state_dir.parent().expect("the state directory has a parent");
        let mut command = Command::new(binaries::path(binaries::WORKER));
        for server in servers {
            command.arg("--server").arg(server);
        }
        command.arg("--state-dir").arg(state_dir).args(extra);
        Worker::launch(command, parent, name, state_dir.to_path_buf(), cpus)
    }

    /// As [`Worker::spawn`] without `--state-dir`, started in `cwd` with
    /// `HOME=home` (and no XDG_DATA_HOME nor QUORUM_WORKER_STATE): the worker
    /// uses its per-user default, `home/.local/share/quorum-worker`. Its log
    /// is `home/NAME.log`.
    pub fn spawn_in_home(server_url: &str, home: &Path, cwd: &Path, name: &str) -> Worker {
        let mut command = Command::new(binaries::path(binaries::WORKER));
        command
            .arg("--server")
            .arg(server_url)
            .current_dir(cwd)
            .env("HOME", home)
            .env_remove("XDG_DATA_HOME")
            .env_remove("QUORUM_WORKER_STATE");
        Worker::launch(command, home, name.to_owned(), home.join(".local/share/quorum-worker"), 1)
    }

    /// Adds the flags every test worker has (`--cpus`, `--name`, a small
    /// backoff), logs to `log_dir/NAME.log` and starts it.
    fn launch(mut command: Command, log_dir: &Path, name: String, state_dir: PathBuf, cpus: u32) -> Worker {
        let log_path = unused_path(log_dir, &name, "log");
        let log = std::fs::File::create(&log_path).expect("create the worker log");
        // No batteries unless a test gives its own (--power-supply-dir): the
        // machine running the tests must not suspend them.
        let no_power_supply = unused_path(log_dir, &name, "no-power-supply");
        let child = command
            .env("QUORUM_POWER_SUPPLY_DIR", no_power_supply)
            .arg("--cpus")
            .arg(cpus.to_string())
            .arg("--name")
            .arg(&name)
            .arg("--max-backoff-ms")
            .arg(MAX_BACKOFF_MS.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("share the worker log"))
            .stderr(log)
            .spawn()
            .expect("spawn quorum-worker");
        Worker { process: Process::new(format!("quorum-worker {name}"), child, log_path), name, state_dir }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Runs `quorum-worker COMMAND --state-dir STATE_DIR` (status, pause,
    /// resume) beside the worker; returns its stdout, panicking on failure.
    pub async fn command(&self, command: &str) -> String {
        worker_command(command, &self.state_dir).await
    }

    /// As [`Worker::command`], returning the failure instead of panicking.
    pub async fn try_command(&self, command: &str) -> Result<String, String> {
        try_worker_command(command, &self.state_dir).await
    }

    /// The host name it registered with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The worker's log (stderr) so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// True while the worker process runs (it has not crashed or exited).
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// SIGKILL: the worker dies holding whatever it was computing.
    pub fn kill_9(&mut self) {
        self.process.kill();
    }

    /// SIGTERM, then waits for it to exit; returns its exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.process.terminate().await
    }
}

/// Runs `quorum-worker COMMAND --state-dir STATE_DIR`; returns its stdout,
/// panicking with its stderr if it fails.
pub async fn worker_command(command: &str, state_dir: &Path) -> String {
    try_worker_command(command, state_dir).await.unwrap_or_else(|error| panic!("{error}"))
}

/// Runs `quorum-worker COMMAND --state-dir STATE_DIR` (COMMAND split at
/// spaces: `abort 7`); its stdout, or why it failed.
pub async fn try_worker_command(command: &str, state_dir: &Path) -> Result<String, String> {
    let output = tokio::process::Command::new(binaries::path(binaries::WORKER))
        .args(command.split(' '))
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .await
        .expect("run quorum-worker");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "quorum-worker {command} failed: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Result ids listed under `state` ("running", "queued", "to report", ...) by
/// `quorum-worker status`.
pub fn ids_in_state(status: &str, state: &str) -> BTreeSet<i64> {
    status
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix(state))
        .filter_map(|rest| rest.trim_start().strip_prefix("result "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Result ids that have a checkpoint file in a worker's state directory.
pub fn checkpointed(state_dir: &Path) -> BTreeSet<i64> {
    let Ok(servers) = std::fs::read_dir(state_dir.join("checkpoints")) else {
        return BTreeSet::new();
    };
    servers
        .flatten()
        .flat_map(|server| std::fs::read_dir(server.path()).into_iter().flatten().flatten())
        .filter(|task| task.path().join("state").is_file())
        .filter_map(|task| task.file_name().to_str()?.parse().ok())
        .collect()
}
