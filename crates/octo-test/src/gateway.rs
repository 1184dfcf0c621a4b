//! The real `octollm-server` binary as a test runs it: started on a YAML config and an ephemeral
//! port, ready once it prints its listening line, killed when dropped; and the standard config that
//! puts one backend of each protocol in front of the mock upstream.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ChildStdout;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use octo_core::Protocol;

use crate::http::{IntoBody, Reply, client, post};
use crate::request::Prompt;
use crate::upstream::closed_port_url;

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
///
/// The request log is off (`OCTOLLM_STORAGE=off`) unless a test passes `--storage URL` or sets
/// the variable itself: test configs share the temp directory, where the default
/// `sqlite://octollm.db` would be one database for every test gateway.
fn server_command(config: &Path) -> Command {
    let mut command = Command::new(server_bin());
    command
        .arg("--config")
        .arg(config)
        .env("OCTOLLM_LOG", "warn")
        .env("OCTOLLM_STORAGE", "off");
    command
}

/// A running gateway process; killed on drop.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:<port>`, as the gateway printed it.
    pub url: String,
    /// The admin listener's `http://ADDR`, when the gateway printed one before its listening
    /// line (`octollm-server admin on http://ADDR (…)`).
    pub admin_url: Option<String>,
    /// The config file the gateway runs on (tests rewrite it to test reloads).
    pub config_path: PathBuf,
    /// Lines the gateway prints after the listening line, read by a thread.
    lines: mpsc::Receiver<String>,
    /// Whether `config_path` is a temp file of ours, deleted on drop.
    owned_config: bool,
    /// Where the gateway's stderr (its logs) goes, when the test captures it.
    log_path: Option<PathBuf>,
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

    /// As [`Gateway::start_with`], with extra environment variables and the gateway's stderr (its
    /// logs: the access log, warnings) captured in a temp file that [`Gateway::log`] reads.
    pub fn start_logged(yaml: &str, args: &[&str], envs: &[(&str, &str)]) -> Gateway {
        let config_path = temp_config("octollm-test", yaml);
        let log_path = config_path.with_extension("log");
        let log = std::fs::File::create(&log_path).expect("create the gateway's log file");
        let mut command = server_command(&config_path);
        command
            .args(args)
            .env_remove("OCTOLLM_LISTEN")
            .envs(envs.iter().copied())
            .stderr(log);
        let mut gateway = Self::launch(command, config_path, true);
        gateway.log_path = Some(log_path);
        gateway
    }

    /// What the gateway wrote on stderr so far (empty unless started with
    /// [`Gateway::start_logged`]).
    pub fn log(&self) -> String {
        self.log_path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The gateway's process id (to read its `/proc/<pid>` figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
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

    /// Spawns `command` and returns once the gateway prints its listening line, noting the admin
    /// listener's URL from the banner printed before it; panics with what it printed instead.
    fn launch(mut command: Command, config_path: PathBuf, owned_config: bool) -> Gateway {
        // stderr is inherited unless the caller redirected it (`start_logged`).
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn octollm-server");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        // The admin listener's banner (and a generated token's lines) come before the listening
        // line.
        let mut admin_url = None;
        let mut printed = String::new();
        let url = loop {
            let mut line = String::new();
            stdout
                .read_line(&mut line)
                .expect("read the listening line");
            if line.is_empty() {
                panic!(
                    "octollm-server did not start on {}; stdout: {printed:?}",
                    config_path.display()
                );
            }
            let line = line.trim();
            if let Some(url) = line.strip_prefix("octollm-server listening on ") {
                break url.to_owned();
            }
            if let Some(rest) = line.strip_prefix("octollm-server admin on ") {
                admin_url = rest.split_whitespace().next().map(str::to_owned);
            }
            printed.push_str(line);
            printed.push('\n');
        };
        Gateway {
            child,
            url,
            admin_url,
            config_path,
            lines: line_reader(stdout),
            owned_config,
            log_path: None,
        }
    }

    /// POSTs `body` as JSON to `path` on the gateway with extra headers, and reads the JSON
    /// answer.
    pub async fn post(&self, path: &str, body: impl IntoBody, headers: &[(&str, &str)]) -> Reply {
        Reply::read(post(&client(), &format!("{}{path}", self.url), body, headers).await).await
    }

    /// Sends `prompt` to the gateway (its path and body, as JSON) and returns the response
    /// unread, for tests that read a stream as it comes.
    pub async fn send(&self, prompt: &Prompt) -> reqwest::Response {
        let url = format!("{}{}", self.url, prompt.path());
        post(&client(), &url, prompt.body(), &[]).await
    }

    /// Sends `prompt`, expects 200, reads the answer whole and returns its
    /// `x-octollm-request-id` (to find its record in the request log).
    pub async fn send_for_id(&self, prompt: &Prompt) -> String {
        let resp = self.send(prompt).await;
        assert_eq!(resp.status(), 200, "{}", prompt.path());
        let id = resp
            .headers()
            .get("x-octollm-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("an x-octollm-request-id header")
            .to_owned();
        resp.bytes().await.expect("read the answer");
        id
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
        if let Some(log) = &self.log_path {
            let _ = std::fs::remove_file(log);
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

/// Every chat protocol, with the model [`config`] routes to that protocol's own backend.
pub const PROTOCOLS: [(Protocol, &str); 4] = [
    (Protocol::OpenAiChat, "chat"),
    (Protocol::OpenAiResponses, "resp"),
    (Protocol::Anthropic, "claude"),
    (Protocol::Gemini, "gemini"),
];
