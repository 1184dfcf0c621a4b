//! OpenAI Chat Completions: request and response codecs.
//!
//! Reasoning is not part of the official protocol; the converter uses the de-facto extensions:
//! `reasoning_content` (also read: `reasoning`) for the text and LiteLLM's `thinking_blocks`
//! (`[{"type":"thinking","thinking","signature"}, {"type":"redacted_thinking","data"}]`) for
//! signatures, on assistant messages and stream deltas, so a client that keeps the assistant message
//! replays them on the next turn.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use octo_core::{Error, Protocol, RouteParams};

use crate::canonical::{
    CanonicalRequest, CanonicalResponse, Media, Message, Part, ReasoningConfig, ResponseFormat,
    Role, StopReason, Thinking, Tool, ToolCall, ToolChoice, ToolResult, Usage, refusal_stop,
};
use crate::codec::{ClientSide, Codec};
use crate::ids;
use crate::media::{data_uri, media_from_url, media_url};
use crate::options::OpenAiMaxTokens;
use crate::options::{ConvertOptions, ReasoningDialect};
use crate::stream::{Decoder, Encoder};
use crate::util;
use crate::util::{At, arr, as_u64, b, bad, content_text, dropped, f, num, put, s, u, unsupported};

const ME: Protocol = Protocol::OpenAiChat;

/// The OpenAI Chat Completions codec.
pub(crate) struct OpenAiChat;

impl Codec for OpenAiChat {
    fn decode_request(
        &self,
        body: &Value,
        _route: &RouteParams,
        r: CanonicalRequest,
    ) -> Result<CanonicalRequest, Error> {
        decode_request(body, r)
    }

    fn encode_request(
        &self,
        r: &CanonicalRequest,
        options: &ConvertOptions,
    ) -> Result<Value, Error> {
        encode_request(r, options)
    }

    fn encode_request_bytes(
        &self,
        r: &CanonicalRequest,
        options: &ConvertOptions,
    ) -> Result<Vec<u8>, Error> {
        match encode_request_bytes(r, options) {
            Some(bytes) => Ok(bytes),
            None => Ok(serde_json::to_vec(&encode_request(r, options)?).unwrap_or_default()),
        }
    }

    fn decode_response(&self, body: &Value) -> Result<CanonicalResponse, Error> {
        decode_response(body)
    }

    fn decode_response_bytes(&self, body: &[u8]) -> Option<CanonicalResponse> {
        decode_response_bytes(body)
    }

    fn encode_response(&self, r: &CanonicalResponse, _client: &ClientSide) -> Value {
        encode_response(r, util::now())
    }

    fn stream_decoder(&self) -> Box<dyn Decoder> {
        Box::<crate::openai_chat_stream::OpenAiChatDecoder>::default()
    }

    fn stream_encoder(&self, client: &ClientSide) -> Box<dyn Encoder> {
        Box::new(crate::openai_chat_stream::OpenAiChatEncoder::new(
            &client.model,
            client.include_usage,
        ))
    }
}

// ------------------------------------------------------------------------------------ request in

/// Reads a Chat Completions request.
pub(crate) fn decode_request(
    body: &Value,
    mut r: CanonicalRequest,
) -> Result<CanonicalRequest, Error> {
    for legacy in ["functions", "function_call"] {
        if body.get(legacy).is_some_and(|v| !v.is_null()) {
            return Err(unsupported(
                legacy,
                format!(
                    "`{legacy}` is deprecated and cannot be converted; use `tools` and `tool_choice`"
                ),
            ));
        }
    }
    if arr(body, "modalities").iter().any(|m| m == "audio") {
        return Err(unsupported(
            "modalities",
            "audio output cannot be produced by this upstream",
        ));
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Err(bad("messages", "`messages` must be an array"));
    };
    r.include_usage = r.stream
        && body
            .at("stream_options", "include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    for (i, m) in messages.iter().enumerate() {
        let role = s(m, "role").unwrap_or_default();
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => {
                let text = content_text(content);
                if !text.is_empty() {
                    r.system.push(text);
                }
            }
            "user" => r.messages.push(Message {
                role: Role::User,
                parts: user_parts(content, i)?,
            }),
            "assistant" => r.messages.push(Message {
                role: Role::Assistant,
                parts: assistant_parts(m, i)?,
            }),
            "tool" => {
                let id = s(m, "tool_call_id").ok_or_else(|| {
                    bad(
                        &format!("messages[{i}].tool_call_id"),
                        "a tool message needs `tool_call_id`",
                    )
                })?;
                let (id, _) = ids::unfold_signature(id);
                let content = match content {
                    Value::Array(_) => user_parts(content, i)?,
                    other => vec![Part::Text(content_text(other))],
                };
                r.messages.push(Message {
                    role: Role::User,
                    parts: vec![Part::ToolResult(ToolResult {
                        id,
                        name: None,
                        content,
                        is_error: false,
                    })],
                });
            }
            "function" => {
                return Err(unsupported(
                    &format!("messages[{i}].role"),
                    "`function` messages are deprecated and cannot be converted; use `tool` messages",
                ));
            }
            other => {
                return Err(bad(
                    &format!("messages[{i}].role"),
                    format!("unknown message role `{other}`"),
                ));
            }
        }
    }
    for t in arr(body, "tools") {
        match s(t, "type") {
            Some("function") | None => {
                let func = t.get("function").unwrap_or(&Value::Null);
                let Some(name) = s(func, "name") else {
                    return Err(bad("tools", "a function tool needs `function.name`"));
                };
                r.tools.push(Tool {
                    name: name.to_owned(),
                    description: s(func, "description").map(str::to_owned),
                    parameters: func.get("parameters").filter(|p| p.is_object()).cloned(),
                    strict: b(func, "strict").filter(|strict| *strict),
                    origin: None,
                });
            }
            Some(other) => {
                tracing::debug!(tool_type = other, "dropping a non-function tool");
            }
        }
    }
    r.tool_choice = match body.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => match c.as_str() {
            "none" => Some(ToolChoice::None),
            "auto" => Some(ToolChoice::Auto),
            "required" => Some(ToolChoice::Required),
            other => {
                return Err(bad("tool_choice", format!("unknown tool_choice `{other}`")));
            }
        },
        Some(c) => match s(c, "type") {
            Some("function") => c
                .at("function", "name")
                .and_then(Value::as_str)
                .map(|n| ToolChoice::Tool(n.to_owned())),
            Some("allowed_tools") => {
                let a = c.get("allowed_tools").unwrap_or(&Value::Null);
                Some(ToolChoice::Allowed {
                    required: s(a, "mode") == Some("required"),
                    names: arr(a, "tools")
                        .iter()
                        .filter_map(|t| {
                            t.at("function", "name")
                                .or_else(|| t.get("name"))
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        })
                        .collect(),
                })
            }
            _ => {
                tracing::debug!("dropping a tool_choice for a non-function tool");
                None
            }
        },
    };
    r.parallel_tool_calls = b(body, "parallel_tool_calls");
    r.max_tokens = u(body, "max_completion_tokens").or_else(|| u(body, "max_tokens"));
    r.temperature = f(body, "temperature");
    r.top_p = f(body, "top_p");
    r.stop = match body.get("stop") {
        Some(Value::String(x)) => vec![x.clone()],
        Some(Value::Array(xs)) => xs
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    r.n = u(body, "n");
    r.seed = body.get("seed").and_then(Value::as_i64);
    r.frequency_penalty = f(body, "frequency_penalty");
    r.presence_penalty = f(body, "presence_penalty");
    if let Some(effort) = s(body, "reasoning_effort") {
        r.reasoning = Some(ReasoningConfig {
            effort: Some(effort.to_owned()),
            disabled: effort == "none",
            include_thoughts: effort != "none",
            ..ReasoningConfig::default()
        });
    }
    r.response_format = body
        .get("response_format")
        .and_then(|rf| match s(rf, "type") {
            Some("text") => Some(ResponseFormat::Text),
            Some("json_object") => Some(ResponseFormat::JsonObject),
            Some("json_schema") => {
                let js = rf.get("json_schema").unwrap_or(&Value::Null);
                Some(ResponseFormat::JsonSchema {
                    name: s(js, "name").unwrap_or("response").to_owned(),
                    schema: js.get("schema").cloned().unwrap_or_else(|| json!({})),
                    strict: b(js, "strict"),
                    description: s(js, "description").map(str::to_owned),
                })
            }
            _ => None,
        });
    r.user = s(body, "safety_identifier")
        .or_else(|| s(body, "user"))
        .map(str::to_owned);
    for ignored in [
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "prediction",
        "web_search_options",
        "audio",
        "verbosity",
    ] {
        if body.get(ignored).is_some_and(|v| !v.is_null()) {
            tracing::debug!(
                field = ignored,
                "dropping an OpenAI Chat field other protocols cannot express"
            );
        }
    }
    Ok(r)
}

fn user_parts(content: &Value, i: usize) -> Result<Vec<Part>, Error> {
    let parts = match content {
        Value::String(t) => return Ok(vec![Part::Text(t.clone())]),
        Value::Array(parts) => parts,
        Value::Null => return Ok(Vec::new()),
        _ => {
            return Err(bad(
                &format!("messages[{i}].content"),
                "content must be a string or an array of parts",
            ));
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let param = || format!("messages[{i}].content[{j}]");
        match s(p, "type") {
            Some("text") => out.push(Part::Text(s(p, "text").unwrap_or_default().to_owned())),
            Some("image_url") => {
                let url = p
                    .at("image_url", "url")
                    .or_else(|| p.get("image_url"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(&param(), "an image_url part needs `image_url.url`"))?;
                out.push(Part::Image(media_from_url(url)));
            }
            Some("input_audio") => {
                let a = p.get("input_audio").unwrap_or(&Value::Null);
                out.push(Part::Audio {
                    data: s(a, "data").unwrap_or_default().to_owned(),
                    format: s(a, "format").unwrap_or("wav").to_owned(),
                });
            }
            Some("file") => {
                let file = p.get("file").unwrap_or(&Value::Null);
                let name = s(file, "filename").map(str::to_owned);
                match s(file, "file_data") {
                    Some(data) => {
                        let media = match media_from_url(data) {
                            m @ Media::Base64 { .. } => m,
                            Media::Url { .. } => Media::Base64 {
                                media_type: "application/pdf".into(),
                                data: data.to_owned(),
                            },
                        };
                        out.push(Part::Document { media, name });
                    }
                    None => {
                        return Err(unsupported(
                            &param(),
                            "file ids refer to OpenAI's file store and cannot be converted; send `file_data`",
                        ));
                    }
                }
            }
            Some("refusal") => out.push(Part::Refusal(
                s(p, "refusal").unwrap_or_default().to_owned(),
            )),
            other => {
                return Err(bad(
                    &param(),
                    format!("unknown content part type `{}`", other.unwrap_or("")),
                ));
            }
        }
    }
    Ok(out)
}

/// Reasoning extensions on an assistant message or delta.
pub(crate) fn thinking_from_extensions(m: &Value) -> Vec<Thinking> {
    let text = s(m, "reasoning_content")
        .or_else(|| s(m, "reasoning"))
        .unwrap_or_default();
    let mut blocks: Vec<Thinking> = arr(m, "thinking_blocks")
        .iter()
        .filter_map(|tb| match s(tb, "type") {
            Some("redacted_thinking") => Some(Thinking {
                redacted: s(tb, "data").map(str::to_owned),
                ..Thinking::default()
            }),
            Some("thinking") | None => Some(Thinking {
                text: s(tb, "thinking").unwrap_or_default().to_owned(),
                signature: s(tb, "signature")
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned),
                redacted: None,
            }),
            Some(_) => None,
        })
        .collect();
    // OpenRouter's `reasoning_details`: text blocks with their signatures, encrypted blocks.
    if blocks.is_empty() {
        blocks = arr(m, "reasoning_details")
            .iter()
            .filter_map(|d| match s(d, "type") {
                Some("reasoning.encrypted") => Some(Thinking {
                    redacted: s(d, "data").map(str::to_owned),
                    ..Thinking::default()
                }),
                Some("reasoning.text" | "reasoning.summary") => Some(Thinking {
                    text: s(d, "text")
                        .or_else(|| s(d, "summary"))
                        .unwrap_or_default()
                        .to_owned(),
                    signature: s(d, "signature")
                        .filter(|x| !x.is_empty())
                        .map(str::to_owned),
                    redacted: None,
                }),
                _ => None,
            })
            .collect();
    }
    // A block that lost its text in a stream gets the accumulated `reasoning_content`.
    let textless: Vec<usize> = blocks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.text.is_empty() && t.redacted.is_none())
        .map(|(i, _)| i)
        .collect();
    if textless.len() == 1 && !text.is_empty() {
        blocks[textless[0]].text = text.to_owned();
    } else if blocks.is_empty() && !text.is_empty() {
        blocks.push(Thinking {
            text: text.to_owned(),
            ..Thinking::default()
        });
    }
    blocks
}

fn assistant_parts(m: &Value, i: usize) -> Result<Vec<Part>, Error> {
    let mut out: Vec<Part> = thinking_from_extensions(m)
        .into_iter()
        .map(Part::Thinking)
        .collect();
    match m.get("content") {
        Some(Value::String(t)) => out.push(Part::Text(t.clone())),
        Some(c @ Value::Array(_)) => out.extend(user_parts(c, i)?),
        _ => {}
    }
    if let Some(refusal) = s(m, "refusal") {
        out.push(Part::Refusal(refusal.to_owned()));
    }
    for (j, tc) in arr(m, "tool_calls").iter().enumerate() {
        let func = tc.get("function").unwrap_or(&Value::Null);
        let raw_id = s(tc, "id").unwrap_or_default();
        let (id, signature) = ids::unfold_signature(raw_id);
        let arguments = match func.get("arguments") {
            Some(Value::String(a)) => a.clone(),
            Some(v @ Value::Object(_)) => v.to_string(),
            _ => String::new(),
        };
        let name = s(func, "name").ok_or_else(|| {
            bad(
                &format!("messages[{i}].tool_calls[{j}].function.name"),
                "a tool call needs a function name",
            )
        })?;
        out.push(Part::ToolCall(ToolCall {
            id,
            name: name.to_owned(),
            arguments,
            signature,
        }));
    }
    Ok(out)
}

// ----------------------------------------------------------------------------------- request out

/// Writes a Chat Completions request.
pub(crate) fn encode_request(r: &CanonicalRequest, opts: &ConvertOptions) -> Result<Value, Error> {
    let dialect = opts.reasoning_dialect.resolve(&r.model);
    let mut messages = Vec::with_capacity(r.messages.len() + 1);
    if !r.system.is_empty() {
        messages.push(json!({"role": "system", "content": r.system.join("\n\n")}));
    }
    for (i, m) in r.messages.iter().enumerate() {
        match m.role {
            Role::User => encode_user(m, i, &mut messages)?,
            Role::Assistant => messages.push(encode_assistant(m, dialect)),
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), r.model.clone().into());
    body.insert("messages".into(), Value::Array(messages));
    if !r.tools.is_empty() {
        body.insert(
            "tools".into(),
            r.tools
                .iter()
                .map(|t| {
                    let mut func = Map::new();
                    func.insert("name".into(), t.name.clone().into());
                    put(&mut func, "description", t.description.clone());
                    put(&mut func, "parameters", t.parameters.clone());
                    put(&mut func, "strict", t.strict);
                    json!({"type": "function", "function": func})
                })
                .collect(),
        );
        if let Some(choice) = &r.tool_choice {
            body.insert("tool_choice".into(), encode_tool_choice(choice));
        }
        put(&mut body, "parallel_tool_calls", r.parallel_tool_calls);
    }
    if let Some(max) = r.max_tokens {
        let key = match opts.openai_max_tokens_field {
            OpenAiMaxTokens::MaxCompletionTokens => "max_completion_tokens",
            OpenAiMaxTokens::MaxTokens => "max_tokens",
        };
        body.insert(key.into(), max.into());
    }
    put(&mut body, "temperature", r.temperature.map(num));
    put(&mut body, "top_p", r.top_p.map(num));
    if r.top_k.is_some() {
        dropped("top_k", ME);
    }
    if !r.stop.is_empty() {
        let mut stop = r.stop.clone();
        if stop.len() > 4 {
            tracing::debug!("OpenAI accepts at most 4 stop sequences; dropping the rest");
            stop.truncate(4);
        }
        body.insert("stop".into(), json!(stop));
    }
    put(&mut body, "n", r.n);
    put(&mut body, "seed", r.seed);
    put(&mut body, "frequency_penalty", r.frequency_penalty.map(num));
    put(&mut body, "presence_penalty", r.presence_penalty.map(num));
    if let Some(reasoning) = &r.reasoning {
        if reasoning.enabled() {
            let effort = reasoning.effort_or_from_budget();
            put(
                &mut body,
                "reasoning_effort",
                effort.map(|e| if e == "max" { "xhigh".to_owned() } else { e }),
            );
        }
    }
    if let Some(rf) = &r.response_format {
        body.insert(
            "response_format".into(),
            match rf {
                ResponseFormat::Text => json!({"type": "text"}),
                ResponseFormat::JsonObject => json!({"type": "json_object"}),
                ResponseFormat::JsonSchema {
                    name,
                    schema,
                    strict,
                    description,
                } => {
                    let mut js = Map::new();
                    js.insert("name".into(), name.clone().into());
                    js.insert("schema".into(), schema.clone());
                    put(&mut js, "strict", *strict);
                    put(&mut js, "description", description.clone());
                    json!({"type": "json_schema", "json_schema": js})
                }
            },
        );
    }
    put(&mut body, "user", r.user.clone());
    if r.stream {
        body.insert("stream".into(), true.into());
        // Always ask for usage: the converter needs it for every other protocol and strips it
        // again for a Chat client that did not ask.
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(body))
}

/// [`encode_request`]'s body written straight to bytes, for a request of text turns only (no
/// tools, no media, no thinking or tool calls in the history, no response format: the usual
/// chat), without building the document. The members are written in the order serde_json's map
/// writes them (sorted by key), so the bytes are `serde_json::to_vec(&encode_request(r, opts)?)`'s
/// (checked on every request the crate's tests convert, see `crate::request`). `None` for any
/// other request: the caller encodes the document.
pub(crate) fn encode_request_bytes(r: &CanonicalRequest, opts: &ConvertOptions) -> Option<Vec<u8>> {
    let text_only = r
        .messages
        .iter()
        .all(|m| m.parts.iter().all(|p| matches!(p, Part::Text(_))));
    if !text_only || !r.tools.is_empty() || r.response_format.is_some() {
        return None;
    }
    // What `encode_request` logs, in the same order.
    if r.top_k.is_some() {
        dropped("top_k", ME);
    }
    if r.stop.len() > 4 {
        tracing::debug!("OpenAI accepts at most 4 stop sequences; dropping the rest");
    }
    serde_json::to_vec(&TextRequest { r, opts }).ok()
}

/// See [`encode_request_bytes`].
struct TextRequest<'a> {
    r: &'a CanonicalRequest,
    opts: &'a ConvertOptions,
}

impl serde::Serialize for TextRequest<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.r;
        let mut m = ser.serialize_map(None)?;
        if let Some(x) = r.frequency_penalty {
            m.serialize_entry("frequency_penalty", &num(x))?;
        }
        if let Some(max) = r.max_tokens {
            let key = match self.opts.openai_max_tokens_field {
                OpenAiMaxTokens::MaxCompletionTokens => "max_completion_tokens",
                OpenAiMaxTokens::MaxTokens => "max_tokens",
            };
            m.serialize_entry(key, &max)?;
        }
        m.serialize_entry("messages", &TextMessages(r))?;
        m.serialize_entry("model", &r.model)?;
        if let Some(n) = r.n {
            m.serialize_entry("n", &n)?;
        }
        if let Some(x) = r.presence_penalty {
            m.serialize_entry("presence_penalty", &num(x))?;
        }
        let effort = r
            .reasoning
            .as_ref()
            .filter(|reasoning| reasoning.enabled())
            .and_then(|reasoning| reasoning.effort_or_from_budget());
        if let Some(e) = effort {
            m.serialize_entry("reasoning_effort", if e == "max" { "xhigh" } else { &e })?;
        }
        if let Some(seed) = r.seed {
            m.serialize_entry("seed", &seed)?;
        }
        if !r.stop.is_empty() {
            m.serialize_entry("stop", &r.stop[..r.stop.len().min(4)])?;
        }
        if r.stream {
            m.serialize_entry("stream", &true)?;
            m.serialize_entry("stream_options", &IncludeUsage)?;
        }
        if let Some(x) = r.temperature {
            m.serialize_entry("temperature", &num(x))?;
        }
        if let Some(x) = r.top_p {
            m.serialize_entry("top_p", &num(x))?;
        }
        if let Some(user) = &r.user {
            m.serialize_entry("user", user)?;
        }
        m.end()
    }
}

/// `{"include_usage": true}`.
struct IncludeUsage;

impl serde::Serialize for IncludeUsage {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = ser.serialize_map(Some(1))?;
        m.serialize_entry("include_usage", &true)?;
        m.end()
    }
}

/// The messages of a text-only request: the system message, then each turn (a user turn
/// without parts is left out, as `encode_user` does).
struct TextMessages<'a>(&'a CanonicalRequest);

impl serde::Serialize for TextMessages<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        /// `[{"text": …, "type": "text"}, …]`, or `null` for none.
        struct Parts<'a>(&'a [Part]);
        impl serde::Serialize for Parts<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                if self.0.is_empty() {
                    return ser.serialize_unit();
                }
                let mut seq = ser.serialize_seq(Some(self.0.len()))?;
                for p in self.0 {
                    if let Part::Text(t) = p {
                        seq.serialize_element(&TextPart(t))?;
                    }
                }
                seq.end()
            }
        }
        struct TextPart<'a>(&'a str);
        impl serde::Serialize for TextPart<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let mut m = ser.serialize_map(Some(2))?;
                m.serialize_entry("text", self.0)?;
                m.serialize_entry("type", "text")?;
                m.end()
            }
        }
        struct System(String);
        impl serde::Serialize for System {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let mut m = ser.serialize_map(Some(2))?;
                m.serialize_entry("content", &self.0)?;
                m.serialize_entry("role", "system")?;
                m.end()
            }
        }
        struct Turn<'a>(&'static str, Parts<'a>);
        impl serde::Serialize for Turn<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let mut m = ser.serialize_map(Some(2))?;
                m.serialize_entry("content", &self.1)?;
                m.serialize_entry("role", self.0)?;
                m.end()
            }
        }
        let r = self.0;
        let mut seq = ser.serialize_seq(None)?;
        if !r.system.is_empty() {
            seq.serialize_element(&System(r.system.join("\n\n")))?;
        }
        for msg in &r.messages {
            match msg.role {
                Role::User if msg.parts.is_empty() => {}
                Role::User => seq.serialize_element(&Turn("user", Parts(&msg.parts)))?,
                Role::Assistant => seq.serialize_element(&Turn("assistant", Parts(&msg.parts)))?,
            }
        }
        seq.end()
    }
}

fn encode_tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
        ToolChoice::Allowed { required, names } => json!({
            "type": "allowed_tools",
            "allowed_tools": {
                "mode": if *required { "required" } else { "auto" },
                "tools": names.iter().map(|n| json!({"type": "function", "function": {"name": n}})).collect::<Vec<_>>(),
            }
        }),
    }
}

fn content_part(p: &Part, i: usize) -> Result<Option<Value>, Error> {
    Ok(Some(match p {
        Part::Text(t) => json!({"type": "text", "text": t}),
        Part::Image(media) => json!({"type": "image_url", "image_url": {"url": media_url(media)}}),
        Part::Document { media, name } => match media {
            Media::Base64 { media_type, data } => {
                let mut file = Map::new();
                file.insert("file_data".into(), data_uri(media_type, data).into());
                put(&mut file, "filename", name.clone());
                json!({"type": "file", "file": file})
            }
            Media::Url { url, .. } => {
                return Err(unsupported(
                    &format!("messages[{i}]"),
                    format!(
                        "a document by URL ({url}) cannot be sent to an OpenAI Chat upstream; send its bytes"
                    ),
                ));
            }
        },
        Part::Audio { data, format } => {
            json!({"type": "input_audio", "input_audio": {"data": data, "format": format}})
        }
        Part::Refusal(t) => json!({"type": "text", "text": t}),
        Part::Thinking(_) | Part::ToolCall(_) | Part::ToolResult(_) => return Ok(None),
    }))
}

fn encode_user(m: &Message, i: usize, out: &mut Vec<Value>) -> Result<(), Error> {
    let mut rest = Vec::new();
    // Images inside tool results: Chat tool messages are text-only, so they follow in a user turn.
    let mut images = Vec::new();
    for p in &m.parts {
        match p {
            Part::ToolResult(r) => {
                let mut content = Vec::new();
                for c in &r.content {
                    match c {
                        Part::Text(t) => content.push(json!({"type": "text", "text": t})),
                        other => {
                            if let Some(v) = content_part(other, i)? {
                                images.push(v);
                            }
                        }
                    }
                }
                if r.is_error {
                    content.insert(0, json!({"type": "text", "text": "Error:"}));
                }
                if content.is_empty() {
                    content.push(json!({"type": "text", "text": ""}));
                }
                out.push(json!({"role": "tool", "tool_call_id": r.id, "content": content}));
            }
            other => {
                if let Some(v) = content_part(other, i)? {
                    rest.push(v);
                }
            }
        }
    }
    images.extend(rest);
    if !images.is_empty() {
        out.push(json!({"role": "user", "content": images}));
    }
    Ok(())
}

fn encode_assistant(m: &Message, dialect: ReasoningDialect) -> Value {
    let mut content = Vec::new();
    let mut tool_calls = Vec::new();
    let mut reasoning = String::new();
    let mut blocks = Vec::new();
    let mut refusal: Option<String> = None;
    for p in &m.parts {
        match p {
            Part::Text(t) => content.push(json!({"type": "text", "text": t})),
            Part::Refusal(t) => refusal = Some(t.clone()),
            Part::Thinking(t) => {
                reasoning.push_str(&t.text);
                blocks.extend(thinking_block(t));
            }
            Part::ToolCall(c) => tool_calls.push(tool_call_json(c)),
            _ => {}
        }
    }
    let mut msg = Map::new();
    msg.insert("role".into(), "assistant".into());
    msg.insert(
        "content".into(),
        if content.is_empty() {
            Value::Null
        } else {
            Value::Array(content)
        },
    );
    put(&mut msg, "refusal", refusal);
    let calls_tools = !tool_calls.is_empty();
    if calls_tools {
        msg.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    write_reasoning(&mut msg, dialect, reasoning, blocks, calls_tools);
    Value::Object(msg)
}

/// Writes an assistant message's reasoning the way `dialect` wants it back (see
/// [`ReasoningDialect`]); `blocks` are LiteLLM's `thinking_blocks` of the message.
fn write_reasoning(
    msg: &mut Map<String, Value>,
    dialect: ReasoningDialect,
    text: String,
    blocks: Vec<Value>,
    calls_tools: bool,
) {
    match dialect {
        ReasoningDialect::DeepSeek => {
            if calls_tools {
                msg.insert("reasoning_content".into(), text.into());
            }
        }
        ReasoningDialect::Kimi => {
            if calls_tools && text.trim().is_empty() {
                // Kimi refuses a tool-call turn without reasoning; a history from another
                // protocol may have none.
                msg.insert("reasoning_content".into(), KIMI_PLACEHOLDER.into());
            } else if !text.is_empty() {
                msg.insert("reasoning_content".into(), text.into());
            }
        }
        ReasoningDialect::Vllm => {
            if !text.is_empty() {
                msg.insert("reasoning".into(), text.into());
            }
        }
        ReasoningDialect::OpenRouter => {
            if !text.is_empty() {
                msg.insert("reasoning".into(), text.into());
            }
            let details: Vec<Value> = blocks
                .iter()
                .filter_map(|b| match s(b, "type") {
                    Some("redacted_thinking") => {
                        Some(json!({"type": "reasoning.encrypted", "data": s(b, "data")?}))
                    }
                    _ => Some(json!({"type": "reasoning.text", "text": s(b, "thinking").unwrap_or_default(),
                        "signature": s(b, "signature")?})),
                })
                .collect();
            if !details.is_empty() {
                msg.insert("reasoning_details".into(), Value::Array(details));
            }
        }
        ReasoningDialect::None => {}
        _ => {
            if !text.is_empty() {
                msg.insert("reasoning_content".into(), text.into());
            }
            if !blocks.is_empty() {
                msg.insert("thinking_blocks".into(), Value::Array(blocks));
            }
        }
    }
}

/// The reasoning sent to Kimi on a tool-call turn that has none (it refuses an empty one).
const KIMI_PLACEHOLDER: &str = ".";

// ----------------------------------------------------------------------------------- response in

/// `finish_reason` → stop reason.
pub(crate) fn stop_from(reason: &str) -> Option<StopReason> {
    Some(match reason {
        "stop" => StopReason::EndTurn,
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "content_filter" => StopReason::ContentFilter,
        "" => return None,
        // Anthropic reasons leaking through OpenAI-compatible proxies.
        "end_turn" => StopReason::EndTurn,
        "max_tokens" => StopReason::MaxTokens,
        "tool_use" => StopReason::ToolUse,
        _ => StopReason::EndTurn,
    })
}

/// Stop reason → `finish_reason`.
pub(crate) fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn | StopReason::StopSequence => "stop",
        StopReason::MaxTokens => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::ContentFilter => "content_filter",
    }
}

/// Reads a `chat.completion` body.
pub(crate) fn decode_response(v: &Value) -> Result<CanonicalResponse, Error> {
    let choice = arr(v, "choices").first().unwrap_or(&Value::Null);
    let msg = choice.get("message").unwrap_or(&Value::Null);
    Ok(answer(AnswerFields {
        id: s(v, "id"),
        model: s(v, "model"),
        created: v.get("created"),
        thinking: thinking_from_extensions(msg),
        content: msg.get("content"),
        refusal: s(msg, "refusal"),
        tool_calls: arr(msg, "tool_calls"),
        finish_reason: s(choice, "finish_reason"),
        usage: v.get("usage").and_then(Usage::from_openai_chat),
    }))
}

/// What [`decode_response`] reads of a `chat.completion` answer, however it was parsed: the
/// document tree, or [`decode_response_bytes`]'s typed structs.
struct AnswerFields<'a> {
    id: Option<&'a str>,
    model: Option<&'a str>,
    created: Option<&'a Value>,
    /// From the first choice's message.
    thinking: Vec<Thinking>,
    content: Option<&'a Value>,
    refusal: Option<&'a str>,
    tool_calls: &'a [Value],
    /// The first choice's.
    finish_reason: Option<&'a str>,
    usage: Option<Usage>,
}

fn answer(a: AnswerFields<'_>) -> CanonicalResponse {
    let mut parts: Vec<Part> = a.thinking.into_iter().map(Part::Thinking).collect();
    match a.content {
        Some(Value::String(t)) if !t.is_empty() => parts.push(Part::Text(t.clone())),
        Some(c @ Value::Array(_)) => {
            let t = content_text(c);
            if !t.is_empty() {
                parts.push(Part::Text(t));
            }
        }
        _ => {}
    }
    if let Some(r) = a.refusal.filter(|r| !r.is_empty()) {
        parts.push(Part::Refusal(r.to_owned()));
    }
    for tc in a.tool_calls {
        let func = tc.get("function").unwrap_or(&Value::Null);
        let (id, signature) = ids::unfold_signature(s(tc, "id").unwrap_or_default());
        parts.push(Part::ToolCall(ToolCall {
            id,
            name: s(func, "name").unwrap_or_default().to_owned(),
            arguments: match func.get("arguments") {
                Some(Value::String(a)) => a.clone(),
                Some(o @ Value::Object(_)) => o.to_string(),
                _ => String::new(),
            },
            signature,
        }));
    }
    let refused = parts.iter().any(|p| matches!(p, Part::Refusal(_)));
    CanonicalResponse {
        id: a.id.unwrap_or_default().to_owned(),
        model: a.model.unwrap_or_default().to_owned(),
        created: a.created.and_then(as_u64),
        parts,
        stop: refusal_stop(a.finish_reason.and_then(stop_from), refused),
        stop_sequence: None,
        usage: a.usage,
    }
}

/// A `chat.completion` answer read straight from its bytes into the members [`decode_response`]
/// reads (every other member is skipped unbuilt), without a document tree. The members whose
/// shape varies stay [`Value`]s and go through the same code as the tree's.
#[derive(Deserialize)]
struct TypedAnswer<'a> {
    #[serde(borrow, default, deserialize_with = "util::borrowed_str")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "util::borrowed_str")]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    created: Option<Value>,
    /// Required: an answer without `choices` takes the tree's path, which refuses it.
    #[serde(borrow)]
    choices: Vec<TypedChoice<'a>>,
    /// Read as `Usage::from_openai_chat` reads it (the same type), so a `usage` it refuses (a
    /// member of another type) fails the typed read and takes the document's path.
    #[serde(default)]
    usage: Option<octo_core::usage::ChatUsage>,
}

#[derive(Deserialize)]
struct TypedChoice<'a> {
    #[serde(borrow, default)]
    message: Option<TypedMessage<'a>>,
    #[serde(borrow, default, deserialize_with = "util::borrowed_str")]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct TypedMessage<'a> {
    #[serde(default)]
    content: Option<Value>,
    #[serde(borrow, default, deserialize_with = "util::borrowed_str")]
    refusal: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
    // What [`thinking_from_extensions`] reads.
    #[serde(default)]
    reasoning_content: Option<Value>,
    #[serde(default)]
    reasoning: Option<Value>,
    #[serde(default)]
    thinking_blocks: Option<Value>,
    #[serde(default)]
    reasoning_details: Option<Value>,
}

impl TypedMessage<'_> {
    /// The reasoning extensions as the object [`thinking_from_extensions`] reads (`null`
    /// members left out: it reads them as absent).
    fn thinking(&mut self) -> Vec<Thinking> {
        let members = [
            ("reasoning_content", self.reasoning_content.take()),
            ("reasoning", self.reasoning.take()),
            ("thinking_blocks", self.thinking_blocks.take()),
            ("reasoning_details", self.reasoning_details.take()),
        ];
        if members.iter().all(|(_, v)| v.is_none()) {
            return Vec::new();
        }
        let m: Map<String, Value> = members
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect();
        thinking_from_extensions(&Value::Object(m))
    }
}

/// [`decode_response`] of an answer's bytes, reading them once into typed structs instead of a
/// document tree (the answer to every converted non-streaming request comes this way). `None`
/// when the bytes are not an answer of the usual shape (not JSON, not UTF-8, no `choices`, a
/// member of an unexpected type, a duplicate member): the caller then takes the tree's path,
/// which answers exactly as before for those. When it returns an answer, it is the one
/// [`decode_response`] returns for the same bytes.
pub(crate) fn decode_response_bytes(body: &[u8]) -> Option<CanonicalResponse> {
    // The tree's parse refuses invalid UTF-8 anywhere in a string; skipped members are not
    // checked by serde, so check the whole body first.
    std::str::from_utf8(body).ok()?;
    let a: TypedAnswer<'_> = serde_json::from_slice(body).ok()?;
    let mut choices = a.choices;
    let mut first = choices.drain(..).next();
    let mut msg = first.as_mut().and_then(|c| c.message.take());
    let thinking = msg.as_mut().map(TypedMessage::thinking).unwrap_or_default();
    let msg = msg.as_ref();
    Some(answer(AnswerFields {
        id: a.id.as_deref(),
        model: a.model.as_deref(),
        created: a.created.as_ref(),
        thinking,
        content: msg.and_then(|m| m.content.as_ref()),
        refusal: msg.and_then(|m| m.refusal.as_deref()),
        tool_calls: msg.and_then(|m| m.tool_calls.as_deref()).unwrap_or(&[]),
        finish_reason: first.as_ref().and_then(|c| c.finish_reason.as_deref()),
        usage: a.usage.map(Usage::from),
    }))
}

// ---------------------------------------------------------------------------------- response out

/// Writes a `chat.completion` body.
pub(crate) fn encode_response(r: &CanonicalResponse, created: u64) -> Value {
    let mut text = String::new();
    let mut refusal: Option<String> = None;
    let mut tool_calls = Vec::new();
    let mut reasoning = String::new();
    let mut blocks = Vec::new();
    for p in &r.parts {
        match p {
            Part::Text(t) => text.push_str(t),
            Part::Refusal(t) => refusal.get_or_insert_with(String::new).push_str(t),
            Part::Thinking(t) => {
                reasoning.push_str(&t.text);
                blocks.extend(thinking_block(t));
            }
            Part::ToolCall(c) => tool_calls.push(tool_call_json(c)),
            _ => {}
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    message.insert(
        "content".into(),
        if text.is_empty() && (!tool_calls.is_empty() || refusal.is_some()) {
            Value::Null
        } else {
            text.into()
        },
    );
    put(&mut message, "refusal", refusal);
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), reasoning.into());
    }
    if !blocks.is_empty() {
        message.insert("thinking_blocks".into(), Value::Array(blocks));
    }
    let mut out = json!({
        "id": r.id,
        "object": "chat.completion",
        "created": r.created.unwrap_or(created),
        "model": r.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(r.effective_stop()),
        }],
    });
    out["usage"] = r.usage.unwrap_or_default().to_openai_chat();
    out
}

/// The `thinking_blocks` entry that carries a reasoning part's signature (or its redacted data)
/// back to an upstream that checks it; `None` for reasoning without either.
fn thinking_block(t: &Thinking) -> Option<Value> {
    if let Some(data) = &t.redacted {
        Some(json!({"type": "redacted_thinking", "data": data}))
    } else {
        t.signature
            .as_ref()
            .map(|sig| json!({"type": "thinking", "thinking": t.text, "signature": sig}))
    }
}

/// An assistant tool call in Chat's `tool_calls` shape, its signature folded into the id.
fn tool_call_json(c: &ToolCall) -> Value {
    json!({
        "id": ids::fold_signature(&c.id, c.signature.as_deref()),
        "type": "function",
        "function": {"name": c.name, "arguments": c.arguments_json()},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_request_written_as_bytes_is_the_document_serialised() {
        let text = |role, texts: &[&str]| Message {
            role,
            parts: texts.iter().map(|t| Part::Text((*t).to_owned())).collect(),
        };
        let base = CanonicalRequest {
            model: "m\u{e9}".into(),
            messages: vec![
                text(Role::User, &["Hi \"you\"\n", "second"]),
                text(Role::Assistant, &["ok"]),
                text(Role::Assistant, &[]),
                text(Role::User, &[]),
                text(Role::User, &["\u{1f600}"]),
            ],
            ..CanonicalRequest::default()
        };
        let reasoning = |effort: Option<&str>, budget: Option<u64>, disabled| ReasoningConfig {
            effort: effort.map(str::to_owned),
            budget_tokens: budget,
            disabled,
            ..ReasoningConfig::default()
        };
        let variants: Vec<CanonicalRequest> = vec![
            base.clone(),
            CanonicalRequest {
                messages: vec![],
                ..base.clone()
            },
            CanonicalRequest {
                system: vec!["a".into(), "b".into()],
                max_tokens: Some(64),
                temperature: Some(0.7),
                top_p: Some(f64::NAN),
                top_k: Some(3),
                stop: (0..6).map(|i| format!("s{i}")).collect(),
                stream: true,
                n: Some(1),
                seed: Some(-5),
                frequency_penalty: Some(1e-7),
                presence_penalty: Some(2.0),
                reasoning: Some(reasoning(Some("max"), None, false)),
                user: Some("u".into()),
                ..base.clone()
            },
            CanonicalRequest {
                stop: vec!["x".into()],
                reasoning: Some(reasoning(None, Some(2048), false)),
                ..base.clone()
            },
            CanonicalRequest {
                reasoning: Some(reasoning(Some("high"), None, true)),
                ..base.clone()
            },
            CanonicalRequest {
                reasoning: Some(reasoning(Some("none"), None, false)),
                ..base.clone()
            },
        ];
        for opts in [
            ConvertOptions::default(),
            ConvertOptions::default().with_openai_max_tokens_field(OpenAiMaxTokens::MaxTokens),
        ] {
            for r in &variants {
                let bytes = encode_request_bytes(r, &opts).expect("a text request");
                let tree = encode_request(r, &opts).unwrap();
                assert_eq!(String::from_utf8(bytes).unwrap(), tree.to_string(), "{r:?}");
            }
        }
        // Anything else is left to the document's encoder.
        let tool = CanonicalRequest {
            tools: vec![Tool {
                name: "f".into(),
                description: None,
                parameters: None,
                strict: None,
                origin: None,
            }],
            ..base.clone()
        };
        let image = CanonicalRequest {
            messages: vec![Message {
                role: Role::User,
                parts: vec![Part::Image(Media::Url {
                    url: "https://x/y.png".into(),
                    media_type: None,
                })],
            }],
            ..base.clone()
        };
        let format = CanonicalRequest {
            response_format: Some(ResponseFormat::JsonObject),
            ..base
        };
        for r in [tool, image, format] {
            assert!(encode_request_bytes(&r, &ConvertOptions::default()).is_none());
        }
    }

    #[test]
    fn an_answer_read_from_bytes_is_the_answer_read_from_the_document() {
        let usual = [
            r#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":1},"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"fp"}"#,
            r#"{"id":"c\u0031","choices":[{"message":{"content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},{"id":"call_2","function":{"name":"g","arguments":{"b":2}}}]},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"reasoning_content":"think","thinking_blocks":[{"type":"thinking","thinking":"","signature":"sig"}]},"finish_reason":"length"}],"usage":null,"created":null}"#,
            r#"{"choices":[{"message":{"content":"","refusal":"no","reasoning":"r","reasoning_details":[{"type":"reasoning.encrypted","data":"x"}]},"finish_reason":"content_filter"}]}"#,
            r#"{"choices":[{"message":{"reasoning_content":5,"thinking_blocks":{"not":"an array"}}}]}"#,
            r#"{"choices":[{"message":null,"finish_reason":null},{"message":{"content":"second"}}]}"#,
            r#"{"choices":[]}"#,
            r#"{"choices":[],"created":1.5,"usage":{"prompt_tokens":10,"completion_tokens":null,"prompt_tokens_details":{"cached_tokens":3,"cache_creation_tokens":2},"completion_tokens_details":{"reasoning_tokens":1,"audio_tokens":0}}}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":3,"cache_write_tokens":4,"cache_creation_tokens":2}}}"#,
            r#"{"choices":[],"usage":[5,6]}"#,
            r#"{"choices":[],"usage":{}}"#,
        ];
        let unusual = [
            &br#"{"choices":null}"#[..],
            br#"{"id":"a"}"#,
            br#"{"id":5,"choices":[]}"#,
            br#"{"choices":[{"finish_reason":1}]}"#,
            br#"{"choices":[{"message":"x"}]}"#,
            br#"{"choices":[{"message":{"refusal":true}}]}"#,
            br#"{"choices":[{"message":{"tool_calls":{}}}]}"#,
            br#"{"choices":[null]}"#,
            br#"{"choices":[],"choices":[]}"#,
            br#"{"choices":[],"x":"\xff"}"#,
            b"{\"choices\":[],\"x\":\"\xff\"}",
            br#"{"choices":[]"#,
            br#"{"choices":[],"usage":{"prompt_tokens":"x"}}"#,
            br#"{"choices":[],"usage":{"prompt_tokens":1.0}}"#,
            br#"{"choices":[],"usage":{"prompt_tokens":-1}}"#,
            br#"{"choices":[],"usage":5}"#,
            br#"{"choices":[],"usage":{"prompt_tokens":1,"prompt_tokens":2}}"#,
            br#"[]"#,
        ];
        for body in usual {
            let v: Value = serde_json::from_str(body).unwrap();
            let fast = decode_response_bytes(body.as_bytes());
            assert!(fast.is_some(), "{body}");
            assert_eq!(fast, decode_response(&v).ok(), "{body}");
        }
        for body in unusual {
            let fast = decode_response_bytes(body);
            if let Ok(v) = serde_json::from_slice::<Value>(body) {
                assert!(
                    fast.is_none() || fast == decode_response(&v).ok(),
                    "{}",
                    String::from_utf8_lossy(body)
                );
            }
            assert!(fast.is_none(), "{}", String::from_utf8_lossy(body));
        }
    }

    fn decode_request(body: &Value) -> Result<CanonicalRequest, Error> {
        crate::testing::decode(Protocol::OpenAiChat, body, &RouteParams::default())
    }

    #[test]
    fn legacy_functions_and_unknown_roles_are_refused() {
        let e =
            decode_request(&json!({"model": "m", "messages": [], "functions": []})).unwrap_err();
        assert_eq!(e.param(), Some("functions"));
        let e =
            decode_request(&json!({"messages": [{"role": "robot", "content": "x"}]})).unwrap_err();
        assert_eq!(e.param(), Some("messages[0].role"));
        let e = decode_request(&json!({"model": "m"})).unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
    }

    #[test]
    fn thinking_blocks_take_the_streamed_text() {
        let t = thinking_from_extensions(&json!({
            "reasoning_content": "hmm",
            "thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "SIG"}]
        }));
        assert_eq!(
            t,
            vec![Thinking {
                text: "hmm".into(),
                signature: Some("SIG".into()),
                redacted: None
            }]
        );
    }
}
