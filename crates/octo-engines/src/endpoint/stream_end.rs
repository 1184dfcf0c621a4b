//! A stream that ends before the upstream said it finished is an error, not a short answer.
//!
//! An upstream whose connection closes cleanly in the middle of an answer (a proxy's timeout, a
//! crashed worker behind a load balancer) leaves an SSE stream that simply stops. Passed on as is,
//! the client sees an answer that ends mid-sentence with no error; converted, it would even get
//! its protocol's proper ending and a natural stop reason. [`EndCheck`] watches, with a byte
//! search per event, for what every protocol sends when generation is over — its finish reason or
//! its terminator — and, when the stream ends without either, adds one retryable upstream error
//! naming the backend. Before any event that fails over like any error; after events, the front
//! writes it as the client protocol's in-band error event (a Responses client gets
//! `response.failed` from the converter).
//!
//! | protocol | finished once it sent |
//! |---|---|
//! | OpenAI Chat | a non-null `finish_reason`, or `[DONE]` |
//! | OpenAI Responses | `response.completed`, `response.incomplete` or `response.failed` |
//! | Anthropic | a non-null `stop_reason` (`message_delta`), or `message_stop` |
//! | Gemini | a `finishReason` |
//!
//! An in-band error event (`event: error`, data with an `"error"` member) counts as an ending:
//! the client already has the upstream's reason, and a second error would only repeat it.

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use futures::Stream;
use memchr::memmem;
use octo_core::{Error, Event, Protocol};

/// Passes events through and adds an error when the stream ends unfinished; see the
/// [module docs](self).
#[pin_project::pin_project]
pub(crate) struct EndCheck<S> {
    #[pin]
    inner: S,
    protocol: Protocol,
    backend: String,
    finished: bool,
    /// The stream already ended (with an error, or the added one).
    ended: bool,
}

impl<S> EndCheck<S> {
    pub(crate) fn new(inner: S, protocol: Protocol, backend: String) -> Self {
        EndCheck {
            inner,
            protocol,
            backend,
            finished: false,
            ended: false,
        }
    }
}

/// The byte patterns [`says_finished`] looks for, in the order of [`NEEDLES`].
const PATTERNS: [&[u8]; 9] = [
    b"\"finish_reason\":\"",
    b"\"finish_reason\": \"",
    b"\"response.completed\"",
    b"\"response.incomplete\"",
    b"\"response.failed\"",
    b"\"message_stop\"",
    b"\"stop_reason\":\"",
    b"\"stop_reason\": \"",
    b"inishReason\"",
];
const FINISH_REASON: usize = 0;
const RESPONSE_DONE: usize = 2;
const MESSAGE_STOP: usize = 5;
const STOP_REASON: usize = 6;
const GEMINI_FINISH: usize = 8;

/// One searcher per pattern, built once per process: building a searcher for every event and
/// pattern cost more than the searches themselves.
static NEEDLES: LazyLock<[memmem::Finder<'static>; 9]> =
    LazyLock::new(|| PATTERNS.map(memmem::Finder::new));

/// Whether `event` says generation is over in `protocol`.
fn says_finished(protocol: Protocol, event: &Event) -> bool {
    // An in-band error ends the answer too: the upstream said why it stopped.
    if super::redact::is_error_event(event) {
        return true;
    }
    let data = event.data_body().to_bytes();
    let needles = &*NEEDLES;
    let any =
        |range: std::ops::Range<usize>| needles[range].iter().any(|n| n.find(&data).is_some());
    match protocol {
        Protocol::OpenAiChat => event.is_done_marker() || any(FINISH_REASON..FINISH_REASON + 2),
        Protocol::OpenAiResponses => match event.name() {
            Some(name) => matches!(
                name,
                "response.completed" | "response.incomplete" | "response.failed"
            ),
            None => any(RESPONSE_DONE..RESPONSE_DONE + 3),
        },
        Protocol::Anthropic => {
            event.name() == Some("message_stop")
                || any(MESSAGE_STOP..MESSAGE_STOP + 1)
                || any(STOP_REASON..STOP_REASON + 2)
        }
        Protocol::Gemini => any(GEMINI_FINISH..GEMINI_FINISH + 1),
        _ => true,
    }
}

impl<S: Stream<Item = Result<Event, Error>>> Stream for EndCheck<S> {
    type Item = Result<Event, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        match std::task::ready!(this.inner.poll_next(cx)) {
            Some(Ok(event)) => {
                if !*this.finished && says_finished(*this.protocol, &event) {
                    *this.finished = true;
                }
                Poll::Ready(Some(Ok(event)))
            }
            Some(Err(e)) => {
                *this.ended = true;
                Poll::Ready(Some(Err(e)))
            }
            None => {
                *this.ended = true;
                if *this.finished {
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(Error::upstream(format!(
                    "backend `{}` ended its stream before the answer was finished (no finish reason or end of stream from the upstream): the answer is truncated",
                    this.backend
                )))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::StreamExt;

    use super::*;

    fn data(s: &'static str) -> Event {
        Event::data(Bytes::from_static(s.as_bytes()))
    }

    async fn run(protocol: Protocol, events: Vec<Event>) -> Vec<Result<Event, Error>> {
        EndCheck::new(
            futures::stream::iter(events.into_iter().map(Ok)),
            protocol,
            "b".into(),
        )
        .collect()
        .await
    }

    #[tokio::test]
    async fn finished_streams_pass_unchanged() {
        let chat = vec![
            data(r#"{"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}"#),
            data(r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#),
        ];
        assert!(
            run(Protocol::OpenAiChat, chat)
                .await
                .iter()
                .all(Result::is_ok)
        );
        let done = vec![data("[DONE]")];
        assert_eq!(run(Protocol::OpenAiChat, done).await.len(), 1);
        let anthropic = vec![Event::named(
            "message_stop",
            Bytes::from_static(b"{\"type\":\"message_stop\"}"),
        )];
        assert!(
            run(Protocol::Anthropic, anthropic)
                .await
                .iter()
                .all(Result::is_ok)
        );
        let responses = vec![Event::named(
            "response.completed",
            Bytes::from_static(b"{}"),
        )];
        assert!(
            run(Protocol::OpenAiResponses, responses)
                .await
                .iter()
                .all(Result::is_ok)
        );
        let gemini = vec![data(r#"{"candidates":[{"finishReason":"STOP"}]}"#)];
        assert!(
            run(Protocol::Gemini, gemini)
                .await
                .iter()
                .all(Result::is_ok)
        );
    }

    #[tokio::test]
    async fn an_unfinished_stream_ends_with_an_error_naming_the_backend() {
        for protocol in Protocol::CHAT_PROTOCOLS {
            let out = run(
                protocol,
                vec![data(
                    r#"{"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}"#,
                )],
            )
            .await;
            assert_eq!(out.len(), 2, "{protocol}");
            let e = out[1].as_ref().unwrap_err();
            assert!(e.is_retryable());
            assert!(e.message().contains("backend `b`") && e.message().contains("truncated"));
        }
        // An empty stream too.
        assert!(run(Protocol::Anthropic, vec![]).await[0].is_err());
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_without_a_second_one() {
        let items = vec![Err(Error::upstream("reset"))];
        let out: Vec<_> = EndCheck::new(
            futures::stream::iter(items),
            Protocol::OpenAiChat,
            "b".into(),
        )
        .collect()
        .await;
        assert_eq!(out.len(), 1);
    }
}
