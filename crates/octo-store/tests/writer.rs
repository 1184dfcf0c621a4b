//! The writer: batches reach the database, a full queue drops and counts without blocking, a
//! shutdown flushes everything, a refused record does not take its batch down.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::databases;
use octo_core::record::Observer;
use octo_store::testing::sample;
use octo_store::{ErrorKind, LogQuery, LogWriter, StoreConfig};

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

#[tokio::test]
async fn records_are_written_in_batches() {
    for db in databases("writer_batches").await {
        let store = db.open().await;
        let config = StoreConfig {
            batch_size: 64,
            ..db.config.clone()
        };
        let writer = LogWriter::spawn(store.clone(), &config);
        let records: Vec<_> = (0..1000).map(|i| Arc::new(sample(i))).collect();
        for r in &records {
            writer.on_complete(r);
            if r.id.ends_with('7') {
                tokio::task::yield_now().await; // let the writer run between bursts
            }
        }
        writer.flush(deadline()).await.unwrap();
        let stats = writer.stats();
        assert_eq!(
            (stats.written, stats.dropped, stats.pending),
            (1000, 0, 0),
            "{}",
            db.name
        );
        assert_eq!(stats.last_error, None);
        for r in records.iter().step_by(97) {
            assert_eq!(store.log(&r.id).await.unwrap().as_ref(), Some(&**r));
        }
        writer.shutdown(deadline()).await.unwrap();
        store.close().await;
    }
}

/// On a current-thread runtime the writer task cannot run while this test calls `on_complete`
/// in a loop: the queue fills, and every call returns at once, dropping and counting the rest.
#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_and_counts_without_blocking() {
    for db in databases("writer_full_queue").await {
        let store = db.open().await;
        let config = StoreConfig {
            queue_capacity: 8,
            ..db.config.clone()
        };
        let writer = LogWriter::spawn(store.clone(), &config);
        for i in 0..100 {
            writer.on_complete(&Arc::new(sample(i)));
        }
        assert_eq!(writer.dropped(), 92, "{}", db.name);
        assert_eq!(writer.pending(), 8);
        writer.flush(deadline()).await.unwrap();
        assert_eq!(writer.written(), 8);
        let page = store.logs(&LogQuery::default()).await.unwrap();
        let ids: Vec<_> = page.data.iter().rev().map(|r| r.id.clone()).collect();
        let first: Vec<_> = (0..8).map(|i| sample(i).id).collect();
        assert_eq!(ids, first, "the first eight were kept");
        // A record whose id the log cannot hold is dropped at the door.
        let mut long = sample(200);
        long.id = "x".repeat(500);
        writer.on_complete(&Arc::new(long));
        assert_eq!(writer.dropped(), 93);
        store.close().await;
    }
}

#[tokio::test]
async fn shutdown_flushes_everything_then_drops_late_records() {
    for db in databases("writer_shutdown").await {
        let store = db.open().await;
        // Batches would wait an hour: only the shutdown writes them.
        let config = StoreConfig {
            batch_size: 10_000,
            batch_interval: Duration::from_secs(3600),
            ..db.config.clone()
        };
        let writer = LogWriter::spawn(store.clone(), &config);
        let records: Vec<_> = (0..250).map(|i| Arc::new(sample(i))).collect();
        for r in &records {
            writer.on_complete(r);
        }
        writer.shutdown(deadline()).await.unwrap();
        assert_eq!(writer.written(), 250, "{}", db.name);
        for r in &records {
            assert!(store.log(&r.id).await.unwrap().is_some());
        }
        writer.on_complete(&Arc::new(sample(999)));
        assert_eq!(writer.dropped(), 1);
        let e = writer.flush(deadline()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed);
        store.close().await;
    }
}

#[tokio::test]
async fn a_refused_record_is_dropped_alone() {
    for db in databases("writer_refused").await {
        let store = db.open().await;
        let writer = LogWriter::spawn(store.clone(), &db.config);
        // PostgreSQL refuses a NUL byte in text (SQLite and MySQL store it): the batch fails,
        // is written record by record, and only that record is dropped.
        let mut bad = sample(1);
        bad.error = Some("nul \0 byte".into());
        let good: Vec<_> = [0, 2, 3].iter().map(|i| Arc::new(sample(*i))).collect();
        writer.on_complete(&good[0]);
        writer.on_complete(&Arc::new(bad.clone()));
        writer.on_complete(&good[1]);
        writer.on_complete(&good[2]);
        writer.flush(deadline()).await.unwrap();
        for r in &good {
            assert!(store.log(&r.id).await.unwrap().is_some(), "{}", db.name);
        }
        let stored = store.log(&bad.id).await.unwrap();
        if db.name == "postgres" {
            assert!(stored.is_none());
            assert_eq!((writer.written(), writer.dropped()), (3, 1));
            assert!(writer.stats().last_error.is_some());
        } else {
            assert_eq!(stored.as_ref(), Some(&bad), "{}", db.name);
            assert_eq!((writer.written(), writer.dropped()), (4, 0));
        }
        store.close().await;
    }
}
