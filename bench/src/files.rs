//! The `files` benchmark: input files through a real coordinator and real
//! workers, submitted with the real `quorum` CLI.
//!
//! - **locality**: `--files` files of `--file-mb` MiB, `--work-units` work
//!   units each using one of them (drawn at random with a fixed seed), quorum
//!   1, on `--workers` workers whose file cache holds `--cache-mb` MiB (fewer
//!   files than there are). Run twice: with locality scheduling (the workers
//!   list their cached files in their work requests) and without
//!   (`--no-locality`), counting the files each worker downloaded (its
//!   "downloaded input file" log lines). The figure is bytes downloaded per
//!   work unit, with against without.
//! - **big-input**: one work unit with one `--big-mb` MiB input file, on one
//!   worker: the peak resident memory (`VmHWM`) of the coordinator and of the
//!   worker, against the file's size, and the time to submit and to finish.
//! - **distribution**: one `--file-mb` MiB file shared by every work unit,
//!   `--workers` workers started at once, the coordinator's file upload
//!   capped at `--coordinator-mbps`. Run twice: client/server (every worker
//!   downloads by gRPC) and peer-to-peer (the coordinator seeds with
//!   `--share-files`, the workers share with `--share-files` capped at
//!   `--peer-mbps`). The figures: the bytes the coordinator sent in all (its
//!   `quorum_file_sent_bytes_total` metric), against the file's size, and
//!   when each worker had the file (its "downloaded input file" log line,
//!   read every 100 ms), the last of them against client/server's.
//!
//! The app is `bench/apps/first_bytes.wasm` (C, built with clang and
//! wasi-libc): it opens its input files, reads 8 bytes of each and their
//! size, so the time is the files', not the compute's.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::{RngExt as _, SeedableRng as _};
use serde::Serialize;
use tokio::process::{Child, Command};

use crate::coordinator::{self, Coordinator};

/// The app: prints the size and first bytes of each input file it is given.
const APP: &[u8] = include_bytes!("../apps/first_bytes.wasm");
/// The project submitted.
const PROJECT: &str = "bench-files";
/// How long a worker may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Options of the locality run.
#[derive(Debug, Clone)]
pub struct LocalityOptions {
    pub files: usize,
    pub file_mb: u64,
    pub work_units: usize,
    pub workers: usize,
    pub cache_mb: u64,
    pub timeout: Duration,
}

/// What one locality mode measured.
#[derive(Debug, Clone, Serialize)]
pub struct LocalityRun {
    pub locality: bool,
    pub downloads: u64,
    pub bytes_downloaded: u64,
    pub bytes_per_work_unit: f64,
    pub seconds: f64,
}

/// Both modes, from one run.
#[derive(Debug, Clone, Serialize)]
pub struct LocalityFigures {
    pub files: usize,
    pub file_mb: u64,
    pub work_units: usize,
    pub workers: usize,
    pub cache_mb: u64,
    pub with_locality: LocalityRun,
    pub without_locality: LocalityRun,
    /// Bytes per work unit without locality over with it.
    pub ratio: f64,
}

impl LocalityFigures {
    pub fn summary(&self) -> String {
        let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
        format!(
            "{} files of {} MiB, {} work units, {} workers with {} MiB caches: with locality {} downloads, \
             {:.1} MiB per work unit ({:.1} s); without {} downloads, {:.1} MiB per work unit ({:.1} s); {:.1}x less",
            self.files,
            self.file_mb,
            self.work_units,
            self.workers,
            self.cache_mb,
            self.with_locality.downloads,
            mib(self.with_locality.bytes_per_work_unit),
            self.with_locality.seconds,
            self.without_locality.downloads,
            mib(self.without_locality.bytes_per_work_unit),
            self.without_locality.seconds,
            self.ratio
        )
    }
}

/// Options of the big-input run.
#[derive(Debug, Clone)]
pub struct BigInputOptions {
    pub big_mb: u64,
    pub timeout: Duration,
}

/// What the big-input run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BigInputFigures {
    pub file_bytes: u64,
    pub submit_seconds: f64,
    pub run_seconds: f64,
    pub coordinator_peak_rss_bytes: u64,
    pub worker_peak_rss_bytes: u64,
}

impl BigInputFigures {
    pub fn summary(&self) -> String {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        format!(
            "one work unit with a {:.0} MiB input file: submitted in {:.1} s, done in {:.1} s; peak RSS: \
             coordinator {:.0} MiB, worker {:.0} MiB",
            mib(self.file_bytes),
            self.submit_seconds,
            self.run_seconds,
            mib(self.coordinator_peak_rss_bytes),
            mib(self.worker_peak_rss_bytes)
        )
    }
}

/// Writes `mib` MiB of seeded pseudo-random bytes to `path`, 1 MiB at a time.
fn write_random(path: &Path, mib: u64, seed: u64) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        rng.fill(chunk.as_mut_slice());
        file.write_all(&chunk)?;
    }
    file.flush()?;
    Ok(())
}

/// Writes the project: its manifest, the app, and one JSON line per work
/// unit naming its input file (`data`, at `files[i]`).
fn write_project(dir: &Path, files: &[PathBuf], units: &[usize], input_bytes: u64) -> anyhow::Result<PathBuf> {
    std::fs::write(dir.join("first_bytes.wasm"), APP)?;
    let lines: String = units
        .iter()
        .enumerate()
        .map(|(i, &file)| {
            let unit = serde_json::json!({"name": format!("wu-{i}"), "input": "", "files": {"data": files[file]}});
            format!("{unit}\n")
        })
        .collect();
    std::fs::write(dir.join("work_units.jsonl"), lines)?;
    let manifest = format!(
        "name = \"{PROJECT}\"\napp = \"first_bytes.wasm\"\nargs = [\"data\"]\n\
         [policy]\nmin_quorum = 1\ntarget_results = 1\n\
         [limits]\ninput_files = {input_bytes}\n\
         [work_units]\njsonl = \"work_units.jsonl\"\n"
    );
    let path = dir.join("project.toml");
    std::fs::write(&path, manifest)?;
    Ok(path)
}

/// Runs the `quorum` CLI against `coordinator`; fails with its stderr.
async fn quorum(coordinator: &Coordinator, args: &[&str]) -> anyhow::Result<String> {
    let program = coordinator::sibling_binary("quorum")?;
    let output = Command::new(&program)
        .arg("--server")
        .arg(&coordinator.url)
        .args(["--progress", "off"])
        .args(args)
        .env("QUORUM_TOKEN", &coordinator.token)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", program.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "quorum {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A running `quorum-worker`, its log in a file.
struct WorkerProcess {
    child: Child,
    log: PathBuf,
}

impl WorkerProcess {
    async fn start(url: &str, state_dir: &Path, extra: &[&str]) -> anyhow::Result<WorkerProcess> {
        let program = coordinator::sibling_binary("quorum-worker")?;
        let log = state_dir.with_extension("log");
        let log_file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(&program)
            .arg("--server")
            .arg(url)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--cpus", "1", "--max-backoff-ms", "300"])
            .args(extra)
            .env("NO_COLOR", "1")
            // No batteries on a benchmark machine, whatever /sys says.
            .env("QUORUM_POWER_SUPPLY_DIR", state_dir.with_extension("no-power-supply"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        Ok(WorkerProcess { child, log })
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM, then the exit (killed after [`STOP_GRACE`]); returns its log.
    async fn stop(mut self) -> String {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        if tokio::time::timeout(STOP_GRACE, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The sizes of the files a worker's log says it downloaded.
fn downloaded(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|line| line.contains("downloaded input file"))
        .filter_map(|line| line.split("size=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Submits the project and waits for it with `workers` workers started with `extra`.
async fn run_project(
    manifest: &Path,
    dir: &Path,
    workers: usize,
    extra: &[&str],
    timeout: Duration,
) -> anyhow::Result<(Coordinator, Vec<String>, f64)> {
    let coordinator = Coordinator::start().await?;
    quorum(&coordinator, &["submit", &manifest.display().to_string()]).await?;
    let started = Instant::now();
    let mut processes = Vec::new();
    for i in 0..workers {
        let state = dir.join(format!("worker-{i}"));
        processes.push(WorkerProcess::start(&coordinator.url, &state, extra).await?);
    }
    let wait = quorum(&coordinator, &["wait", PROJECT, "--timeout", &format!("{}s", timeout.as_secs())]).await;
    let seconds = started.elapsed().as_secs_f64();
    let mut logs = Vec::new();
    for process in processes {
        logs.push(process.stop().await);
    }
    wait.with_context(|| format!("the project did not finish; a worker's log:\n{}", logs[0]))?;
    Ok((coordinator, logs, seconds))
}

pub async fn locality(options: &LocalityOptions) -> anyhow::Result<LocalityFigures> {
    let dir = tempfile::Builder::new().prefix("quorum-bench-files-").tempdir()?;
    let files: Vec<PathBuf> = (0..options.files).map(|i| dir.path().join(format!("file-{i}.bin"))).collect();
    for (i, path) in files.iter().enumerate() {
        write_random(path, options.file_mb, i as u64)?;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let units: Vec<usize> = (0..options.work_units).map(|_| rng.random_range(0..options.files)).collect();
    let manifest = write_project(dir.path(), &files, &units, options.file_mb << 20)?;
    let cache = options.cache_mb.to_string();
    let mut runs = Vec::new();
    for locality in [true, false] {
        let run_dir = dir.path().join(if locality { "with" } else { "without" });
        std::fs::create_dir_all(&run_dir)?;
        let mut extra = vec!["--file-cache-mb", cache.as_str()];
        if !locality {
            extra.push("--no-locality");
        }
        let (coordinator, logs, seconds) =
            run_project(&manifest, &run_dir, options.workers, &extra, options.timeout).await?;
        coordinator.stop().await;
        let sizes: Vec<u64> = logs.iter().flat_map(|log| downloaded(log)).collect();
        let bytes: u64 = sizes.iter().sum();
        runs.push(LocalityRun {
            locality,
            downloads: sizes.len() as u64,
            bytes_downloaded: bytes,
            bytes_per_work_unit: bytes as f64 / options.work_units as f64,
            seconds,
        });
    }
    let without = runs.pop().expect("two runs");
    let with = runs.pop().expect("two runs");
    Ok(LocalityFigures {
        files: options.files,
        file_mb: options.file_mb,
        work_units: options.work_units,
        workers: options.workers,
        cache_mb: options.cache_mb,
        ratio: without.bytes_per_work_unit / with.bytes_per_work_unit.max(1.0),
        with_locality: with,
        without_locality: without,
    })
}

pub async fn big_input(options: &BigInputOptions) -> anyhow::Result<BigInputFigures> {
    let dir = tempfile::Builder::new().prefix("quorum-bench-files-").tempdir()?;
    let file = dir.path().join("big.bin");
    write_random(&file, options.big_mb, 7)?;
    let manifest = write_project(dir.path(), &[file], &[0], options.big_mb << 20)?;
    let coordinator = Coordinator::start().await?;
    let started = Instant::now();
    quorum(&coordinator, &["submit", &manifest.display().to_string()]).await?;
    let submit_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let worker = WorkerProcess::start(&coordinator.url, &dir.path().join("worker"), &[]).await?;
    quorum(&coordinator, &["wait", PROJECT, "--timeout", &format!("{}s", options.timeout.as_secs())]).await?;
    let run_seconds = started.elapsed().as_secs_f64();
    let worker_peak = coordinator::peak_rss_bytes(worker.pid().context("the worker exited")?)?;
    let coordinator_peak = coordinator.peak_rss_bytes()?;
    let output = quorum(&coordinator, &["results", PROJECT]).await?;
    anyhow::ensure!(output.contains(&format!("data {}", options.big_mb << 20)), "unexpected result: {output}");
    worker.stop().await;
    coordinator.stop().await;
    Ok(BigInputFigures {
        file_bytes: options.big_mb << 20,
        submit_seconds,
        run_seconds,
        coordinator_peak_rss_bytes: coordinator_peak,
        worker_peak_rss_bytes: worker_peak,
    })
}

/// Options of the distribution run.
#[derive(Debug, Clone)]
pub struct DistributionOptions {
    pub file_mb: u64,
    pub workers: usize,
    pub coordinator_mbps: u64,
    pub peer_mbps: u64,
    /// Run only the peer-to-peer mode (to try changes quickly; no ratio).
    pub only_p2p: bool,
    pub timeout: Duration,
}

/// What one distribution mode measured.
#[derive(Debug, Clone, Serialize)]
pub struct DistributionRun {
    pub peer_to_peer: bool,
    /// Bytes of the file the coordinator sent, gRPC and seed together.
    pub coordinator_sent_bytes: u64,
    /// The same, in file sizes.
    pub coordinator_sent_files: f64,
    /// Seconds from the workers' start until each had the file, sorted.
    pub seconds_each: Vec<f64>,
    /// The last of them.
    pub seconds_all: f64,
    /// Workers whose log says the file came from peers.
    pub from_peers: usize,
    /// Peers dropped from a fetch, in all the workers' logs (failures).
    pub peers_dropped: usize,
    /// Bytes the seed sent, as the workers' logs say, summed.
    pub logged_from_coordinator: u64,
}

/// Both modes, from one run.
#[derive(Debug, Clone, Serialize)]
pub struct DistributionFigures {
    pub file_mb: u64,
    pub workers: usize,
    pub coordinator_mbps: u64,
    pub peer_mbps: u64,
    /// `None` with `--only-p2p`.
    pub client_server: Option<DistributionRun>,
    pub peer_to_peer: DistributionRun,
    /// Peer-to-peer's time for every worker over client/server's.
    pub time_ratio: Option<f64>,
}

impl DistributionFigures {
    pub fn summary(&self) -> String {
        let run = |r: &DistributionRun| {
            format!(
                "coordinator sent {:.2}x the file, every worker had it after {:.1} s (median worker {:.1} s; \
                 {} from peers, {} peers dropped)",
                r.coordinator_sent_files,
                r.seconds_all,
                r.seconds_each.get(r.seconds_each.len() / 2).copied().unwrap_or(0.0),
                r.from_peers,
                r.peers_dropped
            )
        };
        format!(
            "one {} MiB file to {} workers, coordinator capped at {} Mbit/s, peers at {}: client/server: {}; \
             peer-to-peer: {}; time p2p/client-server {}",
            self.file_mb,
            self.workers,
            self.coordinator_mbps,
            self.peer_mbps,
            self.client_server.as_ref().map_or("not run".to_string(), run),
            run(&self.peer_to_peer),
            self.time_ratio.map_or("-".to_string(), |ratio| format!("{ratio:.2}"))
        )
    }
}

/// A free port on loopback (bound, then released for the coordinator).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The value of `quorum_file_sent_bytes_total` series, summed, from the
/// metrics endpoint on `port` (plain HTTP/1.0).
async fn file_sent_bytes(port: u16) -> anyhow::Result<u64> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with("quorum_file_sent_bytes_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

async fn distribute(
    options: &DistributionOptions,
    dir: &Path,
    manifest: &Path,
    p2p: bool,
) -> anyhow::Result<DistributionRun> {
    let metrics = free_port()?;
    let coordinator_mbps = options.coordinator_mbps.to_string();
    let metrics_addr = format!("127.0.0.1:{metrics}");
    let mut flags = vec!["--file-upload-mbps", coordinator_mbps.as_str(), "--metrics", metrics_addr.as_str()];
    if p2p {
        flags.extend(["--share-files", "--share-listen", "127.0.0.1:0"]);
    }
    let coordinator = Coordinator::start_with(&flags).await?;
    quorum(&coordinator, &["submit", &manifest.display().to_string()]).await?;
    let peer_mbps = options.peer_mbps.to_string();
    let mut extra = vec!["--buffer-low", "1", "--buffer-high", "1"];
    if p2p {
        extra.extend(["--share-files", "--share-listen", "127.0.0.1:0", "--share-upload-mbps", peer_mbps.as_str()]);
    }
    let started = Instant::now();
    let mut processes = Vec::new();
    for i in 0..options.workers {
        let state = dir.join(format!("worker-{i}"));
        processes.push(WorkerProcess::start(&coordinator.url, &state, &extra).await?);
    }
    // When each worker's log first says it has the file.
    let mut seconds: Vec<Option<f64>> = vec![None; processes.len()];
    let mut from_peers = 0;
    while seconds.iter().any(Option::is_none) {
        anyhow::ensure!(
            started.elapsed() < options.timeout,
            "not every worker had the file within {:?}; the last worker's log:\n{}",
            options.timeout,
            std::fs::read_to_string(&processes[processes.len() - 1].log).unwrap_or_default()
        );
        for (i, process) in processes.iter().enumerate() {
            if seconds[i].is_some() {
                continue;
            }
            let log = std::fs::read_to_string(&process.log).unwrap_or_default();
            if let Some(line) = log.lines().find(|line| line.contains("downloaded input file")) {
                seconds[i] = Some(started.elapsed().as_secs_f64());
                from_peers += usize::from(line.contains("from=peers"));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wait = quorum(&coordinator, &["wait", PROJECT, "--timeout", &format!("{}s", options.timeout.as_secs())]).await;
    let sent = file_sent_bytes(metrics).await;
    let mut peers_dropped = 0;
    let mut logged_from_coordinator = 0;
    for process in processes {
        let log = process.stop().await;
        peers_dropped += log.lines().filter(|line| line.contains("dropped a peer")).count();
        logged_from_coordinator += log
            .lines()
            .filter(|line| line.contains("downloaded input file"))
            .filter_map(|line| line.split("from_coordinator=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
            .sum::<u64>();
    }
    coordinator.stop().await;
    wait?;
    let sent = sent?;
    let mut seconds_each: Vec<f64> = seconds.into_iter().flatten().collect();
    seconds_each.sort_by(f64::total_cmp);
    Ok(DistributionRun {
        peer_to_peer: p2p,
        coordinator_sent_bytes: sent,
        coordinator_sent_files: sent as f64 / (options.file_mb << 20) as f64,
        seconds_all: seconds_each.last().copied().unwrap_or(0.0),
        seconds_each,
        from_peers,
        peers_dropped,
        logged_from_coordinator,
    })
}

pub async fn distribution(options: &DistributionOptions) -> anyhow::Result<DistributionFigures> {
    let dir = tempfile::Builder::new().prefix("quorum-bench-files-").tempdir()?;
    let file = dir.path().join("shared.bin");
    write_random(&file, options.file_mb, 11)?;
    // Three work units per worker, one held at a time: every worker gets one at the start.
    let units = vec![0; options.workers * 3];
    let manifest = write_project(dir.path(), &[file], &units, options.file_mb << 20)?;
    let run = |p2p: bool| {
        let run_dir = dir.path().join(if p2p { "p2p" } else { "client-server" });
        let manifest = manifest.clone();
        async move {
            std::fs::create_dir_all(&run_dir)?;
            distribute(options, &run_dir, &manifest, p2p).await
        }
    };
    let client_server = if options.only_p2p { None } else { Some(run(false).await?) };
    let peer_to_peer = run(true).await?;
    Ok(DistributionFigures {
        file_mb: options.file_mb,
        workers: options.workers,
        coordinator_mbps: options.coordinator_mbps,
        peer_mbps: options.peer_mbps,
        time_ratio: client_server.as_ref().map(|cs| peer_to_peer.seconds_all / cs.seconds_all.max(f64::EPSILON)),
        client_server,
        peer_to_peer,
    })
}
