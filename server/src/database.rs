//! The database a coordinator serves and what it keeps beside it, all named
//! after one path, the base: `BASE.admin-token` (the first admin token),
//! `BASE.lock` (one coordinator at a time, `db_lock`), `BASE.files/` (input
//! and output files, `file_store`) and `BASE.p2p/` (the swarm's state,
//! `seed`). For a SQLite file the base is the file itself (`quorum.db`,
//! `quorum.db.files/`...); for a PostgreSQL database it is `DIR/quorum` in
//! the data folder given with it (`--data-dir DIR`: `DIR/quorum.files/`...).
//!
//! Serving, `quorum-server token` and `quorum-server migrate` all name these
//! paths here.

use std::path::{Path, PathBuf};

use crate::store::Location;

/// A database and the base its companions are named after.
#[derive(Clone, Debug)]
pub struct Database {
    location: Location,
    /// The path `BASE.lock`, `BASE.files/`... are named after.
    base: PathBuf,
}

/// Why a database's base cannot be named.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "a PostgreSQL database needs --data-dir DIR: the folder where the coordinator keeps its input files, its \
         first admin token and its lock"
    )]
    NoDataDir,
    #[error("creating the data folder {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
}

impl Database {
    /// The database at `location`; a PostgreSQL one keeps its companions in
    /// `data_dir` (created if missing), a SQLite file beside itself (the
    /// data folder is not used).
    pub fn new(location: Location, data_dir: Option<&Path>) -> Result<Database, Error> {
        let base = match (&location, data_dir) {
            (Location::Sqlite(path), _) => path.clone(),
            (Location::Postgres(_), Some(dir)) => {
                std::fs::create_dir_all(dir).map_err(|source| Error::DataDir { path: dir.to_owned(), source })?;
                dir.join("quorum")
            }
            (Location::Postgres(_), None) => return Err(Error::NoDataDir),
        };
        Ok(Database { location, base })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The path the companions are named after.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// `BASE.admin-token`: where the first-start admin token is written.
    pub fn admin_token_file(&self) -> PathBuf {
        beside(&self.base, ".admin-token")
    }

    /// `BASE.lock`: the lock one coordinator at a time holds.
    pub fn lock_file(&self) -> PathBuf {
        crate::db_lock::lock_file(&self.base)
    }

    /// `BASE.files/`: the file store.
    pub fn files_dir(&self) -> PathBuf {
        crate::file_store::FileStore::dir_beside(&self.base)
    }

    /// `BASE.p2p/`: the swarm's state (`--share-files`).
    pub fn p2p_dir(&self) -> PathBuf {
        crate::seed::Seed::dir_beside(&self.base)
    }
}

/// `BASE` followed by `suffix` (`quorum.db` and `.lock`: `quorum.db.lock`).
pub(crate) fn beside(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companions_sit_beside_a_sqlite_file_or_in_the_data_folder_of_postgres() {
        let sqlite = Database::new(Location::Sqlite("/srv/q/quorum.db".into()), None).unwrap();
        assert_eq!(sqlite.base(), Path::new("/srv/q/quorum.db"));
        assert_eq!(sqlite.admin_token_file(), Path::new("/srv/q/quorum.db.admin-token"));
        assert_eq!(sqlite.lock_file(), Path::new("/srv/q/quorum.db.lock"));
        assert_eq!(sqlite.files_dir(), Path::new("/srv/q/quorum.db.files"));
        assert_eq!(sqlite.p2p_dir(), Path::new("/srv/q/quorum.db.p2p"));

        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let postgres = Database::new(Location::Postgres("postgres://q@h/q".into()), Some(&data)).unwrap();
        assert!(data.is_dir(), "the data folder is created");
        assert_eq!(postgres.base(), data.join("quorum"));
        assert_eq!(postgres.admin_token_file(), data.join("quorum.admin-token"));
        assert_eq!(postgres.files_dir(), data.join("quorum.files"));

        let refused = Database::new(Location::Postgres("postgres://q@h/q".into()), None).unwrap_err();
        assert!(matches!(refused, Error::NoDataDir), "{refused}");
    }
}
