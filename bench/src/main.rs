//! `quorum-bench`: parses flags, sets up logging (stderr) and runs a
//! benchmark; the one-line summary, or the JSON figures with `--json`, go to
//! stdout.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use quorum_bench::apps::{App, KernelUnits};
use quorum_bench::{files as file_bench, lifecycle, worker};

/// Benchmarks of quorum, against the real `quorum-server` (and, for `worker`,
/// `quorum-worker`) binaries next to this one, on loopback.
#[derive(Debug, Parser)]
#[command(name = "quorum-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work units through their whole lifecycle: submission, dispatch, reports
    /// and validation, driven by simulated hosts.
    Lifecycle {
        /// Simulated volunteer hosts.
        #[arg(long, default_value_t = 100)]
        hosts: u32,
        /// Copies each host asks for per RequestWork.
        #[arg(long, default_value_t = 20)]
        slots: u32,
        /// Copies per work unit that must agree (min_quorum = target_results).
        #[arg(long, default_value_t = 2)]
        quorum: u32,
        /// Work units the hosts process.
        #[arg(long, default_value_t = 20_000)]
        work_units: u64,
        /// Work units queued in addition (a lower-priority project), so the
        /// dispatch query faces a large backlog.
        #[arg(long, default_value_t = 0)]
        backlog: u64,
        /// Work units queued ahead of the measured ones (a higher-priority
        /// project) of which no simulated host may take a copy: a host of
        /// each account already holds one of each. Every walk through the
        /// unsent copies meets them first. Needs `--accounts` (at least the quorum).
        #[arg(long, default_value_t = 0)]
        held_backlog: u64,
        /// Volunteer accounts the simulated hosts register in, in turn
        /// (`bench-0`, `bench-1`...); 0: no account.
        #[arg(long, default_value_t = 0)]
        accounts: u32,
        /// Stop after this many seconds even if work units are still open.
        #[arg(long, default_value_t = 600)]
        duration: u64,
        /// HTTP/2 connections the hosts share.
        #[arg(long, default_value_t = 8)]
        channels: u32,
        /// Report in ReportResults calls of their own instead of in the next
        /// RequestWork (the protocol of workers before reports rode on RequestWork).
        #[arg(long)]
        separate_reports: bool,
        /// Milliseconds a host spends "computing" the copies it got before it
        /// reports them and asks again. 0 saturates the coordinator (latency is
        /// then the queue in front of it); a compute time offers a fixed load
        /// of about hosts x slots / compute time results per second. Hosts
        /// differ, as volunteers do: each turn takes between 0.5 and 1.5 times
        /// MS (uniformly at random), and each host starts after a random
        /// delay of up to MS, so the hosts do not call in step.
        #[arg(long, default_value_t = 0, value_name = "MS")]
        compute_ms: u64,
        /// Print every figure as one JSON object instead of the summary line.
        #[arg(long)]
        json: bool,
        /// Run the coordinator on this PostgreSQL database (a postgres://
        /// URL of an empty database) instead of a new SQLite file.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// Coordinators over the --postgres database, the hosts' connections
        /// spread over them (--channels is raised to at least this).
        #[arg(long, default_value_t = 1)]
        coordinators: u32,
    },
    /// Input files through a real coordinator, real workers and the real CLI
    /// (`quorum-bench files locality`, `big-input`, `distribution`).
    Files {
        #[command(subcommand)]
        run: FilesRun,
    },
    /// Worker efficiency: apps through the whole platform (a real
    /// quorum-server and one real quorum-worker), against the same modules run
    /// directly in the sandbox and the same computations compiled natively.
    Worker {
        /// The app: primes (the example), nbody, matmul, fft, stencil, sort
        /// (the C kernels of bench/apps/kernels), or all of them in turn.
        #[arg(long, default_value = "primes")]
        app: String,
        /// Work units of each kernel app.
        #[arg(long, default_value_t = 20)]
        units: usize,
        /// Size of each kernel unit: 1 for about 0.15-0.25 s of native time.
        #[arg(long, default_value_t = 1.0)]
        unit_work: f64,
        /// primes: first number of the range.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// End of the range (exclusive).
        #[arg(long, default_value_t = 10_000_000)]
        end: u64,
        /// Numbers per work unit.
        #[arg(long, default_value_t = 50_000)]
        chunk: u64,
        /// Cores: threads of the direct and native pools, the worker's --cpus.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        cpus: u32,
        /// Fail if the platform has not finished after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Print every figure as one JSON object instead of the summary line.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    quorum_log::init(quorum_log::LogFormat::Text, "warn");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Lifecycle {
            hosts,
            slots,
            quorum,
            work_units,
            backlog,
            held_backlog,
            accounts,
            duration,
            channels,
            separate_reports,
            compute_ms,
            json,
            postgres,
            coordinators,
        } => {
            let options = lifecycle::Options {
                hosts,
                slots,
                quorum,
                work_units,
                backlog,
                held_backlog,
                accounts,
                duration: Duration::from_secs(duration),
                channels,
                separate_reports,
                compute_time: Duration::from_millis(compute_ms),
                postgres,
                coordinators,
            };
            let figures = lifecycle::run(&options).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&figures)?);
            } else {
                println!("{}", figures.summary());
            }
            anyhow::ensure!(figures.completed, "the run did not complete within {duration} s");
            Ok(())
        }
        Command::Files { run: FilesRun::Locality { files, file_mb, work_units, workers, cache_mb, timeout, json } } => {
            let options = file_bench::LocalityOptions {
                files,
                file_mb,
                work_units,
                workers,
                cache_mb,
                timeout: Duration::from_secs(timeout),
            };
            let figures = file_bench::locality(&options).await?;
            print(json, &figures, figures.summary())
        }
        Command::Files { run: FilesRun::BigInput { big_mb, timeout, json } } => {
            let figures =
                file_bench::big_input(&file_bench::BigInputOptions { big_mb, timeout: Duration::from_secs(timeout) })
                    .await?;
            print(json, &figures, figures.summary())
        }
        Command::Files {
            run: FilesRun::Distribution { file_mb, workers, coordinator_mbps, peer_mbps, only_p2p, timeout, json },
        } => {
            let options = file_bench::DistributionOptions {
                file_mb,
                workers,
                coordinator_mbps,
                peer_mbps,
                only_p2p,
                timeout: Duration::from_secs(timeout),
            };
            let figures = file_bench::distribution(&options).await?;
            print(json, &figures, figures.summary())
        }
        Command::Worker { app, units, unit_work, start, end, chunk, cpus, timeout, json } => {
            let apps = match app.as_str() {
                "all" => App::ALL.to_vec(),
                name => vec![name.parse::<App>().map_err(anyhow::Error::msg)?],
            };
            let options = worker::Options {
                apps,
                start,
                end,
                chunk,
                kernel_units: KernelUnits { count: units, work: unit_work },
                cpus: cpus as usize,
                timeout: Duration::from_secs(timeout),
            };
            let figures = worker::run(&options).await?;
            print(json, &figures, figures.summary())
        }
    }
}

/// Prints `figures` as JSON, or `summary`.
fn print(json: bool, figures: &impl serde::Serialize, summary: String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(figures)?);
    } else {
        println!("{summary}");
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum FilesRun {
    /// Bytes downloaded per work unit with locality scheduling and without.
    Locality {
        /// Distinct input files.
        #[arg(long, default_value_t = 5)]
        files: usize,
        /// Size of each, in MiB.
        #[arg(long, default_value_t = 64)]
        file_mb: u64,
        /// Work units, each using one of the files (drawn at random).
        #[arg(long, default_value_t = 1000)]
        work_units: usize,
        /// Worker processes (one core each).
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Each worker's file cache, in MiB (below `files * file_mb`, so that it must choose).
        #[arg(long, default_value_t = 160)]
        cache_mb: u64,
        /// Each mode fails if not done within this many seconds.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
        #[arg(long)]
        json: bool,
    },
    /// One shared file to many workers started at once: client/server
    /// against peer-to-peer (the coordinator seeding, the workers sharing).
    Distribution {
        /// Size of the shared file, in MiB.
        #[arg(long, default_value_t = 256)]
        file_mb: u64,
        /// Worker processes, started at once.
        #[arg(long, default_value_t = 20)]
        workers: usize,
        /// The coordinator's file upload cap (`--file-upload-mbps`).
        #[arg(long, default_value_t = 200)]
        coordinator_mbps: u64,
        /// Each worker's upload cap (`--share-upload-mbps`).
        #[arg(long, default_value_t = 40)]
        peer_mbps: u64,
        /// Only the peer-to-peer mode (to try changes quickly; no ratio).
        #[arg(long)]
        only_p2p: bool,
        /// Each mode fails if not every worker has the file within this many seconds.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
        #[arg(long)]
        json: bool,
    },
    /// Peak memory of the coordinator and a worker with one large input file.
    BigInput {
        /// Size of the input file, in MiB.
        #[arg(long, default_value_t = 256)]
        big_mb: u64,
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        super::Cli::command().debug_assert();
    }
}
