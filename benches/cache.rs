//! The response cache's hit path against a passthrough.
//!
//! - `cache_http/*`: one request at a time through the real front (the `octo-server` graph built
//!   from YAML, served on loopback) to the mock upstream on loopback: `passthrough` (a model
//!   without cache), `hit` (the same request to a model with `cache: true`, stored beforehand),
//!   each for a full answer and a 64-event stream. The difference is what a hit saves: the
//!   upstream call (here a fast local mock, so the saving is a floor).
//! - `cache_engine/*`: the cache engine alone around an upstream that answers at once, by request
//!   body size: `no_cache` (the upstream called directly), `hit` (key: parse, canonical form,
//!   SHA-256; memory lookup; entry decode; replay). The difference is the cache's own cost.
//!
//! Run with `cargo bench --bench cache`; `cargo test --benches` runs each once as a smoke test.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use octo_core::layer::Layer;
use octo_core::{ArcEngine, Body, Engine, Protocol, Request, Response, ResponseBody, engine_fn};
use octo_engines::cache::{CACHE_HEADER, CacheLayer, MemoryStore};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn chat_body(model: &str, stream: bool, text_len: usize) -> String {
    let text: String = "the quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(text_len)
        .collect();
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    })
    .to_string()
}

fn http(c: &mut Criterion) {
    let rt = runtime();
    let mock = rt.block_on(octo_test::mock());
    let yaml = format!(
        r#"
listen: "127.0.0.1:0"
backends:
  oa: {{base_url: "{}", protocol: openai_chat, api_key: "sk-bench"}}
models:
  plain: {{targets: [{{backend: oa, model: up}}]}}
  cached: {{cache: true, targets: [{{backend: oa, model: up}}]}}
"#,
        mock.url()
    );
    let config = octo_server::config::parse(&yaml, "bench.yaml", &|_| None).unwrap();
    let gateway = octo_server::build(&config, "bench.yaml").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(octo_server::run(
        gateway,
        "127.0.0.1:0".parse().unwrap(),
        move |addr| tx.send(addr).unwrap(),
        std::future::pending(),
    ));
    let addr = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let url = format!("http://{addr}/v1/chat/completions");
    let client = octo_test::client();
    let send = |body: String| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let resp = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let cache = resp.headers().get(CACHE_HEADER).cloned();
            let bytes = resp.bytes().await.unwrap();
            (cache, bytes)
        }
    };

    let mut group = c.benchmark_group("cache_http");
    for (label, stream, directive) in [
        ("full", false, ""),
        ("stream_64", true, " [mock:events=64]"),
    ] {
        let text = format!("benchmark the cache{directive}");
        let plain = serde_json::json!({"model": "plain", "stream": stream, "messages": [{"role": "user", "content": text}]}).to_string();
        let cached = plain.replacen("\"plain\"", "\"cached\"", 1);
        // Store the answer once.
        let (first, _) = rt.block_on(send(cached.clone()));
        assert_eq!(first.as_ref().map(|v| v.as_bytes()), Some(&b"miss"[..]));
        let (second, _) = rt.block_on(send(cached.clone()));
        assert_eq!(second.as_ref().map(|v| v.as_bytes()), Some(&b"hit"[..]));
        group.bench_function(BenchmarkId::new("passthrough", label), |b| {
            b.iter(|| rt.block_on(send(plain.clone())));
        });
        group.bench_function(BenchmarkId::new("hit", label), |b| {
            b.iter(|| rt.block_on(send(cached.clone())));
        });
    }
    group.finish();
    rt.block_on(mock.shutdown());
}

/// An upstream that answers at once with a fixed chat completion.
fn instant_upstream() -> ArcEngine {
    let answer = Bytes::from(
        serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": "Hello from the bench."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
        .to_string(),
    );
    Arc::new(engine_fn(move |_req: Request| {
        let answer = answer.clone();
        async move { Ok(Response::json(200, Body::from_bytes(answer))) }
    }))
}

async fn drain(resp: Response) -> usize {
    match resp.body {
        ResponseBody::Full(b) => b.to_bytes().len(),
        ResponseBody::Stream(s) => s.count().await,
    }
}

fn engine(c: &mut Criterion) {
    let rt = runtime();
    let upstream = instant_upstream();
    let cache = CacheLayer::new(
        "bench",
        Arc::new(MemoryStore::new(64 << 20)),
        Duration::from_secs(3600),
    )
    .layer(upstream.clone());
    let mut group = c.benchmark_group("cache_engine");
    for size in [1_000usize, 16_000, 256_000] {
        let body = Bytes::from(chat_body("m", false, size));
        group.throughput(Throughput::Bytes(body.len() as u64));
        let req = || {
            Request::post(
                Protocol::OpenAiChat,
                "/v1/chat/completions",
                Body::from_bytes(body.clone()),
            )
        };
        rt.block_on(async { drain(cache.process(req()).await.unwrap()).await });
        group.bench_with_input(BenchmarkId::new("no_cache", size), &size, |b, _| {
            b.iter(|| rt.block_on(async { drain(upstream.process(req()).await.unwrap()).await }));
        });
        group.bench_with_input(BenchmarkId::new("hit", size), &size, |b, _| {
            b.iter(|| {
                rt.block_on(async {
                    let resp = cache.process(req()).await.unwrap();
                    assert_eq!(resp.headers[CACHE_HEADER], "hit");
                    drain(resp).await
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, http, engine);
criterion_main!(benches);
