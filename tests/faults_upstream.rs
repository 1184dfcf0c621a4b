//! The fault matrix, upstream half: each fault a real upstream produces, through the real binary,
//! in every client protocol (passthrough, and converted where the answer's content matters). Each
//! row asserts the answer documented in `docs/reliability.md`, that no request outlives its
//! deadline, that the upstream connection is let go, and that the gateway's memory and open files
//! return to their baseline.

#[path = "faults/common.rs"]
mod common;

use std::time::Duration;

use common::*;
use futures::future::join_all;
use octo_core::Protocol;
use octo_test::fault::{JSON_HEAD, SSE_HEAD};
use octo_test::{Fault, FaultServer, Prompt, closed_port_url};

const RELEASE: Duration = Duration::from_secs(10);

/// Every client protocol × streaming or not, for `model`, with `text` as the user's turn.
fn prompts(model: &str, text: &str) -> Vec<Prompt> {
    let mut out = Vec::new();
    for protocol in Protocol::CHAT_PROTOCOLS {
        for stream in [false, true] {
            out.push(Prompt::new(protocol, model, text).stream(stream));
        }
    }
    out
}

/// Sends every prompt at once; each must be answered (no hang) within the client deadline.
async fn answers(s: &Subject, prompts: &[Prompt], row: &str) -> Vec<(Protocol, bool, u16, String)> {
    let results = join_all(prompts.iter().map(|p| request(&s.gw, p))).await;
    prompts
        .iter()
        .zip(results)
        .map(|(p, r)| {
            let (status, body) = r.unwrap_or_else(|e| panic!("{row}: {p:?}: {e}"));
            (p_protocol(p), p_stream(p), status, body)
        })
        .collect()
}

fn p_protocol(p: &Prompt) -> Protocol {
    let path = p.path();
    if path.starts_with("/v1/chat") {
        Protocol::OpenAiChat
    } else if path.starts_with("/v1/responses") {
        Protocol::OpenAiResponses
    } else if path.starts_with("/v1/messages") {
        Protocol::Anthropic
    } else {
        Protocol::Gemini
    }
}

fn p_stream(p: &Prompt) -> bool {
    p.path().contains("stream") || p.body().contains("\"stream\":true")
}

/// A fault server behind a backend `fault` speaking every protocol (model `fault`) and one
/// speaking OpenAI Chat only (model `fault_converted`), both with a single attempt.
async fn with_fault(fault: Fault, limits: &str) -> (Subject, FaultServer) {
    let server = FaultServer::start(fault).await;
    let backends = format!(
        "{}{}",
        fault_backend("fault", &server.url, ALL),
        fault_backend("fault_chat", &server.url, "openai_chat")
    );
    let models = "  fault: {targets: [{backend: fault}], retry: {max_attempts: 1}}\n  fault_converted: {targets: [{backend: fault_chat}], retry: {max_attempts: 1}}\n";
    (start(&backends, models, limits).await, server)
}

/// Every answer is an error of `status` in its protocol's shape whose message contains `needle`.
fn all_errors(answers: &[(Protocol, bool, u16, String)], status: u16, needle: &str, row: &str) {
    for (protocol, stream, got, body) in answers {
        assert_eq!(*got, status, "{row} ({protocol}, stream {stream}): {body}");
        let message = error_of(*protocol, status, body, row);
        assert!(
            message.contains(needle),
            "{row} ({protocol}, stream {stream}): {message:?} lacks {needle:?}"
        );
    }
}

#[tokio::test]
async fn connection_refused_is_a_502() {
    let down = closed_port_url();
    let backends = fault_backend("down", &down, ALL);
    let s = start(
        &backends,
        "  down: {targets: [{backend: down}], retry: {max_attempts: 1}}\n",
        "",
    )
    .await;
    let row = "connection refused";
    let got = answers(&s, &prompts("down", "hi"), row).await;
    all_errors(&got, 502, "could not be reached", row);
    s.settles(row).await;
}

#[tokio::test]
async fn reset_before_the_head_is_a_502() {
    let (s, server) = with_fault(Fault::ResetBeforeHead, "").await;
    let row = "reset before the head";
    let mut p = prompts("fault", "hi");
    p.extend(prompts("fault_converted", "hi"));
    let got = answers(&s, &p, row).await;
    all_errors(&got, 502, "backend `fault", row);
    server.wait_released(RELEASE, row).await;
    s.settles(row).await;
}

#[tokio::test]
async fn reset_mid_stream_ends_the_stream_with_an_in_band_error() {
    let s = start("", "", "").await;
    let row = "reset mid-stream";
    let mut p = Vec::new();
    for protocol in Protocol::CHAT_PROTOCOLS {
        for model in ["passthrough", "converted"] {
            p.push(
                Prompt::new(
                    protocol,
                    model,
                    "one two three four five six [mock:abort=3]",
                )
                .stream(true),
            );
        }
    }
    let before = s.mock.stats().streams_aborted;
    let got = answers(&s, &p, row).await;
    for (protocol, _, status, body) in &got {
        assert_eq!(*status, 200, "{row} ({protocol}): {body}");
        stream_error_of(*protocol, body, row);
    }
    s.mock.wait_for(|st| st.streams_aborted >= before + 8).await;
    s.finish(row, 8).await;
}

#[tokio::test]
async fn a_head_then_silence_is_a_504_after_the_idle_timeout() {
    for head in [SSE_HEAD, JSON_HEAD] {
        let (s, server) = with_fault(Fault::HeadThenSilence(head.to_owned()), "").await;
        let row = format!(
            "head then silence ({})",
            if head == SSE_HEAD { "SSE" } else { "JSON" }
        );
        let mut p = prompts("fault", "hi");
        p.extend(prompts("fault_converted", "hi"));
        let got = answers(&s, &p, &row).await;
        all_errors(&got, 504, "idle", &row);
        server.wait_released(RELEASE, &row).await;
        s.settles(&row).await;
    }
}

#[tokio::test]
async fn a_slow_drip_is_cut_at_the_total_timeout() {
    // One byte a second: never idle for a whole second, so only the total deadline (3 s) ends it.
    let event = br#"data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}

"#;
    let fault = Fault::Drip {
        head: SSE_HEAD.to_owned(),
        body: event.repeat(4),
        interval: Duration::from_secs(1),
    };
    let (s, server) = with_fault(fault, "").await;
    let row = "slow drip";
    let mut p = prompts("fault", "hi");
    p.extend(prompts("fault_converted", "hi"));
    let got = answers(&s, &p, row).await;
    all_errors(&got, 504, "total", row);
    server.wait_released(RELEASE, row).await;
    s.settles(row).await;
}

#[tokio::test]
async fn redirects_are_not_followed_and_are_a_502() {
    let fault = Fault::Raw(
        b"HTTP/1.1 302 Found\r\nlocation: http://example.invalid/v1\r\ncontent-length: 0\r\n\r\n"
            .to_vec(),
    );
    let (s, server) = with_fault(fault, "").await;
    let row = "redirect";
    let mut p = prompts("fault", "hi");
    p.extend(prompts("fault_converted", "hi"));
    let got = answers(&s, &p, row).await;
    all_errors(&got, 502, "redirect", row);
    for (_, _, _, body) in &got {
        assert!(!body.contains("example.invalid"), "{row}: {body}");
    }
    server.wait_released(RELEASE, row).await;
    s.settles(row).await;
}

#[tokio::test]
async fn server_errors_are_passed_on_in_the_clients_shape() {
    let s = start("", "", "").await;
    for status in [500u16, 503] {
        let row = format!("{status} from the upstream");
        let mut p = prompts("passthrough", &format!("hi [mock:status={status}]"));
        p.extend(prompts("converted", &format!("hi [mock:status={status}]")));
        let got = answers(&s, &p, &row).await;
        for (protocol, stream, got, body) in &got {
            assert_eq!(*got, status, "{row} ({protocol}, stream {stream}): {body}");
            let message = error_of(*protocol, status, body, &row);
            assert!(
                message.contains("injected"),
                "{row} ({protocol}): {message}"
            );
        }
    }
    s.finish("5xx", 16).await;
}

#[tokio::test]
async fn a_truncated_stream_ends_with_an_error_not_a_short_answer() {
    let s = start("", "", "").await;
    let row = "truncated stream";
    let mut p = Vec::new();
    for protocol in Protocol::CHAT_PROTOCOLS {
        for model in ["passthrough", "converted"] {
            p.push(
                Prompt::new(protocol, model, "one two three four five [mock:truncate=4]")
                    .stream(true),
            );
        }
    }
    for (protocol, _, status, body) in answers(&s, &p, row).await {
        // The error comes before the head when nothing was sent yet (a 502), else in-band.
        if status == 200 {
            let text = stream_error_of(protocol, &body, row);
            assert!(text.contains("truncated"), "{row} ({protocol}): {text}");
            assert!(
                !stream_complete(protocol, &body),
                "{row} ({protocol}): {body}"
            );
        } else {
            let message = error_of(protocol, 502, &body, row);
            assert!(
                message.contains("truncated"),
                "{row} ({protocol}): {message}"
            );
        }
    }
    s.finish(row, 8).await;
}

#[tokio::test]
async fn invalid_json_is_a_502() {
    let (s, server) = with_fault(
        Fault::Raw(format!("{JSON_HEAD}{{not json").into_bytes()),
        "",
    )
    .await;
    let row = "invalid JSON";
    let mut p = prompts("fault", "hi");
    p.extend(prompts("fault_converted", "hi"));
    let got = answers(&s, &p, row).await;
    all_errors(&got, 502, "not JSON", row);
    server.wait_released(RELEASE, row).await;
    s.settles(row).await;
}

#[tokio::test]
async fn invalid_sse_frames_never_pass_as_an_answer() {
    // Unreadable data (not JSON, not UTF-8) and then the end: passthrough hands the frames on as
    // they came and ends the stream with an in-band error (nothing said the answer finished);
    // converted, nothing readable arrived, so the answer is a 502 before any byte.
    let body = [
        SSE_HEAD.as_bytes(),
        b"data: {not json\n\ndata: \xff\xfe{}\n\n",
    ]
    .concat();
    let (s, server) = with_fault(Fault::Raw(body), "").await;
    let row = "invalid SSE frame";
    let got = answers(&s, &prompts("fault", "hi"), row).await;
    for (protocol, stream, status, body) in &got {
        assert_eq!(*status, 200, "{row} ({protocol}, stream {stream}): {body}");
        let text = stream_error_of(*protocol, body, row);
        assert!(text.contains("truncated"), "{row} ({protocol}): {text}");
    }
    let got = answers(&s, &prompts("fault_converted", "hi"), row).await;
    for (protocol, stream, status, body) in &got {
        if *protocol == Protocol::OpenAiChat {
            // OpenAI Chat to an OpenAI Chat backend is passthrough.
            assert_eq!(*status, 200, "{row} ({protocol}, stream {stream}): {body}");
            continue;
        }
        let message = error_of(*protocol, 502, body, row);
        assert!(
            message.contains("truncated"),
            "{row} ({protocol}): {message}"
        );
    }
    // One frame larger than the parser's 16 MiB bound.
    let huge = Fault::Endless {
        head: SSE_HEAD.to_owned(),
        chunk: [&b"data: "[..], &vec![b'x'; 64 * 1024]].concat(),
        total: 20 << 20,
    };
    let server2 = FaultServer::start(huge).await;
    let backend = format!(
        r#"
  big:
    base_url: "{}"
    protocol: {ALL}
    circuit_breaker: {{failures: 0}}
    timeouts: {{connect: 1s, first_byte: 2s, idle: 5s, total: 120s}}"#,
        server2.url
    );
    let s2 = start(
        &backend,
        "  fault: {targets: [{backend: big}], retry: {max_attempts: 1}}\n",
        "",
    )
    .await;
    let row2 = "an SSE frame over 16 MiB";
    for (protocol, stream, status, body) in answers(&s2, &prompts("fault", "hi"), row2).await {
        assert_eq!(
            status,
            502,
            "{row2} ({protocol}, stream {stream}): {}",
            &body[..body.len().min(300)]
        );
        error_of(protocol, 502, &body, row2);
    }
    server.wait_released(RELEASE, row).await;
    server2.wait_released(RELEASE, row2).await;
    s.settles(row).await;
    // Parsing sixteen megabytes per request at once leaves allocator arenas behind.
    s2.settles_within(
        row2,
        octo_test::process::Tolerance {
            rss: 64 << 20,
            fds: 4,
        },
    )
    .await;
}

#[tokio::test]
async fn a_huge_response_body_is_refused_past_the_limit() {
    // 80 MiB of JSON-ish bytes: the gateway stops reading at its 64 MiB bound and answers 502.
    let fault = Fault::Endless {
        head: JSON_HEAD.to_owned(),
        chunk: vec![b' '; 256 * 1024],
        total: 80 << 20,
    };
    let (s, server) = with_fault(fault, "").await;
    let row = "huge response body";
    // One protocol at a time: each holds up to 64 MiB while it reads.
    for protocol in Protocol::CHAT_PROTOCOLS {
        let p = [Prompt::new(protocol, "fault", "hi")];
        let got = answers(&s, &p, row).await;
        all_errors(&got, 502, "larger than", row);
    }
    server.wait_released(RELEASE, row).await;
    s.settles_within(
        row,
        octo_test::process::Tolerance {
            rss: 64 << 20,
            fds: 4,
        },
    )
    .await;
}

#[tokio::test]
async fn a_429_storm_is_passed_on_with_or_without_retry_after() {
    let s = start("", "", "").await;
    for (directive, retry_after) in [
        ("[mock:status=429]", Some("1")),
        ("[mock:status=429] [mock:no_retry_after]", None),
    ] {
        let row = format!("429 storm, retry-after {retry_after:?}");
        // 64 requests at once over every protocol, passthrough and converted.
        let mut p = Vec::new();
        for _ in 0..4 {
            p.extend(prompts("passthrough", &format!("hi {directive}")));
            p.extend(prompts("converted", &format!("hi {directive}")));
        }
        let results = join_all(p.iter().map(|prompt| async {
            let url = format!("{}{}", s.gw.url, prompt.path());
            let response = tokio::time::timeout(
                CLIENT_DEADLINE,
                octo_test::post(&octo_test::client(), &url, prompt.body(), &[]),
            )
            .await
            .unwrap_or_else(|_| panic!("{row}: no answer within {CLIENT_DEADLINE:?}"));
            let header = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let status = response.status().as_u16();
            (
                p_protocol(prompt),
                status,
                header,
                octo_test::http::text(response).await,
            )
        }))
        .await;
        for (protocol, status, header, body) in results {
            assert_eq!(status, 429, "{row} ({protocol}): {body}");
            error_of(protocol, 429, &body, &row);
            assert_eq!(header.as_deref(), retry_after, "{row} ({protocol})");
        }
    }
    s.finish("429 storm", 64).await;
}

#[tokio::test]
async fn an_answer_in_the_wrong_protocol_is_never_a_converted_answer() {
    // A backend declared as Anthropic whose URL serves OpenAI Chat (a wrong base_url or path).
    let mock = octo_test::mock().await;
    let backends = format!(
        r#"
  liar:
    base_url: "{}"
    protocol: anthropic
    paths: {{anthropic: /v1/chat/completions}}
    timeouts: {{connect: 1s, first_byte: 3s, idle: 2s, total: 5s}}"#,
        mock.url()
    );
    let s = start(
        &backends,
        "  liar: {targets: [{backend: liar}], retry: {max_attempts: 1}}\n",
        "",
    )
    .await;
    let row = "answer in the wrong protocol";
    for (protocol, stream, status, body) in answers(&s, &prompts("liar", "hi"), row).await {
        if protocol == Protocol::Anthropic {
            // Passthrough: the gateway does not judge the shape of what it forwards verbatim
            // (the OpenAI-shaped JSON reaches the Anthropic client as sent). A stream, though,
            // never says it finished in Anthropic's terms: an in-band error ends it.
            assert_eq!(status, 200, "{row} ({protocol}, stream {stream}): {body}");
            if stream {
                stream_error_of(protocol, &body, row);
            }
            continue;
        }
        // Converted: the Anthropic decoder reads no answer in it.
        assert_eq!(status, 502, "{row} ({protocol}, stream {stream}): {body}");
        error_of(protocol, 502, &body, row);
    }
    mock.shutdown().await;
    s.finish(row, 8).await;
}
