//! [`TestDir`]: one temporary directory per test, holding its database,
//! manifests, worker state and process logs. Kept (and its path printed) when
//! the test panics, removed otherwise.

use std::path::{Path, PathBuf};

/// A temporary directory owned by one test.
#[derive(Debug)]
pub struct TestDir {
    /// `None` only during drop.
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    /// Creates a fresh directory whose name starts with `quorum-e2e-NAME-`.
    pub fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("quorum-e2e-{name}-"))
            .tempdir()
            .expect("create a temporary directory");
        let path = dir.path().to_path_buf();
        TestDir { dir: Some(dir), path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(relative)`.
    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.path.join(relative)
    }

    /// Writes `contents` to `relative` (creating parent folders) and returns
    /// the full path.
    pub fn write(&self, relative: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|error| panic!("create {}: {error}", parent.display()));
        }
        std::fs::write(&path, contents).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("test failed: its files are kept in {}", kept.display());
        }
    }
}
