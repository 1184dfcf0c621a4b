//! The engines as `octollm-server` wires them from YAML, end to end through the real binary and
//! the mock upstream: access control, deny / route / rewrite rules, backend rewrites, every
//! balancing strategy's distribution, sticky sessions, failover while a backend is down, key
//! rotation on 429, the circuit breaker, the retry deadline and `max_wait`, the concurrency limit,
//! and startup errors for bad rules.
//!
//! Readiness comes from the gateway's stdout line, the mock's `wait_for` and channels; the only
//! sleep waits for a breaker cooldown, which is the thing under test. Timing assertions are
//! generous bounds.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use octo_core::{ArcEngine, Body, Protocol, Request, Response, engine_fn};
use octo_mock::{MockServer, RecordedRequest};
use octo_test::{
    Gateway, PROTOCOLS, Reply, Upstream, body_for, client, closed_port_url, mock, path_for,
    start_fails,
};
use serde_json::{Value, json};

const ALL: &str = "[openai_chat, openai_responses, anthropic, gemini]";

/// How a client presents its gateway key.
#[derive(Clone, Copy, Debug)]
enum Cred<'a> {
    None,
    Bearer(&'a str),
    XApiKey(&'a str),
    Goog(&'a str),
    Query(&'a str),
}

/// One request from a client of `protocol` for `model`.
struct Call<'a> {
    protocol: Protocol,
    model: &'a str,
    body: Option<String>,
    text: &'a str,
    stream: bool,
    cred: Cred<'a>,
    headers: Vec<(&'a str, &'a str)>,
}

fn call(protocol: Protocol, model: &str) -> Call<'_> {
    Call {
        protocol,
        model,
        body: None,
        text: "hi",
        stream: false,
        cred: Cred::None,
        headers: Vec::new(),
    }
}

impl<'a> Call<'a> {
    fn text(mut self, text: &'a str) -> Self {
        self.text = text;
        self
    }
    fn stream(mut self) -> Self {
        self.stream = true;
        self
    }
    fn cred(mut self, cred: Cred<'a>) -> Self {
        self.cred = cred;
        self
    }
    fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body.to_string());
        self
    }

    async fn response(self, gw: &Gateway) -> reqwest::Response {
        let mut url = format!(
            "{}{}",
            gw.url,
            path_for(self.protocol, self.model, self.stream)
        );
        let body = self
            .body
            .unwrap_or_else(|| body_for(self.protocol, self.model, self.text, self.stream));
        let mut req = client()
            .post(&url)
            .header("content-type", "application/json");
        match self.cred {
            Cred::None => {}
            Cred::Bearer(k) => req = req.header("authorization", format!("Bearer {k}")),
            Cred::XApiKey(k) => req = req.header("x-api-key", k),
            Cred::Goog(k) => req = req.header("x-goog-api-key", k),
            Cred::Query(k) => {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str("key=");
                url.push_str(k);
                req = client()
                    .post(&url)
                    .header("content-type", "application/json");
            }
        }
        for (k, v) in &self.headers {
            req = req.header(*k, *v);
        }
        req.body(body).send().await.unwrap()
    }

    /// Sends a non-stream request and parses the JSON answer.
    async fn send(self, gw: &Gateway) -> Reply {
        Reply::read(self.response(gw).await).await
    }

    /// Sends a non-stream request and asserts the answer's status.
    async fn expect(self, gw: &Gateway, status: u16) -> Reply {
        let what = format!(
            "{} {} {:?} {:?}",
            self.protocol, self.model, self.cred, self.headers
        );
        let r = self.send(gw).await;
        assert_eq!(r.status, status, "{what}: {}", r.json);
        r
    }

    /// Sends a non-stream request, asserts that it fails with `status` in the client protocol's
    /// error shape (see [`error_message`]) and returns the error message.
    async fn expect_error(self, gw: &Gateway, status: u16, kind: &str) -> String {
        let protocol = self.protocol;
        let r = self.expect(gw, status).await;
        error_message(protocol, status, kind, &r.json)
    }

    /// Sends a stream request and reads it to the end.
    async fn send_stream(self, gw: &Gateway) -> (u16, String) {
        let resp = self.stream().response(gw).await;
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }
}

/// Asserts `v` is `protocol`'s error shape for `status` with the given OpenAI/Anthropic error
/// type (Gemini: status name), and returns the message.
fn error_message(protocol: Protocol, status: u16, kind: &str, v: &Value) -> String {
    match protocol {
        Protocol::Anthropic => {
            assert_eq!(v["type"], "error", "{v}");
            assert_eq!(v["error"]["type"], kind, "{v}");
        }
        Protocol::Gemini => {
            assert_eq!(v["error"]["code"], status, "{v}");
            let expected = match status {
                400 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                429 => "RESOURCE_EXHAUSTED",
                _ => "",
            };
            if !expected.is_empty() {
                assert_eq!(v["error"]["status"], expected, "{v}");
            }
        }
        _ => {
            assert_eq!(v["error"]["type"], kind, "{v}");
            assert!(v["error"].get("code").is_some(), "{v}");
        }
    }
    v["error"]["message"].as_str().unwrap().to_owned()
}

/// The model name an upstream request asked for (Gemini's is in the path).
fn upstream_model(r: &RecordedRequest) -> String {
    if let Some(rest) = r.path_and_query.split("/models/").nth(1) {
        return rest.split(':').next().unwrap().to_owned();
    }
    r.body_json().unwrap()["model"].as_str().unwrap().to_owned()
}

fn models_seen(mock: &MockServer) -> Vec<String> {
    mock.requests().iter().map(upstream_model).collect()
}

fn count(seen: &[String], model: &str) -> usize {
    seen.iter().filter(|m| *m == model).count()
}

/// A config with one backend `m` on `mock` speaking every protocol, and the YAML `models`.
fn one_backend(mock: &str, models: &str) -> String {
    format!(
        r#"
listen: "127.0.0.1:0"
backends:
  m: {{base_url: "{mock}", protocol: {ALL}}}
models:
{models}
"#
    )
}

// ---------------------------------------------------------------------------------------------
// Access control

fn access_config(mock: &str) -> String {
    let bob = octo_engines::auth::hash_key("sk-acme-bob");
    format!(
        r#"
listen: "127.0.0.1:0"
backends:
  all: {{base_url: "{mock}", protocol: {ALL}, api_key: "sk-upstream"}}
models:
  open: {{targets: [{{backend: all, model: up-open}}]}}
  staff: {{access: internal, targets: [{{backend: all, model: up-staff}}]}}
  secret: {{access: private, targets: [{{backend: all, model: up-secret}}]}}
orgs:
  acme:
    api_keys:
      alice: "sk-acme-alice"
      bob: "{bob}"
      old: {{key: "sk-acme-old", expires: "2001-01-01T00:00:00Z"}}
      later: {{key: "sk-acme-later", expires: "2999-01-01T00:00:00Z"}}
      narrow: {{key: "sk-acme-narrow", models: [open]}}
    models:
      secret: null
  beta:
    api_keys: {{eve: "sk-beta-eve"}}
"#
    )
}

#[tokio::test]
async fn access_control_with_every_key_header_in_every_protocol() {
    let mock = mock().await;
    let gw = Gateway::start(&access_config(&mock.url()));
    let mut served = 0;
    for (protocol, _) in PROTOCOLS {
        // Public: anyone, no key needed.
        call(protocol, "open").expect(&gw, 200).await;
        // Internal and private: 401 without a key, in the client's shape.
        for model in ["staff", "secret"] {
            let msg = call(protocol, model)
                .expect_error(&gw, 401, "authentication_error")
                .await;
            assert!(msg.contains("requires an API key"), "{msg}");
        }
        for cred in [
            // A valid key in each of the four places.
            Cred::Bearer("sk-acme-alice"),
            Cred::XApiKey("sk-acme-alice"),
            Cred::Goog("sk-acme-alice"),
            Cred::Query("sk-acme-alice"),
            // A key configured as `sha256:<hex>`, and one that expires in the future.
            Cred::Bearer("sk-acme-bob"),
            Cred::XApiKey("sk-acme-later"),
        ] {
            call(protocol, "staff").cred(cred).expect(&gw, 200).await;
        }
        // Private: the org lists the model (a null entry) → allowed; another org → 403.
        let (alice, eve) = (Cred::Bearer("sk-acme-alice"), Cred::Bearer("sk-beta-eve"));
        call(protocol, "secret").cred(alice).expect(&gw, 200).await;
        let msg = call(protocol, "secret")
            .cred(eve)
            .expect_error(&gw, 403, "permission_error")
            .await;
        assert!(msg.contains("org `beta`"), "{msg}");
        call(protocol, "staff").cred(eve).expect(&gw, 200).await;
        // A wrong or expired key is a 401 everywhere, public models included: never anonymous.
        for (cred, model, needle) in [
            (Cred::Bearer("sk-acme-wrong"), "open", "invalid API key"),
            (Cred::XApiKey("sk-acme-wrong"), "staff", "invalid API key"),
            (Cred::Query("sk-acme-wrong"), "open", "invalid API key"),
            (Cred::Bearer("sk-acme-old"), "open", "expired"),
            (Cred::Goog("sk-acme-old"), "staff", "expired"),
        ] {
            let msg = call(protocol, model)
                .cred(cred)
                .expect_error(&gw, 401, "authentication_error")
                .await;
            assert!(msg.contains(needle), "{msg}");
        }
        // Per-key allowed models: `narrow` may use `open` only.
        let narrow = Cred::Bearer("sk-acme-narrow");
        call(protocol, "open").cred(narrow).expect(&gw, 200).await;
        call(protocol, "staff")
            .cred(narrow)
            .expect_error(&gw, 403, "permission_error")
            .await;
        // An unknown model is a 404 for a valid key.
        call(protocol, "ghost").cred(alice).expect(&gw, 404).await;
        served += 10;
    }
    // Refused requests never reached the upstream, and no gateway key ever did.
    assert_eq!(mock.stats().requests, served);
    for r in mock.requests() {
        assert!(!r.path_and_query.contains("sk-"), "{}", r.path_and_query);
        assert!(!String::from_utf8_lossy(&r.body).contains("sk-"));
        for (name, value) in &r.headers {
            let value = value.to_str().unwrap_or("");
            assert!(
                !value.contains("sk-acme") && !value.contains("sk-beta"),
                "{name} carried a gateway key to the upstream"
            );
        }
        let upstream_key = ["authorization", "x-api-key", "x-goog-api-key"]
            .iter()
            .find_map(|h| r.header(h))
            .unwrap();
        assert!(upstream_key.ends_with("sk-upstream"), "{upstream_key}");
    }
}

#[test]
fn a_non_public_model_without_orgs_is_a_startup_error() {
    let err = start_fails(
        r#"
backends:
  all: {base_url: "http://127.0.0.1:9", protocol: openai_chat}
models:
  open: {targets: [{backend: all}]}
  staff: {access: internal, targets: [{backend: all}]}
  secret: {access: private, targets: [{backend: all}]}
"#,
    );
    assert!(err.contains("models.staff.access"), "{err}");
    assert!(err.contains("models.secret.access"), "{err}");
    assert!(!err.contains("models.open"), "{err}");
    assert!(err.contains("orgs"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Rules

#[tokio::test]
async fn deny_rules_answer_with_their_status_and_message_in_each_protocol() {
    let mock = mock().await;
    let gw = Gateway::start(&one_backend(
        &mock.url(),
        r#"
  guarded:
    targets: [{backend: m, model: up-guarded}]
    rules:
      - name: no-stream
        match: "stream == true"
        deny: {status: 403, message: "streaming is not allowed"}
      - name: blocked-team
        match: 'header.x_team == "blocked"'
        deny: {message: "team blocked is suspended"}
      - name: too-long
        match: "promptTextLen > 40"
        deny: {status: 422, message: "prompt too long"}
"#,
    ));
    for (protocol, _) in PROTOCOLS {
        call(protocol, "guarded").expect(&gw, 200).await;

        let msg = call(protocol, "guarded")
            .stream()
            .expect_error(&gw, 403, "permission_error")
            .await;
        assert_eq!(msg, "streaming is not allowed");

        // No status given: 400.
        let msg = call(protocol, "guarded")
            .header("x-team", "blocked")
            .expect_error(&gw, 400, "invalid_request_error")
            .await;
        assert_eq!(msg, "team blocked is suspended");

        let msg = call(protocol, "guarded")
            .text("a prompt that is much longer than forty characters")
            .expect_error(&gw, 422, "invalid_request_error")
            .await;
        assert_eq!(msg, "prompt too long");
    }
    // Denied requests never reached the upstream.
    assert_eq!(mock.stats().requests, 4);
}

#[tokio::test]
async fn route_rules_send_requests_to_another_backend_and_model() {
    let mock = mock().await;
    let gw = Gateway::start(&format!(
        r#"
listen: "127.0.0.1:0"
backends:
  main: {{base_url: "{url}", protocol: {ALL}, api_key: "sk-main"}}
  big: {{base_url: "{url}", protocol: {ALL}, api_key: "sk-big"}}
models:
  smart:
    targets: [{{backend: main, model: up-small}}]
    rules:
      - name: long-prompts
        match: "promptTextLen > 20"
        route: [{{backend: big, model: up-large}}]
      - name: gold
        match: 'header.x_tier == "gold"'
        route: [{{backend: big, model: up-gold, weight: 1}}]
        set_headers: {{x-tier-seen: gold}}
      - name: cold
        match: 'starts_with(header.x_tier, "cold")'
        rewrite: {{set_keys: {{temperature: 0}}, remove_keys: [user]}}
orgs:
  acme:
    api_keys: {{alice: "sk-acme-alice"}}
    models:
      smart:
        rules:
          - name: acme-goes-big
            match: 'auth.org == "acme" && auth.user == "alice"'
            route: [{{backend: big, model: up-acme}}]
"#,
        url = mock.url()
    ));
    for (protocol, _) in PROTOCOLS {
        mock.reset();
        let long = "this prompt is longer than twenty characters";
        call(protocol, "smart").expect(&gw, 200).await;
        call(protocol, "smart").text(long).expect(&gw, 200).await;
        for tier in ["gold", "cold-storage"] {
            call(protocol, "smart")
                .header("x-tier", tier)
                .expect(&gw, 200)
                .await;
        }
        // Org rules come first: alice's long prompt still goes where acme's rule says.
        call(protocol, "smart")
            .cred(Cred::Bearer("sk-acme-alice"))
            .text(long)
            .expect(&gw, 200)
            .await;
        let seen = mock.requests();
        let models: Vec<String> = seen.iter().map(upstream_model).collect();
        assert_eq!(
            models,
            ["up-small", "up-large", "up-gold", "up-small", "up-acme"],
            "{protocol}"
        );
        // Routed requests use the routed backend's key; the gold rule's header reached it.
        let key_of = |r: &RecordedRequest| {
            ["authorization", "x-api-key", "x-goog-api-key"]
                .iter()
                .find_map(|h| r.header(h))
                .unwrap()
                .to_owned()
        };
        assert!(key_of(&seen[0]).ends_with("sk-main"));
        assert!(key_of(&seen[1]).ends_with("sk-big"));
        assert_eq!(seen[2].header("x-tier-seen"), Some("gold"));
        assert_eq!(seen[0].header("x-tier-seen"), None);
        assert_eq!(seen[3].body_json().unwrap()["temperature"], 0, "{protocol}");
    }
    // The rewrite rule removes `user` from what the upstream sees.
    mock.reset();
    call(Protocol::OpenAiChat, "smart")
        .header("x-tier", "cold")
        .body(json!({"model": "smart", "user": "u-1", "messages": [{"role": "user", "content": "hi"}]}))
        .expect(&gw, 200)
        .await;
    let body = mock.requests()[0].body_json().unwrap();
    assert_eq!(body.get("user"), None, "{body}");
    assert_eq!(body["temperature"], 0);
}

#[tokio::test]
async fn rules_read_request_features() {
    // Known feature values for this prompt (FNV-1a-32 of model + text; see expr/features.rs): a
    // one-character change in the text changes them, so the rule no longer matches.
    let mock = mock().await;
    let gw = Gateway::start(&one_backend(
        &mock.url(),
        r#"
  glm-4.7:
    targets: [{backend: m}]
    rules:
      - name: reference
        match: 'prefix20 == "c6eec1e7" && suffix20 == "efc888e0" && promptTextLen == 42 && Features.prefix20 == prefix20'
        deny: {status: 409, message: "features match"}
"#,
    ));
    for (protocol, _) in PROTOCOLS {
        let msg = call(protocol, "glm-4.7")
            .text("who are you? I am testing the rule engine.")
            .expect_error(&gw, 409, "invalid_request_error")
            .await;
        assert_eq!(msg, "features match");
        call(protocol, "glm-4.7")
            .text("who are you? I am testing the rule engine!")
            .expect(&gw, 200)
            .await;
    }
}

#[test]
fn the_same_gateway_key_in_two_orgs_is_a_startup_error() {
    let err = start_fails(
        r#"
backends:
  all: {base_url: "http://127.0.0.1:9", protocol: openai_chat}
models:
  m: {targets: [{backend: all}]}
orgs:
  acme: {api_keys: {alice: "sk-shared"}}
  beta: {api_keys: {eve: "sk-shared"}}
"#,
    );
    assert!(err.contains("orgs"), "{err}");
    assert!(err.contains("same key"), "{err}");
    assert!(
        !err.contains("sk-shared"),
        "the error must not print the key: {err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Backend rewrites

#[tokio::test]
async fn backend_rewrites_change_the_request_the_response_and_each_stream_event() {
    let mock = mock().await;
    let gw = Gateway::start(&format!(
        r#"
listen: "127.0.0.1:0"
backends:
  rw:
    base_url: "{}"
    protocol: openai_chat
    request_rewrites:
      remove_keys: [user, metadata.secret, order]
      set_keys:
        order: set
        stream_options.include_usage: true
        temperature: 0.25
        tags.-1: gateway
      set_keys_by_expr:
        order: 'str::from(order) + "-then-expr"'
        max_tokens: "if(max_tokens > 100, 100, max_tokens)"
        prompt_chars: "promptTextLen"
        team: "header.x_team"
    response_rewrites:
      remove_keys: [usage]
      set_keys: {{system_fingerprint: fp-octo}}
      set_keys_by_expr: {{served_model: "model"}}
    stream_chunk_rewrites:
      set_keys: {{system_fingerprint: fp-octo-stream}}
models:
  rw: {{targets: [{{backend: rw, model: up-rw}}]}}
"#,
        mock.url()
    ));
    let r = call(Protocol::OpenAiChat, "rw")
        .header("x-team", "red")
        .body(json!({
            "model": "rw",
            "user": "u-1",
            "order": "client",
            "max_tokens": 4096,
            "metadata": {"secret": "s", "keep": "k"},
            "tags": ["a"],
            "messages": [{"role": "user", "content": "hello there"}],
        }))
        .expect(&gw, 200)
        .await;
    let up = mock.requests()[0].body_json().unwrap();
    assert_eq!(
        up,
        json!({
            "model": "up-rw",
            "max_tokens": 100,
            "metadata": {"keep": "k"},
            "tags": ["a", "gateway"],
            "messages": [{"role": "user", "content": "hello there"}],
            "stream_options": {"include_usage": true},
            "temperature": 0.25,
            // remove, then set, then set by expression (which reads the client's request).
            "order": "client-then-expr",
            "prompt_chars": 11,
            "team": "red",
        })
    );
    // The response rewrite: usage removed, fields set; expressions read the request as the
    // backend received it (`model` is the upstream name).
    assert_eq!(r.json.get("usage"), None, "{}", r.json);
    assert_eq!(r.json["system_fingerprint"], "fp-octo");
    assert_eq!(r.json["served_model"], "up-rw");
    assert_eq!(r.json["object"], "chat.completion");

    // A stream: each JSON event is rewritten; `[DONE]` passes untouched. An expression that cannot
    // be evaluated (`max_tokens` absent) skips its key.
    let (status, text) = call(Protocol::OpenAiChat, "rw")
        .text("[mock:events=3] stream please")
        .send_stream(&gw)
        .await;
    assert_eq!(status, 200, "{text}");
    let events: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert!(events.len() >= 4, "{text}");
    assert_eq!(*events.last().unwrap(), "[DONE]");
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["system_fingerprint"], "fp-octo-stream", "{e}");
    }
    let up = mock.requests()[1].body_json().unwrap();
    assert_eq!(up.get("max_tokens"), None, "{up}");
    assert_eq!(up["stream"], true);
    assert_eq!(
        up["team"],
        Value::Null,
        "a missing header reads as empty: {up}"
    );
}

// ---------------------------------------------------------------------------------------------
// Balancing

async fn send_n(gw: &Gateway, model: &str, n: usize, headers: &[(&str, &str)]) {
    for _ in 0..n {
        let mut c = call(Protocol::OpenAiChat, model);
        for (k, v) in headers {
            c = c.header(k, v);
        }
        c.expect(gw, 200).await;
    }
}

#[tokio::test]
async fn weighted_round_robin_follows_nginx_smooth_sequence() {
    let mock = mock().await;
    let gw = Gateway::start(&one_backend(
        &mock.url(),
        r#"
  wrr:
    strategy: weighted_round_robin
    targets:
      - {backend: m, model: a, weight: 5}
      - {backend: m, model: b, weight: 1}
      - {backend: m, model: c, weight: 1}
  drained:
    targets:
      - {backend: m, model: on, weight: 1}
      - {backend: m, model: off, weight: 0}
"#,
    ));
    send_n(&gw, "wrr", 14, &[]).await;
    assert_eq!(
        models_seen(&mock),
        [
            "a", "a", "b", "a", "c", "a", "a", "a", "a", "b", "a", "c", "a", "a"
        ]
    );
    mock.reset();
    send_n(&gw, "drained", 6, &[]).await;
    assert_eq!(models_seen(&mock), ["on"; 6]);
}

#[tokio::test]
async fn round_robin_ignores_weights_with_a_counter_per_model() {
    let mock = mock().await;
    let gw = Gateway::start(&one_backend(
        &mock.url(),
        r#"
  rr:
    strategy: round_robin
    targets:
      - {backend: m, model: a, weight: 5}
      - {backend: m, model: b, weight: 1}
      - {backend: m, model: c, weight: 1}
  x:
    strategy: round_robin
    targets: [{backend: m, model: x1}, {backend: m, model: x2}]
  y:
    strategy: round_robin
    targets: [{backend: m, model: y1}, {backend: m, model: y2}]
"#,
    ));
    send_n(&gw, "rr", 9, &[]).await;
    let seen = models_seen(&mock);
    for m in ["a", "b", "c"] {
        assert_eq!(count(&seen, m), 3, "{seen:?}");
    }
    for i in 3..9 {
        assert_eq!(seen[i], seen[i - 3], "{seen:?}");
    }
    // Interleaved models do not share a counter: each alternates over its own targets.
    mock.reset();
    for _ in 0..4 {
        send_n(&gw, "x", 1, &[]).await;
        send_n(&gw, "y", 1, &[]).await;
    }
    let seen = models_seen(&mock);
    let xs: Vec<&String> = seen.iter().filter(|m| m.starts_with('x')).collect();
    let ys: Vec<&String> = seen.iter().filter(|m| m.starts_with('y')).collect();
    for list in [xs, ys] {
        assert_eq!(list.len(), 4);
        assert!(list.windows(2).all(|w| w[0] != w[1]), "{seen:?}");
    }
}

#[tokio::test]
async fn random_is_proportional_to_weight() {
    let (a, b) = (mock().await, mock().await);
    let gw = Gateway::start(&format!(
        r#"
listen: "127.0.0.1:0"
backends:
  a: {{base_url: "{}", protocol: openai_chat}}
  b: {{base_url: "{}", protocol: openai_chat}}
models:
  rnd:
    strategy: random
    targets: [{{backend: a, weight: 1}}, {{backend: b, weight: 3}}]
"#,
        a.url(),
        b.url()
    ));
    const N: u64 = 400;
    let statuses: Vec<u16> = futures::stream::iter(0..N)
        .map(|_| async { call(Protocol::OpenAiChat, "rnd").send(&gw).await.status })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let (na, nb) = (a.stats().requests, b.stats().requests);
    assert_eq!(na + nb, N);
    // Expected 100 / 300; the standard deviation is about 8.7, so ±60 is about 7 sigma.
    assert!((40..=160).contains(&na), "a served {na}, b served {nb}");
}

#[tokio::test]
async fn failover_uses_priority_zero_while_it_is_healthy() {
    let mock = mock().await;
    let gw = Gateway::start(&format!(
        r#"
listen: "127.0.0.1:0"
backends:
  m: {{base_url: "{url}", protocol: {ALL}}}
  sick:
    base_url: "{url}"
    protocol: {ALL}
    headers: {{x-mock-status: "503"}}
    circuit_breaker: {{failures: 2, cooldown: 1m}}
models:
  fo:
    strategy: failover
    targets:
      - {{backend: m, model: backup, priority: 1}}
      - {{backend: m, model: primary, priority: 0}}
      - {{backend: m, model: last, priority: 2}}
  fo-sick:
    strategy: failover
    targets:
      - {{backend: sick, model: primary, priority: 0}}
      - {{backend: m, model: backup, priority: 1}}
"#,
        url = mock.url()
    ));
    send_n(&gw, "fo", 10, &[]).await;
    assert_eq!(models_seen(&mock), ["primary"; 10]);
    // Priority 0 answers 503: every request is still served, by priority 1; after two failures
    // the breaker keeps requests off the sick backend.
    mock.reset();
    send_n(&gw, "fo-sick", 6, &[]).await;
    assert_eq!(
        models_seen(&mock),
        [
            "primary", "backup", "primary", "backup", "backup", "backup", "backup", "backup"
        ]
    );
}

#[tokio::test]
async fn lowest_latency_prefers_the_fast_backend() {
    let mock = mock().await;
    let gw = Gateway::start(&format!(
        r#"
listen: "127.0.0.1:0"
backends:
  fast: {{base_url: "{url}", protocol: openai_chat}}
  slow: {{base_url: "{url}", protocol: openai_chat, headers: {{x-mock-latency-ms: "250"}}}}
models:
  ll:
    strategy: lowest_latency
    targets: [{{backend: slow, model: s}}, {{backend: fast, model: f}}]
"#,
        url = mock.url()
    ));
    send_n(&gw, "ll", 30, &[]).await;
    let seen = models_seen(&mock);
    // Each is measured once; after that the slow one only wins if the fast one had an average
    // above 250 ms.
    assert!(count(&seen, "s") >= 1, "{seen:?}");
    assert!(count(&seen, "s") <= 5, "{seen:?}");
    assert!(count(&seen, "f") >= 25, "{seen:?}");
}

#[tokio::test]
async fn sticky_sessions_keep_a_session_or_a_key_on_one_target() {
    let mock = mock().await;
    let gw = Gateway::start(&format!(
        r#"
listen: "127.0.0.1:0"
backends:
  m: {{base_url: "{}", protocol: {ALL}}}
models:
  st:
    strategy: round_robin
    sticky: 5m
    targets: [{{backend: m, model: a}}, {{backend: m, model: b}}]
orgs:
  acme:
    api_keys: {{alice: "sk-acme-alice", bob: "sk-acme-bob"}}
"#,
        mock.url()
    ));
    // Without a session, round robin alternates.
    send_n(&gw, "st", 4, &[]).await;
    let seen = models_seen(&mock);
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "{seen:?}");
    // A session id keeps its target while other traffic moves the round robin on (two requests
    // in between, so that without stickiness every sticky request would land elsewhere).
    for session in ["s1", "s2", "s3"] {
        mock.reset();
        for _ in 0..3 {
            send_n(&gw, "st", 1, &[("x-session-id", session)]).await;
            send_n(&gw, "st", 2, &[]).await;
        }
        let seen = models_seen(&mock);
        let sticky: Vec<&String> = seen.iter().step_by(3).collect();
        assert!(
            sticky.iter().all(|m| *m == sticky[0]),
            "{session}: {seen:?}"
        );
    }
    // An authenticated client sticks by its key, without a session header; within a key, each
    // session is its own.
    for (key, session) in [
        ("sk-acme-alice", None),
        ("sk-acme-bob", None),
        ("sk-acme-alice", Some("conversation-1")),
    ] {
        mock.reset();
        for _ in 0..3 {
            let mut c = call(Protocol::OpenAiChat, "st").cred(Cred::Bearer(key));
            if let Some(session) = session {
                c = c.header("x-session-id", session);
            }
            c.expect(&gw, 200).await;
            send_n(&gw, "st", 2, &[]).await;
        }
        let seen = models_seen(&mock);
        let sticky: Vec<&String> = seen.iter().step_by(3).collect();
        assert!(sticky.iter().all(|m| *m == sticky[0]), "{key}: {seen:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Failures

#[tokio::test]
async fn zero_client_errors_while_one_of_two_backends_is_down() {
    let mock = mock().await;
    let gw = Gateway::start(&format!(
        r#"
listen: "127.0.0.1:0"
backends:
  up: {{base_url: "{url}", protocol: {ALL}}}
  down:
    base_url: "{down}"
    protocol: {ALL}
    timeouts: {{connect: 1s}}
    circuit_breaker: {{failures: 3, cooldown: 1m}}
  sick:
    base_url: "{url}"
    protocol: {ALL}
    headers: {{x-mock-status: "503"}}
    circuit_breaker: {{failures: 2, cooldown: 1m}}
models:
  ha:
    targets: [{{backend: down, model: gone}}, {{backend: up, model: up-ha}}]
  ha-503:
    targets: [{{backend: sick, model: sick}}, {{backend: up, model: up-ha}}]
"#,
        url = mock.url(),
        down = closed_port_url()
    ));
    for model in ["ha", "ha-503"] {
        mock.reset();
        for i in 0..24 {
            let (protocol, _) = PROTOCOLS[i % 4];
            if i % 3 == 2 {
                let (status, text) = call(protocol, model).send_stream(&gw).await;
                assert_eq!(status, 200, "{model} {protocol} stream: {text}");
                assert!(text.contains("octo-mock"), "{text}");
                assert!(
                    !text.contains("event: error") && !text.contains(r#""error":{"#),
                    "{model} {protocol}: {text}"
                );
            } else {
                call(protocol, model).expect(&gw, 200).await;
            }
        }
        let seen = models_seen(&mock);
        assert_eq!(count(&seen, "up-ha"), 24, "{model}: {seen:?}");
        if model == "ha-503" {
            // Two 503s opened the sick backend's breaker; after that it was skipped.
            assert_eq!(count(&seen, "sick"), 2, "{seen:?}");
        }
    }
}

#[tokio::test]
async fn a_model_over_backends_of_different_protocols_serves_every_client() {
    let mock = mock().await;
    let gw = Gateway::start(&format!(
        r#"
listen: "127.0.0.1:0"
backends:
  oa: {{base_url: "{url}", protocol: openai_chat}}
  an: {{base_url: "{url}", protocol: anthropic}}
models:
  mixed:
    targets: [{{backend: oa, model: up-oa}}, {{backend: an, model: up-an}}]
  claude-only:
    targets: [{{backend: an, model: up-an}}]
    retry: {{max_attempts: 1}}
"#,
        url = mock.url()
    ));
    for _ in 0..3 {
        for protocol in [Protocol::OpenAiChat, Protocol::Anthropic] {
            call(protocol, "mixed").expect(&gw, 200).await;
        }
    }
    let seen = models_seen(&mock);
    assert_eq!(count(&seen, "up-oa"), 3, "{seen:?}");
    assert_eq!(count(&seen, "up-an"), 3, "{seen:?}");
    // No backend speaks the client's protocol: the request is converted to the backend's.
    mock.reset();
    let r = call(Protocol::Gemini, "claude-only").expect(&gw, 200).await;
    assert!(
        r.json["candidates"][0]["content"]["parts"][0]["text"].is_string(),
        "{}",
        r.json
    );
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, "/v1/messages");
}

/// An upstream that records the key of each request and answers 429 (`retry-after: 30`) to key
/// `k1`, a chat completion to any other.
fn key_aware_upstream(seen: Arc<Mutex<Vec<String>>>) -> ArcEngine {
    Arc::new(engine_fn(move |req: Request| {
        let seen = seen.clone();
        async move {
            let auth = req
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            seen.lock().unwrap().push(auth.clone());
            if auth == "Bearer k1" {
                let mut resp = Response::json(
                    429,
                    Body::from_static(
                        br#"{"error":{"message":"quota exceeded","type":"rate_limit_error","param":null,"code":null}}"#,
                    ),
                );
                resp.headers.insert("retry-after", "30".parse().unwrap());
                return Ok(resp);
            }
            Ok(chat_completion("keyed"))
        }
    }))
}

fn chat_completion(model: &str) -> Response {
    Response::json(
        200,
        Body::from(json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        })),
    )
}

#[tokio::test]
async fn keys_rotate_on_429_then_the_backend_is_left() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let upstream = Upstream::start(key_aware_upstream(seen.clone())).await;
    let mock = mock().await;
    let gw = Gateway::start(&format!(
        r#"
listen: "127.0.0.1:0"
backends:
  keyed: {{base_url: "{up}", protocol: openai_chat, api_keys: [k1, k2]}}
  limited:
    base_url: "{mock}"
    protocol: openai_chat
    api_keys: [sk-a1, sk-a2]
    headers: {{x-mock-status: "429", x-mock-retry-after: "60"}}
  ok: {{base_url: "{mock}", protocol: openai_chat, api_key: sk-ok}}
models:
  keyed: {{targets: [{{backend: keyed}}]}}
  left:
    strategy: failover
    targets: [{{backend: limited, model: limited, priority: 0}}, {{backend: ok, model: ok, priority: 1}}]
"#,
        up = upstream.url,
        mock = mock.url()
    ));
    // k1 answers 429 once, rests for its retry-after, and k2 serves every request.
    for _ in 0..4 {
        let r = call(Protocol::OpenAiChat, "keyed").expect(&gw, 200).await;
        assert_eq!(r.json["model"], "keyed");
    }
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "Bearer k1",
            "Bearer k2",
            "Bearer k2",
            "Bearer k2",
            "Bearer k2"
        ]
    );

    // Both keys of `limited` answer 429: each is tried once, then the next backend serves.
    call(Protocol::OpenAiChat, "left").expect(&gw, 200).await;
    let keys: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                upstream_model(r),
                r.header("authorization").unwrap()
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            "limited Bearer sk-a1",
            "limited Bearer sk-a2",
            "ok Bearer sk-ok"
        ]
    );
    // While both keys rest, `limited` is skipped without a request.
    send_n(&gw, "left", 3, &[]).await;
    let seen = models_seen(&mock);
    assert_eq!(count(&seen, "limited"), 2, "{seen:?}");
    assert_eq!(count(&seen, "ok"), 4, "{seen:?}");
}

/// What the scripted upstream of the breaker test does.
const OK: u8 = 0;
const FAIL: u8 = 1;
const HOLD: u8 = 2;

#[tokio::test]
async fn breaker_opens_then_half_opens_with_a_single_probe() {
    let mode = Arc::new(AtomicU8::new(FAIL));
    let hits = Arc::new(AtomicUsize::new(0));
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let release = Arc::new(tokio::sync::Notify::new());
    let engine: ArcEngine = Arc::new(engine_fn({
        let (mode, hits, release) = (mode.clone(), hits.clone(), release.clone());
        move |_req: Request| {
            let (mode, release, arrived_tx) = (mode.clone(), release.clone(), arrived_tx.clone());
            hits.fetch_add(1, Ordering::SeqCst);
            async move {
                match mode.load(Ordering::SeqCst) {
                    FAIL => Ok(Response::json(
                        503,
                        Body::from_static(br#"{"error":{"message":"down","type":"server_error"}}"#),
                    )),
                    HOLD => {
                        let _ = arrived_tx.send(());
                        release.notified().await;
                        Ok(chat_completion("flaky"))
                    }
                    _ => Ok(chat_completion("flaky")),
                }
            }
        }
    }));
    let flaky = Upstream::start(engine).await;
    let steady = mock().await;
    let cooldown = Duration::from_millis(300);
    let gw = Gateway::start(&format!(
        r#"
listen: "127.0.0.1:0"
backends:
  flaky:
    base_url: "{}"
    protocol: openai_chat
    circuit_breaker: {{failures: 2, cooldown: 300ms, max_cooldown: 10s}}
  steady: {{base_url: "{}", protocol: openai_chat}}
models:
  br:
    strategy: failover
    targets: [{{backend: flaky, priority: 0}}, {{backend: steady, model: steady, priority: 1}}]
"#,
        flaky.url,
        steady.url()
    ));
    /// Which backend served a request to `br` (asserting it was served).
    async fn served_by(gw: &Gateway) -> String {
        let r = call(Protocol::OpenAiChat, "br").expect(gw, 200).await;
        r.json["model"].as_str().unwrap().to_owned()
    }

    // Two 503s in a row open the breaker; the clients are served by the next target.
    for _ in 0..2 {
        assert_eq!(served_by(&gw).await, "steady");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // Open: flaky is skipped without a request.
    assert_eq!(served_by(&gw).await, "steady");
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // After the cooldown the breaker is half-open: exactly one probe goes through.
    mode.store(HOLD, Ordering::SeqCst);
    tokio::time::sleep(cooldown).await;
    let probe = tokio::spawn({
        let url = gw.url.clone();
        async move {
            let url = format!("{url}/v1/chat/completions");
            let body = body_for(Protocol::OpenAiChat, "br", "probe", false);
            octo_test::http::json(octo_test::post(&client(), &url, body, &[]).await).await
        }
    });
    arrived.recv().await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // While the probe runs, other requests are kept off flaky.
    for _ in 0..2 {
        assert_eq!(served_by(&gw).await, "steady");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // The probe succeeds and closes the breaker: flaky serves again.
    mode.store(OK, Ordering::SeqCst);
    release.notify_one();
    assert_eq!(probe.await.unwrap()["model"], "flaky");
    assert_eq!(served_by(&gw).await, "flaky");
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    assert_eq!(steady.stats().requests, 5);
}

#[tokio::test]
async fn the_retry_deadline_and_max_wait_bound_a_request() {
    let mock = mock().await;
    let gw = Gateway::start(&format!(
        r#"
listen: "127.0.0.1:0"
backends:
  a:
    base_url: "{url}"
    protocol: openai_chat
    headers: {{x-mock-status: "503", x-mock-latency-ms: "150"}}
    circuit_breaker: {{failures: 0}}
  b:
    base_url: "{url}"
    protocol: openai_chat
    headers: {{x-mock-status: "503", x-mock-latency-ms: "150"}}
    circuit_breaker: {{failures: 0}}
  limited-long:
    base_url: "{url}"
    protocol: openai_chat
    headers: {{x-mock-status: "429", x-mock-retry-after: "30"}}
  limited-short:
    base_url: "{url}"
    protocol: openai_chat
    headers: {{x-mock-status: "429", x-mock-retry-after: "1"}}
models:
  dl:
    strategy: round_robin
    targets: [{{backend: a, model: a}}, {{backend: b, model: b}}]
    retry: {{max_attempts: 100, deadline: 500ms}}
  long-wait:
    targets: [{{backend: limited-long, model: long}}]
    retry: {{max_attempts: 5, deadline: 1m, max_wait: 2s}}
  short-wait:
    targets: [{{backend: limited-short, model: short}}]
    retry: {{max_attempts: 2, deadline: 1m, max_wait: 2s}}
"#,
        url = mock.url()
    ));
    // 150 ms per attempt, 100 ms backoff between rounds: a, b, wait, a — then the deadline.
    let started = Instant::now();
    call(Protocol::OpenAiChat, "dl")
        .expect_error(&gw, 503, "server_error")
        .await;
    let elapsed = started.elapsed();
    let attempts = mock.stats().requests;
    assert!((2..=4).contains(&attempts), "{attempts} attempts");
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );

    // A retry-after longer than max_wait is not waited for: the 429 goes back with it, at once.
    mock.reset();
    let started = Instant::now();
    let r = call(Protocol::OpenAiChat, "long-wait")
        .expect(&gw, 429)
        .await;
    assert_eq!(r.headers["retry-after"], "30");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(mock.stats().requests, 1);

    // A short one is honoured when there is nowhere else to go: one wait, a second attempt.
    mock.reset();
    let started = Instant::now();
    call(Protocol::OpenAiChat, "short-wait")
        .expect(&gw, 429)
        .await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(mock.stats().requests, 2);
}

#[tokio::test]
async fn max_concurrency_holds_the_permit_until_the_stream_ends() {
    let mock = mock().await;
    let gw = Gateway::start(&one_backend(
        &mock.url(),
        r#"
  solo:
    max_concurrency: 1
    targets: [{backend: m, model: up-solo}]
"#,
    ));
    // A long stream holds the only slot while it is open.
    let first = call(Protocol::OpenAiChat, "solo")
        .text("[mock:events=20] [mock:interval_ms=500]")
        .stream()
        .response(&gw)
        .await;
    assert_eq!(first.status(), 200);
    let mut chunks = first.bytes_stream();
    let head = chunks.next().await.unwrap().unwrap();
    assert!(head.starts_with(b"data: "));

    for (protocol, _) in PROTOCOLS {
        let msg = call(protocol, "solo")
            .expect_error(&gw, 429, "rate_limit_error")
            .await;
        assert!(msg.contains("solo"), "{msg}");
    }
    call(Protocol::Anthropic, "solo")
        .stream()
        .expect(&gw, 429)
        .await;
    assert_eq!(mock.stats().requests, 1);

    // The client leaves: the stream ends and its slot frees up.
    drop(chunks);
    mock.wait_for(|s| s.streams_cancelled >= 1).await;
    call(Protocol::OpenAiChat, "solo").expect(&gw, 200).await;

    // A stream read to its end frees the slot before the client sees the end.
    let (status, text) = call(Protocol::Anthropic, "solo")
        .text("[mock:events=3]")
        .send_stream(&gw)
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("message_stop"), "{text}");
    call(Protocol::Gemini, "solo").expect(&gw, 200).await;
}

// ---------------------------------------------------------------------------------------------
// Startup errors

#[test]
fn a_bad_rule_expression_fails_startup_naming_the_rule_key_path() {
    let base = r#"
backends:
  all: {base_url: "http://127.0.0.1:9", protocol: openai_chat}
models:
  m:
    targets: [{backend: all}]
    rules:
      - name: fine
        match: "stream == true"
        deny: {message: "no"}
      - name: broken
        match: "stream == == true"
        deny: {message: "no"}
"#;
    let err = start_fails(base);
    assert!(err.contains("invalid config"), "{err}");
    assert!(err.contains(".yaml"), "{err}");
    assert!(err.contains("models.m.rules[1].match"), "{err}");
    assert!(err.contains("broken"), "{err}");
    assert!(!err.contains("rules[0]"), "{err}");

    // An invalid constant regex is caught at load too.
    let err = start_fails(&base.replace(r#""stream == == true""#, r#"'matches(model, "(")'"#));
    assert!(err.contains("models.m.rules[1].match"), "{err}");

    // Org rules are named by their own path.
    let err = start_fails(&format!(
        r#"{}
orgs:
  acme:
    api_keys: {{alice: "sk-acme-alice"}}
    models:
      m:
        rules:
          - name: org-rule
            match: "auth.org == "
            route: [{{backend: all}}]
"#,
        base.replace("stream == == true", "true")
    ));
    assert!(err.contains("orgs.acme.models.m.rules[0].match"), "{err}");

    // A bad expression in a rule's rewrite names the rule, not its `match`.
    let (head, _) = base.rsplit_once("deny: {message: \"no\"}").unwrap();
    let err = start_fails(
        &format!("{head}rewrite: {{set_keys_by_expr: {{x: \"1 +\"}}}}\n")
            .replace("stream == == true", "true"),
    );
    assert!(err.contains("models.m.rules[1]"), "{err}");
    assert!(!err.contains("models.m.rules[1].match"), "{err}");

    // A bad `set_keys_by_expr` in a backend rewrite names the backend.
    let err = start_fails(&base.replace(
        "all: {base_url: \"http://127.0.0.1:9\", protocol: openai_chat}",
        "all: {base_url: \"http://127.0.0.1:9\", protocol: openai_chat, response_rewrites: {set_keys_by_expr: {x: \"1 +\"}}}",
    ).replace("stream == == true", "true"));
    assert!(err.contains("backends.all.response_rewrites"), "{err}");
}
