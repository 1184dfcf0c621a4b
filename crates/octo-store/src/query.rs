//! The admin API's read side: pages of the request log (newest first, filtered, with an id
//! cursor) and statistics per time bucket, optionally grouped, read from the rollups.
//!
//! Every type here is `serde`-ready: [`LogQuery`] and [`StatsQuery`] deserialize from the API's
//! query string (`since`/`until` in RFC 3339), [`LogPage`] and [`Stats`] serialize to its JSON.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use octo_core::record::Record;
use serde::{Deserialize, Serialize};

use crate::config::Backend;
use crate::db::{Col, Sql, Value, i64_to_u64};
use crate::error::StoreError;
use crate::rollup::{BUCKET_MS, Sums, bucket_start, key_text};

/// Rows per page when the query names no `limit`.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest `limit` honoured (larger values are clamped).
pub const MAX_LIMIT: u32 = 1000;
/// The most buckets a statistics query may span.
pub const MAX_BUCKETS: i64 = 20_000;

/// A request-log query (`GET /api/v1/logs`). Every filter is optional; absent filters match all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogQuery {
    /// The model the client asked for.
    pub model: Option<String>,
    /// The backend that answered.
    pub backend: Option<String>,
    /// The caller's org.
    pub org: Option<String>,
    /// The caller's key name.
    pub user: Option<String>,
    /// The final status.
    pub status: Option<u16>,
    /// Requests that started at or after this time.
    #[serde(with = "opt_rfc3339")]
    pub since: Option<SystemTime>,
    /// Requests that started before this time.
    #[serde(with = "opt_rfc3339")]
    pub until: Option<SystemTime>,
    /// Records per page: [`DEFAULT_LIMIT`] when absent, at most [`MAX_LIMIT`].
    pub limit: Option<u32>,
    /// The cursor: only records older than the record with this id (the previous page's
    /// `next`).
    pub before: Option<String>,
}

/// A page of the request log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogPage {
    /// Records, newest first.
    pub data: Vec<Record>,
    /// The cursor for the next (older) page, `None` on the last page.
    pub next: Option<String>,
}

/// The width of a statistics bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// One minute (from `rollup_minute`, kept as long as the log).
    Minute,
    /// One hour.
    #[default]
    Hour,
    /// One UTC day.
    Day,
}

impl Bucket {
    fn index(self) -> usize {
        match self {
            Bucket::Minute => 0,
            Bucket::Hour => 1,
            Bucket::Day => 2,
        }
    }

    /// The bucket's width.
    pub fn width(self) -> Duration {
        Duration::from_millis(BUCKET_MS[self.index()] as u64)
    }

    /// The range a query covers when it names no `since`: an hour of minutes, a day of hours,
    /// 30 days of days.
    pub fn default_span(self) -> Duration {
        match self {
            Bucket::Minute => Duration::from_secs(3600),
            Bucket::Hour => Duration::from_secs(86_400),
            Bucket::Day => Duration::from_secs(30 * 86_400),
        }
    }
}

/// What statistics are grouped by within a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// The requested model.
    Model,
    /// The answering backend.
    Backend,
    /// The caller's org.
    Org,
    /// The caller's key name.
    User,
    /// The final status (the group is the status as a string, `"200"`).
    Status,
}

impl GroupBy {
    /// Its name in the per-dimension rollups' `dim` column.
    fn dimension(self) -> &'static str {
        match self {
            GroupBy::Model => "model",
            GroupBy::Backend => "backend",
            GroupBy::Org => "org",
            GroupBy::User => "user",
            GroupBy::Status => "status",
        }
    }
}

/// A statistics query (`GET /api/v1/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsQuery {
    /// The first bucket is the one containing this time (default: `until` minus the bucket's
    /// [default span](Bucket::default_span)).
    #[serde(with = "opt_rfc3339")]
    pub since: Option<SystemTime>,
    /// Buckets starting before this time (default: now).
    #[serde(with = "opt_rfc3339")]
    pub until: Option<SystemTime>,
    /// The bucket width (default: hour).
    pub bucket: Bucket,
    /// Split each bucket by this dimension.
    pub group_by: Option<GroupBy>,
}

/// The figures of a bucket, a group or the totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Requests.
    pub requests: u64,
    /// Requests whose final status was 400 or more (499 included).
    pub errors: u64,
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Input tokens read from a prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to a prompt cache.
    pub cache_write_tokens: u64,
    /// Output tokens (reasoning included).
    pub output_tokens: u64,
    /// Reasoning tokens.
    pub reasoning_tokens: u64,
    /// The summed cost of the requests whose cost is known; `None` when none is.
    pub cost_usd: Option<f64>,
    /// Mean request duration.
    pub avg_duration_ms: f64,
    /// Longest request duration.
    pub max_duration_ms: u64,
    /// Mean time to first byte over the requests that had one; `None` when none had.
    pub avg_ttfb_ms: Option<f64>,
}

impl Figures {
    fn from_sums(s: &Sums) -> Figures {
        let u = i64_to_u64;
        Figures {
            requests: u(s.requests),
            errors: u(s.errors),
            input_tokens: u(s.input_tokens),
            cache_read_tokens: u(s.cache_read_tokens),
            cache_write_tokens: u(s.cache_write_tokens),
            output_tokens: u(s.output_tokens),
            reasoning_tokens: u(s.reasoning_tokens),
            cost_usd: (s.cost_known > 0).then_some(s.cost_usd),
            avg_duration_ms: if s.requests > 0 {
                s.duration_sum as f64 / s.requests as f64
            } else {
                0.0
            },
            max_duration_ms: u(s.duration_max),
            avg_ttfb_ms: (s.ttfb_count > 0).then(|| s.ttfb_sum as f64 / s.ttfb_count as f64),
        }
    }
}

/// One bucket (and group) of statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsBucket {
    /// The bucket's start.
    #[serde(with = "rfc3339")]
    pub start: SystemTime,
    /// The group's value (`None` without `group_by`, or for records without one).
    pub group: Option<String>,
    /// The figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// Statistics over a time range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Buckets in time order (then by group), only those with requests.
    pub buckets: Vec<StatsBucket>,
    /// The whole range.
    pub totals: Figures,
}

pub(crate) fn ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The filter that picks a filtered page's minutes: its dimension in `rollup_dim_minute` and
/// its value there (truncated as the rollups store it). The most selective kind of name wins:
/// user, then org, model, backend, status. `None` when the query filters on none of them.
pub(crate) fn driving_filter(q: &LogQuery) -> Option<(&'static str, String)> {
    let named = [
        ("user", &q.user),
        ("org", &q.org),
        ("model", &q.model),
        ("backend", &q.backend),
    ];
    for (dim, v) in named {
        if let Some(v) = v {
            return Some((dim, key_text(Some(v)).to_owned()));
        }
    }
    q.status.map(|s| ("status", s.to_string()))
}

/// The newest minutes before `upper` (and from `lower`) that hold rows of `dim = value`.
pub(crate) fn minutes_sql(
    b: Backend,
    dim: &str,
    value: &str,
    lower: Option<i64>,
    upper: i64,
    limit: i64,
) -> Sql {
    let mut s = Sql::new(b);
    s.push("SELECT bucket FROM rollup_dim_minute WHERE dim = ")
        .bind(Value::Text(Some(dim.to_owned())))
        .push(" AND value = ")
        .bind(Value::Text(Some(value.to_owned())))
        .push(" AND bucket < ")
        .bind(Value::Int(Some(upper)));
    if let Some(l) = lower {
        s.push(" AND bucket >= ").bind(Value::Int(Some(l)));
    }
    s.push(" ORDER BY bucket DESC LIMIT ")
        .bind(Value::Int(Some(limit)));
    s
}

/// Minutes (bucket starts, newest first) as `[start, end)` ranges, adjacent minutes merged.
pub(crate) fn merge_minutes(minutes: &[i64], width: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &m in minutes {
        match out.last_mut() {
            Some((start, _)) if *start == m + width => *start = m,
            _ => out.push((m, m + width)),
        }
    }
    out
}

/// The SQL of a log page (`limit + 1` rows, to know whether there is a next page), within
/// `ranges` of `started_at` when given.
pub(crate) fn logs_sql(b: Backend, q: &LogQuery, limit: u32, ranges: Option<&[(i64, i64)]>) -> Sql {
    let cols: Vec<&str> = crate::schema::LOG_COLUMNS.iter().map(|(c, _)| *c).collect();
    let mut s = Sql::new(b);
    s.push(&format!(
        "SELECT {} FROM request_log WHERE 1 = 1",
        cols.join(", ")
    ));
    let text = |v: &Option<String>| Value::Text(v.clone());
    for (col, v) in [
        ("model", &q.model),
        ("backend", &q.backend),
        ("org", &q.org),
        ("user_name", &q.user),
    ] {
        if v.is_some() {
            s.push(&format!(" AND {col} = ")).bind(text(v));
        }
    }
    if let Some(st) = q.status {
        s.push(" AND status = ")
            .bind(Value::Int(Some(i64::from(st))));
    }
    if let Some(t) = q.since {
        s.push(" AND started_at >= ").bind(Value::Int(Some(ms(t))));
    }
    if let Some(t) = q.until {
        s.push(" AND started_at < ").bind(Value::Int(Some(ms(t))));
    }
    if q.before.is_some() {
        s.push(" AND id < ").bind(text(&q.before));
    }
    if let Some(ranges) = ranges {
        for (n, (from, to)) in ranges.iter().enumerate() {
            s.push(if n == 0 { " AND (" } else { " OR " })
                .push("(started_at >= ")
                .bind(Value::Int(Some(*from)))
                .push(" AND started_at < ")
                .bind(Value::Int(Some(*to)))
                .push(")");
        }
        if !ranges.is_empty() {
            s.push(")");
        }
    }
    s.push(" ORDER BY id DESC LIMIT ")
        .bind(Value::Int(Some(i64::from(limit) + 1)));
    s
}

/// The effective page size of a query.
pub(crate) fn limit_of(q: &LogQuery) -> u32 {
    q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// The resolved range of a statistics query: `[since, until)` aligned to bucket starts.
pub(crate) fn stats_range(q: &StatsQuery, now: SystemTime) -> Result<(i64, i64), StoreError> {
    let width = BUCKET_MS[q.bucket.index()];
    let until = ms(q.until.unwrap_or(now));
    let since = q
        .since
        .map(ms)
        .unwrap_or_else(|| until.saturating_sub(ms(UNIX_EPOCH + q.bucket.default_span())));
    if since >= until {
        return Err(StoreError::invalid_query("`since` must be before `until`"));
    }
    let since = bucket_start(since, width);
    if (until - since) / width > MAX_BUCKETS {
        return Err(StoreError::invalid_query(format!(
            "the range spans more than {MAX_BUCKETS} buckets: use a wider bucket or a shorter range"
        )));
    }
    Ok((since, until))
}

/// One row of a statistics answer: bucket start, sums, the group's value (`''` for none).
pub(crate) type StatsRow = (i64, Sums, String);

/// The SQL of a statistics query. It reads the per-dimension rollup of the bucket width: one
/// row per bucket and value of the grouped dimension (`all` without `group_by`), already in
/// (bucket, value) order, nothing to aggregate.
///
/// On SQLite and PostgreSQL the rows come back as **one value**, a JSON array of arrays
/// (`json_group_array` / `json_agg`), read by [`stats_from_json`]: the database driver then
/// moves one value instead of thousands of rows of 16 columns (sqlx hands a SQLite row across
/// threads as owned values, several microseconds a row: 11,520 rows, an hour × user query over
/// 30 days, were most of that query's time). The cost travels as text with 17 significant
/// digits, which reads back as the same `f64` (a JSON number would be cut to 15 digits by
/// SQLite). MySQL and MariaDB return rows ([`stats_rows`]): their `JSON_ARRAYAGG` differs
/// between the two and across versions. `json: false` asks for rows on every database (the
/// fallback for an answer too large for one value).
pub(crate) fn stats_sql(
    b: Backend,
    q: &StatsQuery,
    since: i64,
    until: i64,
    json: bool,
) -> (Sql, Vec<Col>) {
    let table = crate::schema::DIM_TABLES[q.bucket.index()];
    let dim = q.group_by.map_or("all", GroupBy::dimension);
    let mut s = Sql::new(b);
    let sums = crate::schema::ROLLUP_SUMS;
    let json = json && b != Backend::MySql;
    let types = if json {
        let cols: Vec<String> = sums
            .iter()
            .map(|c| match (*c, b) {
                ("cost_usd", Backend::Sqlite) => "printf('%!.17g', cost_usd)".to_owned(),
                ("cost_usd", _) => "cost_usd::text".to_owned(),
                _ => (*c).to_owned(),
            })
            .collect();
        let (array, agg, cast) = match b {
            Backend::Sqlite => ("json_array", "json_group_array", ""),
            _ => ("json_build_array", "json_agg", "::text"),
        };
        s.push(&format!(
            "SELECT {agg}({array}(bucket, {}, value)){cast} FROM {table} WHERE dim = ",
            cols.join(", ")
        ));
        vec![Col::Text]
    } else {
        s.push(&format!(
            "SELECT bucket, {}, value FROM {table} WHERE dim = ",
            sums.join(", ")
        ));
        let mut types = vec![Col::Int];
        types.extend(sums.iter().map(|c| {
            if *c == "cost_usd" {
                Col::Real
            } else {
                Col::Int
            }
        }));
        types.push(Col::Text);
        types
    };
    s.bind(Value::Text(Some(dim.to_owned())))
        .push(" AND bucket >= ")
        .bind(Value::Int(Some(since)))
        .push(" AND bucket < ")
        .bind(Value::Int(Some(until)));
    if !json {
        s.push(" ORDER BY bucket, value");
    }
    (s, types)
}

/// The rows of a statistics answer from [`stats_sql`]'s one JSON value (SQLite, PostgreSQL),
/// in (bucket, value) order. `None` (no rows: SQL `NULL` from `json_agg`) is no rows.
pub(crate) fn stats_from_json(json: Option<&str>) -> Result<Vec<StatsRow>, StoreError> {
    /// bucket, seven sums, the cost as text, six sums, the value ([`stats_sql`]'s order).
    type Raw<'a> = (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        &'a str,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        String,
    );
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    let bad = |e: &dyn std::fmt::Display| StoreError::decode(format!("statistics: {e}"));
    let raw: Vec<Raw<'_>> = serde_json::from_str(json).map_err(|e| bad(&e))?;
    let mut rows = Vec::with_capacity(raw.len());
    for r in raw {
        let sums = Sums {
            requests: r.1,
            errors: r.2,
            input_tokens: r.3,
            cache_read_tokens: r.4,
            cache_write_tokens: r.5,
            output_tokens: r.6,
            reasoning_tokens: r.7,
            cost_usd: r.8.parse().map_err(|e| bad(&e))?,
            cost_known: r.9,
            duration_sum: r.10,
            duration_max: r.11,
            ttfb_sum: r.12,
            ttfb_count: r.13,
            ttfb_max: r.14,
        };
        rows.push((r.0, sums, r.15));
    }
    // In key order already on SQLite; `json_agg` promises no order. Values compare as bytes, as
    // the rollups' keys do.
    rows.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
    Ok(rows)
}

/// The rows of a statistics answer from [`stats_sql`]'s rows (MySQL, and the fallback).
pub(crate) fn stats_rows(rows: Vec<Vec<Value>>) -> Vec<StatsRow> {
    rows.into_iter()
        .map(|row| {
            let i = |n: usize| row[n].int().unwrap_or(0);
            let sums = Sums {
                requests: i(1),
                errors: i(2),
                input_tokens: i(3),
                cache_read_tokens: i(4),
                cache_write_tokens: i(5),
                output_tokens: i(6),
                reasoning_tokens: i(7),
                cost_usd: row[8].real().unwrap_or(0.0),
                cost_known: i(9),
                duration_sum: i(10),
                duration_max: i(11),
                ttfb_sum: i(12),
                ttfb_count: i(13),
                ttfb_max: i(14),
            };
            let value = row[15].text().unwrap_or("").to_owned();
            (i(0), sums, value)
        })
        .collect()
}

/// Builds the statistics from the rows of a statistics answer.
pub(crate) fn stats_from_rows(rows: Vec<StatsRow>, grouped: bool) -> Stats {
    let mut totals = Sums::default();
    let mut buckets = Vec::with_capacity(rows.len());
    for (start, sums, value) in rows {
        totals.add(&sums);
        let group = (grouped && !value.is_empty()).then_some(value);
        buckets.push(StatsBucket {
            start: UNIX_EPOCH + Duration::from_millis(i64_to_u64(start)),
            group,
            figures: Figures::from_sums(&sums),
        });
    }
    Stats {
        buckets,
        totals: Figures::from_sums(&totals),
    }
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339(*t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s).map_err(D::Error::custom)
    }
}

mod opt_rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(&humantime::format_rfc3339_millis(*t)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        s.map(|s| humantime::parse_rfc3339_weak(&s).map_err(D::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_deserialize_from_the_api_shape() {
        let q: LogQuery = serde_json::from_value(serde_json::json!({
            "model": "gpt-4o", "status": 200, "since": "2026-01-01T00:00:00Z", "limit": 10
        }))
        .unwrap();
        assert_eq!(q.model.as_deref(), Some("gpt-4o"));
        assert_eq!(ms(q.since.unwrap()), 1_767_225_600_000);
        assert!(serde_json::from_value::<LogQuery>(serde_json::json!({"modle": "x"})).is_err());
        let s: StatsQuery =
            serde_json::from_value(serde_json::json!({"bucket": "day", "group_by": "user"}))
                .unwrap();
        assert_eq!((s.bucket, s.group_by), (Bucket::Day, Some(GroupBy::User)));
        assert_eq!(StatsQuery::default().bucket, Bucket::Hour);
    }

    #[test]
    fn filtered_pages_pick_a_dimension_and_merge_minutes() {
        let q = LogQuery {
            model: Some("m".into()),
            user: Some("u".repeat(200)),
            status: Some(200),
            ..LogQuery::default()
        };
        let (dim, value) = driving_filter(&q).unwrap();
        assert_eq!((dim, value.len()), ("user", crate::schema::MAX_KEY_LEN));
        let q = LogQuery {
            status: Some(429),
            ..LogQuery::default()
        };
        assert_eq!(driving_filter(&q), Some(("status", "429".into())));
        assert_eq!(driving_filter(&LogQuery::default()), None);
        assert_eq!(
            merge_minutes(&[300, 240, 120, 0], 60),
            vec![(240, 360), (120, 180), (0, 60)]
        );
        let sql = logs_sql(Backend::Postgres, &q, 10, Some(&[(240, 360), (0, 60)]));
        assert!(
            sql.text.contains(
                "AND ((started_at >= $2 AND started_at < $3) OR (started_at >= $4 AND started_at < $5)) ORDER BY id DESC"
            ),
            "{}",
            &*sql.text
        );
    }

    #[test]
    fn limits_and_ranges() {
        assert_eq!(limit_of(&LogQuery::default()), DEFAULT_LIMIT);
        let big = LogQuery {
            limit: Some(1_000_000),
            ..LogQuery::default()
        };
        assert_eq!(limit_of(&big), MAX_LIMIT);
        let now = UNIX_EPOCH + Duration::from_secs(10 * 86_400 + 90);
        let (since, until) = stats_range(&StatsQuery::default(), now).unwrap();
        assert_eq!(until - since, 86_400_000 + 90_000);
        assert_eq!(since % 3_600_000, 0);
        let backwards = StatsQuery {
            since: Some(now),
            until: Some(UNIX_EPOCH),
            ..StatsQuery::default()
        };
        assert!(stats_range(&backwards, now).is_err());
        let huge = StatsQuery {
            since: Some(UNIX_EPOCH),
            bucket: Bucket::Minute,
            ..StatsQuery::default()
        };
        let now = UNIX_EPOCH + Duration::from_secs(30 * 86_400);
        assert_eq!(
            stats_range(&huge, now).unwrap_err().kind(),
            crate::ErrorKind::InvalidQuery
        );
    }

    #[test]
    fn figures_keep_unknown_cost_and_ttfb_null() {
        let f = Figures::from_sums(&Sums {
            requests: 2,
            duration_sum: 30,
            ..Sums::default()
        });
        assert_eq!(f.cost_usd, None);
        assert_eq!(f.avg_ttfb_ms, None);
        assert_eq!(f.avg_duration_ms, 15.0);
        let json = serde_json::to_value(StatsBucket {
            start: UNIX_EPOCH,
            group: None,
            figures: f,
        })
        .unwrap();
        assert_eq!(json["start"], "1970-01-01T00:00:00Z");
        assert!(json["group"].is_null());
        assert_eq!(json["requests"], 2);
        assert!(json["cost_usd"].is_null());
    }
}
