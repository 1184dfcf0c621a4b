//! The database goes away mid-run: requests (here, `on_complete` calls) are unaffected, records
//! wait in the writer's buffer, and every one is written once the database is back.
//!
//! Runs against PostgreSQL when `OCTOLLM_TEST_POSTGRES_URL` and `OCTOLLM_TEST_POSTGRES_CTL` (a
//! command taking `stop` / `start`, written by `scripts/services.sh`) are set. This file is its
//! own test binary so stopping the server never disturbs the other storage tests.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use octo_core::record::Observer;
use octo_store::testing::sample;
use octo_store::{LogWriter, Store, StoreConfig};

fn ctl(command: &str, action: &str) {
    let status = Command::new(command)
        .arg(action)
        .status()
        .expect("run the control command");
    assert!(status.success(), "{command} {action} failed");
}

#[tokio::test]
async fn records_survive_a_database_outage() {
    let (Ok(url), Ok(control)) = (
        std::env::var("OCTOLLM_TEST_POSTGRES_URL"),
        std::env::var("OCTOLLM_TEST_POSTGRES_CTL"),
    ) else {
        eprintln!(
            "skipping: OCTOLLM_TEST_POSTGRES_URL / OCTOLLM_TEST_POSTGRES_CTL are not set (scripts/services.sh starts PostgreSQL)"
        );
        return;
    };
    let config = StoreConfig {
        batch_size: 50,
        buffer_capacity: 5_000,
        max_backoff: Duration::from_millis(500),
        ..StoreConfig::with_url(common::postgres_schema(&url, "outage").await)
    };
    let store = Store::open(&config).await.unwrap();
    let writer = LogWriter::spawn(store.clone(), &config);
    let records: Vec<_> = (0..3000).map(|i| Arc::new(sample(i))).collect();

    for r in &records[..500] {
        writer.on_complete(r);
    }
    writer
        .flush(Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(writer.written(), 500);

    ctl(&control, "stop");
    // Requests keep completing while the database is down: each call only enqueues.
    for (n, r) in records[500..].iter().enumerate() {
        writer.on_complete(r);
        if n % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // The writer has noticed (a readiness check on its counters, not a fixed sleep).
    let noticed = Instant::now() + Duration::from_secs(60);
    while writer.stats().last_error.is_none() {
        assert!(
            Instant::now() < noticed,
            "the writer never reported the outage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(writer.written() < 3000);
    assert_eq!(writer.dropped(), 0, "the buffer holds the outage's records");

    ctl(&control, "start");
    writer
        .flush(Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    let stats = writer.stats();
    assert_eq!((stats.written, stats.dropped, stats.pending), (3000, 0, 0));
    assert_eq!(stats.last_error, None);
    for r in &records {
        assert_eq!(store.log(&r.id).await.unwrap().as_ref(), Some(&**r));
    }
    writer
        .shutdown(Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    store.close().await;
}
