//! Microbenchmarks of the per-request work in `octo-core`: peeking `model`/`stream` without a
//! parse, serde's validating scan and a full parse for contrast, renaming the model by byte splicing, and SSE decoding.
//!
//! Run with `cargo bench --bench core`; `cargo test --benches` runs each once as a smoke test.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use octo_core::Body;
use octo_core::sse::SseParser;

fn chat_body(target_len: usize) -> Bytes {
    let mut messages = Vec::new();
    let mut len = 0;
    let mut i = 0;
    while len < target_len {
        let text = format!("message {i}: the quick brown fox jumps over the lazy dog. ");
        len += text.len() + 40;
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(serde_json::json!({"role": role, "content": text}));
        i += 1;
    }
    let v = serde_json::json!({"messages": messages, "temperature": 0.2, "model": "gpt-4o-mini", "stream": true});
    Bytes::from(serde_json::to_vec(&v).unwrap())
}

/// A chat body of about `target_len` bytes made of long turns (4,000 characters each, like the load
/// harness's payloads and real prompts that carry documents), where the scan's per-string cost
/// vanishes and its per-byte cost shows.
fn long_turns_body(target_len: usize) -> Bytes {
    let text: String = "the quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(4000)
        .collect();
    let n = target_len.div_ceil(4040);
    let messages: Vec<_> = (0..n)
        .map(|i| serde_json::json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": text}))
        .collect();
    let v = serde_json::json!({"model": "gpt-4o-mini", "messages": messages, "stream": true});
    Bytes::from(serde_json::to_vec(&v).unwrap())
}

/// The routing scalars read by serde's validating scan (a borrowed derive).
#[inline(never)]
fn serde_scan(bytes: &[u8]) -> (Option<String>, bool) {
    #[derive(serde::Deserialize)]
    struct Scalars<'a> {
        #[serde(borrow, default)]
        model: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        stream: Option<bool>,
    }
    let s: Scalars<'_> = serde_json::from_slice(bytes).unwrap();
    (s.model.map(Into::into), s.stream.unwrap_or(false))
}

fn bodies(c: &mut Criterion) {
    let mut group = c.benchmark_group("body");
    for (label, size) in [
        ("1KiB", 1024),
        ("100KiB", 100 * 1024),
        ("1MiB", 1024 * 1024),
    ] {
        let bytes = chat_body(size);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::new("peek", label), &bytes, |b, bytes| {
            b.iter(|| Body::from_bytes(bytes.clone()).peek().unwrap())
        });
        // What `peek` did before its structure-only scan: serde's borrowed scan, which validates
        // every byte. Kept for contrast.
        group.bench_with_input(BenchmarkId::new("serde_scan", label), &bytes, |b, bytes| {
            b.iter(|| serde_scan(bytes))
        });
        group.bench_with_input(BenchmarkId::new("full_parse", label), &bytes, |b, bytes| {
            b.iter(|| {
                let mut body = Body::from_bytes(bytes.clone());
                black_box(body.json().unwrap().is_object())
            })
        });
        group.bench_with_input(BenchmarkId::new("set_model", label), &bytes, |b, bytes| {
            let upstream = serde_json::Value::from("upstream-model");
            b.iter(|| {
                let mut body = Body::from_bytes(bytes.clone());
                body.set_top_level("model", &upstream).unwrap();
                body.into_bytes()
            })
        });
    }
    for (label, size) in [("100KiB", 100 * 1024), ("1MiB", 1024 * 1024)] {
        let bytes = long_turns_body(size);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("peek_long_turns", label),
            &bytes,
            |b, bytes| b.iter(|| Body::from_bytes(bytes.clone()).peek().unwrap()),
        );
        group.bench_with_input(
            BenchmarkId::new("serde_scan_long_turns", label),
            &bytes,
            |b, bytes| b.iter(|| serde_scan(bytes)),
        );
    }
    group.finish();
}

fn sse(c: &mut Criterion) {
    let mut stream = Vec::new();
    for i in 0..64 {
        stream.extend_from_slice(
            format!("data: {{\"id\":\"chatcmpl-1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}}}}]}}\n\n").as_bytes(),
        );
    }
    let stream = Bytes::from(stream);
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Elements(64));
    group.bench_function("decode_64_events_in_512B_chunks", |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            let mut n = 0;
            for chunk in stream.chunks(512) {
                p.push(chunk);
                while let Some(ev) = p.next_event().unwrap() {
                    black_box(ev.to_frame());
                    n += 1;
                }
            }
            assert_eq!(n, 64);
        })
    });
    group.finish();
}

criterion_group!(benches, bodies, sse);
criterion_main!(benches);
