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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use octo_store::testing::{SAMPLE_EPOCH_MS, sample_at};
use octo_store::{Bucket, GroupBy, LogQuery, StatsQuery, Store, StoreConfig};

const DAY_MS: u64 = 86_400_000;

/// Record `i` of `n`: spread evenly over 30 days; 16 users in 4 orgs, each using 2 of 8 models
/// on one of 2 backends; 97% status 200, 2% 429, 1% 500.
fn record(i: u64, n: u64) -> octo_core::record::Record {
    let ms = SAMPLE_EPOCH_MS + i * (30 * DAY_MS) / n;
    let mut r = sample_at(i, ms);
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    let user = h % 16;
    let model = (user + 3 * (h / 16 % 2)) % 8;
    r.user = Some(format!("user-{user}"));
    r.org = Some(format!("org-{}", user % 4));
    r.model = Some(format!("model-{model}"));
    r.backend = Some(format!("backend-{}-{}", model, h / 32 % 2));
    r.status = match h / 64 % 100 {
        0..=1 => 429,
        2 => 500,
        _ => 200,
    };
    r
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
    let store = database(&rt, n);
    let start = UNIX_EPOCH + Duration::from_millis(SAMPLE_EPOCH_MS);
    let end = start + Duration::from_millis(30 * DAY_MS);
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
            if bucket != Bucket::Minute {
                assert_eq!(s.totals.requests, n);
            }
            let by = group_by.map_or("none".to_owned(), |g| {
                serde_json::to_value(g)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            });
            eprintln!("stats {name} group_by {by}: {} buckets", s.buckets.len());
            group.bench_function(format!("{name}/{by}/{n}_log_rows"), |b| {
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
        group.bench_function(format!("{name}/{n}_log_rows"), |b| {
            b.iter(|| rt.block_on(store.logs(&query)).unwrap())
        });
        group.bench_function(format!("{name}_page_2/{n}_log_rows"), |b| {
            b.iter(|| rt.block_on(store.logs(&next)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, stats);
criterion_main!(benches);
