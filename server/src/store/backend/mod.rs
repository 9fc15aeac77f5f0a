//! The seam between the store's SQL and the database engines under it.
//!
//! The rest of the store names the engine only through this module: a pool
//! ([`Pool`]), a transaction ([`Tx`]), the writer's connection
//! ([`Connection`]), statements ([`query`], [`query_scalar`],
//! [`QueryBuilder`]) and rows ([`Row`]), and the few operations whose SQL or
//! behaviour is the engine's own (opening and migrating, how a write
//! transaction begins, which errors mean "cannot write now" or "try again",
//! what the database takes on disk, background maintenance). SQL that is the
//! same on every engine is written once, in the domain modules beside this
//! one, with `?` placeholders (SQLite's own; `?N` where a value is used twice);
//! the PostgreSQL adapter numbers them `$N` and runs the statements of one
//! call one by one ([`postgres::statements`]).
//!
//! Each engine is an enum variant holding sqlx's native type (`sqlx::Sqlite`,
//! `sqlx::Postgres`), so a statement dispatches once, when it runs, and is
//! then executed by the engine's own driver with its own statement cache;
//! bound values are a small owned enum ([`Value`]), the only conversion.
//! Rows are decoded by name into the few types the store uses ([`Decode`]);
//! PostgreSQL's narrower integer results (`INT4` from a `CASE` or a literal,
//! `BOOL` from a comparison) widen to what SQLite would have given. sqlx's
//! `Any` driver would copy every row into its own values and hides the
//! engines' options (SQLite's pragmas, statement cache size). See
//! ARCHITECTURE.md, "Store backends".

mod postgres;
mod sqlite;

use std::borrow::Cow;

use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{Database, Row as _};

pub(super) use postgres::{
    BEGIN_WRITE as POSTGRES_BEGIN_WRITE, ChangeListener, announce_changes, is_postgres_url, statistics,
};
pub(super) use sqlite::{MIGRATOR as SQLITE_MIGRATOR, checkpoints, make_private, not_writable, size_on_disk};

use super::Result;

/// The pool of connections of the store's engine.
#[derive(Clone, Debug)]
pub(in crate::store) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A transaction on the store's engine.
pub(in crate::store) enum Tx<'c> {
    Sqlite(sqlx::Transaction<'c, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'c, sqlx::Postgres>),
}

/// The group-commit writer's own connection.
pub(in crate::store) enum Connection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// How the writer opens its connection again after a failed group.
#[derive(Clone, Debug)]
pub(in crate::store) enum WriterOptions {
    Sqlite(sqlx::sqlite::SqliteConnectOptions),
    Postgres(sqlx::postgres::PgConnectOptions),
}

/// What an opened database gives the store: the pool, the writer's
/// connection and how to open it again.
pub(in crate::store) struct Opened {
    pub pool: Pool,
    pub connection: Connection,
    pub writer_options: WriterOptions,
}

/// Where the store's database is: a SQLite file or a PostgreSQL server.
#[derive(Clone, Debug)]
pub enum Location {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Location {
    /// `postgres://` and `postgresql://` URLs name a PostgreSQL database;
    /// anything else is a SQLite file (`sqlite://` prefix allowed).
    pub fn parse(text: &str) -> Location {
        if is_postgres_url(text) {
            Location::Postgres(text.to_owned())
        } else {
            let path = text.strip_prefix("sqlite://").unwrap_or(text);
            Location::Sqlite(std::path::PathBuf::from(path))
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }
}

impl From<&std::path::Path> for Location {
    fn from(path: &std::path::Path) -> Location {
        Location::Sqlite(path.to_owned())
    }
}

impl From<std::path::PathBuf> for Location {
    fn from(path: std::path::PathBuf) -> Location {
        Location::Sqlite(path)
    }
}

impl From<&std::path::PathBuf> for Location {
    fn from(path: &std::path::PathBuf) -> Location {
        Location::Sqlite(path.clone())
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => write!(f, "{}", postgres::redacted(url)),
        }
    }
}

/// The message of a write the engine could not do now (a full disk, a
/// server shutting down): a condition that passes.
pub(in crate::store) fn cannot_write(error: &sqlx::Error) -> Option<String> {
    sqlite::cannot_write(error).or_else(|| postgres::cannot_write(error))
}

/// Whether a transaction failed only because a concurrent one conflicted
/// with it (PostgreSQL's serialization failures and deadlocks): run it again.
pub(in crate::store) fn is_conflict(error: &sqlx::Error) -> bool {
    postgres::is_conflict(error)
}

/// Whether the database server cannot be reached now: a connection that
/// could not be made or broke, no pooled connection free in time, a server
/// shutting down. (SQLite, in process, has none of these.)
pub(in crate::store) fn is_unreachable(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_))
        || postgres::is_unreachable(error)
}

/// Opens (creating a SQLite file if needed) and migrates the database.
pub(in crate::store) async fn open(location: &Location) -> Result<Opened> {
    match location {
        Location::Sqlite(path) => sqlite::open(path).await,
        Location::Postgres(url) => postgres::open(url).await,
    }
}

impl Pool {
    /// Starts a write transaction, the database's writers taking turns: for
    /// SQLite `BEGIN IMMEDIATE` (the write lock taken at once, so a
    /// transaction that reads then writes cannot fail on upgrading its
    /// snapshot); for PostgreSQL the same turn over every coordinator of the
    /// database ([`postgres::BEGIN_WRITE`]).
    pub async fn begin_write(&self) -> Result<Tx<'static>> {
        Ok(match self {
            Pool::Sqlite(pool) => Tx::Sqlite(sqlite::begin_write(pool).await?),
            Pool::Postgres(pool) => Tx::Postgres(pool.begin_with(postgres::BEGIN_WRITE).await?),
        })
    }

    /// Starts a read-only transaction: one snapshot for several statements
    /// (SQLite's deferred transaction; PostgreSQL's REPEATABLE READ).
    pub async fn begin(&self) -> Result<Tx<'static>> {
        Ok(match self {
            Pool::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
            Pool::Postgres(pool) => Tx::Postgres(pool.begin_with(postgres::BEGIN_READ).await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

impl Tx<'_> {
    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.rollback().await?,
            Tx::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}

impl Tx<'_> {
    /// After work units were given ids of the store's choosing: PostgreSQL's
    /// identity sequence moves past them (so that a row inserted without an
    /// id never collides with them).
    pub async fn work_unit_ids_used(&mut self) -> Result<()> {
        if let Tx::Postgres(tx) = self {
            sqlx::query("SELECT setval(pg_get_serial_sequence('work_units', 'id'), MAX(id)) FROM work_units")
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

impl Connection {
    /// Starts the writer's group transaction (as [`Pool::begin_write`]).
    pub async fn begin_group(&mut self) -> Result<Tx<'_>> {
        use sqlx::Connection as _;
        Ok(match self {
            Connection::Sqlite(connection) => Tx::Sqlite(connection.begin_with("BEGIN IMMEDIATE").await?),
            Connection::Postgres(connection) => Tx::Postgres(connection.begin_with(postgres::BEGIN_WRITE).await?),
        })
    }

    pub async fn close(self) -> Result<()> {
        use sqlx::Connection as _;
        match self {
            Connection::Sqlite(connection) => connection.close().await?,
            Connection::Postgres(connection) => connection.close().await?,
        }
        Ok(())
    }

    /// Closes without the engine's goodbye (after a failed group; the
    /// engine rolls back what the connection had begun).
    pub async fn close_hard(self) {
        use sqlx::Connection as _;
        let _ = match self {
            Connection::Sqlite(connection) => connection.close_hard().await,
            Connection::Postgres(connection) => connection.close_hard().await,
        };
    }
}

impl WriterOptions {
    pub async fn connect(&self) -> Result<Connection> {
        use sqlx::ConnectOptions as _;
        Ok(match self {
            WriterOptions::Sqlite(options) => Connection::Sqlite(options.connect().await?),
            WriterOptions::Postgres(options) => Connection::Postgres(options.connect().await?),
        })
    }
}

/// Where a statement runs: a pool, a transaction or the writer's connection.
pub(in crate::store) enum Target<'a> {
    SqlitePool(&'a SqlitePool),
    Sqlite(&'a mut SqliteConnection),
    PostgresPool(&'a PgPool),
    Postgres(&'a mut PgConnection),
}

/// What a statement can run on (sqlx's `Executor`, for the store's engines).
pub(in crate::store) trait Executor<'a> {
    fn target(self) -> Target<'a>;
}

impl<'a> Executor<'a> for &'a Pool {
    fn target(self) -> Target<'a> {
        match self {
            Pool::Sqlite(pool) => Target::SqlitePool(pool),
            Pool::Postgres(pool) => Target::PostgresPool(pool),
        }
    }
}

impl<'a> Executor<'a> for &'a mut Tx<'_> {
    fn target(self) -> Target<'a> {
        match self {
            Tx::Sqlite(tx) => Target::Sqlite(&mut *tx),
            Tx::Postgres(tx) => Target::Postgres(&mut *tx),
        }
    }
}

impl<'a> Executor<'a> for &'a mut Connection {
    fn target(self) -> Target<'a> {
        match self {
            Connection::Sqlite(connection) => Target::Sqlite(connection),
            Connection::Postgres(connection) => Target::Postgres(connection),
        }
    }
}

/// A value bound to a statement.
#[derive(Clone, Debug, PartialEq)]
pub(in crate::store) enum Value {
    Int(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
    /// A NULL of the column type it stands for (PostgreSQL types every parameter).
    Null(Kind),
}

/// The column types of the store's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::store) enum Kind {
    Int,
    Float,
    Text,
    Blob,
}

/// A Rust value the store binds, and the column type it stands for.
pub(in crate::store) trait Bind {
    const KIND: Kind;
    fn value(self) -> Value;
}

macro_rules! bind_as {
    ($kind:ident, $variant:ident: $($ty:ty => |$v:ident| $e:expr),+ $(,)?) => {$(
        impl Bind for $ty {
            const KIND: Kind = Kind::$kind;
            fn value(self) -> Value {
                let $v = self;
                Value::$variant($e)
            }
        }
    )+};
}

bind_as!(Int, Int: i64 => |v| v, i32 => |v| i64::from(v), u32 => |v| i64::from(v), bool => |v| i64::from(v));
bind_as!(Float, Float: f64 => |v| v);
bind_as!(Text, Text: String => |v| v, &str => |v| v.to_owned(), &String => |v| v.clone());
bind_as!(Blob, Blob: Vec<u8> => |v| v, &[u8] => |v| v.to_vec(), &Vec<u8> => |v| v.clone());

impl<T: Bind> Bind for Option<T> {
    const KIND: Kind = T::KIND;
    fn value(self) -> Value {
        match self {
            Some(value) => value.value(),
            None => Value::Null(T::KIND),
        }
    }
}

impl<T: Bind + Clone> Bind for &Option<T> {
    const KIND: Kind = T::KIND;
    fn value(self) -> Value {
        self.clone().value()
    }
}

/// A statement and its bound values.
#[must_use = "a statement does nothing until it is executed"]
pub(in crate::store) struct Query {
    sql: Cow<'static, str>,
    values: Vec<Value>,
    /// Whether the engine keeps the statement prepared (sqlx's `persistent`).
    persistent: bool,
}

/// A statement with `?` placeholders (`?N` for a value used twice).
pub(in crate::store) fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query { sql: sql.into(), values: Vec::new(), persistent: true }
}

/// What a statement that returns no rows did.
pub(in crate::store) struct Done {
    rows_affected: u64,
}

impl Done {
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// Builds the engine's own statement from the store's.
fn native<DB: Database + sqlx::database::HasStatementCache>(
    sql: Cow<'static, str>,
    values: Vec<Value>,
    persistent: bool,
) -> sqlx::query::Query<'static, DB, DB::Arguments>
where
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> f64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Vec<u8>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<i64>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<f64>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<String>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<Vec<u8>>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let mut query = match sql {
        Cow::Borrowed(sql) => sqlx::query::<DB>(sql),
        Cow::Owned(sql) => sqlx::query::<DB>(sqlx::AssertSqlSafe(sql)),
    };
    for value in values {
        query = match value {
            Value::Int(v) => query.bind(v),
            Value::Float(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::Blob(v) => query.bind(v),
            Value::Null(Kind::Int) => query.bind(None::<i64>),
            Value::Null(Kind::Float) => query.bind(None::<f64>),
            Value::Null(Kind::Text) => query.bind(None::<String>),
            Value::Null(Kind::Blob) => query.bind(None::<Vec<u8>>),
        };
    }
    query.persistent(persistent)
}

/// Runs on `connection` every statement but the last of what the store's
/// SQL splits into for PostgreSQL ([`postgres::statements`]), and returns
/// the last, whose outcome is the call's.
async fn postgres_leading(
    connection: &mut PgConnection,
    sql: Cow<'static, str>,
    values: Vec<Value>,
    persistent: bool,
) -> Result<(Cow<'static, str>, Vec<Value>), sqlx::Error> {
    let mut statements = postgres::statements(sql, values);
    let last = statements.pop().expect("at least one statement");
    for (sql, values) in statements {
        native::<sqlx::Postgres>(sql, values, persistent).execute(&mut *connection).await?;
    }
    Ok(last)
}

/// Runs a statement on its engine: `$sqlite` with `$q` the SQLite statement
/// and `$e` its executor; `$postgres` likewise for PostgreSQL, on each of
/// the statements the store's SQL splits into ([`postgres::statements`]);
/// the last one's outcome is the call's.
macro_rules! dispatch {
    ($self:ident, $executor:ident, |$q:ident, $e:ident| $sqlite:expr, $postgres:expr) => {{
        let Query { sql, values, persistent } = $self;
        match $executor.target() {
            Target::SqlitePool($e) => {
                let $q = native::<sqlx::Sqlite>(sql, values, persistent);
                $sqlite
            }
            Target::Sqlite($e) => {
                let $q = native::<sqlx::Sqlite>(sql, values, persistent);
                $sqlite
            }
            Target::PostgresPool(pool) => {
                let mut connection = pool.acquire().await?;
                let $e: &mut PgConnection = &mut connection;
                let (sql, values) = postgres_leading(&mut *$e, sql, values, persistent).await?;
                let $q = native::<sqlx::Postgres>(sql, values, persistent);
                $postgres
            }
            Target::Postgres($e) => {
                let (sql, values) = postgres_leading(&mut *$e, sql, values, persistent).await?;
                let $q = native::<sqlx::Postgres>(sql, values, persistent);
                $postgres
            }
        }
    }};
}

impl Query {
    pub fn bind(mut self, value: impl Bind) -> Query {
        self.values.push(value.value());
        self
    }

    /// Whether the engine keeps the statement prepared (true unless said):
    /// false for statements of one-off shapes.
    pub fn persistent(mut self, persistent: bool) -> Query {
        self.persistent = persistent;
        self
    }

    pub async fn execute<'a>(self, executor: impl Executor<'a>) -> Result<Done, sqlx::Error> {
        let rows_affected =
            dispatch!(self, executor, |q, e| q.execute(e).await?.rows_affected(), q.execute(e).await?.rows_affected());
        Ok(Done { rows_affected })
    }

    pub async fn fetch_all<'a>(self, executor: impl Executor<'a>) -> Result<Vec<Row>, sqlx::Error> {
        Ok(dispatch!(
            self,
            executor,
            |q, e| q.fetch_all(e).await?.into_iter().map(Row::Sqlite).collect(),
            q.fetch_all(e).await?.into_iter().map(Row::Postgres).collect()
        ))
    }

    pub async fn fetch_optional<'a>(self, executor: impl Executor<'a>) -> Result<Option<Row>, sqlx::Error> {
        Ok(dispatch!(
            self,
            executor,
            |q, e| q.fetch_optional(e).await?.map(Row::Sqlite),
            q.fetch_optional(e).await?.map(Row::Postgres)
        ))
    }

    pub async fn fetch_one<'a>(self, executor: impl Executor<'a>) -> Result<Row, sqlx::Error> {
        self.fetch_optional(executor).await?.ok_or(sqlx::Error::RowNotFound)
    }
}

/// A statement whose rows are one value each.
#[must_use = "a statement does nothing until it is executed"]
pub(in crate::store) struct QueryScalar<T> {
    query: Query,
    value: std::marker::PhantomData<fn() -> T>,
}

/// A statement returning one column, decoded as `T`.
pub(in crate::store) fn query_scalar<T: Decode>(sql: impl Into<Cow<'static, str>>) -> QueryScalar<T> {
    QueryScalar { query: query(sql), value: std::marker::PhantomData }
}

impl<T: Decode> QueryScalar<T> {
    pub fn bind(self, value: impl Bind) -> QueryScalar<T> {
        QueryScalar { query: self.query.bind(value), value: self.value }
    }

    pub async fn fetch_all<'a>(self, executor: impl Executor<'a>) -> Result<Vec<T>, sqlx::Error> {
        self.query.fetch_all(executor).await?.iter().map(|row| row.try_get(0)).collect()
    }

    pub async fn fetch_optional<'a>(self, executor: impl Executor<'a>) -> Result<Option<T>, sqlx::Error> {
        self.query.fetch_optional(executor).await?.map(|row| row.try_get(0)).transpose()
    }

    pub async fn fetch_one<'a>(self, executor: impl Executor<'a>) -> Result<T, sqlx::Error> {
        self.query.fetch_one(executor).await?.try_get(0)
    }
}

/// A row, as its engine gave it.
pub(in crate::store) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

/// A column of a row: by name, or by position.
pub(in crate::store) trait ColumnIndex:
    sqlx::ColumnIndex<SqliteRow> + sqlx::ColumnIndex<PgRow> + Copy + std::fmt::Debug
{
}
impl ColumnIndex for &str {}
impl ColumnIndex for usize {}

impl Row {
    /// The value of column `index`, decoded as `T`.
    pub fn try_get<T: Decode, I: ColumnIndex>(&self, index: I) -> Result<T, sqlx::Error> {
        match self {
            Row::Sqlite(row) => T::sqlite(row, index),
            Row::Postgres(row) => T::postgres(row, index),
        }
    }
}

/// A type the store reads from rows.
pub(in crate::store) trait Decode: Sized {
    fn sqlite<I: ColumnIndex>(row: &SqliteRow, index: I) -> Result<Self, sqlx::Error>;
    fn postgres<I: ColumnIndex>(row: &PgRow, index: I) -> Result<Self, sqlx::Error>;
}

macro_rules! decode_natively {
    ($($ty:ty),+) => {$(
        impl Decode for $ty {
            fn sqlite<I: ColumnIndex>(row: &SqliteRow, index: I) -> Result<Self, sqlx::Error> {
                row.try_get(index)
            }
            fn postgres<I: ColumnIndex>(row: &PgRow, index: I) -> Result<Self, sqlx::Error> {
                row.try_get(index)
            }
        }
    )+};
}

decode_natively!(String, Vec<u8>);

impl Decode for i32 {
    fn sqlite<I: ColumnIndex>(row: &SqliteRow, index: I) -> Result<Self, sqlx::Error> {
        row.try_get(index)
    }
    fn postgres<I: ColumnIndex>(row: &PgRow, index: I) -> Result<Self, sqlx::Error> {
        let value = postgres::integer(row, index)?;
        i32::try_from(value).map_err(|error| sqlx::Error::Decode(Box::new(error)))
    }
}

impl Decode for i64 {
    fn sqlite<I: ColumnIndex>(row: &SqliteRow, index: I) -> Result<Self, sqlx::Error> {
        row.try_get(index)
    }
    fn postgres<I: ColumnIndex>(row: &PgRow, index: I) -> Result<Self, sqlx::Error> {
        postgres::integer(row, index)
    }
}

impl Decode for f64 {
    fn sqlite<I: ColumnIndex>(row: &SqliteRow, index: I) -> Result<Self, sqlx::Error> {
        row.try_get(index)
    }
    fn postgres<I: ColumnIndex>(row: &PgRow, index: I) -> Result<Self, sqlx::Error> {
        postgres::float(row, index)
    }
}

impl Decode for bool {
    fn sqlite<I: ColumnIndex>(row: &SqliteRow, index: I) -> Result<Self, sqlx::Error> {
        row.try_get(index)
    }
    fn postgres<I: ColumnIndex>(row: &PgRow, index: I) -> Result<Self, sqlx::Error> {
        postgres::boolean(row, index)
    }
}

impl<T: Decode> Decode for Option<T> {
    fn sqlite<I: ColumnIndex>(row: &SqliteRow, index: I) -> Result<Self, sqlx::Error> {
        use sqlx::ValueRef as _;
        if row.try_get_raw(index)?.is_null() { Ok(None) } else { T::sqlite(row, index).map(Some) }
    }
    fn postgres<I: ColumnIndex>(row: &PgRow, index: I) -> Result<Self, sqlx::Error> {
        use sqlx::ValueRef as _;
        if row.try_get_raw(index)?.is_null() { Ok(None) } else { T::postgres(row, index).map(Some) }
    }
}

/// A statement built piece by piece: lists of ids, multi-row `VALUES`.
#[derive(Default)]
pub(in crate::store) struct QueryBuilder {
    sql: String,
    values: Vec<Value>,
}

impl QueryBuilder {
    pub fn new(init: impl Into<String>) -> QueryBuilder {
        QueryBuilder { sql: init.into(), values: Vec::new() }
    }

    pub fn push(&mut self, sql: impl std::fmt::Display) -> &mut QueryBuilder {
        use std::fmt::Write as _;
        let _ = write!(self.sql, "{sql}");
        self
    }

    pub fn push_bind(&mut self, value: impl Bind) -> &mut QueryBuilder {
        self.sql.push('?');
        self.values.push(value.value());
        self
    }

    /// Pieces separated by `separator`.
    pub fn separated(&mut self, separator: &'static str) -> Separated<'_> {
        Separated { builder: self, separator, first: true }
    }

    /// `VALUES (...), (...)`, one row per item, `push` binding its columns.
    pub fn push_values<T>(&mut self, items: impl IntoIterator<Item = T>, mut push: impl FnMut(Separated<'_>, T)) {
        self.push("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push("(");
            push(self.separated(", "), item);
            self.push(")");
        }
    }

    /// The statement (the builder is left empty).
    pub fn build(&mut self) -> Query {
        Query {
            sql: Cow::Owned(std::mem::take(&mut self.sql)),
            values: std::mem::take(&mut self.values),
            persistent: true,
        }
    }
}

/// Pieces of a [`QueryBuilder`] with a separator between them.
pub(in crate::store) struct Separated<'b> {
    builder: &'b mut QueryBuilder,
    separator: &'static str,
    first: bool,
}

impl Separated<'_> {
    fn separate(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.builder.sql.push_str(self.separator);
        }
    }

    pub fn push(&mut self, sql: impl std::fmt::Display) -> &mut Self {
        self.separate();
        self.builder.push(sql);
        self
    }

    pub fn push_bind(&mut self, value: impl Bind) -> &mut Self {
        self.separate();
        self.builder.push_bind(value);
        self
    }

    pub fn push_unseparated(&mut self, sql: impl std::fmt::Display) -> &mut Self {
        self.builder.push(sql);
        self
    }
}
