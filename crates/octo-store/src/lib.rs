//! OctoLLM's request log and statistics, in SQLite (the embedded default), PostgreSQL or
//! MySQL/MariaDB, chosen by URL.
//!
//! - [`Store`] opens the database, applies the [schema migrations](schema), writes batches of
//!   [`Record`]s (log rows and rollup upserts in one transaction), answers the admin API's
//!   [`logs`](Store::logs), [`log`](Store::log) and [`stats`](Store::stats) queries, and prunes
//!   old rows ([`prune`](Store::prune), [`spawn_retention`](Store::spawn_retention)).
//! - [`LogWriter`] is the [`Observer`](octo_core::record::Observer) that keeps all of this off
//!   the hot path: `on_complete` only `try_send`s into a bounded queue; a task writes batches,
//!   holds them through database outages, and [`flush`](LogWriter::flush)es on shutdown.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use octo_core::record::Observer;
//! use octo_store::{LogQuery, LogWriter, StatsQuery, Store, StoreConfig};
//!
//! let config = StoreConfig::with_url("sqlite::memory:");
//! let store = Store::open(&config).await.unwrap();
//! let writer = LogWriter::spawn(store.clone(), &config);
//! let record = Arc::new(octo_store::testing::sample(0));
//! writer.on_complete(&record); // never blocks
//! writer.flush(std::time::Instant::now() + std::time::Duration::from_secs(5)).await.unwrap();
//!
//! let page = store.logs(&LogQuery::default()).await.unwrap();
//! assert_eq!(page.data, vec![(*record).clone()]);
//! let stats = store
//!     .stats_at(&StatsQuery::default(), record.started_at + std::time::Duration::from_secs(1))
//!     .await
//!     .unwrap();
//! assert_eq!(stats.totals.requests, 1);
//! # });
//! ```

pub mod admin;
mod config;
pub mod control;
mod db;
mod error;
mod query;
pub mod responses;
mod rollup;
mod row;
pub mod schema;
mod spend;
pub mod testing;
pub mod writer;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use octo_core::record::Record;

pub use admin::{AdminUser, Session};
pub use config::{
    Backend, DEFAULT_BUFFER, DEFAULT_RETENTION, DEFAULT_URL, DEFAULT_WRITE_TIMEOUT, REDACTED,
    Secrets, StoreConfig, parse_retention, resolve_url,
};
pub use control::{
    AuditEntry, CONTROL_CHANNEL, ControlListener, ControlState, ControlWrite, Heard, KeyActivity,
    NewAudit, StoredKey, StoredObject,
};
pub use error::{ErrorKind, StoreError};
pub use query::{
    Bucket, DEFAULT_LIMIT, Figures, GroupBy, LogPage, LogQuery, MAX_BUCKETS, MAX_LIMIT, Stats,
    StatsBucket, StatsQuery,
};
pub use responses::StoredResponse;
pub use spend::SpendRow;
pub use writer::{LogWriter, WARN_EVERY, WriterStats};

use crate::db::{Col, Pool, Sql, Value};
use crate::schema::{LOG_COLUMNS, MAX_ID_LEN};

/// Connections per pool for PostgreSQL, MySQL and SQLite files (one writer, a few readers).
const MAX_CONNECTIONS: u32 = 4;
/// Log rows per insert statement at most (31 values each: under every backend's parameter
/// limit).
const LOG_ROWS_PER_STATEMENT: usize = 128;
/// Ids per existence check.
const IDS_PER_STATEMENT: usize = 500;
/// Candidate minutes read per step of a filtered log page.
const CANDIDATE_MINUTES: i64 = 64;

/// Statement sizes for `len` rows, largest first: one statement of exactly `len` rows when
/// `len <= exact`, else powers of two of at most `max` (a power of two) until what is left is
/// at most `exact`. Batches of every size then use a bounded set of distinct statements (at most
/// `exact` + log2(`max`) per table), which the writer's connection prepares once and keeps (a
/// statement per batch size would be prepared again and again), while the usual small batches
/// (a few rollup rows) take one statement, not one per set bit of their size.
pub(crate) fn statement_rows(len: usize, max: usize, exact: usize) -> impl Iterator<Item = usize> {
    let mut left = len;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = if left <= exact {
            left
        } else if left >= max {
            max
        } else {
            1 << (usize::BITS - 1 - left.leading_zeros())
        };
        left -= n;
        Some(n)
    })
}
/// Log rows written in one statement of their exact number (fewer than this take one
/// statement; see [`statement_rows`]).
const LOG_EXACT_ROWS: usize = 8;
/// Log rows deleted per retention statement.
const PRUNE_BATCH: i64 = 1000;

/// The current time in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    query::ms(SystemTime::now())
}

/// The log writer's own connection ([`Pool::dedicated`]): opened on first use, kept while it
/// works, dropped after a failed write (a broken or hung connection; the next write opens a new
/// one). On a pool of one connection (in-memory SQLite) writes use the pool.
#[derive(Debug, Default)]
pub(crate) struct LogConn {
    conn: Option<db::Conn>,
    /// The pool has no connection to spare: write through it.
    pooled: bool,
}

impl LogConn {
    /// Drops the connection (after a write that did not finish: its state is unknown).
    pub(crate) fn reset(&mut self) {
        self.conn = None;
    }

    /// The connection, opened if needed; `None` when writes go through the pool.
    async fn get(&mut self, pool: &Pool) -> Result<Option<&mut db::Conn>, StoreError> {
        if self.pooled {
            return Ok(None);
        }
        if self.conn.is_none() {
            match pool.dedicated().await? {
                Some(c) => self.conn = Some(c),
                None => self.pooled = true,
            }
        }
        Ok(self.conn.as_mut())
    }

    /// Drops the connection after a retryable error (broken, or in an unknown state).
    fn check<T>(&mut self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if r.as_ref().is_err_and(|e| e.is_retryable()) {
            self.conn = None;
        }
        r
    }

    async fn transaction(&mut self, pool: &Pool, stmts: Vec<Sql>) -> Result<(), StoreError> {
        let r = match self.get(pool).await? {
            Some(c) => c.transaction(stmts).await,
            None => pool.transaction(stmts).await,
        };
        self.check(r)
    }

    async fn fetch(
        &mut self,
        pool: &Pool,
        stmt: Sql,
        cols: &[Col],
    ) -> Result<Vec<Vec<Value>>, StoreError> {
        let r = match self.get(pool).await? {
            Some(c) => c.fetch(stmt, cols).await,
            None => pool.fetch(stmt, cols).await,
        };
        self.check(r)
    }
}

/// An open request log: a connection pool and its dialect. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Arc<Pool>,
    redact: Secrets,
}

/// What [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Log rows.
    pub log_rows: u64,
    /// Minute rollup rows (`rollup_minute`; the per-dimension minute rows go with them).
    pub minute_rows: u64,
    /// Stored Responses API answers ([`responses`]).
    pub responses: u64,
}

impl Store {
    /// Connects to `config.url` and applies pending migrations. A database that cannot be
    /// reached is a retryable [`ErrorKind::Unavailable`] error.
    pub async fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let pool = Pool::connect(&config.url, MAX_CONNECTIONS).await?;
        schema::migrate(&pool).await?;
        Ok(Store {
            pool: Arc::new(pool),
            redact: config.redact.clone(),
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.pool.backend()
    }

    /// Closes the pool (waits for connections in use to be returned).
    pub async fn close(&self) {
        self.pool.close().await
    }

    /// Writes records in one transaction: their log rows and their rollups. Records whose id is
    /// already in the log (a retried batch whose first commit succeeded) and repeated ids are
    /// skipped, so nothing is counted twice.
    pub async fn write(&self, records: &[Arc<Record>]) -> Result<(), StoreError> {
        self.write_batch(None, records, true).await
    }

    /// [`write`](Self::write), checking the log for the records' ids first only when
    /// `check_existing`: the writer skips the check for a batch's first attempt, whose ids are
    /// fresh (a duplicate is then refused by the primary key, and the writer falls back to
    /// checked writes of one record at a time). The transaction runs on `conn` when given (the
    /// writer's own connection), else on a pooled one.
    pub(crate) async fn write_batch(
        &self,
        conn: Option<&mut LogConn>,
        records: &[Arc<Record>],
        check_existing: bool,
    ) -> Result<(), StoreError> {
        let b = self.backend();
        let mut seen = HashSet::with_capacity(records.len());
        let mut fresh: Vec<&Record> = records
            .iter()
            .map(|r| &**r)
            .filter(|r| r.id.len() <= MAX_ID_LEN && seen.insert(r.id.as_str()))
            .collect();
        let mut conn = conn;
        if check_existing && !fresh.is_empty() {
            let existing = self.existing_ids(conn.as_deref_mut(), &fresh).await?;
            fresh.retain(|r| !existing.contains(&r.id));
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let mut stmts = Vec::new();
        let mut rest = &fresh[..];
        for n in statement_rows(fresh.len(), LOG_ROWS_PER_STATEMENT, LOG_EXACT_ROWS) {
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let text = db::cached_text(b, "request_log", n, || {
                let cols: Vec<&str> = LOG_COLUMNS.iter().map(|(c, _)| *c).collect();
                db::insert_text(b, "request_log", &cols, n, "")
            });
            let mut vals = Vec::with_capacity(n * LOG_COLUMNS.len());
            for r in chunk {
                row::push_row(r, &mut vals);
            }
            stmts.push(Sql::shared(b, text, vals));
        }
        let with_bodies: Vec<&Record> = fresh
            .iter()
            .copied()
            .filter(|r| r.bodies.is_some())
            .collect();
        let mut rest = &with_bodies[..];
        for n in statement_rows(with_bodies.len(), LOG_ROWS_PER_STATEMENT, LOG_EXACT_ROWS) {
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let text = db::cached_text(b, "request_log_body", n, || {
                let cols: Vec<&str> = row::BODY_COLUMNS.iter().map(|(c, _)| *c).collect();
                db::insert_text(b, "request_log_body", &cols, n, "")
            });
            let mut vals = Vec::with_capacity(n * row::BODY_COLUMNS.len());
            for r in chunk {
                vals.extend(row::body_row(r, &self.redact));
            }
            stmts.push(Sql::shared(b, text, vals));
        }
        stmts.extend(rollup::upserts(b, &rollup::fold(fresh.iter().copied())));
        match conn {
            Some(c) => c.transaction(&self.pool, stmts).await,
            None => self.pool.transaction(stmts).await,
        }
    }

    async fn existing_ids(
        &self,
        mut conn: Option<&mut LogConn>,
        records: &[&Record],
    ) -> Result<HashSet<String>, StoreError> {
        let mut found = HashSet::new();
        for chunk in records.chunks(IDS_PER_STATEMENT) {
            let mut q = Sql::new(self.backend());
            q.push("SELECT id FROM request_log WHERE id IN (");
            for (n, r) in chunk.iter().enumerate() {
                if n > 0 {
                    q.push(", ");
                }
                q.bind(Value::Text(Some(r.id.clone())));
            }
            q.push(")");
            let rows = match conn.as_deref_mut() {
                Some(c) => c.fetch(&self.pool, q, &[Col::Text]).await?,
                None => self.pool.fetch(q, &[Col::Text]).await?,
            };
            for row in rows {
                if let Some(id) = row.into_iter().next().and_then(Value::into_text) {
                    found.insert(id);
                }
            }
        }
        Ok(found)
    }

    /// A page of the request log, newest first.
    ///
    /// Without a model, backend, org, user or status filter this reads the newest rows by id.
    /// With one, the log has no index on the filtered column (schema version 2 dropped them, to
    /// keep inserts cheap): the minutes that hold matching rows come from `rollup_dim_minute`
    /// (indexed by dimension and value), newest first, 64 at a time, and the
    /// log is read only within those minutes through its `started_at` index. A page therefore
    /// reads the rows of the minutes it needs, whatever the size of the log.
    pub async fn logs(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        let limit = query::limit_of(query);
        let b = self.backend();
        let cols: Vec<Col> = LOG_COLUMNS.iter().map(|(_, t)| *t).collect();
        let rows = match query::driving_filter(query) {
            // A name the gateway never records (absent names are NULL in the log).
            Some((_, v)) if v.is_empty() => Vec::new(),
            None => {
                self.pool
                    .fetch(query::logs_sql(b, query, limit, None), &cols)
                    .await?
            }
            Some((dim, value)) => {
                let minute = rollup::BUCKET_MS[0];
                let mut upper = query.until.map_or(i64::MAX, query::ms);
                if let Some(before) = &query.before
                    && let Some(at) = self.started_at(before).await?
                {
                    upper = upper.min(rollup::bucket_start(at, minute) + minute);
                }
                let lower = query
                    .since
                    .map(|t| rollup::bucket_start(query::ms(t), minute));
                let mut rows = Vec::new();
                loop {
                    let q = query::minutes_sql(b, dim, &value, lower, upper, CANDIDATE_MINUTES);
                    let minutes: Vec<i64> = self
                        .pool
                        .fetch(q, &[Col::Int])
                        .await?
                        .into_iter()
                        .filter_map(|r| r[0].int())
                        .collect();
                    let Some(&oldest) = minutes.last() else { break };
                    let ranges = query::merge_minutes(&minutes, minute);
                    let want = limit + 1 - rows.len() as u32;
                    let q = query::logs_sql(b, query, want, Some(&ranges));
                    rows.extend(self.pool.fetch(q, &cols).await?);
                    if rows.len() > limit as usize || (minutes.len() as i64) < CANDIDATE_MINUTES {
                        break;
                    }
                    upper = oldest;
                }
                rows
            }
        };
        let more = rows.len() > limit as usize;
        let data = rows
            .into_iter()
            .take(limit as usize)
            .map(row::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if more {
            data.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok(LogPage { data, next })
    }

    /// When the record `id` started (Unix ms), if it is in the log.
    async fn started_at(&self, id: &str) -> Result<Option<i64>, StoreError> {
        let mut q = Sql::new(self.backend());
        q.push("SELECT started_at FROM request_log WHERE id = ")
            .bind(Value::Text(Some(id.to_owned())));
        Ok(self
            .pool
            .fetch(q, &[Col::Int])
            .await?
            .first()
            .and_then(|r| r[0].int()))
    }

    /// One record by id.
    pub async fn log(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let cols: Vec<&str> = LOG_COLUMNS.iter().map(|(c, _)| *c).collect();
        let types: Vec<Col> = LOG_COLUMNS.iter().map(|(_, t)| *t).collect();
        let mut q = Sql::new(self.backend());
        q.push(&format!(
            "SELECT {} FROM request_log WHERE id = ",
            cols.join(", ")
        ))
        .bind(Value::Text(Some(id.to_owned())));
        let row = self.pool.fetch(q, &types).await?.into_iter().next();
        let Some(mut record) = row.map(row::from_row).transpose()? else {
            return Ok(None);
        };
        let cols: Vec<&str> = row::BODY_COLUMNS.iter().map(|(c, _)| *c).collect();
        let types: Vec<Col> = row::BODY_COLUMNS.iter().map(|(_, t)| *t).collect();
        let mut q = Sql::new(self.backend());
        q.push(&format!(
            "SELECT {} FROM request_log_body WHERE id = ",
            cols.join(", ")
        ))
        .bind(Value::Text(Some(id.to_owned())));
        if let Some(body) = self.pool.fetch(q, &types).await?.into_iter().next() {
            record.bodies = Some(row::bodies_from_row(body));
        }
        Ok(Some(record))
    }

    /// Statistics from the rollups, with a missing `until` meaning now.
    pub async fn stats(&self, query: &StatsQuery) -> Result<Stats, StoreError> {
        self.stats_at(query, SystemTime::now()).await
    }

    /// Statistics from the rollups, with a missing `until` meaning `now`.
    pub async fn stats_at(&self, query: &StatsQuery, now: SystemTime) -> Result<Stats, StoreError> {
        let (since, until) = query::stats_range(query, now)?;
        let b = self.backend();
        if b != Backend::MySql {
            let (sql, cols) = query::stats_sql(b, query, since, until, true);
            let json = self.pool.fetch(sql, &cols).await.and_then(|rows| {
                let json = rows.into_iter().next().and_then(|r| r.into_iter().next());
                query::stats_from_json(json.as_ref().and_then(Value::text))
            });
            match json {
                Ok(rows) => return Ok(query::stats_from_rows(rows, query.group_by.is_some())),
                // An answer too large for one value (SQLite and PostgreSQL cap a value at 1 GB:
                // millions of buckets × groups) is read as rows below.
                Err(e) if !e.is_retryable() => {
                    tracing::debug!(error = %e, "statistics as one value failed; reading rows")
                }
                Err(e) => return Err(e),
            }
        }
        let (sql, cols) = query::stats_sql(b, query, since, until, false);
        let rows = query::stats_rows(self.pool.fetch(sql, &cols).await?);
        Ok(query::stats_from_rows(rows, query.group_by.is_some()))
    }

    /// Deletes log rows, minute rollups (both kinds) and stored Responses answers older than `cutoff`, in small batches (each its own
    /// statement, so writers are never blocked for long), then on SQLite returns the freed pages
    /// to the file system (`PRAGMA incremental_vacuum`). Hour and day rollups are kept.
    pub async fn prune(&self, cutoff: SystemTime) -> Result<Pruned, StoreError> {
        let b = self.backend();
        let cutoff = query::ms(cutoff);
        let mut pruned = Pruned::default();
        loop {
            // The oldest ids first, then their bodies and rows by id (one statement shape on
            // every backend: MySQL refuses LIMIT in an IN subquery).
            let mut q = Sql::new(b);
            q.push("SELECT id FROM request_log WHERE started_at < ")
                .bind(Value::Int(Some(cutoff)))
                .push(" ORDER BY started_at LIMIT ")
                .bind(Value::Int(Some(PRUNE_BATCH)));
            let ids: Vec<Value> = self
                .pool
                .fetch(q, &[Col::Text])
                .await?
                .into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect();
            if ids.is_empty() {
                break;
            }
            let mut stmts = Vec::new();
            for table in ["request_log_body", "request_log"] {
                let mut q = Sql::new(b);
                q.push(&format!("DELETE FROM {table} WHERE id IN ("));
                for (n, id) in ids.iter().enumerate() {
                    if n > 0 {
                        q.push(", ");
                    }
                    q.bind(id.clone());
                }
                q.push(")");
                stmts.push(q);
            }
            let n = ids.len() as u64;
            self.pool.transaction(stmts).await?;
            pruned.log_rows += n;
            if n < PRUNE_BATCH as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        // Minute rollups, an hour of buckets per statement.
        let mut q = Sql::new(b);
        q.push("SELECT MIN(bucket) FROM rollup_minute");
        let first = self.pool.fetch(q, &[Col::Int]).await?;
        if let Some(mut from) = first.first().and_then(|r| r[0].int()) {
            while from < cutoff {
                let to = (rollup::bucket_start(from, 3_600_000) + 3_600_000).min(cutoff);
                let mut q = Sql::new(b);
                q.push("DELETE FROM rollup_minute WHERE bucket < ")
                    .bind(Value::Int(Some(to)));
                pruned.minute_rows += self.pool.execute(q).await?;
                let mut q = Sql::new(b);
                q.push("DELETE FROM rollup_dim_minute WHERE bucket < ")
                    .bind(Value::Int(Some(to)));
                self.pool.execute(q).await?;
                from = to;
                tokio::task::yield_now().await;
            }
        }
        pruned.responses = self.prune_responses(cutoff).await?;
        if b == Backend::Sqlite && pruned.log_rows + pruned.minute_rows + pruned.responses > 0 {
            let mut q = Sql::new(b);
            q.push("PRAGMA incremental_vacuum");
            self.pool.execute(q).await?;
        }
        Ok(pruned)
    }

    /// Runs [`prune`](Self::prune) now and then every `every`, deleting what is older than
    /// `retention` (nothing when `retention` is zero). Failures are logged and retried at the
    /// next run. Abort the handle to stop it.
    pub fn spawn_retention(
        &self,
        retention: Duration,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move { store.run_retention(retention, every).await })
    }

    /// What [`spawn_retention`](Self::spawn_retention) runs: prunes now and then every `every`,
    /// forever (returns at once when `retention` is zero).
    pub async fn run_retention(&self, retention: Duration, every: Duration) {
        if retention.is_zero() {
            return;
        }
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let cutoff = SystemTime::now()
                .checked_sub(retention)
                .unwrap_or(UNIX_EPOCH);
            match self.prune(cutoff).await {
                Ok(p) if p.log_rows + p.minute_rows > 0 => tracing::info!(
                    log_rows = p.log_rows,
                    minute_rows = p.minute_rows,
                    "storage: retention pruned old rows"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "storage: retention failed; will retry"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{SAMPLE_EPOCH_MS, spread};

    /// The one-value answer and the rows fallback give the same statistics.
    #[tokio::test]
    async fn statistics_as_one_value_equal_the_rows() {
        let store = Store::open(&StoreConfig::with_url("sqlite::memory:"))
            .await
            .unwrap();
        let records: Vec<Arc<Record>> = (0..3000)
            .map(|i| Arc::new(spread(i, 3000, SAMPLE_EPOCH_MS)))
            .collect();
        store.write(&records).await.unwrap();
        let start = UNIX_EPOCH + Duration::from_millis(SAMPLE_EPOCH_MS);
        for bucket in [Bucket::Minute, Bucket::Hour, Bucket::Day] {
            for group_by in [None, Some(GroupBy::User), Some(GroupBy::Status)] {
                let days = if bucket == Bucket::Minute { 1 } else { 30 };
                let q = StatsQuery {
                    since: Some(start),
                    until: Some(start + Duration::from_secs(days * 86_400)),
                    bucket,
                    group_by,
                };
                let json = store.stats(&q).await.unwrap();
                let (since, until) = query::stats_range(&q, SystemTime::now()).unwrap();
                let (sql, cols) = query::stats_sql(Backend::Sqlite, &q, since, until, false);
                let rows = query::stats_rows(store.pool.fetch(sql, &cols).await.unwrap());
                let rows = query::stats_from_rows(rows, group_by.is_some());
                assert_eq!(json, rows, "{bucket:?} {group_by:?}");
                assert!(!json.buckets.is_empty());
                if bucket != Bucket::Minute {
                    assert_eq!(json.totals.requests, 3000);
                }
            }
        }
    }

    #[test]
    fn statement_sizes_are_powers_of_two_up_to_the_cap_then_exact() {
        let sizes: Vec<usize> = statement_rows(500, 128, 0).collect();
        assert_eq!(sizes, vec![128, 128, 128, 64, 32, 16, 4]);
        let sizes: Vec<usize> = statement_rows(500, 128, 8).collect();
        assert_eq!(sizes, vec![128, 128, 128, 64, 32, 16, 4]);
        let sizes: Vec<usize> = statement_rows(31, 128, 8).collect();
        assert_eq!(sizes, vec![16, 8, 7]);
        assert_eq!(statement_rows(6, 256, 16).collect::<Vec<_>>(), vec![6]);
        assert_eq!(statement_rows(1, 128, 0).collect::<Vec<_>>(), vec![1]);
        assert_eq!(statement_rows(0, 128, 8).count(), 0);
        for exact in [0, 8, 16] {
            let mut distinct = std::collections::BTreeSet::new();
            for n in 0..600 {
                let s: Vec<usize> = statement_rows(n, 128, exact).collect();
                assert_eq!(s.iter().sum::<usize>(), n);
                assert!(
                    s.iter()
                        .all(|k| (k.is_power_of_two() || *k <= exact) && *k <= 128)
                );
                // Only the last may be an exact, smaller size.
                assert!(
                    s[..s.len().saturating_sub(1)]
                        .iter()
                        .all(|k| k.is_power_of_two())
                );
                distinct.extend(s);
            }
            assert!(distinct.len() <= exact + 8, "{distinct:?}");
        }
    }
}
