//! Fills a request log (a SQLite file, or any `storage.url`: `postgres://…`, `mysql://…`) with
//! `N` sample records spread evenly over the last 30 days
//! ([`octo_store::testing::spread`]: 16 keys in 4 orgs, 8 models on 2 backends each, 97% status
//! 200, 2% 429, 1% 500) through the store's own write path (log rows and rollups, batches of
//! 5,000), for measuring the web panel and the statistics on a large log:
//!
//! ```sh
//! cargo build --release -p octo-bench -p octo-server
//! target/release/octo-fill-log target/big.db 10000000
//! OCTOLLM_BENCH_DB=target/big.db cargo bench -p octo-store --bench stats
//! octollm-server --config my.yaml --storage sqlite://target/big.db   # then open the panel
//! target/release/octo-fill-log postgres://u@host/db 10000000          # any storage URL
//! ```
//!
//! An interrupted run leaves a valid database with the records written so far; delete the file
//! (and its `-wal`, `-shm`) before filling it again.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use octo_store::testing::spread;
use octo_store::{Store, StoreConfig};

const DAY_MS: u64 = 86_400_000;

fn main() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
        .block_on(fill());
}

async fn fill() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: octo-fill-log PATH.db|URL N");
    let n: u64 = args
        .next()
        .and_then(|s| s.replace('_', "").parse().ok())
        .expect("usage: octo-fill-log PATH.db|URL N");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let start = now - 30 * DAY_MS;
    let url = if path.contains("://") {
        path.clone()
    } else {
        format!("sqlite://{path}")
    };
    let store = Store::open(&StoreConfig::with_url(url)).await.unwrap();
    let began = Instant::now();
    let batch = 5_000;
    let mut i = 0;
    while i < n {
        let records: Vec<_> = (i..(i + batch).min(n))
            .map(|j| Arc::new(spread(j, n, start)))
            .collect();
        store.write(&records).await.unwrap();
        i += batch;
        if i % 500_000 == 0 {
            eprintln!(
                "{i} rows, {:.0} s ({:.0} rows/s)",
                began.elapsed().as_secs_f64(),
                i as f64 / began.elapsed().as_secs_f64()
            );
        }
    }
    let into = if path.contains("://") {
        store.backend().name().to_owned() // a URL may hold a password
    } else {
        path
    };
    store.close().await;
    let took = began.elapsed().as_secs_f64();
    eprintln!(
        "{n} rows in {took:.1} s ({:.0} rows/s) into {into}",
        n as f64 / took
    );
}
