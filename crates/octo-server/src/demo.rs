//! `octollm-server --demo`: the gateway in front of the in-process mock upstream.
//!
//! Runs `examples/demo.yaml` (compiled in) with `${OCTOLLM_DEMO_UPSTREAM}` pointing at the mock
//! upstream (`octo_mock::MockServer`) on an ephemeral loopback port, so a newcomer can curl the
//! gateway or point an official SDK at it with no API key and no network.
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
Press Ctrl-C to stop.\n"
    )
}
