//! Signing in to the admin listener through the real `octollm-server` binary: the panel's files
//! served without credentials; API routes refused without a token, with a wrong token, a wrong,
//! ended or expired session; session cookies' attributes; CSRF tokens required for changes made
//! with a session (not with a bearer token); the sign-in rate limit; users from the file
//! (read-only, 409) and from the API (validation errors naming the field, their sessions ending
//! with them); `hash-password`; and a name both in the file and in the database refused at startup.
//!
//! Each gateway has its own SQLite file in a fresh temp directory and its admin listener on an
//! ephemeral port.

use std::io::Write;
use std::process::{Command, Stdio};

use octo_test::{AdminReply, Gateway, TempDir, client, mock};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "an-admin-token-for-auth-tests-0123";
const FILE_USER: &str = "ada";
const FILE_PASSWORD: &str = "correct horse battery staple";

/// `octollm-server hash-password` on `password`.
fn hash_password(password: &str) -> String {
    let mut child = Command::new(octo_test::gateway::server_bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hash-password");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("argon2:$argon2id$"), "{hash}");
    assert!(!hash.contains(password));
    hash
}

fn yaml(mock: &str, users: &str) -> String {
    format!(
        r#"
listen: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
  tokens: ["{ADMIN_TOKEN}"]
  users: [{users}]
backends:
  b: {{base_url: "{mock}", protocol: openai_chat, api_key: "sk-up"}}
models:
  m: {{targets: [{{backend: b}}]}}
"#
    )
}

fn start(mock: &str, dir: &TempDir, users: &str) -> Gateway {
    let gw = Gateway::start_with(&yaml(mock, users), &["--storage", &dir.sqlite_url()]);
    assert!(gw.admin_url.is_some(), "no admin listener");
    gw
}

/// What these tests read from an admin answer besides its status and body.
trait AuthReply {
    /// The error's message.
    fn message(&self) -> String;
    /// The `Set-Cookie` header (empty when none).
    fn set_cookie(&self) -> String;
    /// The session id from `Set-Cookie`.
    fn session(&self) -> String;
}

impl AuthReply for AdminReply {
    fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {}", self.body))
            .to_owned()
    }

    fn set_cookie(&self) -> String {
        self.header("set-cookie").unwrap_or_default().to_owned()
    }

    fn session(&self) -> String {
        let c = self.set_cookie();
        let v = c
            .strip_prefix("octollm_session=")
            .unwrap_or_else(|| panic!("no session cookie: {c:?}"));
        v.split(';').next().unwrap().to_owned()
    }
}

async fn login(gw: &Gateway, name: &str, password: &str) -> AdminReply {
    gw.admin("POST", "/api/v1/login")
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
}

fn file_user(hash: &str) -> String {
    format!("{{name: {FILE_USER}, password: \"{hash}\"}}")
}

#[tokio::test]
async fn the_panel_is_public_and_the_api_needs_a_token_or_a_session() {
    let up = mock().await;
    let dir = TempDir::new("auth");
    let gw = start(&up.url(), &dir, "");
    let page = gw.admin("GET", "/").send().await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/assets/app.js"), "{}", page.body);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    for asset in ["/assets/app.js", "/assets/app.css"] {
        let r = gw.admin("GET", asset).send().await;
        assert_eq!(r.status, 200, "{asset}");
        assert!(r.body.len() > 100, "{asset}");
    }
    for path in [
        "/api/v1/logs",
        "/api/v1/users",
        "/api/v1/me",
        "/api/v1/config",
        "/metrics",
    ] {
        let none = gw.admin("GET", path).send().await;
        assert_eq!(none.status, 401, "{path}: {}", none.body);
        assert!(none.message().contains("sign in"), "{}", none.body);
        let wrong = gw
            .admin("GET", path)
            .token("not-the-admin-token-at-all")
            .send()
            .await;
        assert_eq!(wrong.status, 401, "{path}");
        let forged = gw
            .admin("GET", path)
            .session("0123456789abcdef")
            .send()
            .await;
        assert_eq!(forged.status, 401, "{path}");
        assert!(
            forged.set_cookie().contains("Max-Age=0"),
            "a dead cookie is cleared"
        );
        let right = gw.admin("GET", path).token(ADMIN_TOKEN).send().await;
        assert_eq!(right.status, 200, "{path}: {}", right.body);
    }
    let me = gw
        .admin("GET", "/api/v1/me")
        .token(ADMIN_TOKEN)
        .send()
        .await
        .json();
    assert_eq!(me["actor"], "token:0");
    assert_eq!(me["via"], "token");
    assert!(me.get("csrf_token").is_none());
}

#[tokio::test]
async fn sessions_carry_csrf_tokens_and_end() {
    let up = mock().await;
    let dir = TempDir::new("auth");
    let gw = start(&up.url(), &dir, &file_user(&hash_password(FILE_PASSWORD)));

    // A sign-in must be JSON.
    let form = client()
        .post(format!("{}/api/v1/login", gw.admin_url.as_ref().unwrap()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("name={FILE_USER}&password={FILE_PASSWORD}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 415);

    let bad = login(&gw, FILE_USER, "not the password").await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.message(), "wrong user name or password");
    let unknown = login(&gw, "nobody", "not the password").await;
    assert_eq!(unknown.message(), bad.message(), "no user enumeration");

    let ok = login(&gw, FILE_USER, FILE_PASSWORD).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let cookie = ok.set_cookie();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let session = ok.session();
    let csrf = ok.json()["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(ok.json()["actor"], "user:ada");

    let me = gw.admin("GET", "/api/v1/me").session(&session).send().await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["via"], "session");
    assert_eq!(me.json()["csrf_token"], csrf.as_str());
    let logs = gw
        .admin("GET", "/api/v1/logs")
        .session(&session)
        .send()
        .await;
    assert_eq!(logs.status, 200, "reads need no CSRF token");

    // Changes with a session need its CSRF token; with a bearer token they do not.
    let new_user = json!({"name": "bo", "password": "another long password"});
    let missing = gw
        .admin("POST", "/api/v1/users")
        .session(&session)
        .json(&new_user)
        .send()
        .await;
    assert_eq!(missing.status, 403);
    assert!(
        missing.message().contains("missing CSRF token"),
        "{}",
        missing.body
    );
    let wrong = gw
        .admin("POST", "/api/v1/users")
        .session(&session)
        .csrf("0000000000000000000000000000000000000000000000000000000000000000")
        .json(&new_user)
        .send()
        .await;
    assert_eq!(wrong.status, 403);
    assert!(wrong.message().contains("wrong CSRF token"));
    let created = gw
        .admin("POST", "/api/v1/users")
        .session(&session)
        .csrf(&csrf)
        .json(&new_user)
        .send()
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["created_by"], "user:ada");
    let by_token = gw
        .admin("POST", "/api/v1/users")
        .token(ADMIN_TOKEN)
        .json(&json!({"name": "cy", "password": "a third long password"}))
        .send()
        .await;
    assert_eq!(by_token.status, 201, "{}", by_token.body);

    // Bo signs in; deleting bo ends the session at once.
    let bo = login(&gw, "bo", "another long password").await;
    assert_eq!(bo.status, 200);
    let bo_session = bo.session();
    let gone = gw
        .admin("DELETE", "/api/v1/users/bo")
        .session(&session)
        .csrf(&csrf)
        .send()
        .await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    let after = gw
        .admin("GET", "/api/v1/me")
        .session(&bo_session)
        .send()
        .await;
    assert_eq!(after.status, 401);

    // Signing out ends the session.
    let out = gw
        .admin("POST", "/api/v1/logout")
        .session(&session)
        .csrf(&csrf)
        .send()
        .await;
    assert_eq!(out.status, 204);
    assert!(out.set_cookie().contains("Max-Age=0"));
    let ended = gw
        .admin("GET", "/api/v1/logs")
        .session(&session)
        .send()
        .await;
    assert_eq!(ended.status, 401);
    assert!(ended.message().contains("sign in again"), "{}", ended.body);
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    let up = mock().await;
    let dir = TempDir::new("auth");
    let gw = start(&up.url(), &dir, "");
    // A session whose expiry has passed, written where the gateway keeps its sessions.
    let store = octo_store::Store::open(&octo_store::StoreConfig::with_url(dir.sqlite_url()))
        .await
        .unwrap();
    let id = "an-expired-session-id-0123456789abcdef";
    let now = octo_store::Store::now_ms();
    store
        .create_session(
            &octo_server::admin::sessions::id_hash(id),
            "user:ada",
            now - 60_000,
            now - 1,
        )
        .await
        .unwrap();
    let live = "a-live-session-id-0123456789abcdef";
    store
        .create_session(
            &octo_server::admin::sessions::id_hash(live),
            "user:ada",
            now,
            now + 600_000,
        )
        .await
        .unwrap();
    store.close().await;
    let r = gw.admin("GET", "/api/v1/logs").session(id).send().await;
    assert_eq!(r.status, 401);
    assert!(r.message().contains("expired"), "{}", r.body);
    assert!(r.set_cookie().contains("Max-Age=0"));
    let ok = gw.admin("GET", "/api/v1/me").session(live).send().await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["actor"], "user:ada");
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited_per_user() {
    let up = mock().await;
    let dir = TempDir::new("auth");
    let gw = start(&up.url(), &dir, &file_user(&hash_password(FILE_PASSWORD)));
    for _ in 0..5 {
        assert_eq!(login(&gw, FILE_USER, "guess").await.status, 401);
    }
    let limited = login(&gw, FILE_USER, FILE_PASSWORD).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.message().contains("for this user"));
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 300, "{retry}");
    // Scripts with a token are not affected.
    let r = gw
        .admin("GET", "/api/v1/users")
        .token(ADMIN_TOKEN)
        .send()
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn file_users_are_read_only_and_api_users_are_validated() {
    let up = mock().await;
    let dir = TempDir::new("auth");
    let gw = start(&up.url(), &dir, &file_user(&hash_password(FILE_PASSWORD)));
    let post = |body: Value| {
        let gw = &gw;
        async move {
            gw.admin("POST", "/api/v1/users")
                .token(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
        }
    };
    let dup = post(json!({"name": FILE_USER, "password": "a long enough password"})).await;
    assert_eq!(dup.status, 409);
    assert!(
        dup.message().contains("admin.users[0]") && dup.message().contains(".yaml"),
        "{}",
        dup.body
    );
    let del = gw
        .admin("DELETE", "/api/v1/users/ada")
        .token(ADMIN_TOKEN)
        .send()
        .await;
    assert_eq!(del.status, 409);
    assert!(del.message().contains("admin.users[0]"));
    let short = post(json!({"name": "bo", "password": "short"})).await;
    assert_eq!(short.status, 400);
    assert!(short.message().starts_with("`password`"), "{}", short.body);
    let name = post(json!({"name": "b o", "password": "a long enough password"})).await;
    assert_eq!(name.status, 400);
    assert!(name.message().starts_with("`name`"), "{}", name.body);
    let typo = post(json!({"name": "bo", "passwrd": "a long enough password"})).await;
    assert_eq!(typo.status, 400);
    assert!(typo.message().contains("passwrd"), "{}", typo.body);
    let hashed =
        post(json!({"name": "bo", "password_hash": hash_password("bo's own password")})).await;
    assert_eq!(hashed.status, 201, "{}", hashed.body);
    assert_eq!(login(&gw, "bo", "bo's own password").await.status, 200);
    let again = post(json!({"name": "bo", "password": "a long enough password"})).await;
    assert_eq!(again.status, 409);
    let users = gw
        .admin("GET", "/api/v1/users")
        .token(ADMIN_TOKEN)
        .send()
        .await;
    let users = users.json();
    let list: Vec<(&str, &str)> = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["name"].as_str().unwrap(), u["source"].as_str().unwrap()))
        .collect();
    assert_eq!(list, [("ada", "file"), ("bo", "api")]);
    assert!(!users.to_string().contains("argon2"), "no hash is shown");
    let missing = gw
        .admin("DELETE", "/api/v1/users/zed")
        .token(ADMIN_TOKEN)
        .send()
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn a_user_both_in_the_file_and_the_database_stops_the_start() {
    let up = mock().await;
    let dir = TempDir::new("auth");
    let gw = start(&up.url(), &dir, "");
    let created = gw
        .admin("POST", "/api/v1/users")
        .token(ADMIN_TOKEN)
        .json(&json!({"name": FILE_USER, "password": "a long enough password"}))
        .send()
        .await;
    assert_eq!(created.status, 201);
    assert!(gw.terminate());
    let config = dir.path().join("both.yaml");
    std::fs::write(
        &config,
        yaml(&up.url(), &file_user(&hash_password(FILE_PASSWORD))),
    )
    .unwrap();
    let out = Command::new(octo_test::gateway::server_bin())
        .arg("--config")
        .arg(&config)
        .args(["--storage", &dir.sqlite_url()])
        .env("OCTOLLM_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("admin.users[0].name")
            && err.contains("both in")
            && err.contains("both.yaml")
            && err.contains("database"),
        "{err}"
    );
}

#[test]
fn config_users_need_an_argon2_hash() {
    let err = octo_test::start_fails(&yaml(
        "http://127.0.0.1:1",
        "{name: ada, password: plaintext-password}",
    ));
    assert!(
        err.contains("admin.users[0].password") && err.contains("hash-password"),
        "{err}"
    );
}

#[tokio::test]
async fn the_effective_config_masks_every_secret() {
    let up = mock().await;
    let dir = TempDir::new("auth");
    let hash = hash_password(FILE_PASSWORD);
    let gw = start(&up.url(), &dir, &file_user(&hash));
    let r = gw
        .admin("GET", "/api/v1/config")
        .token(ADMIN_TOKEN)
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for secret in [ADMIN_TOKEN, "sk-up\"", &hash[10..]] {
        assert!(!r.body.contains(secret), "{secret} in {}", r.body);
    }
    let v = r.json();
    assert!(v["source"].as_str().unwrap().ends_with(".yaml"), "{v}");
    let config = &v["config"];
    assert_eq!(config["backends"]["b"]["source"], "file");
    assert_eq!(config["backends"]["b"]["api_key"], "****");
    assert_eq!(config["models"]["m"]["source"], "file");
    assert_eq!(config["admin"]["users"][0]["name"], FILE_USER);
    assert!(
        config["admin"]["tokens"][0]
            .as_str()
            .unwrap()
            .starts_with("****")
    );
}
