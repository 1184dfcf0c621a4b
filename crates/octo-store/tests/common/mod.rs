//! The databases a test runs against: SQLite always, PostgreSQL and MySQL when
//! `OCTOLLM_TEST_POSTGRES_URL` / `OCTOLLM_TEST_MYSQL_URL` are set (`scripts/services.sh` starts
//! throwaway servers and writes them). Each test gets its own SQLite file, PostgreSQL schema or
//! MySQL database, created empty, so tests run in parallel.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use octo_core::record::Record;
use octo_store::{Store, StoreConfig};
use sqlx::Connection;

/// A database for one test.
pub struct TestDb {
    pub name: &'static str,
    pub config: StoreConfig,
}

impl TestDb {
    pub async fn open(&self) -> Store {
        Store::open(&self.config)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

/// The databases available for test `test`, each empty.
pub async fn databases(test: &str) -> Vec<TestDb> {
    let mut out = Vec::new();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("octo-store");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{test}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    out.push(TestDb {
        name: "sqlite",
        config: StoreConfig::with_url(format!("sqlite://{}", file.display())),
    });
    match std::env::var("OCTOLLM_TEST_POSTGRES_URL") {
        Ok(url) => out.push(TestDb {
            name: "postgres",
            config: StoreConfig::with_url(postgres_schema(&url, test).await),
        }),
        Err(_) => eprintln!(
            "{test}: skipping PostgreSQL: OCTOLLM_TEST_POSTGRES_URL is not set (scripts/services.sh starts one)"
        ),
    }
    match std::env::var("OCTOLLM_TEST_MYSQL_URL") {
        Ok(url) => out.push(TestDb {
            name: "mysql",
            config: StoreConfig::with_url(mysql_database(&url, test).await),
        }),
        Err(_) => eprintln!(
            "{test}: skipping MySQL: OCTOLLM_TEST_MYSQL_URL is not set (scripts/services.sh starts one)"
        ),
    }
    out
}

/// A fresh schema named after the test; the URL selects it with `search_path`.
pub async fn postgres_schema(url: &str, test: &str) -> String {
    let schema = format!("t_{test}");
    let mut c = sqlx::PgConnection::connect(url)
        .await
        .expect("PostgreSQL reachable");
    sqlx::raw_sql(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .execute(&mut c)
    .await
    .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// A fresh database named after the test, on the same server.
pub async fn mysql_database(url: &str, test: &str) -> String {
    let db = format!("octollm_t_{test}");
    let mut c = sqlx::MySqlConnection::connect(url)
        .await
        .expect("MySQL reachable");
    sqlx::raw_sql(&format!(
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}"
    ))
    .execute(&mut c)
    .await
    .unwrap();
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = &base[..base.rfind('/').expect("a database in the URL")];
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

pub fn arcs(records: &[Record]) -> Vec<Arc<Record>> {
    records.iter().cloned().map(Arc::new).collect()
}
