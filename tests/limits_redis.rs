//! Limits shared by two gateway processes through one Redis (and one PostgreSQL for the request
//! log, when `scripts/services.sh` started it, in a schema of this test's own): an rpm limit of 5
//! holds exactly across both, so do a tpm and a concurrency limit (a stream held open on one),
//! sticky sessions pinned on one are pinned on the other, a key's
//! budget spent through one stops the other, a key created through one's admin API works (with
//! its limit) on the other; then Redis is stopped and started again, with
//! `on_error: allow` (each instance falls back to its own counts, says so in a metric) and
//! `on_error: deny` (503 in the client's shape), and nothing hangs.
//!
//! Needs `OCTOLLM_TEST_REDIS_URL` and `OCTOLLM_TEST_REDIS_CTL` (written by `scripts/services.sh`);
//! skipped with the reason otherwise. Its own test binary with one test, because it stops Redis.

use std::time::{Duration, Instant};

use octo_core::Protocol;
use octo_test::service::{self, Restart, ctl};
use octo_test::{Gateway, Prompt, Reply, client, mock, post};

const TOKEN: &str = "a-test-admin-token-0123456789";

async fn send(gw: &Gateway, prompt: &Prompt, key: &str) -> Reply {
    let auth = format!("Bearer {key}");
    Reply::read(
        post(
            &client(),
            &format!("{}{}", gw.url, prompt.path()),
            prompt.body(),
            &[("authorization", auth.as_str())],
        )
        .await,
    )
    .await
}

/// The config of every instance; `run` makes the budgeted key's name unique, since the shared
/// request log keeps the spend of earlier runs (and budgets read it back).
fn config(mock: &str, redis: &str, prefix: &str, on_error: &str, run: &str) -> String {
    format!(
        r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{TOKEN}"]}}
redis: {{url: "{redis}", on_error: {on_error}, timeout: 200ms, key_prefix: "{prefix}"}}
backends:
  oa: {{base_url: "{mock}", protocol: openai_chat}}
  an: {{base_url: "{mock}", protocol: anthropic}}
models:
  five: {{targets: [{{backend: oa}}], rate_limit: {{rpm: 5}}}}
  chat: {{targets: [{{backend: oa}}]}}
  claude: {{targets: [{{backend: an}}], rate_limit: {{rpm: 1000}}}}
  held: {{targets: [{{backend: an}}], rate_limit: {{tpm: 3000, concurrency: 1}}}}
  pinned:
    targets: [{{backend: oa, model: up-a}}, {{backend: oa, model: up-b}}]
    strategy: round_robin
    sticky: 5m
prices:
  chat: {{input: 10000, output: 10000}}
orgs:
  acme:
    api_keys:
      k: "sk-k-0123456789"
      capped{run}: {{key: "sk-capped-0123456789", budget: {{usd: 0.05, period: month}}}}
"#
    )
}

/// A fresh schema of this test's own on the shared PostgreSQL (other tests leave admin API
/// objects in the default schema, which the control plane would merge into this config).
async fn own_schema(url: &str) -> String {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql("DROP SCHEMA IF EXISTS limits_redis CASCADE; CREATE SCHEMA limits_redis")
        .execute(&mut c)
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3Dlimits_redis")
}

/// Sends `prompt` with the sticky session `session` and returns the upstream model that served it.
async fn served(
    gw: &Gateway,
    mock: &octo_mock::MockServer,
    prompt: &Prompt,
    session: &str,
) -> String {
    let r = Reply::read(
        post(
            &client(),
            &format!("{}{}", gw.url, prompt.path()),
            prompt.body(),
            &[
                ("authorization", "Bearer sk-k-0123456789"),
                ("x-session-id", session),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let last = mock.requests().pop().unwrap().body_json().unwrap();
    last["model"].as_str().unwrap().to_owned()
}

/// Waits until Redis holds `n` sticky sessions under `prefix` (a pin is written in the background
/// after the answer, so the next request on another instance could otherwise overtake it).
async fn wait_sessions(redis: &str, prefix: &str, n: usize) {
    let client = redis::Client::open(redis).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}sticky:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if keys.len() >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} sessions in Redis, not {n}",
            keys.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn start(yaml: &str, storage: Option<&str>) -> Gateway {
    match storage {
        Some(url) => Gateway::start_with(yaml, &["--storage", url]),
        None => Gateway::start(yaml),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_limits_and_survive_redis_going_away() {
    let Some((redis, control)) = service::redis() else {
        return;
    };
    let postgres = match std::env::var("OCTOLLM_TEST_POSTGRES_URL") {
        Ok(url) => Some(own_schema(&url).await),
        Err(_) => None,
    };
    if postgres.is_none() {
        eprintln!(
            "note: OCTOLLM_TEST_POSTGRES_URL is not set: the two instances run without a shared request log"
        );
    }
    let mock = mock().await;
    // A fresh key prefix per run: Redis keeps counts between runs.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("octollm-test-{}-{nanos}:", std::process::id());
    let run = format!("{nanos}");
    let yaml = config(&mock.url(), &redis, &prefix, "allow", &run);
    let a = start(&yaml, postgres.as_deref());
    let b = start(&yaml, postgres.as_deref());

    // rpm 5 across both, alternating: exactly five admitted (plus one per 12 s the loop took,
    // as the limit refills; on a normal machine the loop takes well under a second).
    let five = Prompt::new(Protocol::OpenAiChat, "five", "hi");
    let started = Instant::now();
    let mut admitted = 0;
    for i in 0..12 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = send(gw, &five, "sk-k-0123456789").await;
        match r.status {
            200 => admitted += 1,
            429 => {
                assert!(
                    r.json["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("model `five`")
                );
                assert_eq!(r.header("x-ratelimit-limit-requests"), Some("5"));
            }
            s => panic!("status {s}: {:?}", r.json),
        }
    }
    let refills = (started.elapsed().as_secs_f64() / 12.0).floor() as usize;
    assert!(
        (5..=5 + refills).contains(&admitted),
        "{admitted} admitted in {:?}",
        started.elapsed()
    );
    if refills == 0 {
        assert_eq!(admitted, 5);
    }
    let five_upstream = mock
        .requests()
        .iter()
        .filter(|r| r.body_json().is_some_and(|j| j["model"] == "five"))
        .count();
    assert_eq!(
        five_upstream, admitted,
        "refused requests never reach the upstream"
    );

    // Sticky sessions are shared: sessions pinned on `a` (round robin: `warm` on up-a, `s1` on
    // up-b) keep their targets on `b`, whose own rotation would start at up-a.
    let pinned = Prompt::new(Protocol::OpenAiChat, "pinned", "hi");
    let warm = served(&a, &mock, &pinned, "warm").await;
    let s1 = served(&a, &mock, &pinned, "s1").await;
    assert_ne!(warm, s1, "round robin moved on");
    wait_sessions(&redis, &prefix, 2).await;
    for _ in 0..3 {
        assert_eq!(served(&b, &mock, &pinned, "s1").await, s1);
        assert_eq!(served(&b, &mock, &pinned, "warm").await, warm);
    }
    // A new session pinned on `b` holds on `a`.
    let s2 = served(&b, &mock, &pinned, "s2").await;
    wait_sessions(&redis, &prefix, 3).await;
    for _ in 0..3 {
        assert_eq!(served(&a, &mock, &pinned, "s2").await, s2);
    }

    // Tokens and requests in flight are shared: a long stream on `a` (estimated at ~2,000
    // tokens, the one slot of `held`) makes `b` refuse by concurrency, and a request whose
    // estimate does not fit beside it by tpm; once the stream's client leaves, `a`'s settlement
    // frees the slot for `b`.
    let slow = Prompt::new(
        Protocol::Anthropic,
        "held",
        "hi [mock:interval_ms=100] [mock:events=600]",
    )
    .stream(true)
    .max_tokens(2000);
    let mut stream = post(
        &client(),
        &format!("{}{}", a.url, slow.path()),
        slow.body(),
        &[("authorization", "Bearer sk-k-0123456789")],
    )
    .await;
    assert_eq!(stream.status(), 200);
    assert!(
        stream.chunk().await.unwrap().is_some(),
        "the stream started"
    );
    let small = Prompt::new(Protocol::Anthropic, "held", "hi").max_tokens(10);
    let r = send(&b, &small, "sk-k-0123456789").await;
    assert_eq!(r.status, 429, "{:?}", r.json);
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("concurrency limit reached"), "{message}");
    let large = Prompt::new(Protocol::Anthropic, "held", "hi").max_tokens(1500);
    let r = send(&b, &large, "sk-k-0123456789").await;
    assert_eq!(r.status, 429, "{:?}", r.json);
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("tokens per minute"), "{message}");
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = send(&b, &small, "sk-k-0123456789").await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 429, "{:?}", r.json);
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A key's budget spent through `a` stops `b` too.
    let chat = Prompt::new(Protocol::OpenAiChat, "chat", "hi");
    assert_eq!(send(&a, &chat, "sk-capped-0123456789").await.status, 200);
    let r = send(&b, &chat, "sk-capped-0123456789").await;
    assert_eq!(r.status, 429, "{:?}", r.json);
    assert_eq!(r.json["error"]["code"], "insufficient_quota");
    let limits = b.admin_get("/api/v1/limits", TOKEN).await.json();
    assert_eq!(limits["store"], "redis");

    // A key created through the admin API of `a`, with an rpm of 2, works on `b` within a few
    // seconds (the control plane's database sync), and its limit is shared by both.
    if postgres.is_some() {
        let body = serde_json::json!({"org": "acme", "name": format!("made{run}"), "rate_limit": {"rpm": 2}});
        let reply = a
            .admin("POST", "/api/v1/keys")
            .token(TOKEN)
            .json(&body)
            .send()
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        let created = reply.json();
        let key = created["key"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = send(&b, &chat, &key).await;
            if r.status == 200 {
                break;
            }
            assert_eq!(r.status, 401, "{:?}", r.json);
            assert!(
                Instant::now() < deadline,
                "the key never reached the other instance"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(send(&a, &chat, &key).await.status, 200);
        let r = send(&b, &chat, &key).await;
        assert_eq!(r.status, 429, "{:?}", r.json);
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("key `acme/made{run}`"))
        );
        // The keys listing shows the key's limit state.
        let keys = b.admin_get("/api/v1/keys", TOKEN).await.json();
        let made = keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == format!("made{run}"))
            .cloned()
            .unwrap();
        assert_eq!(made["rate_limit"]["rpm"], 2, "{made}");
        assert_eq!(made["limits"]["requests"]["remaining"], 0, "{made}");
    }

    // Redis goes away: `allow` falls back to each instance's own counts, says so, and answers.
    let mut restart = Restart(&control, true);
    ctl(&control, "stop");
    let claude = Prompt::new(Protocol::Anthropic, "claude", "hi");
    let t = Instant::now();
    let r = send(&a, &claude, "sk-k-0123456789").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "a dead Redis must not hang a request"
    );
    // Sticky sessions carry on in each instance's own memory (round robin would alternate).
    let s3 = served(&a, &mock, &pinned, "s3").await;
    for _ in 0..3 {
        assert_eq!(served(&a, &mock, &pinned, "s3").await, s3);
    }
    let metrics = a.admin_get("/metrics", TOKEN).await.body;
    assert!(metrics.contains("octollm_limits_fallback 1"), "{metrics}");
    let errors: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("octollm_redis_errors_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(errors >= 1.0);

    // `deny`: a third instance on the same dead Redis answers 503 in the client's shape.
    let deny = start(&config(&mock.url(), &redis, &prefix, "deny", &run), None);
    let r = send(&deny, &claude, "sk-k-0123456789").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json["type"], "error");
    assert_eq!(r.json["error"]["type"], "overloaded_error");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Redis")
    );
    // Unlimited models do not need Redis.
    assert_eq!(
        send(
            &deny,
            &Prompt::new(Protocol::OpenAiChat, "chat", "hi"),
            "sk-k-0123456789"
        )
        .await
        .status,
        200
    );

    // Redis is back: both modes return to shared counting (polling: the fallback retries Redis
    // at most once a second).
    ctl(&control, "start");
    restart.1 = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = send(&deny, &claude, "sk-k-0123456789").await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(
            Instant::now() < deadline,
            "the deny instance never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        assert_eq!(send(&a, &claude, "sk-k-0123456789").await.status, 200);
        let metrics = a.admin_get("/metrics", TOKEN).await.body;
        if metrics.contains("octollm_limits_fallback 0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the allow instance never left the fallback"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The budget survived the Redis restart: the instance that noticed seeded the month's spend
    // back, and the other instance reads it.
    loop {
        let limits = b.admin_get("/api/v1/limits", TOKEN).await.json();
        let capped = limits["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == format!("acme/capped{run}"))
            .cloned()
            .unwrap();
        if limits["store"] == "redis"
            && capped["now"]["budget"]["spent_usd"].as_f64().unwrap_or(0.0) > 0.05
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the budget's spend was not seeded back: {limits}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = send(&b, &chat, "sk-capped-0123456789").await;
    assert_eq!(r.status, 429, "{:?}", r.json);
    assert!(a.terminate());
    assert!(b.terminate());
    assert!(deny.terminate());
}
