//! What every fault-matrix test shares: a gateway with a warmed-up baseline of memory and open
//! files, requests in each client protocol with a client-side deadline (so a hang fails the test
//! instead of stalling it), and checks of the protocol's error shapes.

#![allow(dead_code)] // Each test file uses its own part of this module.

use std::time::Duration;

use octo_core::Protocol;
use octo_test::process::{Tolerance, Usage, wait_back};
use octo_test::{Gateway, Prompt, client, mock};
use serde_json::Value;

/// How long any one request of a row may take, end to end, before the row counts as hung: well
/// above the short upstream timeouts the rows configure (1–3 s), far below a test runner's.
pub(crate) const CLIENT_DEADLINE: Duration = Duration::from_secs(20);

/// How long the gateway may take to give back memory and files after a row. jemalloc (the
/// binary's allocator) returns freed pages over its 10 s decay, so a row that held 64 MiB is
/// back only after that; 15 s proved too short on a loaded 2-core CI machine (two rows read
/// 100–106 MiB against a 99 MiB bound after 15 s, and passed alone). A row that settles returns
/// at once: this only bounds how long a leak takes to be reported.
pub(crate) const SETTLE: Duration = Duration::from_secs(30);

/// A gateway under test, its baseline taken after warm-up traffic.
pub(crate) struct Subject {
    pub(crate) gw: Gateway,
    pub(crate) baseline: Usage,
    pub(crate) mock: octo_mock::MockServer,
}

/// Backends every fault config has: `mock` (all four protocols, passthrough) and `mock_chat`
/// (OpenAI Chat only, so other clients are converted).
pub(crate) fn mock_backends(mock: &str) -> String {
    format!(
        r#"
  mock:
    base_url: "{mock}"
    protocol: [openai_chat, openai_responses, anthropic, gemini]
    api_key: "sk-fault-mock"
    circuit_breaker: {{failures: 0}}
    timeouts: {{connect: 1s, first_byte: 60s, idle: 30s, total: 120s}}
  mock_chat:
    base_url: "{mock}"
    protocol: openai_chat
    api_key: "sk-fault-mock"
    circuit_breaker: {{failures: 0}}
    timeouts: {{connect: 1s, first_byte: 60s, idle: 30s, total: 120s}}"#
    )
}

/// A backend named `name` at `url` speaking all four protocols (or `protocols`), with the short
/// deadlines the slow rows rely on. Circuit breakers are off in fault configs so that every
/// request of a row meets the fault itself (with them on, repeated failures open the breaker and
/// later requests get the gateway's 503 "none of its targets is available").
pub(crate) fn fault_backend(name: &str, url: &str, protocols: &str) -> String {
    format!(
        r#"
  {name}:
    base_url: "{url}"
    protocol: {protocols}
    circuit_breaker: {{failures: 0}}
    timeouts: {{connect: 1s, first_byte: 1s, idle: 2s, total: 3s}}"#
    )
}

/// All four protocols, as a YAML list.
pub(crate) const ALL: &str = "[openai_chat, openai_responses, anthropic, gemini]";

/// Starts the mock and a gateway on `backends` (YAML entries under `backends:`, besides the mock
/// ones) and `models` (entries under `models:`, besides `warm`, `passthrough` and `converted` on
/// the mock), warms it up with a request in every protocol, and takes its baseline.
pub(crate) async fn start(backends: &str, models: &str, limits: &str) -> Subject {
    let mock = mock().await;
    let yaml = format!(
        r#"
listen: "127.0.0.1:0"
limits: {{stream_keep_alive: 30s{limits}}}
backends:{}{backends}
models:
  passthrough: {{targets: [{{backend: mock}}], retry: {{max_attempts: 1}}}}
  converted: {{targets: [{{backend: mock_chat}}], retry: {{max_attempts: 1}}}}
{models}
"#,
        mock_backends(&mock.url())
    );
    let gw = Gateway::start(&yaml);
    // Warm-up: every protocol, plain and streaming, passthrough and converted, so that the
    // baseline includes the pools, the runtime's threads and the allocator's first arenas.
    for _ in 0..2 {
        for protocol in Protocol::CHAT_PROTOCOLS {
            for model in ["passthrough", "converted"] {
                for stream in [false, true] {
                    let r = request(&gw, &Prompt::new(protocol, model, "warm up").stream(stream))
                        .await
                        .expect("warm-up request");
                    assert_eq!(r.0, 200, "warm-up {protocol} {model}: {}", r.1);
                }
            }
        }
    }
    let baseline = Usage::of(gw.pid());
    Subject { gw, baseline, mock }
}

impl Subject {
    /// Waits until the gateway is back at its baseline (default tolerance), naming the row.
    pub(crate) async fn settles(&self, row: &str) {
        self.settles_within(row, Tolerance::default()).await;
    }

    /// For rows that used the mock with several requests at once: the pool may keep one idle
    /// connection per request (released to the pool, not leaked), so after a first check with
    /// that allowance, the mock is stopped, which closes them, and the gateway must be back at
    /// its baseline with the default tolerance.
    pub(crate) async fn finish(self, row: &str, concurrency: usize) {
        let pooled = Tolerance {
            fds: Tolerance::default().fds + concurrency,
            ..Tolerance::default()
        };
        self.settles_within(row, pooled).await;
        let Subject { gw, baseline, mock } = self;
        mock.shutdown().await;
        wait_back(gw.pid(), baseline, Tolerance::default(), SETTLE, row).await;
    }

    /// As [`Subject::settles`] with another tolerance.
    pub(crate) async fn settles_within(&self, row: &str, tolerance: Tolerance) {
        wait_back(self.gw.pid(), self.baseline, tolerance, SETTLE, row).await;
    }
}

/// Sends `prompt` and reads the whole answer as text, within [`CLIENT_DEADLINE`]: `Err` when the
/// deadline passed or the connection failed.
pub(crate) async fn request(gw: &Gateway, prompt: &Prompt) -> Result<(u16, String), String> {
    request_with(gw, prompt, &[]).await
}

/// As [`request`], with extra headers.
pub(crate) async fn request_with(
    gw: &Gateway,
    prompt: &Prompt,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let url = format!("{}{}", gw.url, prompt.path());
    let mut builder = client()
        .post(&url)
        .header("content-type", "application/json")
        .body(prompt.body());
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let exchange = async {
        let response = builder.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    match tokio::time::timeout(CLIENT_DEADLINE, exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!("no complete answer within {CLIENT_DEADLINE:?}")),
    }
}

/// Asserts `body` is an error of `status` in `protocol`'s shape; returns its message.
pub(crate) fn error_of(protocol: Protocol, status: u16, body: &str, row: &str) -> String {
    let v: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{row} ({protocol}): not JSON ({e}): {body}"));
    let message = match protocol {
        Protocol::Anthropic => {
            assert_eq!(v["type"], "error", "{row} ({protocol}): {v}");
            v["error"]["type"].as_str().expect("error.type");
            v["error"]["message"].as_str()
        }
        Protocol::Gemini => {
            assert_eq!(v["error"]["code"], status, "{row} ({protocol}): {v}");
            v["error"]["status"].as_str().expect("error.status");
            v["error"]["message"].as_str()
        }
        _ => {
            v["error"]["type"].as_str().expect("error.type");
            v["error"]["message"].as_str()
        }
    };
    message
        .unwrap_or_else(|| panic!("{row} ({protocol}): no message in {v}"))
        .to_owned()
}

/// Asserts a streamed `body` ends with `protocol`'s in-band error event; returns its text.
pub(crate) fn stream_error_of(protocol: Protocol, body: &str, row: &str) -> String {
    let events = octo_test::events(body);
    let last = events
        .last()
        .unwrap_or_else(|| panic!("{row} ({protocol}): an empty stream"));
    let data = String::from_utf8_lossy(&last.data_body().to_bytes()).into_owned();
    match protocol {
        Protocol::Anthropic | Protocol::OpenAiResponses => {
            assert!(
                matches!(last.name(), Some("error" | "response.failed")),
                "{row} ({protocol}): the stream does not end with an error event: {body}"
            );
        }
        _ => assert!(
            data.trim_start().starts_with("{\"error\""),
            "{row} ({protocol}): the stream does not end with an error event: {body}"
        ),
    }
    data
}

/// Whether a streamed `body` ends as `protocol`'s complete answer ends.
pub(crate) fn stream_complete(protocol: Protocol, body: &str) -> bool {
    let events = octo_test::events(body);
    let Some(last) = events.last() else {
        return false;
    };
    let data = String::from_utf8_lossy(&last.data_body().to_bytes()).into_owned();
    match protocol {
        Protocol::OpenAiChat => last.is_done_marker(),
        Protocol::Anthropic => last.name() == Some("message_stop"),
        Protocol::OpenAiResponses => last.name() == Some("response.completed"),
        _ => data.contains("finishReason"),
    }
}
