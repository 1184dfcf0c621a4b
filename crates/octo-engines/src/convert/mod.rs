//! Protocol conversion: serve a client speaking one chat protocol from an upstream speaking another.
//!
//! [`ConvertEngine`] wraps an inner engine that speaks `upstream` (an
//! [`HttpEndpoint`](crate::client::HttpEndpoint), or anything else). A request in the same protocol
//! passes through untouched. Any other of the four chat protocols — OpenAI Chat Completions, OpenAI
//! Responses, Anthropic Messages, Gemini `generateContent` — is converted on the way in and its
//! answer converted back, streaming or not.
//!
//! # Design
//!
//! One canonical model sits between the protocols (`model.rs`): a request (system instructions,
//! user/assistant turns made of text, image, document, audio, thinking, tool-call and tool-result
//! parts, tools, tool choice, sampling and reasoning settings), a response (parts, stop reason,
//! [`Usage`](crate::usage::Usage)) and stream events in Anthropic's block structure
//! (`Text`/`Thinking`/`ToolCallStart`/`ToolCallArgs` deltas, `BlockEnd`, `Usage` snapshots,
//! `Finish`, `End`). Each protocol has one decoder and one encoder per direction; no code is
//! specific to a pair. Streams are converted event by event by a state machine per side
//! (`stream.rs`), with memory bounded by the open block, never by the stream's length.
//!
//! # What is mapped, dropped or refused
//!
//! Everything in protocols.md §5 that the target can express survives: system/developer
//! instructions (all of them, merged into the target's one place), multi-turn history (same-role
//! turns merged, tool results first), text, images by URL and base64 (`image/jpg` → `image/jpeg`;
//! for Anthropic the type is checked against the bytes), PDF documents, tools (schemas cleaned for
//! Gemini), tool choice, parallel-call control, tool calls and results with their ids, reasoning
//! with signatures, stop sequences, `max_tokens`, temperature/top_p, finish reasons and usage.
//! OpenAI Responses `custom` tools (free-form input, such as Codex's `apply_patch`) and
//! `namespace` tools reach other upstreams as function tools and their calls come back as
//! `custom_tool_call` items / namespaced `function_call`s; answer ids follow the client protocol's
//! convention; a Responses client whose stream breaks gets `response.failed`.
//! A field the target cannot express is dropped with a `debug` log; where dropping would change
//! the meaning the request is refused with a 400 naming the parameter (`n > 1`, stateful Responses
//! requests, file ids, audio toward a text-only upstream, deprecated `functions`, a `tool_choice`
//! forcing a built-in tool). See
//! `docs/architecture.md` ("Protocol conversion") for the full list of decisions.
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

mod anthropic;
mod anthropic_stream;
mod chat;
mod chat_stream;
mod gemini;
mod gemini_stream;
mod ids;
mod media;
mod model;
mod responses;
mod responses_stream;
mod schema;
mod stream;
mod util;

use std::fmt;

use async_trait::async_trait;
use http::header;
use octo_core::{
    ArcEngine, Body, Engine, Error, Event, EventStream, Protocol, Request, Response, ResponseBody,
    RouteParams,
};
use serde_json::Value;

use self::model::{ChatRequest, ChatResponse, Part, ToolChoice, ToolOrigin};
use self::stream::{ConvertStream, Decoder, Encoder};

/// The default `max_tokens` sent to an Anthropic upstream when the client set no limit.
///
/// 4096 is the largest output every Claude model accepts (older ones refuse more); set
/// [`ConvertOptions::default_max_tokens`] higher for models that allow it.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Which field carries the output-token limit toward an OpenAI Chat upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OpenAiMaxTokens {
    /// `max_completion_tokens`: what OpenAI's current models require (o-series and gpt-5 refuse
    /// `max_tokens`). The default.
    #[default]
    MaxCompletionTokens,
    /// The deprecated `max_tokens`, for OpenAI-compatible servers that only know it.
    MaxTokens,
}

/// What happens to the client's reasoning controls on a converted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReasoningMode {
    /// Map them to the upstream's own controls (`reasoning_effort`, `thinking`, `reasoning`,
    /// `thinkingConfig`). The default.
    #[default]
    Pass,
    /// Send none, for upstream models that refuse them (OpenAI's non-reasoning models answer 400
    /// to `reasoning_effort`, which is what Claude Code's adaptive thinking becomes toward Chat).
    /// Reasoning blocks already in the history are still carried where the upstream can take them.
    Drop,
}

/// Conversion settings.
///
/// ```
/// use octo_engines::convert::{ConvertOptions, OpenAiMaxTokens, ReasoningMode};
///
/// let opts = ConvertOptions::default()
///     .with_default_max_tokens(8192)
///     .with_openai_max_tokens_field(OpenAiMaxTokens::MaxTokens)
///     .with_reasoning(ReasoningMode::Drop);
/// assert_eq!(opts.default_max_tokens, 8192);
/// assert_eq!(opts.reasoning, ReasoningMode::Drop);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConvertOptions {
    /// `max_tokens` for an Anthropic upstream (which requires it) when the client gave none.
    /// Default [`DEFAULT_MAX_TOKENS`] (4096).
    pub default_max_tokens: u32,
    /// The field used for the output limit toward an OpenAI Chat upstream. Default
    /// [`OpenAiMaxTokens::MaxCompletionTokens`].
    pub openai_max_tokens_field: OpenAiMaxTokens,
    /// Whether reasoning controls reach the upstream. Default [`ReasoningMode::Pass`].
    pub reasoning: ReasoningMode,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            default_max_tokens: DEFAULT_MAX_TOKENS,
            openai_max_tokens_field: OpenAiMaxTokens::default(),
            reasoning: ReasoningMode::default(),
        }
    }
}

impl ConvertOptions {
    /// Sets [`ConvertOptions::default_max_tokens`].
    pub fn with_default_max_tokens(mut self, max_tokens: u32) -> Self {
        self.default_max_tokens = max_tokens;
        self
    }

    /// Sets [`ConvertOptions::openai_max_tokens_field`].
    pub fn with_openai_max_tokens_field(mut self, field: OpenAiMaxTokens) -> Self {
        self.openai_max_tokens_field = field;
        self
    }

    /// Sets [`ConvertOptions::reasoning`].
    pub fn with_reasoning(mut self, mode: ReasoningMode) -> Self {
        self.reasoning = mode;
        self
    }
}

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

fn is_chat(format: Protocol) -> bool {
    Protocol::CHAT_PROTOCOLS.contains(&format)
}

/// What the response side needs to know about the request.
#[derive(Debug, Clone)]
struct Ctx {
    client: Protocol,
    upstream: Protocol,
    model: String,
    stream: bool,
    include_usage: bool,
    names: NameMap,
    tools: std::sync::Arc<ToolMap>,
}

#[async_trait]
impl Engine for ConvertEngine {
    async fn process(&self, mut req: Request) -> Result<Response, Error> {
        let client = req.protocol;
        if client == self.upstream || !is_chat(client) || !is_chat(self.upstream) {
            return self.inner.process(req).await;
        }
        let ctx = convert_request(&mut req, self.upstream, &self.options)?;
        let mut resp = self.inner.process(req).await?;
        resp.body = match resp.body {
            ResponseBody::Full(mut body) => {
                let v = body.json().map_err(|e| {
                    Error::upstream(format!(
                        "the upstream answered with a body that is not JSON: {}",
                        e.message()
                    ))
                })?;
                let mut cr = decode_response(ctx.upstream, v)?;
                ctx.names.restore_response(&mut cr);
                if ctx.stream {
                    // The upstream ignored `stream`: replay its answer as the client's stream.
                    let events = stream::response_events(cr);
                    let out = stream::encode_events(encoder(&ctx), events);
                    ResponseBody::Stream(EventStream::iter(out))
                } else {
                    resp.headers.remove(header::CONTENT_TYPE);
                    ResponseBody::Full(Body::from_json(encode_response(&ctx, &cr)))
                }
            }
            ResponseBody::Stream(events) if ctx.stream => {
                ResponseBody::Stream(EventStream::new(ConvertStream::new(
                    events,
                    decoder(ctx.upstream),
                    encoder(&ctx),
                    ctx.names.clone(),
                )))
            }
            ResponseBody::Stream(events) => {
                // The upstream streamed an answer to a non-streaming request: collect it.
                let cr = stream::collect(events, decoder(ctx.upstream), &ctx.names).await?;
                resp.headers.remove(header::CONTENT_TYPE);
                ResponseBody::Full(Body::from_json(encode_response(&ctx, &cr)))
            }
        };
        Ok(resp)
    }
}

/// Converts the request in place and returns the context for its response.
fn convert_request(
    req: &mut Request,
    upstream: Protocol,
    options: &ConvertOptions,
) -> Result<Ctx, Error> {
    let client = req.protocol;
    let body = req.body.json()?;
    let mut canon = decode_request(client, body, &req.route)?;
    canon.normalize();
    let tools = std::sync::Arc::new(ToolMap::from_request(&canon));
    if options.reasoning == ReasoningMode::Drop && canon.reasoning.take().is_some() {
        tracing::debug!(upstream = %upstream, "dropping the reasoning controls (conversion.reasoning: drop)");
    }
    let names = NameMap::shorten(&mut canon);
    let encoded = encode_request(upstream, &canon, options)?;
    req.body = Body::from_json(encoded);
    req.protocol = upstream;
    req.route = if upstream == Protocol::Gemini {
        RouteParams {
            model: Some(canon.model.clone()),
            stream: Some(canon.stream),
        }
    } else {
        RouteParams::default()
    };
    Ok(Ctx {
        client,
        upstream,
        model: canon.model,
        stream: canon.stream,
        include_usage: canon.include_usage,
        names,
        tools,
    })
}

fn decode_request(
    format: Protocol,
    body: &Value,
    route: &RouteParams,
) -> Result<ChatRequest, Error> {
    let mut r = match format {
        Protocol::OpenAiChat => chat::decode_request(body),
        Protocol::OpenAiResponses => responses::decode_request(body),
        Protocol::Anthropic => anthropic::decode_request(body),
        Protocol::Gemini => gemini::decode_request(body, route),
        other => Err(Error::unsupported(format!("{other} cannot be converted"))),
    }?;
    r.fill_tool_result_names();
    Ok(r)
}

fn encode_request(
    format: Protocol,
    r: &ChatRequest,
    options: &ConvertOptions,
) -> Result<Value, Error> {
    match format {
        Protocol::OpenAiChat => chat::encode_request(r, options),
        Protocol::OpenAiResponses => responses::encode_request(r),
        Protocol::Anthropic => anthropic::encode_request(r, options),
        Protocol::Gemini => gemini::encode_request(r),
        other => Err(Error::unsupported(format!("{other} cannot be converted"))),
    }
}

fn decode_response(format: Protocol, v: &Value) -> Result<ChatResponse, Error> {
    match format {
        Protocol::OpenAiChat => chat::decode_response(v),
        Protocol::OpenAiResponses => responses::decode_response(v),
        Protocol::Anthropic => anthropic::decode_response(v),
        Protocol::Gemini => gemini::decode_response(v),
        other => Err(Error::unsupported(format!("{other} cannot be converted"))),
    }
}

fn encode_response(ctx: &Ctx, r: &ChatResponse) -> Value {
    let mut r = r.clone();
    if r.model.is_empty() {
        r.model.clone_from(&ctx.model);
    }
    r.id = ids::response_id(ctx.client, &r.id);
    match ctx.client {
        Protocol::OpenAiChat => chat::encode_response(&r, util::now()),
        Protocol::OpenAiResponses => responses::encode_response(&r, util::now(), &ctx.tools),
        Protocol::Anthropic => anthropic::encode_response(&r),
        _ => gemini::encode_response(&r),
    }
}

fn decoder(upstream: Protocol) -> Box<dyn Decoder> {
    match upstream {
        Protocol::OpenAiChat => Box::<chat_stream::ChatDecoder>::default(),
        Protocol::OpenAiResponses => Box::<responses_stream::ResponsesDecoder>::default(),
        Protocol::Anthropic => Box::<anthropic_stream::AnthropicDecoder>::default(),
        _ => Box::<gemini_stream::GeminiDecoder>::default(),
    }
}

fn encoder(ctx: &Ctx) -> Box<dyn Encoder> {
    Box::new(ClientIds {
        client: ctx.client,
        inner: protocol_encoder(ctx),
    })
}

/// Gives the answer the id the client's protocol expects ([`ids::response_id`]) before the
/// client's encoder sees it.
struct ClientIds {
    client: Protocol,
    inner: Box<dyn Encoder>,
}

impl Encoder for ClientIds {
    fn encode(
        &mut self,
        mut event: model::StreamEvent,
        out: &mut std::collections::VecDeque<Event>,
    ) {
        if let model::StreamEvent::Start(start) = &mut event {
            if let Some(id) = start.id.as_mut() {
                *id = ids::response_id(self.client, id);
            }
        }
        self.inner.encode(event, out);
    }

    fn finish(&mut self, out: &mut std::collections::VecDeque<Event>) {
        self.inner.finish(out);
    }

    fn flush(&mut self, out: &mut std::collections::VecDeque<Event>) {
        self.inner.flush(out);
    }

    fn fail(&mut self, error: &Error, out: &mut std::collections::VecDeque<Event>) -> bool {
        self.inner.fail(error, out)
    }
}

fn protocol_encoder(ctx: &Ctx) -> Box<dyn Encoder> {
    match ctx.client {
        Protocol::OpenAiChat => {
            Box::new(chat_stream::ChatEncoder::new(&ctx.model, ctx.include_usage))
        }
        Protocol::OpenAiResponses => Box::new(responses_stream::ResponsesEncoder::new(
            &ctx.model,
            ctx.tools.clone(),
        )),
        Protocol::Anthropic => Box::new(anthropic_stream::AnthropicEncoder::new(&ctx.model)),
        _ => Box::new(gemini_stream::GeminiEncoder::new(&ctx.model)),
    }
}

/// The client's tools that are not plain function tools (Responses `custom` and namespaced
/// tools), by the function name the upstream sees, so calls go back to the client in its shape.
#[derive(Debug, Clone, Default)]
pub(crate) struct ToolMap {
    tools: Vec<(String, ToolOrigin)>,
}

impl ToolMap {
    fn from_request(r: &ChatRequest) -> ToolMap {
        ToolMap {
            tools: r
                .tools
                .iter()
                .filter_map(|t| Some((t.name.clone(), t.origin.clone()?)))
                .collect(),
        }
    }

    /// How the client declared the tool the upstream calls `name`.
    pub(crate) fn origin(&self, name: &str) -> Option<&ToolOrigin> {
        self.tools.iter().find(|(n, _)| n == name).map(|(_, o)| o)
    }
}

/// Tool names shortened for the upstream, and the way back.
#[derive(Debug, Clone, Default)]
pub(crate) struct NameMap {
    /// `(short, original)`.
    pairs: Vec<(String, String)>,
}

impl NameMap {
    /// Shortens every tool name the upstream would refuse, everywhere it appears.
    fn shorten(r: &mut ChatRequest) -> NameMap {
        let mut map = NameMap::default();
        let mut fix = |name: &mut String| {
            if let Some(short) = ids::short_name(name) {
                if !map.pairs.iter().any(|(s, _)| *s == short) {
                    map.pairs.push((short.clone(), name.clone()));
                }
                *name = short;
            }
        };
        for t in &mut r.tools {
            fix(&mut t.name);
        }
        match &mut r.tool_choice {
            Some(ToolChoice::Tool(name)) => fix(name),
            Some(ToolChoice::Allowed { names, .. }) => names.iter_mut().for_each(&mut fix),
            _ => {}
        }
        for m in &mut r.messages {
            for p in &mut m.parts {
                match p {
                    Part::ToolCall(c) => fix(&mut c.name),
                    Part::ToolResult(res) => {
                        if let Some(n) = res.name.as_mut() {
                            fix(n);
                        }
                    }
                    _ => {}
                }
            }
        }
        map
    }

    /// Puts the original name back.
    pub(crate) fn restore(&self, name: &mut String) {
        if let Some((_, original)) = self.pairs.iter().find(|(s, _)| s == name) {
            name.clone_from(original);
        }
    }

    fn restore_response(&self, r: &mut ChatResponse) {
        if self.pairs.is_empty() {
            return;
        }
        for p in &mut r.parts {
            if let Part::ToolCall(c) = p {
                self.restore(&mut c.name);
            }
        }
    }
}

impl ChatRequest {
    /// Gives every tool result the name of the call it answers.
    fn fill_tool_result_names(&mut self) {
        let mut names: Vec<(String, String)> = Vec::new();
        for m in &mut self.messages {
            for p in &mut m.parts {
                match p {
                    Part::ToolCall(c) => names.push((c.id.clone(), c.name.clone())),
                    Part::ToolResult(r) if r.name.as_deref().is_none_or(str::is_empty) => {
                        r.name = names
                            .iter()
                            .rev()
                            .find(|(id, _)| *id == r.id)
                            .map(|(_, n)| n.clone());
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Synchronous entry points for fuzzing, property tests and benchmarks. Not a stable API.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// Converts a client request body; the upstream body, or the 400 the converter answers.
    pub fn convert_request(
        client: Protocol,
        upstream: Protocol,
        body: &[u8],
        route: RouteParams,
    ) -> Result<Value, Error> {
        let mut req = Request::post(client, "/", Body::from_bytes(body.to_vec()));
        req.route = route;
        super::convert_request(&mut req, upstream, &ConvertOptions::default())?;
        Ok(req.body.json()?.clone())
    }

    /// Converts a non-streaming upstream answer for a client.
    pub fn convert_response(
        client: Protocol,
        upstream: Protocol,
        body: &[u8],
    ) -> Result<Value, Error> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| Error::upstream(format!("not JSON: {e}")))?;
        let cr = decode_response(upstream, &v)?;
        Ok(encode_response(&ctx(client, upstream, false), &cr))
    }

    /// Converts a sequence of upstream stream events for a client.
    pub fn convert_stream(
        client: Protocol,
        upstream: Protocol,
        include_usage: bool,
        events: impl IntoIterator<Item = Result<Event, Error>>,
    ) -> Vec<Result<Event, Error>> {
        let ctx = ctx(client, upstream, include_usage);
        ConvertStream::convert_all(decoder(upstream), encoder(&ctx), NameMap::default(), events)
    }

    pub(super) fn ctx(client: Protocol, upstream: Protocol, include_usage: bool) -> Ctx {
        Ctx {
            client,
            upstream,
            model: "model".to_owned(),
            stream: true,
            include_usage,
            names: NameMap::default(),
            tools: std::sync::Arc::default(),
        }
    }
}

#[cfg(test)]
mod reference_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(client: Protocol, upstream: Protocol, body: Value, opts: &ConvertOptions) -> Value {
        let mut req = Request::post(client, "/", Body::from_json(body));
        convert_request(&mut req, upstream, opts).unwrap();
        req.body.json().unwrap().clone()
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
}
