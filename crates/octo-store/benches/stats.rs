//! The admin API's reads on a SQLite request log of `OCTOLLM_BENCH_LOG_ROWS` rows (default
//! 20,000) spread over 30 days:
//!
//! - `stats/<bucket>/<group_by>`: every bucket width and every `group_by` (and none): minutes
//!   over the last day, hours and days over the 30 days. Statistics read the per-dimension
//!   rollups, so the time depends on buckets × values of the grouped dimension, not on the log.
//! - `logs/<filter>`: the newest page of 50 records, unfiltered and filtered by each column
//!   (the filtered ones find their minutes in `rollup_dim_minute`).
//!
//! The database is built once under the target directory (`octo-store-bench/stats-v<schema
//! version>-<N>.db`) and reused. Run with
//! `OCTOLLM_BENCH_LOG_ROWS=10000000 cargo bench -p octo-store --bench stats`;
//! `cargo test --benches` runs it once as a smoke test.
//!
//! `OCTOLLM_BENCH_DB=path.db` measures an existing SQLite log instead, such as one filled by
//! `target/release/octo-fill-log path.db 10000000` (crate octo-bench; records over the
//! 30 days before it ran): the ranges then end now, as the panel's do.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use octo_store::testing::{self, SAMPLE_EPOCH_MS};
use octo_store::{Bucket, GroupBy, LogQuery, StatsQuery, Store, StoreConfig};

const DAY_MS: u64 = 86_400_000;

/// Record `i` of `n`, over 30 days from [`SAMPLE_EPOCH_MS`] ([`testing::spread`]).
fn record(i: u64, n: u64) -> octo_core::record::Record {
    testing::spread(i, n, SAMPLE_EPOCH_MS)
}

fn database(rt: &tokio::runtime::Runtime, n: u64) -> Store {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("octo-store-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let v = octo_store::schema::SCHEMA_VERSION;
    let path = dir.join(format!("stats-v{v}-{n}.db"));
    let done = dir.join(format!("stats-v{v}-{n}.done"));
    rt.block_on(async {
        if !done.exists() {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        let config = StoreConfig::with_url(format!("sqlite://{}", path.display()));
        let store = Store::open(&config).await.unwrap();
        if !done.exists() {
            let started = Instant::now();
            let batch = 5_000;
            let mut i = 0;
            while i < n {
                let records: Vec<_> = (i..(i + batch).min(n))
                    .map(|j| Arc::new(record(j, n)))
                    .collect();
                store.write(&records).await.unwrap();
                i += batch;
            }
            let took = started.elapsed();
            eprintln!(
                "populated {n} log rows in {:.1} s ({:.0} rows/s) at {}",
                took.as_secs_f64(),
                n as f64 / took.as_secs_f64(),
                path.display()
            );
            std::fs::write(&done, format!("{n} rows in {:.1} s\n", took.as_secs_f64())).unwrap();
        }
        store
    })
}

fn stats(c: &mut Criterion) {
    let n: u64 = std::env::var("OCTOLLM_BENCH_LOG_ROWS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let external = std::env::var_os("OCTOLLM_BENCH_DB");
    let (store, start, end) = match &external {
        Some(path) => {
            let url = format!("sqlite://{}", PathBuf::from(path).display());
            let store = rt
                .block_on(Store::open(&StoreConfig::with_url(url)))
                .unwrap();
            let end = std::time::SystemTime::now();
            (store, end - Duration::from_millis(30 * DAY_MS), end)
        }
        None => {
            let start = UNIX_EPOCH + Duration::from_millis(SAMPLE_EPOCH_MS);
            (
                database(&rt, n),
                start,
                start + Duration::from_millis(30 * DAY_MS),
            )
        }
    };
    let n_label = match &external {
        Some(_) => "external".to_owned(),
        None => n.to_string(),
    };
    let mut group = c.benchmark_group("stats");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    for (bucket, since, name) in [
        (
            Bucket::Minute,
            end - Duration::from_millis(DAY_MS),
            "minute_1d",
        ),
        (Bucket::Hour, start, "hour_30d"),
        (Bucket::Day, start, "day_30d"),
    ] {
        for group_by in [
            None,
            Some(GroupBy::Model),
            Some(GroupBy::Backend),
            Some(GroupBy::Org),
            Some(GroupBy::User),
            Some(GroupBy::Status),
        ] {
            let query = StatsQuery {
                since: Some(since),
                until: Some(end),
                bucket,
                group_by,
            };
            let s = rt.block_on(store.stats(&query)).unwrap();
            if bucket != Bucket::Minute && external.is_none() {
                assert_eq!(s.totals.requests, n);
            }
            let by = group_by.map_or("none".to_owned(), |g| {
                serde_json::to_value(g)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            });
            eprintln!(
                "stats {name} group_by {by}: {} buckets, {} requests",
                s.buckets.len(),
                s.totals.requests
            );
            group.bench_function(format!("{name}/{by}/{n_label}_log_rows"), |b| {
                b.iter(|| rt.block_on(store.stats(&query)).unwrap())
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("logs");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    let filters: [(&str, LogQuery); 6] = [
        ("none", LogQuery::default()),
        (
            "model",
            LogQuery {
                model: Some("model-3".into()),
                ..LogQuery::default()
            },
        ),
        (
            "backend",
            LogQuery {
                backend: Some("backend-3-1".into()),
                ..LogQuery::default()
            },
        ),
        (
            "org",
            LogQuery {
                org: Some("org-2".into()),
                ..LogQuery::default()
            },
        ),
        (
            "user",
            LogQuery {
                user: Some("user-7".into()),
                ..LogQuery::default()
            },
        ),
        (
            "status_500",
            LogQuery {
                status: Some(500),
                ..LogQuery::default()
            },
        ),
    ];
    for (name, query) in filters {
        let page = rt.block_on(store.logs(&query)).unwrap();
        assert_eq!(page.data.len(), 50, "{name}");
        // And the page after it, through the cursor.
        let next = LogQuery {
            before: page.next.clone(),
            ..query.clone()
        };
        group.bench_function(format!("{name}/{n_label}_log_rows"), |b| {
            b.iter(|| rt.block_on(store.logs(&query)).unwrap())
        });
        group.bench_function(format!("{name}_page_2/{n_label}_log_rows"), |b| {
            b.iter(|| rt.block_on(store.logs(&next)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, stats);
criterion_main!(benches);
