//! `octollm-server --demo`: the gateway in front of the in-process mock upstream.
//!
//! Runs `examples/demo.yaml` (compiled in) with `${OCTOLLM_DEMO_UPSTREAM}` pointing at the mock
//! upstream (`octo_mock::MockServer`) on an ephemeral loopback port, so a newcomer can curl the
//! gateway or point an official SDK at it with no API key and no network.
//!
//! So that the web panel's charts and log are not empty, [`traffic`] sends a little traffic of its
//! own through the gateway: a burst at start, then a request every second or two, over the three
//! models and four protocols, some streamed, a few failing (the mock's `status` directive).
//!
//! Starting the demo needs the `demo` cargo feature (on by default), which links the mock into the
//! binary; without it [`UNAVAILABLE`] is what `--demo` reports.

use std::net::SocketAddr;

#[cfg(feature = "demo")]
use octo_mock::{MockConfig, MockServer};

#[cfg(feature = "demo")]
use crate::config::{Config, ConfigError, parse};

/// What `--demo` reports in a build without the `demo` feature.
pub const UNAVAILABLE: &str = "--demo is not available: this octollm-server was built without the `demo` cargo feature (on by default), which links in the mock upstream; rebuild with `cargo build -p octo-server --features demo`, or run with --config FILE";

/// The demo configuration file, as shipped in `examples/demo.yaml`.
pub const DEMO_YAML: &str = include_str!("../../../examples/demo.yaml");

/// Starts the mock upstream and returns it with the demo config pointing at it.
///
/// # Errors
/// When the mock cannot bind a loopback port, or the demo config is invalid.
#[cfg(feature = "demo")]
pub async fn start() -> Result<(MockServer, Config), Box<dyn std::error::Error>> {
    let mock =
        MockServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), MockConfig::default()).await?;
    let url = mock.url();
    let env = move |name: &str| {
        if name == "OCTOLLM_DEMO_UPSTREAM" {
            Some(url.clone())
        } else {
            std::env::var(name).ok()
        }
    };
    let config = parse(DEMO_YAML, "examples/demo.yaml (built in)", &env)
        .map_err(|e: ConfigError| Box::new(e) as Box<dyn std::error::Error>)?;
    Ok((mock, config))
}

/// What to try once the demo is up.
pub fn banner(gateway: SocketAddr, upstream: &str) -> String {
    format!(
        "\nOctoLLM demo: gateway on http://{gateway}, mock upstream on {upstream} (no network, no API key).\n\
Models: gpt-4o-mini, claude-sonnet-5-5, gemini-2.5-flash; every client protocol is passed through.\n\n\
  curl -s http://{gateway}/v1/chat/completions -H 'content-type: application/json' \\\n\
    -d '{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'\n\
  curl -sN http://{gateway}/v1/messages -H 'content-type: application/json' \\\n\
    -d '{{\"model\":\"claude-sonnet-5-5\",\"max_tokens\":64,\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'\n\
  curl -s 'http://{gateway}/v1beta/models/gemini-2.5-flash:generateContent' -H 'content-type: application/json' \\\n\
    -d '{{\"contents\":[{{\"role\":\"user\",\"parts\":[{{\"text\":\"hi\"}}]}}]}}'\n\n\
  SDKs: OpenAI(base_url=\"http://{gateway}/v1\", api_key=\"any\"), Anthropic(base_url=\"http://{gateway}\", api_key=\"any\"),\n\
        genai.Client(api_key=\"any\", http_options={{\"base_url\": \"http://{gateway}\"}})\n\
The demo sends a little traffic of its own so the panel has something to show; its access log is\n\
off (OCTOLLM_LOG=info shows every request).\n\
Press Ctrl-C to stop.\n"
    )
}

/// One request of the demo's own traffic: (path, body).
#[cfg(feature = "demo")]
fn demo_request(i: u64) -> (String, String) {
    let stream = i % 3 == 0;
    let latency = 40 + (i * 37) % 400;
    // Mock directives ride in the prompt (the gateway forwards no client headers upstream).
    let directive = match i % 17 {
        5 => "[mock:status=500]".to_owned(),
        11 => "[mock:status=429]".to_owned(),
        _ => format!("[mock:latency_ms={latency}] [mock:interval_ms=20]"),
    };
    let text = format!("demo request {i} {directive}");
    let (path, body) = match i % 4 {
        0 => (
            "/v1/chat/completions".to_owned(),
            serde_json::json!({"model": "gpt-4o-mini", "stream": stream,
                "messages": [{"role": "user", "content": text}]}),
        ),
        1 => (
            "/v1/messages".to_owned(),
            serde_json::json!({"model": "claude-sonnet-5-5", "max_tokens": 64, "stream": stream,
                "messages": [{"role": "user", "content": text}]}),
        ),
        2 => (
            format!(
                "/v1beta/models/gemini-2.5-flash:{}",
                if stream {
                    "streamGenerateContent?alt=sse"
                } else {
                    "generateContent"
                }
            ),
            serde_json::json!({"contents": [{"role": "user", "parts": [{"text": text}]}]}),
        ),
        _ => (
            "/v1/responses".to_owned(),
            serde_json::json!({"model": "gpt-4o-mini", "stream": stream, "input": text}),
        ),
    };
    (path, body.to_string())
}

/// Sends the demo's own traffic to the gateway at `gateway` until the task is aborted: 40
/// requests at once (concurrently), then one every 1 to 2 s. Failures (the gateway shutting down) are ignored.
#[cfg(feature = "demo")]
pub async fn traffic(gateway: SocketAddr) {
    let Ok(client) = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
    else {
        return;
    };
    let base = format!("http://{gateway}");
    let send = |i: u64| {
        let (path, body) = demo_request(i);
        let req = client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("authorization", "Bearer demo-traffic")
            .body(body);
        async move {
            if let Ok(resp) = req.send().await {
                let _ = resp.bytes().await;
            }
        }
    };
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..40 {
        burst.spawn(send(i));
    }
    while burst.join_next().await.is_some() {}
    let mut i = 40u64;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(1000 + (i * 211) % 1000)).await;
        send(i).await;
        i += 1;
    }
}
