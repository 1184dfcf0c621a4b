//! The schema and its versioned migrations, applied at startup in order, each once.
//!
//! Tables (the same names and columns on every backend; types per dialect):
//! - `request_log`: one row per [`Record`](octo_core::record::Record), keyed by its id (time
//!   ordered); `started_at` in Unix milliseconds; usage as five nullable token columns; the price
//!   as five columns (exact floats); `attempts` and `trace` as JSON text.
//! - `rollup_minute`, `rollup_hour`, `rollup_day`: sums per (bucket start in Unix ms, model,
//!   backend, org, user, status), upserted in the same transaction as the log rows.
//! - the control plane's tables (version 3): see [`crate::control`].
//! - `stored_response` (version 5): Responses API answers kept for `previous_response_id`, per
//!   org ([`crate::responses`]).
//! - `octollm_schema`: the versions applied.
//!
//! A migration is never edited once released: a change is a new version.

use crate::config::Backend;
use crate::db::{Col, Pool, Sql, Value};
use crate::error::{ErrorKind, StoreError};

/// The log table's columns in the order rows are written and read ([`crate::row`]).
pub(crate) const LOG_COLUMNS: &[(&str, Col)] = &[
    ("id", Col::Text),
    ("started_at", Col::Int),
    ("duration_ms", Col::Int),
    ("ttfb_ms", Col::Int),
    ("client_protocol", Col::Text),
    ("model", Col::Text),
    ("org", Col::Text),
    ("user_name", Col::Text),
    ("rule", Col::Text),
    ("backend", Col::Text),
    ("upstream_protocol", Col::Text),
    ("upstream_model", Col::Text),
    ("stream", Col::Int),
    ("status", Col::Int),
    ("error", Col::Text),
    ("attempts", Col::Text),
    ("input_tokens", Col::Int),
    ("cache_read_tokens", Col::Int),
    ("cache_write_tokens", Col::Int),
    ("output_tokens", Col::Int),
    ("reasoning_tokens", Col::Int),
    ("finish_reason", Col::Text),
    ("cost_usd", Col::Real),
    ("price_input", Col::Real),
    ("price_output", Col::Real),
    ("price_cache_read", Col::Real),
    ("price_cache_write", Col::Real),
    ("price_source", Col::Text),
    ("cache_hit", Col::Int),
    ("overhead_us", Col::Int),
    ("trace", Col::Text),
];

/// Log columns that are never null.
const LOG_NOT_NULL: &[&str] = &[
    "id",
    "started_at",
    "duration_ms",
    "client_protocol",
    "stream",
    "status",
    "attempts",
    "cache_hit",
    "overhead_us",
];

/// Log columns the admin API filters on; each gets an index `(column, id)` so a filtered page
/// newest-first is an index range scan.
pub(crate) const LOG_FILTERS: &[&str] = &["model", "backend", "org", "user_name", "status"];

/// The longest record id the log accepts (MySQL's indexed `VARCHAR(191)`); the gateway's ids are
/// 36 characters.
pub const MAX_ID_LEN: usize = 191;

/// The longest rollup key value (characters); longer model, backend, org and user names are
/// truncated in the rollups (the log keeps them whole).
pub const MAX_KEY_LEN: usize = 150;

/// The rollup key columns, in primary-key order.
pub(crate) const ROLLUP_KEYS: &[&str] =
    &["bucket", "model", "backend", "org", "user_name", "status"];

/// The rollup sum columns.
pub(crate) const ROLLUP_SUMS: &[&str] = &[
    "requests",
    "errors",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_known",
    "duration_sum",
    "duration_max",
    "ttfb_sum",
    "ttfb_count",
    "ttfb_max",
];

/// The rollup tables, finest first.
pub(crate) const ROLLUP_TABLES: &[&str] = &["rollup_minute", "rollup_hour", "rollup_day"];

struct Types {
    id: &'static str,
    int: &'static str,
    real: &'static str,
    text: &'static str,
    key: &'static str,
    table_suffix: &'static str,
}

fn types(b: Backend) -> Types {
    match b {
        Backend::Sqlite => Types {
            id: "TEXT",
            int: "INTEGER",
            real: "REAL",
            text: "TEXT",
            key: "TEXT",
            table_suffix: "",
        },
        Backend::Postgres => Types {
            id: "TEXT",
            int: "BIGINT",
            real: "DOUBLE PRECISION",
            text: "TEXT",
            key: "TEXT",
            table_suffix: "",
        },
        Backend::MySql => Types {
            id: "VARCHAR(191)",
            int: "BIGINT",
            real: "DOUBLE",
            text: "MEDIUMTEXT",
            key: "VARCHAR(150)",
            table_suffix: " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        },
    }
}

/// Version 1: the log, its indexes and the three rollup tables.
fn v1(b: Backend) -> Vec<String> {
    let t = types(b);
    let mut out = Vec::new();
    let mut cols: Vec<String> = LOG_COLUMNS
        .iter()
        .map(|(name, ty)| {
            let sql_ty = match (*name, ty) {
                ("id", _) => t.id,
                (_, Col::Int) => t.int,
                (_, Col::Real) => t.real,
                (_, Col::Text) => t.text,
            };
            let nn = if LOG_NOT_NULL.contains(name) {
                " NOT NULL"
            } else {
                ""
            };
            format!("{name} {sql_ty}{nn}")
        })
        .collect();
    cols.push("PRIMARY KEY (id)".into());
    let index_cols = |c: &str| match (b, c) {
        // MySQL indexes a prefix of a text column.
        (Backend::MySql, "status") => "status, id".to_owned(),
        (Backend::MySql, c) => format!("{c}(191), id"),
        (_, c) => format!("{c}, id"),
    };
    if b == Backend::MySql {
        // MySQL has no CREATE INDEX IF NOT EXISTS: indexes are declared with the table.
        cols.push("KEY request_log_started_at (started_at)".into());
        for c in LOG_FILTERS {
            cols.push(format!("KEY request_log_{c} ({})", index_cols(c)));
        }
    }
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS request_log ({}){}",
        cols.join(", "),
        t.table_suffix
    ));
    if b != Backend::MySql {
        out.push(
            "CREATE INDEX IF NOT EXISTS request_log_started_at ON request_log (started_at)".into(),
        );
        for c in LOG_FILTERS {
            out.push(format!(
                "CREATE INDEX IF NOT EXISTS request_log_{c} ON request_log ({})",
                index_cols(c)
            ));
        }
    }
    for table in ROLLUP_TABLES {
        let mut cols = vec![format!("bucket {} NOT NULL", t.int)];
        for k in &ROLLUP_KEYS[1..5] {
            cols.push(format!("{k} {} NOT NULL", t.key));
        }
        cols.push(format!("status {} NOT NULL", t.int));
        for s in ROLLUP_SUMS {
            let ty = if *s == "cost_usd" { t.real } else { t.int };
            cols.push(format!("{s} {ty} NOT NULL"));
        }
        cols.push(format!("PRIMARY KEY ({})", ROLLUP_KEYS.join(", ")));
        // On SQLite the rows live in the primary key's b-tree (no rowid table beside it), so a
        // bucket range is one sequential scan in (bucket, model, …) order.
        let suffix = match b {
            Backend::Sqlite => " WITHOUT ROWID",
            _ => t.table_suffix,
        };
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {table} ({}){suffix}",
            cols.join(", ")
        ));
    }
    out
}

/// A schema version: its number, what it does, and its statements for a backend.
struct Migration {
    version: i64,
    description: &'static str,
    statements: fn(Backend) -> Vec<String>,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "request log and minute, hour and day rollups",
        statements: v1,
    },
    Migration {
        version: 3,
        description: "control plane: admin API objects, gateway keys, key usage, audit trail",
        statements: crate::control::v3,
    },
    Migration {
        version: 4,
        description: "admin users and panel sessions",
        statements: crate::admin::v4,
    },
    Migration {
        version: 5,
        description: "stored Responses API answers (previous_response_id)",
        statements: v5,
    },
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 5;

/// Version 5: `stored_response`, the Responses API answers the gateway keeps for clients whose
/// upstream is not a Responses upstream (see [`crate::responses`]). Keyed by (org, id), so one
/// org never reaches another's answers; `created_at` (Unix ms) indexed for retention.
fn v5(b: Backend) -> Vec<String> {
    let t = types(b);
    // The input history and the answer can be as large as a request body (32 MiB by default).
    let json = match b {
        Backend::MySql => "LONGTEXT",
        _ => t.text,
    };
    let mut cols = vec![
        format!("org {} NOT NULL", t.key),
        format!("id {} NOT NULL", t.id),
        format!("created_at {} NOT NULL", t.int),
        format!("model {} NOT NULL", t.text),
        format!("input {json} NOT NULL"),
        format!("response {json} NOT NULL"),
        "PRIMARY KEY (org, id)".to_owned(),
    ];
    let mut out = Vec::new();
    if b == Backend::MySql {
        cols.push("KEY stored_response_created_at (created_at)".into());
    }
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS stored_response ({}){}",
        cols.join(", "),
        t.table_suffix
    ));
    if b != Backend::MySql {
        out.push(
            "CREATE INDEX IF NOT EXISTS stored_response_created_at ON stored_response (created_at)"
                .into(),
        );
    }
    out
}

/// Applies the migrations the database has not seen; returns the versions applied.
pub(crate) async fn migrate(pool: &Pool) -> Result<Vec<i64>, StoreError> {
    let b = pool.backend();
    let t = types(b);
    let mut create = Sql::new(b);
    create.push(&format!(
        "CREATE TABLE IF NOT EXISTS octollm_schema (version {} NOT NULL, description {} NOT NULL, \
         applied_at {} NOT NULL, PRIMARY KEY (version)){}",
        t.int, t.key, t.int, t.table_suffix
    ));
    pool.execute(create).await.map_err(migration_error)?;
    let mut q = Sql::new(b);
    q.push("SELECT MAX(version) FROM octollm_schema");
    let current = pool
        .fetch(q, &[Col::Int])
        .await
        .map_err(migration_error)?
        .first()
        .and_then(|r| r[0].int())
        .unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::new(
            ErrorKind::Migration,
            false,
            format!(
                "the database's schema is version {current}, newer than this build's {SCHEMA_VERSION}: upgrade OctoLLM"
            ),
        ));
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let mut stmts: Vec<Sql> = (m.statements)(b)
            .into_iter()
            .map(|s| {
                let mut q = Sql::new(b);
                q.push(&s);
                q
            })
            .collect();
        let mut record = Sql::new(b);
        record.push(match b {
            Backend::MySql => {
                "INSERT IGNORE INTO octollm_schema (version, description, applied_at) VALUES ("
            }
            _ => "INSERT INTO octollm_schema (version, description, applied_at) VALUES (",
        });
        record
            .bind(Value::Int(Some(m.version)))
            .push(", ")
            .bind(Value::Text(Some(m.description.into())))
            .push(", ")
            .bind(Value::Int(Some(crate::now_ms())))
            .push(")");
        if b != Backend::MySql {
            record.push(" ON CONFLICT (version) DO NOTHING");
        }
        stmts.push(record);
        pool.transaction(stmts).await.map_err(migration_error)?;
        tracing::info!(
            version = m.version,
            backend = b.name(),
            "storage: applied schema migration: {}",
            m.description
        );
        applied.push(m.version);
    }
    Ok(applied)
}

fn migration_error(e: StoreError) -> StoreError {
    StoreError::new(
        ErrorKind::Migration,
        e.is_retryable(),
        format!("schema migration failed: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_declares_every_column_and_index() {
        for b in [Backend::Sqlite, Backend::Postgres, Backend::MySql] {
            let stmts = v1(b).join(";\n");
            for (c, _) in LOG_COLUMNS {
                assert!(stmts.contains(&format!("{c} ")), "{b:?} lacks {c}");
            }
            for c in LOG_FILTERS {
                assert!(
                    stmts.contains(&format!("request_log_{c} ")),
                    "{b:?} lacks index on {c}"
                );
            }
            for t in ROLLUP_TABLES {
                assert!(stmts.contains(&format!("TABLE IF NOT EXISTS {t} ")));
            }
        }
        assert!(v1(Backend::MySql)[0].contains("utf8mb4_bin"));
    }
}
