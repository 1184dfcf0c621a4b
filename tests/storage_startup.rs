//! Starting the gateway while its request log's database is down: it serves at once, says so,
//! exports `octollm_log_database_up 0`, answers the admin log routes with 503, keeps the records,
//! and writes every one once the database is back. A SQLite file that cannot be opened is a
//! startup error naming `storage.url`.
//!
//! The PostgreSQL part runs when `OCTOLLM_TEST_POSTGRES_URL` and `OCTOLLM_TEST_POSTGRES_CTL`
//! (written by `scripts/services.sh`) are set, and is skipped with the reason otherwise. Its own
//! test binary, so stopping the server disturbs no other test.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use octo_core::Protocol;
use octo_test::http::text;
use octo_test::service::{Restart, ctl};
use octo_test::{Gateway, Prompt, client, mock, post};

const TOKEN: &str = "a-test-admin-token-0123456789";

async fn send(gw: &Gateway) -> String {
    let prompt = Prompt::new(Protocol::OpenAiChat, "logged", "started while down");
    let resp = post(
        &client(),
        &format!("{}{}", gw.url, prompt.path()),
        prompt.body(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-octollm-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    resp.bytes().await.unwrap();
    id
}

async fn admin(gw: &Gateway, path: &str) -> (u16, String) {
    let url = format!("{}{path}", gw.admin_url.as_ref().unwrap());
    let resp = client().get(&url).bearer_auth(TOKEN).send().await.unwrap();
    (resp.status().as_u16(), text(resp).await)
}

/// The value of an unlabelled sample in `/metrics`.
async fn metric(gw: &Gateway, name: &str) -> f64 {
    let (status, body) = admin(gw, "/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_while_the_database_is_down_serves_and_keeps_its_records() {
    let (Ok(url), Ok(control)) = (
        std::env::var("OCTOLLM_TEST_POSTGRES_URL"),
        std::env::var("OCTOLLM_TEST_POSTGRES_CTL"),
    ) else {
        eprintln!(
            "skipping: OCTOLLM_TEST_POSTGRES_URL / OCTOLLM_TEST_POSTGRES_CTL are not set (scripts/services.sh starts PostgreSQL)"
        );
        return;
    };
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
    assert_eq!(metric(&gw, "octollm_log_database_up").await, 0.0);
    assert_eq!(metric(&gw, "octollm_log_records_pending").await, 3.0);
    let (status, body) = admin(&gw, "/api/v1/logs").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not available yet"), "{body}");

    ctl(&control, "start");
    restart.1 = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        loop {
            let (status, _) = admin(&gw, &format!("/api/v1/logs/{id}")).await;
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
    assert_eq!(metric(&gw, "octollm_log_database_up").await, 1.0);
    assert_eq!(metric(&gw, "octollm_log_records_dropped_total").await, 0.0);
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
