//! The worker's state directory: its lock (`worker.lock`: one worker at a
//! time), the journal (`journal.db`, see `journal`),
//! the app cache (`apps/<digest>.wasm`, and what the sandbox compiled of each
//! module in `compiled/`, counted in the cache's size and evicted with it)
//! one checkpoint directory per task
//! (`checkpoints/<server key>/<result id>/`, preopened as `/checkpoint` for
//! the app), the input file cache (`files/`) and each task's `/input` and
//! `/output` (`tasks/<server key>/<result id>/`; see `files`).
//!
//! Files are written atomically (temporary file, then rename), so a crash
//! never leaves half a file under a real name. App modules are checked against
//! their SHA-256 digest when stored and again when read back: a corrupted
//! cached file is deleted and reported as missing, so it gets downloaded again.
//! The app cache is kept within a budget ([`StateDir::trim_apps`], the rule in
//! `app_cache`): a module's modification time is its last use, touched each
//! time a task uses it, and the least recently used go first.
//! Plain blocking `std::fs`: callers on an async runtime use `spawn_blocking`.

use std::collections::HashSet;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use quorum_sandbox::compiled::CompiledCache;
use sha2::{Digest as _, Sha256};

use crate::app_cache::{self, CachedApp};
use crate::files::{FileCache, TaskFiles};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid app digest {0:?}: expected 64 lowercase hex digits")]
    InvalidDigest(String),
    #[error("app digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error(
        "another quorum-worker is running on the state directory {root} (it holds the lock {lock}); \
         stop it first, or give this one another --state-dir"
    )]
    Busy { root: PathBuf, lock: PathBuf },
}

/// The state directory's lock, held while a worker runs on it (an exclusive
/// `flock` on `worker.lock`, released by the kernel however the process
/// ends): two workers on one journal would compute and report every task twice.
#[derive(Debug)]
pub struct StateLock {
    _held: fs::File,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating it if needed) the state directory at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let root = root.into();
        let apps = root.join("apps");
        fs::create_dir_all(&apps).map_err(|source| Error::Io { path: apps, source })?;
        Ok(StateDir { root })
    }

    /// Takes the directory's lock without waiting; [`Error::Busy`] when
    /// another worker holds it. `status`, `pause` and `resume` do not take it.
    pub fn lock(&self) -> Result<StateLock, Error> {
        let lock = self.root.join("worker.lock");
        let opened = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock);
        let held = opened.map_err(|source| Error::Io { path: lock.clone(), source })?;
        match held.try_lock() {
            Err(fs::TryLockError::WouldBlock) => Err(Error::Busy { root: self.root.clone(), lock }),
            Err(fs::TryLockError::Error(source)) => Err(Error::Io { path: lock, source }),
            Ok(()) => Ok(StateLock { _held: held }),
        }
    }

    /// The journal's file.
    /// Where the sandbox keeps compiled modules (counted in the app cache).
    pub fn compiled_dir(&self) -> PathBuf {
        self.root.join("compiled")
    }

    fn compiled(&self) -> CompiledCache {
        CompiledCache::new(self.compiled_dir())
    }

    pub fn journal_path(&self) -> PathBuf {
        self.root.join("journal.db")
    }

    /// The checkpoint directory of one task (not created).
    pub fn checkpoint_dir(&self, server: &str, result_id: i64) -> PathBuf {
        self.root.join("checkpoints").join(server_key(server)).join(result_id.to_string())
    }

    /// Creates the task's checkpoint directory if needed; returns it and
    /// whether it already held something (the task resumes).
    pub fn prepare_checkpoint_dir(&self, server: &str, result_id: i64) -> Result<(PathBuf, bool), Error> {
        let dir = self.checkpoint_dir(server, result_id);
        fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
        let mut entries = fs::read_dir(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
        let resumes = entries.next().is_some();
        Ok((dir, resumes))
    }

    /// Deletes the task's checkpoint directory (the result was accepted, or
    /// is no longer wanted). A missing directory is fine.
    pub fn remove_checkpoint_dir(&self, server: &str, result_id: i64) -> Result<(), Error> {
        // Its input and output directories go with it.
        if let Err(error) = self.task_files(server, result_id).remove() {
            tracing::warn!(%error, result_id, "cannot delete a task's file directories");
        }
        let dir = self.checkpoint_dir(server, result_id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io { path: dir, source }),
        }
    }

    /// The cache of input files (`files/`).
    pub fn file_cache(&self) -> FileCache {
        FileCache::new(self.root.join("files"))
    }

    /// The `/input` and `/output` directories of one task (`tasks/<server key>/<result id>/`).
    pub fn task_files(&self, server: &str, result_id: i64) -> TaskFiles {
        TaskFiles::new(self.root.join("tasks").join(server_key(server)).join(result_id.to_string()))
    }

    fn apps_dir(&self) -> PathBuf {
        self.root.join("apps")
    }

    fn app_path(&self, digest: &str) -> Result<PathBuf, Error> {
        check_digest(digest)?;
        Ok(self.apps_dir().join(format!("{digest}.wasm")))
    }

    /// The cached module with this digest, if present and intact. A file whose
    /// content does not match its digest is deleted and reported as missing.
    pub fn read_app(&self, digest: &str) -> Result<Option<Vec<u8>>, Error> {
        let path = self.app_path(digest)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        if sha256_hex(&bytes) == digest {
            if let Err(error) = touch(&path) {
                // Only the eviction order suffers.
                tracing::debug!(digest, error = %error, "cannot touch a cached app");
            }
            return Ok(Some(bytes));
        }
        tracing::warn!(digest, "cached app is corrupted, deleting it");
        match fs::remove_file(&path) {
            Ok(()) => Ok(None),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Caches a module after checking it matches `digest`.
    pub fn write_app(&self, digest: &str, bytes: &[u8]) -> Result<(), Error> {
        let path = self.app_path(digest)?;
        verify_digest(digest, bytes)?;
        write_atomically(&path, bytes)
    }

    /// Marks the cached module with this digest as used now (its modification
    /// time), so it is evicted after those used before it. A module that is
    /// not cached is fine.
    pub fn touch_app(&self, digest: &str) -> Result<(), Error> {
        let path = self.app_path(digest)?;
        match touch(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// The cached modules (`apps/<digest>.wasm`; other files, such as a
    /// temporary file being written, are not modules and are skipped).
    pub fn list_apps(&self) -> Result<Vec<CachedApp>, Error> {
        let dir = self.apps_dir();
        let io = |source| Error::Io { path: dir.clone(), source };
        let mut apps = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(digest) = name.to_str().and_then(|name| name.strip_suffix(".wasm")) else {
                continue;
            };
            if check_digest(digest).is_err() {
                continue;
            }
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                // Removed since the listing: not cached any more.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(Error::Io { path: entry.path(), source }),
            };
            let last_used = metadata.modified().map_err(|source| Error::Io { path: entry.path(), source })?;
            // The module and what the sandbox compiled of it.
            let compiled =
                self.compiled().size_of(digest).map_err(|source| Error::Io { path: self.compiled_dir(), source })?;
            apps.push(CachedApp { digest: digest.to_string(), size: metadata.len() + compiled, last_used });
        }
        Ok(apps)
    }

    /// Deletes the cached module with this digest, and what the sandbox
    /// compiled of it. A missing one is fine.
    pub fn remove_app(&self, digest: &str) -> Result<(), Error> {
        let path = self.app_path(digest)?;
        self.compiled().remove(digest).map_err(|source| Error::Io { path: self.compiled_dir(), source })?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Keeps the app cache within `budget` bytes: evicts the modules
    /// [`app_cache::to_evict`] picks (least recently used first, never one in
    /// `needed`). A module that cannot be removed is logged and counted as
    /// still cached; the other evictions go on.
    pub fn trim_apps(&self, needed: &HashSet<String>, budget: u64) -> Result<Trimmed, Error> {
        let cached = self.list_apps()?;
        let mut bytes: u64 = cached.iter().map(|app| app.size).sum();
        let mut trimmed = Trimmed { evicted: Vec::new(), n_apps: cached.len(), bytes: 0 };
        for digest in app_cache::to_evict(&cached, needed, budget) {
            match self.remove_app(&digest) {
                Ok(()) => {
                    let size = cached.iter().find(|app| app.digest == digest).map_or(0, |app| app.size);
                    bytes -= size;
                    trimmed.n_apps -= 1;
                    trimmed.evicted.push((digest, size));
                }
                Err(error) => tracing::warn!(error = %error, "cannot evict an app from the cache"),
            }
        }
        trimmed.bytes = bytes;
        Ok(trimmed)
    }
}

/// What [`StateDir::trim_apps`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trimmed {
    /// The modules evicted, with their sizes, in the order they went.
    pub evicted: Vec<(String, u64)>,
    /// Modules left in the cache...
    pub n_apps: usize,
    /// ... and their bytes (over the budget only when needed ones fill it).
    pub bytes: u64,
}

/// Sets the file's modification time to now.
fn touch(path: &Path) -> std::io::Result<()> {
    fs::File::open(path)?.set_modified(SystemTime::now())
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks that `bytes` hash to `digest`.
pub fn verify_digest(digest: &str, bytes: &[u8]) -> Result<(), Error> {
    let actual = sha256_hex(bytes);
    if actual == digest { Ok(()) } else { Err(Error::DigestMismatch { expected: digest.to_string(), actual }) }
}

/// A digest names a file: it must be exactly 64 lowercase hex digits, which
/// also keeps a hostile server from writing outside `apps/`.
fn check_digest(digest: &str) -> Result<(), Error> {
    if is_digest(digest) { Ok(()) } else { Err(Error::InvalidDigest(digest.to_string())) }
}

/// Whether `text` is a digest as the protocol writes them: 64 lowercase hex
/// digits (so a digest used as a file name stays in its folder).
pub fn is_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The folder name of a coordinator in the state directory (checkpoints, task files).
fn server_key(server: &str) -> String {
    sha256_hex(server.as_bytes())[..16].to_owned()
}

/// Writes `bytes` to a temporary file next to `path`, syncs it, then renames
/// it over `path`. On unix the file is created with mode 0600.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let file_name = path.file_name().expect("state paths always end in a file name").to_string_lossy();
    let temp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let io = |source| Error::Io { path: temp.clone(), source };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&temp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&temp, path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (tempfile::TempDir, StateDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = StateDir::open(dir.path().join("state")).expect("open state dir");
        (dir, state)
    }

    #[test]
    fn one_worker_at_a_time_holds_the_state_directory() {
        let (_dir, state) = state();
        let first = state.lock().expect("the first lock");
        let busy = state.lock().expect_err("a second worker is refused");
        assert!(matches!(busy, Error::Busy { .. }), "{busy}");
        assert!(busy.to_string().contains("another quorum-worker is running on the state directory"), "{busy}");
        drop(first);
        state.lock().expect("free again once the first worker stopped");
    }

    #[test]
    fn checkpoint_dirs_are_per_server_and_task() {
        let (_dir, state) = state();
        let (dir, resumes) = state.prepare_checkpoint_dir("http://a", 7).expect("prepare");
        assert!(dir.is_dir() && !resumes);
        assert_ne!(dir, state.checkpoint_dir("http://b", 7));
        assert_ne!(dir, state.checkpoint_dir("http://a", 8));
        fs::write(dir.join("state"), b"42").expect("write checkpoint");
        let (again, resumes) = state.prepare_checkpoint_dir("http://a", 7).expect("prepare");
        assert!(again == dir && resumes, "a checkpoint makes the task resume");
        state.remove_checkpoint_dir("http://a", 7).expect("remove");
        assert!(!dir.exists());
        state.remove_checkpoint_dir("http://a", 7).expect("removing twice is fine");
    }

    #[test]
    fn apps_are_verified_on_write_and_read() {
        let (_dir, state) = state();
        let module = b"\0asm\x01\0\0\0";
        let digest = sha256_hex(module);
        assert_eq!(state.read_app(&digest).expect("read"), None);
        assert!(matches!(state.write_app(&digest, b"other bytes"), Err(Error::DigestMismatch { .. })));
        state.write_app(&digest, module).expect("write");
        assert_eq!(state.read_app(&digest).expect("read").as_deref(), Some(&module[..]));

        // Corrupt the cached file: it is deleted and reported missing.
        let path = state.app_path(&digest).expect("path");
        fs::write(&path, b"corrupted").expect("corrupt");
        assert_eq!(state.read_app(&digest).expect("read"), None);
        assert!(!path.exists());
    }

    /// Caches a distinct small module per `tag`, last used `tag` seconds after the epoch.
    fn cache_app(state: &StateDir, tag: u8) -> String {
        let module = [b'\0', b'a', b's', b'm', 1, 0, 0, 0, tag];
        let digest = sha256_hex(&module);
        state.write_app(&digest, &module).expect("write");
        let used = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(tag));
        fs::File::open(state.app_path(&digest).expect("path")).and_then(|f| f.set_modified(used)).expect("set mtime");
        digest
    }

    #[test]
    fn the_app_cache_lists_touches_and_evicts_least_recently_used() {
        let (_dir, state) = state();
        let digests: Vec<String> = (1..=3).map(|tag| cache_app(&state, tag)).collect();
        // Not modules: skipped by the listing, never evicted.
        fs::write(state.apps_dir().join(".partial.wasm.1.tmp"), b"half").expect("temp file");
        let mut listed = state.list_apps().expect("list");
        listed.sort_by_key(|app| app.last_used);
        let listed: Vec<(&str, u64)> = listed.iter().map(|app| (app.digest.as_str(), app.size)).collect();
        assert_eq!(listed, digests.iter().map(|d| (d.as_str(), 9)).collect::<Vec<_>>());

        // The oldest is read (used) now: the second oldest is the least recently used.
        state.read_app(&digests[0]).expect("read").expect("cached");
        let trimmed = state.trim_apps(&HashSet::new(), 18).expect("trim");
        assert_eq!(trimmed, Trimmed { evicted: vec![(digests[1].clone(), 9)], n_apps: 2, bytes: 18 });
        assert_eq!(state.read_app(&digests[1]).expect("read"), None);

        // Needed apps stay even over the budget.
        let needed: HashSet<String> = [digests[2].clone()].into();
        let trimmed = state.trim_apps(&needed, 0).expect("trim");
        assert_eq!(trimmed, Trimmed { evicted: vec![(digests[0].clone(), 9)], n_apps: 1, bytes: 9 });
        state.touch_app(&digests[0]).expect("touching an evicted app is fine");
        state.remove_app(&digests[0]).expect("removing twice is fine");
        assert!(state.apps_dir().join(".partial.wasm.1.tmp").exists());
    }

    #[test]
    fn digests_must_be_hex() {
        let (_dir, state) = state();
        for digest in ["", "../host", &"A".repeat(64), &"0".repeat(63)] {
            assert!(matches!(state.read_app(digest), Err(Error::InvalidDigest(_))), "{digest}");
        }
    }
}
