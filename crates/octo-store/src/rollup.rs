//! Rollups: per-minute, hour and day sums keyed on (bucket start, model, backend, org, user,
//! status), and the same sums per single dimension (`rollup_dim_*`), folded in memory for a
//! batch (so each key appears once per statement — PostgreSQL refuses an `ON CONFLICT` statement
//! that touches a row twice) and upserted in the batch's transaction. Statistics read these
//! tables only, never the log.

use std::borrow::Cow;
use std::collections::BTreeMap;

use octo_core::record::Record;

use crate::config::Backend;
use crate::db::{Sql, Value, cached_text, insert_text, u64_to_i64};
use crate::schema::{
    DIM_KEYS, DIM_TABLES, DIMENSIONS, MAX_KEY_LEN, ROLLUP_KEYS, ROLLUP_SUMS, ROLLUP_TABLES,
};

/// Milliseconds per bucket of each rollup table, in [`ROLLUP_TABLES`] order.
pub(crate) const BUCKET_MS: [i64; 3] = [60_000, 3_600_000, 86_400_000];

/// The largest value one record adds to a rollup sum (about 35 years in milliseconds, a trillion
/// tokens): absurd values are capped so sums over millions of rows never overflow `BIGINT`.
const MAX_ADDEND: i64 = 1 << 40;

fn addend(v: u64) -> i64 {
    u64_to_i64(v).min(MAX_ADDEND)
}

/// Rows per upsert statement at most, a power of two (20 values each, well under every
/// backend's parameter limit).
const ROWS_PER_STATEMENT: usize = 256;
/// Up to this many rows an upsert has a statement of its exact size: a batch's usual rollup rows
/// (six per-dimension rows per bucket, one or two buckets) take one statement per table.
const EXACT_ROWS: usize = 16;

/// A rollup row's key, borrowing the record's names. Absent names are `''` (a `NULL` would
/// never conflict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key<'a> {
    pub(crate) bucket: i64,
    pub(crate) model: &'a str,
    pub(crate) backend: &'a str,
    pub(crate) org: &'a str,
    pub(crate) user: &'a str,
    pub(crate) status: i64,
}

/// A per-dimension rollup row's key, in the table's key order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DimKey<'a> {
    pub(crate) dim: &'static str,
    pub(crate) bucket: i64,
    pub(crate) value: Cow<'a, str>,
}

impl<'a> Key<'a> {
    /// The key's value for each of [`DIMENSIONS`], in that order.
    fn dims(&self) -> [DimKey<'a>; 6] {
        let k = |dim, value| DimKey {
            dim,
            bucket: self.bucket,
            value,
        };
        [
            k(DIMENSIONS[0].0, Cow::Borrowed("")),
            k(DIMENSIONS[1].0, Cow::Borrowed(self.model)),
            k(DIMENSIONS[2].0, Cow::Borrowed(self.backend)),
            k(DIMENSIONS[3].0, Cow::Borrowed(self.org)),
            k(DIMENSIONS[4].0, Cow::Borrowed(self.user)),
            k(DIMENSIONS[5].0, Cow::Owned(self.status.to_string())),
        ]
    }
}

/// A batch's rollups, each key once, per table in [`ROLLUP_TABLES`] and [`DIM_TABLES`] order.
#[derive(Debug, Default)]
pub(crate) struct Folded<'a> {
    pub(crate) full: [BTreeMap<Key<'a>, Sums>; 3],
    pub(crate) dims: [BTreeMap<DimKey<'a>, Sums>; 3],
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
pub(crate) fn key_text(v: Option<&str>) -> &str {
    let v = v.unwrap_or("");
    if v.len() <= MAX_KEY_LEN {
        return v; // at most MAX_KEY_LEN bytes, so at most as many characters
    }
    match v.char_indices().nth(MAX_KEY_LEN) {
        Some((cut, _)) => &v[..cut],
        None => v,
    }
}

/// The start of the bucket of `bucket_ms` containing `ms`.
pub(crate) fn bucket_start(ms: i64, bucket_ms: i64) -> i64 {
    ms - ms.rem_euclid(bucket_ms)
}

/// Folds records into their rollup rows: each record is added once, to its minute key; the hour
/// and day keys are folded from the minute ones, and each table's per-dimension rows from its
/// keys, so the work per record is one map update whatever the number of tables.
pub(crate) fn fold<'a>(records: impl IntoIterator<Item = &'a Record>) -> Folded<'a> {
    let mut out = Folded::default();
    for r in records {
        let key = Key {
            bucket: bucket_start(r.started_at_ms(), BUCKET_MS[0]),
            model: key_text(r.model.as_deref()),
            backend: key_text(r.backend.as_deref()),
            org: key_text(r.org.as_deref()),
            user: key_text(r.user.as_deref()),
            status: i64::from(r.status),
        };
        out.full[0].entry(key).or_default().add(&Sums::of(r));
    }
    for grain in 1..3 {
        let (finer, coarser) = out.full.split_at_mut(grain);
        for (k, s) in &finer[grain - 1] {
            let key = Key {
                bucket: bucket_start(k.bucket, BUCKET_MS[grain]),
                ..*k
            };
            coarser[0].entry(key).or_default().add(s);
        }
    }
    for (full, dims) in out.full.iter().zip(out.dims.iter_mut()) {
        for (k, s) in full {
            for d in k.dims() {
                dims.entry(d).or_default().add(s);
            }
        }
    }
    out
}

/// The upsert statements for folded rollups (keys in order, so concurrent writers lock rows in
/// the same order).
pub(crate) fn upserts(b: Backend, folded: &Folded<'_>) -> Vec<Sql> {
    let mut out = Vec::new();
    for (table, map) in ROLLUP_TABLES.iter().zip(&folded.full) {
        let rows: Vec<([Value; 6], &Sums)> = map
            .iter()
            .map(|(k, s)| {
                let keys = [
                    Value::Int(Some(k.bucket)),
                    Value::Text(Some(k.model.to_owned())),
                    Value::Text(Some(k.backend.to_owned())),
                    Value::Text(Some(k.org.to_owned())),
                    Value::Text(Some(k.user.to_owned())),
                    Value::Int(Some(k.status)),
                ];
                (keys, s)
            })
            .collect();
        upsert_rows(b, table, ROLLUP_KEYS, rows, &mut out);
    }
    for (table, map) in DIM_TABLES.iter().zip(&folded.dims) {
        let rows: Vec<([Value; 3], &Sums)> = map
            .iter()
            .map(|(k, s)| {
                let keys = [
                    Value::Text(Some(k.dim.to_owned())),
                    Value::Int(Some(k.bucket)),
                    Value::Text(Some(k.value.clone().into_owned())),
                ];
                (keys, s)
            })
            .collect();
        upsert_rows(b, table, DIM_KEYS, rows, &mut out);
    }
    out
}

/// Appends the upserts of `rows` to `out`, in statements of [`statement_rows`] sizes.
///
/// [`statement_rows`]: crate::statement_rows
fn upsert_rows<const N: usize>(
    b: Backend,
    table: &'static str,
    keys: &[&str],
    rows: Vec<([Value; N], &Sums)>,
    out: &mut Vec<Sql>,
) {
    let mut rows = rows.into_iter();
    for n in crate::statement_rows(rows.len(), ROWS_PER_STATEMENT, EXACT_ROWS) {
        let text = cached_text(b, table, n, || upsert_text(b, table, keys, n));
        let mut vals = Vec::with_capacity(n * (N + ROLLUP_SUMS.len()));
        for (k, s) in rows.by_ref().take(n) {
            vals.extend(k);
            vals.extend(s.values());
        }
        out.push(Sql::shared(b, text, vals));
    }
}

/// The text of an upsert of `rows` rows into `table` (built once per process: see
/// [`cached_text`]).
fn upsert_text(b: Backend, table: &str, key_cols: &[&str], rows: usize) -> String {
    let cols: Vec<&str> = key_cols.iter().chain(ROLLUP_SUMS).copied().collect();
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
    let tail = match b {
        Backend::MySql => format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", ")),
        _ => format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            key_cols.join(", "),
            sets.join(", ")
        ),
    };
    insert_text(b, table, &cols, rows, &tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{SAMPLE_EPOCH_MS, sample, sample_at};

    #[test]
    fn one_key_per_bucket_with_summed_values() {
        let mut a = sample(0);
        let mut b = sample(0);
        b.id.push('x');
        a.duration_ms = 10;
        b.duration_ms = 30;
        b.cost_usd = None;
        let folded = fold([&a, &b]);
        for map in &folded.full {
            assert_eq!(map.len(), 1);
            let s = map.values().next().unwrap();
            assert_eq!(s.requests, 2);
            assert_eq!(s.duration_sum, 40);
            assert_eq!(s.duration_max, 30);
            assert_eq!(s.cost_known, 1);
            assert_eq!(s.cost_usd, a.cost_usd.unwrap());
        }
        for map in &folded.dims {
            assert_eq!(map.len(), DIMENSIONS.len());
            assert!(
                map.values()
                    .all(|s| s.requests == 2 && s.duration_max == 30)
            );
        }
        // One statement per table: the full-key row, the six dimension rows.
        let stmts = upserts(Backend::Postgres, &folded);
        assert_eq!(stmts.len(), 3 + 3);
        assert!(stmts[0].text.contains("ON CONFLICT (bucket, model"));
        assert_eq!(stmts[0].vals.len(), 20);
        assert!(stmts[3].text.contains("ON CONFLICT (dim, bucket, value)"));
        assert_eq!(stmts[3].vals.len(), 17 * DIMENSIONS.len());
    }

    #[test]
    fn hours_and_days_are_folded_from_minutes() {
        let records: Vec<Record> = (0..200)
            .map(|i| sample_at(i, SAMPLE_EPOCH_MS + i * 45_000))
            .collect();
        let folded = fold(&records);
        for (grain, width) in BUCKET_MS.iter().enumerate() {
            let mut direct: BTreeMap<Key<'_>, Sums> = BTreeMap::new();
            for r in &records {
                let k = Key {
                    bucket: bucket_start(r.started_at_ms(), *width),
                    model: key_text(r.model.as_deref()),
                    backend: key_text(r.backend.as_deref()),
                    org: key_text(r.org.as_deref()),
                    user: key_text(r.user.as_deref()),
                    status: i64::from(r.status),
                };
                direct.entry(k).or_default().add(&Sums::of(r));
            }
            // The same keys and sums (the cost is summed in another order: compare it closely).
            fn strip<'a>(m: &BTreeMap<Key<'a>, Sums>) -> Vec<(Key<'a>, Sums)> {
                m.iter()
                    .map(|(k, s)| {
                        (
                            *k,
                            Sums {
                                cost_usd: 0.0,
                                ..*s
                            },
                        )
                    })
                    .collect()
            }
            assert_eq!(strip(&folded.full[grain]), strip(&direct), "grain {grain}");
            for (a, b) in folded.full[grain].values().zip(direct.values()) {
                assert!((a.cost_usd - b.cost_usd).abs() < 1e-12);
            }
            let total: i64 = folded.dims[grain]
                .iter()
                .filter(|(k, _)| k.dim == "user")
                .map(|(_, s)| s.requests)
                .sum();
            assert_eq!(total, 200);
        }
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
