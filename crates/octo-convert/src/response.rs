//! Converting the upstream's answer for the client: complete, streamed, or one shape into the
//! other when the upstream did not honour the client's `stream` flag.

use std::collections::VecDeque;
use std::fmt;

use octo_core::{Error, Event, Protocol};
use serde_json::Value;

use crate::canonical::{CanonicalResponse, StreamEvent};
use crate::codec::{ClientSide, Codec, codec};
use crate::ids;
use crate::stream::{self, Collector, Encoder, StreamConverter};
use crate::tools::NameMap;

/// Converts an upstream's answer for the client, in whichever shape it comes.
///
/// Obtained from [`convert_request`](crate::convert_request) (it then knows the client's model,
/// tools and whether it asked for usage in its stream), or built directly with
/// [`ResponseConverter::new`] for an answer without its request (tests, fuzzing, benchmarks).
///
/// ```
/// use octo_convert::ResponseConverter;
/// use octo_core::Protocol;
/// use serde_json::json;
///
/// let answer = ResponseConverter::new(Protocol::Anthropic, Protocol::OpenAiChat, "gpt").unwrap();
/// let v = answer
///     .convert(&json!({"id": "c1", "choices": [{"index": 0, "finish_reason": "stop",
///         "message": {"role": "assistant", "content": "Hi!"}}],
///         "usage": {"prompt_tokens": 5, "completion_tokens": 2}}))
///     .unwrap();
/// assert_eq!(v["content"][0]["text"], "Hi!");
/// assert_eq!(v["stop_reason"], "end_turn");
/// assert_eq!(v["model"], "gpt");
/// ```
#[derive(Clone)]
pub struct ResponseConverter {
    client: Protocol,
    upstream: Protocol,
    client_codec: &'static dyn Codec,
    upstream_codec: &'static dyn Codec,
    stream: bool,
    names: NameMap,
    side: ClientSide,
}

impl fmt::Debug for ResponseConverter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseConverter")
            .field("client", &self.client)
            .field("upstream", &self.upstream)
            .field("model", &self.side.model)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl ResponseConverter {
    /// Converts answers of a `upstream` upstream for a `client` client that asked for `model`,
    /// without the request: no tool renamed or declared in another shape, not streaming, usage
    /// included in streams. Fails when either protocol is not a chat protocol.
    pub fn new(
        client: Protocol,
        upstream: Protocol,
        model: impl Into<String>,
    ) -> Result<Self, Error> {
        let side = ClientSide {
            model: model.into(),
            include_usage: true,
            tools: Default::default(),
        };
        Self::for_request(client, upstream, false, NameMap::default(), side)
    }

    pub(crate) fn for_request(
        client: Protocol,
        upstream: Protocol,
        stream: bool,
        names: NameMap,
        side: ClientSide,
    ) -> Result<Self, Error> {
        Ok(ResponseConverter {
            client,
            upstream,
            client_codec: codec(client)?,
            upstream_codec: codec(upstream)?,
            stream,
            names,
            side,
        })
    }

    /// Whether an OpenAI Chat client's stream carries usage (`stream_options.include_usage`);
    /// other protocols always carry it.
    pub fn with_stream_usage(mut self, include_usage: bool) -> Self {
        self.side.include_usage = include_usage;
        self
    }

    /// The client's protocol.
    pub fn client(&self) -> Protocol {
        self.client
    }

    /// The upstream's protocol.
    pub fn upstream(&self) -> Protocol {
        self.upstream
    }

    /// The model the client asked for.
    pub fn model(&self) -> &str {
        &self.side.model
    }

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// Converts the upstream's complete answer into the client's.
    pub fn convert(&self, body: &Value) -> Result<Value, Error> {
        Ok(self.encode(self.decode(body)?))
    }

    /// Converts the upstream's complete answer, given as its bytes, into the client's answer's
    /// bytes, without building a document tree of the upstream's answer where the upstream's
    /// codec can read it directly (OpenAI Chat). `None` when it cannot: the caller then parses
    /// the body and uses [`convert`](Self::convert), which also produces the errors. When it
    /// answers, the bytes are those of [`convert`](Self::convert)'s answer, serialised.
    pub fn convert_bytes(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut r = self.upstream_codec.decode_response_bytes(body)?;
        self.names.restore_response(&mut r);
        Some(self.encode_bytes(r))
    }

    /// The upstream's complete answer as the client's stream, terminator included (for an
    /// upstream that ignored `stream: true`).
    pub fn replay(&self, body: &Value) -> Result<Vec<Event>, Error> {
        let events = stream::response_events(self.decode(body)?);
        let mut encoder = self.encoder();
        let mut out = VecDeque::new();
        for ev in events {
            if ev != StreamEvent::End {
                encoder.encode(ev, &mut out);
            }
        }
        encoder.finish(&mut out);
        Ok(out.into())
    }

    /// A converter of the upstream's stream into the client's, fed one event at a time.
    pub fn stream(&self) -> StreamConverter {
        StreamConverter::new(
            self.upstream_codec.stream_decoder(),
            self.encoder(),
            self.names.clone(),
        )
    }

    /// A collector of the upstream's stream into the client's complete answer (for an upstream
    /// that streamed although the client did not ask).
    pub fn collector(&self) -> StreamCollector {
        StreamCollector {
            decoder: self.upstream_codec.stream_decoder(),
            canon: Vec::new(),
            collector: Collector::default(),
            answer: self.clone(),
        }
    }

    fn decode(&self, body: &Value) -> Result<CanonicalResponse, Error> {
        if !is_answer_of(self.upstream, body) {
            // A body without the protocol's answer member (a wrong base URL or path serving
            // another protocol, a proxy's JSON) would decode as an empty answer: the client
            // would take it for the model's.
            return Err(Error::upstream(format!(
                "the upstream's answer is not a {} answer (its `{}` is missing)",
                self.upstream,
                answer_member(self.upstream)
            )));
        }
        let mut r = self.upstream_codec.decode_response(body)?;
        self.names.restore_response(&mut r);
        Ok(r)
    }

    fn encode(&self, r: CanonicalResponse) -> Value {
        let r = self.for_client(r);
        self.client_codec.encode_response(&r, &self.side)
    }

    /// [`encode`](Self::encode)'s document, serialised.
    fn encode_bytes(&self, r: CanonicalResponse) -> Vec<u8> {
        let r = self.for_client(r);
        self.client_codec.encode_response_bytes(&r, &self.side)
    }

    /// The answer with the client's model when the upstream named none, and the id the client's
    /// protocol expects.
    fn for_client(&self, mut r: CanonicalResponse) -> CanonicalResponse {
        if r.model.is_empty() {
            r.model.clone_from(&self.side.model);
        }
        r.id = ids::response_id(self.client, &r.id);
        r
    }

    pub(crate) fn encoder(&self) -> Box<dyn Encoder> {
        Box::new(ClientIds {
            client: self.client,
            inner: self.client_codec.stream_encoder(&self.side),
        })
    }
}

/// The member every complete answer of `protocol` has.
fn answer_member(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::OpenAiChat => "choices",
        Protocol::OpenAiResponses => "output",
        Protocol::Anthropic => "content",
        _ => "candidates",
    }
}

/// Whether `body` has `protocol`'s answer member (Gemini: or the `promptFeedback` of a blocked
/// prompt, which comes without candidates).
fn is_answer_of(protocol: Protocol, body: &Value) -> bool {
    body.get(answer_member(protocol)).is_some()
        || (protocol == Protocol::Gemini
            && (body.get("promptFeedback").is_some() || body.get("prompt_feedback").is_some()))
}

/// Collects an upstream stream into the client's complete answer; see
/// [`ResponseConverter::collector`].
pub struct StreamCollector {
    decoder: Box<dyn stream::Decoder>,
    canon: Vec<StreamEvent>,
    collector: Collector,
    answer: ResponseConverter,
}

impl fmt::Debug for StreamCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamCollector")
            .field("answer", &self.answer)
            .field("done", &self.collector.ended)
            .finish_non_exhaustive()
    }
}

impl StreamCollector {
    /// Feeds one upstream event; an in-band upstream error is returned as the answer's error.
    pub fn push(&mut self, event: &Event) -> Result<(), Error> {
        self.decoder.decode(event, &mut self.canon)?;
        for e in self.canon.drain(..) {
            self.collector.push(e);
        }
        Ok(())
    }

    /// Whether the upstream's stream reached its end (stop reading from it).
    pub fn is_done(&self) -> bool {
        self.collector.ended
    }

    /// The client's complete answer from what was fed.
    pub fn finish(self) -> Value {
        let mut r = self.collector.resp;
        self.answer.names.restore_response(&mut r);
        self.answer.encode(r)
    }
}

/// Gives the answer the id the client's protocol expects ([`ids::response_id`]) before the
/// client's encoder sees it.
struct ClientIds {
    client: Protocol,
    inner: Box<dyn Encoder>,
}

impl Encoder for ClientIds {
    fn encode(&mut self, mut event: StreamEvent, out: &mut VecDeque<Event>) {
        if let StreamEvent::Start(start) = &mut event {
            if let Some(id) = start.id.as_mut() {
                *id = ids::response_id(self.client, id);
            }
        }
        self.inner.encode(event, out);
    }

    fn finish(&mut self, out: &mut VecDeque<Event>) {
        self.inner.finish(out);
    }

    fn flush(&mut self, out: &mut VecDeque<Event>) {
        self.inner.flush(out);
    }

    fn fail(&mut self, error: &Error, out: &mut VecDeque<Event>) -> bool {
        self.inner.fail(error, out)
    }
}
