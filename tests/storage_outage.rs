//! The request log's database goes away while the gateway serves: requests are unaffected, their
//! records wait in the writer's buffer, and every one is written once the database is back.
//!
//! Runs against PostgreSQL when `OCTOLLM_TEST_POSTGRES_URL` and `OCTOLLM_TEST_POSTGRES_CTL` (a
//! command taking `stop` / `start`, written by `scripts/services.sh`) are set; skipped with the
//! reason otherwise. Its own test binary, so stopping the server disturbs no other test.

use std::time::{Duration, Instant};

use octo_core::Protocol;
use octo_test::service::{self, Restart, ctl};
use octo_test::{Gateway, Prompt, mock};

const TOKEN: &str = "a-test-admin-token-0123456789";

async fn send(gw: &Gateway) -> String {
    gw.send_for_id(&Prompt::new(Protocol::OpenAiChat, "logged", "outage"))
        .await
}

/// Polls the admin API until the record `id` is in the log (the writer retries with backoff).
async fn wait_for(gw: &Gateway, id: &str, deadline: Instant) {
    let path = format!("/api/v1/logs/{id}");
    loop {
        let status = gw.admin_get(&path, TOKEN).await.status;
        if status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "record {id} not written: last answer {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_unaffected_and_records_kept_while_the_database_is_down() {
    let Some((url, control)) = service::postgres() else {
        return;
    };
    // A schema of its own: other tests leave admin API objects in the shared database's default
    // schema, which would be merged into this gateway's config.
    let url = {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("DROP SCHEMA IF EXISTS storage_outage CASCADE; CREATE SCHEMA storage_outage")
            .execute(&mut c)
            .await
            .unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-c%20search_path%3Dstorage_outage")
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
    let gw = Gateway::start_with(&yaml, &["--storage", &url]);
    let first = send(&gw).await;
    wait_for(&gw, &first, Instant::now() + Duration::from_secs(30)).await;

    ctl(&control, "stop");
    let mut restart = Restart(&control, true);
    let mut ids = Vec::new();
    for _ in 0..5 {
        // Answered as usual: the record waits in the writer's buffer.
        ids.push(send(&gw).await);
    }
    ctl(&control, "start");
    restart.1 = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        wait_for(&gw, id, deadline).await;
    }
    assert!(gw.terminate(), "clean exit after SIGTERM");
}
