//! Fault injection and cancellation observability over a real socket: injected statuses, resets,
//! timeouts, truncated / aborted / failing streams, and the counters that prove a client
//! disconnect reached the upstream. No sleeps: waits go through `MockServer::wait_for`.

use std::time::{Duration, Instant};

use octo_core::Protocol;
use octo_test::http::{json, text};
use octo_test::{Prompt, client, h2_client, mock, parse_sse, post};
use serde_json::{Value, json};

/// A streaming OpenAI Chat request for model `m`.
fn chat_body(text: &str) -> String {
    Prompt::new(Protocol::OpenAiChat, "m", text)
        .stream(true)
        .body()
}

#[tokio::test]
async fn injected_status_uses_each_protocol_error_shape() {
    let mock = mock().await;
    let c = client();
    let cases = [
        ("/v1/chat/completions", json!({"messages": []})),
        ("/v1/responses", json!({"input": "x"})),
        ("/v1/messages", json!({"messages": []})),
        ("/v1beta/models/g:generateContent", json!({"contents": []})),
    ];
    for (path, body) in &cases {
        let url = format!("{}{path}", mock.url());
        let response = post(&c, &url, body, &[("x-mock-status", "429")]).await;
        assert_eq!(response.status(), 429, "{path}");
        assert_eq!(response.headers()["retry-after"], "1");
        let v = json(response).await;
        match *path {
            "/v1/messages" => {
                assert_eq!(v["type"], "error");
                assert_eq!(v["error"]["type"], "rate_limit_error");
            }
            "/v1beta/models/g:generateContent" => {
                assert_eq!(v["error"]["code"], 429);
                assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
            }
            _ => {
                assert_eq!(v["error"]["code"], "rate_limit_exceeded");
                assert!(v["error"]["message"].is_string());
                assert_eq!(v["error"]["param"], Value::Null);
            }
        }
    }
    // Body directive, with an explicit retry_after.
    let url = format!("{}/v1/messages", mock.url());
    let body =
        json!({"messages": [{"role": "user", "content": "[mock:status=529][mock:retry_after=7]"}]});
    let response = post(&c, &url, &body, &[]).await;
    assert_eq!(response.status(), 529);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(json(response).await["error"]["type"], "overloaded_error");
    mock.shutdown().await;
}

#[tokio::test]
async fn reset_drops_the_connection() {
    let mock = mock().await;
    let url = format!("{}/v1/chat/completions", mock.url());
    let result = client()
        .post(&url)
        .header("x-mock-reset", "1")
        .body(chat_body("x"))
        .send()
        .await;
    assert!(
        result.is_err(),
        "expected a connection error, got {result:?}"
    );
    assert_eq!(mock.stats().requests, 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn timeout_request_counts_cancel_when_client_leaves() {
    let mock = mock().await;
    let url = format!("{}/v1/messages", mock.url());
    let request = tokio::spawn(async move {
        let body = json!({"messages": [{"role": "user", "content": "[mock:timeout]"}]});
        post(&client(), &url, &body, &[]).await
    });
    mock.wait_for(|s| s.requests == 1).await;
    request.abort();
    let stats = mock.wait_for(|s| s.requests_cancelled == 1).await;
    assert_eq!(stats.streams_started, 0);
    mock.shutdown().await;
}

/// Reads the first chunk of a slow stream, drops the response, and waits for the mock to see it.
async fn cancel_mid_stream(client: reqwest::Client) {
    let mock = mock().await;
    let url = format!("{}/v1/chat/completions", mock.url());
    let headers = [("x-mock-interval-ms", "50"), ("x-mock-events", "200")];
    let mut response = post(&client, &url, &chat_body("slow"), &headers).await;
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(response);
    let stats = mock.wait_for(|s| s.streams_cancelled == 1).await;
    assert_eq!((stats.streams_started, stats.streams_completed), (1, 0));
    mock.shutdown().await;
}

#[tokio::test]
async fn client_disconnect_cancels_stream_http1() {
    cancel_mid_stream(client()).await;
}

#[tokio::test]
async fn client_disconnect_cancels_stream_h2c() {
    cancel_mid_stream(h2_client()).await;
}

#[tokio::test]
async fn truncate_ends_cleanly_without_terminator() {
    let mock = mock().await;
    let url = format!("{}/v1/chat/completions", mock.url());
    let body = text(
        post(
            &client(),
            &url,
            &chat_body("a b c d"),
            &[("x-mock-truncate", "3")],
        )
        .await,
    )
    .await;
    let events = parse_sse(&body);
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.data != "[DONE]"));
    let stats = mock.wait_for(|s| s.streams_completed == 1).await;
    assert_eq!(stats.streams_cancelled, 0);
    mock.shutdown().await;
}

#[tokio::test]
async fn abort_fails_the_body() {
    let mock = mock().await;
    let url = format!("{}/v1/messages", mock.url());
    let body =
        json!({"stream": true, "messages": [{"role": "user", "content": "x [mock:abort=2]"}]});
    let mut response = post(&client(), &url, &body, &[]).await;
    assert_eq!(response.status(), 200);
    let mut received = Vec::new();
    let error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => panic!("body ended cleanly"),
            Err(e) => break e,
        }
    };
    assert!(
        error.is_body() || error.is_decode() || error.is_request(),
        "{error:?}"
    );
    let events = parse_sse(std::str::from_utf8(&received).unwrap());
    assert_eq!(events.len(), 2);
    mock.wait_for(|s| s.streams_aborted == 1).await;
    mock.shutdown().await;
}

#[tokio::test]
async fn midstream_error_in_each_protocol() {
    let mock = mock().await;
    let c = client();
    let directive = [("x-mock-midstream-error", "2")];

    let url = format!("{}/v1/chat/completions", mock.url());
    let events = parse_sse(&text(post(&c, &url, &chat_body("a b c d"), &directive).await).await);
    // role chunk, 2 content chunks, error; no [DONE].
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].json()["error"]["type"], "server_error");

    let url = format!("{}/v1/messages", mock.url());
    let body = json!({"stream": true, "messages": [{"role": "user", "content": "a b c d"}]});
    let events = parse_sse(&text(post(&c, &url, &body, &directive).await).await);
    let last = events.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("error"));
    assert_eq!(last.json()["error"]["type"], "overloaded_error");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event.as_deref() == Some("content_block_delta"))
            .count(),
        2
    );

    let url = format!("{}/v1/responses", mock.url());
    let body = json!({"stream": true, "input": "a b c d"});
    let events = parse_sse(&text(post(&c, &url, &body, &directive).await).await);
    let last = events.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("error"));
    assert_eq!(last.json()["sequence_number"], events.len() - 1);
    assert!(
        events
            .iter()
            .all(|e| e.event.as_deref() != Some("response.completed"))
    );

    let url = format!(
        "{}/v1beta/models/g:streamGenerateContent?alt=sse",
        mock.url()
    );
    let body = json!({"contents": [{"parts": [{"text": "a b c d"}]}]});
    let events = parse_sse(&text(post(&c, &url, &body, &directive).await).await);
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[2].json()["error"],
        json!({"code": 500, "message": "octo-mock: injected mid-stream error", "status": "INTERNAL"})
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn events_latency_and_max_tokens() {
    let mock = mock().await;
    let c = client();
    let url = format!("{}/v1/messages", mock.url());
    let body = json!({"stream": true, "messages": [{"role": "user", "content": "hi [mock:events=37] [mock:max_tokens]"}]});
    let started = Instant::now();
    let response = post(&c, &url, &body, &[("x-mock-latency-ms", "30")]).await;
    assert!(started.elapsed() >= Duration::from_millis(30));
    let events = parse_sse(&text(response).await);
    let deltas = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("content_block_delta"))
        .count();
    assert_eq!(deltas, 37);
    let message_delta = events[events.len() - 2].json();
    assert_eq!(message_delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(message_delta["usage"]["output_tokens"], 37);
    mock.shutdown().await;
}
