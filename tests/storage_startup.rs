//! Starting the gateway while its request log's database is down: it serves at once, says so,
//! exports `octollm_log_database_up 0`, answers the admin log routes with 503, keeps the records,
//! and writes every one once the database is back. The control plane meanwhile serves the file's
//! objects only, says so, and applies the objects and keys stored through the admin API once the
//! database answers. A SQLite file that cannot be opened is a startup error naming `storage.url`.
//!
//! The PostgreSQL part runs when `OCTOLLM_TEST_POSTGRES_URL` and `OCTOLLM_TEST_POSTGRES_CTL`
//! (written by `scripts/services.sh`) are set, and is skipped with the reason otherwise. Its own
//! test binary, so stopping the server disturbs no other test.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use octo_core::Protocol;
use octo_test::http::text;
use octo_test::service::{self, Restart, ctl};
use octo_test::{Gateway, Prompt, client, mock};

const TOKEN: &str = "a-test-admin-token-0123456789";

async fn send(gw: &Gateway) -> String {
    gw.send_for_id(&Prompt::new(
        Protocol::OpenAiChat,
        "logged",
        "started while down",
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_while_the_database_is_down_serves_and_keeps_its_records() {
    let Some((url, control)) = service::postgres() else {
        return;
    };
    let _one = SERVER.lock().await;
    let mock = mock().await;
    let yaml = format!(
        r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{TOKEN}"]}}
backends:
  up: {{base_url: "{}", protocol: openai_chat}}
models:
  logged: {{targets: [{{backend: up}}], retry: {{max_attempts: 1}}}}
"#,
        mock.url()
    );
    ctl(&control, "stop");
    let mut restart = Restart(&control, true);
    // Starts (Gateway::start_with waits for its listening line) although the database is down.
    let gw = Gateway::start_with(&yaml, &["--storage", &url]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(send(&gw).await);
    }
    assert_eq!(gw.metric(TOKEN, "octollm_log_database_up").await, 0.0);
    assert_eq!(gw.metric(TOKEN, "octollm_log_records_pending").await, 3.0);
    let (status, body) = gw.admin_get("/api/v1/logs", TOKEN).await.status_and_body();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not available yet"), "{body}");

    ctl(&control, "start");
    restart.1 = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        loop {
            let (status, _) = gw
                .admin_get(&format!("/api/v1/logs/{id}"), TOKEN)
                .await
                .status_and_body();
            if status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "record {id} not written after the database came back: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(gw.metric(TOKEN, "octollm_log_database_up").await, 1.0);
    assert_eq!(
        gw.metric(TOKEN, "octollm_log_records_dropped_total").await,
        0.0
    );
    assert!(gw.terminate(), "clean exit after SIGTERM");
}

#[test]
fn a_sqlite_file_that_cannot_be_opened_fails_startup_naming_storage_url() {
    let dir = std::env::temp_dir().join(format!("octollm-no-such-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = std::env::temp_dir().join(format!("octollm-startup-{}.yaml", std::process::id()));
    std::fs::write(
        &config,
        "listen: \"127.0.0.1:0\"\nbackends:\n  up: {base_url: \"http://127.0.0.1:9\", protocol: openai_chat}\nmodels:\n  m: {targets: [{backend: up}]}\n",
    )
    .unwrap();
    let out = Command::new(octo_test::gateway::server_bin())
        .arg("--config")
        .arg(&config)
        .arg("--storage")
        .arg(format!("sqlite://{}/log.db", dir.display()))
        .arg("--admin-listen")
        .arg("127.0.0.1:0")
        .env("OCTOLLM_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run octollm-server");
    let _ = std::fs::remove_file(&config);
    assert!(
        !out.status.success(),
        "started with an unopenable SQLite file"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("storage.url"), "{stderr}");
}

/// Tests here stop and start the one PostgreSQL server: one at a time.
static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const USER: &str = r#"{"name": "ops", "password": "a long enough password"}"#;

const SECRET: &str = "0202020202020202020202020202020202020202020202020202020202020202";

/// An admin API call: status and JSON answer.
async fn api(gw: &Gateway, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut call = gw.admin(method, path).token(TOKEN);
    if !body.is_empty() {
        call = call.json(&serde_json::from_str(body).expect("a JSON body"));
    }
    let reply = call.send().await;
    (
        reply.status,
        serde_json::from_str(&reply.body).unwrap_or_default(),
    )
}

async fn chat(gw: &Gateway, key: &str) -> u16 {
    let prompt = Prompt::new(Protocol::OpenAiChat, "secure", "hi");
    let resp = client()
        .post(format!("{}{}", gw.url, prompt.path()))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(prompt.body())
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

/// A Responses API request (to a Chat backend: the gateway keeps the conversation) continuing
/// `previous`: status and the answer's id.
async fn respond(gw: &Gateway, previous: Option<&str>) -> (u16, String) {
    let mut body = serde_json::json!({"model": "secure", "input": "hi"});
    if let Some(p) = previous {
        body["previous_response_id"] = p.into();
    }
    let resp = client()
        .post(format!("{}/v1/responses", gw.url))
        .bearer_auth("sk-acme-file-key-0001")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let v: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap_or_default();
    (status, v["id"].as_str().unwrap_or_default().to_owned())
}

/// A gateway started while PostgreSQL is down serves the file's objects and keys, says that the
/// admin API's are not in force (health `degraded`, `api_objects: pending`, the metric at 0),
/// refuses changes with 503, and applies the stored objects and keys once PostgreSQL answers: a
/// key made through the admin API before the outage then works, and a panel user made through it
/// signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_objects_stored_before_an_outage_apply_once_the_database_answers() {
    let Some((url, control)) = service::postgres() else {
        return;
    };
    let _one = SERVER.lock().await;
    // A schema of its own.
    {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("DROP SCHEMA IF EXISTS startup_cp CASCADE; CREATE SCHEMA startup_cp")
            .execute(&mut c)
            .await
            .unwrap();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}options=-c%20search_path%3Dstartup_cp");
    let mock = mock().await;
    let dir = std::env::temp_dir().join(format!("octollm-startup-cp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.yaml");
    std::fs::write(
        &path,
        format!(
            r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{TOKEN}"]}}
backends:
  up: {{base_url: "{}", protocol: openai_chat}}
models:
  secure: {{access: internal, targets: [{{backend: up}}]}}
orgs:
  acme: {{api_keys: {{file: "sk-acme-file-key-0001"}}}}
"#,
            mock.url()
        ),
    )
    .unwrap();
    let env = vec![
        ("OCTOLLM_STORAGE".to_owned(), url.clone()),
        ("OCTOLLM_SECRET_KEY".to_owned(), SECRET.to_owned()),
    ];

    // With the database up: a key made through the admin API.
    let gw = Gateway::start_file(&path, &env);
    let (s, created) = api(
        &gw,
        "POST",
        "/api/v1/keys",
        r#"{"org": "acme", "name": "ci"}"#,
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(chat(&gw, &key).await, 200);
    let (_, health) = api(&gw, "GET", "/api/v1/health", "").await;
    assert_eq!(health["control_plane"]["api_objects"], "loaded", "{health}");
    // And a panel user made through the API.
    let (s, v) = api(&gw, "POST", "/api/v1/users", USER).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(api(&gw, "POST", "/api/v1/login", USER).await.0, 200);
    assert!(gw.terminate());

    // Started while it is down: the file's key works, the API's does not yet, and it says so.
    ctl(&control, "stop");
    let mut restart = Restart(&control, true);
    let gw = Gateway::start_file(&path, &env);
    assert_eq!(chat(&gw, "sk-acme-file-key-0001").await, 200);
    assert_eq!(chat(&gw, &key).await, 401);
    let (s, health) = api(&gw, "GET", "/api/v1/health", "").await;
    assert_eq!(s, 200, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(
        health["control_plane"]["api_objects"], "pending",
        "{health}"
    );
    assert_eq!(health["storage"]["open"], false, "{health}");
    assert_eq!(
        gw.metric(TOKEN, "octollm_config_api_objects_loaded").await,
        0.0
    );
    assert_eq!(api(&gw, "POST", "/api/v1/login", USER).await.0, 401);
    // Responses answers cannot be kept or found yet: a continuation is a retryable 503.
    assert_eq!(respond(&gw, None).await.0, 200);
    assert_eq!(respond(&gw, Some("resp_0123")).await.0, 503);
    let (s, v) = api(
        &gw,
        "POST",
        "/api/v1/keys",
        r#"{"org": "acme", "name": "ci2"}"#,
    )
    .await;
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not in force yet"),
        "{v}"
    );

    // The database answers: the stored key applies without a restart.
    ctl(&control, "start");
    restart.1 = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while chat(&gw, &key).await != 200 {
        assert!(
            Instant::now() < deadline,
            "the stored key was not applied after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, health) = api(&gw, "GET", "/api/v1/health", "").await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["control_plane"]["api_objects"], "loaded", "{health}");
    assert_eq!(health["control_plane"]["follow"], "notify", "{health}");
    assert_eq!(
        gw.metric(TOKEN, "octollm_config_api_objects_loaded").await,
        1.0
    );
    // Responses answers are kept in it again.
    let (s, id) = respond(&gw, None).await;
    assert_eq!(s, 200);
    assert_eq!(respond(&gw, Some(&id)).await.0, 200);
    // The user table is taken by the sign-in code when the database opens, as the objects are
    // (two tasks woken by the same event): the key working says it has opened.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v) = api(&gw, "POST", "/api/v1/login", USER).await;
        if s == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API user cannot sign in after the database answered: {s} {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And changes are taken again.
    let (s, v) = api(&gw, "DELETE", "/api/v1/keys/acme/ci", "").await;
    assert_eq!(s, 204, "{v}");
    assert_eq!(chat(&gw, &key).await, 401);
    assert!(gw.terminate());
    let _ = std::fs::remove_dir_all(&dir);
}
