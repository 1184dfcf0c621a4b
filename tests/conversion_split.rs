//! Property: however an upstream SSE byte stream is split into chunks, the converted client stream
//! is the same.
//!
//! For every upstream stream in `tests/golden` and every other client protocol, the bytes are fed to
//! `SseDecoder` → `ConvertEngine` whole, one byte per chunk, and in 64 seeded random splittings; the
//! same again with CRLF line ends (so a CR may end one chunk and its LF start the next). The cuts
//! come from the balancers' seeded `SplitMix64`, so every run is reproducible, and the seed of a
//! failing case is printed.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use octo_core::sse::SseDecoder;
use octo_core::{Engine, Error, EventStream, Protocol, Request, Response, ResponseBody, engine_fn};
use octo_engines::balance::SplitMix64;
use octo_engines::convert::ConvertEngine;
use octo_test::Prompt;

/// Random splittings per stream and client.
const SPLITS: u64 = 64;

/// `bytes` cut at random points into chunks of 1..=max bytes (`max` itself drawn from 1..=64).
fn split(bytes: &Bytes, seed: u64) -> Vec<Bytes> {
    let rng = SplitMix64::new(seed);
    let max = 1 + rng.below(64);
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = (1 + rng.below(max) as usize).min(bytes.len() - at);
        out.push(bytes.slice(at..at + n));
        at += n;
    }
    out
}

async fn convert(client: Protocol, upstream: Protocol, chunks: Vec<Bytes>) -> String {
    let inner = engine_fn(move |_req: Request| {
        let chunks = chunks.clone();
        async move {
            let body = futures::stream::iter(chunks.into_iter().map(Ok::<Bytes, Error>));
            Ok(Response::stream(EventStream::new(SseDecoder::new(body))))
        }
    });
    let engine = ConvertEngine::new(Arc::new(inner), upstream);
    let req = Prompt::new(client, "m", "x")
        .stream(true)
        .include_usage()
        .request();
    let resp = engine.process(req).await.expect("conversion starts");
    let ResponseBody::Stream(mut events) = resp.body else {
        panic!("a stream was asked for")
    };
    let mut out = String::new();
    while let Some(item) = events.next().await {
        let frame = match item {
            Ok(ev) => ev.to_frame(),
            Err(e) => e.render_stream_frame(client),
        };
        out.push_str(std::str::from_utf8(&frame).unwrap());
    }
    // Timestamps and generated ids may differ between runs; mask them.
    mask(&out)
}

fn mask(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let masked = match line.strip_prefix("data: ") {
            Some(data) => match serde_json::from_str::<serde_json::Value>(data) {
                Ok(mut v) => {
                    mask_value(&mut v);
                    format!("data: {v}")
                }
                Err(_) => line.to_owned(),
            },
            None => line.to_owned(),
        };
        out.push_str(&masked);
        out.push('\n');
    }
    out
}

fn mask_value(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, val) in o.iter_mut() {
                if k == "created" || k == "created_at" {
                    *val = serde_json::Value::Null;
                } else {
                    mask_value(val);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(mask_value),
        _ => {}
    }
}

fn upstream_streams() -> Vec<(String, Protocol, Bytes)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        for p in Protocol::CHAT_PROTOCOLS {
            let file = format!("stream.{}.sse", p.config_name());
            let path = [dir.join("upstream").join(&file), dir.join(&file)]
                .into_iter()
                .find(|f| f.exists());
            if let Some(path) = path {
                let name = format!(
                    "{}/{}",
                    dir.file_name().unwrap().to_string_lossy(),
                    path.file_name().unwrap().to_string_lossy()
                );
                out.push((name, p, Bytes::from(std::fs::read(path).unwrap())));
            }
        }
    }
    out
}

#[tokio::test]
async fn any_chunking_of_the_upstream_gives_the_same_client_stream() {
    let streams = upstream_streams();
    assert!(
        streams.len() > 20,
        "the golden fixtures provide the streams"
    );
    let mut runs = 0;
    for (name, upstream, lf) in streams {
        let crlf = Bytes::from(
            String::from_utf8(lf.to_vec())
                .unwrap()
                .replace('\n', "\r\n"),
        );
        for client in Protocol::CHAT_PROTOCOLS {
            if client == upstream {
                continue;
            }
            let whole = convert(client, upstream, vec![lf.clone()]).await;
            assert!(!whole.is_empty(), "{name}: no output");
            for (variant, bytes) in [("LF", &lf), ("CRLF", &crlf)] {
                let bytewise: Vec<Bytes> = (0..bytes.len()).map(|i| bytes.slice(i..=i)).collect();
                assert_eq!(
                    convert(client, upstream, bytewise).await,
                    whole,
                    "{name} ({variant}) one byte per chunk → {}",
                    client.config_name()
                );
                runs += 1;
                let seeds = if variant == "LF" { SPLITS } else { SPLITS / 4 };
                for seed in 0..seeds {
                    let chunks = split(bytes, seed);
                    assert_eq!(
                        convert(client, upstream, chunks).await,
                        whole,
                        "{name} ({variant}) split with seed {seed} → {}",
                        client.config_name()
                    );
                    runs += 1;
                }
            }
        }
    }
    eprintln!("{runs} chunkings compared");
}
