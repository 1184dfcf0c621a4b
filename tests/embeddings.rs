//! Embeddings through the real `octollm-server` binary against the mock: OpenAI `POST
//! /v1/embeddings` and Gemini `embedContent` / `batchEmbedContents`, each passed through to a
//! backend of its own provider and converted to the other; the vectors the client gets are the
//! mock's for each text (which depend on the text only), the upstream request is in the
//! upstream's protocol with the backend's key, and the request log records the usage (the mock's
//! count from OpenAI, the gateway's estimate for Gemini, which reports none) and its cost. Also the
//! refusals (an Anthropic backend, token ids toward Gemini), an upstream error in the client's
//! shape, `/v1/models`, and the golden fixtures of `tests/golden_embeddings`.

use std::path::Path;

use octo_convert::embeddings::{convert_embeddings_request, decode_base64_vector};
use octo_core::Protocol;
use octo_test::http::text;
use octo_test::{Gateway, TempDir, client, mock, post};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "an-embeddings-admin-token-0123456789";
const OA_KEY: &str = "sk-upstream-embed-oa";
const GEM_KEY: &str = "sk-upstream-embed-gem";
const CLIENT_KEY: &str = "sk-client-embed";
/// USD per million input tokens of every embeddings model here.
const PRICE: f64 = 0.5;

/// An OpenAI backend and a Gemini backend (each with the embeddings API of its provider), an
/// Anthropic one (none); a model on each, priced.
fn start(mock: &str, dir: &TempDir) -> Gateway {
    let yaml = format!(
        r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{ADMIN_TOKEN}"]}}
backends:
  oa: {{base_url: "{mock}", protocol: openai_chat, api_key: "{OA_KEY}"}}
  gem: {{base_url: "{mock}", protocol: gemini, api_key: "{GEM_KEY}"}}
  an: {{base_url: "{mock}", protocol: anthropic, api_key: "sk-an"}}
  oa-rw:
    base_url: "{mock}"
    protocol: openai_chat
    api_key: "{OA_KEY}"
    request_rewrites: {{set_keys: {{temperature: 0.5}}}}
models:
  rw-embed: {{targets: [{{backend: oa-rw, model: text-embedding-3-small}}], retry: {{max_attempts: 1}}}}
  oa-embed: {{targets: [{{backend: oa, model: text-embedding-3-small}}], retry: {{max_attempts: 1}}}}
  gem-embed: {{targets: [{{backend: gem, model: gemini-embedding-001}}], retry: {{max_attempts: 1}}}}
  an-embed: {{targets: [{{backend: an, model: claude-x}}], retry: {{max_attempts: 1}}}}
prices:
  oa-embed: {{input: {PRICE}, output: 0}}
  gem-embed: {{input: {PRICE}, output: 0}}
"#
    );
    let gw = Gateway::start_with(&yaml, &["--storage", &dir.sqlite_url()]);
    assert!(gw.admin_url.is_some(), "no admin listener was printed");
    gw
}

/// POSTs `body` to the gateway; (status, request id, JSON answer).
async fn send(
    gw: &Gateway,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, String, Value) {
    let url = format!("{}{path}", gw.url);
    let mut all = vec![("authorization", "Bearer sk-client-embed")];
    all.extend_from_slice(headers);
    let resp = post(&client(), &url, body.to_string(), &all).await;
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("x-octollm-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no request id on a {status} answer to {path}"))
        .to_owned();
    let text = text(resp).await;
    let v =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
    (status, id, v)
}

/// The mock's vector for `text` at `dims` dimensions, asked of the mock directly.
async fn mock_vector(mock: &str, text: &str, dims: u64) -> Vec<f64> {
    let body = json!({"model": "direct", "input": [text], "dimensions": dims});
    let resp = post(
        &client(),
        &format!("{mock}/v1/embeddings"),
        body.to_string(),
        &[],
    )
    .await;
    let v: Value = serde_json::from_str(&text_of(resp).await).unwrap();
    floats(&v["data"][0]["embedding"])
}

async fn text_of(resp: reqwest::Response) -> String {
    text(resp).await
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::String(s) => decode_base64_vector(s).unwrap(),
        _ => v
            .as_array()
            .unwrap_or_else(|| panic!("not a vector: {v}"))
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect(),
    }
}

fn assert_vectors(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{what}: {got:?} != {want:?}");
    }
}

fn estimate(texts: &[&str]) -> u64 {
    texts
        .iter()
        .map(|t| (t.chars().count() as u64).div_ceil(4).max(1))
        .sum()
}

fn mock_tokens(texts: &[&str]) -> u64 {
    texts.iter().map(|t| t.len() as u64 / 4 + 1).sum()
}

const TEXTS: [&str; 2] = ["embed this sentence, please", "and this ünïcode one"];

#[tokio::test]
async fn every_pair_through_the_binary_with_usage_and_cost_recorded() {
    let mock = mock().await;
    let dir = TempDir::new("embed");
    let gw = start(&mock.url(), &dir);
    let mut want = Vec::new();
    for t in TEXTS {
        want.push(mock_vector(&mock.url(), t, 5).await);
    }

    for (model, upstream) in [
        ("oa-embed", Protocol::OpenAiEmbeddings),
        ("gem-embed", Protocol::GeminiEmbeddings),
    ] {
        let (tokens, up_model, key_header, key) = match upstream {
            Protocol::OpenAiEmbeddings => (
                mock_tokens(&TEXTS),
                "text-embedding-3-small",
                "authorization",
                format!("Bearer {OA_KEY}"),
            ),
            _ => (
                estimate(&TEXTS),
                "gemini-embedding-001",
                "x-goog-api-key",
                GEM_KEY.to_owned(),
            ),
        };
        let clients = [
            (
                "/v1/embeddings".to_owned(),
                json!({"model": model, "input": TEXTS, "dimensions": 5}),
                Protocol::OpenAiEmbeddings,
            ),
            (
                "/v1/embeddings".to_owned(),
                json!({"model": model, "input": TEXTS, "dimensions": 5, "encoding_format": "base64"}),
                Protocol::OpenAiEmbeddings,
            ),
            (
                format!("/v1beta/models/{model}:batchEmbedContents"),
                json!({"requests": TEXTS.iter().map(|t| json!({"model": format!("models/{model}"),
                    "content": {"parts": [{"text": t}]}, "outputDimensionality": 5})).collect::<Vec<_>>()}),
                Protocol::GeminiEmbeddings,
            ),
        ];
        for (path, body, client_protocol) in clients {
            let what = format!("{path} {body} → {upstream}");
            mock.reset();
            let (status, id, v) = send(&gw, &path, &body, &[]).await;
            assert_eq!(status, 200, "{what}: {v}");
            let got: Vec<Vec<f64>> = match client_protocol {
                Protocol::OpenAiEmbeddings => {
                    assert_eq!(v["object"], "list", "{what}");
                    assert_eq!(v["usage"]["prompt_tokens"], tokens, "{what}: {v}");
                    v["data"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| floats(&d["embedding"]))
                        .collect()
                }
                _ => v["embeddings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| floats(&e["values"]))
                    .collect(),
            };
            assert_eq!(got.len(), 2, "{what}: {v}");
            for (g, w) in got.iter().zip(&want) {
                assert_vectors(g, w, &what);
            }
            // The upstream saw its own protocol, the backend's key and never the client's.
            let seen = mock.requests();
            assert_eq!(seen.len(), 1, "{what}");
            let expected_path = match upstream {
                Protocol::OpenAiEmbeddings => "/v1/embeddings".to_owned(),
                _ => format!("/v1beta/models/{up_model}:batchEmbedContents"),
            };
            assert_eq!(seen[0].path_and_query, expected_path, "{what}");
            assert_eq!(seen[0].headers[key_header], key.as_str(), "{what}");
            assert!(
                !format!("{:?}", seen[0].headers).contains(CLIENT_KEY),
                "{what}"
            );

            let r = gw.logged_record(ADMIN_TOKEN, &id).await;
            assert_eq!(
                r["client_protocol"],
                client_protocol.config_name(),
                "{what}: {r}"
            );
            assert_eq!(
                r["upstream_protocol"],
                upstream.config_name(),
                "{what}: {r}"
            );
            assert_eq!(r["model"], model, "{what}: {r}");
            assert_eq!(r["upstream_model"], up_model, "{what}: {r}");
            assert_eq!(r["usage"]["input_tokens"], tokens, "{what}: {r}");
            assert_eq!(r["usage"]["output_tokens"], 0, "{what}: {r}");
            let cost = r["cost_usd"]
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: no cost: {r}"));
            assert!(
                (cost - tokens as f64 * PRICE / 1e6).abs() < 1e-12,
                "{what}: {r}"
            );
        }
    }
}

#[tokio::test]
async fn gemini_single_embed_content_both_ways() {
    let mock = mock().await;
    let dir = TempDir::new("embed");
    let gw = start(&mock.url(), &dir);
    let want = mock_vector(&mock.url(), "one text", 8).await;
    for model in ["oa-embed", "gem-embed"] {
        mock.reset();
        let body =
            json!({"content": {"parts": [{"text": "one text"}]}, "taskType": "RETRIEVAL_QUERY"});
        let (status, _, v) =
            send(&gw, &format!("/v1/models/{model}:embedContent"), &body, &[]).await;
        assert_eq!(status, 200, "{model}: {v}");
        assert_vectors(&floats(&v["embedding"]["values"]), &want, model);
        let path = &mock.requests()[0].path_and_query;
        let expected = if model == "oa-embed" {
            "/v1/embeddings"
        } else {
            "/v1beta/models/gemini-embedding-001:embedContent"
        };
        assert_eq!(path, expected);
    }
}

#[tokio::test]
async fn refusals_and_upstream_errors_in_the_clients_shape() {
    let mock = mock().await;
    let dir = TempDir::new("embed");
    let gw = start(&mock.url(), &dir);

    // No embeddings API behind an Anthropic backend.
    let (status, _, v) = send(
        &gw,
        "/v1/embeddings",
        &json!({"model": "an-embed", "input": "x"}),
        &[],
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "embeddings_unsupported", "{v}");
    let body = json!({"content": {"parts": [{"text": "x"}]}});
    let (status, _, v) = send(&gw, "/v1beta/models/an-embed:embedContent", &body, &[]).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT", "{v}");

    // Token ids cannot go to Gemini.
    let (status, _, v) = send(
        &gw,
        "/v1/embeddings",
        &json!({"model": "gem-embed", "input": [[1, 2, 3]]}),
        &[],
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "input", "{v}");

    // A Gemini client's image part cannot go to OpenAI.
    let body =
        json!({"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]}});
    let (status, _, v) = send(&gw, "/v1beta/models/oa-embed:embedContent", &body, &[]).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("content.parts[0]"),
        "{v}"
    );

    // An upstream 429 (the mock's directive in the text), converted: the Gemini client gets it in Gemini's shape.
    let (status, _, v) = send(
        &gw,
        "/v1beta/models/oa-embed:embedContent",
        &json!({"content": {"parts": [{"text": "x [mock:status=429]"}]}}),
        &[],
    )
    .await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED", "{v}");
    // Passed through: the OpenAI client gets the upstream's own body.
    let (status, _, v) = send(
        &gw,
        "/v1/embeddings",
        &json!({"model": "oa-embed", "input": "x [mock:status=503]"}),
        &[],
    )
    .await;
    assert_eq!(status, 503, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("injected HTTP 503"),
        "{v}"
    );

    // Not JSON: a 400 in the route's shape.
    let resp = post(
        &client(),
        &format!("{}/v1beta/models/gem-embed:batchEmbedContents", gw.url),
        "{",
        &[],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn more_texts_than_a_gemini_batch_takes_go_as_several_calls() {
    let mock = mock().await;
    let dir = TempDir::new("embed");
    let gw = start(&mock.url(), &dir);
    let texts: Vec<String> = (0..230).map(|i| format!("text number {i}")).collect();
    let (status, id, v) = send(
        &gw,
        "/v1/embeddings",
        &json!({"model": "gem-embed", "input": texts, "dimensions": 2}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let seen = mock.requests();
    assert_eq!(seen.len(), 3, "batches of 100, 100 and 30");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 230);
    for i in [0, 99, 100, 229] {
        assert_eq!(data[i]["index"], i);
        let want = mock_vector(&mock.url(), &texts[i], 2).await;
        assert_vectors(&floats(&data[i]["embedding"]), &want, &format!("text {i}"));
    }
    let strs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let r = gw.logged_record(ADMIN_TOKEN, &id).await;
    assert_eq!(r["usage"]["input_tokens"], estimate(&strs), "{r}");
    assert_eq!(r["attempts"].as_array().unwrap().len(), 3, "{r}");
}

#[tokio::test]
async fn backend_rewrites_are_for_generation_not_embeddings() {
    let mock = mock().await;
    let dir = TempDir::new("embed");
    let gw = start(&mock.url(), &dir);
    let (status, _, v) = send(
        &gw,
        "/v1/embeddings",
        &json!({"model": "rw-embed", "input": "x"}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let body: Value = serde_json::from_slice(&mock.requests()[0].body).unwrap();
    assert!(body.get("temperature").is_none(), "{body}");
    // Chat requests to the same backend do get it.
    mock.reset();
    let chat = json!({"model": "rw-embed", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, v) = send(&gw, "/v1/chat/completions", &chat, &[]).await;
    assert_eq!(status, 200, "{v}");
    let body: Value = serde_json::from_slice(&mock.requests()[0].body).unwrap();
    assert_eq!(body["temperature"], 0.5, "{body}");
}

#[tokio::test]
async fn embeddings_models_are_listed() {
    let mock = mock().await;
    let dir = TempDir::new("embed");
    let gw = start(&mock.url(), &dir);
    let resp = client()
        .get(format!("{}/v1/models", gw.url))
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&text(resp).await).unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"oa-embed") && ids.contains(&"gem-embed"),
        "{v}"
    );
}

// ------------------------------------------------------------------------------------------ golden

fn golden(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden_embeddings")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn golden_case(
    client: Protocol,
    upstream: Protocol,
    request: &str,
    upstream_request: &str,
    answer: &str,
    client_answer: &str,
) {
    let conv = convert_embeddings_request(client, upstream, &golden(request), "up-model").unwrap();
    assert_eq!(
        conv.body,
        golden(upstream_request),
        "{request} → {upstream_request}"
    );
    let got = conv.answer.convert(&golden(answer)).unwrap();
    assert_eq!(got, golden(client_answer), "{answer} → {client_answer}");
}

#[test]
fn golden_openai_client_gemini_upstream() {
    let (o, g) = (Protocol::OpenAiEmbeddings, Protocol::GeminiEmbeddings);
    golden_case(
        o,
        g,
        "openai.request.json",
        "gemini_batch.from_openai.request.json",
        "gemini_batch.response.json",
        "openai.from_gemini.response.json",
    );
    golden_case(
        o,
        g,
        "openai_base64.request.json",
        "gemini_batch.from_openai.request.json",
        "gemini_batch.response.json",
        "openai_base64.from_gemini.response.json",
    );
}

#[test]
fn golden_gemini_client_openai_upstream() {
    let (g, o) = (Protocol::GeminiEmbeddings, Protocol::OpenAiEmbeddings);
    golden_case(
        g,
        o,
        "gemini_batch.request.json",
        "openai.from_gemini.request.json",
        "openai.response.json",
        "gemini_batch.from_openai.response.json",
    );
    golden_case(
        g,
        o,
        "gemini_single.request.json",
        "openai_single.from_gemini.request.json",
        "openai_single.response.json",
        "gemini_single.from_openai.response.json",
    );
}
