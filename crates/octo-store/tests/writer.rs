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

/// A writer started before its database answers (a SQLite file whose directory does not exist
/// yet: opening fails as the database being unreachable does) holds the records, and writes
/// them all once the database can be opened.
#[tokio::test]
async fn a_database_that_answers_late_gets_every_record() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("octo-store/late");
    let _ = std::fs::remove_dir_all(&dir);
    let config = StoreConfig {
        max_backoff: Duration::from_millis(100),
        ..StoreConfig::with_url(format!("sqlite://{}/not-yet/log.db", dir.display()))
    };
    let writer = LogWriter::spawn_opening(&config);
    let records: Vec<_> = (0..50).map(|i| Arc::new(sample(i))).collect();
    for r in &records {
        writer.on_complete(r);
    }
    // Nothing can be written yet: a flush runs out of time, saying how many wait.
    let e = writer
        .flush(Instant::now() + Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.message().starts_with("50 "), "{e}");
    assert!(writer.store().is_none());
    assert!(!writer.is_up());
    assert!(writer.stats().last_error.is_some());

    std::fs::create_dir_all(dir.join("not-yet")).unwrap();
    let store = writer.opened().await.expect("the database opens");
    writer.flush(deadline()).await.unwrap();
    assert!(writer.is_up());
    assert_eq!((writer.written(), writer.dropped()), (50, 0));
    let page = store
        .logs(&LogQuery {
            limit: Some(100),
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.data.len(), 50);
    writer.shutdown(deadline()).await.unwrap();
    store.close().await;
}

/// A database that answers but cannot be used (its schema is newer than this build) stops the
/// writer: records are dropped and counted, flushes fail at once, nothing hangs.
#[tokio::test]
async fn a_database_that_cannot_be_used_stops_the_writer() {
    let dbs = databases("writer_newer_schema").await;
    let db = &dbs[0];
    let store = db.open().await;
    store.close().await;
    {
        use sqlx::Connection;
        let url = db.config.url.clone();
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("INSERT INTO octollm_schema (version, description, applied_at) VALUES (999, 'future', 0)")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    let writer = LogWriter::spawn_opening(&db.config);
    assert!(writer.opened().await.is_none());
    let e = writer.flush(deadline()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed);
    writer.on_complete(&Arc::new(sample(0)));
    assert_eq!(writer.dropped(), 1);
    assert!(
        writer
            .stats()
            .last_error
            .unwrap()
            .contains("newer than this build")
    );
}
