//! Protocol conversion as an engine: serve a client speaking one chat protocol from an upstream
//! speaking another.
//!
//! [`ConvertEngine`] wraps an inner engine that speaks `upstream` (an
//! [`HttpEndpoint`](crate::endpoint::HttpEndpoint), or anything else). A request in the same protocol
//! passes through untouched. Any other of the four chat protocols — OpenAI Chat Completions, OpenAI
//! Responses, Anthropic Messages, Gemini `generateContent` — is converted on the way in and its
//! answer converted back, streaming or not.
//!
//! The conversion itself is the sans-IO [`octo_convert`] crate (what is mapped, dropped or refused:
//! `docs/conversion.md`); this module is the IO around it: it sends the converted request through
//! the inner engine and runs the answer's body or stream through octo-convert's converters. The
//! settings types are re-exported here.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use octo_core::{engine_fn, Protocol, ArcEngine, Body, Engine, Request, Response};
//! use octo_engines::convert::{ConvertEngine, ConvertOptions};
//!
//! // An upstream that speaks OpenAI Chat only.
//! let upstream: ArcEngine = Arc::new(engine_fn(|req: Request| async move {
//!     assert_eq!(req.protocol, Protocol::OpenAiChat);
//!     Ok(Response::json(200, Body::from_static(br#"{"id":"c1","model":"gpt","choices":[{"index":0,
//!         "message":{"role":"assistant","content":"Hi!"},"finish_reason":"stop"}],
//!         "usage":{"prompt_tokens":5,"completion_tokens":2}}"#)))
//! }));
//! let engine = ConvertEngine::new(upstream, Protocol::OpenAiChat)
//!     .with_options(ConvertOptions::default().with_default_max_tokens(1024));
//!
//! // An Anthropic client.
//! let req = Request::post(Protocol::Anthropic, "/v1/messages", Body::from_static(
//!     br#"{"model":"gpt","max_tokens":64,"messages":[{"role":"user","content":"Hello"}]}"#));
//! let resp = engine.process(req).await.unwrap();
//! let octo_core::ResponseBody::Full(mut body) = resp.body else { unreachable!() };
//! let v = body.json().unwrap();
//! assert_eq!(v["content"][0]["text"], "Hi!");
//! assert_eq!(v["stop_reason"], "end_turn");
//! assert_eq!(v["usage"]["input_tokens"], 5);
//! # }
//! ```

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use http::header;
use octo_convert::{ResponseConverter, StreamConverter};
use octo_core::{
    ArcEngine, Body, Engine, Error, Event, EventStream, Protocol, Request, Response, ResponseBody,
};

pub use octo_convert::{
    ConvertOptions, DEFAULT_MAX_TOKENS, OpenAiMaxTokens, ReasoningDialect, ReasoningMode,
};

/// Serves clients of any chat protocol from an inner engine that speaks `upstream`.
///
/// See the [module docs](self). Requests in the upstream's protocol, and requests that are not one
/// of the four chat protocols, pass through untouched.
pub struct ConvertEngine {
    inner: ArcEngine,
    upstream: Protocol,
    options: ConvertOptions,
}

impl fmt::Debug for ConvertEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConvertEngine")
            .field("upstream", &self.upstream)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ConvertEngine {
    /// Wraps `inner`, which speaks `upstream`, with the default [`ConvertOptions`].
    pub fn new(inner: ArcEngine, upstream: Protocol) -> Self {
        ConvertEngine {
            inner,
            upstream,
            options: ConvertOptions::default(),
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: ConvertOptions) -> Self {
        self.options = options;
        self
    }

    /// The protocol the inner engine speaks.
    pub fn upstream(&self) -> Protocol {
        self.upstream
    }

    /// The options in use.
    pub fn options(&self) -> &ConvertOptions {
        &self.options
    }
}

fn is_chat(protocol: Protocol) -> bool {
    Protocol::CHAT_PROTOCOLS.contains(&protocol)
}

#[async_trait]
impl Engine for ConvertEngine {
    async fn process(&self, mut req: Request) -> Result<Response, Error> {
        let client = req.protocol;
        if client == self.upstream || !is_chat(client) || !is_chat(self.upstream) {
            return self.inner.process(req).await;
        }
        let converted = octo_convert::convert_request_bytes(
            client,
            self.upstream,
            req.body.json()?,
            &req.route,
            &self.options,
        )?;
        req.body = Body::from_bytes(converted.body);
        req.protocol = self.upstream;
        req.route = converted.route;
        let answer = converted.response;
        let mut resp = self.inner.process(req).await?;
        resp.body = match resp.body {
            ResponseBody::Full(body) => full_answer(body, &answer, &mut resp.headers)?,
            ResponseBody::Stream(events) if answer.is_stream() => {
                ResponseBody::Stream(EventStream::new(ConvertStream::new(events, &answer)))
            }
            ResponseBody::Stream(events) => {
                // The upstream streamed an answer to a non-streaming request: collect it.
                let v = collect(events, &answer).await?;
                resp.headers.remove(header::CONTENT_TYPE);
                ResponseBody::Full(Body::from_json(v))
            }
        };
        Ok(resp)
    }
}

/// The client's answer to the upstream's complete answer `body`: converted, or replayed as the
/// client's stream when the upstream ignored `stream: true`.
fn full_answer(
    mut body: Body,
    answer: &ResponseConverter,
    headers: &mut http::HeaderMap,
) -> Result<ResponseBody, Error> {
    if !answer.is_stream() && !body.is_parsed() {
        // The usual case: the upstream's answer read straight from its bytes (no document tree)
        // when the converter can; anything unusual takes the general path below.
        if let Some(out) = answer.convert_bytes(&body.bytes()) {
            headers.remove(header::CONTENT_TYPE);
            return Ok(ResponseBody::Full(Body::from_bytes(out)));
        }
    }
    let v = body.json().map_err(|e| {
        Error::upstream(format!(
            "the upstream answered with a body that is not JSON: {}",
            e.message()
        ))
    })?;
    if answer.is_stream() {
        // The upstream ignored `stream`: replay its answer as the client's stream.
        Ok(ResponseBody::Stream(EventStream::iter(answer.replay(v)?)))
    } else {
        let v = answer.convert(v)?;
        headers.remove(header::CONTENT_TYPE);
        Ok(ResponseBody::Full(Body::from_json(v)))
    }
}

/// Collects a whole upstream stream into the client's complete answer.
async fn collect(
    mut events: EventStream,
    answer: &ResponseConverter,
) -> Result<serde_json::Value, Error> {
    let mut collector = answer.collector();
    while let Some(ev) = events.next().await {
        collector.push(&ev?)?;
        if collector.is_done() {
            break;
        }
    }
    Ok(collector.finish())
}

/// The converting stream: pulls one upstream event, hands out the client events it became, and
/// only then pulls again. The upstream is dropped as soon as its answer is complete.
struct ConvertStream {
    inner: Option<EventStream>,
    converter: StreamConverter,
}

impl ConvertStream {
    fn new(inner: EventStream, answer: &ResponseConverter) -> Self {
        ConvertStream {
            inner: Some(inner),
            converter: answer.stream(),
        }
    }
}

impl Stream for ConvertStream {
    type Item = Result<Event, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.converter.next_event() {
                return Poll::Ready(Some(item));
            }
            if this.converter.is_done() {
                this.inner = None;
                return Poll::Ready(None);
            }
            let Some(inner) = this.inner.as_mut() else {
                this.converter.finish();
                continue;
            };
            match Pin::new(inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(event))) => this.converter.push(&event),
                Poll::Ready(Some(Err(e))) => this.converter.fail(e),
                Poll::Ready(None) => this.converter.finish(),
            }
            if this.converter.is_done() {
                // Close the upstream as soon as its answer is complete.
                this.inner = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::{Value, json};

    use super::*;

    // 7b. `[DONE]` and every other frame pass through untouched when no conversion is needed.
    #[tokio::test]
    async fn same_protocol_passes_through_untouched() {
        use futures::StreamExt;
        let raw = Bytes::from_static(b"data: {\"x\":1}\n\ndata: [DONE]\n\n");
        let upstream_events = octo_test::events(std::str::from_utf8(&raw).unwrap());
        let inner = octo_core::engine_fn(move |req: Request| {
            let evs = upstream_events.clone();
            async move {
                assert!(!req.body.is_parsed(), "a passthrough never parses the body");
                Ok(Response::stream(EventStream::iter(evs)))
            }
        });
        let engine = ConvertEngine::new(std::sync::Arc::new(inner), Protocol::OpenAiChat);
        let req = Request::post(
            Protocol::OpenAiChat,
            "/v1/chat/completions",
            Body::from_static(br#"{"model":"m","stream":true}"#),
        );
        let resp = engine.process(req).await.unwrap();
        let ResponseBody::Stream(mut s) = resp.body else {
            panic!()
        };
        let mut out = Vec::new();
        while let Some(ev) = s.next().await {
            out.extend_from_slice(&ev.unwrap().to_frame());
        }
        assert_eq!(out, raw);
    }

    #[test]
    fn long_tool_names_are_shortened_upstream_and_restored() {
        let long = format!("mcp__server__{}", "x".repeat(70));
        let anthropic_req = json!({"model": "m", "max_tokens": 5, "tools": [{"name": long, "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "x"}]});
        let inner = octo_core::engine_fn(|mut req: Request| async move {
            let name = req.body.json().unwrap()["tools"][0]["function"]["name"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(name.len() <= 64, "{name}");
            Ok(Response::json(
                200,
                Body::from_json(
                    json!({"id": "c", "model": "g", "choices": [{"message": {"role": "assistant", "content": null,
                    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": "{}"}}]},
                    "finish_reason": "tool_calls"}]}),
                ),
            ))
        });
        let engine = ConvertEngine::new(std::sync::Arc::new(inner), Protocol::OpenAiChat);
        let req = Request::post(
            Protocol::Anthropic,
            "/v1/messages",
            Body::from_json(anthropic_req),
        );
        let resp = futures::executor::block_on(engine.process(req)).unwrap();
        let ResponseBody::Full(mut body) = resp.body else {
            panic!()
        };
        assert_eq!(body.json().unwrap()["content"][0]["name"], long.as_str());
    }

    #[tokio::test]
    async fn upstreams_that_ignore_the_stream_flag_are_adapted() {
        use futures::StreamExt;
        // Asked to stream, the upstream answers a full body: the client still gets its stream.
        let full = octo_core::engine_fn(|_req: Request| async {
            Ok(Response::json(
                200,
                Body::from_static(br#"{"id":"m","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"Hi"},{"type":"tool_use","id":"t1","name":"f","input":{"a":1}}],"stop_reason":"tool_use","usage":{"input_tokens":2,"output_tokens":3}}"#),
            ))
        });
        let engine = ConvertEngine::new(std::sync::Arc::new(full), Protocol::Anthropic);
        let req = Request::post(
            Protocol::OpenAiChat,
            "/v1/chat/completions",
            Body::from_static(
                br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#,
            ),
        );
        let resp = engine.process(req).await.unwrap();
        let ResponseBody::Stream(mut s) = resp.body else {
            panic!("a stream was asked for")
        };
        let mut text = String::new();
        let mut args = String::new();
        let mut last = Vec::new();
        while let Some(ev) = s.next().await {
            let ev = ev.unwrap();
            last = ev.data_body().to_bytes().to_vec();
            if let Ok(v) = serde_json::from_slice::<Value>(&last) {
                text.push_str(
                    v.pointer("/choices/0/delta/content")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                );
                args.push_str(
                    v.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                );
            }
        }
        assert_eq!(text, "Hi");
        assert_eq!(args, "{\"a\":1}");
        assert_eq!(last, b"[DONE]");

        // Asked for a full body, the upstream streams: the client gets one body.
        let streaming = octo_core::engine_fn(|_req: Request| async {
            let evs = [
                r#"{"type":"message_start","message":{"id":"m1","model":"c","usage":{"input_tokens":3,"output_tokens":1}}}"#,
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}"#,
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}"#,
                r#"{"type":"message_stop"}"#,
            ]
            .map(|d| Event::data(Bytes::from(d)));
            Ok(Response::stream(EventStream::iter(evs)))
        });
        let engine = ConvertEngine::new(std::sync::Arc::new(streaming), Protocol::Anthropic);
        let req = Request::post(
            Protocol::OpenAiResponses,
            "/v1/responses",
            Body::from_static(br#"{"model":"m","input":"x"}"#),
        );
        let resp = engine.process(req).await.unwrap();
        let ResponseBody::Full(mut body) = resp.body else {
            panic!("a full body was asked for")
        };
        let v = body.json().unwrap();
        assert_eq!(v["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(v["status"], "completed");
        assert_eq!(v["usage"]["input_tokens"], 3);
        assert_eq!(v["usage"]["output_tokens"], 2);
    }

    #[tokio::test]
    async fn anthropic_message_start_does_not_wait_for_the_upstreams_second_event() {
        use futures::{FutureExt, StreamExt};
        // OpenAI (and the mock) open a stream with a role-only chunk; a reasoning model may then think
        // for seconds. The Anthropic client's `message_start` must not wait for the next chunk.
        let inner = octo_core::engine_fn(|_req: Request| async {
            let role_only = r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1,"model":"gpt-4","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
            let upstream = EventStream::new(
                futures::stream::iter([Ok(Event::data(Bytes::from_static(role_only.as_bytes())))])
                    .chain(futures::stream::pending()),
            );
            Ok(Response::stream(upstream))
        });
        let engine = ConvertEngine::new(std::sync::Arc::new(inner), Protocol::OpenAiChat);
        let req = Request::post(
            Protocol::Anthropic,
            "/v1/messages",
            Body::from_static(br#"{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"x"}]}"#),
        );
        let resp = engine.process(req).await.unwrap();
        let ResponseBody::Stream(mut converted) = resp.body else {
            panic!("a stream was asked for")
        };
        let first = converted
            .next()
            .now_or_never()
            .expect("message_start is ready without a second upstream event")
            .expect("the stream has not ended")
            .unwrap();
        assert_eq!(first.name(), Some("message_start"));
        assert!(converted.next().now_or_never().is_none(), "then it waits");
    }
}
