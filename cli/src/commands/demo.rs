//! `quorum demo`: the whole system on one machine in one command.
//!
//! Starts `quorum-server` (found next to this executable) on a free local
//! port, submits an example project (embedded in the binary, so the demo runs
//! from any folder), starts two `quorum-worker` processes, waits for the
//! project, prints its status, its validated results and their total checked
//! against the known answer, then stops the workers and the server with
//! SIGTERM. Children still running when the demo fails are killed on drop.
//!
//! The demo submits with the coordinator's first-start admin token, which
//! the server writes to `quorum.db.admin-token` (mode 0600) in the folder.
//!
//! The demo folder holds `quorum.db`, `server.log`, `worker-N/` (state) and
//! `worker-N.log`, and the example's files in `example/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use clap::ValueEnum;
use quorum_proto::v1;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::Context;
use crate::client::Coordinator;
use crate::manifest::Manifest;
use crate::output;
use crate::progress::{Progress, ProgressMode};

/// Workers the demo starts (a quorum of 2 needs two hosts).
const N_WORKERS: usize = 2;
/// How long the server may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a child may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Where a new coordinator writes its first admin token (beside `quorum.db`).
const ADMIN_TOKEN_FILE: &str = "quorum.db.admin-token";
/// The line the server prints on stdout once bound, before the address.
const LISTENING_PREFIX: &str = "quorum-server listening on ";

/// The example projects built into the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Example {
    /// Counts the primes below 10,000,000 in 200 work units (integer code).
    Primes,
    /// Computes pi as an integral in 100 work units (floating point).
    Integral,
}

impl Example {
    /// The manifest, the app's file name (as the manifest names it) and text.
    fn files(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Example::Primes => (
                include_str!("../../../examples/primes/project.toml"),
                "primes.wat",
                include_str!("../../../examples/primes/primes.wat"),
            ),
            Example::Integral => (
                include_str!("../../../examples/integral/project.toml"),
                "integral.wat",
                include_str!("../../../examples/integral/integral.wat"),
            ),
        }
    }

    /// Sums the outputs and checks the total against the known answer; the
    /// returned line says both.
    fn check_total(self, results: &[v1::CanonicalResult]) -> anyhow::Result<String> {
        let outputs = results.iter().map(|result| {
            std::str::from_utf8(&result.output)
                .map(str::trim)
                .map_err(|_| anyhow::anyhow!("work unit {} has a non-UTF-8 output", result.work_unit_name))
        });
        match self {
            Example::Primes => {
                const EXPECTED: u64 = 664_579;
                let mut total: u64 = 0;
                for output in outputs {
                    let output = output?;
                    total += output.parse::<u64>().with_context(|| format!("output {output:?} is not a count"))?;
                }
                anyhow::ensure!(total == EXPECTED, "total primes below 10,000,000 = {total}, but there are {EXPECTED}");
                Ok(format!("total primes below 10,000,000 = {total} (known answer {EXPECTED}: checked)"))
            }
            Example::Integral => {
                // Sum exactly in units of 1e-15, the outputs' precision.
                const PI_E15: i128 = 3_141_592_653_589_793;
                let mut total: i128 = 0;
                for output in outputs {
                    total += parse_fixed_15(output?)?;
                }
                let text = format!("{}.{:015}", total / 1_000_000_000_000_000, total % 1_000_000_000_000_000);
                anyhow::ensure!(
                    (total - PI_E15).abs() <= 100,
                    "integral of 4/(1+x^2) over [0, 1] = {text}, but pi = 3.141592653589793"
                );
                Ok(format!("integral of 4/(1+x^2) over [0, 1] = {text} (pi = 3.141592653589793: checked to 1e-13)"))
            }
        }
    }
}

/// Parses a non-negative decimal with exactly 15 digits after the point into
/// units of 1e-15.
fn parse_fixed_15(text: &str) -> anyhow::Result<i128> {
    let invalid = || anyhow::anyhow!("output {text:?} is not a decimal with 15 digits after the point");
    let (integer, fraction) = text.split_once('.').ok_or_else(invalid)?;
    if fraction.len() != 15 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let integer: i128 = integer.parse().map_err(|_| invalid())?;
    let fraction: i128 = fraction.parse().map_err(|_| invalid())?;
    Ok(integer * 1_000_000_000_000_000 + fraction)
}

pub async fn run(ctx: &Context, dir: &Path, example: Example, timeout: Duration) -> anyhow::Result<()> {
    let binaries = Binaries::find()?;
    prepare_dir(dir)?;
    let manifest_path = write_example(dir, example)?;
    // Everything local is checked before any process starts.
    let project = Manifest::read(&manifest_path).and_then(Manifest::load_project)?;
    let project_name = project.manifest.name().to_string();

    let (mut server, _server_stdout, address) = start_server(&binaries.server, dir).await?;
    let mut workers = Vec::new();
    let outcome = async {
        let url = format!("http://{address}");
        println!("quorum demo: coordinator at {url}, files in {}", dir.display());
        // The coordinator's first-start admin token, written beside its database.
        let token = crate::token::read_file(&dir.join(ADMIN_TOKEN_FILE))?;
        let coordinator = Coordinator::connect(&url, Some(&token), None).await?;
        let submitted = super::submit::submit(&coordinator, project, None, ctx.progress).await?;
        println!(
            "submitted project '{}' (id {}) with {} work units",
            submitted.project, submitted.project_id, submitted.n_work_units
        );
        for number in 1..=N_WORKERS {
            workers.push(start_worker(&binaries.worker, dir, number, &url)?);
        }
        println!("started {N_WORKERS} workers (logs in {}/worker-N.log)", dir.display());
        let status =
            wait_with_progress(&coordinator, &project_name, timeout, &mut server, &mut workers, ctx.progress).await?;
        let results = super::results::fetch_all(&coordinator, &project_name).await?;

        let mut out = super::stdout();
        writeln!(out)?;
        output::status_table(std::slice::from_ref(&status)).write(&mut out)?;
        writeln!(out)?;
        output::results_table(&results).write(&mut out)?;
        writeln!(out)?;
        out.flush()?;
        anyhow::ensure!(
            status.work_units_failed == 0 && results.len() as u64 == status.work_units_total,
            "{} of {} work units have a canonical result ({} failed)",
            results.len(),
            status.work_units_total,
            status.work_units_failed
        );
        println!("{}", example.check_total(&results)?);
        anyhow::Ok(())
    }
    .await;

    for worker in workers {
        worker.stop().await;
    }
    server.stop().await;
    if outcome.is_ok() {
        println!("stopped the workers and the coordinator");
    }
    outcome
}

/// The server and worker executables next to this one.
struct Binaries {
    server: PathBuf,
    worker: PathBuf,
}

impl Binaries {
    fn find() -> anyhow::Result<Binaries> {
        let exe = std::env::current_exe().context("cannot locate the quorum executable")?;
        let folder = exe.parent().context("the quorum executable has no parent folder")?;
        let find = |name: &str| {
            let path = folder.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
            if path.is_file() {
                Ok(path)
            } else {
                Err(anyhow::anyhow!(
                    "cannot find {name} next to {}: build every binary with `cargo build --release`, \
                     then run target/release/quorum demo",
                    exe.display()
                ))
            }
        };
        Ok(Binaries { server: find("quorum-server")?, worker: find("quorum-worker")? })
    }
}

/// Creates the demo folder and wipes what an earlier demo left there (only
/// the files the demo itself makes).
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for file in ["quorum.db", "quorum.db-wal", "quorum.db-shm", "quorum.db-journal", ADMIN_TOKEN_FILE] {
        let path = dir.join(file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    for number in 1..=N_WORKERS {
        let path = dir.join(format!("worker-{number}"));
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    Ok(())
}

/// Writes the embedded example into DIR/example/ and returns its manifest.
fn write_example(dir: &Path, example: Example) -> anyhow::Result<PathBuf> {
    let (manifest, app_name, app) = example.files();
    let folder = dir.join("example");
    std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let manifest_path = folder.join("project.toml");
    std::fs::write(&manifest_path, manifest).with_context(|| format!("cannot write {}", manifest_path.display()))?;
    let app_path = folder.join(app_name);
    std::fs::write(&app_path, app).with_context(|| format!("cannot write {}", app_path.display()))?;
    Ok(manifest_path)
}

/// A child process of the demo, killed if dropped while running.
struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: String, command: &mut Command, log: PathBuf) -> anyhow::Result<Process> {
        let child = command.kill_on_drop(true).spawn().with_context(|| format!("cannot start {name}"))?;
        Ok(Process { name, child, log })
    }

    /// Fails if the process has exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                Err(anyhow::anyhow!("{} exited early ({status}); see {}", self.name, self.log.display()))
            }
            Err(error) => Err(error).with_context(|| format!("cannot check on {}", self.name)),
        }
    }

    /// Sends SIGTERM and waits for the exit; kills after [`STOP_GRACE`].
    /// Problems are logged, not returned: stopping is best effort.
    async fn stop(mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Some(pid) = self.child.id() {
            // The `kill` command sends SIGTERM without unsafe code or an
            // extra dependency.
            let sent = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if !sent.is_ok_and(|status| status.success()) {
                tracing::warn!(process = %self.name, "cannot send SIGTERM; killing it");
            }
        }
        match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(Ok(status)) => tracing::info!(process = %self.name, %status, "stopped"),
            Ok(Err(error)) => tracing::warn!(process = %self.name, %error, "cannot wait for it"),
            Err(_) => {
                tracing::warn!(process = %self.name, "did not stop after SIGTERM; killing it");
                if let Err(error) = self.child.kill().await {
                    tracing::warn!(process = %self.name, %error, "cannot kill it");
                }
            }
        }
    }
}

/// Starts the server on a free port and reads the address it prints. The
/// returned stdout must be kept open for as long as the server runs.
async fn start_server(program: &Path, dir: &Path) -> anyhow::Result<(Process, BufReader<ChildStdout>, String)> {
    let log = dir.join("server.log");
    let log_file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut process = Process::spawn(
        "quorum-server".to_owned(),
        Command::new(program)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--db")
            .arg(dir.join("quorum.db"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file),
        log.clone(),
    )?;
    let stdout = process.child.stdout.take().context("the server's stdout is piped")?;
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    let read = tokio::time::timeout(STARTUP_TIMEOUT, stdout.read_line(&mut line))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "quorum-server did not print its address within {}; see {}",
                humantime::format_duration(STARTUP_TIMEOUT),
                log.display()
            )
        })?
        .context("cannot read quorum-server's stdout")?;
    if read == 0 {
        process.check_running()?;
        anyhow::bail!("quorum-server closed its stdout before listening; see {}", log.display());
    }
    let address = line
        .trim()
        .strip_prefix(LISTENING_PREFIX)
        .with_context(|| format!("quorum-server printed {:?} instead of \"{LISTENING_PREFIX}ADDRESS\"", line.trim()))?
        .to_owned();
    Ok((process, stdout, address))
}

/// Starts worker `number` with one CPU, its state in DIR/worker-N and its log
/// in DIR/worker-N.log.
fn start_worker(program: &Path, dir: &Path, number: usize, url: &str) -> anyhow::Result<Process> {
    let log = dir.join(format!("worker-{number}.log"));
    let log_file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let stderr = log_file.try_clone().with_context(|| format!("cannot share {}", log.display()))?;
    Process::spawn(
        format!("quorum-worker {number}"),
        Command::new(program)
            .arg("--server")
            .arg(url)
            .arg("--state-dir")
            .arg(dir.join(format!("worker-{number}")))
            .arg("--cpus")
            .arg("1")
            .arg("--name")
            .arg(format!("demo-worker-{number}"))
            .arg("--max-backoff-ms")
            .arg("2000")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr),
        log,
    )
}

/// Waits for the project, showing progress on stderr and failing as soon as
/// a child process dies.
async fn wait_with_progress(
    coordinator: &Coordinator,
    project: &str,
    timeout: Duration,
    server: &mut Process,
    workers: &mut [Process],
    progress: ProgressMode,
) -> anyhow::Result<v1::ProjectStatus> {
    let mut shown = Progress::new(progress, "demo", project, "work units ended");
    let status = super::wait::wait_until_ended(coordinator, project, Some(timeout), Duration::from_secs(1), |status| {
        server.check_running()?;
        for worker in workers.iter_mut() {
            worker.check_running()?;
        }
        shown.update(
            status.work_units_done + status.work_units_failed,
            status.work_units_total,
            &format!("{} results in progress", status.results_in_progress),
        );
        Ok(())
    })
    .await;
    shown.finish();
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(output: &str) -> v1::CanonicalResult {
        v1::CanonicalResult { output: output.as_bytes().to_vec(), ..Default::default() }
    }

    #[test]
    fn the_embedded_examples_parse() {
        for example in [Example::Primes, Example::Integral] {
            let dir = tempfile::tempdir().expect("temp dir");
            let manifest = write_example(dir.path(), example).expect("write the example");
            let project =
                Manifest::read(&manifest).and_then(Manifest::load_project).expect("the embedded example is valid");
            assert!(!project.work_units.is_empty());
        }
    }

    #[test]
    fn totals_are_checked() {
        let primes: Vec<_> = ["664000\n", "579\n"].into_iter().map(canonical).collect();
        assert_eq!(
            Example::Primes.check_total(&primes).expect("the right total"),
            "total primes below 10,000,000 = 664579 (known answer 664579: checked)"
        );
        let wrong: Vec<_> = ["664000\n", "578\n"].into_iter().map(canonical).collect();
        assert!(Example::Primes.check_total(&wrong).is_err());

        let integral: Vec<_> = ["3.000000000000000\n", "0.141592653589793\n"].into_iter().map(canonical).collect();
        assert_eq!(
            Example::Integral.check_total(&integral).expect("pi"),
            "integral of 4/(1+x^2) over [0, 1] = 3.141592653589793 (pi = 3.141592653589793: checked to 1e-13)"
        );
        let bad = vec![canonical("3.14\n")];
        assert!(Example::Integral.check_total(&bad).is_err());
    }

    #[test]
    fn prepare_dir_wipes_only_the_demo_state() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("quorum.db"), "old").expect("write");
        std::fs::create_dir_all(dir.path().join("worker-1/apps")).expect("create");
        std::fs::write(dir.path().join("notes.txt"), "keep").expect("write");
        prepare_dir(dir.path()).expect("prepare");
        assert!(!dir.path().join("quorum.db").exists());
        assert!(!dir.path().join("worker-1").exists());
        assert!(dir.path().join("notes.txt").exists());
    }
}
