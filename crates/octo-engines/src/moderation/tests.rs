use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use octo_core::{Body, engine_fn};

use super::*;

fn moderator(url: &str) -> Moderator {
    Moderator::new(
        format!("{url}/v1/moderations"),
        Some("sk-mod".into()),
        "omni-moderation-latest",
        Duration::from_secs(5),
    )
    .unwrap()
}

/// An upstream answering each call with `reply()`, counting calls.
fn upstream<F>(reply: F) -> (ArcEngine, Arc<AtomicUsize>)
where
    F: Fn() -> Response + Send + Sync + 'static,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let reply = Arc::new(reply);
    let engine = Arc::new(engine_fn(move |_req: Request| {
        c.fetch_add(1, Ordering::SeqCst);
        let reply = reply.clone();
        async move { Ok(reply()) }
    }));
    (engine, calls)
}

fn chat(text: &str) -> Request {
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text}]});
    Request::post(
        Protocol::OpenAiChat,
        "/v1/chat/completions",
        Body::from_bytes(body.to_string()),
    )
}

fn chat_answer(text: &str) -> Response {
    let body =
        serde_json::json!({"choices": [{"message": {"role": "assistant", "content": text}}]});
    Response::json(200, Body::from_bytes(body.to_string()))
}

/// A chat stream with one event per word of `text`, then `[DONE]`.
fn chat_stream(text: &str) -> Response {
    let mut events: Vec<Event> = text
        .split_inclusive(' ')
        .map(|w| {
            let data = serde_json::json!({"choices": [{"delta": {"content": w}}]});
            Event::data(Bytes::from(data.to_string()))
        })
        .collect();
    events.push(Event::data(Bytes::from_static(b"[DONE]")));
    Response::stream(EventStream::iter(events))
}

/// Each item of a stream: the delta text, `[DONE]`, or `ERR <code>`.
async fn items(resp: Response) -> Vec<String> {
    let ResponseBody::Stream(s) = resp.body else {
        panic!("a stream")
    };
    s.map(|r| match r {
        Ok(ev) if ev.is_done_marker() => "[DONE]".to_owned(),
        Ok(ev) => event_text(Protocol::OpenAiChat, None, &ev.data_body().to_bytes()),
        Err(e) => format!("ERR {}", e.code().unwrap_or_default()),
    })
    .collect()
    .await
}

#[tokio::test]
async fn flagged_input_never_reaches_the_upstream() {
    let mock = octo_test::mock().await;
    let (inner, calls) = upstream(|| chat_answer("fine"));
    let layer = ModerationLayer::new("m-in", moderator(&mock.url()));
    let engine = layer.layer(inner);
    let err = engine
        .process(chat("hit him [[flag:violence]] [[flag:hate]]"))
        .await
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 400);
    assert_eq!(err.code(), Some("content_policy_violation"));
    assert!(
        err.message().contains("hate, violence"),
        "{}",
        err.message()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let ok = engine.process(chat("hello")).await.unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The moderation call carried the key, the model and the text.
    let seen = mock.requests();
    let last = seen.last().unwrap();
    assert_eq!(last.path_and_query, "/v1/moderations");
    assert_eq!(last.header("authorization"), Some("Bearer sk-mod"));
    assert_eq!(
        last.body_json().unwrap(),
        serde_json::json!({"model": "omni-moderation-latest", "input": ["hello"]})
    );
    let c = counters("m-in");
    assert_eq!(
        (c.get(Outcome::FlaggedInput), c.get(Outcome::Allowed)),
        (1, 1)
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn flagged_full_answers_are_withheld() {
    let mock = octo_test::mock().await;
    let (inner, _) = upstream(|| chat_answer("I will [[flag:violence]]"));
    let engine = ModerationLayer::new("m-out", moderator(&mock.url()))
        .with_output(100)
        .layer(inner);
    let err = engine.process(chat("hello")).await.unwrap_err();
    assert_eq!(err.code(), Some("content_policy_violation"));
    assert!(
        err.message().contains("answer was flagged"),
        "{}",
        err.message()
    );
    // Input only: the same answer passes.
    let (inner, _) = upstream(|| chat_answer("I will [[flag:violence]]"));
    let engine = ModerationLayer::new("m-out", moderator(&mock.url())).layer(inner);
    assert_eq!(engine.process(chat("hello")).await.unwrap().status, 200);
    mock.shutdown().await;
}

#[tokio::test]
async fn streams_are_released_in_checked_windows_and_cut_when_flagged() {
    let mock = octo_test::mock().await;
    let text = "one two three four five six [[flag:violence]] seven eight";
    let (inner, _) = upstream(move || chat_stream(text));
    let engine = ModerationLayer::new("m-stream", moderator(&mock.url()))
        .with_output(10)
        .layer(inner);
    let got = items(engine.process(chat("hello")).await.unwrap()).await;
    assert_eq!(
        got.last().map(String::as_str),
        Some("ERR content_policy_violation")
    );
    let shown: String = got[..got.len() - 1].concat();
    assert!(shown.starts_with("one two three four"), "{got:?}");
    assert!(
        !shown.contains("[[flag"),
        "flagged text never reaches the client: {got:?}"
    );
    assert!(!got.contains(&"[DONE]".to_owned()));

    // A clean stream arrives whole and in order, its short tail checked too.
    let clean = "alpha beta gamma delta epsilon zeta eta";
    let (inner, _) = upstream(move || chat_stream(clean));
    let engine = ModerationLayer::new("m-stream", moderator(&mock.url()))
        .with_output(10)
        .layer(inner);
    let got = items(engine.process(chat("hello")).await.unwrap()).await;
    assert_eq!(got.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(got[..got.len() - 1].concat(), clean);
    // A marker split across two windows is still seen (windows overlap).
    let split = "aaaa bbbb [[flag:";
    let (inner, _) = upstream(move || {
        let mut r = chat_stream(split);
        if let ResponseBody::Stream(s) = r.body {
            let tail = Event::data(Bytes::from(
                serde_json::json!({"choices": [{"delta": {"content": "hate]] rest of it"}}]})
                    .to_string(),
            ));
            r.body = ResponseBody::Stream(EventStream::new(
                s.take(3).chain(futures::stream::iter([Ok(tail)])),
            ));
        }
        r
    });
    let engine = ModerationLayer::new("m-stream", moderator(&mock.url()))
        .with_output(12)
        .layer(inner);
    let got = items(engine.process(chat("hello")).await.unwrap()).await;
    assert_eq!(
        got.last().map(String::as_str),
        Some("ERR content_policy_violation"),
        "{got:?}"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn a_failing_moderation_endpoint_follows_on_error() {
    let down = octo_test::closed_port_url();
    for (on_error, status) in [(OnError::Allow, Some(200)), (OnError::Deny, None)] {
        let (inner, calls) = upstream(|| chat_answer("fine"));
        let engine = ModerationLayer::new("m-err", moderator(&down))
            .on_error(on_error)
            .layer(inner);
        match engine.process(chat("hello")).await {
            Ok(resp) => assert_eq!(Some(resp.status.as_u16()), status),
            Err(e) => {
                assert_eq!(status, None);
                assert_eq!(e.status().as_u16(), 503);
                assert_eq!(e.code(), Some("moderation_unavailable"));
                assert!(e.is_retryable());
                assert!(!e.message().contains("sk-mod"));
                assert_eq!(calls.load(Ordering::SeqCst), 0);
            }
        }
    }
    let c = counters("m-err");
    assert_eq!(
        (c.get(Outcome::ErrorAllowed), c.get(Outcome::ErrorDenied)),
        (1, 1)
    );

    // A moderation endpoint answering an error status, on a stream's window: deny ends the
    // stream with the error event.
    let mock = octo_test::mock().await;
    let mut headers = http::HeaderMap::new();
    headers.insert("x-mock-status", http::HeaderValue::from_static("500"));
    let failing = moderator(&mock.url()).with_headers(headers);
    let (inner, _) = upstream(|| chat_stream("some words here"));
    // Input passes with `allow`; the output window fails and is allowed too.
    let engine = ModerationLayer::new("m-err2", failing.clone())
        .with_output(5)
        .on_error(OnError::Allow)
        .layer(inner.clone());
    let got = items(engine.process(chat("hello")).await.unwrap()).await;
    assert_eq!(got.last().map(String::as_str), Some("[DONE]"));
    let engine = ModerationLayer::new("m-err2", failing)
        .with_output(5)
        .on_error(OnError::Deny)
        .layer(inner);
    let err = engine.process(chat("hello")).await.unwrap_err();
    assert_eq!(err.code(), Some("moderation_unavailable"));
    mock.shutdown().await;
}
