//! The lock that lets one coordinator at a time serve a database: an
//! exclusive advisory lock (`flock`) on `DB.lock`, held for the process's
//! life and released by the kernel however the process ends (a SIGKILL
//! leaves no stale lock behind).
//!
//! SQLite alone would let two coordinators share the file: each would keep
//! its own caches (host tokens, frontiers of unsent copies) and hand out
//! what the other already leased. `quorum-server token` commands do not take
//! the lock: they are short transactions SQLite serialises.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another quorum-server is serving {db} (it holds the lock {lock}); stop it first, or give this one another --db"
    )]
    Held { db: PathBuf, lock: PathBuf },
    #[error("cannot open the lock file {lock}: {source}")]
    Io { lock: PathBuf, source: std::io::Error },
}

/// The lock on a database, released when dropped.
#[derive(Debug)]
pub struct DatabaseLock {
    _file: File,
}

/// `DB.lock`, beside the database.
pub fn lock_file(db: &Path) -> PathBuf {
    crate::database::beside(db, ".lock")
}

impl DatabaseLock {
    /// Takes the lock on `db` without waiting: fails with [`LockError::Held`]
    /// when another process holds it.
    pub fn acquire(db: &Path) -> Result<DatabaseLock, LockError> {
        let lock = lock_file(db);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&lock).map_err(|source| LockError::Io { lock: lock.clone(), source })?;
        match file.try_lock() {
            Ok(()) => Ok(DatabaseLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::Held { db: db.to_owned(), lock }),
            Err(TryLockError::Error(source)) => Err(LockError::Io { lock, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("quorum-db-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("quorum.db");
        let first = DatabaseLock::acquire(&db).expect("the first lock");
        let error = DatabaseLock::acquire(&db).expect_err("a second lock is refused");
        assert!(matches!(error, LockError::Held { .. }), "{error}");
        assert!(error.to_string().contains("another quorum-server is serving"), "{error}");
        drop(first);
        DatabaseLock::acquire(&db).expect("the lock is free again once dropped");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
