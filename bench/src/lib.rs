//! quorum-bench: a load generator for the quorum coordinator.
//!
//! It starts the real `quorum-server` binary (found next to its own
//! executable) on `127.0.0.1:0` with a temporary SQLite file and the shipped
//! default durability, submits work through the real `Projects` API, and
//! drives the coordinator with simulated volunteer hosts speaking the real
//! `Scheduler` protocol over gRPC on loopback. It never links the server: what
//! it measures is what a deployed coordinator does.
//!
//! Layout:
//! - [`coordinator`]: the `quorum-server` child process, and its CPU time and
//!   peak memory read from `/proc`.
//! - [`lifecycle`]: the `lifecycle` benchmark: submission, then hosts that
//!   request work, report correct outputs and request again, until every work
//!   unit is validated.
//! - [`figures`]: the measured figures, percentiles, steady-state rates, the
//!   one-line summary and the JSON form.
//! - [`worker`]: the `worker` benchmark: apps through a real coordinator and
//!   one real `quorum-worker`, against the same modules run directly in
//!   `quorum-sandbox` and the same computations compiled natively. Unlike the
//!   rest of the crate it links the sandbox (wasmtime); never the server.
//! - [`apps`]: its apps: the primes example and the C kernels of
//!   `apps/kernels` (built natively by `build.rs`), their units and native
//!   outputs.
//! - [`files`]: the `files` benchmark: input files through a real
//!   coordinator and real workers (locality scheduling's bytes per work
//!   unit, peak memory with a large input).

pub mod apps;
pub mod coordinator;
pub mod figures;
pub mod files;
pub mod lifecycle;
pub mod worker;

/// The smallest valid WASI command: `(module (func (export "_start")))`,
/// assembled by hand so that the bench needs no WebAssembly toolchain. The
/// simulated hosts never run it; the coordinator only checks it.
pub const NOOP_APP: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: one type, () -> ()
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x07, 0x0a, 0x01, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, // export "_start" = func 0
    0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code section: one empty body
];
