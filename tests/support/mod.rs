//! Shared test support: the real `octollm-server` binary on an ephemeral port, against the
//! in-process mock upstream.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ChildStdout;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use octo_mock::{MockConfig, MockServer};

/// The `octollm-server` binary built next to this test executable.
pub fn server_bin() -> PathBuf {
    let mut dir = std::env::current_exe().expect("test executable path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("octollm-server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` (which builds it) or `cargo build -p octo-server` first",
        bin.display()
    );
    bin
}

/// The gateway binary on config file `config`, logging at `warn`.
fn server_command(config: &Path) -> Command {
    let mut command = Command::new(server_bin());
    command
        .arg("--config")
        .arg(config)
        .env("OCTOLLM_LOG", "warn");
    command
}

/// A running gateway process; killed on drop.
pub struct Gateway {
    child: Child,
    pub url: String,
    pub config_path: PathBuf,
    /// Lines the gateway prints after the listening line, read by a thread.
    lines: mpsc::Receiver<String>,
    /// Whether `config_path` is a temp file of ours, deleted on drop.
    owned_config: bool,
}

/// Forwards the rest of a gateway's stdout, line by line, from a thread.
fn line_reader(stdout: BufReader<ChildStdout>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

static CONFIGS: AtomicUsize = AtomicUsize::new(0);

/// Writes `yaml` to a new temp file named after `prefix` and this process.
fn temp_config(prefix: &str, yaml: &str) -> PathBuf {
    let n = CONFIGS.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}.yaml", std::process::id()));
    std::fs::write(&path, yaml).expect("write test config");
    path
}

impl Gateway {
    /// Writes `yaml` to a temp file and starts the gateway on it; returns once it listens.
    pub fn start(yaml: &str) -> Gateway {
        Self::start_with(yaml, &[])
    }

    /// As [`Gateway::start`], with extra command-line arguments.
    pub fn start_with(yaml: &str, args: &[&str]) -> Gateway {
        let config_path = temp_config("octollm-test", yaml);
        let mut command = server_command(&config_path);
        command.args(args).env_remove("OCTOLLM_LISTEN");
        Self::launch(command, config_path, true)
    }

    /// Starts the gateway on an existing config file (never deleted) with extra environment
    /// variables, listening on an ephemeral port through `OCTOLLM_LISTEN`.
    pub fn start_file(path: &Path, envs: &[(String, String)]) -> Gateway {
        let mut command = server_command(path);
        command
            .args(["--watch-interval", "0"])
            .env("OCTOLLM_LISTEN", "127.0.0.1:0")
            .envs(envs.iter().map(|(k, v)| (k, v)));
        Self::launch(command, path.to_owned(), false)
    }

    /// Spawns `command` and returns once the gateway prints its listening line; panics with the
    /// line it printed instead.
    fn launch(mut command: Command, config_path: PathBuf, owned_config: bool) -> Gateway {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn octollm-server");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read the listening line");
        let url = line
            .trim()
            .strip_prefix("octollm-server listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "octollm-server did not start on {}; first stdout line: {line:?}",
                    config_path.display()
                )
            })
            .to_owned();
        Gateway {
            child,
            url,
            config_path,
            lines: line_reader(stdout),
            owned_config,
        }
    }

    /// The next line the gateway prints on stdout; panics if none comes within 30 s, so a
    /// missing line fails the test instead of hanging it.
    pub fn next_line(&mut self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the gateway printed no further line within 30 s")
    }

    /// Sends `signal` (e.g. `-HUP`) to the gateway.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for the process; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        self.signal("-TERM");
        self.child.wait().expect("wait for the gateway").success()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owned_config {
            let _ = std::fs::remove_file(&self.config_path);
        }
    }
}

/// Starts the gateway on `yaml`, expecting it to refuse to start: returns what it printed on
/// stderr. Panics if it starts listening instead.
pub fn start_fails(yaml: &str) -> String {
    let config_path = temp_config("octollm-bad", yaml);
    let mut child = server_command(&config_path)
        .env("OCTOLLM_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn octollm-server");
    // A gateway that starts prints its listening line; one that refuses closes stdout and exits.
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read stdout");
    if !first.is_empty() {
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&config_path);
        panic!("octollm-server started although the config is invalid: {first}");
    }
    let out = child.wait_with_output().expect("wait for octollm-server");
    let _ = std::fs::remove_file(&config_path);
    assert!(!out.status.success(), "exit status {:?}", out.status);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An in-process upstream serving `engine` on every protocol route, on an ephemeral port; stops
/// when dropped.
pub struct Upstream {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Upstream {
    /// Serves `engine` (must be called inside a Tokio runtime).
    pub async fn start(engine: octo_core::ArcEngine) -> Upstream {
        use octo_core::http::{Router, ServeConfig, SharedRouter, serve};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut router = Router::new();
        for format in octo_core::Protocol::CHAT_PROTOCOLS {
            router = router.engine(format, engine.clone());
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(
            listener,
            SharedRouter::new(router),
            ServeConfig::default(),
            async {
                let _ = stopped.await;
            },
        ));
        Upstream {
            url,
            stop: Some(stop),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a mock upstream on an ephemeral loopback port.
pub async fn mock() -> MockServer {
    MockServer::start("127.0.0.1:0".parse().unwrap(), MockConfig::default())
        .await
        .expect("start the mock upstream")
}

/// A loopback URL where nothing listens (the port was just released).
pub fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// A config with one backend per protocol on `mock`, plus failure cases.
pub fn config(mock: &str) -> String {
    let down = closed_port_url();
    format!(
        r#"
listen: "127.0.0.1:0"
limits: {{max_body_bytes: 2000000, stream_keep_alive: 30s}}
backends:
  oa: {{base_url: "{mock}", protocol: openai_chat, api_key: "sk-upstream-oa"}}
  resp: {{base_url: "{mock}", protocol: openai_responses, api_key: "sk-upstream-resp"}}
  an: {{base_url: "{mock}", protocol: anthropic, api_key: "sk-upstream-an"}}
  gem: {{base_url: "{mock}", protocol: gemini, api_key: "sk-upstream-gem"}}
  all:
    base_url: "{mock}"
    protocol: [openai_chat, openai_responses, anthropic, gemini]
    api_key: "sk-upstream-all"
    timeouts: {{first_byte: 300ms}}
  down:
    base_url: "{down}"
    protocol: [openai_chat, openai_responses, anthropic, gemini]
    timeouts: {{connect: 1s}}
    circuit_breaker: {{failures: 0}}
models:
  chat: {{targets: [{{backend: oa, model: up-chat}}]}}
  resp: {{targets: [{{backend: resp, model: up-resp}}]}}
  claude: {{targets: [{{backend: an, model: up-claude}}]}}
  gemini: {{targets: [{{backend: gem, model: up-gemini}}]}}
  slow: {{targets: [{{backend: all, model: up-slow}}], retry: {{max_attempts: 1}}}}
  broken: {{targets: [{{backend: down}}], retry: {{max_attempts: 1}}}}
  failover: {{targets: [{{backend: down}}, {{backend: oa, model: up-failover}}]}}
"#
    )
}

/// Where each protocol's requests go on the gateway, for model `m`.
pub fn path_for(protocol: &str, model: &str, stream: bool) -> String {
    match protocol {
        "openai_chat" => "/v1/chat/completions".into(),
        "openai_responses" => "/v1/responses".into(),
        "anthropic" => "/v1/messages".into(),
        _ if stream => format!("/v1beta/models/{model}:streamGenerateContent?alt=sse"),
        _ => format!("/v1beta/models/{model}:generateContent"),
    }
}

/// A minimal valid request body for `protocol`.
pub fn body_for(protocol: &str, model: &str, text: &str, stream: bool) -> String {
    let text = serde_json::to_string(text).unwrap();
    match protocol {
        "openai_chat" => format!(
            r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":{text}}}]}}"#
        ),
        "openai_responses" => format!(r#"{{"model":"{model}","stream":{stream},"input":{text}}}"#),
        "anthropic" => format!(
            r#"{{"model":"{model}","max_tokens":64,"stream":{stream},"messages":[{{"role":"user","content":{text}}}]}}"#
        ),
        _ => format!(r#"{{"contents":[{{"role":"user","parts":[{{"text":{text}}}]}}]}}"#),
    }
}

/// Every protocol, with the model routed to its own backend.
pub const PROTOCOLS: [(&str, &str); 4] = [
    ("openai_chat", "chat"),
    ("openai_responses", "resp"),
    ("anthropic", "claude"),
    ("gemini", "gemini"),
];
