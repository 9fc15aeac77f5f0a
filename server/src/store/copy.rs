//! Copying a stopped SQLite coordinator's database into an empty PostgreSQL
//! one (`quorum-server migrate`): every table, in one PostgreSQL
//! transaction, verified before it commits.
//!
//! [`Source::open`] checks that the SQLite file is a quorum database with
//! every migration of this coordinator applied (no more, no fewer);
//! [`Target::open`] opens the PostgreSQL database as a coordinator does
//! (`Store::open`, which applies its migrations) and refuses it if any
//! table holds a row: a migration never merges. [`copy`] then, in one
//! PostgreSQL transaction, on one SQLite snapshot:
//! - takes the tables and their columns from PostgreSQL's schema
//!   (`information_schema`), checks that SQLite has the same tables with the
//!   same columns (`pragma_table_info`; a table or column on one side only
//!   is an error naming it), and orders the tables so that a table comes
//!   after those its foreign keys refer to (`pg_constraint`);
//! - reads each SQLite table in primary-key order and inserts its rows in
//!   multi-row `INSERT`s (up to [`BATCH_ROWS`] rows, [`BATCH_BYTES`] bytes,
//!   PostgreSQL's 65,535 parameters), each value converted to its
//!   PostgreSQL column's type (BIGINT, DOUBLE PRECISION, TEXT, BYTEA,
//!   BOOLEAN; a value that does not convert exactly is an error naming its
//!   column);
//! - moves each identity column's sequence past the copied ids (and past
//!   SQLite's `AUTOINCREMENT` high-water mark, so `canonical_log` never
//!   reuses a number a reader has seen);
//! - reads every table back from PostgreSQL, inside the transaction, in the
//!   same order, and compares its row count and digest (SHA-256 over the
//!   rows, each value in one canonical encoding, [`Hasher`]) with SQLite's:
//!   any difference aborts the transaction, naming the table.
//!
//! The transaction is a writer's of the database (`backend::Pool::begin_write`):
//! a coordinator started on the database meanwhile waits for its commit
//! before it writes anything, then finds the copied state (and its first
//! admin token). The database is checked empty again inside it. The one row
//! the migrations put in a table of their own (`scheduler_state`, see
//! [`SEEDED`]) does not count and is replaced by the source's.
//!
//! What [`copy`] returns holds the transaction open ([`Copied`]): the
//! caller copies the files beside the database, then commits (or drops it:
//! nothing was written). sqlx's own `_sqlx_migrations` is not copied (each
//! engine has its own migrations), nor SQLite's internal tables.
//!
//! This module speaks to both engines through sqlx directly rather than
//! through `backend`, whose statements are written once for either engine:
//! it is the one place that is about two engines at once, and its values are
//! typed by the PostgreSQL schema, not by the store's queries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Connection as _, Row as _, TypeInfo as _, ValueRef as _};
use tokio_stream::StreamExt as _;

use super::backend::{Pool, SQLITE_MIGRATOR};
use super::{Location, Store};

/// Rows of one `INSERT` at most.
pub const BATCH_ROWS: usize = 1_000;
/// Bytes of values of one `INSERT` at most (about; a single row may be larger).
pub const BATCH_BYTES: usize = 8 << 20;
/// PostgreSQL's limit on a statement's parameters.
const MAX_PARAMETERS: usize = 65_535;

/// Why a database could not be copied. Nothing was committed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path} is not a quorum database: {reason}")]
    NotQuorum { path: PathBuf, reason: String },
    #[error(
        "{path} is not at this quorum-server's schema version: {n_missing} of its migrations are not applied \
         (first {first_missing}); start this quorum-server on it once (it applies them), stop it, then migrate"
    )]
    SchemaBehind { path: PathBuf, n_missing: usize, first_missing: String },
    #[error(
        "{path} has migrations this quorum-server does not know ({unknown}): it was served by a newer \
         quorum-server; migrate it with that one"
    )]
    SchemaAhead { path: PathBuf, unknown: String },
    #[error(
        "the PostgreSQL database {url} already holds quorum data (table {table} has rows): migrate only into an \
         empty database; nothing is merged"
    )]
    NotEmpty { url: String, table: String },
    #[error("table {table} is in the {side} database only")]
    TableOnlyIn { table: String, side: Side },
    #[error("column {table}.{column} is in the {side} database only")]
    ColumnOnlyIn { table: String, column: String, side: Side },
    #[error("column {table}.{column} has PostgreSQL type {pg_type}, which migrate does not convert")]
    UnsupportedType { table: String, column: String, pg_type: String },
    #[error("the foreign keys of tables {tables} refer to each other in a cycle: no order to copy them in")]
    ForeignKeyCycle { tables: String },
    #[error("{table}.{column} holds a SQLite {found} value ({detail}) where PostgreSQL's column is {pg_type}")]
    Value { table: String, column: String, found: String, detail: String, pg_type: String },
    #[error(
        "table {table} did not verify: its {what} is {sqlite} in SQLite but {postgres} read back from PostgreSQL; \
         nothing was committed"
    )]
    Mismatch { table: String, what: &'static str, sqlite: String, postgres: String },
    #[error("reading {path}: {source}")]
    Sqlite { path: PathBuf, source: sqlx::Error },
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] super::Error),
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Error {
        Error::Postgres(super::Error::from(error))
    }
}

/// Which database a table or column was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Sqlite => "SQLite",
            Side::Postgres => "PostgreSQL",
        })
    }
}

/// The SQLite database to copy, checked: a quorum database at this
/// coordinator's schema version.
pub struct Source {
    path: PathBuf,
    connection: SqliteConnection,
}

impl Source {
    /// Opens the SQLite file at `path` (never creating it) and checks its
    /// migrations against this coordinator's. Writes nothing (SQLite may
    /// replay a write-ahead log left by a coordinator that was killed).
    pub async fn open(path: &Path) -> Result<Source, Error> {
        let sqlite_error = |source| Error::Sqlite { path: path.to_owned(), source };
        let options = SqliteConnectOptions::new().filename(path).create_if_missing(false);
        let mut connection = sqlx::ConnectOptions::connect(&options).await.map_err(sqlite_error)?;
        let not_quorum = |reason: String| Error::NotQuorum { path: path.to_owned(), reason };
        // The first read is where SQLite finds a file that is no database.
        let has_migrations: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
                .fetch_one(&mut connection)
                .await
                .map_err(|error| not_quorum(error.to_string()))?;
        if has_migrations == 0 {
            return Err(not_quorum("it has no _sqlx_migrations table".to_owned()));
        }
        let applied: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success ORDER BY version")
                .fetch_all(&mut connection)
                .await
                .map_err(|error| not_quorum(format!("reading _sqlx_migrations: {error}")))?;
        check_schema_version(path, &applied)?;
        Ok(Source { path: path.to_owned(), connection })
    }
}

/// Checks that the migrations applied to the SQLite file at `path` are
/// exactly this coordinator's (versions and checksums).
fn check_schema_version(path: &Path, applied: &[(i64, Vec<u8>)]) -> Result<(), Error> {
    let known: BTreeMap<i64, &sqlx::migrate::Migration> = SQLITE_MIGRATOR
        .iter()
        .filter(|migration| !migration.migration_type.is_down_migration())
        .map(|migration| (migration.version, migration))
        .collect();
    let applied: BTreeMap<i64, &[u8]> = applied.iter().map(|(version, checksum)| (*version, &checksum[..])).collect();
    let unknown: Vec<String> =
        applied.keys().filter(|version| !known.contains_key(version)).map(ToString::to_string).collect();
    if !unknown.is_empty() {
        return Err(Error::SchemaAhead { path: path.to_owned(), unknown: unknown.join(", ") });
    }
    for (version, checksum) in &applied {
        if known[version].checksum.as_ref() != *checksum {
            return Err(Error::NotQuorum {
                path: path.to_owned(),
                reason: format!("its migration {version} differs from this quorum-server's"),
            });
        }
    }
    let missing: Vec<&&sqlx::migrate::Migration> =
        known.iter().filter(|(version, _)| !applied.contains_key(version)).map(|(_, m)| m).collect();
    if let Some(first) = missing.first() {
        return Err(Error::SchemaBehind {
            path: path.to_owned(),
            n_missing: missing.len(),
            first_missing: format!("{} {}", first.version, first.description),
        });
    }
    Ok(())
}

/// Tables whose rows the migrations create (one row of scheduler state):
/// not counted when the target is checked empty, and emptied before the
/// source's rows are copied into them.
const SEEDED: &[&str] = &["scheduler_state"];

/// The PostgreSQL database to copy into, opened as a coordinator opens it
/// (its migrations applied) and found empty.
pub struct Target {
    store: Store,
    url: String,
}

impl Target {
    /// Opens the database at `url` through the store (applying the
    /// migrations) and refuses it if any of its tables holds a row.
    pub async fn open(url: &str) -> Result<Target, Error> {
        let store = Store::open(Location::Postgres(url.to_owned())).await?;
        let target = Target { store, url: Location::Postgres(url.to_owned()).to_string() };
        let checked = match target.pool().acquire().await {
            Ok(mut connection) => target.check_empty(&mut connection).await,
            Err(error) => Err(error.into()),
        };
        match checked {
            Ok(()) => Ok(target),
            Err(error) => {
                target.store.close().await;
                Err(error)
            }
        }
    }

    fn pool(&self) -> &PgPool {
        match &self.store.pool {
            Pool::Postgres(pool) => pool,
            Pool::Sqlite(_) => unreachable!("a postgres:// location opens a PostgreSQL pool"),
        }
    }

    async fn check_empty(&self, connection: &mut sqlx::PgConnection) -> Result<(), Error> {
        let tables = postgres_tables(&mut *connection).await?;
        for table in tables.keys().filter(|table| !SEEDED.contains(&table.as_str())) {
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", quoted(table));
            let any: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut *connection).await?;
            if any {
                return Err(Error::NotEmpty { url: self.url.clone(), table: table.clone() });
            }
        }
        Ok(())
    }
}

/// A table as copied and verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableCopy {
    pub table: String,
    pub n_rows: u64,
    /// The hex SHA-256 of its rows, equal on both sides.
    pub digest: String,
}

/// A verified copy, its PostgreSQL transaction still open: [`Copied::commit`]
/// makes it last; dropped, nothing of it was written.
pub struct Copied {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    target: Target,
    tables: Vec<TableCopy>,
}

impl Copied {
    /// The tables copied, in the order they were copied.
    pub fn tables(&self) -> &[TableCopy] {
        &self.tables
    }

    /// Commits the copy and closes the PostgreSQL store.
    pub async fn commit(self) -> Result<Vec<TableCopy>, Error> {
        let committed = self.tx.commit().await;
        self.target.store.close().await;
        committed?;
        Ok(self.tables)
    }

    /// Rolls the copy back and closes the PostgreSQL store.
    pub async fn abandon(self) {
        let _ = self.tx.rollback().await;
        self.target.store.close().await;
    }
}

/// Copies every table of `source` into `target` in one transaction, and
/// verifies each by its row count and digest read back from PostgreSQL.
pub async fn copy(source: Source, target: Target) -> Result<Copied, Error> {
    let Source { path, mut connection } = source;
    let mut tx = match target.pool().begin_with(super::backend::POSTGRES_BEGIN_WRITE).await {
        Ok(tx) => tx,
        Err(error) => {
            target.store.close().await;
            return Err(error.into());
        }
    };
    let copied = match target.check_empty(&mut tx).await {
        Ok(()) => copy_tables(&path, &mut connection, &mut tx).await,
        Err(error) => Err(error),
    };
    match copied {
        Ok(tables) => {
            let _ = connection.close().await;
            Ok(Copied { tx, target, tables })
        }
        Err(error) => {
            let _ = tx.rollback().await;
            let _ = connection.close().await;
            target.store.close().await;
            Err(error)
        }
    }
}

async fn copy_tables(
    path: &Path,
    sqlite: &mut SqliteConnection,
    tx: &mut sqlx::PgConnection,
) -> Result<Vec<TableCopy>, Error> {
    let sqlite_error = |source| Error::Sqlite { path: path.to_owned(), source };
    // One snapshot of the SQLite file for every table (a deferred
    // transaction: the snapshot is taken at its first read).
    let mut snapshot = sqlite.begin().await.map_err(sqlite_error)?;
    let tables = postgres_schema(&mut *tx).await?;
    check_same_tables(&mut snapshot, path, &tables).await?;
    let high_water = autoincrement_high_water(&mut snapshot, path).await?;
    let mut copied = Vec::with_capacity(tables.len());
    for table in copy_order(&mut *tx, &tables).await? {
        let table = &tables[&table];
        if SEEDED.contains(&table.name.as_str()) {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {}", quoted(&table.name)))).execute(&mut *tx).await?;
        }
        let from_sqlite = copy_table(&mut snapshot, path, &mut *tx, table).await?;
        move_sequences(&mut *tx, table, high_water.get(&table.name).copied().unwrap_or(0)).await?;
        let from_postgres = postgres_digest(&mut *tx, table).await?;
        if from_sqlite.n_rows != from_postgres.n_rows {
            return Err(Error::Mismatch {
                table: table.name.clone(),
                what: "row count",
                sqlite: from_sqlite.n_rows.to_string(),
                postgres: from_postgres.n_rows.to_string(),
            });
        }
        if from_sqlite.digest != from_postgres.digest {
            return Err(Error::Mismatch {
                table: table.name.clone(),
                what: "digest",
                sqlite: from_sqlite.digest,
                postgres: from_postgres.digest,
            });
        }
        copied.push(TableCopy { table: table.name.clone(), n_rows: from_sqlite.n_rows, digest: from_sqlite.digest });
    }
    snapshot.rollback().await.map_err(sqlite_error)?;
    Ok(copied)
}

/// How a value is converted and encoded: by its PostgreSQL column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// BIGINT (INTEGER, SMALLINT are read and written as 64-bit too).
    Int,
    /// DOUBLE PRECISION.
    Float,
    Text,
    /// BYTEA.
    Blob,
    /// BOOLEAN (SQLite keeps 0 and 1).
    Bool,
}

impl Kind {
    fn of(pg_type: &str) -> Option<Kind> {
        Some(match pg_type {
            "bigint" | "integer" | "smallint" => Kind::Int,
            "double precision" | "real" => Kind::Float,
            "text" | "character varying" => Kind::Text,
            "bytea" => Kind::Blob,
            "boolean" => Kind::Bool,
            _ => return None,
        })
    }
}

/// A column of a table, as PostgreSQL's schema has it.
#[derive(Clone, Debug)]
struct Column {
    name: String,
    pg_type: String,
    kind: Kind,
    /// An identity column, whose sequence is moved past the copied values.
    identity: bool,
}

/// A table to copy, as PostgreSQL's schema has it.
#[derive(Clone, Debug)]
struct Table {
    name: String,
    columns: Vec<Column>,
    /// The primary key's columns (every column when it has none): the order
    /// rows are read and digested in on both sides.
    order: Vec<String>,
}

/// A value on its way from SQLite to PostgreSQL.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
    Bool(bool),
}

impl Value {
    /// About how many bytes it binds.
    fn size(&self) -> usize {
        match self {
            Value::Text(text) => text.len(),
            Value::Blob(bytes) => bytes.len(),
            Value::Null | Value::Int(_) | Value::Float(_) | Value::Bool(_) => 8,
        }
    }
}

/// The digest of a table's rows: SHA-256 over each row in order, a row a
/// tag byte (0xff) then its values, each value a tag byte then its bytes (integers and floats 8 bytes big-endian,
/// a float by its IEEE bits; text and blobs their length, 8 bytes, then
/// their bytes), so that any two different sequences of rows differ.
#[derive(Default)]
struct Hasher {
    sha: Sha256,
    n_rows: u64,
}

/// What [`Hasher`] gives.
struct Digested {
    n_rows: u64,
    digest: String,
}

impl Hasher {
    fn row(&mut self, values: &[Value]) {
        // Each row starts with its own tag, so rows are delimited whatever their width.
        self.sha.update([0xff]);
        for value in values {
            match value {
                Value::Null => self.sha.update([0]),
                Value::Int(v) => {
                    self.sha.update([1]);
                    self.sha.update(v.to_be_bytes());
                }
                Value::Float(v) => {
                    self.sha.update([2]);
                    self.sha.update(v.to_bits().to_be_bytes());
                }
                Value::Text(text) => {
                    self.sha.update([3]);
                    self.sha.update((text.len() as u64).to_be_bytes());
                    self.sha.update(text.as_bytes());
                }
                Value::Blob(bytes) => {
                    self.sha.update([4]);
                    self.sha.update((bytes.len() as u64).to_be_bytes());
                    self.sha.update(bytes);
                }
                Value::Bool(v) => self.sha.update([5, u8::from(*v)]),
            }
        }
        self.n_rows += 1;
    }

    fn finish(self) -> Digested {
        Digested { n_rows: self.n_rows, digest: hex::encode(self.sha.finalize()) }
    }
}

/// `"name"`, quoted as an SQL identifier (both engines).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The tables of the PostgreSQL schema (but sqlx's), their columns in order.
async fn postgres_tables<'e>(
    executor: impl sqlx::PgExecutor<'e>,
) -> Result<BTreeMap<String, Vec<(String, String, bool)>>, Error> {
    let rows: Vec<(String, String, String, bool)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, c.is_identity::text = 'YES'
         FROM information_schema.columns c
         JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
           AND c.table_name <> '_sqlx_migrations'
         ORDER BY c.table_name, c.ordinal_position",
    )
    .fetch_all(executor)
    .await?;
    let mut tables: BTreeMap<String, Vec<(String, String, bool)>> = BTreeMap::new();
    for (table, column, pg_type, identity) in rows {
        tables.entry(table).or_default().push((column, pg_type, identity));
    }
    Ok(tables)
}

/// The tables to copy: PostgreSQL's, with their column types and primary keys.
async fn postgres_schema(tx: &mut sqlx::PgConnection) -> Result<BTreeMap<String, Table>, Error> {
    let keys: Vec<(String, String)> = sqlx::query_as(
        "SELECT k.table_name::text, k.column_name::text
         FROM information_schema.table_constraints c
         JOIN information_schema.key_column_usage k
           ON k.constraint_schema = c.constraint_schema AND k.constraint_name = c.constraint_name
         WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = current_schema()
         ORDER BY k.table_name, k.ordinal_position",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut primary_keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, column) in keys {
        primary_keys.entry(table).or_default().push(column);
    }
    let mut tables = BTreeMap::new();
    for (name, columns) in postgres_tables(&mut *tx).await? {
        let columns = columns
            .into_iter()
            .map(|(column, pg_type, identity)| match Kind::of(&pg_type) {
                Some(kind) => Ok(Column { name: column, pg_type, kind, identity }),
                None => Err(Error::UnsupportedType { table: name.clone(), column, pg_type }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let order =
            primary_keys.remove(&name).unwrap_or_else(|| columns.iter().map(|column| column.name.clone()).collect());
        tables.insert(name.clone(), Table { name, columns, order });
    }
    Ok(tables)
}

/// Checks that SQLite has the same tables as PostgreSQL, with the same
/// columns (by name; the order of each side's own is used to read it).
async fn check_same_tables(
    sqlite: &mut SqliteConnection,
    path: &Path,
    tables: &BTreeMap<String, Table>,
) -> Result<(), Error> {
    let sqlite_error = |source| Error::Sqlite { path: path.to_owned(), source };
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut *sqlite)
    .await
    .map_err(sqlite_error)?;
    let names: BTreeSet<String> = names.into_iter().collect();
    if let Some(table) = names.iter().find(|name| !tables.contains_key(*name)) {
        return Err(Error::TableOnlyIn { table: table.clone(), side: Side::Sqlite });
    }
    if let Some(table) = tables.keys().find(|name| !names.contains(*name)) {
        return Err(Error::TableOnlyIn { table: table.clone(), side: Side::Postgres });
    }
    for table in tables.values() {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
            .bind(&table.name)
            .fetch_all(&mut *sqlite)
            .await
            .map_err(sqlite_error)?;
        let columns: BTreeSet<String> = columns.into_iter().collect();
        let postgres: BTreeSet<&String> = table.columns.iter().map(|column| &column.name).collect();
        if let Some(column) = columns.iter().find(|column| !postgres.contains(column)) {
            return Err(Error::ColumnOnlyIn { table: table.name.clone(), column: column.clone(), side: Side::Sqlite });
        }
        if let Some(column) = postgres.iter().find(|column| !columns.contains(**column)) {
            return Err(Error::ColumnOnlyIn {
                table: table.name.clone(),
                column: (*column).clone(),
                side: Side::Postgres,
            });
        }
    }
    Ok(())
}

/// SQLite's `AUTOINCREMENT` high-water marks (`sqlite_sequence`), by table:
/// the largest id ever given, which may be above any row left.
async fn autoincrement_high_water(sqlite: &mut SqliteConnection, path: &Path) -> Result<BTreeMap<String, i64>, Error> {
    let sqlite_error = |source| Error::Sqlite { path: path.to_owned(), source };
    let exists: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'")
            .fetch_one(&mut *sqlite)
            .await
            .map_err(sqlite_error)?;
    if exists == 0 {
        return Ok(BTreeMap::new());
    }
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, seq FROM sqlite_sequence").fetch_all(&mut *sqlite).await.map_err(sqlite_error)?;
    Ok(rows.into_iter().collect())
}

/// The tables in an order where each comes after the tables its foreign
/// keys refer to (by name among those free to go).
async fn copy_order(tx: &mut sqlx::PgConnection, tables: &BTreeMap<String, Table>) -> Result<Vec<String>, Error> {
    let references: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text
         FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
         WHERE c.contype = 'f' AND n.nspname = current_schema()",
    )
    .fetch_all(&mut *tx)
    .await?;
    let unquoted = |name: String| name.trim_matches('"').to_owned();
    let mut waits_for: BTreeMap<&str, BTreeSet<String>> =
        tables.keys().map(|name| (name.as_str(), BTreeSet::new())).collect();
    for (table, referred) in references {
        let (table, referred) = (unquoted(table), unquoted(referred));
        // A table referring to itself would need its rows in order; none does.
        if table != referred
            && let Some(waits) = waits_for.get_mut(table.as_str())
        {
            waits.insert(referred);
        }
    }
    let mut order = Vec::with_capacity(tables.len());
    while !waits_for.is_empty() {
        let ready: Vec<&str> = waits_for.iter().filter(|(_, waits)| waits.is_empty()).map(|(name, _)| *name).collect();
        if ready.is_empty() {
            let tables = waits_for.keys().copied().collect::<Vec<_>>().join(", ");
            return Err(Error::ForeignKeyCycle { tables });
        }
        for name in ready {
            waits_for.remove(name);
            for waits in waits_for.values_mut() {
                waits.remove(name);
            }
            order.push(name.to_owned());
        }
    }
    Ok(order)
}

/// `SELECT` of a table's columns in its digest order, for either engine.
fn select_in_order(table: &Table) -> String {
    let columns: Vec<String> = table.columns.iter().map(|column| quoted(&column.name)).collect();
    let order: Vec<String> = table.order.iter().map(|column| quoted(column)).collect();
    format!("SELECT {} FROM {} ORDER BY {}", columns.join(", "), quoted(&table.name), order.join(", "))
}

/// Copies one table, in multi-row `INSERT`s; the digest of what SQLite held.
async fn copy_table(
    sqlite: &mut SqliteConnection,
    path: &Path,
    tx: &mut sqlx::PgConnection,
    table: &Table,
) -> Result<Digested, Error> {
    let batch_rows = BATCH_ROWS.min(MAX_PARAMETERS / table.columns.len().max(1));
    let mut hasher = Hasher::default();
    let mut batch: Vec<Vec<Value>> = Vec::with_capacity(batch_rows);
    let mut batch_bytes = 0;
    let select = select_in_order(table);
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&mut *sqlite);
    while let Some(row) = rows.next().await {
        let row = row.map_err(|source| Error::Sqlite { path: path.to_owned(), source })?;
        let values = sqlite_values(&row, table)?;
        hasher.row(&values);
        batch_bytes += values.iter().map(Value::size).sum::<usize>();
        batch.push(values);
        if batch.len() >= batch_rows || batch_bytes >= BATCH_BYTES {
            insert(&mut *tx, table, &mut batch).await?;
            batch_bytes = 0;
        }
    }
    drop(rows);
    if !batch.is_empty() {
        insert(&mut *tx, table, &mut batch).await?;
    }
    Ok(hasher.finish())
}

/// Inserts the rows of `batch` (left empty) in one statement.
async fn insert(tx: &mut sqlx::PgConnection, table: &Table, batch: &mut Vec<Vec<Value>>) -> Result<(), Error> {
    let columns: Vec<String> = table.columns.iter().map(|column| quoted(&column.name)).collect();
    let mut builder = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
        "INSERT INTO {} ({}) ",
        quoted(&table.name),
        columns.join(", ")
    ));
    builder.push_values(batch.drain(..), |mut row, values| {
        for (value, column) in values.into_iter().zip(&table.columns) {
            match (value, column.kind) {
                (Value::Null, Kind::Int) => row.push_bind(None::<i64>),
                (Value::Null, Kind::Float) => row.push_bind(None::<f64>),
                (Value::Null, Kind::Text) => row.push_bind(None::<String>),
                (Value::Null, Kind::Blob) => row.push_bind(None::<Vec<u8>>),
                (Value::Null, Kind::Bool) => row.push_bind(None::<bool>),
                (Value::Int(v), _) => row.push_bind(v),
                (Value::Float(v), _) => row.push_bind(v),
                (Value::Text(v), _) => row.push_bind(v),
                (Value::Blob(v), _) => row.push_bind(v),
                (Value::Bool(v), _) => row.push_bind(v),
            };
        }
    });
    builder.build().persistent(false).execute(&mut *tx).await?;
    Ok(())
}

/// A SQLite row of `table`, each value as its PostgreSQL column's type.
fn sqlite_values(row: &SqliteRow, table: &Table) -> Result<Vec<Value>, Error> {
    table.columns.iter().enumerate().map(|(i, column)| sqlite_value(row, i, table, column)).collect()
}

/// The value of column `i` of a SQLite row, as its PostgreSQL column's type:
/// exactly, or an error naming the column.
fn sqlite_value(row: &SqliteRow, i: usize, table: &Table, column: &Column) -> Result<Value, Error> {
    let raw = row.try_get_raw(i).map_err(Error::from)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    // The type of the value itself (SQLite's storage class), not the column's.
    let found = raw.type_info().name().to_owned();
    let refuse = |detail: String| Error::Value {
        table: table.name.clone(),
        column: column.name.clone(),
        found: found.clone(),
        detail,
        pg_type: column.pg_type.clone(),
    };
    let decode = |error: sqlx::Error| refuse(error.to_string());
    Ok(match (column.kind, found.as_str()) {
        (Kind::Int, "INTEGER") => Value::Int(row.try_get_unchecked(i).map_err(decode)?),
        (Kind::Bool, "INTEGER") => match row.try_get_unchecked::<i64, _>(i).map_err(decode)? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            other => return Err(refuse(format!("{other} is neither 0 nor 1"))),
        },
        (Kind::Float, "REAL") => Value::Float(row.try_get_unchecked(i).map_err(decode)?),
        (Kind::Float, "INTEGER") => {
            let v: i64 = row.try_get_unchecked(i).map_err(decode)?;
            let float = v as f64;
            // Exact below 2^53 in magnitude.
            if float as i64 != v || v.unsigned_abs() > 1 << 53 {
                return Err(refuse(format!("{v} has no exact float")));
            }
            Value::Float(float)
        }
        (Kind::Text, "TEXT") => Value::Text(row.try_get_unchecked(i).map_err(decode)?),
        (Kind::Blob, "BLOB") => Value::Blob(row.try_get_unchecked(i).map_err(decode)?),
        (Kind::Blob, "TEXT") => Value::Blob(row.try_get_unchecked::<String, _>(i).map_err(decode)?.into_bytes()),
        _ => return Err(refuse("not convertible".to_owned())),
    })
}

/// The value of column `i` of a PostgreSQL row, as its column's type.
fn postgres_value(row: &PgRow, i: usize, column: &Column) -> Result<Value, sqlx::Error> {
    if row.try_get_raw(i)?.is_null() {
        return Ok(Value::Null);
    }
    Ok(match (column.kind, column.pg_type.as_str()) {
        (Kind::Int, "integer") => Value::Int(i64::from(row.try_get::<i32, _>(i)?)),
        (Kind::Int, "smallint") => Value::Int(i64::from(row.try_get::<i16, _>(i)?)),
        (Kind::Int, _) => Value::Int(row.try_get(i)?),
        (Kind::Float, "real") => Value::Float(f64::from(row.try_get::<f32, _>(i)?)),
        (Kind::Float, _) => Value::Float(row.try_get(i)?),
        (Kind::Text, _) => Value::Text(row.try_get(i)?),
        (Kind::Blob, _) => Value::Blob(row.try_get(i)?),
        (Kind::Bool, _) => Value::Bool(row.try_get(i)?),
    })
}

/// Moves the sequence of each identity column of `table` past its largest
/// value and past `high_water` (SQLite's `AUTOINCREMENT` mark).
async fn move_sequences(tx: &mut sqlx::PgConnection, table: &Table, high_water: i64) -> Result<(), Error> {
    for column in table.columns.iter().filter(|column| column.identity) {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), GREATEST(COALESCE(MAX({}), 0), $3) + 1, false) FROM {}",
            quoted(&column.name),
            quoted(&table.name)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(quoted(&table.name))
            .bind(&column.name)
            .bind(high_water)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// The digest of `table` as PostgreSQL holds it now (in the transaction).
async fn postgres_digest(tx: &mut sqlx::PgConnection, table: &Table) -> Result<Digested, Error> {
    let mut hasher = Hasher::default();
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(select_in_order(table))).fetch(&mut *tx);
    while let Some(row) = rows.next().await {
        let row = row?;
        let values = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| postgres_value(&row, i, column))
            .collect::<Result<Vec<_>, _>>()?;
        hasher.row(&values);
    }
    Ok(hasher.finish())
}

/// The digest of every table of the SQLite file at `path` and of the
/// PostgreSQL database at `url`, each read in one transaction (for tests:
/// two databases are the same after a copy, and stay comparable after).
#[cfg(test)]
pub(super) async fn digests(path: &Path, url: &str) -> Result<(Vec<TableCopy>, Vec<TableCopy>), Error> {
    let sqlite_error = |source| Error::Sqlite { path: path.to_owned(), source };
    let mut sqlite = Source::open(path).await?.connection;
    let mut postgres = <sqlx::PgConnection as sqlx::Connection>::connect(url).await?;
    let mut tx = postgres.begin().await?;
    let tables = postgres_schema(&mut tx).await?;
    let mut snapshot = sqlite.begin().await.map_err(sqlite_error)?;
    let (mut from_sqlite, mut from_postgres) = (Vec::new(), Vec::new());
    for table in tables.values() {
        let mut hasher = Hasher::default();
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(select_in_order(table))).fetch(&mut *snapshot);
        while let Some(row) = rows.next().await {
            let row = row.map_err(sqlite_error)?;
            hasher.row(&sqlite_values(&row, table)?);
        }
        drop(rows);
        let Digested { n_rows, digest } = hasher.finish();
        from_sqlite.push(TableCopy { table: table.name.clone(), n_rows, digest });
        let Digested { n_rows, digest } = postgres_digest(&mut tx, table).await?;
        from_postgres.push(TableCopy { table: table.name.clone(), n_rows, digest });
    }
    Ok((from_sqlite, from_postgres))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_databases::{Engine, TestDatabase, new_database};

    fn digest(rows: &[&[Value]]) -> String {
        let mut hasher = Hasher::default();
        for row in rows {
            hasher.row(row);
        }
        hasher.finish().digest
    }

    #[test]
    fn the_digest_tells_apart_values_that_a_naive_encoding_would_confuse() {
        use Value::*;
        let distinct = [
            digest(&[&[Text("ab".into()), Text("c".into())]]),
            digest(&[&[Text("a".into()), Text("bc".into())]]),
            digest(&[&[Text("ab".into())], &[Text("c".into())]]),
            digest(&[&[Blob(b"ab".to_vec()), Text("c".into())]]),
            digest(&[&[Null, Text("abc".into())]]),
            digest(&[&[Text(String::new()), Text("abc".into())]]),
            digest(&[&[Int(1), Text("abc".into())]]),
            digest(&[&[Float(1.0), Text("abc".into())]]),
            digest(&[&[Float(-0.0), Text("abc".into())]]),
            digest(&[&[Float(0.0), Text("abc".into())]]),
            digest(&[&[Bool(true), Text("abc".into())]]),
        ];
        let unique: BTreeSet<&String> = distinct.iter().collect();
        assert_eq!(unique.len(), distinct.len(), "{distinct:#?}");
        assert_eq!(digest(&[&[Int(7), Null]]), digest(&[&[Int(7), Null]]), "the same rows, the same digest");
    }

    /// Rows in every table of a SQLite store, with the values a copy could
    /// get wrong: NULLs, empty and binary blobs, floats that print badly
    /// (0.1 + 0.2, 1e300, subnormals), the extreme integers, text
    /// beyond ASCII, ids with gaps, and an `AUTOINCREMENT` mark above the
    /// largest id left (a `canonical_log` row deleted).
    const EVERY_TABLE: &str = r#"
        INSERT INTO apps (digest, module, size, created_at) VALUES
            ('app-1', X'0061736d01000000', 8, 1), ('validator-1', X'', 0, 2);
        INSERT INTO projects (id, name, app_digest, state, min_quorum, target_results, max_error_results,
                max_total_results, deadline_ms, fuel_limit, memory_limit_bytes, output_limit_bytes,
                wall_time_limit_ms, validator, nan_canonicalization, created_at, fuzzy_format,
                relative_tolerance, absolute_tolerance, validator_digest, app_signature, app_public_key, seed,
                args, env)
            VALUES
            (1, 'primes', 'app-1', 'active', 2, 2, 3, 8, 60000, 9223372036854775807, 1, 2, 3, 'bitwise', 0, 10,
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
            (7, 'fuzzy-ü', 'app-1', 'cancelled', 1, 1, 1, 1, 1, 1, 1, 1, 1, 'custom', 1, 11, 'json',
                0.30000000000000004, 5e-324, 'validator-1', X'00ff00', X'ff', -9223372036854775808,
                '["a b", "✓"]', '{"K": "v"}');
        INSERT INTO batches (id, project_id, state, pause_reason, n_work_units, created_at, avg_turnaround_ms,
                min_quorum, priority)
            VALUES (3, 1, 'active', NULL, 2, 12, NULL, NULL, NULL),
                   (4, 7, 'paused', 'errors: ''boom''', 1, 13, 99, 1, -5);
        INSERT INTO work_units (id, project_id, name, input, state, fail_reason, target_results,
                canonical_result_id, created_at, ended_at, batch_id, random_seed, args)
            VALUES
            (1, 1, '0-100', X'', 'done', NULL, 2, 2, 14, 20, 3, -1, NULL),
            (2, 1, '100-200', X'00', 'open', NULL, 2, NULL, 14, NULL, 3, NULL, '[]'),
            (1000, 7, 'wü ✓ ;?', X'ffff0000', 'failed', 'too many errors', 1, NULL, 15, 21, 4, 0, NULL);
        INSERT INTO hosts (id, token_hash, name, n_cpus, memory_bytes, engine, os, created_at, last_contact_at,
                n_valid, total_credit, account, avg_turnaround_ms, address)
            VALUES
            (1, 'hash-1', 'alpha', 4, 8000000000, 'wasmtime', 'linux', 16, 30, 2, 1e300, '', NULL, ''),
            (5, 'hash-5', 'béta', 1, 1, 'wasmtime', 'macos', 17, 31, 0, -0.0, 'alice', 12, '10.0.0.1:9');
        INSERT INTO results (id, work_unit_id, project_id, server_state, outcome, validate_state, host_id,
                sent_at, deadline, received_at, output, output_digest, fuel_used, run_time_ms, stderr_tail,
                error_message, engine, granted_credit, created_at, priority)
            VALUES
            (1, 1, 1, 'over', 'success', 'valid', 1, 18, 60018, 19, X'3235', 'd-25', 1000, 5, '', NULL,
                'wasmtime', 0.1, 14, 0),
            (2, 1, 1, 'over', 'success', 'valid', 5, 18, 60018, 19, X'3235', 'd-25', 1000, 5, NULL, NULL,
                'wasmtime', 2.2250738585072014e-308, 14, 0),
            (3, 2, 1, 'in_progress', NULL, 'pending', 5, 19, 60019, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, 0, 14, 3),
            (9, 1000, 7, 'over', 'client_error', 'invalid', 1, 19, 60019, 20, NULL, NULL, NULL, NULL,
                'line 1
line 2', 'trap: unreachable', 'wasmtime', 0, NULL, -5);
        INSERT INTO api_tokens (id, token_hash, role, created_at, revoked_at)
            VALUES (1, 'api-1', 'admin', 1, NULL), (2, 'api-2', 'submit', 2, 3);
        INSERT INTO api_token_projects (token_id, project) VALUES (2, 'primes'), (2, 'not-yet');
        INSERT INTO host_app_quotas (host_id, app_digest, daily_quota, results_today, quota_day)
            VALUES (1, 'app-1', 100, 2, 19700), (5, 'app-1', 1, 0, 19701);
        INSERT INTO batch_error_hosts (batch_id, host_id, error_message, seq) VALUES (4, 1, 'trap', 0);
        INSERT INTO files (digest, size, created_at, p2p_meta) VALUES ('f-1', 3, 1, NULL), ('f-2', 0, 2, X'01');
        INSERT INTO project_files (project_id, name, digest) VALUES (1, 'table.bin', 'f-1');
        INSERT INTO work_unit_files (work_unit_id, name, digest) VALUES (2, 'own.txt', 'f-2');
        INSERT INTO result_files (result_id, name, digest, size, data)
            VALUES (1, 'out.txt', 'o-1', 2, X'6f6b'), (2, 'big.bin', 'o-2', 99999999, NULL);
        INSERT INTO canonical_log (seq, project_id, work_unit_id) VALUES (1, 1, 1), (2, 7, 1000);
        DELETE FROM canonical_log WHERE seq = 2;
    "#;

    fn sqlite_path(database: &TestDatabase) -> &Path {
        match &database.location {
            Location::Sqlite(path) => path,
            Location::Postgres(_) => unreachable!("a SQLite test database"),
        }
    }

    fn postgres_url(database: &TestDatabase) -> &str {
        match &database.location {
            Location::Postgres(url) => url,
            Location::Sqlite(_) => unreachable!("a PostgreSQL test database"),
        }
    }

    async fn sqlite_connection(database: &TestDatabase) -> SqliteConnection {
        let options = SqliteConnectOptions::new().filename(sqlite_path(database));
        sqlx::ConnectOptions::connect(&options).await.expect("connect to the SQLite file")
    }

    async fn postgres_connection(database: &TestDatabase) -> sqlx::PgConnection {
        <sqlx::PgConnection as sqlx::Connection>::connect(postgres_url(database)).await.expect("connect")
    }

    /// A SQLite store with rows in every table, and an empty PostgreSQL database.
    async fn every_table_and_empty_postgres() -> (TestDatabase, TestDatabase) {
        let sqlite = new_database(Engine::Sqlite).await;
        Store::open(sqlite.location.clone()).await.expect("create the SQLite store").close().await;
        let mut connection = sqlite_connection(&sqlite).await;
        sqlx::raw_sql(EVERY_TABLE).execute(&mut connection).await.expect("fill every table");
        connection.close().await.expect("close");
        (sqlite, new_database(Engine::Postgres).await)
    }

    async fn copy_and_commit(sqlite: &TestDatabase, postgres: &TestDatabase) -> Result<Vec<TableCopy>, Error> {
        let source = Source::open(sqlite_path(sqlite)).await?;
        let target = Target::open(postgres_url(postgres)).await?;
        copy(source, target).await?.commit().await
    }

    async fn count(connection: &mut sqlx::PgConnection, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {}", quoted(table))))
            .fetch_one(connection)
            .await
            .expect("count")
    }

    #[tokio::test]
    async fn every_table_is_copied_and_its_digest_is_the_same_on_both_sides() {
        let (sqlite, postgres) = every_table_and_empty_postgres().await;
        let copied = copy_and_commit(&sqlite, &postgres).await.expect("copy");

        let (from_sqlite, from_postgres) =
            digests(sqlite_path(&sqlite), postgres_url(&postgres)).await.expect("digests");
        assert_eq!(from_sqlite, from_postgres, "every table's rows are the same, read from each database");
        let names: BTreeSet<&str> = from_sqlite.iter().map(|table| table.table.as_str()).collect();
        let copied_names: BTreeSet<&str> = copied.iter().map(|table| table.table.as_str()).collect();
        assert_eq!(names, copied_names, "every table is copied");
        assert!(names.len() >= 15 && !names.contains("_sqlx_migrations"), "{names:?}");
        for table in &from_sqlite {
            assert!(table.n_rows > 0, "the test fills every table: {} is empty", table.table);
            let in_copy = copied.iter().find(|copied| copied.table == table.table).expect("copied");
            assert_eq!(in_copy, table, "what the copy verified is what both databases hold");
        }
        let rows = |name: &str| copied.iter().find(|table| table.table == name).map(|table| table.n_rows);
        assert_eq!((rows("results"), rows("hosts"), rows("canonical_log")), (Some(4), Some(2), Some(1)));
        // Tables come after those their foreign keys refer to.
        let position = |name: &str| copied.iter().position(|table| table.table == name).expect("copied");
        assert!(position("apps") < position("projects") && position("projects") < position("batches"));
        assert!(position("batches") < position("work_units") && position("hosts") < position("results"));
        assert!(position("work_units") < position("results") && position("results") < position("result_files"));

        let mut connection = postgres_connection(&postgres).await;
        let (credit, blob, seed, name): (f64, Vec<u8>, i64, String) = sqlx::query_as(
            "SELECT h.total_credit, w.input, p.seed, w.name FROM hosts h, work_units w, projects p
             WHERE h.id = 1 AND w.id = 1000 AND p.id = 7",
        )
        .fetch_one(&mut connection)
        .await
        .expect("read back");
        assert_eq!((credit, blob, seed, name.as_str()), (1e300, vec![0xff, 0xff, 0, 0], i64::MIN, "wü ✓ ;?"));
        let tolerances: (f64, f64) =
            sqlx::query_as("SELECT relative_tolerance, absolute_tolerance FROM projects WHERE id = 7")
                .fetch_one(&mut connection)
                .await
                .unwrap();
        assert_eq!(tolerances, (0.1 + 0.2, 5e-324), "floats are copied bit for bit");
        let nulls: (Option<Vec<u8>>, Option<String>, Option<f64>) = sqlx::query_as(
            "SELECT r.output, r.outcome, p.relative_tolerance FROM results r, projects p WHERE r.id = 3 AND p.id = 1",
        )
        .fetch_one(&mut connection)
        .await
        .unwrap();
        assert_eq!(nulls, (None, None, None));

        // The digest sees a change of one value, in its table only.
        sqlx::query("UPDATE results SET granted_credit = 0.1000000000000001 WHERE id = 1")
            .execute(&mut connection)
            .await
            .unwrap();
        let (from_sqlite, from_postgres) =
            digests(sqlite_path(&sqlite), postgres_url(&postgres)).await.expect("digests");
        let differing: Vec<&str> =
            from_sqlite.iter().zip(&from_postgres).filter(|(a, b)| a != b).map(|(a, _)| a.table.as_str()).collect();
        assert_eq!(differing, ["results"]);

        // Identity sequences moved past the copied ids, and canonical_log's
        // past SQLite's AUTOINCREMENT mark (2, though only 1 is left).
        let next_host: i64 = sqlx::query_scalar(
            "INSERT INTO hosts (token_hash, name, n_cpus, memory_bytes, engine, os, created_at, last_contact_at)
             VALUES ('new', 'new', 1, 1, 'wasmtime', 'linux', 1, 1) RETURNING id",
        )
        .fetch_one(&mut connection)
        .await
        .unwrap();
        assert_eq!(next_host, 6);
        let next_seq: i64 =
            sqlx::query_scalar("INSERT INTO canonical_log (project_id, work_unit_id) VALUES (1, 2) RETURNING seq")
                .fetch_one(&mut connection)
                .await
                .unwrap();
        assert_eq!(next_seq, 3, "a number a reader may have seen is never given again");
    }

    #[tokio::test]
    async fn a_table_of_many_rows_is_copied_in_batches() {
        let (sqlite, postgres) = every_table_and_empty_postgres().await;
        let mut connection = sqlite_connection(&sqlite).await;
        // More rows than one INSERT takes, some large enough to end a batch by size.
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 10 UNION ALL SELECT i + 1 FROM n WHERE i < 2600)
             INSERT INTO results (id, work_unit_id, project_id, server_state, validate_state, output, granted_credit)
             SELECT i, 2, 1, 'unsent', 'pending', CASE WHEN i % 500 = 0 THEN zeroblob(3000000) END, i / 7.0 FROM n",
        )
        .execute(&mut connection)
        .await
        .unwrap();
        connection.close().await.unwrap();
        let copied = copy_and_commit(&sqlite, &postgres).await.expect("copy");
        let results = copied.iter().find(|table| table.table == "results").expect("results copied");
        assert_eq!(results.n_rows, 4 + 2591);
        let (from_sqlite, from_postgres) =
            digests(sqlite_path(&sqlite), postgres_url(&postgres)).await.expect("digests");
        assert_eq!(from_sqlite, from_postgres);
    }

    #[tokio::test]
    async fn a_postgres_database_holding_any_row_is_refused_and_left_as_it_was() {
        let (sqlite, postgres) = every_table_and_empty_postgres().await;
        Target::open(postgres_url(&postgres)).await.expect("an empty database is accepted").store.close().await;
        let mut connection = postgres_connection(&postgres).await;
        sqlx::query("INSERT INTO files (digest, size, created_at) VALUES ('only-row', 1, 1)")
            .execute(&mut connection)
            .await
            .unwrap();
        let refused = copy_and_commit(&sqlite, &postgres).await.unwrap_err();
        assert!(matches!(&refused, Error::NotEmpty { table, .. } if table == "files"), "{refused}");
        assert!(refused.to_string().contains("already holds quorum data"), "{refused}");
        assert_eq!((count(&mut connection, "files").await, count(&mut connection, "hosts").await), (1, 0));
    }

    #[tokio::test]
    async fn a_value_that_does_not_convert_aborts_the_copy_and_leaves_postgres_empty() {
        let (sqlite, postgres) = every_table_and_empty_postgres().await;
        // SQLite keeps a text in an integer column; PostgreSQL's BIGINT cannot.
        let mut connection = sqlite_connection(&sqlite).await;
        sqlx::query("UPDATE results SET fuel_used = 'lots' WHERE id = 2").execute(&mut connection).await.unwrap();
        connection.close().await.unwrap();

        let refused = copy_and_commit(&sqlite, &postgres).await.unwrap_err();
        assert!(
            matches!(&refused, Error::Value { table, column, .. } if table == "results" && column == "fuel_used"),
            "{refused}"
        );
        // The tables copied before results (apps, hosts, projects...) were rolled back with it.
        let mut connection = postgres_connection(&postgres).await;
        for table in ["apps", "projects", "hosts", "work_units", "results"] {
            assert_eq!(count(&mut connection, table).await, 0, "{table} is empty after the failed copy");
        }
        Target::open(postgres_url(&postgres)).await.expect("still empty: a later copy may go on").store.close().await;
    }

    #[tokio::test]
    async fn a_file_that_is_no_quorum_database_or_is_behind_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
        let refused = Source::open(&garbage).await.err().expect("refused");
        assert!(matches!(refused, Error::NotQuorum { .. }), "{refused}");

        let other = new_database(Engine::Sqlite).await;
        let options = SqliteConnectOptions::new().filename(sqlite_path(&other)).create_if_missing(true);
        let mut connection = sqlx::ConnectOptions::connect(&options).await.unwrap();
        sqlx::query("CREATE TABLE t (x)").execute(&mut connection).await.unwrap();
        connection.close().await.unwrap();
        let refused = Source::open(sqlite_path(&other)).await.err().expect("refused");
        assert!(refused.to_string().contains("has no _sqlx_migrations table"), "{refused}");

        let behind = new_database(Engine::Sqlite).await;
        Store::open(behind.location.clone()).await.unwrap().close().await;
        let mut connection = sqlite_connection(&behind).await;
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)")
            .execute(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
        let refused = Source::open(sqlite_path(&behind)).await.err().expect("refused");
        assert!(matches!(refused, Error::SchemaBehind { n_missing: 1, .. }), "{refused}");
    }

    #[test]
    fn a_sqlite_file_must_be_at_this_coordinators_schema_version() {
        let path = Path::new("/srv/quorum.db");
        let all: Vec<(i64, Vec<u8>)> = SQLITE_MIGRATOR
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| (m.version, m.checksum.to_vec()))
            .collect();
        check_schema_version(path, &all).expect("every migration applied");

        let behind = check_schema_version(path, &all[..all.len() - 1]).unwrap_err();
        assert!(matches!(behind, Error::SchemaBehind { n_missing: 1, .. }), "{behind}");
        assert!(behind.to_string().contains("start this quorum-server on it once"), "{behind}");

        let mut ahead = all.clone();
        ahead.push((99_991_231_000_000, vec![0]));
        let ahead = check_schema_version(path, &ahead).unwrap_err();
        assert!(matches!(ahead, Error::SchemaAhead { .. }), "{ahead}");

        let mut edited = all.clone();
        edited[0].1 = vec![1, 2, 3];
        let edited = check_schema_version(path, &edited).unwrap_err();
        assert!(matches!(edited, Error::NotQuorum { .. }), "{edited}");
    }
}
