//! Moving a stopped coordinator from SQLite to PostgreSQL:
//! `quorum-server migrate --from quorum.db --to postgres://... --data-dir DIR`.
//!
//! [`migrate`] copies the SQLite coordinator's whole state (projects, apps,
//! work units, results, hosts and their tokens, API tokens, credit) into an
//! empty PostgreSQL database, and what it keeps beside its file into the
//! data folder of the PostgreSQL coordinator, so that its volunteers' workers
//! carry on with the same host identities once a coordinator serves the
//! PostgreSQL database where they point. In order:
//! 1. the SQLite file must exist, no coordinator may serve it (the lock
//!    every coordinator takes, `BASE.lock`, is taken and held), and it must
//!    be a quorum database at this coordinator's schema version
//!    (`store::copy::Source`);
//! 2. the data folder must hold nothing of another coordinator (no
//!    `quorum.files/`, `quorum.admin-token`, `quorum.p2p/`) and its lock is
//!    taken: no coordinator may start with it meanwhile;
//! 3. the PostgreSQL database is opened as a coordinator opens it (its
//!    migrations applied) and must hold no row (`store::copy::Target`): a
//!    coordinator that served it has written at least its admin token;
//! 4. every table is copied in one PostgreSQL transaction, a writer's of the
//!    database (a coordinator started meanwhile waits for it before it
//!    writes), checked empty again inside it, and verified by row counts and
//!    digests read back from both databases (`store::copy`);
//! 5. with that transaction still open, the file store (`BASE.files/`, but
//!    its unfinished uploads) and the first admin token (`BASE.admin-token`)
//!    are copied to staging names in the data folder and synced; then the
//!    transaction commits and the staged copies are renamed into place.
//!
//! A failure before the commit leaves nothing: the transaction rolls back and
//! the staged copies are removed. The SQLite file and its companions are
//! never changed (they stay as a fallback).
//!
//! The swarm's state (`BASE.p2p/`, with `--share-files`) is not copied: its
//! blob store refers to the file store's files by their paths, which change,
//! and its peer key is the seed's address, which workers learn again from
//! every `FindPeers` answer; a coordinator builds both anew at its start.

use std::path::{Path, PathBuf};

use crate::database::{self, Database};
use crate::db_lock::{DatabaseLock, LockError};
use crate::store::copy::{self, TableCopy};
use crate::store::{self, Location};

/// Why a migration did not happen (or, [`Error::AfterCommit`], did not finish).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} does not exist: --from names the SQLite file of a stopped coordinator")]
    Missing(PathBuf),
    #[error("{0} is not a file: --from names the SQLite file of a stopped coordinator")]
    NotAFile(PathBuf),
    #[error(
        "a quorum-server is serving {db} (it holds the lock {lock}): stop it (SIGTERM) and migrate once it has \
         exited"
    )]
    SourceRunning { db: PathBuf, lock: PathBuf },
    #[error(
        "a quorum-server is serving from the data folder {dir} (it holds the lock {lock}): give an unused --data-dir"
    )]
    TargetRunning { dir: PathBuf, lock: PathBuf },
    #[error(transparent)]
    Lock(LockError),
    #[error(transparent)]
    DataDir(#[from] database::Error),
    #[error("--data-dir {0} would put the PostgreSQL coordinator's files where the SQLite one keeps its own")]
    SameBase(PathBuf),
    #[error(
        "{0} already exists: the data folder holds another coordinator's files (or an earlier migration's); give \
         an empty --data-dir"
    )]
    TargetHasFiles(PathBuf),
    #[error(transparent)]
    Copy(#[from] copy::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("copying {path}: {source}; nothing was committed")]
    Files { path: PathBuf, source: std::io::Error },
    #[error(
        "the database was migrated and committed, but moving {from} to {to} failed ({source}): move it there by \
         hand before starting the coordinator"
    )]
    AfterCommit { from: PathBuf, to: PathBuf, source: std::io::Error },
}

/// What a migration copied.
#[derive(Debug)]
pub struct Outcome {
    /// Every table, verified, in the order copied.
    pub tables: Vec<TableCopy>,
    /// The files beside the database copied into the data folder.
    pub files: Vec<CopiedFiles>,
    /// The PostgreSQL database and its data folder, for the next command.
    pub target: Database,
}

/// A companion of the database copied into the data folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedFiles {
    pub from: PathBuf,
    pub to: PathBuf,
    pub n_files: u64,
    pub n_bytes: u64,
}

/// Copies the stopped SQLite coordinator at `from` into the empty
/// PostgreSQL database at `to`, its files into `data_dir` (see the module's
/// documentation).
pub async fn migrate(from: &Path, to: &str, data_dir: &Path) -> Result<Outcome, Error> {
    match std::fs::metadata(from) {
        Ok(metadata) if metadata.is_file() => {}
        Ok(_) => return Err(Error::NotAFile(from.to_owned())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(Error::Missing(from.to_owned())),
        Err(source) => return Err(Error::Files { path: from.to_owned(), source }),
    }
    let source = Database::new(Location::Sqlite(from.to_owned()), None)?;
    let _source_lock = DatabaseLock::acquire(source.base()).map_err(|error| match error {
        LockError::Held { db, lock } => Error::SourceRunning { db, lock },
        error => Error::Lock(error),
    })?;
    let sqlite = copy::Source::open(from).await?;

    let target = Database::new(Location::Postgres(to.to_owned()), Some(data_dir))?;
    if same_path(source.base(), target.base()) {
        return Err(Error::SameBase(data_dir.to_owned()));
    }
    for companion in [target.files_dir(), target.admin_token_file(), target.p2p_dir()] {
        if std::fs::symlink_metadata(&companion).is_ok() {
            return Err(Error::TargetHasFiles(companion));
        }
    }
    let _target_lock = DatabaseLock::acquire(target.base()).map_err(|error| match error {
        LockError::Held { lock, .. } => Error::TargetRunning { dir: data_dir.to_owned(), lock },
        error => Error::Lock(error),
    })?;
    let postgres = copy::Target::open(to).await?;
    let copied = copy::copy(sqlite, postgres).await?;

    let staged = match stage_companions(&source, &target).await {
        Ok(staged) => staged,
        Err(error) => {
            copied.abandon().await;
            return Err(error);
        }
    };
    let tables = match copied.commit().await {
        Ok(tables) => tables,
        Err(error) => {
            for stage in &staged {
                remove(&stage.staged);
            }
            return Err(error.into());
        }
    };
    let mut files = Vec::with_capacity(staged.len());
    for stage in staged {
        std::fs::rename(&stage.staged, &stage.copied.to).map_err(|source| Error::AfterCommit {
            from: stage.staged.clone(),
            to: stage.copied.to.clone(),
            source,
        })?;
        files.push(stage.copied);
    }
    sync_dir(data_dir).map_err(|source| Error::Files { path: data_dir.to_owned(), source })?;
    tracing::info!(from = %from.display(), to = %target.location(), n_tables = tables.len(), "migrated");
    Ok(Outcome { tables, files, target })
}

/// Whether two paths name the same file (the first exists; the second may not).
fn same_path(existing: &Path, other: &Path) -> bool {
    let canonical = |path: &Path| -> Option<PathBuf> {
        let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Some(std::fs::canonicalize(parent).ok()?.join(path.file_name()?))
    };
    match (canonical(existing), canonical(other)) {
        (Some(a), Some(b)) => a == b,
        _ => existing == other,
    }
}

/// A companion copied to its staging name, renamed into place after the commit.
struct Staged {
    staged: PathBuf,
    copied: CopiedFiles,
}

/// Copies the file store and the admin token file of `source`, when it
/// has them, beside `target`'s base under staging names (`.migrating`).
async fn stage_companions(source: &Database, target: &Database) -> Result<Vec<Staged>, Error> {
    let pairs = [(source.files_dir(), target.files_dir()), (source.admin_token_file(), target.admin_token_file())];
    tokio::task::spawn_blocking(move || {
        let mut staged = Vec::new();
        for (from, to) in pairs {
            if std::fs::symlink_metadata(&from).is_err() {
                continue;
            }
            let staging = database::beside(&to, ".migrating");
            remove(&staging);
            let mut copied = CopiedFiles { from: from.clone(), to, n_files: 0, n_bytes: 0 };
            if let Err(source) = copy_tree(&from, &staging, &mut copied) {
                remove(&staging);
                staged.iter().for_each(|stage: &Staged| remove(&stage.staged));
                return Err(Error::Files { path: from, source });
            }
            staged.push(Staged { staged: staging, copied });
        }
        Ok(staged)
    })
    .await
    .expect("copying files does not panic")
}

/// Copies the file or folder `from` to `to` (a folder's `incoming/`,
/// uploads in progress when its coordinator stopped, excepted), each file
/// synced to disk with its mode kept.
fn copy_tree(from: &Path, to: &Path, copied: &mut CopiedFiles) -> std::io::Result<()> {
    if std::fs::metadata(from)?.is_file() {
        copied.n_bytes += std::fs::copy(from, to)?;
        copied.n_files += 1;
        return std::fs::File::open(to)?.sync_all();
    }
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_name() == "incoming" && from == copied.from {
            continue;
        }
        copy_tree(&entry.path(), &to.join(entry.file_name()), copied)?;
    }
    sync_dir(to)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Removes a staged copy, if there is one.
fn remove(path: &Path) {
    let _ = match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::test_databases::{Engine, TestDatabase, new_database};

    /// A stopped SQLite coordinator in `dir`: its database (a host in it),
    /// an admin token file, an input file and an unfinished upload.
    async fn stopped_coordinator(dir: &Path) -> PathBuf {
        let db = dir.join("quorum.db");
        let store = Store::open(&db).await.expect("open");
        store.bootstrap_admin_token("token-hash", crate::domain::Timestamp(1)).await.expect("admin token");
        store.close().await;
        std::fs::write(database::beside(&db, ".admin-token"), "secret\n").unwrap();
        let files = database::beside(&db, ".files");
        std::fs::create_dir_all(files.join("incoming")).unwrap();
        std::fs::write(files.join("ab12"), b"input file").unwrap();
        std::fs::write(files.join("incoming").join("upload-1"), b"half").unwrap();
        db
    }

    fn url(database: &TestDatabase) -> &str {
        match &database.location {
            Location::Postgres(url) => url,
            Location::Sqlite(_) => unreachable!("a PostgreSQL test database"),
        }
    }

    #[tokio::test]
    async fn a_missing_file_is_refused_before_anything_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let error = migrate(&dir.path().join("nope.db"), "postgres://q@127.0.0.1:1/none", &data).await.unwrap_err();
        assert!(matches!(error, Error::Missing(_)), "{error}");
        let error = migrate(dir.path(), "postgres://q@127.0.0.1:1/none", &data).await.unwrap_err();
        assert!(matches!(error, Error::NotAFile(_)), "{error}");
        assert!(!data.exists(), "nothing created");
        assert!(!dir.path().join("nope.db.lock").exists(), "no lock file beside a missing database");
    }

    #[tokio::test]
    async fn a_running_sqlite_coordinator_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = stopped_coordinator(dir.path()).await;
        // What a serving coordinator holds (main.rs: `DatabaseLock::acquire(db.base())`).
        let serving = DatabaseLock::acquire(&db).expect("the coordinator's lock");
        let data = dir.path().join("data");
        let error = migrate(&db, "postgres://q@127.0.0.1:1/none", &data).await.unwrap_err();
        assert!(matches!(error, Error::SourceRunning { .. }), "{error}");
        assert!(error.to_string().contains("stop it (SIGTERM)"), "{error}");
        assert!(!data.exists(), "nothing created");
        drop(serving);
    }

    #[tokio::test]
    async fn a_data_folder_with_another_coordinators_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = stopped_coordinator(dir.path()).await;
        let postgres = new_database(Engine::Postgres).await;
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("quorum.files")).unwrap();
        let error = migrate(&db, url(&postgres), &data).await.unwrap_err();
        assert!(matches!(&error, Error::TargetHasFiles(path) if path.ends_with("quorum.files")), "{error}");

        // A SQLite file named `quorum` in the data folder would share its companions' names.
        let named_quorum = dir.path().join("quorum");
        std::fs::copy(&db, &named_quorum).unwrap();
        let error = migrate(&named_quorum, url(&postgres), dir.path()).await.unwrap_err();
        assert!(matches!(error, Error::SameBase(_)), "{error}");
    }

    #[tokio::test]
    async fn a_postgres_database_that_holds_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = stopped_coordinator(dir.path()).await;
        let postgres = new_database(Engine::Postgres).await;
        let first = migrate(&db, url(&postgres), &dir.path().join("data")).await.expect("the first migration");
        assert!(first.tables.iter().any(|table| table.table == "api_tokens" && table.n_rows == 1), "{first:?}");
        let error = migrate(&db, url(&postgres), &dir.path().join("data-2")).await.unwrap_err();
        assert!(matches!(error, Error::Copy(copy::Error::NotEmpty { .. })), "{error}");
        assert!(!dir.path().join("data-2").join("quorum.files").exists(), "no files copied");
    }

    #[tokio::test]
    async fn the_file_store_and_admin_token_are_copied_into_the_data_folder() {
        let dir = tempfile::tempdir().unwrap();
        let db = stopped_coordinator(dir.path()).await;
        let postgres = new_database(Engine::Postgres).await;
        let data = dir.path().join("data");
        let outcome = migrate(&db, url(&postgres), &data).await.expect("migrate");
        assert_eq!(outcome.target.base(), data.join("quorum"));
        assert_eq!(std::fs::read_to_string(data.join("quorum.admin-token")).unwrap(), "secret\n");
        assert_eq!(std::fs::read(data.join("quorum.files").join("ab12")).unwrap(), b"input file");
        assert!(!data.join("quorum.files").join("incoming").exists(), "unfinished uploads stay behind");
        assert!(!data.join("quorum.files.migrating").exists() && !data.join("quorum.p2p").exists());
        let files: Vec<(u64, u64)> = outcome.files.iter().map(|files| (files.n_files, files.n_bytes)).collect();
        assert_eq!(files, [(1, 10), (1, 7)]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(data.join("quorum.admin-token")).unwrap().permissions().mode();
            let source_mode = std::fs::metadata(database::beside(&db, ".admin-token")).unwrap().permissions().mode();
            assert_eq!(mode, source_mode, "the token file keeps its mode");
        }
        assert!(db.exists() && database::beside(&db, ".files").join("ab12").exists(), "the source is left as it was");

        // The PostgreSQL store serves what was copied.
        let store = Store::open(outcome.target.location().clone()).await.expect("open the copy");
        assert!(store.has_admin_token().await.unwrap());
        store.close().await;
    }
}
