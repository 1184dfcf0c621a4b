//! The control plane through the real binary: the admin API's objects, keys and audit trail on a
//! SQLite database, with the mock upstream behind. Each test runs its own gateway in its own
//! directory (config, database, sealing key).
//!
//! What is proved: every route refuses a missing or wrong token; validation errors name the key
//! path; file objects are read-only (409 naming the file and key path); a created key works on the
//! proxy at once and a revoked one is refused at once; a stream in flight survives a change; a
//! backend's key cooldowns survive a change to another backend; API objects survive a restart,
//! and a name defined both in the file and the database stops the start naming both; upstream
//! keys never appear in answers or in the database file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use octo_core::Protocol;
use octo_test::gateway::server_bin;
use octo_test::{Gateway, Prompt, client, mock};
use serde_json::{Value, json};

const TOKEN: &str = "cp-test-admin-token-0001";
const SECRET: &str = "0101010101010101010101010101010101010101010101010101010101010101";

fn dir(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("control-plane-{test}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn yaml(mock: &str, extra_backends: &str) -> String {
    format!(
        r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{TOKEN}"]}}
backends:
  oa:
    base_url: "{mock}"
    protocol: openai_chat
    api_keys: ["sk-upstream-one-0001", "sk-upstream-two-0002"]
    key_cooldown: 10m
  brk:
    base_url: "{mock}"
    protocol: openai_chat
    circuit_breaker: {{failures: 1, cooldown: 10m}}
{extra_backends}models:
  chat: {{targets: [{{backend: oa, model: up-chat}}]}}
  fragile: {{targets: [{{backend: brk, model: up-fragile}}], retry: {{max_attempts: 1}}}}
  secure: {{access: internal, targets: [{{backend: oa, model: up-secure}}]}}
orgs:
  acme: {{api_keys: {{alice: "sk-acme-alice-key"}}}}
"#
    )
}

fn envs(dir: &Path) -> Vec<(String, String)> {
    vec![
        (
            "OCTOLLM_STORAGE".into(),
            format!("sqlite://{}", dir.join("octollm.db").display()),
        ),
        ("OCTOLLM_SECRET_KEY".into(), SECRET.into()),
    ]
}

fn start(dir: &Path, yaml: &str) -> Gateway {
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    Gateway::start_file(&path, &envs(dir))
}

/// An admin API call with `token` (none when `None`): status and JSON body (`null` when empty).
async fn call(
    gw: &Gateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let reply = gw
        .admin(method, path)
        .maybe_token(token)
        .maybe_json(body.as_ref())
        .send()
        .await;
    (reply.status, reply.json_or_null())
}

async fn api(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call(gw, method, path, Some(TOKEN), body).await
}

async fn chat(gw: &Gateway, model: &str, key: Option<&str>) -> u16 {
    let p = Prompt::new(Protocol::OpenAiChat, model, "hi");
    let mut req = client()
        .post(format!("{}{}", gw.url, p.path()))
        .header("content-type", "application/json")
        .body(p.body());
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap().status().as_u16()
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn every_route_needs_the_token_and_file_objects_are_read_only() {
    let mock = mock().await;
    let d = dir("auth");
    let gw = start(&d, &yaml(&mock.url(), ""));
    let routes = [
        ("GET", "/api/v1/backends"),
        ("POST", "/api/v1/backends"),
        ("GET", "/api/v1/backends/oa"),
        ("PUT", "/api/v1/backends/oa"),
        ("DELETE", "/api/v1/backends/oa"),
        ("GET", "/api/v1/models"),
        ("POST", "/api/v1/models"),
        ("GET", "/api/v1/orgs/acme"),
        ("GET", "/api/v1/prices"),
        ("POST", "/api/v1/prices"),
        ("GET", "/api/v1/keys"),
        ("POST", "/api/v1/keys"),
        ("DELETE", "/api/v1/keys/acme/alice"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/health"),
        ("GET", "/api/v1/backends/oa/health"),
        ("POST", "/api/v1/backends/oa/test"),
        ("POST", "/api/v1/backends/oa/models/sync"),
        ("GET", "/api/v1/backends/oa/models"),
        ("GET", "/api/v1/models/chat"),
        ("PUT", "/api/v1/models/chat"),
        ("DELETE", "/api/v1/models/chat"),
        ("GET", "/api/v1/orgs"),
        ("POST", "/api/v1/orgs"),
        ("PUT", "/api/v1/orgs/acme"),
        ("DELETE", "/api/v1/orgs/acme"),
        ("GET", "/api/v1/prices/p"),
        ("PUT", "/api/v1/prices/p"),
        ("DELETE", "/api/v1/prices/p"),
        ("GET", "/api/v1/logs"),
        ("GET", "/api/v1/logs/some-id"),
        ("GET", "/api/v1/stats"),
        ("GET", "/api/v1/limits"),
        ("GET", "/api/v1/config"),
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("DELETE", "/api/v1/users/ada"),
        ("GET", "/api/v1/me"),
        ("GET", "/metrics"),
    ];
    for (method, path) in routes {
        let (s, v) = call(&gw, method, path, None, Some(json!({}))).await;
        assert_eq!(s, 401, "{method} {path} without a token: {v}");
        let (s, v) = call(
            &gw,
            method,
            path,
            Some("wrong-token-wrong-token"),
            Some(json!({})),
        )
        .await;
        assert_eq!(s, 401, "{method} {path} with a wrong token: {v}");
        assert!(message(&v).contains("not valid"), "{v}");
    }

    // File objects are listed with their source, masked, and refused for changes.
    let (s, v) = api(&gw, "GET", "/api/v1/backends", None).await;
    assert_eq!(s, 200, "{v}");
    let oa = &v["data"][0];
    assert_eq!(oa["name"], "oa");
    assert_eq!(oa["source"], "file");
    assert_eq!(oa["api_keys"], json!(["****0001", "****0002"]));
    assert!(!v.to_string().contains("sk-upstream"), "{v}");
    let config = d.join("gateway.yaml").display().to_string();
    for (method, body) in [
        ("PUT", Some(json!({"base_url": "http://x"}))),
        ("DELETE", None),
    ] {
        let (s, v) = api(&gw, method, "/api/v1/backends/oa", body).await;
        assert_eq!(s, 409, "{method}: {v}");
        assert!(message(&v).contains(&config), "{v}");
        assert!(message(&v).contains("`backends.oa`"), "{v}");
    }
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/backends",
        Some(json!({"name": "oa", "base_url": "http://x", "protocol": "anthropic"})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    let (s, v) = api(&gw, "DELETE", "/api/v1/keys/acme/alice", None).await;
    assert_eq!(s, 409, "{v}");
    assert!(message(&v).contains("orgs.acme.api_keys.alice"), "{v}");

    // Validation errors name the field, as the file's do.
    let cases = [
        (
            "/api/v1/backends",
            json!({"name": "b2", "base_url": "ftp://nowhere", "protocol": "openai_chat"}),
            "backends.b2.base_url",
        ),
        (
            "/api/v1/backends",
            json!({"name": "b3", "base_url": "http://x", "protocol": "openai_chat", "timeouts": {"conect": "5s"}}),
            "backends.b3.timeouts",
        ),
        (
            "/api/v1/models",
            json!({"name": "m2", "targets": [{"backend": "nope"}]}),
            "models.m2.targets[0].backend",
        ),
        (
            "/api/v1/prices",
            json!({"name": "p", "input": -1, "output": 2}),
            "prices.p.input",
        ),
        ("/api/v1/keys", json!({"name": "k"}), "org"),
        ("/api/v1/keys", json!({"org": "nope", "name": "k"}), "`org`"),
        (
            "/api/v1/keys",
            json!({"org": "acme", "name": "k", "rate_limit": {"rpm": 0}}),
            "orgs.acme.api_keys.k.rate_limit.rpm",
        ),
        (
            "/api/v1/keys",
            json!({"org": "acme", "name": "k", "budget": {"usd": 5, "period": "year"}}),
            "budget.period",
        ),
        (
            "/api/v1/keys",
            json!({"org": "acme", "name": "k", "expires": "soon"}),
            "`expires`",
        ),
        ("/api/v1/models", json!({"targets": []}), "`name`"),
    ];
    for (path, body, field) in cases {
        let (s, v) = api(&gw, "POST", path, Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(message(&v).contains(field), "{body}: `{field}` not in {v}");
    }
    // Nothing of that was applied.
    let (_, v) = api(&gw, "GET", "/api/v1/models", None).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 3, "{v}");
}

#[tokio::test]
async fn objects_and_keys_apply_at_once_survive_a_restart_and_are_audited() {
    let mock = mock().await;
    let d = dir("lifecycle");
    let gw = start(&d, &yaml(&mock.url(), ""));

    // A backend and a model through the API: in force when the answer comes.
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/backends",
        Some(
            json!({"name": "an", "base_url": mock.url(), "protocol": "anthropic",
            "api_key": "sk-upstream-api-made-9999"}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["source"], "api");
    assert_eq!(v["api_key"], "****9999");
    assert_eq!(chat(&gw, "claude", None).await, 404);
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/models",
        Some(json!({"name": "claude", "targets": [{"backend": "an", "model": "up-claude"}]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(chat(&gw, "claude", None).await, 200);
    // Sending the masked answer back keeps the key; a price and an org too.
    let (_, mut an) = api(&gw, "GET", "/api/v1/backends/an", None).await;
    an["timeouts"] = json!({"connect": "3s"});
    let (s, v) = api(&gw, "PUT", "/api/v1/backends/an", Some(an)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["api_key"], "****9999");
    assert_eq!(chat(&gw, "claude", None).await, 200);
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/prices",
        Some(json!({"name": "claude", "input": 3, "output": 15})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/orgs",
        Some(json!({"name": "beta", "models": {"secure": null}})),
    )
    .await;
    assert_eq!(s, 201, "{v}");

    // A key: shown once, usable at once, listed without it, revoked at once.
    assert_eq!(chat(&gw, "secure", None).await, 401);
    let (s, created) = api(
        &gw,
        "POST",
        "/api/v1/keys",
        Some(json!({"org": "beta", "name": "ci", "models": ["secure"],
            "expires": "2099-01-01T00:00:00Z", "rate_limit": {"rpm": 60}, "budget": {"usd": 5, "period": "month"}})),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk-octo-"), "{created}");
    assert_eq!(created["source"], "api");
    assert_eq!(created["rate_limit"], json!({"rpm": 60}));
    assert_eq!(chat(&gw, "secure", Some(&key)).await, 200);
    assert_eq!(
        chat(&gw, "chat", Some(&key)).await,
        403,
        "the key is limited to `secure`"
    );
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/keys",
        Some(json!({"org": "beta", "name": "ci"})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    // Last use and spend are written in batches: poll the list with a deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = api(&gw, "GET", "/api/v1/keys", None).await;
        assert!(!v.to_string().contains(&key), "never the key: {v}");
        let ci = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == "ci")
            .cloned()
            .unwrap();
        // Last use and the request count (from the log's rollups, written in batches too).
        if ci["last_used_at"].is_i64() && ci["requests"].as_u64() >= Some(1) {
            assert!(ci["spend_usd"].is_number(), "{ci}");
            assert_eq!(ci["org"], "beta");
            assert_eq!(ci["expires"], "2099-01-01T00:00:00Z");
            break;
        }
        assert!(Instant::now() < deadline, "last use never recorded: {ci}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Restart on the same database: everything is back.
    assert!(gw.terminate());
    let mut gw = start(&d, &yaml(&mock.url(), ""));
    assert_eq!(chat(&gw, "claude", None).await, 200);
    assert_eq!(chat(&gw, "secure", Some(&key)).await, 200);
    let (_, v) = api(&gw, "GET", "/api/v1/backends/an", None).await;
    assert_eq!(v["source"], "api", "{v}");
    assert_eq!(v["updated_by"], "token:0", "{v}");

    let (s, _) = api(&gw, "DELETE", "/api/v1/keys/beta/ci", None).await;
    assert_eq!(s, 204);
    assert_eq!(
        chat(&gw, "secure", Some(&key)).await,
        401,
        "revoked at once"
    );
    let (s, v) = api(&gw, "DELETE", "/api/v1/backends/an", None).await;
    assert_eq!(s, 400, "a model still targets it: {v}");
    assert!(
        message(&v).contains("models.claude.targets[0].backend"),
        "{v}"
    );

    // The audit trail, newest first, with who and what, secrets masked.
    let (s, v) = api(&gw, "GET", "/api/v1/audit?limit=3", None).await;
    assert_eq!(s, 200, "{v}");
    let first = &v["data"][0];
    assert_eq!(first["action"], "delete");
    assert_eq!(first["kind"], "keys");
    assert_eq!(first["name"], "beta/ci");
    assert_eq!(first["actor"], "token:0");
    let next = v["next"].as_i64().unwrap();
    let (_, all) = api(
        &gw,
        "GET",
        &format!("/api/v1/audit?before={next}&limit=100"),
        None,
    )
    .await;
    let text = all.to_string();
    assert!(
        text.contains("\"create\"") && text.contains("\"update\""),
        "{text}"
    );
    assert!(!text.contains("sk-upstream-api-made"), "{text}");
    let (s, _) = api(&gw, "GET", "/api/v1/audit?limit=0", None).await;
    assert_eq!(s, 400);

    // A file reload is audited as actor `file`.
    std::fs::write(
        d.join("gateway.yaml"),
        yaml(
            &mock.url(),
            "  extra: {base_url: \"http://127.0.0.1:9\", protocol: gemini}\n",
        ),
    )
    .unwrap();
    gw.signal("-HUP");
    let line = gw.next_line();
    assert!(line.contains("reloaded"), "{line}");
    let (_, v) = api(&gw, "GET", "/api/v1/audit?limit=1", None).await;
    assert_eq!(v["data"][0]["actor"], "file", "{v}");
    assert_eq!(
        v["data"][0]["detail"]["backends"]["added"],
        json!(["extra"]),
        "{v}"
    );

    // The database never holds an upstream key.
    assert!(gw.terminate());
    let db = std::fs::read(d.join("octollm.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
    assert!(
        !db.contains("sk-upstream-api-made"),
        "plaintext upstream key in the database"
    );
    assert!(!db.contains(&key), "plaintext gateway key in the database");

    // A name in both the file and the database stops the start, naming both.
    let both = yaml(
        &mock.url(),
        &format!(
            "  an: {{base_url: \"{}\", protocol: anthropic}}\n",
            mock.url()
        ),
    );
    std::fs::write(d.join("gateway.yaml"), &both).unwrap();
    let out = std::process::Command::new(server_bin())
        .arg("--config")
        .arg(d.join("gateway.yaml"))
        .env("OCTOLLM_LISTEN", "127.0.0.1:0")
        .envs(envs(&d))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("backends.an"), "{err}");
    assert!(
        err.contains("gateway.yaml") && err.contains("admin API"),
        "{err}"
    );
}

#[tokio::test]
async fn backend_state_and_streams_survive_changes() {
    let mock = mock().await;
    let d = dir("state");
    let gw = start(&d, &yaml(&mock.url(), ""));

    // A success first: `oa`'s key #1 (or #2) and the model's target learn a latency.
    assert_eq!(chat(&gw, "chat", None).await, 200);
    // `brk`'s breaker opens on one server error (failures: 1, cooldown: 10m).
    let failing = Prompt::new(Protocol::OpenAiChat, "fragile", "[mock:status=500]");
    assert_eq!(gw.send(&failing).await.status().as_u16(), 500);
    let (_, brk) = api(&gw, "GET", "/api/v1/backends/brk/health", None).await;
    assert_eq!(
        brk["keys"][0]["models"][0]["breaker"]["state"], "open",
        "{brk}"
    );
    // Both keys of `oa` answered 401: both rest (key_cooldown: 10m), and the client gets the
    // gateway's 502 (its own key was fine).
    let limited = Prompt::new(Protocol::OpenAiChat, "chat", "[mock:status=401]");
    let s = gw.send(&limited).await.status().as_u16();
    assert_eq!(s, 502);
    let resting = |v: &Value| {
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["cooling_for_ms"].as_u64().is_some_and(|ms| ms > 0))
            .count()
    };
    let (s, health) = api(&gw, "GET", "/api/v1/backends/oa/health", None).await;
    assert_eq!(s, 200, "{health}");
    assert_eq!(resting(&health), 2, "{health}");
    assert_eq!(
        health["keys"][0]["recent_errors"][0]["status"], 502,
        "{health}"
    );
    assert!(!health.to_string().contains("sk-upstream"), "{health}");

    // A stream in flight across a change.
    let slow = Prompt::new(
        Protocol::Anthropic,
        "slowclaude",
        "[mock:events=8][mock:interval_ms=150] hello",
    )
    .stream(true);
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/backends",
        Some(json!({"name": "an", "base_url": mock.url(), "protocol": "anthropic"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/models",
        Some(json!({"name": "slowclaude", "targets": [{"backend": "an"}]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let resp = gw.send(&slow).await;
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());

    // An unrelated change (another backend) while the stream runs.
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/backends",
        Some(json!({"name": "gem", "base_url": mock.url(), "protocol": "gemini"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api(&gw, "DELETE", "/api/v1/models/slowclaude", None).await;
    assert_eq!(s, 204, "{v}");
    let mut rest = first.to_vec();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("message_stop"), "the stream finished: {text}");
    assert_eq!(
        chat(&gw, "slowclaude", None).await,
        404,
        "the change is in force"
    );

    // `oa` and `brk` did not change: keys still rest, the breaker is still open, the latency
    // averages and recent errors are the same.
    let (_, after) = api(&gw, "GET", "/api/v1/backends/oa/health", None).await;
    assert_eq!(resting(&after), 2, "key cooldowns survive: {after}");
    assert_eq!(
        after["keys"][0]["recent_errors"],
        health["keys"][0]["recent_errors"]
    );
    assert!(
        !health["latency"].as_array().unwrap().is_empty(),
        "{health}"
    );
    assert_eq!(
        after["latency"], health["latency"],
        "latency averages survive"
    );
    let key_latency = |v: &Value| {
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["models"][0]["latency_ms"].clone())
            .collect::<Vec<_>>()
    };
    assert!(key_latency(&health).iter().any(Value::is_f64), "{health}");
    assert_eq!(key_latency(&after), key_latency(&health));
    let (_, brk_after) = api(&gw, "GET", "/api/v1/backends/brk/health", None).await;
    assert_eq!(
        brk_after["keys"][0]["models"][0]["breaker"]["state"], "open",
        "the breaker survives: {brk_after}"
    );
    // An API backend replaced with new settings is in force.
    let (_, mut an) = api(&gw, "GET", "/api/v1/backends/an", None).await;
    an["timeouts"] = json!({"connect": "2s"});
    let (s, v) = api(&gw, "PUT", "/api/v1/backends/an", Some(an)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["timeouts"]["connect"], "2s", "{v}");
}

#[tokio::test]
async fn test_request_and_model_sync() {
    let mock = mock().await;
    let d = dir("test_sync");
    let gw = start(&d, &yaml(&mock.url(), ""));
    let (s, v) = api(&gw, "POST", "/api/v1/backends/oa/test", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["model"], "up-chat", "{v}");
    assert!(v["latency_ms"].as_f64().is_some(), "{v}");
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/backends/oa/test",
        Some(json!({"model": "[mock:status=401]"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], false, "{v}");
    assert!(!v.to_string().contains("sk-upstream"), "{v}");
    let (s, v) = api(&gw, "POST", "/api/v1/backends/oa/models/sync", None).await;
    assert_eq!(s, 200, "{v}");
    let models = v["models"].as_array().unwrap();
    assert!(!models.is_empty(), "{v}");
    let (s, v) = api(&gw, "GET", "/api/v1/backends/nope/health", None).await;
    assert_eq!(s, 404, "{v}");

    // Anthropic and Gemini list shapes; which ids are exposed, and as what.
    for (name, protocol) in [("an", "anthropic"), ("gem", "gemini")] {
        let (s, v) = api(
            &gw,
            "POST",
            "/api/v1/backends",
            Some(json!({"name": name, "base_url": mock.url(), "protocol": protocol, "api_key": "sk-upstream-list-key"})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/models",
        Some(json!({"name": "g4", "targets": [{"backend": "gem", "model": "mock-gpt-4o"}]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    for name in ["an", "gem"] {
        let (s, v) = api(
            &gw,
            "POST",
            &format!("/api/v1/backends/{name}/models/sync"),
            None,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let ids: Vec<&str> = v["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&"mock-claude-sonnet"), "{name}: {v}");
        let g4 = v["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == "mock-gpt-4o")
            .unwrap();
        assert_eq!(g4["exposed"], name == "gem", "{name}: {v}");
        if name == "gem" {
            assert_eq!(g4["exposed_as"], json!(["g4"]));
        }
    }
    // The last list read is kept; a backend with `models_sync_interval` is read on its own.
    let (s, v) = api(&gw, "GET", "/api/v1/backends/an/models", None).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["synced_at"].is_i64(), "{v}");
    let (s, v) = api(&gw, "GET", "/api/v1/backends/oa/models", None).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/backends",
        Some(json!({"name": "auto", "base_url": mock.url(), "protocol": "openai_chat", "models_sync_interval": "1h"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    eventually("the interval sync ran", async || {
        let (s, v) = api(&gw, "GET", "/api/v1/backends/auto/health", None).await;
        s == 200 && v["models_sync"]["models"].as_u64().is_some_and(|n| n > 0)
    })
    .await;
    // What the mock received: each protocol's list call with its own auth header.
    let seen = mock.requests();
    let lists: Vec<_> = seen
        .iter()
        .filter(|r| r.path_and_query.ends_with("/models"))
        .collect();
    assert!(
        lists
            .iter()
            .any(|r| r.path_and_query == "/v1beta/models"
                && r.headers.get("x-goog-api-key").is_some())
    );
    assert!(lists.iter().any(|r| r.path_and_query == "/v1/models"
        && r.headers.get("anthropic-version").is_some()
        && r.headers.get("x-api-key").is_some()));
}

/// Polls `check` until it holds, for at most 10 s (other instances poll the change counter every
/// second).
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The databases the two-instance test runs on: a SQLite file always; PostgreSQL (a fresh schema)
/// and MySQL (a fresh database) when `scripts/services.sh` started them.
async fn shared_databases(d: &Path) -> Vec<(&'static str, String)> {
    use sqlx::Connection;
    let mut out = vec![(
        "sqlite",
        format!("sqlite://{}", d.join("shared.db").display()),
    )];
    if let Ok(url) = std::env::var("OCTOLLM_TEST_POSTGRES_URL") {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("DROP SCHEMA IF EXISTS cp_two CASCADE; CREATE SCHEMA cp_two")
            .execute(&mut c)
            .await
            .unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        out.push((
            "postgres",
            format!("{url}{sep}options=-c%20search_path%3Dcp_two"),
        ));
    } else {
        eprintln!("skipping PostgreSQL: OCTOLLM_TEST_POSTGRES_URL is not set");
    }
    if let Ok(url) = std::env::var("OCTOLLM_TEST_MYSQL_URL") {
        let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("DROP DATABASE IF EXISTS octollm_cp_two; CREATE DATABASE octollm_cp_two")
            .execute(&mut c)
            .await
            .unwrap();
        let (base, query) = url
            .split_once('?')
            .map_or((url.as_str(), None), |(b, q)| (b, Some(q)));
        let base = &base[..base.rfind('/').unwrap()];
        out.push((
            "mysql",
            match query {
                Some(q) => format!("{base}/octollm_cp_two?{q}"),
                None => format!("{base}/octollm_cp_two"),
            },
        ));
    } else {
        eprintln!("skipping MySQL: OCTOLLM_TEST_MYSQL_URL is not set");
    }
    out
}

#[tokio::test]
async fn a_change_on_one_instance_reaches_another_on_the_same_database() {
    let mock = mock().await;
    let d = dir("two");
    for (db, url) in shared_databases(&d).await {
        two_instances(&mock.url(), &d.join(db), &url, db == "postgres").await;
    }
}

/// On PostgreSQL a change reaches the other instance by notification (LISTEN/NOTIFY; the counter
/// is still polled as the fallback); MySQL and SQLite poll.
async fn two_instances(mock: &str, d: &Path, url: &str, notify: bool) {
    let env = vec![
        ("OCTOLLM_STORAGE".to_owned(), url.to_owned()),
        ("OCTOLLM_SECRET_KEY".to_owned(), SECRET.to_owned()),
    ];
    let mut gateways = Vec::new();
    for n in ["one", "two"] {
        let dir = d.join(n);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.yaml");
        std::fs::write(&path, yaml(mock, "")).unwrap();
        // Same database, same sealing key, another process.
        gateways.push(Gateway::start_file(&path, &env));
    }
    let (one, two) = (&gateways[0], &gateways[1]);
    let way = if notify { "notify" } else { "poll" };
    for gw in [one, two] {
        eventually("the instance follows the database", async || {
            let (s, v) = api(gw, "GET", "/api/v1/health", None).await;
            s == 200 && v["control_plane"]["follow"] == way
        })
        .await;
    }

    let (s, created) = api(
        one,
        "POST",
        "/api/v1/keys",
        Some(json!({"org": "acme", "name": "shared"})),
    )
    .await;
    assert_eq!(s, 201, "{url}: {created}");
    let key = created["key"].as_str().unwrap().to_owned();
    eventually("the key works on the other instance", async || {
        chat(two, "secure", Some(&key)).await == 200
    })
    .await;
    let (_, health) = api(two, "GET", "/api/v1/health", None).await;
    assert_eq!(health["control_plane"]["api_objects"], "loaded", "{health}");
    if notify {
        // The notification arrived (whether it or the fallback poll applied the change first).
        eventually("the other instance was notified", async || {
            let (_, v) = api(two, "GET", "/api/v1/health", None).await;
            v["control_plane"]["notifications"].as_u64() >= Some(1)
        })
        .await;
    } else {
        assert_eq!(health["control_plane"]["notifications"], 0, "{health}");
    }
    let (s, v) = api(
        one,
        "POST",
        "/api/v1/backends",
        Some(json!({"name": "an", "base_url": mock, "protocol": "anthropic", "api_key": "sk-upstream-shared-7777"})),
    )
    .await;
    assert_eq!(s, 201, "{url}: {v}");
    eventually("the backend shows on the other instance", async || {
        let (s, v) = api(two, "GET", "/api/v1/backends/an", None).await;
        s == 200 && v["api_key"] == "****7777"
    })
    .await;
    let (s, _) = api(one, "DELETE", "/api/v1/keys/acme/shared", None).await;
    assert_eq!(s, 204);
    eventually("the revocation reaches the other instance", async || {
        chat(two, "secure", Some(&key)).await == 401
    })
    .await;
    let (_, health) = api(two, "GET", "/api/v1/health", None).await;
    let applied = &health["control_plane"]["applied"];
    if notify {
        // Three changes, each applied at once on notification unless the 5 s fallback poll
        // happened to run in the instant between the commit and the notification.
        assert!(applied["notify"].as_u64() >= Some(1), "{health}");
    } else {
        assert_eq!(applied["notify"], 0, "{health}");
        assert!(applied["poll"].as_u64() >= Some(1), "{health}");
    }
}

/// `octollm-server --check` with the same environment as the gateway in `dir`: exit status,
/// stdout, stderr.
fn check(dir: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(server_bin())
        .arg("--config")
        .arg(dir.join("gateway.yaml"))
        .arg("--check")
        .args(extra)
        .envs(envs(dir))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn check_validates_the_file_with_the_objects_stored_through_the_api() {
    let mock = mock().await;
    let d = dir("check");
    // No database yet: the file alone, and nothing is created.
    std::fs::write(d.join("gateway.yaml"), yaml(&mock.url(), "")).unwrap();
    let (code, out, err) = check(&d, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("OK (2 backends, 3 models) with 0 objects and 0 keys"),
        "{out}"
    );
    assert!(!d.join("octollm.db").exists(), "--check made the database");

    let gw = start(&d, &yaml(&mock.url(), ""));
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/backends",
        Some(json!({"name": "an", "base_url": mock.url(), "protocol": "anthropic", "api_key": "sk-upstream-check-0001"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/models",
        Some(json!({"name": "claude", "targets": [{"backend": "an"}]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/keys",
        Some(json!({"org": "acme", "name": "ci"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert!(gw.terminate());
    let db = std::fs::read(d.join("octollm.db")).unwrap();

    // The merged config: the file's objects and the stored ones.
    let (code, out, err) = check(&d, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(
            "OK (3 backends, 4 models) with 2 objects and 1 keys stored through the admin API"
        ),
        "{out}"
    );

    // A name in both places: refused, naming the key path and both places.
    std::fs::write(
        d.join("gateway.yaml"),
        yaml(
            &mock.url(),
            &format!(
                "  an: {{base_url: \"{}\", protocol: anthropic}}\n",
                mock.url()
            ),
        ),
    )
    .unwrap();
    let (code, out, err) = check(&d, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("backends.an"), "{err}");
    assert!(
        err.contains("gateway.yaml") && err.contains("admin API"),
        "{err}"
    );

    // A file change that breaks a stored key: its org is gone.
    std::fs::write(
        d.join("gateway.yaml"),
        yaml(&mock.url(), "").replace("orgs:\n  acme:", "orgs:\n  other:"),
    )
    .unwrap();
    let (code, _, err) = check(&d, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("orgs.acme.api_keys.ci"), "{err}");

    // The database does not answer: the file alone, said so, exit status 3.
    std::fs::write(d.join("gateway.yaml"), yaml(&mock.url(), "")).unwrap();
    let (code, out, err) = check(&d, &["--storage", "postgres://octollm@127.0.0.1:1/none"]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(err.contains("did not answer"), "{err}");
    assert!(
        out.contains("OK (2 backends, 3 models) (the file alone)"),
        "{out}"
    );
    // `--storage off`: the file alone on purpose.
    let (code, out, err) = check(&d, &["--storage", "off"]);
    assert_eq!(code, Some(0), "{out}{err}");

    // Nothing was changed in the database.
    assert_eq!(std::fs::read(d.join("octollm.db")).unwrap(), db);
}

#[tokio::test]
async fn the_budget_of_a_key_made_through_the_api_survives_a_restart() {
    let mock = mock().await;
    let d = dir("budget");
    let gw = start(&d, &yaml(&mock.url(), ""));
    // One token costs a cent: one request spends far more than the $0.05 budget.
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/prices",
        Some(json!({"name": "chat", "input": 10000, "output": 10000})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, created) = api(
        &gw,
        "POST",
        "/api/v1/keys",
        Some(json!({"org": "acme", "name": "capped", "budget": {"usd": 0.05, "period": "day"}})),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(chat(&gw, "chat", Some(&key)).await, 200);
    assert_eq!(
        chat(&gw, "chat", Some(&key)).await,
        429,
        "the budget is spent"
    );
    // Once the request is in the log, a restart reads the day's spend back.
    eventually("the record is written", async || {
        let (s, v) = api(&gw, "GET", "/api/v1/logs?user=capped", None).await;
        s == 200 && v["data"].as_array().is_some_and(|d| !d.is_empty())
    })
    .await;
    assert!(gw.terminate());
    let gw = start(&d, &yaml(&mock.url(), ""));
    assert_eq!(
        chat(&gw, "chat", Some(&key)).await,
        429,
        "the spend was forgotten"
    );
}

/// The upstream model that served a chat request to `model` with the sticky session `session`
/// (none: not sticky).
async fn served_by(
    gw: &Gateway,
    mock: &octo_mock::MockServer,
    model: &str,
    session: Option<&str>,
) -> String {
    let p = Prompt::new(Protocol::OpenAiChat, model, "hi");
    let headers: Vec<(&str, &str)> = session.map(|s| ("x-session-id", s)).into_iter().collect();
    let r = gw.post(&p.path(), p.body(), &headers).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let last = mock.requests().pop().unwrap().body_json().unwrap();
    last["model"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn balancer_state_and_slots_in_flight_survive_a_key_creation() {
    let mock = mock().await;
    let d = dir("carry");
    let yaml = format!(
        r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{TOKEN}"]}}
backends:
  oa: {{base_url: "{}", protocol: openai_chat}}
models:
  pinned:
    targets: [{{backend: oa, model: up-a}}, {{backend: oa, model: up-b}}]
    strategy: round_robin
    sticky: 5m
  held: {{targets: [{{backend: oa, model: up-held}}], max_concurrency: 1}}
  plain: {{targets: [{{backend: oa, model: up-plain}}]}}
orgs:
  acme: {{api_keys: {{alice: "sk-acme-alice-key"}}}}
"#,
        mock.url()
    );
    let gw = start(&d, &yaml);
    // Round robin: a, then the session pinned to b, then a again (the rotation at 3).
    assert_eq!(served_by(&gw, &mock, "pinned", None).await, "up-a");
    assert_eq!(served_by(&gw, &mock, "pinned", Some("s1")).await, "up-b");
    assert_eq!(served_by(&gw, &mock, "pinned", None).await, "up-a");
    // A stream holds `held`'s one slot.
    let resp = gw
        .send(
            &Prompt::new(
                Protocol::OpenAiChat,
                "held",
                "[mock:events=100] [mock:interval_ms=100]",
            )
            .stream(true),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let mut chunks = resp.bytes_stream();
    assert!(chunks.next().await.unwrap().is_ok());
    assert_eq!(chat(&gw, "held", None).await, 429);

    // A key created through the admin API rebuilds the graph.
    let (s, created) = api(
        &gw,
        "POST",
        "/api/v1/keys",
        Some(json!({"org": "acme", "name": "ci"})),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(
        chat(&gw, "plain", Some(&key)).await,
        200,
        "the new graph is in force"
    );

    // The rotation goes on where it was (at 3: b, then a; a fresh one would start at a), and the
    // session is still pinned to b (a fresh balancer would give it a, at 5).
    assert_eq!(served_by(&gw, &mock, "pinned", None).await, "up-b");
    assert_eq!(served_by(&gw, &mock, "pinned", None).await, "up-a");
    assert_eq!(served_by(&gw, &mock, "pinned", Some("s1")).await, "up-b");
    // The stream started on the old graph still holds the slot on the new one.
    assert_eq!(chat(&gw, "held", None).await, 429);
    drop(chunks);
    let deadline = Instant::now() + Duration::from_secs(20);
    while chat(&gw, "held", None).await == 429 {
        assert!(Instant::now() < deadline, "the slot was never given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
