//! Rate limits and budgets through the real `octollm-server`, counted in memory (no Redis): each
//! limit refuses with a 429 in the client's protocol and the OpenAI-style headers, nothing
//! refused reaches the mock upstream (its request record is checked), reconciliation with the
//! real usage gives tokens back, streams hold concurrency until they end, budgets refuse with
//! `insufficient_quota` until the period turns, and a restart remembers the period's spend.

use std::time::{Duration, Instant};

use octo_core::Protocol;
use octo_test::{Gateway, Prompt, Reply, client, mock, post};
use serde_json::Value;

const TOKEN: &str = "a-test-admin-token-0123456789";

async fn send(gw: &Gateway, prompt: &Prompt, key: Option<&str>) -> Reply {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    Reply::read(
        post(
            &client(),
            &format!("{}{}", gw.url, prompt.path()),
            prompt.body(),
            &headers,
        )
        .await,
    )
    .await
}

async fn limits(gw: &Gateway) -> Value {
    let reply = gw.admin_get("/api/v1/limits", TOKEN).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

/// The `now` state of the scope named `name` in `GET /api/v1/limits`.
fn scope<'a>(limits: &'a Value, name: &str) -> &'a Value {
    limits["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no scope {name} in {limits}"))
}

/// Polls the admin API until `pred` holds for scope `name` (settlement runs when the record
/// completes, just after the client has its answer).
async fn wait_scope(gw: &Gateway, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = limits(gw).await;
        let s = scope(&l, name).clone();
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "scope {name} never matched: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn rpm_refusals_are_in_each_protocols_shape_and_never_reach_the_upstream() {
    let mock = mock().await;
    let m = mock.url();
    let gw = Gateway::start(&format!(
        r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{TOKEN}"]}}
backends:
  oa: {{base_url: "{m}", protocol: openai_chat}}
  resp: {{base_url: "{m}", protocol: openai_responses}}
  an: {{base_url: "{m}", protocol: anthropic}}
  gem: {{base_url: "{m}", protocol: gemini}}
models:
  chat: {{targets: [{{backend: oa}}], rate_limit: {{rpm: 2}}}}
  resp: {{targets: [{{backend: resp}}], rate_limit: {{rpm: 2}}}}
  claude: {{targets: [{{backend: an}}], rate_limit: {{rpm: 2}}}}
  gemini: {{targets: [{{backend: gem}}], rate_limit: {{rpm: 2}}}}
  failing: {{targets: [{{backend: oa}}], rate_limit: {{rpm: 5}}, retry: {{max_attempts: 1}}}}
"#
    ));
    for (protocol, model) in octo_test::PROTOCOLS {
        let prompt = Prompt::new(protocol, model, "hi");
        for left in [1, 0] {
            let ok = send(&gw, &prompt, None).await;
            assert_eq!(ok.status, 200, "{protocol:?}: {:?}", ok.json);
            assert_eq!(ok.header("x-ratelimit-limit-requests"), Some("2"));
            assert_eq!(
                ok.header("x-ratelimit-remaining-requests"),
                Some(left.to_string().as_str())
            );
        }
        let before = mock.requests().len();
        let r = send(&gw, &prompt, None).await;
        assert_eq!(r.status, 429, "{protocol:?}");
        assert_eq!(
            mock.requests().len(),
            before,
            "a refused request reached the upstream"
        );
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=30).contains(&retry), "retry-after {retry}");
        // The precise wait, for SDKs that read it first; `retry-after` is it rounded up.
        let ms: u64 = r.header("retry-after-ms").unwrap().parse().unwrap();
        assert_eq!(ms.div_ceil(1000), retry, "retry-after-ms {ms}");
        assert_eq!(r.header("x-ratelimit-limit-requests"), Some("2"));
        assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
        assert!(
            r.header("x-ratelimit-reset-requests")
                .unwrap()
                .ends_with('s')
        );
        let message = match protocol {
            Protocol::OpenAiChat | Protocol::OpenAiResponses => {
                assert_eq!(r.json["error"]["type"], "rate_limit_error");
                assert_eq!(r.json["error"]["code"], "rate_limit_exceeded");
                r.json["error"]["message"].as_str().unwrap().to_owned()
            }
            Protocol::Anthropic => {
                assert_eq!(r.json["type"], "error");
                assert_eq!(r.json["error"]["type"], "rate_limit_error");
                r.json["error"]["message"].as_str().unwrap().to_owned()
            }
            _ => {
                assert_eq!(r.json["error"]["code"], 429);
                assert_eq!(r.json["error"]["status"], "RESOURCE_EXHAUSTED");
                r.json["error"]["message"].as_str().unwrap().to_owned()
            }
        };
        assert!(
            message.contains(&format!("model `{model}`")) && message.contains("rpm"),
            "{message}"
        );
    }
    assert_eq!(mock.requests().len(), 8);

    // An admitted request the upstream failed counted too: its error says what is left.
    let failed = send(
        &gw,
        &Prompt::new(Protocol::OpenAiChat, "failing", "[mock:status=500]"),
        None,
    )
    .await;
    assert_eq!(failed.status, 500, "{:?}", failed.json);
    assert_eq!(failed.header("x-ratelimit-limit-requests"), Some("5"));
    assert_eq!(failed.header("x-ratelimit-remaining-requests"), Some("4"));
}

fn keyed_config(mock: &str, extra_key: &str) -> String {
    format!(
        r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{TOKEN}"]}}
backends:
  oa: {{base_url: "{mock}", protocol: openai_chat}}
  an: {{base_url: "{mock}", protocol: anthropic}}
models:
  chat: {{targets: [{{backend: oa}}]}}
  claude: {{targets: [{{backend: an}}]}}
prices:
  chat: {{input: 10000, output: 10000}}
orgs:
  acme:
    rate_limit: {{rpm: 3}}
    api_keys:
      free: "sk-free-0123456789"
      slow: {{key: "sk-slow-0123456789", rate_limit: {{concurrency: 1}}}}
      tokens: {{key: "sk-tokens-0123456789", rate_limit: {{tpm: 1000}}}}
{extra_key}
"#
    )
}

#[tokio::test]
async fn org_rpm_and_key_concurrency_and_tpm_with_reconciliation() {
    let mock = mock().await;
    let gw = Gateway::start(&keyed_config(&mock.url(), ""));
    // The org's rpm is shared by its keys: 3 between `free` and `tokens`, then refused.
    let chat = Prompt::new(Protocol::OpenAiChat, "chat", "hi");
    assert_eq!(
        send(&gw, &chat, Some("sk-free-0123456789")).await.status,
        200
    );
    assert_eq!(
        send(&gw, &chat, Some("sk-free-0123456789")).await.status,
        200
    );
    let small = Prompt::new(Protocol::Anthropic, "claude", "hi [mock:events=2]").max_tokens(100);
    let ok = send(&gw, &small, Some("sk-tokens-0123456789")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-ratelimit-limit-tokens"), Some("1000"));
    let r = send(&gw, &chat, Some("sk-tokens-0123456789")).await;
    assert_eq!(r.status, 429);
    let msg = r.json["error"]["message"].as_str().unwrap();
    assert!(msg.contains("org `acme`") && msg.contains("rpm"), "{msg}");
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test]
async fn tpm_admits_on_the_estimate_and_gives_back_what_was_not_used() {
    let mock = mock().await;
    let gw = Gateway::start(&keyed_config(&mock.url(), ""));
    let key = Some("sk-tokens-0123456789");
    // Larger than the whole limit: refused at once, whatever is left.
    let huge = Prompt::new(Protocol::Anthropic, "claude", "hi").max_tokens(5_000);
    let r = send(&gw, &huge, key).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json["error"]["type"], "rate_limit_error");
    let msg = r.json["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("too large") && msg.contains("tpm") && msg.contains("key `acme/tokens`"),
        "{msg}"
    );
    assert!(r.header("retry-after").is_none(), "a retry cannot help");
    // Estimated at about 850 tokens (prompt bytes / 4 + max_tokens 800): the first fits, and a
    // second would not fit on estimates alone (1,700 > 1,000) ...
    let big = Prompt::new(Protocol::Anthropic, "claude", "hi").max_tokens(800);
    let est = octo_limits::estimate::estimate(big.body().as_bytes()).total();
    let answered = Instant::now();
    let first = send(&gw, &big, key).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("x-ratelimit-remaining-tokens"),
        Some((1_000 - est).to_string().as_str())
    );
    let used = first.json["usage"]["input_tokens"].as_u64().unwrap()
        + first.json["usage"]["output_tokens"].as_u64().unwrap();
    // ... but the answer used a few tokens: once its record completes the rest comes back.
    let s = wait_scope(&gw, "acme/tokens", |s| {
        s["now"]["tokens"]["remaining"].as_u64().unwrap() >= 1_000 - used - 1
    })
    .await;
    // At most what refilled (1,000 a minute) since the answer on top of the reconciled count.
    let refill = answered.elapsed().as_millis() as u64 * 1_000 / 60_000;
    assert!(
        s["now"]["tokens"]["remaining"].as_u64().unwrap() <= 1_000 - used + refill + 1,
        "{s}"
    );
    assert_eq!(send(&gw, &big, key).await.status, 200);
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn concurrency_holds_until_the_stream_ends_and_a_cut_stream_is_charged_its_estimate() {
    let mock = mock().await;
    let gw = Gateway::start(&keyed_config(
        &mock.url(),
        r#"      both: {key: "sk-both-0123456789", rate_limit: {concurrency: 1, tpm: 3000}}"#,
    ));
    let key = Some("sk-both-0123456789");
    let slow = Prompt::new(
        Protocol::OpenAiChat,
        "chat",
        "hi [mock:events=40] [mock:interval_ms=50]",
    )
    .stream(true);
    let url = format!("{}{}", gw.url, slow.path());
    let admitted = Instant::now();
    let mut stream = post(
        &client(),
        &url,
        slow.body(),
        &[("authorization", "Bearer sk-both-0123456789")],
    )
    .await;
    assert_eq!(stream.status(), 200);
    assert!(
        stream.chunk().await.unwrap().is_some(),
        "the stream started"
    );
    // The head is back but the stream runs: the key's one slot is taken.
    let quick = Prompt::new(Protocol::OpenAiChat, "chat", "hi");
    let r = send(&gw, &quick, key).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json["error"]["code"], "concurrency_limit_exceeded");
    let msg = r.json["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("key `acme/both`") && msg.contains("concurrency"),
        "{msg}"
    );
    // The client goes away mid-stream: the slot is freed, and with no usage reported the
    // estimate stays charged.
    drop(stream);
    let est = octo_limits::estimate::estimate(slow.body().as_bytes()).total();
    let s = wait_scope(&gw, "acme/both", |s| s["now"]["in_flight"] == 0).await;
    let remaining = s["now"]["tokens"]["remaining"].as_u64().unwrap();
    // The estimate, less what refilled since its admission (3,000 a minute); a refund would
    // leave ~3,000.
    let refill = admitted.elapsed().as_millis() as u64 * 3_000 / 60_000;
    assert!(
        remaining >= 3_000 - est - 1 && remaining <= 3_000 - est + refill + 1,
        "remaining {remaining}, estimate {est}, refill {refill}: {s}"
    );
    assert_eq!(send(&gw, &quick, key).await.status, 200);
}

#[tokio::test]
async fn budgets_refuse_with_insufficient_quota_in_each_shape_and_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("octollm-limits-budget-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("log.db").display());
    let mock = mock().await;
    let m = mock.url();
    // One token costs a cent: every request costs far more than the $0.05 budget.
    let yaml = format!(
        r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{TOKEN}"]}}
backends:
  oa: {{base_url: "{m}", protocol: openai_chat}}
  resp: {{base_url: "{m}", protocol: openai_responses}}
  an: {{base_url: "{m}", protocol: anthropic}}
  gem: {{base_url: "{m}", protocol: gemini}}
models:
  chat: {{targets: [{{backend: oa}}]}}
  resp: {{targets: [{{backend: resp}}]}}
  claude: {{targets: [{{backend: an}}]}}
  gemini: {{targets: [{{backend: gem}}]}}
prices:
  chat: {{input: 10000, output: 10000}}
orgs:
  acme:
    api_keys:
      capped: {{key: "sk-capped-0123456789", budget: {{usd: 0.05, period: day}}}}
"#
    );
    let key = Some("sk-capped-0123456789");
    let gw = Gateway::start_with(&yaml, &["--storage", &db]);
    let chat = Prompt::new(Protocol::OpenAiChat, "chat", "hi");
    let ok = send(&gw, &chat, key).await;
    assert_eq!(ok.status, 200);
    let before = mock.requests().len();
    for (protocol, model) in octo_test::PROTOCOLS {
        let r = send(&gw, &Prompt::new(protocol, model, "hi"), key).await;
        assert_eq!(r.status, 429, "{protocol:?}");
        assert!(r.header("retry-after").is_some());
        let msg = match protocol {
            Protocol::OpenAiChat | Protocol::OpenAiResponses => {
                assert_eq!(r.json["error"]["code"], "insufficient_quota");
                assert_eq!(r.json["error"]["type"], "insufficient_quota");
                r.json["error"]["message"].as_str().unwrap().to_owned()
            }
            Protocol::Anthropic => {
                assert_eq!(r.json["error"]["type"], "rate_limit_error");
                r.json["error"]["message"].as_str().unwrap().to_owned()
            }
            _ => {
                assert_eq!(r.json["error"]["status"], "RESOURCE_EXHAUSTED");
                r.json["error"]["message"].as_str().unwrap().to_owned()
            }
        };
        assert!(
            msg.contains("budget")
                && msg.contains("key `acme/capped`")
                && msg.contains("resets at"),
            "{msg}"
        );
    }
    assert_eq!(mock.requests().len(), before);
    let s = wait_scope(&gw, "acme/capped", |s| {
        s["now"]["budget"]["reserved_usd"].as_f64() == Some(0.0)
    })
    .await;
    let spent = s["now"]["budget"]["spent_usd"].as_f64().unwrap();
    assert!(spent > 0.05, "{s}");
    assert_eq!(s["now"]["budget"]["remaining_usd"].as_f64(), Some(0.0));
    assert!(
        s["now"]["budget"]["resets_at"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00Z")
    );
    // The record reaches the request log; a restarted gateway reads the day's spend back.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = gw.admin_get("/api/v1/logs?user=capped", TOKEN).await.json();
        if page["data"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the record was not written: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gw.terminate());
    let again = Gateway::start_with(&yaml, &["--storage", &db]);
    let r = send(&again, &chat, key).await;
    assert_eq!(r.status, 429, "{:?}", r.json);
    assert_eq!(r.json["error"]["code"], "insufficient_quota");
    drop(again);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_limits_fail_at_startup_with_their_key_path() {
    let err = octo_test::start_fails(
        r#"
listen: "127.0.0.1:0"
backends: {oa: {base_url: "http://127.0.0.1:9", protocol: openai_chat}}
models: {chat: {targets: [{backend: oa}], rate_limit: {rpm: 0}}}
orgs:
  acme:
    budget: {usd: 5, period: year}
    api_keys: {k: {key: "sk-k-0123456789", rate_limit: {tpmm: 5}}}
redis: {url: "http://127.0.0.1:6379"}
"#,
    );
    assert!(err.contains("orgs.acme.budget.period"), "{err}");
    assert!(err.contains("`day`"), "{err}");
}
