//! The coordinator under test: the real `quorum-server` binary started as a
//! child process on `127.0.0.1:0` with a fresh SQLite file in a temporary
//! folder, and what `/proc` says about it (CPU time, peak resident memory).
//!
//! The server is started with no flag but `--listen` and `--db`, so it runs
//! with its shipped defaults (WAL, `synchronous=FULL`). Its log goes to
//! `server.log` in the temporary folder; the last lines are shown on failure.
//! Its first-start admin token (`quorum.db.admin-token`) authorises the
//! benchmark's `Projects` calls ([`Coordinator::projects`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use quorum_proto::v1::projects_client::ProjectsClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The line the server prints on stdout once bound, before the address.
const LISTENING_PREFIX: &str = "quorum-server listening on ";
/// How long the server may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Adds the admin token to every `Projects` call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert(quorum_proto::AUTHORIZATION, self.0.clone());
        Ok(request)
    }
}

/// A `Projects` client calling with the coordinator's admin token.
pub type ProjectsApi = ProjectsClient<InterceptedService<Channel, Bearer>>;

/// A running `quorum-server`, killed if dropped.
pub struct Coordinator {
    child: Child,
    pid: u32,
    /// Kept open: the server writes to stdout, and a closed pipe would fail it.
    _stdout: BufReader<ChildStdout>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `authorization: Bearer <admin token>`.
    admin: MetadataValue<Ascii>,
    /// The admin token itself (for the `quorum` CLI).
    pub token: String,
    log: PathBuf,
    /// The SQLite file.
    db: PathBuf,
    /// Holds the database and the log; removed on drop.
    _dir: tempfile::TempDir,
}

impl Coordinator {
    /// Starts the `quorum-server` found next to this executable.
    pub async fn start() -> anyhow::Result<Coordinator> {
        Coordinator::start_with(&[]).await
    }

    /// As [`Coordinator::start`], with `extra` flags.
    pub async fn start_with(extra: &[&str]) -> anyhow::Result<Coordinator> {
        Coordinator::start_on(None, extra).await
    }

    /// As [`Coordinator::start_with`], on the PostgreSQL database at
    /// `postgres` (a `postgres://` URL; an empty database, or one a run
    /// left, which then holds its projects) instead of a new SQLite file.
    pub async fn start_on(postgres: Option<&str>, extra: &[&str]) -> anyhow::Result<Coordinator> {
        Coordinator::start_inner(postgres, None, extra).await
    }

    /// Another coordinator of `first`'s PostgreSQL database `postgres` (its
    /// admin token is `first`'s: the database has it already).
    pub async fn start_peer(postgres: &str, first: &Coordinator, extra: &[&str]) -> anyhow::Result<Coordinator> {
        Coordinator::start_inner(Some(postgres), Some(&first.token), extra).await
    }

    async fn start_inner(
        postgres: Option<&str>,
        known_token: Option<&str>,
        extra: &[&str],
    ) -> anyhow::Result<Coordinator> {
        let program = server_binary()?;
        let dir =
            tempfile::Builder::new().prefix("quorum-bench-").tempdir().context("cannot create a temporary folder")?;
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let db = dir.path().join("quorum.db");
        let mut command = Command::new(&program);
        command.arg("--listen").arg("127.0.0.1:0");
        let token_file = match postgres {
            Some(url) => {
                command.arg("--db").arg(url).arg("--data-dir").arg(dir.path());
                dir.path().join("quorum.admin-token")
            }
            None => {
                command.arg("--db").arg(&db);
                dir.path().join("quorum.db.admin-token")
            }
        };
        let mut child = command
            .args(extra)
            // The log is a file read by people: no colour codes.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = child.id().context("quorum-server exited at once")?;
        let stdout = child.stdout.take().context("the server's stdout is piped")?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(STARTUP_TIMEOUT, stdout.read_line(&mut line))
            .await
            .map_err(|_| anyhow::anyhow!("quorum-server did not print its address within {STARTUP_TIMEOUT:?}"))?
            .context("cannot read quorum-server's stdout")?;
        anyhow::ensure!(read > 0, "quorum-server closed its stdout before listening:\n{}", log_tail(&log));
        let address = line
            .trim()
            .strip_prefix(LISTENING_PREFIX)
            .with_context(|| {
                format!("quorum-server printed {:?} instead of \"{LISTENING_PREFIX}ADDRESS\"", line.trim())
            })?
            .to_owned();
        // Written before the address is announced.
        let token = match known_token {
            Some(token) => token.to_owned(),
            None => std::fs::read_to_string(&token_file)
                .with_context(|| format!("cannot read the admin token in {}", token_file.display()))?,
        };
        let admin = format!("Bearer {}", token.trim()).parse().context("the admin token is not valid metadata")?;
        Ok(Coordinator {
            child,
            pid,
            _stdout: stdout,
            url: format!("http://{address}"),
            admin,
            token: token.trim().to_owned(),
            log,
            db,
            _dir: dir,
        })
    }

    /// The coordinator's SQLite file.
    pub fn db_path(&self) -> PathBuf {
        self.db.clone()
    }

    /// A `Projects` client on `channel` with the admin token.
    pub fn projects(&self, channel: Channel) -> ProjectsApi {
        ProjectsClient::with_interceptor(channel, Bearer(self.admin.clone()))
    }

    /// User plus system CPU seconds used so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(&format!("/proc/{}/stat", self.pid))
    }

    /// Peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> anyhow::Result<u64> {
        peak_rss_bytes(self.pid)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails, with the end of the server's log, if the server has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait().context("cannot check on quorum-server")? {
            None => Ok(()),
            Some(status) => Err(anyhow::anyhow!("quorum-server exited ({status}):\n{}", log_tail(&self.log))),
        }
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Sends SIGTERM and waits for the exit; kills after [`STOP_GRACE`].
    pub async fn stop(mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = libc::pid_t::try_from(self.pid).expect("a Linux pid fits in pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // own child, which has not been reaped (try_wait above saw it running).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        if tokio::time::timeout(STOP_GRACE, self.child.wait()).await.is_err() {
            tracing::warn!("quorum-server did not stop after SIGTERM; killing it");
            let _ = self.child.kill().await;
        }
    }
}

/// The `quorum-server` executable next to this one.
fn server_binary() -> anyhow::Result<PathBuf> {
    sibling_binary("quorum-server")
}

/// The executable `name` next to this one (the `quorum-bench` executable).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the quorum-bench executable")?;
    let folder = exe.parent().context("the quorum-bench executable has no parent folder")?;
    let path = folder.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        path.is_file(),
        "cannot find {name} next to {}: build them with \
         `cargo build --release -p quorum-bench -p quorum-server -p quorum-worker`",
        exe.display()
    );
    Ok(path)
}

/// Peak resident memory so far (`VmHWM`) of process `pid`, in bytes.
pub fn peak_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).context("no VmHWM in /proc/PID/status")?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("cannot parse {line:?}"))?;
    Ok(kib * 1024)
}

/// User plus system CPU seconds of the process whose `/proc/PID/stat` is at `path`.
pub fn cpu_seconds(path: &str) -> anyhow::Result<f64> {
    Ok(ProcStat::read(path)?.own_ticks as f64 / clock_ticks_per_second())
}

/// The PostgreSQL server of the database at `url`, when it runs on this
/// machine and its data directory can be read: its postmaster's pid (from
/// `postmaster.pid`), to read its CPU. `None` otherwise (another machine,
/// a role that may not see the data directory).
pub async fn local_postgres_server(url: &str) -> Option<u32> {
    use sqlx::Connection as _;
    let mut connection = sqlx::PgConnection::connect(url).await.ok()?;
    let directory: String = sqlx::query_scalar("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
        .fetch_one(&mut connection)
        .await
        .ok()?;
    let _ = connection.close().await;
    let pid_file = std::fs::read_to_string(Path::new(&directory).join("postmaster.pid")).ok()?;
    let pid: u32 = pid_file.lines().next()?.trim().parse().ok()?;
    std::fs::metadata(format!("/proc/{pid}/stat")).ok().map(|_| pid)
}

/// CPU seconds (user + system) a PostgreSQL server has used so far: its
/// postmaster's own, its children's that have ended (the backends of closed
/// connections, reaped by it) and its live children's.
pub fn postgres_server_cpu_seconds(postmaster: u32) -> anyhow::Result<f64> {
    let server = ProcStat::read(&format!("/proc/{postmaster}/stat"))?;
    let mut total = server.own_ticks + server.children_ticks;
    for entry in std::fs::read_dir("/proc").context("cannot read /proc")? {
        let name = entry.context("cannot read /proc")?.file_name();
        let Some(pid) = name.to_str().filter(|name| name.bytes().all(|b| b.is_ascii_digit())) else { continue };
        // A process may end between the listing and the read.
        if let Ok(process) = ProcStat::read(&format!("/proc/{pid}/stat"))
            && process.parent == postmaster
        {
            total += process.own_ticks;
        }
    }
    Ok(total as f64 / clock_ticks_per_second())
}

/// What the bench reads of a `/proc/PID/stat`, times in clock ticks.
struct ProcStat {
    parent: u32,
    /// User plus system time of the process itself.
    own_ticks: u64,
    /// User plus system time of its children it has waited for.
    children_ticks: u64,
}

impl ProcStat {
    fn read(path: &str) -> anyhow::Result<ProcStat> {
        let stat = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
        // The command name (field 2) is in parentheses and may hold spaces;
        // the fields after the last ')' start with field 3 (state), so ppid
        // (field 4) is the 2nd of them, utime, stime, cutime and cstime
        // (fields 14-17) the 12th to 15th.
        let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc/PID/stat")?;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |index: usize| -> anyhow::Result<u64> {
            fields.get(index).context("short /proc/PID/stat")?.parse().context("malformed /proc/PID/stat")
        };
        Ok(ProcStat {
            parent: u32::try_from(field(1)?).context("malformed /proc/PID/stat")?,
            own_ticks: field(11)? + field(12)?,
            children_ticks: field(13)? + field(14)?,
        })
    }
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the times in `/proc/PID/stat`.
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The last error lines of the log, or its last lines when it has none.
pub(crate) fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let errors: Vec<&str> = text.lines().filter(|line| line.contains("ERROR")).collect();
    let lines: Vec<&str> = if errors.is_empty() { text.lines().collect() } else { errors };
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu_time() {
        let seconds = cpu_seconds("/proc/self/stat").expect("/proc/self/stat is readable");
        assert!(seconds >= 0.0);
    }
}
