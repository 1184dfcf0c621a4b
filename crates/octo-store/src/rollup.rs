//! Rollups: per-minute, hour and day sums keyed on (bucket start, model, backend, org, user,
//! status), folded in memory for a batch (so each key appears once per statement — PostgreSQL
//! refuses an `ON CONFLICT` statement that touches a row twice) and upserted in the batch's
//! transaction. Statistics read these tables only, never the log.

use std::collections::BTreeMap;

use octo_core::record::Record;

use crate::config::Backend;
use crate::db::{Sql, Value, u64_to_i64};
use crate::schema::{MAX_KEY_LEN, ROLLUP_KEYS, ROLLUP_SUMS, ROLLUP_TABLES};

/// Milliseconds per bucket of each rollup table, in [`ROLLUP_TABLES`] order.
pub(crate) const BUCKET_MS: [i64; 3] = [60_000, 3_600_000, 86_400_000];

/// The largest value one record adds to a rollup sum (about 35 years in milliseconds, a trillion
/// tokens): absurd values are capped so sums over millions of rows never overflow `BIGINT`.
const MAX_ADDEND: i64 = 1 << 40;

fn addend(v: u64) -> i64 {
    u64_to_i64(v).min(MAX_ADDEND)
}

/// Rows per upsert statement (20 values each, well under every backend's parameter limit).
const ROWS_PER_STATEMENT: usize = 500;

/// A rollup row's key. Absent names are stored as `''` (a `NULL` would never conflict).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) bucket: i64,
    pub(crate) model: String,
    pub(crate) backend: String,
    pub(crate) org: String,
    pub(crate) user: String,
    pub(crate) status: i64,
}

/// A rollup row's sums.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Sums {
    pub(crate) requests: i64,
    pub(crate) errors: i64,
    pub(crate) input_tokens: i64,
    pub(crate) cache_read_tokens: i64,
    pub(crate) cache_write_tokens: i64,
    pub(crate) output_tokens: i64,
    pub(crate) reasoning_tokens: i64,
    pub(crate) cost_usd: f64,
    pub(crate) cost_known: i64,
    pub(crate) duration_sum: i64,
    pub(crate) duration_max: i64,
    pub(crate) ttfb_sum: i64,
    pub(crate) ttfb_count: i64,
    pub(crate) ttfb_max: i64,
}

impl Sums {
    /// The sums of one record.
    fn of(r: &Record) -> Sums {
        let u = r.usage.unwrap_or_default();
        let ttfb = r.ttfb_ms.map(addend);
        Sums {
            requests: 1,
            errors: i64::from(r.status >= 400),
            input_tokens: addend(u.input_tokens),
            cache_read_tokens: addend(u.cache_read_tokens),
            cache_write_tokens: addend(u.cache_write_tokens),
            output_tokens: addend(u.output_tokens),
            reasoning_tokens: addend(u.reasoning_tokens),
            cost_usd: r.cost_usd.unwrap_or(0.0),
            cost_known: i64::from(r.cost_usd.is_some()),
            duration_sum: addend(r.duration_ms),
            duration_max: addend(r.duration_ms),
            ttfb_sum: ttfb.unwrap_or(0),
            ttfb_count: i64::from(ttfb.is_some()),
            ttfb_max: ttfb.unwrap_or(0),
        }
    }

    /// Adds `o` (sums add, maxima take the larger).
    pub(crate) fn add(&mut self, o: &Sums) {
        self.requests = self.requests.saturating_add(o.requests);
        self.errors = self.errors.saturating_add(o.errors);
        self.input_tokens = self.input_tokens.saturating_add(o.input_tokens);
        self.cache_read_tokens = self.cache_read_tokens.saturating_add(o.cache_read_tokens);
        self.cache_write_tokens = self.cache_write_tokens.saturating_add(o.cache_write_tokens);
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(o.reasoning_tokens);
        self.cost_usd += o.cost_usd;
        self.cost_known = self.cost_known.saturating_add(o.cost_known);
        self.duration_sum = self.duration_sum.saturating_add(o.duration_sum);
        self.duration_max = self.duration_max.max(o.duration_max);
        self.ttfb_sum = self.ttfb_sum.saturating_add(o.ttfb_sum);
        self.ttfb_count = self.ttfb_count.saturating_add(o.ttfb_count);
        self.ttfb_max = self.ttfb_max.max(o.ttfb_max);
    }

    fn values(&self) -> [Value; 14] {
        let i = |v: i64| Value::Int(Some(v));
        [
            i(self.requests),
            i(self.errors),
            i(self.input_tokens),
            i(self.cache_read_tokens),
            i(self.cache_write_tokens),
            i(self.output_tokens),
            i(self.reasoning_tokens),
            Value::Real(Some(self.cost_usd)),
            i(self.cost_known),
            i(self.duration_sum),
            i(self.duration_max),
            i(self.ttfb_sum),
            i(self.ttfb_count),
            i(self.ttfb_max),
        ]
    }
}

/// A rollup key value: the name, truncated to [`MAX_KEY_LEN`] characters, or `''`.
fn key_text(v: Option<&str>) -> String {
    let v = v.unwrap_or("");
    match v.char_indices().nth(MAX_KEY_LEN) {
        Some((cut, _)) => v[..cut].to_owned(),
        None => v.to_owned(),
    }
}

/// The start of the bucket of `bucket_ms` containing `ms`.
pub(crate) fn bucket_start(ms: i64, bucket_ms: i64) -> i64 {
    ms - ms.rem_euclid(bucket_ms)
}

/// Folds records into one map per rollup table, each key once.
pub(crate) fn fold<'a>(records: impl IntoIterator<Item = &'a Record>) -> [BTreeMap<Key, Sums>; 3] {
    let mut maps: [BTreeMap<Key, Sums>; 3] = Default::default();
    for r in records {
        let ms = r.started_at_ms();
        let sums = Sums::of(r);
        let (model, backend, org, user) = (
            key_text(r.model.as_deref()),
            key_text(r.backend.as_deref()),
            key_text(r.org.as_deref()),
            key_text(r.user.as_deref()),
        );
        for (map, width) in maps.iter_mut().zip(BUCKET_MS) {
            let key = Key {
                bucket: bucket_start(ms, width),
                model: model.clone(),
                backend: backend.clone(),
                org: org.clone(),
                user: user.clone(),
                status: i64::from(r.status),
            };
            map.entry(key).or_default().add(&sums);
        }
    }
    maps
}

/// The upsert statements for folded rollups (keys in order, so concurrent writers lock rows in
/// the same order).
pub(crate) fn upserts(b: Backend, maps: &[BTreeMap<Key, Sums>; 3]) -> Vec<Sql> {
    let mut out = Vec::new();
    for (table, map) in ROLLUP_TABLES.iter().zip(maps) {
        let rows: Vec<(&Key, &Sums)> = map.iter().collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            out.push(upsert(b, table, chunk));
        }
    }
    out
}

fn upsert(b: Backend, table: &str, rows: &[(&Key, &Sums)]) -> Sql {
    let mut q = Sql::new(b);
    q.push(&format!(
        "INSERT INTO {table} ({}, {}) VALUES ",
        ROLLUP_KEYS.join(", "),
        ROLLUP_SUMS.join(", ")
    ));
    for (n, (k, s)) in rows.iter().enumerate() {
        q.push(if n == 0 { "(" } else { ", (" });
        let keys = [
            Value::Int(Some(k.bucket)),
            Value::Text(Some(k.model.clone())),
            Value::Text(Some(k.backend.clone())),
            Value::Text(Some(k.org.clone())),
            Value::Text(Some(k.user.clone())),
            Value::Int(Some(k.status)),
        ];
        for (i, v) in keys.into_iter().chain(s.values()).enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.bind(v);
        }
        q.push(")");
    }
    let is_max = |c: &str| c.ends_with("_max");
    let sets: Vec<String> = ROLLUP_SUMS
        .iter()
        .map(|c| match b {
            Backend::MySql if is_max(c) => format!("{c} = GREATEST({c}, VALUES({c}))"),
            Backend::MySql => format!("{c} = {c} + VALUES({c})"),
            _ if is_max(c) => format!(
                "{c} = CASE WHEN excluded.{c} > {table}.{c} THEN excluded.{c} ELSE {table}.{c} END"
            ),
            _ => format!("{c} = {table}.{c} + excluded.{c}"),
        })
        .collect();
    match b {
        Backend::MySql => q.push(" ON DUPLICATE KEY UPDATE "),
        _ => q.push(&format!(
            " ON CONFLICT ({}) DO UPDATE SET ",
            ROLLUP_KEYS.join(", ")
        )),
    };
    q.push(&sets.join(", "));
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample;

    #[test]
    fn one_key_per_bucket_with_summed_values() {
        let mut a = sample(0);
        let mut b = sample(0);
        b.id.push('x');
        a.duration_ms = 10;
        b.duration_ms = 30;
        b.cost_usd = None;
        let maps = fold([&a, &b]);
        for map in &maps {
            assert_eq!(map.len(), 1);
            let s = map.values().next().unwrap();
            assert_eq!(s.requests, 2);
            assert_eq!(s.duration_sum, 40);
            assert_eq!(s.duration_max, 30);
            assert_eq!(s.cost_known, 1);
            assert_eq!(s.cost_usd, a.cost_usd.unwrap());
        }
        let stmts = upserts(Backend::Postgres, &maps);
        assert_eq!(stmts.len(), 3);
        assert!(stmts[0].text.contains("ON CONFLICT (bucket, model"));
        assert_eq!(stmts[0].vals.len(), 20);
    }

    #[test]
    fn buckets_and_keys() {
        assert_eq!(bucket_start(3_600_000 + 59_999, 60_000), 3_600_000);
        assert_eq!(bucket_start(-1, 60_000), -60_000);
        assert_eq!(key_text(None), "");
        assert_eq!(
            key_text(Some(&"é".repeat(200))).chars().count(),
            MAX_KEY_LEN
        );
    }
}
