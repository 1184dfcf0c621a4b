//! Moderation through the real `octollm-server` binary, with the mock upstream as both the
//! generation and the moderation endpoint (it flags text carrying `[[flag:CATEGORY]]`): for every
//! client protocol, stream and not, a flagged request is refused in the client's shape with
//! `content_policy_violation` and never reaches the generation upstream; a flagged answer is
//! withheld, a flagged stream ends with the protocol's error event after the checked part; a
//! moderation endpoint that is down follows `on_error` both ways; and the outcomes are counted.

use octo_core::Protocol;
use octo_test::http::text;
use octo_test::{Gateway, Prompt, client, closed_port_url, mock, parse_sse, post};
use serde_json::Value;

const ADMIN_TOKEN: &str = "a-test-admin-token-0123456789";

fn backend(p: Protocol) -> &'static str {
    match p {
        Protocol::OpenAiChat => "oa",
        Protocol::OpenAiResponses => "resp",
        Protocol::Anthropic => "an",
        _ => "gem",
    }
}

/// Per protocol `p`: `in-p` (input), `out-p` (input and output, 20-character windows),
/// `allow-p` / `deny-p` (a moderation backend that is down, each `on_error`).
fn config(mock: &str) -> String {
    let down = closed_port_url();
    let mut backends = String::new();
    let mut models = String::new();
    for p in Protocol::CHAT_PROTOCOLS {
        let (b, name) = (backend(p), p.config_name());
        backends.push_str(&format!(
            "  {b}: {{base_url: \"{mock}\", protocol: {name}, api_key: \"sk-upstream\"}}\n"
        ));
        let target = format!("targets: [{{backend: {b}}}], retry: {{max_attempts: 1}}");
        models.push_str(&format!(
            "  in-{name}: {{{target}, moderation: {{backend: mod}}}}\n\
             \x20 out-{name}: {{{target}, moderation: {{backend: mod, on: input_and_output, window: 20}}}}\n\
             \x20 allow-{name}: {{{target}, moderation: {{backend: down, on_error: allow, timeout: 5s}}}}\n\
             \x20 deny-{name}: {{{target}, moderation: {{backend: down, on_error: deny}}}}\n"
        ));
    }
    format!(
        r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{ADMIN_TOKEN}"]}}
backends:
{backends}  mod: {{base_url: "{mock}", protocol: openai_chat, api_key: "sk-moderation-key"}}
  down: {{base_url: "{down}", protocol: openai_chat}}
models:
{models}"#
    )
}

/// Requests the mock received other than moderation calls.
fn generations(mock: &octo_mock::MockServer) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.path_and_query != "/v1/moderations")
        .count()
}

fn moderations(mock: &octo_mock::MockServer) -> Vec<octo_mock::RecordedRequest> {
    mock.requests()
        .into_iter()
        .filter(|r| r.path_and_query == "/v1/moderations")
        .collect()
}

/// Standard base64 of `text` (for the mock's `say` directive).
fn b64(text: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn send(gw: &Gateway, prompt: &Prompt) -> (u16, String) {
    let resp = post(
        &client(),
        &format!("{}{}", gw.url, prompt.path()),
        prompt.body(),
        &[],
    )
    .await;
    let status = resp.status().as_u16();
    (status, text(resp).await)
}

/// The error message of a full error answer in `p`'s shape, checking the shape on the way.
fn error_message(p: Protocol, body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{p}: {e}: {body}"));
    match p {
        Protocol::Anthropic => {
            assert_eq!(v["type"], "error", "{body}");
            assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        }
        Protocol::Gemini => {
            assert_eq!(v["error"]["code"], 400, "{body}");
            assert_eq!(v["error"]["status"], "INVALID_ARGUMENT", "{body}");
        }
        _ => {
            assert_eq!(v["error"]["code"], "content_policy_violation", "{body}");
            assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        }
    }
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The in-band error event ending a stream in `p`, as JSON.
fn stream_error(p: Protocol, body: &str) -> Value {
    let events = parse_sse(body);
    let last = events
        .last()
        .unwrap_or_else(|| panic!("{p}: no events: {body}"));
    let v = last.json();
    match p {
        Protocol::Anthropic => {
            assert_eq!(last.event.as_deref(), Some("error"), "{body}");
            v["error"].clone()
        }
        Protocol::OpenAiResponses => {
            assert_eq!(last.event.as_deref(), Some("error"), "{body}");
            v
        }
        _ => v["error"].clone(),
    }
}

#[tokio::test]
async fn flagged_requests_are_refused_in_each_protocol_and_never_sent() {
    let mock = mock().await;
    let gw = Gateway::start_with(&config(&mock.url()), &["--storage", "off"]);
    for p in Protocol::CHAT_PROTOCOLS {
        for stream in [false, true] {
            let what = format!("{p} stream={stream}");
            let model = format!("in-{}", p.config_name());
            let before = generations(&mock);
            let prompt = Prompt::new(p, &model, "please [[flag:violence]] now").stream(stream);
            let (status, body) = send(&gw, &prompt).await;
            assert_eq!(status, 400, "{what}: {body}");
            let message = error_message(p, &body);
            assert!(
                message.contains("content_policy_violation"),
                "{what}: {message}"
            );
            assert!(
                message.contains("violence"),
                "{what}: the category is named: {message}"
            );
            assert_eq!(
                generations(&mock),
                before,
                "{what}: nothing reached the upstream"
            );
            // The moderation call carried the backend's key and the request's text.
            let call = moderations(&mock).pop().expect("a moderation call");
            assert_eq!(
                call.header("authorization"),
                Some("Bearer sk-moderation-key")
            );
            let input = call.body_json().unwrap()["input"].to_string();
            assert!(
                input.contains("please [[flag:violence]] now"),
                "{what}: {input}"
            );

            let clean = Prompt::new(p, &model, "a friendly question").stream(stream);
            let (status, body) = send(&gw, &clean).await;
            assert_eq!(status, 200, "{what}: {body}");
            assert_eq!(generations(&mock), before + 1, "{what}");
        }
    }
    let (_, metrics) = gw
        .admin_get("/metrics", ADMIN_TOKEN)
        .await
        .status_and_body();
    for p in Protocol::CHAT_PROTOCOLS {
        for (outcome, n) in [("flagged_input", 2), ("allowed", 2)] {
            let line = format!(
                "octollm_moderation_total{{model=\"in-{}\",outcome=\"{outcome}\"}} {n}\n",
                p.config_name()
            );
            assert!(metrics.contains(&line), "{line} in {metrics}");
        }
    }
    mock.shutdown().await;
}

#[tokio::test]
async fn flagged_answers_are_withheld_and_flagged_streams_end_with_the_error_event() {
    let mock = mock().await;
    let gw = Gateway::start_with(&config(&mock.url()), &["--storage", "off"]);
    let reply = "alpha beta gamma delta epsilon zeta [[flag:violence]] eta theta";
    let say = format!("[mock:say={}]", b64(reply));
    for p in Protocol::CHAT_PROTOCOLS {
        let model = format!("out-{}", p.config_name());
        // Full answer: withheld.
        let (status, body) = send(&gw, &Prompt::new(p, &model, say.clone())).await;
        assert_eq!(status, 400, "{p}: {body}");
        let message = error_message(p, &body);
        assert!(message.contains("answer was flagged"), "{p}: {message}");
        assert!(message.contains("violence"), "{p}: {message}");
        assert!(!body.contains("alpha"), "{p}: the answer is not shown");

        // Stream: the checked part arrives, then the protocol's error event, and nothing flagged.
        let (status, body) = send(&gw, &Prompt::new(p, &model, say.clone()).stream(true)).await;
        assert_eq!(status, 200, "{p}: the stream had started: {body}");
        let err = stream_error(p, &body);
        let err_text = err.to_string();
        assert!(
            err_text.contains("content_policy_violation"),
            "{p}: {err_text}"
        );
        assert!(
            body.contains("alpha"),
            "{p}: the first window was released: {body}"
        );
        assert!(
            !body.contains("[[flag"),
            "{p}: flagged text never reaches the client: {body}"
        );
        assert!(!body.contains("theta"), "{p}: {body}");

        // A clean answer passes whole, stream and not.
        let clean = format!(
            "[mock:say={}]",
            b64("alpha beta gamma delta epsilon zeta eta theta")
        );
        for stream in [false, true] {
            let (status, body) =
                send(&gw, &Prompt::new(p, &model, clean.clone()).stream(stream)).await;
            assert_eq!(status, 200, "{p} stream={stream}: {body}");
            assert!(body.contains("theta"), "{p} stream={stream}: {body}");
            assert!(!body.contains("content_policy_violation"), "{p}: {body}");
        }
    }
    let (_, metrics) = gw
        .admin_get("/metrics", ADMIN_TOKEN)
        .await
        .status_and_body();
    let line = "octollm_moderation_total{model=\"out-anthropic\",outcome=\"flagged_output\"} 2\n";
    assert!(metrics.contains(line), "{line} in {metrics}");
    mock.shutdown().await;
}

#[tokio::test]
async fn a_moderation_endpoint_that_is_down_follows_on_error() {
    let mock = mock().await;
    let gw = Gateway::start_with(&config(&mock.url()), &["--storage", "off"]);
    for p in Protocol::CHAT_PROTOCOLS {
        for stream in [false, true] {
            let what = format!("{p} stream={stream}");
            let before = generations(&mock);
            let allow = Prompt::new(p, format!("allow-{}", p.config_name()), "hi").stream(stream);
            let (status, body) = send(&gw, &allow).await;
            assert_eq!(status, 200, "{what}: allow lets it through: {body}");
            assert_eq!(generations(&mock), before + 1, "{what}");

            let deny = Prompt::new(p, format!("deny-{}", p.config_name()), "hi").stream(stream);
            let (status, body) = send(&gw, &deny).await;
            assert_eq!(status, 503, "{what}: deny refuses: {body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            let message = v["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("moderation is unavailable"),
                "{what}: {body}"
            );
            if matches!(p, Protocol::OpenAiChat | Protocol::OpenAiResponses) {
                assert_eq!(
                    v["error"]["code"], "moderation_unavailable",
                    "{what}: {body}"
                );
            }
            assert_eq!(
                generations(&mock),
                before + 1,
                "{what}: denied before the upstream"
            );
        }
    }
    let (_, metrics) = gw
        .admin_get("/metrics", ADMIN_TOKEN)
        .await
        .status_and_body();
    for (model, outcome) in [
        ("allow-gemini", "error_allowed"),
        ("deny-gemini", "error_denied"),
    ] {
        let line =
            format!("octollm_moderation_total{{model=\"{model}\",outcome=\"{outcome}\"}} 2\n");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    mock.shutdown().await;
}

#[test]
fn a_moderation_backend_must_exist() {
    let e = octo_test::start_fails(
        r#"
listen: "127.0.0.1:0"
backends:
  oa: {base_url: "http://127.0.0.1:9", protocol: openai_chat}
models:
  m: {targets: [{backend: oa}], moderation: {backend: nope, on: everything}}
"#,
    );
    assert!(e.contains("models.m.moderation"), "{e}");
    let e = octo_test::start_fails(
        r#"
listen: "127.0.0.1:0"
backends:
  oa: {base_url: "http://127.0.0.1:9", protocol: openai_chat}
models:
  m: {targets: [{backend: oa}], moderation: {backend: nope}}
"#,
    );
    assert!(e.contains("models.m.moderation.backend"), "{e}");
    assert!(e.contains("unknown backend `nope`"), "{e}");
}
