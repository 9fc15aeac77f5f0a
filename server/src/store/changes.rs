//! What the coordinators of one database tell each other: that work units
//! may have changed, so that a `WaitProject` or a stream of canonical results
//! served by one coordinator wakes when the reports came to another.
//!
//! On PostgreSQL, PostgreSQL's own `LISTEN`/`NOTIFY` carries it (no broker
//! of ours); a SQLite file has one coordinator, so there is nothing to tell.

use super::backend::{self, Pool};
use super::{Result, Store};

/// Announcements of other coordinators of the database ([`Store::listen_changes`]).
pub struct ChangesElsewhere(backend::ChangeListener);

impl ChangesElsewhere {
    /// Returns once another coordinator announced changes (or the listening
    /// connection was made again, since announcements may have been missed).
    pub async fn next(&mut self) -> Result<()> {
        self.0.next().await
    }
}

impl Store {
    /// Tells the other coordinators of the database that work units may
    /// have changed: nothing on SQLite.
    pub async fn announce_changes(&self) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(_) => Ok(()),
            Pool::Postgres(pool) => backend::announce_changes(pool, &self.tag).await,
        }
    }

    /// Listens for the other coordinators' announcements: `None` on SQLite
    /// (no other coordinator).
    pub async fn listen_changes(&self) -> Result<Option<ChangesElsewhere>> {
        match &self.pool {
            Pool::Sqlite(_) => Ok(None),
            Pool::Postgres(pool) => Ok(Some(ChangesElsewhere(backend::ChangeListener::start(pool, &self.tag).await?))),
        }
    }
}
