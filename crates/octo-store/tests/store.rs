//! The store against real databases: records round-trip, filters and the cursor, statistics per
//! bucket and group, rollup upserts with repeated keys, retention.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{arcs, databases};
use octo_core::record::Record;
use octo_store::testing;
use octo_store::testing::{SAMPLE_EPOCH_MS, sample, sample_at};
use octo_store::{Bucket, GroupBy, LogQuery, StatsQuery};

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[tokio::test]
async fn records_round_trip_exactly() {
    for db in databases("round_trip").await {
        let store = db.open().await;
        let records: Vec<Record> = (0..60).map(sample).collect();
        store.write(&arcs(&records)).await.unwrap();
        for r in &records {
            let back = store.log(&r.id).await.unwrap();
            assert_eq!(back.as_ref(), Some(r), "{}: record {}", db.name, r.id);
        }
        assert_eq!(store.log("no-such-id").await.unwrap(), None);
        // Sub-millisecond start times are kept to the millisecond (the API's precision).
        let mut fine = sample(1000);
        fine.started_at += Duration::from_micros(1234);
        store
            .write(&arcs(std::slice::from_ref(&fine)))
            .await
            .unwrap();
        let back = store.log(&fine.id).await.unwrap().unwrap();
        assert_eq!(back.started_at_ms(), fine.started_at_ms());
        // Extreme values survive.
        let mut edge = sample(1001);
        edge.cost_usd = Some(0.1 + 0.2);
        edge.duration_ms = i64::MAX as u64;
        edge.error = Some("ünïcödé 🐙 'quotes' \"and\" \\backslashes".into());
        edge.model = Some("m".repeat(300));
        store
            .write(&arcs(std::slice::from_ref(&edge)))
            .await
            .unwrap();
        assert_eq!(
            store.log(&edge.id).await.unwrap().as_ref(),
            Some(&edge),
            "{}",
            db.name
        );
        // Writing the same records again changes nothing.
        store.write(&arcs(&records[..5])).await.unwrap();
        let totals = store
            .stats_at(
                &StatsQuery {
                    since: Some(at(SAMPLE_EPOCH_MS - 86_400_000)),
                    bucket: Bucket::Day,
                    ..StatsQuery::default()
                },
                at(SAMPLE_EPOCH_MS + 5 * 86_400_000),
            )
            .await
            .unwrap()
            .totals;
        assert_eq!(totals.requests, 62, "{}", db.name);
        store.close().await;
    }
}

#[tokio::test]
async fn filters_and_cursor() {
    for db in databases("filters").await {
        let store = db.open().await;
        let records: Vec<Record> = (0..120).map(sample).collect();
        // Written out of order, in two batches.
        let (a, b) = records.split_at(70);
        store.write(&arcs(b)).await.unwrap();
        store.write(&arcs(a)).await.unwrap();
        let newest_first = |f: &dyn Fn(&Record) -> bool| -> Vec<String> {
            let mut v: Vec<&Record> = records.iter().filter(|r| f(r)).collect();
            v.sort_by(|x, y| y.id.cmp(&x.id));
            v.into_iter().map(|r| r.id.clone()).collect()
        };
        let since = at(SAMPLE_EPOCH_MS + 20_000);
        let until = at(SAMPLE_EPOCH_MS + 100_000);
        type Case = (LogQuery, Box<dyn Fn(&Record) -> bool>);
        let cases: Vec<Case> = vec![
            (LogQuery::default(), Box::new(|_| true)),
            (
                LogQuery {
                    model: Some("gpt-4o".into()),
                    ..LogQuery::default()
                },
                Box::new(|r| r.model.as_deref() == Some("gpt-4o")),
            ),
            (
                LogQuery {
                    backend: Some("backend-1".into()),
                    status: Some(200),
                    ..LogQuery::default()
                },
                Box::new(|r| r.backend.as_deref() == Some("backend-1") && r.status == 200),
            ),
            (
                LogQuery {
                    org: Some("acme".into()),
                    user: Some("user-2".into()),
                    ..LogQuery::default()
                },
                Box::new(|r| {
                    r.org.as_deref() == Some("acme") && r.user.as_deref() == Some("user-2")
                }),
            ),
            (
                LogQuery {
                    since: Some(since),
                    until: Some(until),
                    status: Some(502),
                    ..LogQuery::default()
                },
                Box::new(move |r| r.started_at >= since && r.started_at < until && r.status == 502),
            ),
        ];
        for (q, f) in cases {
            let expected = newest_first(&*f);
            let mut got = Vec::new();
            let mut page_q = LogQuery {
                limit: Some(7),
                ..q.clone()
            };
            loop {
                let page = store.logs(&page_q).await.unwrap();
                assert!(page.data.len() <= 7);
                got.extend(page.data.iter().map(|r| r.id.clone()));
                match page.next {
                    Some(next) => {
                        assert_eq!(Some(&next), got.last());
                        page_q.before = Some(next);
                    }
                    None => break,
                }
            }
            assert_eq!(got, expected, "{}: {q:?}", db.name);
            // The default page is the newest 50.
            let first = store.logs(&q).await.unwrap();
            assert_eq!(first.data.len(), expected.len().min(50));
            assert_eq!(
                first.next.is_some(),
                expected.len() > 50,
                "{}: {q:?}",
                db.name
            );
        }
        store.close().await;
    }
}

/// Expected figures computed from the records directly.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    requests: u64,
    errors: u64,
    input: u64,
    output: u64,
    reasoning: u64,
    cache_read: u64,
    cache_write: u64,
    cost: Option<f64>,
    dur_sum: u64,
    dur_max: u64,
}

#[tokio::test]
async fn stats_per_bucket_and_group() {
    for db in databases("stats").await {
        let store = db.open().await;
        // 3 hours of records, one every 50 s.
        let records: Vec<Record> = (0..216)
            .map(|i| sample_at(i, SAMPLE_EPOCH_MS + i * 50_000))
            .collect();
        for chunk in records.chunks(37) {
            store.write(&arcs(chunk)).await.unwrap();
        }
        let now = at(SAMPLE_EPOCH_MS + 4 * 3_600_000);
        for (bucket, width) in [
            (Bucket::Minute, 60_000),
            (Bucket::Hour, 3_600_000),
            (Bucket::Day, 86_400_000),
        ] {
            for group_by in [
                None,
                Some(GroupBy::Model),
                Some(GroupBy::User),
                Some(GroupBy::Status),
            ] {
                let mut expected: BTreeMap<(u64, Option<String>), Expected> = BTreeMap::new();
                for r in &records {
                    let ms = r.started_at_ms() as u64;
                    let group = match group_by {
                        None => None,
                        Some(GroupBy::Model) => r.model.clone(),
                        Some(GroupBy::User) => r.user.clone(),
                        Some(GroupBy::Status) => Some(r.status.to_string()),
                        Some(_) => unreachable!(),
                    };
                    let e = expected.entry((ms - ms % width, group)).or_default();
                    let u = r.usage.unwrap_or_default();
                    e.requests += 1;
                    e.errors += u64::from(r.status >= 400);
                    e.input += u.input_tokens;
                    e.output += u.output_tokens;
                    e.reasoning += u.reasoning_tokens;
                    e.cache_read += u.cache_read_tokens;
                    e.cache_write += u.cache_write_tokens;
                    if let Some(c) = r.cost_usd {
                        e.cost = Some(e.cost.unwrap_or(0.0) + c);
                    }
                    e.dur_sum += r.duration_ms;
                    e.dur_max = e.dur_max.max(r.duration_ms);
                }
                let q = StatsQuery {
                    since: Some(at(SAMPLE_EPOCH_MS)),
                    until: None,
                    bucket,
                    group_by,
                };
                let stats = store.stats_at(&q, now).await.unwrap();
                let got: BTreeMap<(u64, Option<String>), Expected> = stats
                    .buckets
                    .iter()
                    .map(|b| {
                        let f = &b.figures;
                        let start = b.start.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
                        let e = Expected {
                            requests: f.requests,
                            errors: f.errors,
                            input: f.input_tokens,
                            output: f.output_tokens,
                            reasoning: f.reasoning_tokens,
                            cache_read: f.cache_read_tokens,
                            cache_write: f.cache_write_tokens,
                            cost: f.cost_usd,
                            dur_sum: (f.avg_duration_ms * f.requests as f64).round() as u64,
                            dur_max: f.max_duration_ms,
                        };
                        ((start, b.group.clone()), e)
                    })
                    .collect();
                assert_eq!(
                    got.len(),
                    expected.len(),
                    "{} {bucket:?} {group_by:?}",
                    db.name
                );
                for (k, e) in &expected {
                    let g = &got[k];
                    let close = match (g.cost, e.cost) {
                        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
                        (a, b) => a == b,
                    };
                    assert!(
                        close,
                        "{}: cost of {k:?}: {:?} vs {:?}",
                        db.name, g.cost, e.cost
                    );
                    assert_eq!(
                        Expected { cost: None, ..*g },
                        Expected { cost: None, ..*e },
                        "{} {bucket:?} {group_by:?} {k:?}",
                        db.name
                    );
                }
                assert_eq!(stats.totals.requests, 216);
                // Buckets come in time order.
                assert!(stats.buckets.windows(2).all(|w| w[0].start <= w[1].start));
            }
        }
        // JSON shape.
        let q = StatsQuery {
            since: Some(at(SAMPLE_EPOCH_MS)),
            group_by: Some(GroupBy::Model),
            ..StatsQuery::default()
        };
        let json = serde_json::to_value(store.stats_at(&q, now).await.unwrap()).unwrap();
        assert_eq!(json["buckets"][0]["start"], "2026-01-01T00:00:00Z");
        for k in [
            "group",
            "requests",
            "errors",
            "input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "output_tokens",
            "reasoning_tokens",
            "cost_usd",
            "avg_duration_ms",
            "max_duration_ms",
            "avg_ttfb_ms",
        ] {
            assert!(json["buckets"][0].get(k).is_some(), "bucket lacks {k}");
            if k != "group" {
                assert!(json["totals"].get(k).is_some(), "totals lack {k}");
            }
        }
        store.close().await;
    }
}

#[tokio::test]
async fn one_batch_with_repeated_rollup_keys() {
    for db in databases("repeated_keys").await {
        let store = db.open().await;
        // 300 records, all with the same key, in the same minute, in one batch.
        let records: Vec<Record> = (0..300)
            .map(|i| {
                let mut r = sample_at(0, SAMPLE_EPOCH_MS + i);
                r.id = format!("{:012x}-7000-8000-{:012x}", SAMPLE_EPOCH_MS + i, i);
                r.duration_ms = i;
                r
            })
            .collect();
        store.write(&arcs(&records)).await.unwrap();
        // And again in a second batch that repeats the key.
        let mut more = sample_at(0, SAMPLE_EPOCH_MS + 500);
        more.id = "second".into();
        more.duration_ms = 1000;
        store.write(&arcs(&[more])).await.unwrap();
        for bucket in [Bucket::Minute, Bucket::Hour, Bucket::Day] {
            let q = StatsQuery {
                since: Some(at(SAMPLE_EPOCH_MS)),
                bucket,
                ..StatsQuery::default()
            };
            let stats = store
                .stats_at(&q, at(SAMPLE_EPOCH_MS + 60_000))
                .await
                .unwrap();
            assert_eq!(stats.buckets.len(), 1, "{} {bucket:?}", db.name);
            let f = &stats.buckets[0].figures;
            assert_eq!(f.requests, 301);
            assert_eq!(f.max_duration_ms, 1000);
            assert_eq!(f.avg_duration_ms, (299 * 300 / 2 + 1000) as f64 / 301.0);
            assert_eq!(f.input_tokens, 301 * records[0].usage.unwrap().input_tokens);
        }
        store.close().await;
    }
}

#[tokio::test]
async fn retention_deletes_only_old_log_rows_and_keeps_hour_rollups() {
    for db in databases("retention").await {
        let store = db.open().await;
        let day = 86_400_000;
        // 2500 old records (more than one delete batch) and 10 recent ones.
        let old: Vec<Record> = (0..2500)
            .map(|i| sample_at(i, SAMPLE_EPOCH_MS + i * 10))
            .collect();
        let recent: Vec<Record> = (0..10)
            .map(|i| sample_at(5000 + i, SAMPLE_EPOCH_MS + 40 * day + i))
            .collect();
        for chunk in old.chunks(500) {
            store.write(&arcs(chunk)).await.unwrap();
        }
        store.write(&arcs(&recent)).await.unwrap();
        let pruned = store.prune(at(SAMPLE_EPOCH_MS + 10 * day)).await.unwrap();
        assert_eq!(pruned.log_rows, 2500, "{}", db.name);
        assert!(pruned.minute_rows > 0);
        for r in &recent {
            assert!(store.log(&r.id).await.unwrap().is_some());
        }
        assert!(store.log(&old[0].id).await.unwrap().is_none());
        assert!(store.log(&old[2499].id).await.unwrap().is_none());
        let page = store
            .logs(&LogQuery {
                limit: Some(1000),
                ..LogQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.data.len(), 10);
        // Hour and day rollups still count the old records; minute rollups are gone.
        let since = Some(at(SAMPLE_EPOCH_MS));
        let until = Some(at(SAMPLE_EPOCH_MS + day));
        for (bucket, expected) in [
            (Bucket::Hour, 2500),
            (Bucket::Day, 2500),
            (Bucket::Minute, 0),
        ] {
            let q = StatsQuery {
                since,
                until,
                bucket,
                group_by: None,
            };
            let stats = store.stats(&q).await.unwrap();
            assert_eq!(stats.totals.requests, expected, "{} {bucket:?}", db.name);
        }
        // Nothing more to prune.
        let again = store.prune(at(SAMPLE_EPOCH_MS + 10 * day)).await.unwrap();
        assert_eq!((again.log_rows, again.minute_rows), (0, 0));
        store.close().await;
    }
}

/// A database written by schema version 1 is upgraded in place: version 2's per-dimension
/// rollups are filled from the old rollups (statistics over old data are whole), the five filter
/// indexes are dropped, and filtered log pages find old rows.
#[tokio::test]
async fn upgrading_a_version_1_database_keeps_its_statistics_and_filters() {
    for db in databases("upgrade_v1").await {
        let store = db.open().await;
        let records: Vec<Record> = (0..300)
            .map(|i| sample_at(i, SAMPLE_EPOCH_MS + i * 37_000))
            .collect();
        store.write(&arcs(&records)).await.unwrap();
        let now = at(SAMPLE_EPOCH_MS + 4 * 3_600_000);
        let queries: Vec<StatsQuery> = [Bucket::Minute, Bucket::Hour, Bucket::Day]
            .into_iter()
            .flat_map(|bucket| {
                [
                    None,
                    Some(GroupBy::Model),
                    Some(GroupBy::Backend),
                    Some(GroupBy::Org),
                    Some(GroupBy::User),
                    Some(GroupBy::Status),
                ]
                .into_iter()
                .map(move |group_by| StatsQuery {
                    since: Some(at(SAMPLE_EPOCH_MS)),
                    until: None,
                    bucket,
                    group_by,
                })
            })
            .collect();
        let mut before = Vec::new();
        for q in &queries {
            before.push(store.stats_at(q, now).await.unwrap());
        }
        let filtered = LogQuery {
            user: Some("user-1".into()),
            limit: Some(1000),
            ..LogQuery::default()
        };
        let page_before = store.logs(&filtered).await.unwrap();
        assert!(!page_before.data.is_empty());

        testing::make_version_1(&store).await.unwrap();
        let (version, indexes) = testing::schema_state(&store).await.unwrap();
        assert_eq!(version, 1, "{}", db.name);
        assert_eq!(indexes.len(), 6, "{}: {indexes:?}", db.name);
        store.close().await;

        let store = db.open().await;
        let (version, indexes) = testing::schema_state(&store).await.unwrap();
        assert_eq!(version, octo_store::schema::SCHEMA_VERSION, "{}", db.name);
        assert_eq!(
            indexes,
            vec!["request_log_started_at".to_owned()],
            "{}",
            db.name
        );
        for (q, expected) in queries.iter().zip(&before) {
            let got = store.stats_at(q, now).await.unwrap();
            assert_eq!(
                got.buckets.len(),
                expected.buckets.len(),
                "{} {q:?}",
                db.name
            );
            for (g, e) in got.buckets.iter().zip(&expected.buckets) {
                assert_eq!(
                    (g.start, &g.group),
                    (e.start, &e.group),
                    "{} {q:?}",
                    db.name
                );
                assert_eq!(g.figures.requests, e.figures.requests);
                assert_eq!(g.figures.max_duration_ms, e.figures.max_duration_ms);
                assert_eq!(g.figures.input_tokens, e.figures.input_tokens);
                let (gc, ec) = (g.figures.cost_usd, e.figures.cost_usd);
                assert!(
                    gc.zip(ec).map_or(gc == ec, |(a, b)| (a - b).abs() < 1e-9),
                    "{} {q:?}: {gc:?} vs {ec:?}",
                    db.name
                );
            }
        }
        assert_eq!(
            store.logs(&filtered).await.unwrap(),
            page_before,
            "{}",
            db.name
        );
        // Records written after the upgrade land in both kinds of rollups.
        let late = sample_at(1000, SAMPLE_EPOCH_MS + 3 * 3_600_000);
        store
            .write(&arcs(std::slice::from_ref(&late)))
            .await
            .unwrap();
        let q = StatsQuery {
            since: Some(at(SAMPLE_EPOCH_MS)),
            until: None,
            bucket: Bucket::Day,
            group_by: None,
        };
        assert_eq!(store.stats_at(&q, now).await.unwrap().totals.requests, 301);
        store.close().await;
    }
}

/// Filtered pages read the log only in the minutes the per-dimension rollups name: rows spread
/// thinly over many hours (more than one step of candidate minutes) are all found, in order,
/// with the cursor, and the bounds of `since`, `until` and `before` are honoured.
#[tokio::test]
async fn filtered_pages_over_sparse_minutes() {
    for db in databases("sparse_filters").await {
        let store = db.open().await;
        // 400 records one every 7 minutes; the user `rare` only on every 5th.
        let records: Vec<Record> = (0..400)
            .map(|i| {
                let mut r = sample_at(i, SAMPLE_EPOCH_MS + i * 420_000);
                if i % 5 == 0 {
                    r.user = Some("rare".into());
                }
                r
            })
            .collect();
        store.write(&arcs(&records)).await.unwrap();
        let expected = |f: &dyn Fn(&Record) -> bool| -> Vec<String> {
            let mut v: Vec<String> = records
                .iter()
                .filter(|r| f(r))
                .map(|r| r.id.clone())
                .collect();
            v.sort_by(|a, b| b.cmp(a));
            v
        };
        let since = at(SAMPLE_EPOCH_MS + 50 * 420_000 + 1);
        let until = at(SAMPLE_EPOCH_MS + 350 * 420_000);
        type Case = (LogQuery, Box<dyn Fn(&Record) -> bool>);
        let cases: Vec<Case> = vec![
            (
                LogQuery {
                    user: Some("rare".into()),
                    ..LogQuery::default()
                },
                Box::new(|r| r.user.as_deref() == Some("rare")),
            ),
            (
                LogQuery {
                    user: Some("rare".into()),
                    status: Some(200),
                    since: Some(since),
                    until: Some(until),
                    ..LogQuery::default()
                },
                Box::new(move |r| {
                    r.user.as_deref() == Some("rare")
                        && r.status == 200
                        && r.started_at >= since
                        && r.started_at < until
                }),
            ),
            (
                LogQuery {
                    status: Some(499),
                    ..LogQuery::default()
                },
                Box::new(|r| r.status == 499),
            ),
            (
                LogQuery {
                    model: Some("".into()),
                    ..LogQuery::default()
                },
                Box::new(|_| false),
            ),
            (
                LogQuery {
                    org: Some("nobody".into()),
                    ..LogQuery::default()
                },
                Box::new(|_| false),
            ),
        ];
        for (q, f) in cases {
            let want = expected(&*f);
            let mut got = Vec::new();
            let mut page_q = LogQuery {
                limit: Some(9),
                ..q.clone()
            };
            loop {
                let page = store.logs(&page_q).await.unwrap();
                got.extend(page.data.iter().map(|r| r.id.clone()));
                match page.next {
                    Some(next) => page_q.before = Some(next),
                    None => break,
                }
            }
            assert_eq!(got, want, "{}: {q:?}", db.name);
        }
        store.close().await;
    }
}

/// Kept bodies: written with their record (secrets redacted, text cut on a character), served
/// by `log(id)` only (pages stay light), and pruned with their record.
#[tokio::test]
async fn bodies_are_kept_redacted_and_pruned_with_their_record() {
    for db in databases("bodies").await {
        let config = octo_store::StoreConfig {
            redact: octo_store::Secrets::new(["sk-upstream-key-0123", "gw-key-4567"]),
            ..db.config.clone()
        };
        let store = octo_store::Store::open(&config).await.unwrap();
        let mut with = sample(1);
        with.bodies = Some(octo_core::record::Bodies {
            request:
                r#"{"model":"m","messages":[{"role":"user","content":"my key is gw-key-4567 ü"}]}"#
                    .into(),
            request_size: 5000,
            // Cut inside the two bytes of "é".
            response: bytes::Bytes::copy_from_slice(
                &"data: {\"x\":\"sk-upstream-key-0123\"}\n\ndata: caf\u{e9}".as_bytes()[..46],
            ),
            response_size: 70_000,
        });
        let without = sample(2);
        store
            .write(&arcs(&[with.clone(), without.clone()]))
            .await
            .unwrap();
        let got = store.log(&with.id).await.unwrap().unwrap();
        let b = got.bodies.as_ref().expect("bodies kept");
        let request = std::str::from_utf8(&b.request).unwrap();
        assert!(
            request.contains("my key is [REDACTED] ü"),
            "{}: {request}",
            db.name
        );
        let response = std::str::from_utf8(&b.response).unwrap();
        assert_eq!(
            response, "data: {\"x\":\"[REDACTED]\"}\n\ndata: caf",
            "{}",
            db.name
        );
        assert_eq!((b.request_size, b.response_size), (5000, 70_000));
        assert_eq!(store.log(&without.id).await.unwrap().unwrap().bodies, None);
        let page = store.logs(&LogQuery::default()).await.unwrap();
        assert!(page.data.iter().all(|r| r.bodies.is_none()));
        let pruned = store.prune(at(SAMPLE_EPOCH_MS + 86_400_000)).await.unwrap();
        assert_eq!(pruned.log_rows, 2);
        assert!(store.log(&with.id).await.unwrap().is_none());
        // The body row went with it: writing the record again works (no stale body row).
        store.write(&arcs(&[with.clone()])).await.unwrap();
        assert!(store.log(&with.id).await.unwrap().unwrap().bodies.is_some());
        store.close().await;
    }
}

/// Statistics come back from SQLite and PostgreSQL as one JSON value: costs read back as the
/// same `f64` the rollups hold (not cut to 15 digits), group names with quotes, backslashes and
/// non-ASCII characters survive, and groups are in byte order within a bucket.
#[tokio::test]
async fn stats_keep_exact_costs_and_odd_names() {
    for db in databases("stats_exact").await {
        let store = db.open().await;
        let costs = [0.1 + 0.2, 1.0 / 3.0, 1e6 / 7.0, 2.5e-10 / 3.0, 1e-9 / 7.0];
        let names = ["zeta", "Ünïcödé 🐙", "quote\"s", "back\\slash", "a,b;c"];
        let records: Vec<Record> = costs
            .iter()
            .zip(names)
            .enumerate()
            .map(|(i, (c, n))| {
                let mut r = sample_at(i as u64, SAMPLE_EPOCH_MS + i as u64 * 3_600_000);
                r.cost_usd = Some(*c);
                r.model = Some(n.to_owned());
                r
            })
            .collect();
        store.write(&arcs(&records)).await.unwrap();
        let q = StatsQuery {
            since: Some(at(SAMPLE_EPOCH_MS)),
            until: Some(at(SAMPLE_EPOCH_MS + 86_400_000)),
            bucket: Bucket::Hour,
            group_by: Some(GroupBy::Model),
        };
        let stats = store.stats(&q).await.unwrap();
        let got: Vec<(Option<String>, Option<f64>)> = stats
            .buckets
            .iter()
            .map(|b| (b.group.clone(), b.figures.cost_usd))
            .collect();
        let want: Vec<(Option<String>, Option<f64>)> = names
            .iter()
            .zip(costs)
            .map(|(n, c)| (Some((*n).to_owned()), Some(c)))
            .collect();
        assert_eq!(got, want, "{}", db.name);
        // Two groups in one bucket: in byte order.
        let mut late = sample_at(99, SAMPLE_EPOCH_MS + 10);
        late.model = Some("B".into());
        let mut early = sample_at(98, SAMPLE_EPOCH_MS + 20);
        early.model = Some("a".into());
        store.write(&arcs(&[late, early])).await.unwrap();
        let stats = store.stats(&q).await.unwrap();
        let first: Vec<Option<&str>> = stats.buckets[..3]
            .iter()
            .map(|b| b.group.as_deref())
            .collect();
        assert_eq!(first, [Some("B"), Some("a"), Some("zeta")], "{}", db.name);
        store.close().await;
    }
}
