//! End-to-end tests of the `octollm-server` binary against the mock upstream: passthrough,
//! credentials, protocol-shaped errors, streaming, failover, health and shutdown.

use octo_core::Protocol;
use octo_test::http::IntoBody;
use octo_test::{Gateway, PROTOCOLS, Prompt, body_for, client, config, mock, path_for};
use serde_json::Value;

/// POSTs `body` to `path` on the gateway: `(status, headers, JSON body)`.
async fn post(
    gw: &Gateway,
    path: &str,
    body: impl IntoBody,
) -> (u16, reqwest::header::HeaderMap, Value) {
    gw.post(path, body, &[]).await.into_parts()
}

/// Asserts `v` is `protocol`'s error shape with `status`, and returns the message.
fn error_message(protocol: Protocol, status: u16, v: &Value) -> String {
    match protocol {
        Protocol::Anthropic => {
            assert_eq!(v["type"], "error", "{v}");
            assert!(v["error"]["type"].is_string(), "{v}");
            v["error"]["message"].as_str().unwrap().to_owned()
        }
        Protocol::Gemini => {
            assert_eq!(v["error"]["code"], status, "{v}");
            assert!(v["error"]["status"].is_string(), "{v}");
            v["error"]["message"].as_str().unwrap().to_owned()
        }
        _ => {
            assert!(v["error"]["type"].is_string(), "{v}");
            assert!(v["error"].get("param").is_some(), "{v}");
            assert!(v["error"].get("code").is_some(), "{v}");
            v["error"]["message"].as_str().unwrap().to_owned()
        }
    }
}

#[tokio::test]
async fn passthrough_is_byte_exact_apart_from_the_model() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    for (protocol, model) in PROTOCOLS {
        mock.reset();
        // Odd spacing, key order and unicode must survive untouched.
        let sent = body_for(protocol, model, "héllo \u{1F600}  \"quoted\"", false)
            .replacen('{', "{ ", 1)
            .replace(",\"", " ,\n\"");
        let (status, _, v) = post(&gw, &path_for(protocol, model, false), sent.clone()).await;
        assert_eq!(status, 200, "{protocol}: {v}");
        let seen = mock.requests();
        assert_eq!(seen.len(), 1);
        let upstream_model = format!("up-{}", if model == "resp" { "resp" } else { model });
        let expected = if protocol == Protocol::Gemini {
            assert!(
                seen[0]
                    .path_and_query
                    .contains(&format!("/models/{upstream_model}:generateContent"))
            );
            sent.clone()
        } else {
            sent.replace(
                &format!("\"model\":\"{model}\""),
                &format!("\"model\":\"{upstream_model}\""),
            )
        };
        assert_eq!(
            String::from_utf8_lossy(&seen[0].body),
            expected,
            "{protocol}"
        );
    }
}

#[tokio::test]
async fn client_credentials_never_reach_the_upstream() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    for (protocol, model) in PROTOCOLS {
        mock.reset();
        let resp = client()
            .post(format!(
                "{}{}?key=sk-client-query",
                gw.url,
                path_for(protocol, model, false)
            ))
            .header("authorization", "Bearer sk-client-secret")
            .header("x-api-key", "sk-client-secret")
            .header("x-goog-api-key", "sk-client-secret")
            .header("cookie", "session=sk-client-secret")
            .body(body_for(protocol, model, "hi", false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let seen = &mock.requests()[0];
        assert!(
            !seen.path_and_query.contains("sk-client"),
            "{}",
            seen.path_and_query
        );
        for (name, value) in &seen.headers {
            let value = value.to_str().unwrap_or("");
            assert!(
                !value.contains("sk-client"),
                "{protocol}: {name} leaked the client key"
            );
        }
        let (header, expected) = match protocol {
            Protocol::Anthropic => ("x-api-key", "sk-upstream-an".to_owned()),
            Protocol::Gemini => ("x-goog-api-key", "sk-upstream-gem".to_owned()),
            Protocol::OpenAiChat => ("authorization", "Bearer sk-upstream-oa".to_owned()),
            _ => ("authorization", "Bearer sk-upstream-resp".to_owned()),
        };
        assert_eq!(seen.header(header), Some(expected.as_str()), "{protocol}");
        if protocol == Protocol::Anthropic {
            assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
        }
    }
}

#[tokio::test]
async fn each_malformed_input_gets_its_error_in_the_clients_shape() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    for (protocol, model) in PROTOCOLS {
        // Unknown model: 404.
        let unknown = if protocol == Protocol::Gemini {
            "no-such-model"
        } else {
            model
        };
        let body = body_for(protocol, "no-such-model", "hi", false);
        let (s, _, v) = post(&gw, &path_for(protocol, unknown, false), body).await;
        assert_eq!(s, 404, "{protocol}: {v}");
        assert!(error_message(protocol, 404, &v).contains("`no-such-model` is not configured"));

        // Malformed JSON: 400 naming the position.
        let (s, _, v) = post(
            &gw,
            &path_for(protocol, model, false),
            "{\"model\": \"chat\", \"messages\": [",
        )
        .await;
        assert_eq!(s, 400, "{protocol}: {v}");
        assert!(error_message(protocol, 400, &v).contains("not valid JSON"));

        // Wrong method: 405 with Allow.
        let resp = client()
            .get(format!("{}{}", gw.url, path_for(protocol, model, false)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()["allow"], "POST");
        let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        error_message(protocol, 405, &v);

        // Over the body limit: 413.
        let huge = body_for(protocol, model, &"x".repeat(2_100_000), false);
        let (s, _, v) = post(&gw, &path_for(protocol, model, false), huge).await;
        assert_eq!(s, 413, "{protocol}: {v}");
        error_message(protocol, 413, &v);

        // Upstream refused the connection: 502 naming the backend.
        let (s, _, v) = post(
            &gw,
            &path_for(protocol, "broken", false),
            body_for(protocol, "broken", "hi", false),
        )
        .await;
        assert_eq!(s, 502, "{protocol}: {v}");
        assert!(
            error_message(protocol, 502, &v).contains("backend `down`"),
            "{v}"
        );

        // Upstream too slow for first_byte: 504 naming the backend.
        let (s, _, v) = post(
            &gw,
            &path_for(protocol, "slow", false),
            body_for(protocol, "slow", "[mock:timeout]", false),
        )
        .await;
        assert_eq!(s, 504, "{protocol}: {v}");
        let msg = error_message(protocol, 504, &v);
        assert!(
            msg.contains("backend `all`") && msg.contains("first_byte"),
            "{msg}"
        );
    }
    // The abandoned slow requests were cancelled upstream, not left running.
    mock.wait_for(|s| s.requests_cancelled >= 4).await;
}

#[tokio::test]
async fn upstream_errors_keep_status_body_and_retry_after() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    for (protocol, model) in PROTOCOLS {
        let body = body_for(
            protocol,
            model,
            "[mock:status=429] [mock:retry_after=7]",
            false,
        );
        let (s, h, v) = post(&gw, &path_for(protocol, model, false), body).await;
        assert_eq!(s, 429, "{protocol}: {v}");
        assert_eq!(h["retry-after"], "7");
        // Same protocol on both sides: the upstream's own body, verbatim.
        error_message(protocol, 429, &v);
        assert!(
            !v.to_string().contains("backend `"),
            "passed through verbatim: {v}"
        );
    }
}

#[tokio::test]
async fn streams_pass_through_for_every_protocol() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    for (protocol, model) in PROTOCOLS {
        let resp = gw
            .send(&Prompt::new(protocol, model, "stream please [mock:events=5]").stream(true))
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let text = resp.text().await.unwrap();
        match protocol {
            Protocol::OpenAiChat => assert!(text.ends_with("data: [DONE]\n\n"), "{text}"),
            Protocol::OpenAiResponses => {
                assert!(text.contains("event: response.completed\n"), "{text}")
            }
            Protocol::Anthropic => assert!(
                text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
                "{text}"
            ),
            _ => {
                assert!(text.starts_with("data: {"), "{text}");
                assert!(!text.contains("\n:"), "no comments toward Gemini: {text}");
                assert!(text.contains("\"finishReason\":\"STOP\""), "{text}");
            }
        }
    }
    // Gemini without alt=sse: a JSON array.
    let resp = client()
        .post(format!("{}/v1/models/gemini:streamGenerateContent", gw.url))
        .body(body_for(Protocol::Gemini, "gemini", "hi", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert!(v.as_array().is_some_and(|a| a.len() > 1), "{v}");
}

#[tokio::test]
async fn a_failed_target_fails_over_to_the_next() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    let (s, _, v) = post(
        &gw,
        "/v1/chat/completions",
        body_for(Protocol::OpenAiChat, "failover", "hi", false),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["model"], "up-failover");
}

#[tokio::test]
async fn health_and_readiness() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    for path in ["/healthz", "/readyz"] {
        let resp = client()
            .get(format!("{}{path}", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = client()
        .get(format!("{}/nope", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

/// `GET /debug/overhead`: one entry per request that reached an engine, with the upstream's own
/// time (a slow head, a slowly paced stream) subtracted.
#[tokio::test]
async fn overhead_histogram_subtracts_upstream_time() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    let overhead = || async {
        let resp = client()
            .get(format!("{}/debug/overhead", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        serde_json::from_slice::<Value>(&resp.bytes().await.unwrap()).unwrap()
    };
    assert_eq!(overhead().await["count"], 0);
    // An upstream that takes a second to answer: that second is not the gateway's.
    let body = body_for(
        Protocol::OpenAiChat,
        "chat",
        "slow [mock:latency_ms=1000]",
        false,
    );
    let (status, _, v) = post(&gw, "/v1/chat/completions", body).await;
    assert_eq!(status, 200, "{v}");
    let o = overhead().await;
    assert_eq!(o["count"], 1, "{o}");
    assert!(o["max_us"].as_f64().unwrap() < 1_000_000.0, "{o}");
    // A stream paced 400 ms apart is recorded when it ends, its pauses subtracted too.
    let body = body_for(
        Protocol::OpenAiChat,
        "chat",
        "[mock:events=3] [mock:interval_ms=400]",
        true,
    );
    let resp = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("[DONE]"), "{text}");
    let o = overhead().await;
    assert_eq!(o["count"], 2, "{o}");
    assert!(o["max_us"].as_f64().unwrap() < 800_000.0, "{o}");
    for key in ["p50_us", "p90_us", "p99_us", "p999_us", "mean_us"] {
        assert!(o[key].is_number(), "{key}: {o}");
    }
    // Requests that never reach an engine (404s, health checks) are not counted.
    let _ = client()
        .get(format!("{}/nope", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(overhead().await["count"], 2);
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    let (s, _, _) = post(
        &gw,
        "/v1/chat/completions",
        body_for(Protocol::OpenAiChat, "chat", "hi", false),
    )
    .await;
    assert_eq!(s, 200);
    assert!(gw.terminate(), "exit status after SIGTERM");
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .post(format!("{}/v1/messages", gw.url))
        .body(body_for(Protocol::Anthropic, "claude", "hi", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn an_h2c_backend_gets_http2_upstream_requests() {
    let mock = mock().await;
    let url = mock.url();
    let yaml = format!(
        r#"
listen: "127.0.0.1:0"
backends:
  h2: {{base_url: "{url}", protocol: openai_chat, http_version: h2c}}
  h1: {{base_url: "{url}", protocol: openai_chat}}
models:
  over-h2: {{targets: [{{backend: h2}}]}}
  over-h1: {{targets: [{{backend: h1}}]}}
"#
    );
    let gw = Gateway::start(&yaml);
    for (model, stream) in [("over-h2", true), ("over-h2", false), ("over-h1", true)] {
        let resp = client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .header("content-type", "application/json")
            .body(body_for(Protocol::OpenAiChat, model, "hi", stream))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let text = resp.text().await.unwrap();
        if stream {
            assert!(text.contains("data: [DONE]"), "{text}");
        }
    }
    let log = client()
        .get(format!("{url}/_mock/requests?body=1"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let log: Value = serde_json::from_slice(&log).unwrap();
    let seen: Vec<(String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["body"]["model"].as_str().unwrap().to_owned(),
                r["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = |m: &str, v: &str| (m.to_owned(), v.to_owned());
    assert_eq!(
        seen,
        [
            want("over-h2", "HTTP/2.0"),
            want("over-h2", "HTTP/2.0"),
            want("over-h1", "HTTP/1.1")
        ]
    );
}

#[test]
fn a_bad_http_version_stops_startup_with_the_key_and_the_fix() {
    let err = octo_test::start_fails(
        r#"
backends:
  up: {base_url: "http://127.0.0.1:9", protocol: openai_chat, http_version: http2}
models:
  m: {targets: [{backend: up}]}
"#,
    );
    assert!(err.contains("backends.up.http_version"), "{err}");
    assert!(
        err.contains("unknown HTTP version setting `http2`"),
        "{err}"
    );
    assert!(err.contains("use `h2c`"), "{err}");
    assert!(err.contains("octollm-bad-"), "the file is named: {err}");
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_stream_finish() {
    use futures::StreamExt;
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    let resp = gw
        .send(
            &Prompt::new(
                Protocol::Anthropic,
                "claude",
                "[mock:events=20] [mock:interval_ms=10]",
            )
            .stream(true),
        )
        .await;
    let mut chunks = resp.bytes_stream();
    let mut text = String::from_utf8(chunks.next().await.unwrap().unwrap().to_vec()).unwrap();
    // Shut down while the stream is running; the drain lets it complete.
    let exited = tokio::task::spawn_blocking(move || gw.terminate());
    while let Some(chunk) = chunks.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(
        text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "{text}"
    );
    assert!(exited.await.unwrap(), "exit status after SIGTERM");
}

/// What the client receives through the gateway is byte for byte what the upstream sent, streams
/// included (the mock is reset before each call so its ids repeat).
#[tokio::test]
async fn responses_pass_through_byte_for_byte() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    for (protocol, model) in PROTOCOLS {
        let upstream_model = format!("up-{model}");
        for stream in [false, true] {
            let fetch = |base: String, model: String| {
                let path = path_for(protocol, &model, stream);
                let body = body_for(protocol, &model, "same bytes [mock:tools=2]", stream);
                async move {
                    let resp = client()
                        .post(format!("{base}{path}"))
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 200);
                    resp.bytes().await.unwrap()
                }
            };
            mock.reset();
            let direct = fetch(mock.url(), upstream_model.clone()).await;
            mock.reset();
            let via = fetch(gw.url.clone(), model.to_owned()).await;
            assert_eq!(
                String::from_utf8_lossy(&via),
                String::from_utf8_lossy(&direct),
                "{protocol} stream={stream}"
            );
        }
    }
}
