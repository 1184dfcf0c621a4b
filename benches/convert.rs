//! Protocol conversion throughput: a 1,000-event upstream stream converted for a client of another
//! protocol, for all twelve (client, upstream) pairs, through `ConvertEngine` exactly as the gateway
//! runs it (the stream adapter polled to the end). The same stream passed through untouched is the
//! baseline. Criterion reports events per second; the target is under 2 µs per event. A second
//! group, `convert_1000_events_sans_io`, runs the same streams through octo-convert's
//! `StreamConverter` directly (no engine, no executor): the conversion's own cost.
//!
//! Each stream is what the provider sends for a long text answer: the opening events, 996 text
//! deltas of a word each (Gemini's chunks carry cumulative usage, as the API does), and the closing
//! events. Run with `cargo bench --bench convert`; `cargo test --benches` runs each once.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use octo_convert::ResponseConverter;
use octo_core::{Engine, Event, EventStream, Protocol, Request, Response, ResponseBody, engine_fn};
use octo_engines::convert::ConvertEngine;
use octo_test::Prompt;

const EVENTS: usize = 1000;

/// A 1,000-event upstream stream in `format`.
fn upstream_stream(format: Protocol) -> Vec<Event> {
    let words = EVENTS - 4;
    let mut f = Vec::with_capacity(EVENTS);
    match format {
        Protocol::OpenAiChat => {
            let chunk = |delta: &str, finish: &str| {
                format!(
                    "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
                )
            };
            f.push(chunk(r#"{"role":"assistant","content":""}"#, "null"));
            for i in 0..words {
                f.push(chunk(&format!(r#"{{"content":" word{i}"}}"#), "null"));
            }
            f.push(chunk("{}", "\"stop\""));
            f.push("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":996,\"total_tokens\":1008}}\n\n".into());
            f.push("data: [DONE]\n\n".into());
        }
        Protocol::Anthropic => {
            f.push("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n".into());
            f.push("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".into());
            for i in 0..words - 1 {
                f.push(format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" word{i}\"}}}}\n\n"));
            }
            f.push("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n".into());
            f.push("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":996}}\n\n".into());
            f.push("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".into());
        }
        Protocol::OpenAiResponses => {
            let resp = r#"{"id":"resp_1","object":"response","created_at":1,"status":"in_progress","model":"gpt-4o","output":[]}"#;
            f.push(format!("event: response.created\ndata: {{\"type\":\"response.created\",\"sequence_number\":0,\"response\":{resp}}}\n\n"));
            f.push("event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":1,\"output_index\":0,\"item\":{\"type\":\"message\",\"id\":\"msg_1\",\"status\":\"in_progress\",\"role\":\"assistant\",\"content\":[]}}\n\n".into());
            for i in 0..words {
                f.push(format!("event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{},\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\" word{i}\",\"logprobs\":[]}}\n\n", i + 2));
            }
            f.push("event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":998,\"output_index\":0,\"item\":{\"type\":\"message\",\"id\":\"msg_1\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[]}}\n\n".into());
            f.push("event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":999,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1,\"status\":\"completed\",\"model\":\"gpt-4o\",\"output\":[],\"usage\":{\"input_tokens\":12,\"output_tokens\":996,\"total_tokens\":1008}}}\n\n".into());
        }
        _ => {
            for i in 0..EVENTS - 1 {
                f.push(format!("data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\" word{i}\"}}],\"role\":\"model\"}},\"index\":0}}],\"usageMetadata\":{{\"promptTokenCount\":12,\"candidatesTokenCount\":{i},\"totalTokenCount\":{}}},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r1\"}}\r\n\r\n", 12 + i));
            }
            f.push("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":999,\"totalTokenCount\":1011},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r1\"}\r\n\r\n".into());
        }
    }
    let events = octo_test::events(&f.concat());
    assert_eq!(events.len(), EVENTS);
    events
}

/// A streaming request of `client` asking for a long story.
fn client_request(client: Protocol) -> Request {
    Prompt::new(client, "m", "Write a long story.")
        .stream(true)
        .max_tokens(4096)
        .include_usage()
        .request()
}

/// Converts one stream to the end; returns the number of client events (bytes are touched so the
/// encoding cannot be skipped).
fn run(engine: &ConvertEngine, req: Request) -> usize {
    futures::executor::block_on(async {
        let resp = engine.process(req).await.unwrap();
        let ResponseBody::Stream(mut events) = resp.body else {
            unreachable!()
        };
        let mut n = 0;
        while let Some(ev) = events.next().await {
            n += black_box(ev.unwrap().to_frame()).len().min(1);
        }
        n
    })
}

fn conversion(c: &mut Criterion) {
    let mut group = c.benchmark_group("convert_1000_events");
    group.throughput(Throughput::Elements(EVENTS as u64));
    for upstream in Protocol::CHAT_PROTOCOLS {
        let stream = Arc::new(upstream_stream(upstream));
        let inner = {
            let stream = Arc::clone(&stream);
            engine_fn(move |_req: Request| {
                let events: Vec<Event> = stream.as_ref().clone();
                async move { Ok(Response::stream(EventStream::iter(events))) }
            })
        };
        let engine = ConvertEngine::new(Arc::new(inner), upstream);
        for client in Protocol::CHAT_PROTOCOLS {
            let label = if client == upstream {
                "passthrough".to_owned()
            } else {
                format!("to_{}", client.config_name())
            };
            group.bench_with_input(
                BenchmarkId::new(format!("from_{}", upstream.config_name()), label),
                &client,
                |b, &client| {
                    b.iter_batched(
                        || client_request(client),
                        |req| run(&engine, req),
                        BatchSize::SmallInput,
                    )
                },
            );
        }
    }
    group.finish();
}

fn conversion_sans_io(c: &mut Criterion) {
    let mut group = c.benchmark_group("convert_1000_events_sans_io");
    group.throughput(Throughput::Elements(EVENTS as u64));
    for upstream in Protocol::CHAT_PROTOCOLS {
        let stream = upstream_stream(upstream);
        for client in Protocol::CHAT_PROTOCOLS
            .into_iter()
            .filter(|c| *c != upstream)
        {
            let answer = ResponseConverter::new(client, upstream, "m").unwrap();
            group.bench_with_input(
                BenchmarkId::new(
                    format!("from_{}", upstream.config_name()),
                    format!("to_{}", client.config_name()),
                ),
                &stream,
                |b, stream| {
                    b.iter(|| {
                        let mut converter = answer.stream();
                        let mut n = 0;
                        for ev in stream {
                            converter.push(ev);
                            while let Some(out) = converter.next_event() {
                                n += black_box(out.unwrap().to_frame()).len().min(1);
                            }
                        }
                        converter.finish();
                        while let Some(out) = converter.next_event() {
                            n += black_box(out.unwrap().to_frame()).len().min(1);
                        }
                        n
                    })
                },
            );
        }
    }
    group.finish();
}

fn sanity(_: &mut Criterion) {
    // Every pair produces a complete client stream.
    for upstream in Protocol::CHAT_PROTOCOLS {
        let stream = upstream_stream(upstream);
        let inner = engine_fn(move |_req: Request| {
            let events = stream.clone();
            async move { Ok(Response::stream(EventStream::iter(events))) }
        });
        let engine = ConvertEngine::new(Arc::new(inner), upstream);
        for client in Protocol::CHAT_PROTOCOLS {
            let n = run(&engine, client_request(client));
            assert!(n >= EVENTS - 4, "{upstream} → {client}: {n} events");
        }
    }
    let _ = Bytes::new();
}

criterion_group!(benches, sanity, conversion, conversion_sans_io);
criterion_main!(benches);
