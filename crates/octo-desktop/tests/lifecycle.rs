//! The desktop app's gateway through its own API, without pixels: first run, start, an
//! SDK-shaped request, the live log stream, the signed-in panel link, today's figures, stop,
//! restart with a stream in flight (drained, not dropped), a failing config and the menu
//! actions.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use octo_desktop::logs::Line;
use octo_desktop::menu::{Action, App, Effect, items};
use octo_desktop::{Gateway, LogHub, Paths, Status};

/// One log hub per test process (a global tracing subscriber can be installed once).
fn hub() -> Arc<LogHub> {
    static HUB: OnceLock<Arc<LogHub>> = OnceLock::new();
    HUB.get_or_init(|| {
        let hub = LogHub::new();
        hub.install("info").unwrap();
        hub
    })
    .clone()
}

fn temp_paths(name: &str) -> Paths {
    let dir = std::env::temp_dir().join(format!("octo-desktop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Paths::at(dir)
}

fn app(name: &str) -> App {
    let paths = temp_paths(name);
    assert!(
        paths.ensure().unwrap(),
        "first run writes the starter config"
    );
    App {
        gateway: Arc::new(Gateway::new(
            paths,
            Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        )),
        logs: hub(),
    }
}

fn running(status: &Status) -> (SocketAddr, SocketAddr) {
    match status {
        Status::Running {
            addr,
            admin: Some(admin),
        } => (*addr, *admin),
        other => panic!("not running: {other:?}"),
    }
}

/// A chat completion as the OpenAI SDKs send it (`POST /v1/chat/completions`, bearer key).
async fn chat(addr: SocketAddr, text: &str) -> serde_json::Value {
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth("sk-anything")
        .header("user-agent", "OpenAI/Python 1.0 (test)")
        .json(&serde_json::json!({
            "model": "mock-gpt",
            "messages": [{"role": "user", "content": text}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Waits (bounded) for a published log line containing `needle`.
async fn wait_line(rx: &mut tokio::sync::broadcast::Receiver<Line>, needle: &str) -> String {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rx.recv().await {
                Ok(line) if line.text.contains(needle) => return line.text,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("log stream closed: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with `{needle}`"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_request_logs_panel_stop_and_today() {
    let app = app("main");
    let gw = &app.gateway;
    assert_eq!(gw.status(), Status::Stopped);
    assert!(gw.today().await.is_none());
    let (_, mut rx) = app.logs.subscribe();

    let (addr, admin) = running(&gw.start().await);
    assert_eq!(
        gw.start().await.name(),
        "running",
        "a second start is a no-op"
    );
    wait_line(&mut rx, "serving").await;

    let answer = chat(addr, "hello desktop").await;
    assert_eq!(answer["object"], "chat.completion");
    assert!(
        answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("hello desktop")
    );
    // The access log line of that request reaches the log stream.
    let line = wait_line(&mut rx, "octollm::access").await;
    assert!(
        line.contains("mock-gpt") && line.contains("status=200"),
        "{line}"
    );

    // The panel link signs in once: a session cookie, then /api/v1/me answers.
    let link = gw.panel_link().await.unwrap();
    assert!(link.starts_with(&format!("http://{admin}/api/v1/login/once/")));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client.get(&link).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let me = client
        .get(format!("http://{admin}/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(
        client.get(&link).send().await.unwrap().status(),
        410,
        "once"
    );

    // Stop drains and writes the log; the port is closed.
    assert_eq!(gw.stop().await, Status::Stopped);
    assert!(
        reqwest::get(format!("http://{addr}/v1/models"))
            .await
            .is_err()
    );
    assert!(gw.panel_link().await.is_err());
    let stopped = items(&gw.status(), None);
    assert_eq!(stopped[0].label, "Stopped");

    // Started again on the same database: today's figures count the request, with its cost
    // (the starter config prices the mock's models).
    running(&gw.start().await);
    let today = gw.today().await.unwrap();
    assert_eq!(today.requests, 1);
    assert!(today.cost_usd.unwrap() > 0.0, "{today:?}");
    let menu = app.menu().await;
    assert!(
        menu[0].label.contains("1 request today · $"),
        "{}",
        menu[0].label
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_drains_a_stream_in_flight() {
    let app = app("drain");
    let gw = app.gateway.clone();
    let (addr, _) = running(&gw.start().await);
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&serde_json::json!({
            "model": "mock-gpt", "stream": true,
            "messages": [{"role": "user", "content": "slow [mock:events=20] [mock:interval_ms=40]"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let mut text = String::from_utf8(body.next().await.unwrap().unwrap().to_vec()).unwrap();
    // The stream has begun: restart now, while it runs.
    let restart = tokio::spawn({
        let gw = gw.clone();
        async move { gw.restart().await }
    });
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let deltas = text.matches("\"content\":").count();
    assert!(deltas >= 20, "{deltas} deltas: {text}");
    let status = restart.await.unwrap();
    let (new_addr, _) = running(&status);
    chat(new_addr, "after restart").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_config_shows_its_error_and_recovers() {
    let app = app("failing");
    let gw = &app.gateway;
    let config = gw.paths().config.clone();
    let good = std::fs::read_to_string(&config).unwrap();
    let (_, mut rx) = app.logs.subscribe();
    std::fs::write(
        &config,
        good.replace(
            "{backend: mock, model: mock-claude}",
            "{backend: nowhere, model: x}",
        ),
    )
    .unwrap();
    let status = gw.start().await;
    let Status::Failing(error) = &status else {
        panic!("{status:?}")
    };
    assert!(error.contains("models.mock-claude"), "{error}");
    assert!(error.contains("nowhere"), "{error}");
    wait_line(&mut rx, "the gateway did not start").await;
    let menu = items(&status, None);
    assert!(menu[0].label.starts_with("Failing: "), "{}", menu[0].label);
    let enabled: Vec<_> = menu
        .iter()
        .filter(|i| i.enabled)
        .map(|i| i.action)
        .collect();
    assert!(enabled.contains(&Some(Action::Restart)));
    assert!(!enabled.contains(&Some(Action::OpenPanel)));

    // Fixed, a Restart from the menu runs it.
    std::fs::write(&config, &good).unwrap();
    assert_eq!(app.dispatch(Action::Restart).await, Effect::None);
    let (addr, _) = running(&gw.status());
    chat(addr, "fixed").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menu_actions_dispatch() {
    let app = app("dispatch");
    let gw = &app.gateway;
    // Disabled while stopped: nothing happens.
    assert_eq!(app.dispatch(Action::OpenPanel).await, Effect::None);
    assert_eq!(app.dispatch(Action::Stop).await, Effect::None);
    assert_eq!(app.dispatch(Action::ViewLogs).await, Effect::ShowLogs);
    assert_eq!(
        app.dispatch(Action::OpenConfig).await,
        Effect::OpenFile(gw.paths().config.clone())
    );
    let mut watch = gw.watch();
    assert_eq!(app.dispatch(Action::Start).await, Effect::None);
    watch.changed().await.unwrap();
    assert_eq!(watch.borrow_and_update().name(), "running");
    let Effect::OpenPanel(url) = app.dispatch(Action::OpenPanel).await else {
        panic!("no panel link")
    };
    assert!(url.contains("/api/v1/login/once/"));
    assert!(gw.admin_token().await.is_some());
    assert_eq!(app.dispatch(Action::Stop).await, Effect::None);
    assert_eq!(gw.status(), Status::Stopped);
    app.dispatch(Action::Start).await;
    assert_eq!(app.dispatch(Action::Quit).await, Effect::Quit);
    assert_eq!(gw.status(), Status::Stopped);
}

/// What the panel's Get started page does: a real backend and a model on it through the admin
/// API; requests route to it at once, and it is still there after a Restart (stored, key sealed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_adds_a_backend_that_survives_restart() {
    let app = app("onboarding");
    let gw = &app.gateway;
    let (_, admin) = running(&gw.start().await);
    // A second mock stands in for the provider the user has a key for.
    let provider = octo_mock::MockServer::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        octo_mock::MockConfig::default(),
    )
    .await
    .unwrap();
    let token = gw.admin_token().await.unwrap();
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("http://{admin}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let res = post(
        "/api/v1/backends",
        serde_json::json!({"name": "openai", "base_url": provider.url(),
            "protocol": "openai_chat", "api_keys": ["sk-real-provider-key"]}),
    )
    .await
    .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    let res = post(
        "/api/v1/models",
        serde_json::json!({"name": "gpt-4.1", "targets": [{"backend": "openai", "model": "gpt-4.1"}]}),
    )
    .await
    .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());

    let ask = |addr: SocketAddr| async move {
        reqwest::Client::new()
            .post(format!("http://{addr}/v1/chat/completions"))
            .json(&serde_json::json!({"model": "gpt-4.1",
                "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
            .status()
    };
    let (addr, _) = running(&gw.status());
    assert_eq!(ask(addr).await, 200);
    assert_eq!(provider.requests().len(), 1);
    // The upstream key is sealed with a key file in the data directory, not stored in clear.
    assert!(gw.paths().dir.join(".octollm-secret-key").exists());
    let config = std::fs::read_to_string(&gw.paths().config).unwrap();
    assert!(
        !config.contains("sk-real-provider-key"),
        "the file is not rewritten"
    );

    let (addr, _) = running(&gw.restart().await);
    assert_eq!(ask(addr).await, 200);
    assert_eq!(provider.requests().len(), 2);
    gw.shutdown().await;
    provider.shutdown().await;
}
