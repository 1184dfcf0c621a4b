//! The gateway's own upstream keys never reach a client or a log, through the real binary against
//! the mock, for every client protocol, passthrough and converted.
//!
//! - An upstream refusing the gateway's key (401, 403) with no other key or backend left is the
//!   gateway's failure: a 502 in the client's protocol naming the backend, without the upstream's
//!   text (providers echo the presented key in it; the mock's `echo_key` directive does too).
//! - Any other upstream error text that is passed on (a 429's or 500's body, verbatim or
//!   re-shaped; an in-band error event mid-stream) has every configured key replaced by
//!   `[redacted]`, and so has the access log (the request record's error).

use octo_core::Protocol;
use octo_test::{Gateway, Prompt, Reply, client, mock, post};
use serde_json::Value;

/// The keys of the four backends; each must never be seen outside the gateway.
const KEYS: [&str; 4] = [
    "sk-oa-SECRET-0001",
    "sk-resp-SECRET-0002",
    "sk-an-SECRET-0003",
    "gem-SECRET-0004",
];

fn config(mock: &str) -> String {
    format!(
        r#"
listen: "127.0.0.1:0"
backends:
  oa: {{base_url: "{mock}", protocol: openai_chat, api_key: "{}"}}
  resp: {{base_url: "{mock}", protocol: openai_responses, api_key: "{}"}}
  an: {{base_url: "{mock}", protocol: anthropic, api_key: "{}"}}
  gem: {{base_url: "{mock}", protocol: gemini, api_key: "{}"}}
models:
  chat: {{targets: [{{backend: oa}}], retry: {{max_attempts: 1}}}}
  resp: {{targets: [{{backend: resp}}], retry: {{max_attempts: 1}}}}
  claude: {{targets: [{{backend: an}}], retry: {{max_attempts: 1}}}}
  gemini: {{targets: [{{backend: gem}}], retry: {{max_attempts: 1}}}}
"#,
        KEYS[0], KEYS[1], KEYS[2], KEYS[3]
    )
}

/// The model served by a backend of `upstream`'s protocol, and that backend's name.
fn model_of(upstream: Protocol) -> (&'static str, &'static str) {
    match upstream {
        Protocol::OpenAiChat => ("chat", "oa"),
        Protocol::OpenAiResponses => ("resp", "resp"),
        Protocol::Anthropic => ("claude", "an"),
        _ => ("gemini", "gem"),
    }
}

/// Every (client, upstream) pair to test: each client protocol passthrough, and converted to the
/// next protocol.
fn pairs() -> Vec<(Protocol, Protocol)> {
    let all = Protocol::CHAT_PROTOCOLS;
    let mut out = Vec::new();
    for (i, client) in all.into_iter().enumerate() {
        out.push((client, client));
        out.push((client, all[(i + 1) % all.len()]));
    }
    out
}

fn assert_no_key(what: &str, text: &str) {
    for key in KEYS {
        assert!(!text.contains(key), "{what} shows the key {key}: {text}");
    }
    assert!(
        !text.contains("SECRET"),
        "{what} shows part of a key: {text}"
    );
}

/// The error message in `client`'s error shape, checking the shape on the way.
fn error_message(client: Protocol, v: &Value) -> String {
    let message = match client {
        Protocol::Anthropic => {
            assert_eq!(v["type"], "error", "{v}");
            &v["error"]["message"]
        }
        _ => &v["error"]["message"],
    };
    message
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {v}"))
        .to_owned()
}

async fn send(gw: &Gateway, client: Protocol, model: &str, text: &str, stream: bool) -> Reply {
    let prompt = Prompt::new(client, model, text).stream(stream);
    Reply::read(
        post(
            &client_http(),
            &format!("{}{}", gw.url, prompt.path()),
            prompt.body(),
            &[],
        )
        .await,
    )
    .await
}

fn client_http() -> reqwest::Client {
    client()
}

fn start(mock: &str) -> Gateway {
    Gateway::start_logged(
        &config(mock),
        &[],
        &[("OCTOLLM_LOG", "info"), ("OCTOLLM_LOG_FORMAT", "json")],
    )
}

#[tokio::test]
async fn a_refused_gateway_key_is_a_502_naming_the_backend_in_every_protocol() {
    let mock = mock().await;
    let gw = start(&mock.url());
    for status in [401, 403] {
        for (client, upstream) in pairs() {
            let (model, backend) = model_of(upstream);
            let text = format!("hi [mock:status={status}] [mock:echo_key]");
            let reply = send(&gw, client, model, &text, false).await;
            let what = format!("{client} → {upstream} ({status})");
            assert_eq!(reply.status, 502, "{what}: {:?}", reply.json);
            let body = reply.json.to_string();
            assert_no_key(&what, &body);
            // The gateway's words, not the upstream's.
            assert!(!body.contains("octo-mock"), "{what}: {body}");
            assert!(!body.contains("Incorrect API key"), "{what}: {body}");
            let message = error_message(client, &reply.json);
            assert!(
                message.contains(&format!("backend `{backend}`")) && message.contains("refused"),
                "{what}: {message}"
            );
            match client {
                Protocol::Anthropic => assert_eq!(reply.json["error"]["type"], "api_error"),
                Protocol::Gemini => {
                    assert_eq!(reply.json["error"]["code"], 502);
                    assert_eq!(reply.json["error"]["status"], "UNAVAILABLE");
                }
                _ => {
                    assert_eq!(reply.json["error"]["code"], "upstream_key_refused");
                    assert_eq!(reply.json["error"]["type"], "server_error");
                }
            }
        }
    }
    // The same when the client asked for a stream (the refusal comes before any event).
    for (client, upstream) in pairs() {
        let (model, _) = model_of(upstream);
        let reply = send(
            &gw,
            client,
            model,
            "hi [mock:status=401] [mock:echo_key]",
            true,
        )
        .await;
        assert_eq!(reply.status, 502, "{client} → {upstream}: {:?}", reply.json);
        assert_no_key(
            &format!("stream {client} → {upstream}"),
            &reply.json.to_string(),
        );
    }
    let log = gw.log();
    assert!(log.contains("refused the gateway"), "{log}");
    assert_no_key("the gateway's log", &log);
}

#[tokio::test]
async fn keys_are_redacted_from_upstream_error_text_passed_on() {
    let mock = mock().await;
    let gw = start(&mock.url());
    for status in [429, 500, 400] {
        for (client, upstream) in pairs() {
            let (model, _) = model_of(upstream);
            let text = format!("hi [mock:status={status}] [mock:echo_key]");
            let reply = send(&gw, client, model, &text, false).await;
            let what = format!("{client} → {upstream} ({status})");
            assert_eq!(reply.status, status, "{what}: {:?}", reply.json);
            let body = reply.json.to_string();
            assert_no_key(&what, &body);
            // The upstream's message is still there, with the key replaced.
            let message = error_message(client, &reply.json);
            assert!(
                message.contains("Incorrect API key provided: [redacted]"),
                "{what}: {message}"
            );
        }
    }
    assert_no_key("the gateway's log", &gw.log());
}

#[tokio::test]
async fn keys_are_redacted_from_in_band_stream_errors() {
    let mock = mock().await;
    let gw = start(&mock.url());
    for (client, upstream) in pairs() {
        let (model, _) = model_of(upstream);
        let prompt = Prompt::new(
            client,
            model,
            "hi there [mock:midstream_error=1] [mock:echo_key]",
        )
        .stream(true);
        let response = post(
            &client_http(),
            &format!("{}{}", gw.url, prompt.path()),
            prompt.body(),
            &[],
        )
        .await;
        let what = format!("stream {client} → {upstream}");
        assert_eq!(response.status(), 200, "{what}");
        let body = octo_test::http::text(response).await;
        assert_no_key(&what, &body);
        assert!(body.contains("error"), "{what}: no error event in {body}");
        assert!(body.contains("[redacted]"), "{what}: {body}");
    }
    let log = gw.log();
    assert!(log.contains("\"status\""), "no access log lines: {log}");
    assert_no_key("the gateway's log", &log);
}
