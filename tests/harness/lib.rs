//! Harness of the end-to-end tests: real `quorum-server`, `quorum-worker` and
//! `quorum` processes on loopback, each test in its own temporary directory.
//!
//! In the style of ripgrep's `tests/util.rs` and zero-to-production's
//! `spawn_app`: every process a test starts is killed when its handle is
//! dropped, servers bind port 0 and report the bound address on stdout, and
//! waiting is done on events (`quorum wait`, the `WaitProject` RPC); timeouts
//! only guard against hangs. When a test panics, the handles print the tail of
//! the logs of the processes they own and the temporary directory is kept.
//!
//! Layout:
//! - [`binaries`]: where the built binaries are (next to the test executable).
//! - [`browser`]: [`browser::Browser`], a headless Chromium driven over its DevTools pipe.
//! - [`dir`]: [`TestDir`], the per-test temporary directory.
//! - [`process`]: a child process with a log file, killed on drop.
//! - [`server`]: [`Server`], a `quorum-server` on `127.0.0.1:0` (or a given
//!   address, to restart it where its workers point); [`server::unused_addr`],
//!   an address where nothing listens yet.
//! - [`tls`]: [`tls::Pki`], a CA and a server certificate made with rcgen.
//! - [`worker`]: [`Worker`], a `quorum-worker` pointed at a server.
//! - [`cli`]: [`cli()`], the `quorum` CLI, and the types of its `--json` output.
//! - [`group`]: [`group::Coordinators`], one coordinator on SQLite or two over one PostgreSQL database.
//! - [`grpc`]: speaking the protocol directly: a [`grpc::Host`] (scheduler
//!   side, e.g. a malicious volunteer) and the `Projects` service.
//! - [`http`]: [`http::get`], a GET from the coordinator's HTTP endpoints (metrics, status page).
//! - [`poll`]: [`poll::poll_until`], waiting for a state no event reports.
//! - [`primes`]: the primes example app, manifests that use it, and an
//!   independent prime count to check its outputs against.

pub mod binaries;
pub mod browser;
pub mod cli;
pub mod dir;
pub mod group;
pub mod grpc;
pub mod http;
#[path = "../../p2p/tests/support/liar.rs"]
pub mod liar;
pub mod poll;
pub mod postgres;
pub mod primes;
pub mod process;
pub mod server;
pub mod tls;
pub mod worker;

pub use cli::{CliOutput, cli, cli_with_token};
pub use dir::TestDir;
pub use server::Server;
pub use worker::Worker;

/// How long any single step of a test may take before the test gives up (a
/// guard against hangs, not a synchronisation).
pub const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
