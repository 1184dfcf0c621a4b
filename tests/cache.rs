//! The response cache through the real `octollm-server` binary against the mock upstream: a miss
//! then a hit for every client protocol, stream and not (passthrough and converted), the hit
//! byte-identical, never reaching the mock and logged with `cache_hit`, the stored usage and no
//! cost; orgs never sharing entries; errors, cut, failed and in-band-error streams never stored;
//! `cache-control` opt-outs; and the hit/miss counters on `/metrics`.

use std::time::{Duration, Instant};

use octo_core::Protocol;
use octo_test::http::text;
use octo_test::{Gateway, Prompt, TempDir, client, mock, post};

const ADMIN_TOKEN: &str = "a-test-admin-token-0123456789";
const KEY_A: &str = "sk-gw-org-a-0123456789";
const KEY_B: &str = "sk-gw-org-b-0123456789";

fn backend(p: Protocol) -> &'static str {
    match p {
        Protocol::OpenAiChat => "oa",
        Protocol::OpenAiResponses => "resp",
        Protocol::Anthropic => "an",
        _ => "gem",
    }
}

/// The cached model served by the backend speaking `p`.
fn model(p: Protocol) -> String {
    format!("c-{}", p.config_name())
}

/// One backend per protocol; a cached model on each (`c-<protocol>`), priced; `conv`, cached and
/// served by the OpenAI Chat backend to any client (conversion); two orgs; the admin listener.
fn config(mock: &str) -> String {
    let mut backends = String::new();
    let mut models = String::new();
    let mut prices = String::new();
    for p in Protocol::CHAT_PROTOCOLS {
        let (b, name) = (backend(p), p.config_name());
        backends.push_str(&format!(
            "  {b}: {{base_url: \"{mock}\", protocol: {name}, api_key: \"sk-upstream\"}}\n"
        ));
        models.push_str(&format!(
            "  c-{name}: {{cache: true, targets: [{{backend: {b}, model: up-{name}}}], retry: {{max_attempts: 1}}}}\n"
        ));
        prices.push_str(&format!("  c-{name}: {{input: 1.0, output: 2.0}}\n"));
    }
    format!(
        r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{ADMIN_TOKEN}"]}}
cache: {{store: memory, ttl: 10m, max_bytes: 1000000}}
backends:
{backends}models:
{models}  conv: {{cache: true, targets: [{{backend: oa, model: up-conv}}], retry: {{max_attempts: 1}}}}
  plain: {{targets: [{{backend: oa, model: up-plain}}]}}
prices:
{prices}
orgs:
  a: {{api_keys: {{ka: "{KEY_A}"}}}}
  b: {{api_keys: {{kb: "{KEY_B}"}}}}
"#
    )
}

fn start(mock: &str, dir: &TempDir) -> Gateway {
    Gateway::start_with(&config(mock), &["--storage", &dir.sqlite_url()])
}

/// One answer, read whole.
struct Answer {
    status: u16,
    id: String,
    cache: Option<String>,
    body: String,
}

async fn send(gw: &Gateway, prompt: &Prompt, headers: &[(&str, &str)]) -> Answer {
    send_body(gw, &prompt.path(), prompt.body(), headers).await
}

async fn send_body(gw: &Gateway, path: &str, body: String, headers: &[(&str, &str)]) -> Answer {
    let url = format!("{}{path}", gw.url);
    let resp = post(&client(), &url, body, headers).await;
    let status = resp.status().as_u16();
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let id = header("x-octollm-request-id").expect("a request id");
    let cache = header("x-octollm-cache");
    Answer {
        status,
        id,
        cache,
        body: text(resp).await,
    }
}

fn auth(key: &str) -> String {
    format!("Bearer {key}")
}

/// Generation requests the mock has seen (moderation and introspection aside).
fn generations(mock: &octo_mock::MockServer) -> usize {
    mock.requests().len()
}

#[tokio::test]
async fn every_protocol_misses_then_hits_stream_and_not() {
    let mock = mock().await;
    let dir = TempDir::new("cache");
    let gw = start(&mock.url(), &dir);
    let key = auth(KEY_A);
    let headers = [("authorization", key.as_str())];
    for p in Protocol::CHAT_PROTOCOLS {
        for (m, what) in [(model(p), "passthrough"), ("conv".to_owned(), "converted")] {
            for stream in [false, true] {
                let what = format!("{p} {what} stream={stream}");
                let prompt = Prompt::new(p, &m, format!("cache me {what}")).stream(stream);
                let before = generations(&mock);
                let miss = send(&gw, &prompt, &headers).await;
                assert_eq!(miss.status, 200, "{what}: {}", miss.body);
                assert_eq!(miss.cache.as_deref(), Some("miss"), "{what}");
                assert_eq!(generations(&mock), before + 1, "{what}");
                let hit = send(&gw, &prompt, &headers).await;
                assert_eq!(hit.status, 200, "{what}: {}", hit.body);
                assert_eq!(hit.cache.as_deref(), Some("hit"), "{what}");
                // Streams are replayed event by event, re-encoded with LF line ends (an upstream
                // may frame with CRLF, as Gemini does).
                let lf = |s: &str| s.replace("\r\n", "\n");
                assert_eq!(
                    lf(&hit.body),
                    lf(&miss.body),
                    "{what}: the hit replays the answer"
                );
                assert_eq!(
                    generations(&mock),
                    before + 1,
                    "{what}: the hit never reached the mock"
                );
                if stream && p != Protocol::Gemini {
                    assert!(
                        octo_test::parse_sse(&hit.body).len() > 2,
                        "{what}: a stream of events: {}",
                        hit.body
                    );
                }

                let (m_rec, h_rec) = (
                    gw.logged_record(ADMIN_TOKEN, &miss.id).await,
                    gw.logged_record(ADMIN_TOKEN, &hit.id).await,
                );
                assert_eq!(m_rec["cache_hit"], false, "{what}: {m_rec}");
                assert_eq!(h_rec["cache_hit"], true, "{what}: {h_rec}");
                assert!(m_rec["usage"].is_object(), "{what}: {m_rec}");
                assert_eq!(
                    h_rec["usage"], m_rec["usage"],
                    "{what}: the hit carries the usage"
                );
                assert_eq!(h_rec["finish_reason"], m_rec["finish_reason"], "{what}");
                if m == model(p) {
                    assert!(
                        m_rec["cost_usd"].as_f64().is_some_and(|c| c > 0.0),
                        "{what}: {m_rec}"
                    );
                }
                assert!(
                    h_rec["cost_usd"].is_null(),
                    "{what}: a hit has no upstream cost: {h_rec}"
                );
                assert!(h_rec["backend"].is_null(), "{what}: {h_rec}");
                assert_eq!(h_rec["attempts"], serde_json::json!([]), "{what}: {h_rec}");
                assert_eq!(h_rec["stream"], stream, "{what}");
                assert_eq!(h_rec["org"], "a", "{what}");
            }
        }
    }
    // A model without `cache: true` says nothing about the cache.
    let plain = send(
        &gw,
        &Prompt::new(Protocol::OpenAiChat, "plain", "x"),
        &headers,
    )
    .await;
    assert_eq!((plain.status, plain.cache), (200, None));
    // The counters.
    let (status, metrics) = gw
        .admin_get("/metrics", ADMIN_TOKEN)
        .await
        .status_and_body();
    assert_eq!(status, 200);
    for p in Protocol::CHAT_PROTOCOLS {
        for result in ["hit", "miss"] {
            let line = format!(
                "octollm_cache_requests_total{{model=\"{}\",result=\"{result}\"}} 2\n",
                model(p)
            );
            assert!(metrics.contains(&line), "{line} in {metrics}");
        }
    }
    assert!(metrics.contains("octollm_cache_requests_total{model=\"conv\",result=\"hit\"} 8\n"));
    mock.shutdown().await;
}

#[tokio::test]
async fn orgs_never_share_entries_and_labels_do_not_split_them() {
    let mock = mock().await;
    let dir = TempDir::new("cache");
    let gw = start(&mock.url(), &dir);
    let (a, b) = (auth(KEY_A), auth(KEY_B));
    let body = |user: &str| {
        format!(
            r#"{{"model":"c-openai_chat","user":"{user}","messages":[{{"role":"user","content":"shared question"}}]}}"#
        )
    };
    let path = "/v1/chat/completions";
    let first = send_body(&gw, path, body("u1"), &[("authorization", &a)]).await;
    assert_eq!(first.cache.as_deref(), Some("miss"));
    let other_org = send_body(&gw, path, body("u1"), &[("authorization", &b)]).await;
    assert_eq!(
        other_org.cache.as_deref(),
        Some("miss"),
        "org b never sees org a's entry"
    );
    assert_eq!(generations(&mock), 2);
    // The same org with another `user` label and key order: the same entry.
    let relabelled = r#"{"messages":[{"content":"shared question","role":"user"}],"user":"u2","model":"c-openai_chat"}"#.to_owned();
    let again = send_body(&gw, path, relabelled, &[("authorization", &a)]).await;
    assert_eq!(again.cache.as_deref(), Some("hit"));
    assert_eq!(again.body, first.body);
    // The client opts out: no-store neither reads nor writes; no-cache refreshes.
    let fresh = send_body(
        &gw,
        path,
        body("u1"),
        &[("authorization", &a), ("cache-control", "no-store")],
    )
    .await;
    assert_eq!(fresh.cache.as_deref(), Some("bypass"));
    assert_ne!(
        fresh.body, first.body,
        "a fresh answer (the mock's ids count up)"
    );
    let refreshed = send_body(
        &gw,
        path,
        body("u1"),
        &[("authorization", &a), ("cache-control", "no-cache")],
    )
    .await;
    assert_eq!(refreshed.cache.as_deref(), Some("miss"));
    let after = send_body(&gw, path, body("u1"), &[("authorization", &a)]).await;
    assert_eq!(
        (after.cache.as_deref(), &after.body),
        (Some("hit"), &refreshed.body)
    );
    assert_eq!(generations(&mock), 4);
    mock.shutdown().await;
}

#[tokio::test]
async fn errors_and_cut_or_failed_streams_are_never_stored() {
    let mock = mock().await;
    let dir = TempDir::new("cache");
    let gw = start(&mock.url(), &dir);
    let key = auth(KEY_A);
    let headers = [("authorization", key.as_str())];
    for p in Protocol::CHAT_PROTOCOLS {
        for (directive, stream) in [
            ("[mock:status=500]", false),
            ("[mock:status=500]", true),
            ("[mock:truncate=2]", true),
            ("[mock:abort=2]", true),
            ("[mock:midstream_error=1]", true),
        ] {
            let what = format!("{p} {directive} stream={stream}");
            let prompt = Prompt::new(p, model(p), format!("fail {directive}")).stream(stream);
            let before = generations(&mock);
            for _ in 0..2 {
                let url = format!("{}{}", gw.url, prompt.path());
                let resp = post(&client(), &url, prompt.body(), &headers).await;
                let cache = resp
                    .headers()
                    .get("x-octollm-cache")
                    .map(|v| v.to_str().unwrap().to_owned());
                // A broken stream may fail while it is read; either way nothing is stored.
                let _ = resp.bytes().await;
                assert_ne!(cache.as_deref(), Some("hit"), "{what}");
            }
            assert_eq!(
                generations(&mock),
                before + 2,
                "{what}: both reached the upstream"
            );
        }
    }
    let (_, metrics) = gw
        .admin_get("/metrics", ADMIN_TOKEN)
        .await
        .status_and_body();
    assert!(
        !metrics.contains("result=\"hit\"} 1"),
        "no hit was counted: {metrics}"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn an_entry_expires_after_its_ttl() {
    let mock = mock().await;
    let yaml = format!(
        r#"
listen: "127.0.0.1:0"
cache: {{ttl: 1s}}
backends:
  oa: {{base_url: "{}", protocol: openai_chat}}
models:
  m: {{cache: true, targets: [{{backend: oa}}]}}
"#,
        mock.url()
    );
    let gw = Gateway::start_with(&yaml, &["--storage", "off"]);
    let prompt = Prompt::new(Protocol::OpenAiChat, "m", "short-lived");
    assert_eq!(send(&gw, &prompt, &[]).await.cache.as_deref(), Some("miss"));
    let stored_at = Instant::now();
    let second = send(&gw, &prompt, &[]).await;
    if stored_at.elapsed() < Duration::from_millis(900) {
        assert_eq!(second.cache.as_deref(), Some("hit"));
    }
    // Poll (with a deadline) until the entry has expired: a miss reaches the mock again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if send(&gw, &prompt, &[]).await.cache.as_deref() == Some("miss") {
            break;
        }
        assert!(Instant::now() < deadline, "the entry never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mock.shutdown().await;
}

#[test]
fn bad_cache_settings_fail_at_startup_with_their_key() {
    let yaml = |cache: &str| {
        format!(
            r#"
listen: "127.0.0.1:0"
{cache}
backends:
  oa: {{base_url: "http://127.0.0.1:9", protocol: openai_chat}}
models:
  m: {{cache: true, targets: [{{backend: oa}}]}}
"#
        )
    };
    let e = octo_test::start_fails(&yaml("cache: {max_bytes: 10}"));
    assert!(e.contains("cache.max_bytes"), "{e}");
    let e = octo_test::start_fails(&yaml("cache: {store: disk}"));
    assert!(e.contains("cache.store"), "{e}");
    let e = octo_test::start_fails(&yaml("cache: {ttl: 0s}"));
    assert!(e.contains("cache.ttl"), "{e}");
}
