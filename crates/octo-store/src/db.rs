//! One code base over three databases: a pool per backend behind one enum, SQL text built per
//! dialect (placeholders, types, upsert syntax) with its values, and a [`dispatch!`] macro that
//! runs the same body against whichever pool is open (each arm compiles against its concrete
//! driver, so there is no `Any` driver and no type erasure).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Row};

use crate::config::{Backend, sqlite_path};
use crate::error::StoreError;

/// How long a statement waits on a locked SQLite database before failing (retryable).
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements each connection keeps (sqlx's default is 100): the writer's multi-row
/// statements come in a bounded set of sizes (see [`statement_rows`](crate::statement_rows)),
/// about 150 over its eight tables, which must all stay prepared.
const STATEMENT_CACHE: usize = 256;
/// How long to wait for a pooled connection before reporting the database unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// An open pool.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// A connection of its own, outside the pool: the log writer's ([`Pool::dedicated`]). Its
/// prepared statements stay with it (sqlx caches them per connection), so each of the writer's
/// statements is prepared once per connection instead of once on each pooled connection.
#[derive(Debug)]
pub(crate) enum Conn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
    MySql(MySqlConnection),
}

/// Runs `$body` with `$p` bound to the concrete pool.
macro_rules! dispatch {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::db::Pool::Sqlite($p) => $body,
            $crate::db::Pool::Postgres($p) => $body,
            $crate::db::Pool::MySql($p) => $body,
        }
    };
}

/// Binds every value of `$vals` (an iterator of [`Value`]) to the query `$q`.
macro_rules! bind_all {
    ($q:expr, $vals:expr) => {{
        let mut q = $q;
        for v in $vals {
            q = match v {
                $crate::db::Value::Int(x) => q.bind(x),
                $crate::db::Value::Real(x) => q.bind(x),
                $crate::db::Value::Text(x) => q.bind(x),
            };
        }
        q
    }};
}

impl Pool {
    /// Connects to `url` (creating a SQLite file if missing). Credentials the server refuses
    /// and a database it does not have are [`ErrorKind::Config`](crate::ErrorKind::Config)
    /// errors (not retryable): waiting cannot fix them.
    pub(crate) async fn connect(url: &str, max_connections: u32) -> Result<Pool, StoreError> {
        let backend = Backend::from_url(url)?;
        Self::connect_inner(url, backend, max_connections)
            .await
            .map_err(|e| match e.as_database_error().and_then(|d| d.code()) {
                Some(code) if code.starts_with("28") || code.starts_with("3D") => {
                    StoreError::config(format!(
                        "storage.url: the database refused the connection: {e}"
                    ))
                }
                _ => StoreError::from(e),
            })
    }

    async fn connect_inner(
        url: &str,
        backend: Backend,
        max_connections: u32,
    ) -> Result<Pool, sqlx::Error> {
        Ok(match backend {
            Backend::Sqlite => {
                let (path, query) = sqlite_path(url).unwrap_or(("", None));
                let memory = path == ":memory:" || path.is_empty();
                let mut opts = if memory {
                    SqliteConnectOptions::from_str("sqlite::memory:")?
                } else {
                    SqliteConnectOptions::new().filename(path)
                };
                if let Some(q) = query
                    && !memory
                {
                    // Keep what the URL's query says (mode=ro, …) on top of our defaults.
                    opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}?{q}"))?;
                }
                let opts = opts
                    .create_if_missing(true)
                    // Set before the first table exists: DELETE then frees pages for
                    // `PRAGMA incremental_vacuum` (sqlx applies it before journal_mode).
                    .auto_vacuum(SqliteAutoVacuum::Incremental)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .statement_cache_capacity(STATEMENT_CACHE);
                let pool = SqlitePoolOptions::new()
                    // An in-memory database exists once per connection.
                    .max_connections(if memory { 1 } else { max_connections })
                    .min_connections(if memory { 1 } else { 0 })
                    .idle_timeout(if memory {
                        None
                    } else {
                        Some(Duration::from_secs(600))
                    })
                    .max_lifetime(if memory {
                        None
                    } else {
                        Some(Duration::from_secs(1800))
                    })
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(opts)
                    .await?;
                Pool::Sqlite(pool)
            }
            Backend::Postgres => {
                let opts =
                    PgConnectOptions::from_str(url)?.statement_cache_capacity(STATEMENT_CACHE);
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(max_connections)
                        .acquire_timeout(ACQUIRE_TIMEOUT)
                        .connect_with(opts)
                        .await?,
                )
            }
            Backend::MySql => {
                let url = url.replacen("mariadb://", "mysql://", 1);
                let opts = MySqlConnectOptions::from_str(&url)?
                    .charset("utf8mb4")
                    .statement_cache_capacity(STATEMENT_CACHE);
                Pool::MySql(
                    MySqlPoolOptions::new()
                        .max_connections(max_connections)
                        .acquire_timeout(ACQUIRE_TIMEOUT)
                        .connect_with(opts)
                        .await?,
                )
            }
        })
    }

    /// One connection to `url` that changes nothing: no migration, and a SQLite file opened
    /// read-only (never created: `None` when it does not exist). For `octollm-server --check`.
    pub(crate) async fn connect_read_only(url: &str) -> Result<Option<Pool>, StoreError> {
        let backend = Backend::from_url(url)?;
        if backend != Backend::Sqlite {
            return Self::connect(url, 1).await.map(Some);
        }
        let (path, _) = sqlite_path(url).unwrap_or(("", None));
        if path.is_empty() || path == ":memory:" || !std::path::Path::new(path).exists() {
            return Ok(None);
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(opts)
            .await?;
        Ok(Some(Pool::Sqlite(pool)))
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
            Pool::MySql(_) => Backend::MySql,
        }
    }

    /// A connection taken out of the pool for one long-lived user (the pool opens another in
    /// its place when it needs one), or `None` for a pool of one connection (an in-memory SQLite
    /// database, whose one connection is the database itself).
    pub(crate) async fn dedicated(&self) -> Result<Option<Conn>, StoreError> {
        Ok(match self {
            Pool::Sqlite(p) if p.options().get_max_connections() <= 1 => None,
            Pool::Sqlite(p) => Some(Conn::Sqlite(p.acquire().await?.detach())),
            Pool::Postgres(p) => Some(Conn::Postgres(p.acquire().await?.detach())),
            Pool::MySql(p) => Some(Conn::MySql(p.acquire().await?.detach())),
        })
    }

    pub(crate) async fn close(&self) {
        dispatch!(self, p => p.close().await)
    }

    /// Runs one statement outside a transaction; returns the rows affected.
    pub(crate) async fn execute(&self, stmt: Sql) -> Result<u64, StoreError> {
        let Sql { text, vals, .. } = stmt;
        Ok(dispatch!(self, p => bind_all!(sqlx::query(&text), vals)
            .execute(p)
            .await?
            .rows_affected()))
    }

    /// Runs statements in one transaction.
    pub(crate) async fn transaction(&self, stmts: Vec<Sql>) -> Result<(), StoreError> {
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            for Sql { text, vals, .. } in stmts {
                bind_all!(sqlx::query(&text), vals).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Fetches every row of a query as plain values.
    pub(crate) async fn fetch(
        &self,
        stmt: Sql,
        cols: &[Col],
    ) -> Result<Vec<Vec<Value>>, StoreError> {
        let Sql { text, vals, .. } = stmt;
        dispatch!(self, p => {
            let rows = bind_all!(sqlx::query(&text), vals).fetch_all(p).await?;
            rows.iter().map(|r| read_row(r, cols)).collect()
        })
    }
}

impl Conn {
    /// Fetches every row of a query as plain values.
    pub(crate) async fn fetch(
        &mut self,
        stmt: Sql,
        cols: &[Col],
    ) -> Result<Vec<Vec<Value>>, StoreError> {
        let Sql { text, vals, .. } = stmt;
        match self {
            Conn::Sqlite(c) => {
                let rows = bind_all!(sqlx::query(&text), vals).fetch_all(c).await?;
                rows.iter().map(|r| read_row(r, cols)).collect()
            }
            Conn::Postgres(c) => {
                let rows = bind_all!(sqlx::query(&text), vals).fetch_all(c).await?;
                rows.iter().map(|r| read_row(r, cols)).collect()
            }
            Conn::MySql(c) => {
                let rows = bind_all!(sqlx::query(&text), vals).fetch_all(c).await?;
                rows.iter().map(|r| read_row(r, cols)).collect()
            }
        }
    }

    /// Runs statements in one transaction on this connection.
    pub(crate) async fn transaction(&mut self, stmts: Vec<Sql>) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => {
                let mut tx = c.begin().await?;
                for Sql { text, vals, .. } in stmts {
                    bind_all!(sqlx::query(&text), vals)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            Conn::Postgres(c) => {
                let mut tx = c.begin().await?;
                for Sql { text, vals, .. } in stmts {
                    bind_all!(sqlx::query(&text), vals)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            Conn::MySql(c) => {
                let mut tx = c.begin().await?;
                for Sql { text, vals, .. } in stmts {
                    bind_all!(sqlx::query(&text), vals)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }
}

/// A column's type, for reading it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Col {
    Int,
    Real,
    Text,
}

/// A bound or read value. `None` is SQL `NULL` (typed, as PostgreSQL needs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
}

impl Value {
    pub(crate) fn int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => *v,
            _ => None,
        }
    }
    pub(crate) fn real(&self) -> Option<f64> {
        match self {
            Value::Real(v) => *v,
            _ => None,
        }
    }
    pub(crate) fn text(&self) -> Option<&str> {
        match self {
            Value::Text(v) => v.as_deref(),
            _ => None,
        }
    }
    pub(crate) fn into_text(self) -> Option<String> {
        match self {
            Value::Text(v) => v,
            _ => None,
        }
    }
}

/// Reads the columns of one row as the given types.
trait ReadCol {
    fn col(&self, i: usize, ty: Col) -> Result<Value, sqlx::Error>;
}

macro_rules! impl_read_col {
    ($($row:ty),*) => {$(
        impl ReadCol for $row {
            fn col(&self, i: usize, ty: Col) -> Result<Value, sqlx::Error> {
                Ok(match ty {
                    Col::Int => Value::Int(self.try_get::<Option<i64>, _>(i)?),
                    Col::Real => Value::Real(self.try_get::<Option<f64>, _>(i)?),
                    Col::Text => Value::Text(self.read_text(i)?),
                })
            }
        }
    )*};
}
impl_read_col!(SqliteRow, PgRow, MySqlRow);

/// Reads a text column.
trait ReadText {
    fn read_text(&self, i: usize) -> Result<Option<String>, sqlx::Error>;
}

impl ReadText for SqliteRow {
    fn read_text(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
        self.try_get(i)
    }
}

impl ReadText for PgRow {
    fn read_text(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
        self.try_get(i)
    }
}

impl ReadText for MySqlRow {
    /// MySQL reports text in a binary collation (`utf8mb4_bin`, which the schema uses so keys
    /// compare exactly) as `VARBINARY`: read the bytes and check they are UTF-8.
    fn read_text(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
        match self.try_get::<Option<String>, _>(i) {
            Ok(v) => Ok(v),
            Err(_) => self
                .try_get::<Option<Vec<u8>>, _>(i)?
                .map(|b| {
                    String::from_utf8(b).map_err(|e| sqlx::Error::ColumnDecode {
                        index: i.to_string(),
                        source: Box::new(e),
                    })
                })
                .transpose(),
        }
    }
}

fn read_row<R: ReadCol>(row: &R, cols: &[Col]) -> Result<Vec<Value>, StoreError> {
    cols.iter()
        .enumerate()
        .map(|(i, ty)| row.col(i, *ty).map_err(StoreError::from))
        .collect()
}

/// SQL text for one dialect with its bound values, built left to right, or a text shared from
/// the [statement-text cache](cached_text) with its values.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    backend: Backend,
    pub(crate) text: Text,
    pub(crate) vals: Vec<Value>,
}

/// A statement's text: built for it, or shared (see [`cached_text`]).
#[derive(Debug, Clone)]
pub(crate) enum Text {
    Owned(String),
    Shared(Arc<str>),
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Text::Owned(s) => s,
            Text::Shared(s) => s,
        }
    }
}

impl Sql {
    pub(crate) fn new(backend: Backend) -> Self {
        Sql {
            backend,
            text: Text::Owned(String::new()),
            vals: Vec::new(),
        }
    }

    /// A statement with a shared text (from [`cached_text`]) holding `vals`' placeholders.
    pub(crate) fn shared(backend: Backend, text: Arc<str>, vals: Vec<Value>) -> Self {
        Sql {
            backend,
            text: Text::Shared(text),
            vals,
        }
    }

    fn text_mut(&mut self) -> &mut String {
        if let Text::Shared(s) = &self.text {
            self.text = Text::Owned(s.to_string());
        }
        match &mut self.text {
            Text::Owned(s) => s,
            Text::Shared(_) => unreachable!("made owned above"),
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, s: &str) -> &mut Self {
        self.text_mut().push_str(s);
        self
    }

    /// Appends a placeholder for `v` (`$n` on PostgreSQL, `?` elsewhere).
    pub(crate) fn bind(&mut self, v: Value) -> &mut Self {
        self.vals.push(v);
        let n = self.vals.len();
        let postgres = self.backend == Backend::Postgres;
        let text = self.text_mut();
        if postgres {
            text.push('$');
            text.push_str(&n.to_string());
        } else {
            text.push('?');
        }
        self
    }
}

/// Which multi-row statement a cached text is: the table it writes and its rows.
type TextKey = (Backend, &'static str, usize);

/// Texts of the writer's multi-row statements, which depend only on the dialect, the table and
/// the number of rows (one of a bounded set, see [`statement_rows`](crate::statement_rows)): built
/// once per process instead of once per batch (formatting a 256-row upsert is tens of thousands
/// of instructions, and the writer runs several per batch). At most a few hundred entries.
static TEXTS: OnceLock<Mutex<HashMap<TextKey, Arc<str>>>> = OnceLock::new();

/// The cached text for `(backend, table, rows)`, built by `build` the first time.
pub(crate) fn cached_text(
    backend: Backend,
    table: &'static str,
    rows: usize,
    build: impl FnOnce() -> String,
) -> Arc<str> {
    let texts = TEXTS.get_or_init(Mutex::default);
    let key = (backend, table, rows);
    if let Some(t) = texts.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return t.clone();
    }
    let text: Arc<str> = build().into();
    texts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_insert(text)
        .clone()
}

/// `INSERT INTO table (cols) VALUES (…), …` with `rows` rows of placeholders, then `tail`.
pub(crate) fn insert_text(
    backend: Backend,
    table: &str,
    cols: &[&str],
    rows: usize,
    tail: &str,
) -> String {
    let mut q = Sql::new(backend);
    q.push("INSERT INTO ")
        .push(table)
        .push(" (")
        .push(&cols.join(", "))
        .push(") VALUES ");
    for n in 0..rows {
        q.push(if n == 0 { "(" } else { ", (" });
        for i in 0..cols.len() {
            if i > 0 {
                q.push(", ");
            }
            q.bind(Value::Int(None));
        }
        q.push(")");
    }
    q.push(tail);
    q.text.to_string()
}

/// The SQL type of an integer aggregate cast back to a 64-bit integer (`SUM` is `NUMERIC` on
/// PostgreSQL and `DECIMAL` on MySQL).
pub(crate) fn int_type(b: Backend) -> &'static str {
    match b {
        Backend::MySql => "SIGNED",
        _ => "BIGINT",
    }
}

/// `u64` as stored (`BIGINT` is signed): saturates at `i64::MAX`.
pub(crate) fn u64_to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored integer back as `u64` (negative values, which the store never writes, read as 0).
pub(crate) fn i64_to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_per_dialect() {
        let mut s = Sql::new(Backend::Postgres);
        s.push("a = ")
            .bind(Value::Int(Some(1)))
            .push(" AND b = ")
            .bind(Value::Text(None));
        assert_eq!(&*s.text, "a = $1 AND b = $2");
        let mut s = Sql::new(Backend::MySql);
        s.push("a = ").bind(Value::Int(Some(1)));
        assert_eq!(&*s.text, "a = ?");
        assert_eq!(u64_to_i64(u64::MAX), i64::MAX);
        assert_eq!(i64_to_u64(-1), 0);
    }
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn insert_texts_are_built_once_per_dialect_table_and_rows() {
        let t = insert_text(Backend::Postgres, "t", &["a", "b"], 2, " TAIL");
        assert_eq!(t, "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) TAIL");
        let t = insert_text(Backend::Sqlite, "t", &["a"], 3, "");
        assert_eq!(t, "INSERT INTO t (a) VALUES (?), (?), (?)");
        let mut built = 0;
        let a = cached_text(Backend::MySql, "text_tests", 4, || {
            built += 1;
            "x".into()
        });
        let b = cached_text(Backend::MySql, "text_tests", 4, || {
            built += 1;
            "y".into()
        });
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(built, 1);
        // A shared text becomes the statement's own when something is appended.
        let mut s = Sql::shared(Backend::Postgres, a, vec![Value::Int(Some(1))]);
        s.push(" AND c = ").bind(Value::Int(Some(2)));
        assert_eq!(&*s.text, "x AND c = $2");
    }
}
