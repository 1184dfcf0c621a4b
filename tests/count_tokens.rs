//! Anthropic `count_tokens` and Gemini `countTokens` through the real `octollm-server` binary:
//! passed through to a backend that speaks the protocol (its key, the upstream model name, the
//! mock's count), estimated otherwise, and upstream errors passed through in the client's shape.

use octo_server::count_tokens::estimate_tokens;
use octo_test::{Gateway, config, mock};
use serde_json::{Value, json};

/// The header saying how the gateway counted: `upstream` or `estimate`.
const COUNTED_BY: &str = "x-octollm-token-count";

fn anthropic_body(model: &str, text: &str) -> Value {
    json!({"model": model, "system": "Be brief.", "messages": [{"role": "user", "content": text}]})
}

fn gemini_body(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

/// The mock's count for a body it received.
fn mock_count(body: &[u8]) -> u64 {
    body.len() as u64 / 4 + 1
}

#[tokio::test]
async fn anthropic_count_tokens_passes_through_to_an_anthropic_backend() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    let sent = anthropic_body("claude", "count these words please");
    let a = gw
        .post(
            "/v1/messages/count_tokens",
            &sent,
            &[
                ("x-api-key", "sk-client-secret"),
                ("anthropic-version", "2023-06-01"),
                ("anthropic-beta", "token-counting-2024-11-01"),
            ],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.header(COUNTED_BY), Some("upstream"));
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    let up = &seen[0];
    assert_eq!(up.path_and_query, "/v1/messages/count_tokens");
    assert_eq!(up.header("x-api-key"), Some("sk-upstream-an"));
    assert_eq!(up.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        up.header("anthropic-beta"),
        Some("token-counting-2024-11-01")
    );
    for (name, value) in &up.headers {
        assert!(
            !value.to_str().unwrap_or("").contains("sk-client"),
            "{name} leaked the client key"
        );
    }
    let up_body: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(up_body["model"], "up-claude");
    assert_eq!(up_body["messages"], sent["messages"]);
    assert_eq!(a.json, json!({"input_tokens": mock_count(&up.body)}));
    assert_ne!(a.json["input_tokens"], estimate_tokens(&sent));
}

#[tokio::test]
async fn gemini_count_tokens_passes_through_to_a_gemini_backend() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    let sent = gemini_body("count these words please");
    for version in ["v1", "v1beta"] {
        mock.reset();
        let a = gw
            .post(
                &format!("/{version}/models/gemini:countTokens?key=sk-client-query"),
                &sent,
                &[("x-goog-api-key", "sk-client-secret")],
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.json);
        assert_eq!(a.header(COUNTED_BY), Some("upstream"));
        let seen = mock.requests();
        assert_eq!(seen.len(), 1);
        let up = &seen[0];
        assert_eq!(up.path_and_query, "/v1beta/models/up-gemini:countTokens");
        assert_eq!(up.header("x-goog-api-key"), Some("sk-upstream-gem"));
        assert_eq!(serde_json::from_slice::<Value>(&up.body).unwrap(), sent);
        assert_eq!(a.json["totalTokens"], mock_count(&up.body));
        assert_ne!(a.json["totalTokens"], estimate_tokens(&sent));
    }
}

#[tokio::test]
async fn a_backend_speaking_several_protocols_counts_both() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    let a = gw
        .post(
            "/v1/messages/count_tokens",
            &anthropic_body("slow", "hi"),
            &[],
        )
        .await;
    assert_eq!(
        (a.status, a.header(COUNTED_BY)),
        (200, Some("upstream")),
        "{}",
        a.json
    );
    let g = gw
        .post("/v1beta/models/slow:countTokens", &gemini_body("hi"), &[])
        .await;
    assert_eq!(
        (g.status, g.header(COUNTED_BY)),
        (200, Some("upstream")),
        "{}",
        g.json
    );
    let paths: Vec<String> = mock
        .requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .collect();
    assert_eq!(
        paths,
        [
            "/v1/messages/count_tokens",
            "/v1beta/models/up-slow:countTokens"
        ]
    );
}

#[tokio::test]
async fn other_backends_get_the_estimate_and_no_upstream_request() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    // Anthropic counting for models on OpenAI, Responses and Gemini backends.
    for model in ["chat", "resp", "gemini"] {
        let sent = anthropic_body(model, "count these words please");
        let a = gw.post("/v1/messages/count_tokens", &sent, &[]).await;
        assert_eq!(a.status, 200, "{model}: {}", a.json);
        assert_eq!(a.header(COUNTED_BY), Some("estimate"), "{model}");
        assert_eq!(a.json, json!({"input_tokens": estimate_tokens(&sent)}));
    }
    // Gemini counting for models on OpenAI, Responses and Anthropic backends.
    for model in ["chat", "resp", "claude"] {
        let sent = gemini_body("count these words please");
        let g = gw
            .post(&format!("/v1beta/models/{model}:countTokens"), &sent, &[])
            .await;
        assert_eq!(g.status, 200, "{model}: {}", g.json);
        assert_eq!(g.header(COUNTED_BY), Some("estimate"), "{model}");
        assert_eq!(g.json, json!({"totalTokens": estimate_tokens(&sent)}));
    }
    assert!(mock.requests().is_empty());
    // Unknown models are still a 404 in the client's shape.
    let a = gw
        .post(
            "/v1/messages/count_tokens",
            &anthropic_body("nope", "x"),
            &[],
        )
        .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json["type"], "error");
}

#[tokio::test]
async fn upstream_errors_pass_through_in_the_clients_shape() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    let a = gw
        .post(
            "/v1/messages/count_tokens",
            &anthropic_body("claude", "fail [mock:status=429]"),
            &[],
        )
        .await;
    assert_eq!(a.status, 429, "{}", a.json);
    assert_eq!(a.headers["retry-after"], "1");
    assert_eq!(a.json["type"], "error");
    assert_eq!(a.json["error"]["type"], "rate_limit_error");
    assert_eq!(a.json["error"]["message"], "octo-mock: injected HTTP 429");

    let g = gw
        .post(
            "/v1beta/models/gemini:countTokens",
            &gemini_body("fail [mock:status=400]"),
            &[],
        )
        .await;
    assert_eq!(g.status, 400, "{}", g.json);
    assert_eq!(g.json["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(g.json["error"]["message"], "octo-mock: injected HTTP 400");
    assert_eq!(mock.requests().len(), 2);
}
