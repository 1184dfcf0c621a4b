//! The OTLP/HTTP exporter against a receiver in the test: the spans arrive protobuf-encoded at
//! `/v1/traces`, decode with `opentelemetry-proto`, continue the client's trace and carry the
//! GenAI attributes.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{attempt, record, usage};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use octo_core::Protocol;
use octo_core::record::{Observer, TraceContext};
use octo_telemetry::TelemetryConfig;
use octo_telemetry::metrics::Collect;
use octo_telemetry::metrics::Exposition;
use octo_telemetry::otlp::{OtlpExporter, QUEUE_CAPACITY, semconv as sc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use tokio::sync::mpsc;

/// What the receiver got: path, content type, body.
type Received = (String, String, Bytes);

/// A collector on an ephemeral port answering every request with `status`.
async fn receiver(status: StatusCode) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let ct = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let _ = tx.send((path, ct, body));
                            let mut resp = Response::new(Full::new(Bytes::new()));
                            *resp.status_mut() = status;
                            Ok::<_, Infallible>(resp)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, rx)
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const CLIENT_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn spans_continue_the_client_trace_with_genai_attributes() {
    let (url, mut got) = receiver(StatusCode::OK).await;
    let config = TelemetryConfig {
        otlp_endpoint: Some(url),
        service_name: "gw-test".into(),
        ..TelemetryConfig::default()
    };
    let (exporter, worker) = OtlpExporter::start(
        &config,
        [("oa", Protocol::OpenAiChat), ("an", Protocol::Anthropic)],
    )
    .unwrap()
    .unwrap();

    let trace = TraceContext::continue_or_start(Some(CLIENT_TRACEPARENT));
    let mut r = record(Some("claude"), Some("an"), 200);
    r.client_protocol = Protocol::OpenAiChat;
    r.stream = true;
    r.usage = Some(usage());
    r.finish_reason = Some("end_turn".into());
    r.cost_usd = Some(0.125);
    r.attempts = vec![
        attempt("oa", None, 0, None),
        attempt("oa", Some(503), 1, Some("1111111111111111")),
        attempt("an", Some(200), 120, Some("2222222222222222")),
    ];
    r.trace = Some(trace.clone());
    exporter.on_complete(&Arc::new(r));

    // Not traced, or the client said "not sampled": nothing is exported.
    exporter.on_complete(&Arc::new(record(Some("claude"), Some("an"), 200)));
    let mut unsampled = record(Some("claude"), Some("an"), 200);
    unsampled.trace = Some(TraceContext::continue_or_start(Some(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    )));
    exporter.on_complete(&Arc::new(unsampled));

    worker.shutdown(Duration::from_secs(30)).await;
    let (path, ct, body) = got.recv().await.unwrap();
    assert_eq!(path, "/v1/traces");
    assert_eq!(ct, "application/x-protobuf");
    assert!(got.try_recv().is_err(), "one batch");
    let req = ExportTraceServiceRequest::decode(body).unwrap();
    assert_eq!(req.resource_spans.len(), 1);
    let rs = &req.resource_spans[0];
    let service = rs
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|kv| kv.key == sc::SERVICE_NAME)
        .unwrap();
    assert_eq!(service.value.as_ref().unwrap().value, Some(s("gw-test")));
    let scope = &rs.scope_spans[0];
    assert_eq!(scope.schema_url, sc::SCHEMA_URL);
    let spans = &scope.spans;
    assert_eq!(
        spans.len(),
        3,
        "the request and its two calls; the skip is an event"
    );

    let by_id: HashMap<String, &Span> = spans.iter().map(|s| (hex(&s.span_id), s)).collect();
    let request = by_id[&trace.span_id];
    let failed = by_id["1111111111111111"];
    let answered = by_id["2222222222222222"];
    for span in spans {
        assert_eq!(hex(&span.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    // The request span: the gateway serving the client, child of the client's span.
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(hex(&request.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(request.name, "chat claude");
    assert_eq!(
        request.end_time_unix_nano - request.start_time_unix_nano,
        1_200_000_000
    );
    assert_eq!(request.start_time_unix_nano, 1_800_000_000 * 1_000_000_000);
    assert_eq!(attr(request, sc::GEN_AI_OPERATION_NAME), Some(&s("chat")));
    assert_eq!(
        attr(request, sc::GEN_AI_PROVIDER_NAME),
        Some(&s("anthropic"))
    );
    assert_eq!(attr(request, sc::GEN_AI_REQUEST_MODEL), Some(&s("claude")));
    assert_eq!(
        attr(request, sc::GEN_AI_RESPONSE_MODEL),
        Some(&s("claude-upstream"))
    );
    assert_eq!(
        attr(request, sc::GEN_AI_USAGE_INPUT_TOKENS),
        Some(&Value::IntValue(160)),
        "input includes cached"
    );
    assert_eq!(
        attr(request, sc::GEN_AI_USAGE_OUTPUT_TOKENS),
        Some(&Value::IntValue(20))
    );
    assert_eq!(
        attr(request, sc::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
        Some(&Value::IntValue(50))
    );
    assert_eq!(
        attr(request, sc::GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS),
        Some(&Value::IntValue(10))
    );
    assert_eq!(
        attr(request, sc::GEN_AI_USAGE_REASONING_OUTPUT_TOKENS),
        Some(&Value::IntValue(5))
    );
    assert_eq!(
        attr(request, sc::GEN_AI_REQUEST_STREAM),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(
        attr(request, sc::GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK),
        Some(&Value::DoubleValue(0.3))
    );
    match attr(request, sc::GEN_AI_RESPONSE_FINISH_REASONS) {
        Some(Value::ArrayValue(a)) => assert_eq!(a.values[0].value, Some(s("end_turn"))),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        attr(request, sc::HTTP_RESPONSE_STATUS_CODE),
        Some(&Value::IntValue(200))
    );
    assert_eq!(attr(request, sc::ERROR_TYPE), None);
    assert_eq!(
        attr(request, sc::OCTOLLM_COST_USD),
        Some(&Value::DoubleValue(0.125))
    );
    assert_eq!(request.events.len(), 1);
    assert_eq!(request.events[0].name, sc::EVENT_ATTEMPT_SKIPPED);
    assert_eq!(request.flags & 0x1, 1, "sampled");

    // The attempts: calls to upstreams, children of the request span, with the ids sent upstream.
    for call in [failed, answered] {
        assert_eq!(call.kind, SpanKind::Client as i32);
        assert_eq!(hex(&call.parent_span_id), trace.span_id);
        assert_eq!(
            call.end_time_unix_nano - call.start_time_unix_nano,
            100_000_000
        );
    }
    assert_eq!(
        answered.start_time_unix_nano - request.start_time_unix_nano,
        120_000_000
    );
    assert_eq!(attr(failed, sc::GEN_AI_PROVIDER_NAME), Some(&s("openai")));
    assert_eq!(attr(failed, sc::ERROR_TYPE), Some(&s("503")));
    assert_eq!(failed.status.as_ref().unwrap().code, 2, "ERROR");
    assert_eq!(
        attr(failed, sc::GEN_AI_USAGE_INPUT_TOKENS),
        None,
        "usage belongs to the answer"
    );
    assert_eq!(attr(failed, sc::OCTOLLM_KEY), Some(&s("#1")));
    assert_eq!(answered.name, "chat claude-upstream");
    assert_eq!(
        attr(answered, sc::GEN_AI_PROVIDER_NAME),
        Some(&s("anthropic"))
    );
    assert_eq!(
        attr(answered, sc::GEN_AI_REQUEST_MODEL),
        Some(&s("claude-upstream"))
    );
    assert_eq!(
        attr(answered, sc::GEN_AI_USAGE_INPUT_TOKENS),
        Some(&Value::IntValue(160))
    );
    assert_eq!(answered.status.as_ref().unwrap().code, 0);

    assert_eq!(exporter.exported_spans(), 3);
    assert_eq!(exporter.dropped(), 0);
}

#[tokio::test]
async fn a_full_queue_and_a_failing_collector_drop_and_count() {
    let (url, mut got) = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    let config = TelemetryConfig {
        otlp_endpoint: Some(url),
        ..TelemetryConfig::default()
    };
    let (exporter, worker) = OtlpExporter::start(&config, [("oa", Protocol::OpenAiChat)])
        .unwrap()
        .unwrap();
    let mut r = record(Some("m"), Some("oa"), 200);
    r.trace = Some(TraceContext::continue_or_start(Some(CLIENT_TRACEPARENT)));
    let r = Arc::new(r);
    // The test runtime has one thread: the export task cannot run while this loop does.
    for _ in 0..QUEUE_CAPACITY + 2 {
        exporter.on_complete(&r);
    }
    worker.shutdown(Duration::from_secs(30)).await;
    assert!(got.recv().await.is_some());
    assert_eq!(exporter.exported_spans(), 0);
    assert_eq!(exporter.dropped(), QUEUE_CAPACITY as u64 + 2);
    let mut out = Exposition::new();
    exporter.collect(&mut out);
    let text = out.finish();
    assert!(
        text.contains("octollm_trace_records_dropped_total{reason=\"queue_full\"} 2\n"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "octollm_trace_records_dropped_total{{reason=\"export_failed\"}} {QUEUE_CAPACITY}\n"
    )));
}
