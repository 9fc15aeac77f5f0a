//! Source-level rules of the workspace, in the manner of rust-analyzer's
//! `xtask/src/tidy.rs`: every Rust file opens with a `//!` comment saying what
//! it is for, and the coordinator's domain knows nothing of gRPC, SQL or tokio
//! (its code never names `tonic`, `sqlx` or `tokio`; its comments may).

use std::path::{Path, PathBuf};

/// The crates whose sources are checked.
const CRATES: &[&str] = &["server", "worker", "cli", "proto", "tests", "bench", "p2p"];

/// Words the domain must never mention.
const FORBIDDEN_IN_DOMAIN: &[&str] = &["tonic", "sqlx", "tokio"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the workspace").to_path_buf()
}

/// Every `.rs` file under `dir`, skipping `target/` folders.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|error| panic!("read {}: {error}", dir.display()));
        for entry in entries {
            let path = entry.expect("read a directory entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name != "target") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_rust_file_starts_with_a_module_doc_comment() {
    let root = workspace_root();
    let mut offenders = Vec::new();
    let mut n_files = 0;
    for krate in CRATES {
        for file in rust_files(&root.join(krate)) {
            n_files += 1;
            let text =
                std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("read {}: {error}", file.display()));
            if !text.starts_with("//!") {
                offenders.push(file.strip_prefix(&root).unwrap_or(&file).display().to_string());
            }
        }
    }
    assert!(n_files > 0, "no Rust files found under {}", root.display());
    assert!(
        offenders.is_empty(),
        "these files do not start with a `//!` comment saying what they are for:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn domain_knows_nothing_of_grpc_sql_or_tokio() {
    let domain = workspace_root().join("server/src/domain");
    let files = rust_files(&domain);
    assert!(!files.is_empty(), "no Rust files under {}", domain.display());
    let mut offenders = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("read {}: {error}", file.display()));
        for (index, line) in text.lines().enumerate() {
            // Comments may name what the domain stays away from ("knows
            // nothing of tokio"); code may not.
            let code = line.split("//").next().unwrap_or_default();
            for word in FORBIDDEN_IN_DOMAIN {
                if code.contains(word) {
                    offenders.push(format!("{}:{}: {word}: {}", file.display(), index + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "server/src/domain/ must not mention {FORBIDDEN_IN_DOMAIN:?}:\n{}",
        offenders.join("\n")
    );
}
