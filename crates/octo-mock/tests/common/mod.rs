//! Helpers shared by the integration tests: a server on port 0, a plain reqwest client and an SSE
//! parser.

// Each test binary uses a different subset of the helpers, through `mod common;`.
#![allow(dead_code, unreachable_pub)]

use octo_mock::{MockConfig, MockServer};
use serde_json::Value;

/// A server on an ephemeral port with zero delays.
pub async fn start() -> MockServer {
    MockServer::start("127.0.0.1:0".parse().unwrap(), MockConfig::default())
        .await
        .unwrap()
}

/// An HTTP/1.1 client that ignores proxy settings from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// An h2c (HTTP/2 prior knowledge) client.
pub fn h2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

/// POSTs `body` as JSON with extra headers.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// Reads the whole body as UTF-8.
pub async fn text(response: reqwest::Response) -> String {
    String::from_utf8(response.bytes().await.unwrap().to_vec()).unwrap()
}

/// Reads the whole body as JSON.
pub async fn json(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    /// The `event:` line, if any.
    pub event: Option<String>,
    /// The `data:` payload (without the `data: ` prefix).
    pub data: String,
}

impl Sse {
    /// The payload parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// Splits an SSE body into events, accepting LF or CRLF and checking the exact `data: ` prefix.
/// Panics on a trailing partial event or on comment lines.
pub fn parse_sse(body: &str) -> Vec<Sse> {
    let body = body.replace("\r\n", "\n");
    assert!(
        body.is_empty() || body.ends_with("\n\n"),
        "unterminated event in {body:?}"
    );
    body.split_terminator("\n\n")
        .map(|block| {
            let mut event = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = Some(name.to_owned());
                } else if let Some(payload) = line.strip_prefix("data: ") {
                    assert!(data.is_none(), "multi-line data in {block:?}");
                    data = Some(payload.to_owned());
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            Sse {
                event,
                data: data.expect("event without data"),
            }
        })
        .collect()
}
