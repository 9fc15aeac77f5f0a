//! End-to-end tests of quorum: real `quorum-server`, `quorum-worker` and
//! `quorum` processes talking gRPC on loopback, one temporary directory and
//! one server per test. Built into a single test binary (`e2e`).
//!
//! Layout:
//! - `primes`: the happy path, from `quorum submit` to `quorum results`.
//! - `malicious`: a host reporting wrong outputs never makes them canonical.
//! - `deadlines`: copies of a killed worker become "no reply" and are reissued.
//! - `bad_manifests`: `quorum submit` refuses bad input and creates nothing.
//! - `protocol_errors`: the scheduler's answers to wrong or repeated reports.
//! - `operations`: health checking, reflection and clean shutdown.
//! - `tidy`: source-level rules of the workspace (doc comments, a domain
//!   free of gRPC, SQL and tokio).
//!
//! Run with `cargo build --workspace --bins && cargo nextest run -p quorum-tests`.

mod bad_manifests;
mod deadlines;
mod malicious;
mod operations;
mod primes;
mod protocol_errors;
mod tidy;
