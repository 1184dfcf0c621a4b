//! `storage.log_bodies` through the real `octollm-server` binary against the mock upstream: for
//! every client protocol, passthrough and converted, stream and not, the record served by
//! `GET /api/v1/logs/{id}` holds the request body as sent and the answer as the client received
//! it (a stream's events as sent), with their sizes; configured credentials typed into a prompt
//! are redacted; bodies are cut at `max_bytes`; pages of the log and gateways without the
//! setting keep none.

use octo_core::Protocol;
use octo_test::{Gateway, Prompt, TempDir, client, mock, post};

const ADMIN_TOKEN: &str = "a-test-admin-token-0123456789";
const UPSTREAM_KEY: &str = "sk-upstream-secret-bodies-xyz";

fn backend(p: Protocol) -> String {
    format!("b-{}", p.config_name())
}

/// One backend and one model per protocol, the request log in `dir` with `log_bodies`.
fn start(mock: &str, dir: &TempDir, log_bodies: &str) -> Gateway {
    let mut backends = String::new();
    let mut models = String::new();
    for p in Protocol::CHAT_PROTOCOLS {
        let name = p.config_name();
        backends.push_str(&format!(
            "  {}: {{base_url: \"{mock}\", protocol: {name}, api_key: \"{UPSTREAM_KEY}\"}}\n",
            backend(p)
        ));
        models.push_str(&format!(
            "  m-{name}: {{targets: [{{backend: {}}}], retry: {{max_attempts: 1}}}}\n",
            backend(p)
        ));
    }
    let url = dir.sqlite_url();
    let yaml = format!(
        r#"
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{ADMIN_TOKEN}"]}}
storage: {{url: "{url}"{log_bodies}}}
backends:
{backends}models:
{models}"#
    );
    Gateway::start_with(&yaml, &["--storage", &url])
}

/// Sends `prompt`; returns the request id, the body sent and the bytes received.
async fn send(gw: &Gateway, prompt: &Prompt) -> (String, String, bytes::Bytes) {
    let body = prompt.body();
    let resp = post(
        &client(),
        &format!("{}{}", gw.url, prompt.path()),
        &body,
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-octollm-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let bytes = resp.bytes().await.unwrap();
    (id, body, bytes)
}

#[tokio::test]
async fn bodies_are_kept_for_every_protocol_stream_and_not() {
    let mock = mock().await;
    let dir = TempDir::new("bodies");
    let gw = start(&mock.url(), &dir, ", log_bodies: true");
    let text_with_key = format!("please ignore {UPSTREAM_KEY} in this prompt é");
    for client_protocol in Protocol::CHAT_PROTOCOLS {
        let all = Protocol::CHAT_PROTOCOLS;
        let i = all.iter().position(|p| *p == client_protocol).unwrap();
        for upstream in [client_protocol, all[(i + 1) % all.len()]] {
            for stream in [false, true] {
                let what = format!("{client_protocol} → {upstream}, stream={stream}");
                let model = format!("m-{}", upstream.config_name());
                let prompt = Prompt::new(client_protocol, &model, &text_with_key).stream(stream);
                let (id, sent, received) = send(&gw, &prompt).await;
                let r = gw.logged_record(ADMIN_TOKEN, &id).await;
                let expected_request = sent.replace(UPSTREAM_KEY, "[REDACTED]");
                assert_eq!(r["request_body"], expected_request.as_str(), "{what}");
                assert_eq!(r["request_body_bytes"], sent.len(), "{what}");
                // The mock echoes the prompt: the key the user typed comes back, and is redacted
                // in the log like in the request.
                let received_text = String::from_utf8(received.to_vec()).unwrap();
                let expected_response = received_text.replace(UPSTREAM_KEY, "[REDACTED]");
                assert_eq!(r["response_body"], expected_response.as_str(), "{what}");
                assert_eq!(r["response_body_bytes"], received.len(), "{what}");
                if stream {
                    assert!(
                        received_text.contains("data: ") || received_text.starts_with('['),
                        "{what}: a stream is kept as sent: {received_text}"
                    );
                }
            }
        }
    }
    // Pages of the log stay light: no bodies there.
    let page = gw
        .admin_get("/api/v1/logs?limit=100", ADMIN_TOKEN)
        .await
        .json();
    assert_eq!(page["data"].as_array().unwrap().len(), 16);
    assert!(
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("request_body").is_none())
    );
    // The upstream key is nowhere in the database file.
    assert!(gw.terminate(), "clean exit after SIGTERM");
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let path = f.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes
                .windows(UPSTREAM_KEY.len())
                .any(|w| w == UPSTREAM_KEY.as_bytes()),
            "the upstream key reached {}",
            path.display()
        );
    }
}

#[tokio::test]
async fn bodies_are_cut_at_max_bytes_and_absent_when_off() {
    let mock = mock().await;
    let dir = TempDir::new("bodies");
    let gw = start(&mock.url(), &dir, ", log_bodies: {max_bytes: 100}");
    for stream in [false, true] {
        let long = "ü".repeat(300);
        let prompt = Prompt::new(Protocol::OpenAiChat, "m-openai_chat", &long).stream(stream);
        let (id, sent, received) = send(&gw, &prompt).await;
        let r = gw.logged_record(ADMIN_TOKEN, &id).await;
        let kept = r["request_body"].as_str().unwrap();
        assert!(kept.len() <= 100 && kept.len() >= 99, "{}", kept.len());
        assert!(sent.starts_with(kept));
        assert_eq!(r["request_body_bytes"], sent.len());
        let kept = r["response_body"].as_str().unwrap();
        assert!(
            kept.len() <= 100 && kept.len() >= 97,
            "stream={stream}: {}",
            kept.len()
        );
        assert!(received.starts_with(kept.as_bytes()));
        assert_eq!(r["response_body_bytes"], received.len());
        assert!(received.len() > 100);
    }
    drop(gw);
    let dir = TempDir::new("bodies");
    let gw = start(&mock.url(), &dir, "");
    let prompt = Prompt::new(Protocol::Anthropic, "m-anthropic", "no bodies");
    let (id, _, _) = send(&gw, &prompt).await;
    let r = gw.logged_record(ADMIN_TOKEN, &id).await;
    assert!(
        r.get("request_body").is_none() && r.get("response_body").is_none(),
        "{r}"
    );
}
