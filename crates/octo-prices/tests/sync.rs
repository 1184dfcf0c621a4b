//! The price sync against a local HTTP server on an ephemeral port: a good document replaces the
//! synced table, a failed sync keeps it and says why, and the background task does the same on
//! its interval. The server answers each request with the next response the test hands it, so
//! every step is driven by channels, not by time.

use std::sync::Arc;
use std::time::Duration;

use octo_core::Protocol;
use octo_core::record::{Observer, Observers, Record, RequestRecord};
use octo_core::usage::Usage;
use octo_prices::{PriceBook, PricesConfig, SyncErrorKind, SyncSettings};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A one-response-per-connection HTTP/1.1 server; each connection waits for the next
/// `(status, body)` from the returned sender.
async fn server() -> (String, mpsc::UnboundedSender<(u16, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/prices.json", listener.local_addr().unwrap());
    let (tx, mut rx) = mpsc::unbounded_channel::<(u16, String)>();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let Some((status, body)) = rx.recv().await else {
                return;
            };
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    });
    (url, tx)
}

fn litellm(input_per_token: f64) -> String {
    json!({
        "sample_spec": {"input_cost_per_token": 0.0, "litellm_provider": "spec"},
        "house-model": {
            "litellm_provider": "openai", "mode": "chat",
            "input_cost_per_token": input_per_token, "output_cost_per_token": 4e-06
        }
    })
    .to_string()
}

fn settings(url: &str) -> SyncSettings {
    SyncSettings {
        url: url.to_owned(),
        interval: Duration::from_millis(1),
        timeout: Duration::from_secs(10),
    }
}

fn book() -> Arc<PriceBook> {
    Arc::new(PriceBook::new(&PricesConfig::default()).unwrap())
}

fn input_price(book: &PriceBook, model: &str) -> Option<(f64, String)> {
    book.table_price_of(model, Some(Protocol::OpenAiChat))
        .map(|p| (p.input, p.source))
}

#[tokio::test]
async fn a_failed_sync_keeps_the_last_good_table() {
    let (url, respond) = server().await;
    let book = book();
    let client = reqwest::Client::new();
    let s = settings(&url);
    assert_eq!(input_price(&book, "house-model"), None);

    respond.send((200, litellm(1e-06))).unwrap();
    assert_eq!(book.sync_once(&client, &s).await.unwrap(), 1);
    assert_eq!(
        input_price(&book, "house-model"),
        Some((1.0, "sync:house-model".into()))
    );
    // The synced table is layered over the snapshot: models it lacks keep their snapshot price.
    assert_eq!(input_price(&book, "gpt-4o").unwrap().1, "snapshot:gpt-4o");
    let ok = book.sync_status();
    assert_eq!(
        (ok.attempts, ok.models, ok.last_error.as_deref()),
        (1, 1, None)
    );
    assert!(ok.last_success.is_some());
    assert_eq!(ok.table.unwrap().format, "litellm");

    respond.send((503, "busy".into())).unwrap();
    let e = book.sync_once(&client, &s).await.unwrap_err();
    assert_eq!(e.kind, SyncErrorKind::Status(503));
    assert!(e.is_retryable());
    assert_eq!(input_price(&book, "house-model").unwrap().0, 1.0);
    let failed = book.sync_status();
    assert_eq!(failed.attempts, 2);
    assert_eq!(failed.last_success, ok.last_success);
    assert!(failed.last_error.unwrap().contains("503"));
    assert_eq!(failed.models, 1);

    respond.send((200, "{\"not\": \"prices\"}".into())).unwrap();
    let e = book.sync_once(&client, &s).await.unwrap_err();
    assert_eq!(e.kind, SyncErrorKind::Invalid);
    assert_eq!(input_price(&book, "house-model").unwrap().0, 1.0);

    // Our own snapshot format is accepted too, and replaces the table.
    let ours = json!({"format": "octollm-prices/1", "models": {
        "house-model": {"provider": "openai", "input": 2.5, "output": 5}
    }});
    respond.send((200, ours.to_string())).unwrap();
    book.sync_once(&client, &s).await.unwrap();
    assert_eq!(input_price(&book, "house-model").unwrap().0, 2.5);
    let status = book.sync_status();
    assert_eq!((status.attempts, status.last_error), (4, None));
}

#[tokio::test]
async fn the_background_task_syncs_on_its_interval_and_survives_failures() {
    let (url, respond) = server().await;
    let book = book();
    let updates = book.subscribe_sync();
    let task = book.spawn_sync(settings(&url));
    let attempts = |n: u64| {
        let mut updates = updates.clone();
        async move { updates.wait_for(|s| s.attempts >= n).await.unwrap().clone() }
    };

    respond.send((200, litellm(1e-06))).unwrap();
    let s = attempts(1).await;
    assert_eq!((s.models, s.last_error), (1, None));
    assert_eq!(input_price(&book, "house-model").unwrap().0, 1.0);

    respond.send((500, "oops".into())).unwrap();
    let s = attempts(2).await;
    assert!(s.last_error.is_some());
    assert_eq!(input_price(&book, "house-model").unwrap().0, 1.0);

    respond.send((200, litellm(3e-06))).unwrap();
    let s = attempts(3).await;
    assert_eq!(s.last_error, None);
    assert_eq!(input_price(&book, "house-model").unwrap().0, 3.0);
    task.abort();
}

#[tokio::test]
async fn an_unreachable_or_silent_server_is_a_fetch_error() {
    // Bind then drop: the port is (almost certainly) closed.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}/p.json", l.local_addr().unwrap())
    };
    let book = book();
    let client = reqwest::Client::new();
    let e = book
        .sync_once(&client, &settings(&closed))
        .await
        .unwrap_err();
    assert_eq!(e.kind, SyncErrorKind::Fetch);
    assert!(!e.message.contains("127.0.0.1"), "{}", e.message);

    // A server that accepts and never answers: the timeout ends the attempt.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/p.json", silent.local_addr().unwrap());
    let s = SyncSettings {
        timeout: Duration::from_millis(100),
        ..settings(&url)
    };
    let e = book.sync_once(&client, &s).await.unwrap_err();
    assert_eq!(e.kind, SyncErrorKind::Fetch);
    assert!(e.message.contains("timed out"), "{}", e.message);
    assert_eq!(book.sync_status().attempts, 2);
    assert!(book.synced().is_none());
}

#[tokio::test]
async fn a_file_url_syncs_offline() {
    let path = std::env::temp_dir().join(format!("octo-prices-{}.json", std::process::id()));
    std::fs::write(&path, litellm(5e-07)).unwrap();
    let book = book();
    let s = settings(&format!("file://{}", path.display()));
    book.sync_once(&reqwest::Client::new(), &s).await.unwrap();
    assert_eq!(input_price(&book, "house-model").unwrap().0, 0.5);
    std::fs::remove_file(&path).unwrap();
    let e = book
        .sync_once(&reqwest::Client::new(), &s)
        .await
        .unwrap_err();
    assert_eq!(e.kind, SyncErrorKind::Fetch);
    assert_eq!(input_price(&book, "house-model").unwrap().0, 0.5);
}

/// Keeps the last record it saw.
#[derive(Default)]
struct Last(std::sync::Mutex<Option<Arc<Record>>>);
impl Observer for Last {
    fn on_complete(&self, record: &Arc<Record>) {
        *self.0.lock().unwrap() = Some(record.clone());
    }
}

#[tokio::test]
async fn observers_see_the_cost_and_the_price_used() {
    let book = book();
    let last = Arc::new(Last::default());
    let observers = Arc::new(
        Observers::new()
            .with(last.clone())
            .with_pricing(book.clone().pricing()),
    );
    let r = RequestRecord::start(Protocol::Anthropic, observers.clone());
    r.set_model("sonnet", false);
    r.set_upstream("anthropic", Protocol::Anthropic, Some("claude-sonnet-4-5"));
    r.set_usage(
        Usage::from_anthropic(
            &json!({"input_tokens": 10, "cache_read_input_tokens": 1000, "output_tokens": 100}),
        ),
        Some("end_turn"),
    );
    r.complete(200, None);
    let rec = last.0.lock().unwrap().clone().unwrap();
    let expected = (10.0 * 3.0 + 1000.0 * 0.3 + 100.0 * 15.0) / 1e6;
    assert!((rec.cost_usd.unwrap() - expected).abs() < 1e-12);
    assert_eq!(
        rec.price.as_ref().unwrap().source,
        "snapshot:claude-sonnet-4-5"
    );

    let r = RequestRecord::start(Protocol::OpenAiChat, observers);
    r.set_model("nobody-prices-this", false);
    r.set_upstream("x", Protocol::OpenAiChat, Some("nobody-prices-this"));
    r.set_usage(
        Some(Usage {
            input_tokens: 5,
            ..Usage::default()
        }),
        None,
    );
    r.complete(200, None);
    let rec = last.0.lock().unwrap().clone().unwrap();
    assert_eq!((rec.cost_usd, rec.price.clone()), (None, None));
    assert_eq!(book.unpriced(), [("nobody-prices-this".to_owned(), 1)]);
}
