//! Protocol conversion between the four chat protocols, without IO.
//!
//! OpenAI Chat Completions, OpenAI Responses, Anthropic Messages and Gemini `generateContent` say
//! the same things in different shapes. This crate converts a client's request into an upstream's
//! protocol and the upstream's answer back into the client's, complete or streamed, as plain
//! functions over bytes, JSON values and [`Event`](octo_core::Event)s:
//!
//! - [`convert_request`]: a client request body → the upstream's body, the route its path needs
//!   and a [`ResponseConverter`] for the answer;
//! - [`ResponseConverter::convert`]: a complete answer → the client's complete answer;
//! - [`ResponseConverter::stream`]: a [`StreamConverter`] fed one upstream event at a time,
//!   producing the client's events, with a [`finish`](StreamConverter::finish) for EOF;
//! - [`ResponseConverter::replay`] and [`ResponseConverter::collector`] for an upstream that did
//!   not honour the client's `stream` flag;
//! - [`usage::Usage`]: token usage normalised across the protocols;
//! - [`embeddings`]: OpenAI embeddings ⇄ Gemini `embedContent` / `batchEmbedContents`.
//!
//! The engine that does the IO (`ConvertEngine`, which sends the converted request through an
//! inner engine and runs its answer through these converters) lives in `octo-engines`: this crate
//! depends on `octo-core` only, has no async code, and is what the fuzzers and benchmarks drive
//! directly.
//!
//! # Design
//!
//! One canonical model sits between the protocols (private to this crate): a request (system
//! instructions, user/assistant turns made of text, image, document, audio, thinking, tool-call and
//! tool-result parts, tools, tool choice, sampling and reasoning settings), a response (parts, stop
//! reason, [`Usage`](usage::Usage)) and stream events in Anthropic's block structure. Each protocol
//! has one codec (`openai_chat`, `openai_responses`, `anthropic`, `gemini`, with a `*_stream`
//! module each for streams) behind one trait, picked in one place; no code is specific to a pair
//! of protocols. Streams are converted event by event, with memory bounded by the open block,
//! never by the stream's length.
//!
//! What is mapped, dropped or refused, protocol by protocol, is written down in
//! `docs/conversion.md`: a field the target cannot express is dropped with a `debug` log; where
//! dropping would change the meaning the request is refused with a 400 naming the parameter.
//!
//! # Example
//!
//! ```
//! use octo_convert::{ConvertOptions, convert_request};
//! use octo_core::{Protocol, RouteParams};
//! use serde_json::json;
//!
//! // An Anthropic client, an OpenAI Chat upstream.
//! let request = json!({"model": "gpt", "max_tokens": 64,
//!                      "messages": [{"role": "user", "content": "Hello"}]});
//! let converted = convert_request(
//!     Protocol::Anthropic,
//!     Protocol::OpenAiChat,
//!     &request,
//!     &RouteParams::default(),
//!     &ConvertOptions::default().with_default_max_tokens(1024),
//! )
//! .unwrap();
//! assert_eq!(converted.body["messages"][0]["content"][0]["text"], "Hello");
//! assert_eq!(converted.body["max_completion_tokens"], 64);
//!
//! // The upstream's answer, back in Anthropic's shape.
//! let answer = json!({"id": "c1", "model": "gpt", "choices": [{"index": 0,
//!     "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
//!     "usage": {"prompt_tokens": 5, "completion_tokens": 2}});
//! let v = converted.response.convert(&answer).unwrap();
//! assert_eq!(v["content"][0]["text"], "Hi!");
//! assert_eq!(v["stop_reason"], "end_turn");
//! assert_eq!(v["usage"]["input_tokens"], 5);
//! ```

mod anthropic;
mod anthropic_stream;
mod canonical;
mod codec;
pub mod embeddings;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod gemini;
mod gemini_stream;
mod ids;
mod json_string;
mod media;
mod openai_chat;
mod openai_chat_stream;
mod openai_responses;
mod openai_responses_stream;
mod options;
mod request;
mod response;
mod schema;
mod stream;
mod tools;
pub use octo_core::usage;
mod util;

pub use options::{
    ConvertOptions, DEFAULT_MAX_TOKENS, OpenAiMaxTokens, ReasoningDialect, ReasoningMode,
};
pub use request::{
    ConvertedRequest, ConvertedRequestBytes, convert_request, convert_request_bytes,
};
pub use response::{ResponseConverter, StreamCollector};
pub use stream::StreamConverter;

/// The shapes the unit tests drive: a request body in bytes, an answer in bytes, a stream.
#[cfg(test)]
mod testing {
    use octo_core::{Body, Error, Event, Protocol, RouteParams};
    use serde_json::Value;

    use crate::{ConvertOptions, ResponseConverter};

    /// Converts a client request body; the upstream body, or the 400 the converter answers.
    pub(crate) fn convert_request(
        client: Protocol,
        upstream: Protocol,
        body: &[u8],
        route: RouteParams,
    ) -> Result<Value, Error> {
        let mut body = Body::from_bytes(body.to_vec());
        let converted = crate::convert_request(
            client,
            upstream,
            body.json()?,
            &route,
            &ConvertOptions::default(),
        )?;
        Ok(converted.body)
    }

    /// Decodes a client request of `protocol` into the canonical model, as `convert_request` does.
    pub(crate) fn decode(
        protocol: Protocol,
        body: &Value,
        route: &RouteParams,
    ) -> Result<crate::canonical::CanonicalRequest, Error> {
        crate::request::decode_request(crate::codec::codec(protocol)?, body, route)
    }

    /// Converts a non-streaming upstream answer for a client.
    pub(crate) fn convert_response(
        client: Protocol,
        upstream: Protocol,
        body: &[u8],
    ) -> Result<Value, Error> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| Error::upstream(format!("not JSON: {e}")))?;
        // Every answer a test converts also checks the codec's read from bytes, where it has
        // one, against its read of the document.
        let codec = crate::codec::codec(upstream)?;
        if let Some(fast) = codec.decode_response_bytes(body) {
            assert_eq!(Some(fast), codec.decode_response(&v).ok(), "{v}");
        }
        answer(client, upstream, false).convert(&v)
    }

    /// Converts a sequence of upstream stream events for a client.
    pub(crate) fn convert_stream(
        client: Protocol,
        upstream: Protocol,
        include_usage: bool,
        events: impl IntoIterator<Item = Result<Event, Error>>,
    ) -> Vec<Result<Event, Error>> {
        answer(client, upstream, include_usage)
            .stream()
            .convert_all(events)
    }

    /// A converter for answers to a request for the model `model`.
    pub(crate) fn answer(
        client: Protocol,
        upstream: Protocol,
        include_usage: bool,
    ) -> ResponseConverter {
        ResponseConverter::new(client, upstream, "model")
            .unwrap()
            .with_stream_usage(include_usage)
    }
}

#[cfg(test)]
mod history_tests;
#[cfg(test)]
mod reference_tests;

#[cfg(test)]
mod tests {
    use octo_core::{Protocol, RouteParams};
    use serde_json::Value;

    use super::*;

    fn convert(client: Protocol, upstream: Protocol, body: Value, opts: &ConvertOptions) -> Value {
        convert_request(client, upstream, &body, &RouteParams::default(), opts)
            .unwrap()
            .body
    }

    #[test]
    fn reasoning_drop_removes_every_reasoning_control() {
        // Claude Code's adaptive thinking.
        let anthropic = serde_json::json!({
            "model": "m", "max_tokens": 64,
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
            "messages": [{"role": "user", "content": "hi"}]
        });
        let pass = ConvertOptions::default();
        let drop = ConvertOptions::default().with_reasoning(ReasoningMode::Drop);
        let v = convert(
            Protocol::Anthropic,
            Protocol::OpenAiChat,
            anthropic.clone(),
            &pass,
        );
        assert_eq!(v["reasoning_effort"], "high");
        let v = convert(
            Protocol::Anthropic,
            Protocol::OpenAiChat,
            anthropic.clone(),
            &drop,
        );
        assert!(v.get("reasoning_effort").is_none(), "{v}");
        assert_eq!(v["messages"][0]["content"][0]["text"], "hi");
        let v = convert(
            Protocol::Anthropic,
            Protocol::OpenAiResponses,
            anthropic,
            &drop,
        );
        assert!(
            v.get("reasoning").is_none() && v.get("include").is_none(),
            "{v}"
        );

        let chat = serde_json::json!({
            "model": "m", "reasoning_effort": "low",
            "messages": [{"role": "user", "content": "hi"}]
        });
        let v = convert(
            Protocol::OpenAiChat,
            Protocol::Anthropic,
            chat.clone(),
            &pass,
        );
        assert_eq!(v["thinking"]["type"], "enabled");
        let v = convert(
            Protocol::OpenAiChat,
            Protocol::Anthropic,
            chat.clone(),
            &drop,
        );
        assert!(v.get("thinking").is_none(), "{v}");
        let v = convert(Protocol::OpenAiChat, Protocol::Gemini, chat, &drop);
        assert!(
            v.pointer("/generationConfig/thinkingConfig").is_none(),
            "{v}"
        );
    }

    #[test]
    fn a_replayed_answer_collects_back_into_the_same_answer() {
        // An Anthropic answer replayed as an OpenAI Chat client's stream ...
        let full = serde_json::json!({"id": "msg_1", "type": "message", "role": "assistant",
            "model": "c", "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 2, "output_tokens": 3}});
        let chat = ResponseConverter::new(Protocol::OpenAiChat, Protocol::Anthropic, "m").unwrap();
        let events = chat.replay(&full).unwrap();
        assert!(events.last().unwrap().is_done_marker());
        // ... and that stream collected for an Anthropic client.
        let anthropic =
            ResponseConverter::new(Protocol::Anthropic, Protocol::OpenAiChat, "m").unwrap();
        let mut collector = anthropic.collector();
        for ev in &events {
            collector.push(ev).unwrap();
        }
        assert!(collector.is_done());
        let v = collector.finish();
        assert_eq!(v["id"], "msg_1");
        assert_eq!(
            v["content"],
            serde_json::json!([{"type": "text", "text": "Hi"}])
        );
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["usage"]["input_tokens"], 2);
        assert_eq!(v["usage"]["output_tokens"], 3);
    }
}
