//! Sample records for tests and benchmarks: varied, deterministic, and exactly representable in
//! the log (`started_at` to the millisecond).

use std::time::{Duration, UNIX_EPOCH};

use crate::config::Backend;
use crate::db::{Col, Sql};
use crate::error::StoreError;
use crate::schema::{DIM_TABLES, LOG_FILTERS};

use octo_core::Protocol;
use octo_core::record::{Attempt, Price, Record, TraceContext};
use octo_core::usage::Usage;

/// 2026-01-01T00:00:00Z in Unix milliseconds: where [`sample`] records start.
pub const SAMPLE_EPOCH_MS: u64 = 1_767_225_600_000;

/// Record number `i`, started `i` seconds after [`SAMPLE_EPOCH_MS`], with fields varied by `i`
/// (odd ones streamed and unpriced, every third failed with two attempts, every fourth without
/// usage, …). Ids sort by start time.
pub fn sample(i: u64) -> Record {
    sample_at(i, SAMPLE_EPOCH_MS + i * 1000)
}

/// Record number `i`, started at `ms` (Unix milliseconds).
pub fn sample_at(i: u64, ms: u64) -> Record {
    let failed = i % 3 == 2;
    let usage = (i % 4 != 3).then(|| Usage {
        input_tokens: 100 + i,
        cache_read_tokens: i % 5 * 10,
        cache_write_tokens: i % 7,
        output_tokens: 20 + i % 11,
        reasoning_tokens: i % 3,
    });
    let priced = i % 2 == 0 && usage.is_some();
    let price = Price {
        input: 2.5,
        output: 10.0,
        cache_read: Some(1.25),
        cache_write: (i % 4 == 0).then_some(3.125),
        source: "snapshot:gpt-4o".into(),
    };
    let mut attempts = vec![Attempt {
        backend: format!("backend-{}", i % 2),
        key: Some(format!("#{}", i % 3)),
        status: Some(if failed { 503 } else { 200 }),
        offset_ms: 0,
        duration_ms: 5 + i % 13,
        error: failed.then(|| "upstream busy: \"retry\" ü".to_owned()),
        span_id: (i % 5 == 0).then(|| format!("{:016x}", i + 1)),
    }];
    if failed {
        attempts.push(Attempt {
            backend: "backend-2".into(),
            key: None,
            status: None,
            offset_ms: 9,
            duration_ms: 1,
            error: Some("connect refused".into()),
            span_id: None,
        });
    }
    Record {
        id: format!("{:012x}-7000-8000-{:012x}", ms, i),
        started_at: UNIX_EPOCH + Duration::from_millis(ms),
        duration_ms: 40 + i % 17,
        ttfb_ms: (i % 6 != 5).then_some(10 + i % 9),
        client_protocol: Protocol::CHAT_PROTOCOLS[i as usize % 4],
        model: (i % 10 != 9)
            .then(|| ["gpt-4o", "claude-sonnet", "gemini-pro"][i as usize % 3].to_owned()),
        org: Some(["acme", "globex"][i as usize % 2].to_owned()),
        user: (i % 8 != 7).then(|| format!("user-{}", i % 4)),
        rule: (i % 2 == 0).then(|| "default".to_owned()),
        backend: Some(format!("backend-{}", i % 2)),
        upstream_protocol: Some(Protocol::CHAT_PROTOCOLS[(i as usize + 1) % 4]),
        upstream_model: Some(format!("upstream-model-{}", i % 3)),
        stream: i % 2 == 1,
        status: if failed {
            502
        } else if i % 11 == 10 {
            499
        } else {
            200
        },
        error: failed.then(|| "all backends failed".to_owned()),
        attempts,
        usage,
        finish_reason: usage.map(|_| "stop".to_owned()),
        cost_usd: priced.then(|| usage.map_or(0.0, |u| price.cost(&u))),
        price: priced.then_some(price.clone()),
        cache_hit: i % 9 == 4,
        overhead_ns: (100 + i * 7) * 1_000,
        trace: (i % 5 == 0).then(|| TraceContext {
            trace_id: format!("{:032x}", i + 1),
            span_id: format!("{:016x}", i + 2),
            parent_span_id: (i % 10 == 0).then(|| format!("{:016x}", i + 3)),
            sampled: i % 2 == 0,
        }),
        bodies: None,
    }
}

/// Record `i` of `n` for a large log (the statistics bench, `octo-fill-log` in octo-bench): spread
/// evenly over the 30 days from `start_ms`; 16 users (`user-0` … `user-15`) in 4 orgs, each
/// using 2 of 8 models (`model-0` …) on one of 2 backends per model (`backend-<model>-<0|1>`),
/// 97% status 200, 2% 429, 1% 500; the other fields as [`sample_at`].
pub fn spread(i: u64, n: u64, start_ms: u64) -> Record {
    const DAY_MS: u64 = 86_400_000;
    let ms = start_ms + i * (30 * DAY_MS) / n.max(1);
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

/// Turns a database this build created back into what schema version 1 left: drops version 2's
/// tables, recreates version 1's log indexes and forgets that version 2 was applied, so the next
/// [`Store::open`](crate::Store::open) runs the version 2 migration over data as version 1 wrote
/// it (version 1's tables are written identically by this build). For upgrade tests.
pub async fn make_version_1(store: &crate::Store) -> Result<(), StoreError> {
    let b = store.backend();
    let mut stmts = Vec::new();
    let mut push = |text: String| {
        let mut q = Sql::new(b);
        q.push(&text);
        stmts.push(q);
    };
    for t in DIM_TABLES.iter().chain(&["request_log_body"]) {
        push(format!("DROP TABLE {t}"));
    }
    for c in LOG_FILTERS {
        push(match (b, *c) {
            (Backend::MySql, "status") => {
                "ALTER TABLE request_log ADD KEY request_log_status (status, id)".to_owned()
            }
            (Backend::MySql, c) => {
                format!("ALTER TABLE request_log ADD KEY request_log_{c} ({c}(191), id)")
            }
            (_, c) => format!("CREATE INDEX request_log_{c} ON request_log ({c}, id)"),
        });
    }
    push("DELETE FROM octollm_schema WHERE version > 1".to_owned());
    for q in stmts {
        store.pool.execute(q).await?;
    }
    Ok(())
}

/// The schema version a database is at, and the indexes on its `request_log` (names, sorted).
pub async fn schema_state(store: &crate::Store) -> Result<(i64, Vec<String>), StoreError> {
    let b = store.backend();
    let mut q = Sql::new(b);
    q.push("SELECT MAX(version) FROM octollm_schema");
    let version = store.pool.fetch(q, &[Col::Int]).await?[0][0]
        .int()
        .unwrap_or(0);
    let mut q = Sql::new(b);
    q.push(match b {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'request_log' \
             AND name NOT LIKE 'sqlite_autoindex%'"
        }
        Backend::Postgres => {
            "SELECT indexname FROM pg_indexes WHERE tablename = 'request_log' \
             AND schemaname = current_schema() AND indexname <> 'request_log_pkey'"
        }
        Backend::MySql => {
            "SELECT DISTINCT index_name FROM information_schema.statistics \
             WHERE table_schema = DATABASE() AND table_name = 'request_log' AND index_name <> 'PRIMARY'"
        }
    });
    let mut names: Vec<String> = store
        .pool
        .fetch(q, &[Col::Text])
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next().and_then(|v| v.into_text()))
        .collect();
    names.sort();
    Ok((version, names))
}
