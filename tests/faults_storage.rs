//! The fault matrix, storage half: the request log's database and Redis slow or refusing writes,
//! through the real binary, in every client protocol. (Down is `tests/storage_outage.rs`,
//! `tests/storage_startup.rs`, `tests/limits_redis.rs` and `tests/cache_redis.rs`.) Each row
//! asserts that requests are answered as usual (or, for Redis with `on_error: deny`, refused in
//! the client's shape), that nothing hangs past the client deadline, that the request log's
//! records are kept and written once the database takes them again (or dropped and counted,
//! where `docs/reliability.md` says so), that the metrics say what happened, and that memory and
//! open files return to their baseline.
//!
//! "Slow" is a [`Relay`] in front of the server that stops every byte on a switch (a database
//! stuck behind a lock or a congested link, for exactly as long as the row says), or, for
//! SQLite, another connection holding the file's write lock; "refusing writes" is a trigger
//! raising the error a full disk, a read-only server or a revoked privilege raises
//! (PostgreSQL; a full disk on MariaDB), and `maxmemory` with `noeviction` (Redis: every write is refused with `OOM`,
//! reads still work).
//!
//! The SQLite row needs nothing; the others need the servers of `scripts/services.sh`
//! (`OCTOLLM_TEST_POSTGRES_URL`, `OCTOLLM_TEST_MYSQL_URL`, `OCTOLLM_TEST_REDIS_URL`); each row
//! without its server prints why and passes. Its own test binary: the Redis row changes that
//! server's settings while it runs (and puts them back).

#[path = "faults/common.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use futures::future::join_all;
use octo_core::Protocol;
use octo_test::process::{Tolerance, Usage, wait_back};
use octo_test::{Gateway, Prompt, Relay, client, mock};

const TOKEN: &str = "a-test-admin-token-0123456789";

/// How long a row may wait for the writer or the limiter to catch up after the fault ends.
const RECOVER: Duration = Duration::from_secs(60);

/// Every client protocol × streaming or not, for `model`; `text` makes the prompts unique.
fn prompts(model: &str, text: &str) -> Vec<Prompt> {
    let mut out = Vec::new();
    for protocol in Protocol::CHAT_PROTOCOLS {
        for stream in [false, true] {
            out.push(Prompt::new(protocol, model, text).stream(stream));
        }
    }
    out
}

fn protocol_of(p: &Prompt) -> Protocol {
    let path = p.path();
    if path.starts_with("/v1/chat") {
        Protocol::OpenAiChat
    } else if path.starts_with("/v1/responses") {
        Protocol::OpenAiResponses
    } else if path.starts_with("/v1/messages") {
        Protocol::Anthropic
    } else {
        Protocol::Gemini
    }
}

/// One answer: status, `x-octollm-request-id`, `x-octollm-cache`, body.
struct Answer {
    status: u16,
    id: String,
    cache: Option<String>,
    body: String,
}

/// Sends `prompt` and reads the whole answer within [`CLIENT_DEADLINE`] (a hang fails the row).
async fn send(gw: &Gateway, prompt: &Prompt, row: &str) -> Answer {
    let url = format!("{}{}", gw.url, prompt.path());
    let exchange = async {
        let response = client()
            .post(&url)
            .header("content-type", "application/json")
            .body(prompt.body())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap_or_default().to_owned())
        };
        let status = response.status().as_u16();
        let id = header("x-octollm-request-id").unwrap_or_default();
        let cache = header("x-octollm-cache");
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(Answer {
            status,
            id,
            cache,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    match tokio::time::timeout(CLIENT_DEADLINE, exchange).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => panic!("{row} ({prompt:?}): {e}"),
        Err(_) => panic!("{row} ({prompt:?}): no complete answer within {CLIENT_DEADLINE:?}"),
    }
}

/// Sends every prompt at once; each must be a complete 200 answer in its protocol.
async fn all_answered(gw: &Gateway, prompts: &[Prompt], row: &str) -> Vec<Answer> {
    let answers = join_all(prompts.iter().map(|p| send(gw, p, row))).await;
    for (p, a) in prompts.iter().zip(&answers) {
        let protocol = protocol_of(p);
        assert_eq!(a.status, 200, "{row} ({protocol}): {}", a.body);
        if p.body().contains("\"stream\":true") || p.path().contains("stream") {
            assert!(
                stream_complete(protocol, &a.body),
                "{row} ({protocol}): the stream did not end as a complete answer: {}",
                a.body
            );
        } else {
            serde_json::from_str::<serde_json::Value>(&a.body)
                .unwrap_or_else(|e| panic!("{row} ({protocol}): not JSON ({e}): {}", a.body));
        }
        assert!(!a.id.is_empty(), "{row} ({protocol}): no request id");
    }
    answers
}

async fn admin(gw: &Gateway, path: &str) -> (u16, String) {
    let url = format!("{}{path}", gw.admin_url.as_ref().expect("admin listener"));
    let resp = tokio::time::timeout(
        CLIENT_DEADLINE,
        client().get(&url).bearer_auth(TOKEN).send(),
    )
    .await
    .unwrap_or_else(|_| panic!("admin {path}: no answer within {CLIENT_DEADLINE:?}"))
    .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// The value of the unlabelled sample `name` in `/metrics` (served from memory: it answers while
/// the database or Redis does not).
async fn metric(gw: &Gateway, name: &str) -> f64 {
    let (status, body) = admin(gw, "/metrics").await;
    assert_eq!(status, 200);
    octo_test::http::metric_sample(&body, name)
}

/// Polls `/metrics` until `name` satisfies `ok`, for at most [`RECOVER`].
async fn wait_metric(gw: &Gateway, name: &str, ok: impl Fn(f64) -> bool, row: &str) -> f64 {
    let deadline = Instant::now() + RECOVER;
    loop {
        let v = metric(gw, name).await;
        if ok(v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{row}: {name} is still {v} after {RECOVER:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts every record of `answers` is in the request log (read through the admin API).
async fn all_logged(gw: &Gateway, answers: &[Answer], row: &str) {
    for a in answers {
        let (status, body) = admin(gw, &format!("/api/v1/logs/{}", a.id)).await;
        assert_eq!(status, 200, "{row}: record {} not in the log: {body}", a.id);
    }
}

/// The mock's backends and models, with the admin listener (the request log's database is given
/// on the command line: `--storage`).
fn storage_config(mock: &str) -> String {
    format!(
        r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{TOKEN}"]}}
limits: {{stream_keep_alive: 30s}}
backends:{}
models:
  passthrough: {{targets: [{{backend: mock}}], retry: {{max_attempts: 1}}}}
  converted: {{targets: [{{backend: mock_chat}}], retry: {{max_attempts: 1}}}}
"#,
        mock_backends(mock)
    )
}

/// Starts a gateway logging to `storage`, warms it up (every record written) and takes its
/// baseline.
async fn logged_gateway(storage: &str, row: &str) -> (Gateway, Usage, octo_mock::MockServer) {
    let mock = mock().await;
    let gw = Gateway::start_with(&storage_config(&mock.url()), &["--storage", storage]);
    for _ in 0..2 {
        for model in ["passthrough", "converted"] {
            all_answered(&gw, &prompts(model, "warm up"), row).await;
        }
    }
    wait_metric(&gw, "octollm_log_records_pending", |v| v == 0.0, row).await;
    let baseline = Usage::of(gw.pid());
    (gw, baseline, mock)
}

/// A PostgreSQL URL whose connections use `schema` (made empty first): the row's own tables.
async fn postgres_schema(url: &str, schema: &str) -> String {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .execute(&mut c)
    .await
    .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// A MariaDB/MySQL URL for `database` (made empty first).
async fn mysql_database(url: &str, database: &str) -> String {
    use sqlx::Connection;
    let mut c = sqlx::MySqlConnection::connect(url).await.unwrap();
    sqlx::raw_sql(&format!(
        "DROP DATABASE IF EXISTS {database}; CREATE DATABASE {database}"
    ))
    .execute(&mut c)
    .await
    .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{database}")
}

/// Fds the database pool may hold beyond the baseline after a row (connections reopened after
/// the stall, closed when idle much later).
const POOL_FDS: usize = 12;

/// The row "database slow": the database stops answering mid-run. Requests are answered as
/// usual in every protocol (a Responses answer waits for its save at most `STORE_TIMEOUT`, 5 s,
/// then goes out unsaved), the records wait (`octollm_log_records_pending`), none is dropped,
/// and every one is written once the database answers again.
async fn database_slow(url: &str, row: &str) {
    let relay = Relay::for_url(url).await;
    let (gw, baseline, _mock) = logged_gateway(&relay.url(url), row).await;
    let dropped = metric(&gw, "octollm_log_records_dropped_total").await;

    relay.stall();
    let mut answers = Vec::new();
    for model in ["passthrough", "converted"] {
        answers.extend(all_answered(&gw, &prompts(model, "while slow"), row).await);
    }
    // Every record of the stall is pending (queued, buffered or in the stuck write).
    let pending = wait_metric(
        &gw,
        "octollm_log_records_pending",
        |v| v >= answers.len() as f64,
        row,
    )
    .await;
    assert!(pending >= answers.len() as f64);
    assert_eq!(
        metric(&gw, "octollm_log_records_dropped_total").await,
        dropped
    );

    relay.resume();
    wait_metric(&gw, "octollm_log_records_pending", |v| v == 0.0, row).await;
    assert_eq!(
        metric(&gw, "octollm_log_records_dropped_total").await,
        dropped,
        "{row}: no record dropped"
    );
    assert_eq!(metric(&gw, "octollm_log_database_up").await, 1.0);
    all_logged(&gw, &answers, row).await;
    // Served as usual again, and logged.
    let after = all_answered(&gw, &prompts("passthrough", "after the stall"), row).await;
    wait_metric(&gw, "octollm_log_records_pending", |v| v == 0.0, row).await;
    all_logged(&gw, &after, row).await;
    back_and_stop(gw, baseline, row).await;
}

/// Waits until the gateway's memory and open files are back at `baseline` (its database pool's
/// connections allowed for), then stops it and asserts a clean exit.
async fn back_and_stop(gw: Gateway, baseline: Usage, row: &str) {
    wait_back(
        gw.pid(),
        baseline,
        Tolerance {
            fds: Tolerance::default().fds + POOL_FDS,
            ..Tolerance::default()
        },
        SETTLE,
        row,
    )
    .await;
    assert!(gw.terminate(), "{row}: clean exit after SIGTERM");
}

/// The row "database slow" for SQLite (the default backend): another process holds the
/// database's write lock (`BEGIN EXCLUSIVE`). The writer's batch waits out SQLite's busy timeout
/// (5 s), then counts as unavailable (`octollm_log_database_up` 0) and is retried with backoff;
/// requests are answered as usual meanwhile; once the lock is let go every record is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked() {
    use sqlx::{Connection, Executor};
    let row = "database slow (SQLite, write lock held)";
    let dir = std::env::temp_dir().join(format!("octollm-faults-sqlite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("log.db");
    let (gw, baseline, _mock) = logged_gateway(&format!("sqlite://{}", file.display()), row).await;
    let mut lock = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&file),
    )
    .await
    .unwrap();
    lock.execute("BEGIN EXCLUSIVE").await.unwrap();
    let dropped = metric(&gw, "octollm_log_records_dropped_total").await;
    let mut answers = Vec::new();
    for model in ["passthrough", "converted"] {
        answers.extend(all_answered(&gw, &prompts(model, "while locked"), row).await);
    }
    wait_metric(&gw, "octollm_log_database_up", |v| v == 0.0, row).await;
    let pending = metric(&gw, "octollm_log_records_pending").await;
    assert!(pending >= answers.len() as f64, "{row}: {pending} pending");
    lock.execute("COMMIT").await.unwrap();
    drop(lock);
    wait_metric(&gw, "octollm_log_records_pending", |v| v == 0.0, row).await;
    assert_eq!(metric(&gw, "octollm_log_database_up").await, 1.0, "{row}");
    assert_eq!(
        metric(&gw, "octollm_log_records_dropped_total").await,
        dropped,
        "{row}: no record dropped"
    );
    all_logged(&gw, &answers, row).await;
    wait_back(gw.pid(), baseline, Tolerance::default(), SETTLE, row).await;
    assert!(gw.terminate(), "{row}: clean exit after SIGTERM");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_slow() {
    let Ok(url) = std::env::var("OCTOLLM_TEST_POSTGRES_URL") else {
        eprintln!("skipping: OCTOLLM_TEST_POSTGRES_URL is not set (scripts/services.sh)");
        return;
    };
    let url = postgres_schema(&url, "faults_pg_slow").await;
    database_slow(&url, "database slow (PostgreSQL)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_slow() {
    let Ok(url) = std::env::var("OCTOLLM_TEST_MYSQL_URL") else {
        eprintln!("skipping: OCTOLLM_TEST_MYSQL_URL is not set (scripts/services.sh)");
        return;
    };
    let url = mysql_database(&url, "faults_my_slow").await;
    database_slow(&url, "database slow (MariaDB)").await;
}

/// The row "database hung": the database stops answering on the connections it has, without
/// closing them (a server frozen mid-write, a network path that drops every packet), while new
/// connections still work. Without a per-write deadline the writer would wait on its connection
/// until TCP gives up (many minutes). With `storage.write_timeout: 1s` the stuck write is
/// abandoned after a second and counted as a failed write (`octollm_log_database_up` 0), its
/// connection dropped, a new one opened, and every record written exactly once (the retried
/// batch checks which ids the abandoned write left in the log). Requests are answered as usual
/// throughout. The log is read back on a connection of the test's own, outside the relay.
async fn database_hung(url: &str, row: &str) {
    let relay = Relay::for_url(url).await;
    let mock = mock().await;
    let yaml = format!(
        "{}storage: {{write_timeout: 1s}}\n",
        storage_config(&mock.url())
    );
    let gw = Gateway::start_with(&yaml, &["--storage", &relay.url(url)]);
    let chat = |text: &str| -> Vec<Prompt> {
        [false, true]
            .into_iter()
            .map(|stream| Prompt::new(Protocol::OpenAiChat, "passthrough", text).stream(stream))
            .collect()
    };
    let warm = all_answered(&gw, &chat("warm up"), row).await;
    wait_metric(&gw, "octollm_log_records_pending", |v| v == 0.0, row).await;
    let dropped = metric(&gw, "octollm_log_records_dropped_total").await;
    let before = relay.accepted();

    relay.freeze();
    let mut answers = Vec::new();
    for i in 0..4 {
        answers.extend(all_answered(&gw, &chat(&format!("while hung {i}")), row).await);
    }
    wait_metric(&gw, "octollm_log_records_pending", |v| v == 0.0, row).await;
    assert_eq!(
        metric(&gw, "octollm_log_records_dropped_total").await,
        dropped,
        "{row}: no record dropped"
    );
    assert!(
        relay.accepted() > before,
        "{row}: the writer opened a new connection after abandoning the hung one"
    );
    assert_eq!(metric(&gw, "octollm_log_database_up").await, 1.0, "{row}");
    let ids: Vec<String> = warm.iter().chain(&answers).map(|a| a.id.clone()).collect();
    let counts = log_counts(url, &ids).await;
    for (id, n) in ids.iter().zip(counts) {
        assert_eq!(n, 1, "{row}: record {id} is in the log {n} times");
    }
    drop(relay);
    assert!(gw.terminate(), "{row}: clean exit after SIGTERM");
}

/// How many `request_log` rows each id has, read on a connection of the test's own.
async fn log_counts(url: &str, ids: &[String]) -> Vec<i64> {
    use sqlx::Connection;
    let mut out = Vec::new();
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        for id in ids {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM request_log WHERE id = $1")
                .bind(id)
                .fetch_one(&mut c)
                .await
                .unwrap();
            out.push(n);
        }
    } else {
        let mut c = sqlx::MySqlConnection::connect(url).await.unwrap();
        for id in ids {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM request_log WHERE id = ?")
                .bind(id)
                .fetch_one(&mut c)
                .await
                .unwrap();
            out.push(n);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hung() {
    let Ok(url) = std::env::var("OCTOLLM_TEST_POSTGRES_URL") else {
        eprintln!("skipping: OCTOLLM_TEST_POSTGRES_URL is not set (scripts/services.sh)");
        return;
    };
    let url = postgres_schema(&url, "faults_pg_hung").await;
    database_hung(&url, "database hung (PostgreSQL)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_hung() {
    let Ok(url) = std::env::var("OCTOLLM_TEST_MYSQL_URL") else {
        eprintln!("skipping: OCTOLLM_TEST_MYSQL_URL is not set (scripts/services.sh)");
        return;
    };
    let url = mysql_database(&url, "faults_my_hung").await;
    database_hung(&url, "database hung (MariaDB)").await;
}

/// The row "database refusing writes", PostgreSQL: a trigger on the log table raises, in turn,
/// the error of a full disk (`53100`), of a read-only server (`25006`, a fail-over to a replica)
/// and of a revoked privilege (`42501`). Requests are answered as usual throughout. All three
/// are the database's state, not the records' (a DBA may restore the grant): the records are
/// kept and retried with backoff (`octollm_log_database_up` 0 meanwhile) and all written once
/// the trigger is gone. A refusal of the rows themselves (a constraint, a value too long) drops
/// only the refused records, counted in `octollm_log_records_dropped_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refusing_writes() {
    let Ok(base) = std::env::var("OCTOLLM_TEST_POSTGRES_URL") else {
        eprintln!("skipping: OCTOLLM_TEST_POSTGRES_URL is not set (scripts/services.sh)");
        return;
    };
    let schema = "faults_pg_refuse";
    let url = postgres_schema(&base, schema).await;
    let row = "database refusing writes (PostgreSQL)";
    let (gw, baseline, _mock) = logged_gateway(&url, row).await;
    let mut admin_db = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&url).await.unwrap()
    };
    for (code, what, kept) in [
        ("53100", "disk full", true),
        ("25006", "read-only server", true),
        ("42501", "revoked privilege", true),
    ] {
        let row = format!("{row}: {what} ({code})");
        sqlx::raw_sql(&format!(
            "CREATE OR REPLACE FUNCTION {schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'simulated: {what}' USING ERRCODE = '{code}'; END $$; \
             CREATE TRIGGER refuse BEFORE INSERT ON {schema}.request_log \
             FOR EACH ROW EXECUTE FUNCTION {schema}.refuse()"
        ))
        .execute(&mut admin_db)
        .await
        .unwrap();
        let dropped = metric(&gw, "octollm_log_records_dropped_total").await;
        let mut answers = Vec::new();
        for model in ["passthrough", "converted"] {
            answers.extend(all_answered(&gw, &prompts(model, what), &row).await);
        }
        let n = answers.len() as f64;
        if kept {
            wait_metric(&gw, "octollm_log_database_up", |v| v == 0.0, &row).await;
            let pending = metric(&gw, "octollm_log_records_pending").await;
            assert!(pending >= n, "{row}: {pending} records pending");
        } else {
            wait_metric(
                &gw,
                "octollm_log_records_dropped_total",
                |v| v >= dropped + n,
                &row,
            )
            .await;
        }
        sqlx::raw_sql(&format!("DROP TRIGGER refuse ON {schema}.request_log"))
            .execute(&mut admin_db)
            .await
            .unwrap();
        wait_metric(&gw, "octollm_log_records_pending", |v| v == 0.0, &row).await;
        assert_eq!(metric(&gw, "octollm_log_database_up").await, 1.0, "{row}");
        let now_dropped = metric(&gw, "octollm_log_records_dropped_total").await;
        if kept {
            assert_eq!(now_dropped, dropped, "{row}: no record dropped");
            all_logged(&gw, &answers, &row).await;
        } else {
            assert_eq!(
                now_dropped,
                dropped + n,
                "{row}: each refused record counted"
            );
            for a in &answers {
                let (status, _) = admin(&gw, &format!("/api/v1/logs/{}", a.id)).await;
                assert_eq!(status, 404, "{row}: a refused record was written");
            }
        }
    }
    back_and_stop(gw, baseline, row).await;
}

/// The row "database refusing writes", MariaDB: a trigger on the log table signals a full disk
/// (`HY000`, error 1021, as InnoDB's "The table is full" / "Disk full"). Unavailability, as on
/// PostgreSQL: requests answered as usual, the records kept (`octollm_log_database_up` 0) and
/// all written once the trigger is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_refusing_writes() {
    use sqlx::Connection;
    let Ok(base) = std::env::var("OCTOLLM_TEST_MYSQL_URL") else {
        eprintln!("skipping: OCTOLLM_TEST_MYSQL_URL is not set (scripts/services.sh)");
        return;
    };
    let url = mysql_database(&base, "faults_my_refuse").await;
    let row = "database refusing writes (MariaDB): disk full";
    let (gw, baseline, _mock) = logged_gateway(&url, row).await;
    let mut admin_db = sqlx::MySqlConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TRIGGER refuse BEFORE INSERT ON request_log FOR EACH ROW \
         SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1021, MESSAGE_TEXT = 'simulated: disk full'",
    )
    .execute(&mut admin_db)
    .await
    .unwrap();
    let dropped = metric(&gw, "octollm_log_records_dropped_total").await;
    let mut answers = Vec::new();
    for model in ["passthrough", "converted"] {
        answers.extend(all_answered(&gw, &prompts(model, "disk full"), row).await);
    }
    wait_metric(&gw, "octollm_log_database_up", |v| v == 0.0, row).await;
    let pending = metric(&gw, "octollm_log_records_pending").await;
    assert!(pending >= answers.len() as f64, "{row}: {pending} pending");
    sqlx::raw_sql("DROP TRIGGER refuse")
        .execute(&mut admin_db)
        .await
        .unwrap();
    wait_metric(&gw, "octollm_log_records_pending", |v| v == 0.0, row).await;
    assert_eq!(metric(&gw, "octollm_log_database_up").await, 1.0, "{row}");
    assert_eq!(
        metric(&gw, "octollm_log_records_dropped_total").await,
        dropped,
        "{row}: no record dropped"
    );
    all_logged(&gw, &answers, row).await;
    back_and_stop(gw, baseline, row).await;
}

/// Runs `redis-cli -p PORT args…` against the test Redis; returns its output.
fn redis_cli(port: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", port])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(out.status.success(), "redis-cli {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Puts Redis's `maxmemory` and `maxmemory-policy` back when dropped (a failing row included).
struct RedisMemory<'a> {
    port: &'a str,
    maxmemory: String,
    policy: String,
}

impl Drop for RedisMemory<'_> {
    fn drop(&mut self) {
        redis_cli(self.port, &["CONFIG", "SET", "maxmemory", &self.maxmemory]);
        redis_cli(
            self.port,
            &["CONFIG", "SET", "maxmemory-policy", &self.policy],
        );
    }
}

/// Limits and the response cache on Redis (through `redis_url`), `on_error` as given; every
/// model rate-limited (so every request asks Redis) and cached.
fn redis_config(mock: &str, redis_url: &str, prefix: &str, on_error: &str) -> String {
    format!(
        r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{TOKEN}"]}}
storage: off
limits: {{stream_keep_alive: 30s}}
redis: {{url: "{redis_url}", on_error: {on_error}, timeout: 200ms, key_prefix: "{prefix}"}}
cache: {{store: redis, ttl: 10m}}
backends:{}
models:
  passthrough: {{targets: [{{backend: mock}}], retry: {{max_attempts: 1}}, rate_limit: {{rpm: 100000}}, cache: true}}
  converted: {{targets: [{{backend: mock_chat}}], retry: {{max_attempts: 1}}, rate_limit: {{rpm: 100000}}, cache: true}}
"#,
        mock_backends(mock)
    )
}

/// Every prompt is refused with a 503 in its protocol's shape naming Redis (`on_error: deny`).
async fn all_refused(gw: &Gateway, prompts: &[Prompt], row: &str) {
    let answers = join_all(prompts.iter().map(|p| send(gw, p, row))).await;
    for (p, a) in prompts.iter().zip(answers) {
        let protocol = protocol_of(p);
        assert_eq!(a.status, 503, "{row} ({protocol}): {}", a.body);
        let message = error_of(protocol, 503, &a.body, row);
        assert!(message.contains("Redis"), "{row} ({protocol}): {message}");
    }
}

/// Waits until both instances use Redis again: `deny` answers, `allow` leaves its fallback.
async fn redis_recovered(allow: &Gateway, deny: &Gateway, row: &str) {
    let probe = Prompt::new(Protocol::OpenAiChat, "passthrough", "probe");
    let deadline = Instant::now() + RECOVER;
    loop {
        let a = send(deny, &probe, row).await;
        if a.status == 200 {
            break;
        }
        assert_eq!(a.status, 503, "{row}: {}", a.body);
        assert!(Instant::now() < deadline, "{row}: `deny` never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        assert_eq!(send(allow, &probe, row).await.status, 200);
        if metric(allow, "octollm_limits_fallback").await == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{row}: `allow` never left its fallback"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The rows "Redis slow" and "Redis refusing writes", in sequence on two instances (`on_error:
/// allow` and `deny`) sharing one Redis through a relay: rate limits (one Lua call per request)
/// and the response cache (`GET` / `SET`) on every model.
///
/// - Slow (the relay stalls): `allow` answers every request as usual within the Redis timeout
///   (200 ms) plus the upstream's time, on its own counts (`octollm_limits_fallback` 1,
///   `octollm_redis_errors_total` counting), the cache a miss; `deny` answers 503 in the
///   client's shape. Both go back to Redis once it answers.
/// - Refusing writes (`maxmemory 1`, `noeviction`: every write is refused with `OOM`): the
///   same answers (the limiter's script writes); the cache still reads (an entry stored before is
///   a hit) and skips its writes (a new answer is not stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_slow_and_refusing_writes() {
    let Ok(redis) = std::env::var("OCTOLLM_TEST_REDIS_URL") else {
        eprintln!("skipping: OCTOLLM_TEST_REDIS_URL is not set (scripts/services.sh)");
        return;
    };
    let port = redis
        .rsplit_once(':')
        .and_then(|(_, p)| p.split('/').next())
        .unwrap()
        .to_owned();
    let relay = Relay::for_url(&redis).await;
    let mock = mock().await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("octollm-faults-{}-{nanos}:", std::process::id());
    let allow = Gateway::start(&redis_config(
        &mock.url(),
        &relay.url(&redis),
        &prefix,
        "allow",
    ));
    let deny = Gateway::start(&redis_config(
        &mock.url(),
        &relay.url(&redis),
        &prefix,
        "deny",
    ));
    let row = "Redis healthy";
    for gw in [&allow, &deny] {
        for model in ["passthrough", "converted"] {
            all_answered(gw, &prompts(model, "warm up"), row).await;
        }
    }
    // Through the relay, Redis works: the warm-up's answers are shared cache entries.
    let cached = Prompt::new(Protocol::OpenAiChat, "passthrough", "warm up");
    assert_eq!(
        send(&deny, &cached, row).await.cache.as_deref(),
        Some("hit")
    );
    assert_eq!(metric(&allow, "octollm_limits_fallback").await, 0.0);
    let baseline = Usage::of(allow.pid());

    let row = "Redis slow";
    relay.stall();
    let errors = metric(&allow, "octollm_redis_errors_total").await;
    for model in ["passthrough", "converted"] {
        for a in all_answered(&allow, &prompts(model, "while Redis is slow"), row).await {
            assert_ne!(a.cache.as_deref(), Some("hit"), "{row}");
        }
        all_refused(&deny, &prompts(model, "while Redis is slow"), row).await;
    }
    assert_eq!(
        metric(&allow, "octollm_limits_fallback").await,
        1.0,
        "{row}"
    );
    assert!(metric(&allow, "octollm_redis_errors_total").await > errors);
    relay.resume();
    redis_recovered(&allow, &deny, row).await;

    let row = "Redis refusing writes";
    // The cache store rests a second after a failure (lookups are misses meanwhile): wait until
    // it reads again, so that the hit below is the store reading under `OOM`.
    let deadline = Instant::now() + RECOVER;
    while send(&allow, &cached, row).await.cache.as_deref() != Some("hit") {
        assert!(
            Instant::now() < deadline,
            "{row}: the cache never read again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restore = RedisMemory {
        port: &port,
        maxmemory: redis_cli(&port, &["CONFIG", "GET", "maxmemory"])
            .lines()
            .nth(1)
            .unwrap()
            .to_owned(),
        policy: redis_cli(&port, &["CONFIG", "GET", "maxmemory-policy"])
            .lines()
            .nth(1)
            .unwrap()
            .to_owned(),
    };
    redis_cli(&port, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis_cli(&port, &["CONFIG", "SET", "maxmemory", "1"]);
    assert!(
        redis_cli(&port, &["SET", &format!("{prefix}probe"), "x"]).contains("OOM"),
        "{row}: Redis still takes writes"
    );
    let errors = metric(&allow, "octollm_redis_errors_total").await;
    // The cache still reads: an entry stored before is a hit (asked first: after a failed write
    // the store rests a second, its lookups misses).
    let a = send(&allow, &cached, row).await;
    assert_eq!((a.status, a.cache.as_deref()), (200, Some("hit")), "{row}");
    for model in ["passthrough", "converted"] {
        all_answered(&allow, &prompts(model, "while Redis refuses writes"), row).await;
        all_refused(&deny, &prompts(model, "while Redis refuses writes"), row).await;
    }
    assert_eq!(
        metric(&allow, "octollm_limits_fallback").await,
        1.0,
        "{row}"
    );
    assert!(metric(&allow, "octollm_redis_errors_total").await > errors);
    // A new answer is not stored.
    let fresh = Prompt::new(Protocol::Anthropic, "passthrough", "not stored");
    for _ in 0..2 {
        let a = send(&allow, &fresh, row).await;
        assert_eq!(a.status, 200, "{row}: {}", a.body);
        assert_ne!(a.cache.as_deref(), Some("hit"), "{row}: a refused write");
    }
    drop(restore);
    redis_recovered(&allow, &deny, row).await;

    // The relay's connections and the fallback's state are let go.
    wait_back(
        allow.pid(),
        baseline,
        Tolerance {
            fds: Tolerance::default().fds + 4,
            ..Tolerance::default()
        },
        SETTLE,
        "Redis rows",
    )
    .await;
    assert!(allow.terminate());
    assert!(deny.terminate());
}
