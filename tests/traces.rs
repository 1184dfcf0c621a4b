//! OpenTelemetry through the real `octollm-server`: a client's `traceparent` is continued, the
//! upstream receives the attempt span's `traceparent`, and the spans reach an OTLP/HTTP collector
//! (a receiver in this test decoding protobuf), flushed by SIGTERM.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use octo_core::Protocol;
use octo_test::{Gateway, Prompt, client, mock, post};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::sync::mpsc;

/// A collector on an ephemeral port: every POST body is sent on the channel, answered 200.
async fn collector() -> (String, mpsc::UnboundedReceiver<(String, Bytes)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let _ = tx.send((path, body.unwrap_or_default()));
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
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

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

// Two worker threads: the collector must answer while this thread waits for the gateway to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trace_is_continued_upstream_and_exported() {
    let mock = mock().await;
    let (otlp, mut received) = collector().await;
    let yaml = format!(
        r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["a-test-admin-token-0123456789"]}}
telemetry: {{otlp_endpoint: "{otlp}"}}
backends:
  up: {{base_url: "{mock}", protocol: anthropic, api_key: "sk-upstream"}}
models:
  traced: {{targets: [{{backend: up, model: up-traced}}], retry: {{max_attempts: 1}}}}
"#,
        mock = mock.url()
    );
    let gw = Gateway::start_with(&yaml, &["--storage", "off"]);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{parent}-01");
    // An OpenAI Chat client, converted to the Anthropic upstream, streaming.
    let prompt = Prompt::new(Protocol::OpenAiChat, "traced", "hello traces").stream(true);
    let resp = post(
        &client(),
        &format!("{}{}", gw.url, prompt.path()),
        prompt.body(),
        &[("traceparent", traceparent.as_str())],
    )
    .await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();

    // The upstream got the attempt span's traceparent, in the client's trace.
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    let upstream_tp = seen[0]
        .header("traceparent")
        .expect("traceparent upstream")
        .to_owned();
    let parts: Vec<&str> = upstream_tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{upstream_tp}");
    assert_eq!(parts[1], trace_id);
    assert_ne!(
        parts[2], parent,
        "the upstream's parent is the gateway's attempt span"
    );
    assert_eq!(parts[3], "01");

    // SIGTERM flushes the exporter within the drain deadline.
    assert!(gw.terminate(), "clean exit after SIGTERM");
    let mut spans: Vec<Span> = Vec::new();
    while let Ok((path, body)) = received.try_recv() {
        assert_eq!(path, "/v1/traces");
        let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
    }
    assert_eq!(
        spans.len(),
        2,
        "one request span and one attempt span: {spans:?}"
    );
    let request = spans
        .iter()
        .find(|s| hex(&s.parent_span_id) == parent)
        .expect("the request span's parent is the client's span");
    let attempt = spans
        .iter()
        .find(|s| s.parent_span_id == request.span_id)
        .expect("the attempt span is the request span's child");
    for s in [request, attempt] {
        assert_eq!(hex(&s.trace_id), trace_id);
    }
    assert_eq!(
        hex(&attempt.span_id),
        parts[2],
        "the upstream's parent is the attempt span"
    );
    assert_eq!(request.name, "chat traced");
    let attr = |s: &Span, key: &str| {
        s.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
    };
    assert!(
        attr(request, "gen_ai.usage.output_tokens").is_some(),
        "{request:?}"
    );
    assert!(
        attr(request, "gen_ai.request.model").is_some(),
        "{request:?}"
    );
}
