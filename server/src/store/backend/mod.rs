//! The seam between the store's SQL and the database engine under it.
//!
//! The rest of the store names the engine only through this module: the
//! row, transaction and query-builder types ([`Db`], [`DbRow`], [`Tx`]), the
//! executor bound ([`Executor`]), and the few operations whose SQL or
//! behaviour is the engine's own (opening and migrating, how a write
//! transaction begins, which errors mean "cannot write now", what the
//! database takes on disk, background maintenance). SQL that is the same on
//! every engine is written once, in the domain modules beside this one.
//!
//! Today the one engine is SQLite (`sqlite`), chosen at compile time: the
//! aliases resolve to sqlx's SQLite types, so the seam costs nothing per
//! query or per row (no dynamic dispatch, no boxing). A second engine
//! (PostgreSQL, issue 15) comes in as a sibling module with the same items;
//! the store then dispatches once per public call (an enum over the
//! engines' stores), never per statement. See ARCHITECTURE.md, "Store
//! backends".

mod sqlite;

pub(super) use sqlite::{
    Connection, Db, DbRow, Executor, Pool, WriterOptions, begin_group, begin_write, cannot_write, checkpoints,
    make_private, not_writable, open, size_on_disk,
};

/// A transaction on the store's engine.
pub(super) type Tx<'c> = sqlx::Transaction<'c, Db>;
