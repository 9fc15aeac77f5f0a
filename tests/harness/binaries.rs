//! Locating the binaries under test: cargo puts the test executable in
//! `target/<profile>/deps/` and the workspace binaries in `target/<profile>/`.

use std::path::PathBuf;

/// The coordinator.
pub const SERVER: &str = "quorum-server";
/// The volunteer worker.
pub const WORKER: &str = "quorum-worker";
/// The admin CLI.
pub const CLI: &str = "quorum";
/// The load generator (`bench/`).
pub const BENCH: &str = "quorum-bench";

/// The path of the built binary `name`; panics with the command to run when
/// it has not been built.
pub fn path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    // target/debug/deps/e2e-xxxx -> target/debug
    let profile_dir =
        exe.parent().and_then(|deps| deps.parent()).expect("the test executable lives in target/<profile>/deps");
    let binary = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(binary.is_file(), "binary {} not found: run `cargo build --workspace --bins` first", binary.display());
    binary
}
