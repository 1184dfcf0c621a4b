//! Fills a SQLite request log with `N` sample records spread evenly over the last 30 days (16 keys
//! in 4 orgs, 8 models on 2 backends each, 97% status 200, 2% 429, 1% 500), for measuring the
//! web panel and the statistics on a large log:
//!
//! ```sh
//! cargo run --release -p octo-store --example fill_log -- target/big.db 10000000
//! octollm-server --config my.yaml --storage sqlite://target/big.db   # then open the panel
//! ```

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use octo_store::testing::sample_at;
use octo_store::{Store, StoreConfig};

const DAY_MS: u64 = 86_400_000;

fn record(i: u64, n: u64, start: u64) -> octo_core::record::Record {
    let ms = start + i * (30 * DAY_MS) / n;
    let mut r = sample_at(i, ms);
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    let user = h % 16;
    let model = (user + 3 * (h / 16 % 2)) % 8;
    r.user = Some(format!("key-{user}"));
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

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: fill_log PATH.db N");
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("usage: fill_log PATH.db N");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let start = now - 30 * DAY_MS;
    let store = Store::open(&StoreConfig::with_url(format!("sqlite://{path}")))
        .await
        .unwrap();
    let began = Instant::now();
    let batch = 5_000;
    let mut i = 0;
    while i < n {
        let records: Vec<_> = (i..(i + batch).min(n))
            .map(|j| Arc::new(record(j, n, start)))
            .collect();
        store.write(&records).await.unwrap();
        i += batch;
        if i % 500_000 == 0 {
            eprintln!("{i} rows, {:.0} s", began.elapsed().as_secs_f64());
        }
    }
    store.close().await;
    eprintln!(
        "{n} rows in {:.1} s into {path}",
        began.elapsed().as_secs_f64()
    );
}
