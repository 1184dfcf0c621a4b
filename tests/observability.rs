//! The operations half through the real `octollm-server` binary against the mock upstream: the
//! record of every request in the request log (fields, usage, cost) for each client protocol,
//! passthrough and converted, stream and not; the usage tap leaving the client's bytes alone; the
//! OpenAI Chat usage chunk injected and removed; errors recorded; the admin listener's tokens and
//! errors; `/metrics` and `/api/v1/stats` counting what was sent; no record lost over a SIGTERM
//! restart; and no secret in the log, the metrics or the database file.
//!
//! Each gateway has its own SQLite file in a fresh temp directory and its own admin listener on an
//! ephemeral port.

use std::path::{Path, PathBuf};

use octo_core::Protocol;
use octo_test::http::text;
use octo_test::{Gateway, Prompt, TempDir, client, mock, post, start_fails};
use serde_json::{Value, json};

/// The admin token every test gateway accepts.
const ADMIN_TOKEN: &str = "a-test-admin-token-0123456789";
/// The upstream key configured on every backend.
const UPSTREAM_KEY: &str = "sk-upstream-secret-xyz";
/// The user text of every prompt.
const TEXT: &str = "hello observability";

/// The backend speaking `protocol` in [`obs_config`].
fn backend(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::OpenAiChat => "oa",
        Protocol::OpenAiResponses => "resp",
        Protocol::Anthropic => "an",
        _ => "gem",
    }
}

/// The exposed model routed to the backend speaking `protocol`.
fn model_on(protocol: Protocol) -> String {
    format!("m-{}", protocol.config_name())
}

/// Another protocol than `protocol`, for converted requests.
fn other(protocol: Protocol) -> Protocol {
    let all = Protocol::CHAT_PROTOCOLS;
    let i = all.iter().position(|p| *p == protocol).unwrap();
    all[(i + 1) % all.len()]
}

/// One backend per protocol on `mock`, each with [`UPSTREAM_KEY`]; a model `m-<protocol>` on each,
/// priced at input 1.0 and output 2.0 USD per million tokens; the OpenAI Chat backend `quiet`
/// without stream usage injection; an admin listener on an ephemeral port; then `extra`.
fn obs_config(mock: &str, extra: &str) -> String {
    let mut backends = String::new();
    let mut models = String::new();
    let mut prices = String::new();
    for p in Protocol::CHAT_PROTOCOLS {
        let (b, name) = (backend(p), p.config_name());
        backends.push_str(&format!(
            "  {b}: {{base_url: \"{mock}\", protocol: {name}, api_key: \"{UPSTREAM_KEY}\"}}\n"
        ));
        models.push_str(&format!(
            "  m-{name}: {{targets: [{{backend: {b}, model: up-{name}}}], retry: {{max_attempts: 1}}}}\n"
        ));
        prices.push_str(&format!("  m-{name}: {{input: 1.0, output: 2.0}}\n"));
    }
    format!(
        r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{ADMIN_TOKEN}"]}}
backends:
{backends}  quiet: {{base_url: "{mock}", protocol: openai_chat, api_key: "{UPSTREAM_KEY}", stream_usage: false}}
models:
{models}  quiet: {{targets: [{{backend: quiet, model: up-quiet}}], retry: {{max_attempts: 1}}}}
prices:
{prices}  quiet: {{input: 1.0, output: 2.0}}
{extra}
"#
    )
}

/// Starts a gateway on [`obs_config`] with its request log in `dir`.
fn start(mock: &str, dir: &TempDir, extra: &str) -> Gateway {
    let gw = Gateway::start_with(&obs_config(mock, extra), &["--storage", &dir.sqlite_url()]);
    assert!(gw.admin_url.is_some(), "no admin listener was printed");
    gw
}

/// What the gateway answered to one request.
struct Answer {
    status: u16,
    id: String,
    body: bytes::Bytes,
}

/// Sends `prompt` with extra headers and reads the whole answer; it must carry
/// `x-octollm-request-id`.
async fn send(gw: &Gateway, prompt: &Prompt, headers: &[(&str, &str)]) -> Answer {
    let url = format!("{}{}", gw.url, prompt.path());
    let resp = post(&client(), &url, prompt.body(), headers).await;
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("x-octollm-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no x-octollm-request-id on a {status} answer to {url}"))
        .to_owned();
    let body = resp.bytes().await.expect("read the answer");
    Answer { status, id, body }
}

/// GETs `path` on the admin API with the right token, expecting 200 and JSON.
async fn admin_json(gw: &Gateway, path: &str) -> Value {
    let reply = gw.admin_get(path, ADMIN_TOKEN).await;
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    reply.json()
}

/// The output tokens the mock reports for a reply to [`TEXT`] (it depends on the text only).
async fn mock_output_tokens(mock: &octo_mock::MockServer) -> u64 {
    let body = json!({"model": "calibrate", "messages": [{"role": "user", "content": TEXT}]});
    let resp = post(
        &client(),
        &format!("{}/v1/chat/completions", mock.url()),
        &body,
        &[],
    )
    .await;
    let v: Value = serde_json::from_str(&text(resp).await).unwrap();
    v["usage"]["completion_tokens"]
        .as_u64()
        .expect("mock usage")
}

/// The input tokens the mock reported for the last request it received: `body_len / 4 + 1`.
fn last_mock_input_tokens(mock: &octo_mock::MockServer) -> u64 {
    let last = mock.requests().pop().expect("the mock saw a request");
    last.body.len() as u64 / 4 + 1
}

/// The finish reason of a plain text answer, in the words of an upstream speaking `protocol`.
fn finish_reason(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::OpenAiChat => "stop",
        Protocol::OpenAiResponses => "completed",
        Protocol::Anthropic => "end_turn",
        _ => "STOP",
    }
}

/// `(input × 1 + output × 2) / 1e6`: the configured price of every model.
fn cost(input: u64, output: u64) -> f64 {
    (input as f64 + 2.0 * output as f64) / 1e6
}

fn assert_close(actual: &Value, expected: f64, what: &str) {
    let a = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {actual}"));
    assert!((a - expected).abs() < 1e-12, "{what}: {a} != {expected}");
}

#[tokio::test]
async fn every_protocol_passthrough_and_converted_is_recorded_with_usage_and_cost() {
    let mock = mock().await;
    let dir = TempDir::new("obs");
    let gw = start(&mock.url(), &dir, "");
    let output = mock_output_tokens(&mock).await;
    for client_protocol in Protocol::CHAT_PROTOCOLS {
        for upstream in [client_protocol, other(client_protocol)] {
            for stream in [false, true] {
                let what = format!("{client_protocol} → {upstream}, stream={stream}");
                let model = model_on(upstream);
                let prompt = Prompt::new(client_protocol, &model, TEXT).stream(stream);
                let answer = send(&gw, &prompt, &[]).await;
                assert_eq!(answer.status, 200, "{what}: {:?}", answer.body);
                let input = last_mock_input_tokens(&mock);
                let r = gw.logged_record(ADMIN_TOKEN, &answer.id).await;
                assert_eq!(r["id"], answer.id.as_str(), "{what}: {r}");
                assert_eq!(
                    r["client_protocol"],
                    client_protocol.config_name(),
                    "{what}"
                );
                assert_eq!(r["model"], model.as_str(), "{what}");
                assert_eq!(r["backend"], backend(upstream), "{what}");
                assert_eq!(r["upstream_protocol"], upstream.config_name(), "{what}");
                assert_eq!(
                    r["upstream_model"],
                    format!("up-{}", upstream.config_name()),
                    "{what}"
                );
                assert_eq!(r["stream"], stream, "{what}");
                assert_eq!(r["status"], 200, "{what}");
                assert!(r["error"].is_null(), "{what}: {r}");
                let attempts = r["attempts"].as_array().expect("attempts");
                assert_eq!(attempts.len(), 1, "{what}: {r}");
                assert_eq!(attempts[0]["status"], 200, "{what}: {r}");
                assert_eq!(attempts[0]["backend"], backend(upstream), "{what}: {r}");
                let usage = &r["usage"];
                assert_eq!(usage["input_tokens"], input, "{what}: {r}");
                assert_eq!(usage["output_tokens"], output, "{what}: {r}");
                assert_eq!(usage["cache_read_tokens"], 0, "{what}: {r}");
                assert_eq!(usage["cache_write_tokens"], 0, "{what}: {r}");
                assert_eq!(usage["reasoning_tokens"], 0, "{what}: {r}");
                assert_eq!(r["finish_reason"], finish_reason(upstream), "{what}: {r}");
                assert_close(&r["cost_usd"], cost(input, output), &what);
                assert_eq!(r["price"]["input"], 1.0, "{what}: {r}");
                assert_eq!(r["price"]["output"], 2.0, "{what}: {r}");
                assert_eq!(
                    r["price"]["source"],
                    format!("config:{model}"),
                    "{what}: {r}"
                );
                if stream {
                    assert!(r["ttfb_ms"].is_u64(), "{what}: {r}");
                }
            }
        }
    }
}

#[tokio::test]
async fn the_usage_tap_leaves_the_clients_bytes_alone_with_storage_on() {
    let mock = mock().await;
    let dir = TempDir::new("obs");
    let gw = start(&mock.url(), &dir, "");
    for protocol in Protocol::CHAT_PROTOCOLS {
        let model = model_on(protocol);
        let upstream_model = format!("up-{}", protocol.config_name());
        for stream in [false, true] {
            // OpenAI Chat streams both ways: usage asked for by the client, and injected.
            let include = if protocol == Protocol::OpenAiChat && stream {
                vec![false, true]
            } else {
                vec![false]
            };
            for include_usage in include {
                let what = format!("{protocol} stream={stream} include_usage={include_usage}");
                let prompt = |model: &str| {
                    let p = Prompt::new(protocol, model, format!("{TEXT} [mock:tools=2]"))
                        .stream(stream);
                    if include_usage { p.include_usage() } else { p }
                };
                mock.reset();
                let direct = post(
                    &client(),
                    &format!("{}{}", mock.url(), prompt(&upstream_model).path()),
                    prompt(&upstream_model).body(),
                    &[],
                )
                .await;
                assert_eq!(direct.status(), 200, "{what}");
                let direct = direct.bytes().await.unwrap();
                mock.reset();
                let via = send(&gw, &prompt(&model), &[]).await;
                assert_eq!(via.status, 200, "{what}");
                assert_eq!(
                    String::from_utf8_lossy(&via.body),
                    String::from_utf8_lossy(&direct),
                    "{what}"
                );
                let r = gw.logged_record(ADMIN_TOKEN, &via.id).await;
                assert!(r["usage"]["output_tokens"].is_u64(), "{what}: {r}");
            }
        }
    }
}

#[tokio::test]
async fn the_openai_chat_usage_chunk_is_injected_and_removed_unless_turned_off() {
    let mock = mock().await;
    let dir = TempDir::new("obs");
    let gw = start(&mock.url(), &dir, "");
    let output = mock_output_tokens(&mock).await;

    let prompt = Prompt::new(Protocol::OpenAiChat, "m-openai_chat", TEXT).stream(true);
    assert!(!prompt.body().contains("stream_options"));
    let answer = send(&gw, &prompt, &[]).await;
    assert_eq!(answer.status, 200);
    let sent = mock.requests().pop().unwrap().body_json().unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true, "{sent}");
    let input = last_mock_input_tokens(&mock);
    let body = String::from_utf8(answer.body.to_vec()).unwrap();
    assert!(
        !body.contains("\"usage\""),
        "usage reached the client: {body}"
    );
    assert!(body.contains("[DONE]"), "{body}");
    let r = gw.logged_record(ADMIN_TOKEN, &answer.id).await;
    assert_eq!(r["usage"]["input_tokens"], input, "{r}");
    assert_eq!(r["usage"]["output_tokens"], output, "{r}");
    assert_close(&r["cost_usd"], cost(input, output), "injected usage");

    // `stream_usage: false`: nothing injected, and no usage is recorded as null, never zero.
    let prompt = Prompt::new(Protocol::OpenAiChat, "quiet", TEXT).stream(true);
    let answer = send(&gw, &prompt, &[]).await;
    assert_eq!(answer.status, 200);
    let sent = mock.requests().pop().unwrap().body_json().unwrap();
    assert!(sent.get("stream_options").is_none(), "{sent}");
    let r = gw.logged_record(ADMIN_TOKEN, &answer.id).await;
    assert_eq!(r["backend"], "quiet", "{r}");
    assert!(r["usage"].is_null(), "{r}");
    assert!(r["cost_usd"].is_null(), "{r}");
    assert_eq!(r["finish_reason"], "stop", "{r}");
}

#[tokio::test]
async fn errors_are_recorded_and_carry_the_request_id() {
    let mock = mock().await;
    let dir = TempDir::new("obs");
    let gw = start(&mock.url(), &dir, "");
    for protocol in Protocol::CHAT_PROTOCOLS {
        let what = format!("{protocol}");
        let unknown = Prompt::new(protocol, "no-such-model", TEXT);
        let answer = send(&gw, &unknown, &[]).await;
        assert_eq!(answer.status, 404, "{what}");
        let r = gw.logged_record(ADMIN_TOKEN, &answer.id).await;
        assert_eq!(r["status"], 404, "{what}: {r}");
        assert_eq!(r["client_protocol"], protocol.config_name(), "{what}: {r}");
        assert_eq!(r["model"], "no-such-model", "{what}: {r}");
        assert!(
            r["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {r}"
        );
        assert!(r["usage"].is_null(), "{what}: {r}");

        for stream in [false, true] {
            let what = format!("{protocol} stream={stream}");
            let failing = Prompt::new(
                protocol,
                model_on(protocol),
                format!("{TEXT} [mock:status=500]"),
            )
            .stream(stream);
            let answer = send(&gw, &failing, &[]).await;
            assert!(answer.status >= 500, "{what}: {}", answer.status);
            let r = gw.logged_record(ADMIN_TOKEN, &answer.id).await;
            assert_eq!(r["status"], answer.status, "{what}: {r}");
            assert!(
                r["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{what}: {r}"
            );
            assert_eq!(r["backend"], backend(protocol), "{what}: {r}");
            let attempts = r["attempts"].as_array().expect("attempts");
            assert_eq!(attempts.len(), 1, "{what}: {r}");
            assert_eq!(attempts[0]["status"], 500, "{what}: {r}");
            assert!(r["usage"].is_null(), "{what}: {r}");
            assert!(r["cost_usd"].is_null(), "{what}: {r}");
        }
    }
}

/// Asserts `body` is the admin API's error shape and returns its message.
fn admin_error(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.message: {v}"))
        .to_owned()
}

#[tokio::test]
async fn the_admin_listener_needs_a_token_and_names_bad_queries() {
    let mock = mock().await;
    let dir = TempDir::new("obs");
    let gw = start(&mock.url(), &dir, "");
    for path in ["/api/v1/logs", "/api/v1/stats", "/metrics"] {
        let (status, body) = gw.admin("GET", path).send().await.status_and_body();
        assert_eq!(status, 401, "{path} without a token: {body}");
        assert!(!admin_error(&body).is_empty());
        let (status, body) = gw
            .admin("GET", path)
            .token("not-the-token")
            .send()
            .await
            .status_and_body();
        assert_eq!(status, 401, "{path} with a wrong token: {body}");
        assert!(!admin_error(&body).is_empty());
        let (status, body) = gw.admin_get(path, ADMIN_TOKEN).await.status_and_body();
        assert_eq!(status, 200, "{path} with the token: {body}");
    }
    let (status, body) = gw
        .admin_get("/api/v1/logs?limit=abc", ADMIN_TOKEN)
        .await
        .status_and_body();
    assert_eq!(status, 400, "{body}");
    assert!(admin_error(&body).contains("limit"), "{body}");
    let (status, body) = gw
        .admin_get("/api/v1/stats?bucket=week", ADMIN_TOKEN)
        .await
        .status_and_body();
    assert_eq!(status, 400, "{body}");
    let message = admin_error(&body);
    assert!(
        message.contains("week") && message.contains("bucket"),
        "{body}"
    );
    let (status, body) = gw
        .admin_get("/api/v1/logs/no-such-id", ADMIN_TOKEN)
        .await
        .status_and_body();
    assert_eq!(status, 404, "{body}");
    assert!(!admin_error(&body).is_empty());
    // The admin API is not served on the proxy listener.
    let resp = client()
        .get(format!("{}/api/v1/logs", gw.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    drop(gw);

    // `metrics_without_token` opens `/metrics` only.
    let open = TempDir::new("obs");
    let yaml =
        obs_config(&mock.url(), "").replace("tokens: [", "metrics_without_token: true, tokens: [");
    let gw = Gateway::start_with(&yaml, &["--storage", &open.sqlite_url()]);
    let (status, body) = gw.admin("GET", "/metrics").send().await.status_and_body();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("octollm_requests_total"), "{body}");
    let (status, _) = gw
        .admin("GET", "/api/v1/logs")
        .send()
        .await
        .status_and_body();
    assert_eq!(status, 401);
    drop(gw);

    // A non-loopback admin listener without configured tokens is refused at startup.
    let yaml = obs_config(&mock.url(), "").replace(
        &format!("admin: {{listen: \"127.0.0.1:0\", tokens: [\"{ADMIN_TOKEN}\"]}}"),
        "admin: {listen: \"0.0.0.0:0\"}",
    );
    assert!(yaml.contains("0.0.0.0:0"));
    let stderr = start_fails(&yaml);
    assert!(stderr.contains("admin.listen"), "{stderr}");
}

/// Sends `n` requests of each `(protocol, model, stream)` and returns their ids, with the records
/// written.
async fn send_mix(gw: &Gateway, mix: &[(Protocol, &str, bool, usize)]) -> Vec<Value> {
    let mut records = Vec::new();
    for &(protocol, model, stream, n) in mix {
        for _ in 0..n {
            let answer = send(gw, &Prompt::new(protocol, model, TEXT).stream(stream), &[]).await;
            records.push(gw.logged_record(ADMIN_TOKEN, &answer.id).await);
        }
    }
    records
}

/// The value of the sample of `metric` whose labels include `labels`, summed over the others.
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{metric} is not a counter"),
        })
        .sum()
}

/// Sums a token field of `records` for `model`.
fn tokens(records: &[Value], model: &str, field: &str) -> u64 {
    records
        .iter()
        .filter(|r| r["model"] == model)
        .map(|r| r["usage"][field].as_u64().unwrap_or(0))
        .sum()
}

const MIX: [(Protocol, &str, bool, usize); 4] = [
    (Protocol::OpenAiChat, "m-openai_chat", false, 3),
    (Protocol::Anthropic, "m-anthropic", true, 2),
    (Protocol::Gemini, "m-openai_chat", true, 1),
    (Protocol::OpenAiChat, "never-configured", false, 1),
];

#[tokio::test]
async fn metrics_count_every_request_by_configured_names() {
    let mock = mock().await;
    let dir = TempDir::new("obs");
    let gw = start(&mock.url(), &dir, "");
    let records = send_mix(&gw, &MIX).await;
    let (status, body) = gw
        .admin_get("/metrics", ADMIN_TOKEN)
        .await
        .status_and_body();
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text format");
    let requests = |labels: &[(&str, &str)]| sample(&scrape, "octollm_requests_total", labels);
    assert_eq!(
        requests(&[
            ("model", "m-openai_chat"),
            ("backend", "oa"),
            ("client_protocol", "openai_chat"),
            ("status", "200"),
        ]),
        3.0,
        "{body}"
    );
    assert_eq!(
        requests(&[
            ("model", "m-anthropic"),
            ("backend", "an"),
            ("client_protocol", "anthropic"),
            ("status", "200"),
        ]),
        2.0,
        "{body}"
    );
    assert_eq!(
        requests(&[
            ("model", "m-openai_chat"),
            ("backend", "oa"),
            ("client_protocol", "gemini"),
            ("status", "200"),
        ]),
        1.0,
        "{body}"
    );
    assert_eq!(
        requests(&[("model", "other"), ("status", "404")]),
        1.0,
        "{body}"
    );
    assert_eq!(requests(&[]), 7.0, "{body}");
    assert!(!body.contains("never-configured"), "{body}");
    // Each backend's one key is usable; its breakers (one per key and model used) are closed.
    assert_eq!(
        sample(
            &scrape,
            "octollm_backend_keys",
            &[("backend", "oa"), ("state", "usable")]
        ),
        1.0,
        "{body}"
    );
    assert_eq!(
        sample(
            &scrape,
            "octollm_backend_breakers",
            &[("backend", "oa"), ("state", "open")]
        ),
        0.0,
        "{body}"
    );
    for (model, backend) in [("m-openai_chat", "oa"), ("m-anthropic", "an")] {
        for (ty, field) in [("input", "input_tokens"), ("output", "output_tokens")] {
            assert_eq!(
                sample(
                    &scrape,
                    "octollm_tokens_total",
                    &[("model", model), ("backend", backend), ("type", ty)]
                ),
                tokens(&records, model, field) as f64,
                "{model} {ty}: {body}"
            );
        }
        let cost: f64 = records
            .iter()
            .filter(|r| r["model"] == model)
            .map(|r| r["cost_usd"].as_f64().unwrap())
            .sum();
        let exported = sample(
            &scrape,
            "octollm_cost_usd_total",
            &[("model", model), ("backend", backend)],
        );
        assert!(
            (exported - cost).abs() < 1e-9,
            "{model}: {exported} != {cost}"
        );
    }
}

#[tokio::test]
async fn stats_by_model_total_what_was_sent() {
    let mock = mock().await;
    let dir = TempDir::new("obs");
    let gw = start(&mock.url(), &dir, "");
    let records = send_mix(&gw, &MIX).await;
    let stats = admin_json(&gw, "/api/v1/stats?bucket=minute&group_by=model").await;
    let totals = &stats["totals"];
    assert_eq!(totals["requests"], 7, "{stats}");
    assert_eq!(totals["errors"], 1, "{stats}");
    for field in ["input_tokens", "output_tokens"] {
        let sum: u64 = records
            .iter()
            .map(|r| r["usage"][field].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(totals[field], sum, "{field}: {stats}");
    }
    let cost: f64 = records.iter().filter_map(|r| r["cost_usd"].as_f64()).sum();
    assert_close(&totals["cost_usd"], cost, "total cost");
    // Requests can straddle a minute: sum each group over its buckets.
    let buckets = stats["buckets"].as_array().expect("buckets");
    let group = |model: &str, field: &str| -> u64 {
        buckets
            .iter()
            .filter(|b| b["group"] == model)
            .map(|b| b[field].as_u64().unwrap())
            .sum()
    };
    for (model, n) in [
        ("m-openai_chat", 4),
        ("m-anthropic", 2),
        ("never-configured", 1),
    ] {
        assert_eq!(group(model, "requests"), n, "{model}: {stats}");
        for field in ["input_tokens", "output_tokens"] {
            assert_eq!(
                group(model, field),
                tokens(&records, model, field),
                "{model} {field}: {stats}"
            );
        }
    }
}

/// Every file in `dir` (the database, its WAL and shared-memory files), read whole.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[tokio::test]
async fn a_sigterm_restart_loses_no_record() {
    let mock = mock().await;
    let dir = TempDir::new("obs");
    let gw = start(&mock.url(), &dir, "");
    let mut ids = Vec::new();
    for (i, protocol) in Protocol::CHAT_PROTOCOLS.into_iter().enumerate() {
        for stream in [false, true] {
            let model = model_on(Protocol::CHAT_PROTOCOLS[(i + usize::from(stream)) % 4]);
            let answer = send(&gw, &Prompt::new(protocol, model, TEXT).stream(stream), &[]).await;
            assert_eq!(answer.status, 200);
            ids.push(answer.id);
        }
    }
    // Straight to SIGTERM: nothing waits for the writer.
    assert!(
        gw.terminate(),
        "the gateway did not exit cleanly on SIGTERM"
    );
    let gw = start(&mock.url(), &dir, "");
    for id in &ids {
        let (status, body) = gw
            .admin_get(&format!("/api/v1/logs/{id}"), ADMIN_TOKEN)
            .await
            .status_and_body();
        assert_eq!(status, 200, "record {id} lost over the restart: {body}");
    }
    let page = admin_json(&gw, "/api/v1/logs?limit=100").await;
    let data = page["data"].as_array().expect("data");
    assert_eq!(data.len(), ids.len(), "{page}");
    assert!(page["next"].is_null(), "{page}");
}

#[tokio::test]
async fn no_secret_reaches_the_log_the_metrics_or_the_database() {
    const GATEWAY_KEY: &str = "gw-secret-key-4242-abcdef";
    const WRONG_KEY: &str = "gw-wrong-key-9999-zzzzzz";
    let mock = mock().await;
    let dir = TempDir::new("obs");
    let orgs = format!("orgs:\n  acme:\n    api_keys:\n      ci: \"{GATEWAY_KEY}\"\n");
    let gw = start(&mock.url(), &dir, &orgs);
    let auth = format!("Bearer {GATEWAY_KEY}");
    let mut ids = Vec::new();
    for protocol in Protocol::CHAT_PROTOCOLS {
        for (model, text) in [
            (model_on(protocol), TEXT.to_owned()),
            (model_on(other(protocol)), TEXT.to_owned()),
            (model_on(protocol), format!("{TEXT} [mock:status=500]")),
            ("no-such-model".to_owned(), TEXT.to_owned()),
        ] {
            for stream in [false, true] {
                let prompt = Prompt::new(protocol, &model, &text).stream(stream);
                let answer = send(&gw, &prompt, &[("authorization", &auth)]).await;
                ids.push(answer.id);
            }
        }
        let wrong = format!("Bearer {WRONG_KEY}");
        let prompt = Prompt::new(protocol, model_on(protocol), TEXT);
        let answer = send(&gw, &prompt, &[("authorization", &wrong)]).await;
        assert_eq!(answer.status, 401);
        ids.push(answer.id);
    }
    let secrets = [UPSTREAM_KEY, GATEWAY_KEY, WRONG_KEY, ADMIN_TOKEN];
    let mut seen = String::new();
    for id in &ids {
        let r = gw.logged_record(ADMIN_TOKEN, id).await;
        if r["status"] == 200 {
            assert_eq!(r["org"], "acme", "{r}");
            assert_eq!(r["user"], "ci", "{r}");
        }
        seen.push_str(&r.to_string());
    }
    seen.push_str(&admin_json(&gw, "/api/v1/logs?limit=1000").await.to_string());
    seen.push_str(
        &admin_json(&gw, "/api/v1/stats?group_by=user")
            .await
            .to_string(),
    );
    let (_, metrics) = gw
        .admin_get("/metrics", ADMIN_TOKEN)
        .await
        .status_and_body();
    seen.push_str(&metrics);
    for secret in secrets {
        assert!(!seen.contains(secret), "{secret} leaked: {seen}");
    }
    assert!(gw.terminate());
    let files = files(dir.path());
    assert!(
        files
            .iter()
            .any(|(p, b)| p.ends_with("log.db") && !b.is_empty()),
        "no database file in {}",
        dir.path().display()
    );
    for (path, bytes) in &files {
        for secret in secrets {
            assert!(
                memchr_find(bytes, secret.as_bytes()).is_none(),
                "{secret} is in {}",
                path.display()
            );
        }
    }
    // The search itself works: the database does hold what was logged.
    let db = &files.iter().find(|(p, _)| p.ends_with("log.db")).unwrap().1;
    assert!(memchr_find(db, ids[0].as_bytes()).is_some());
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
