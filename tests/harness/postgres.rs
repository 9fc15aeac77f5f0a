//! A PostgreSQL database of its own for an end-to-end test, on the server
//! `QUORUM_TEST_POSTGRES` names (`scripts/test` starts a throwaway cluster
//! with `scripts/postgres` and sets it), created with Debian's `psql`.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// A database created for one test (left on the throwaway server).
#[derive(Debug)]
pub struct Database {
    url: String,
}

impl Database {
    /// Creates a new, empty database on the test server.
    pub fn create() -> Database {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let server = std::env::var("QUORUM_TEST_POSTGRES").expect(
            "QUORUM_TEST_POSTGRES is not set: run ./scripts/test (it starts a throwaway PostgreSQL cluster), or start \
             one with `scripts/postgres start DIR` and set QUORUM_TEST_POSTGRES to the URL it prints",
        );
        let name = format!("quorum_e2e_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let output = Command::new("psql")
            .arg(&server)
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .expect("run psql");
        assert!(output.status.success(), "psql CREATE DATABASE {name}: {}", String::from_utf8_lossy(&output.stderr));
        let base = server.rsplit_once('/').map_or(server.as_str(), |(base, _)| base);
        Database { url: format!("{base}/{name}") }
    }

    /// `postgres://...`, for `--db`.
    pub fn url(&self) -> &str {
        &self.url
    }
}
