//! Anthropic Messages: request and response codecs.

use serde_json::{Map, Value, json};

use octo_core::{Error, Protocol, RouteParams};

use crate::canonical::{
    CanonicalRequest, CanonicalResponse, Media, Message, Part, ReasoningConfig, ResponseFormat,
    Role, StopReason, Thinking, Tool, ToolCall, ToolChoice, ToolResult, Usage,
};
use crate::codec::{ClientSide, Codec};
use crate::ids;
use crate::media::{normalize_media_type, sniff_image};
use crate::options::ConvertOptions;
use crate::stream::{Decoder, Encoder};
use crate::util::{
    At, args_object, arr, as_u64, b, bad, dropped, f, num, put, s, strings, u, unsupported,
};

const ME: Protocol = Protocol::Anthropic;

/// Claude Code prepends a per-request billing system block; it never matters to another upstream and
/// would defeat prompt caching there.
const BILLING_HEADER: &str = "x-anthropic-billing-header:";

/// The Anthropic Messages codec.
pub(crate) struct Anthropic;

impl Codec for Anthropic {
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

    fn decode_response(&self, body: &Value) -> Result<CanonicalResponse, Error> {
        decode_response(body)
    }

    fn encode_response(&self, r: &CanonicalResponse, _client: &ClientSide) -> Value {
        encode_response(r)
    }

    fn encode_response_bytes(&self, r: &CanonicalResponse, _client: &ClientSide) -> Vec<u8> {
        encode_response_bytes(r)
    }

    fn stream_decoder(&self) -> Box<dyn Decoder> {
        Box::<crate::anthropic_stream::AnthropicDecoder>::default()
    }

    fn stream_encoder(&self, client: &ClientSide) -> Box<dyn Encoder> {
        Box::new(crate::anthropic_stream::AnthropicEncoder::new(
            &client.model,
        ))
    }
}

// ------------------------------------------------------------------------------------ request in

/// Reads a Messages request.
pub(crate) fn decode_request(
    body: &Value,
    mut r: CanonicalRequest,
) -> Result<CanonicalRequest, Error> {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Err(bad("messages", "`messages` must be an array"));
    };
    push_system(&mut r.system, body.get("system"));
    for (i, m) in messages.iter().enumerate() {
        let role = match s(m, "role") {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("system") => {
                push_system(&mut r.system, m.get("content"));
                continue;
            }
            other => {
                return Err(bad(
                    &format!("messages.{i}.role"),
                    format!("unknown message role `{}`", other.unwrap_or("")),
                ));
            }
        };
        let parts = match m.get("content") {
            Some(Value::String(t)) => vec![Part::Text(t.clone())],
            Some(Value::Array(blocks)) => {
                let mut parts = Vec::with_capacity(blocks.len());
                for (j, block) in blocks.iter().enumerate() {
                    if let Some(p) = decode_block(block, &format!("messages.{i}.content.{j}"))? {
                        parts.push(p);
                    }
                }
                parts
            }
            _ => {
                return Err(bad(
                    &format!("messages.{i}.content"),
                    "content must be a string or an array of blocks",
                ));
            }
        };
        r.messages.push(Message { role, parts });
    }
    for t in arr(body, "tools") {
        match s(t, "type") {
            None | Some("custom") => {
                let Some(name) = s(t, "name") else {
                    return Err(bad("tools", "a tool needs a `name`"));
                };
                r.tools.push(Tool {
                    name: name.to_owned(),
                    description: s(t, "description").map(str::to_owned),
                    parameters: t.get("input_schema").filter(|p| p.is_object()).cloned(),
                    strict: b(t, "strict").filter(|strict| *strict),
                    origin: None,
                });
            }
            Some(other) => tracing::debug!(tool_type = other, "dropping an Anthropic server tool"),
        }
    }
    if let Some(tc) = body.get("tool_choice").filter(|v| v.is_object()) {
        r.tool_choice = match s(tc, "type") {
            Some("auto") => Some(ToolChoice::Auto),
            Some("any") => Some(ToolChoice::Required),
            Some("none") => Some(ToolChoice::None),
            Some("tool") => s(tc, "name").map(|n| ToolChoice::Tool(n.to_owned())),
            _ => None,
        };
        if b(tc, "disable_parallel_tool_use") == Some(true) {
            r.parallel_tool_calls = Some(false);
        }
    }
    r.max_tokens = u(body, "max_tokens");
    r.temperature = f(body, "temperature");
    r.top_p = f(body, "top_p");
    r.top_k = u(body, "top_k");
    r.stop = strings(body.get("stop_sequences"));
    let effort = body
        .at("output_config", "effort")
        .and_then(Value::as_str)
        .map(str::to_owned);
    r.reasoning = match body.get("thinking").and_then(|t| s(t, "type")) {
        Some("enabled") => Some(ReasoningConfig {
            budget_tokens: body.at("thinking", "budget_tokens").and_then(as_u64),
            effort,
            include_thoughts: true,
            disabled: false,
        }),
        Some("adaptive") => Some(ReasoningConfig {
            effort: effort.or_else(|| Some("medium".to_owned())),
            include_thoughts: true,
            ..ReasoningConfig::default()
        }),
        Some("disabled") => Some(ReasoningConfig {
            disabled: true,
            ..ReasoningConfig::default()
        }),
        _ => effort.map(|e| ReasoningConfig {
            effort: Some(e),
            ..ReasoningConfig::default()
        }),
    };
    // `output_config.format`, or the beta's `output_format` (`structured-outputs-2025-11-13`).
    if let Some(format) = body
        .at("output_config", "format")
        .or_else(|| body.get("output_format"))
    {
        if s(format, "type") == Some("json_schema") {
            r.response_format = Some(ResponseFormat::JsonSchema {
                name: "response".to_owned(),
                schema: format.get("schema").cloned().unwrap_or_else(|| json!({})),
                strict: None,
                description: None,
            });
        }
    }
    r.user = body
        .at("metadata", "user_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(r)
}

fn push_system(system: &mut Vec<String>, v: Option<&Value>) {
    let mut push = |t: &str| {
        if t.starts_with(BILLING_HEADER) {
            tracing::debug!("dropping Claude Code's billing system block");
        } else if !t.is_empty() {
            system.push(t.to_owned());
        }
    };
    match v {
        Some(Value::String(t)) => push(t),
        Some(Value::Array(blocks)) => {
            for block in blocks {
                if let Some(t) = s(block, "text") {
                    push(t);
                }
            }
        }
        _ => {}
    }
}

fn decode_source(source: &Value, param: &str) -> Result<Media, Error> {
    match s(source, "type") {
        Some("base64") => Ok(Media::Base64 {
            media_type: normalize_media_type(s(source, "media_type").unwrap_or_default()),
            data: s(source, "data").unwrap_or_default().to_owned(),
        }),
        Some("url") => Ok(Media::Url {
            url: s(source, "url").unwrap_or_default().to_owned(),
            media_type: None,
        }),
        Some("text") => Ok(Media::Base64 {
            media_type: "text/plain".to_owned(),
            data: ids::base64_encode(s(source, "data").unwrap_or_default().as_bytes(), false),
        }),
        Some("file") => Err(unsupported(
            param,
            "file ids refer to Anthropic's file store and cannot be converted; send the bytes",
        )),
        other => Err(bad(
            param,
            format!("unknown source type `{}`", other.unwrap_or("")),
        )),
    }
}

fn decode_block(block: &Value, param: &str) -> Result<Option<Part>, Error> {
    Ok(Some(match s(block, "type") {
        Some("text") => Part::Text(s(block, "text").unwrap_or_default().to_owned()),
        Some("image") => Part::Image(decode_source(
            block.get("source").unwrap_or(&Value::Null),
            param,
        )?),
        Some("document") => {
            let source = block.get("source").unwrap_or(&Value::Null);
            if s(source, "type") == Some("content") {
                // A document made of blocks: keep its text.
                let text: Vec<&str> = arr(source, "content")
                    .iter()
                    .filter_map(|c| s(c, "text"))
                    .collect();
                Part::Text(text.join("\n"))
            } else {
                Part::Document {
                    media: decode_source(source, param)?,
                    name: s(block, "title").map(str::to_owned),
                }
            }
        }
        Some("tool_use") => {
            let (id, signature) = ids::unfold_signature(s(block, "id").unwrap_or_default());
            Part::ToolCall(ToolCall {
                id,
                name: s(block, "name").unwrap_or_default().to_owned(),
                arguments: block
                    .get("input")
                    .map_or_else(|| "{}".to_owned(), Value::to_string),
                signature,
            })
        }
        Some("tool_result") => {
            let content = match block.get("content") {
                Some(Value::String(t)) => vec![Part::Text(t.clone())],
                Some(Value::Array(items)) => {
                    let mut parts = Vec::new();
                    for item in items {
                        if let Some(p) = decode_block(item, param)? {
                            parts.push(p);
                        }
                    }
                    parts
                }
                _ => Vec::new(),
            };
            let (id, _) = ids::unfold_signature(s(block, "tool_use_id").unwrap_or_default());
            Part::ToolResult(ToolResult {
                id,
                name: None,
                content,
                is_error: b(block, "is_error").unwrap_or(false),
            })
        }
        Some("thinking") => Part::Thinking(Thinking {
            text: s(block, "thinking").unwrap_or_default().to_owned(),
            signature: s(block, "signature")
                .filter(|x| !x.is_empty())
                .map(str::to_owned),
            redacted: None,
        }),
        Some("redacted_thinking") => Part::Thinking(Thinking {
            redacted: Some(s(block, "data").unwrap_or_default().to_owned()),
            ..Thinking::default()
        }),
        other => {
            tracing::debug!(
                block = other.unwrap_or(""),
                "dropping an Anthropic block other protocols cannot express"
            );
            return Ok(None);
        }
    }))
}

// ----------------------------------------------------------------------------------- request out

/// Anthropic's structured outputs accept objects only with `additionalProperties: false`: every
/// object schema that does not say otherwise gets it (OpenAI's strict schemas already have it).
fn closed_objects(schema: &mut Value) {
    match schema {
        Value::Object(o) => {
            let is_object = o.get("type").and_then(Value::as_str) == Some("object")
                || o.contains_key("properties");
            if is_object && !o.contains_key("additionalProperties") {
                o.insert("additionalProperties".into(), false.into());
            }
            for v in o.values_mut() {
                closed_objects(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(closed_objects),
        _ => {}
    }
}

/// Whether the request continues a tool loop whose assistant turn Anthropic could not accept with
/// thinking on: with thinking enabled, the final assistant message, when it calls tools answered
/// by the turn after it, must start with a `thinking` or `redacted_thinking` block, and only a
/// signed (or redacted) block can be sent. A Chat client has no such blocks, so its
/// `reasoning_effort` would make the request one Anthropic refuses; thinking is dropped instead
/// (`docs/conversion.md`, "Histories one side cannot express").
pub(crate) fn tool_turn_lacks_thinking(r: &CanonicalRequest) -> bool {
    let Some(pos) = r.messages.iter().rposition(|m| m.role == Role::Assistant) else {
        return false;
    };
    let last = &r.messages[pos];
    let calls = last.parts.iter().any(|p| matches!(p, Part::ToolCall(_)));
    let answered = r.messages[pos + 1..]
        .iter()
        .any(|m| m.parts.iter().any(|p| matches!(p, Part::ToolResult(_))));
    let signed = last
        .parts
        .iter()
        .any(|p| matches!(p, Part::Thinking(t) if t.redacted.is_some() || t.signature.is_some()));
    calls && answered && !signed
}

/// Writes a Messages request.
pub(crate) fn encode_request(r: &CanonicalRequest, opts: &ConvertOptions) -> Result<Value, Error> {
    if r.n.is_some_and(|n| n > 1) {
        return Err(unsupported(
            "n",
            "this upstream (Anthropic Messages) returns one choice per request; `n` must be 1",
        ));
    }
    let mut body = Map::new();
    body.insert("model".into(), r.model.clone().into());
    let mut max_tokens = r.max_tokens.unwrap_or(u64::from(opts.default_max_tokens));

    // Tools first: which survive decides tool_choice and thinking.
    let allowed: Option<&Vec<String>> = match &r.tool_choice {
        Some(ToolChoice::Allowed { names, .. }) => Some(names),
        _ => None,
    };
    let tools: Vec<Value> = r
        .tools
        .iter()
        .filter(|t| allowed.is_none_or(|names| names.contains(&t.name)))
        .map(|t| {
            let mut tool = Map::new();
            tool.insert("name".into(), t.name.clone().into());
            put(&mut tool, "description", t.description.clone());
            let schema = t
                .parameters
                .clone()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("object"))
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            tool.insert("input_schema".into(), schema);
            put(&mut tool, "strict", t.strict);
            Value::Object(tool)
        })
        .collect();
    let mut forced = false;
    if !tools.is_empty() {
        let mut choice = match &r.tool_choice {
            None => None,
            Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
            Some(ToolChoice::None) => Some(json!({"type": "none"})),
            Some(ToolChoice::Required) => Some(json!({"type": "any"})),
            Some(ToolChoice::Tool(name)) => Some(json!({"type": "tool", "name": name})),
            Some(ToolChoice::Allowed { required, .. }) => {
                Some(json!({"type": if *required { "any" } else { "auto" }}))
            }
        };
        forced = matches!(
            choice.as_ref().and_then(|c| s(c, "type")),
            Some("any" | "tool")
        );
        if r.parallel_tool_calls == Some(false) {
            let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
            if s(c, "type") != Some("none") {
                c["disable_parallel_tool_use"] = true.into();
            }
        }
        body.insert("tools".into(), Value::Array(tools));
        put(&mut body, "tool_choice", choice);
    } else if r.tool_choice.is_some() || r.parallel_tool_calls.is_some() {
        tracing::debug!("dropping tool_choice: no tools remain for the upstream");
    }

    let mut thinking = false;
    if let Some(reasoning) = r.reasoning.as_ref().filter(|x| x.enabled()) {
        if forced {
            tracing::debug!(
                "dropping extended thinking: Anthropic refuses it with a forced tool choice"
            );
        } else if tool_turn_lacks_thinking(r) {
            tracing::debug!(
                "dropping extended thinking: the replayed tool turn has no signed thinking block, which Anthropic requires with thinking on"
            );
        } else if let Some(budget) = reasoning.budget_or_from_effort() {
            let budget = budget.max(1024);
            if max_tokens <= budget {
                max_tokens = max_tokens.saturating_add(budget);
            }
            body.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": budget}),
            );
            thinking = true;
        }
    }
    body.insert("max_tokens".into(), max_tokens.into());

    if !r.system.is_empty() {
        body.insert(
            "system".into(),
            if r.system.len() == 1 {
                Value::String(r.system[0].clone())
            } else {
                r.system
                    .iter()
                    .map(|t| json!({"type": "text", "text": t}))
                    .collect()
            },
        );
    }
    let mut messages: Vec<(Role, Vec<Value>)> = Vec::with_capacity(r.messages.len());
    for (i, m) in r.messages.iter().enumerate() {
        let mut blocks = Vec::with_capacity(m.parts.len());
        // Thinking blocks must come first in an assistant turn.
        for p in m.parts.iter().filter(|p| matches!(p, Part::Thinking(_))) {
            if let Part::Thinking(t) = p {
                if !thinking {
                    continue;
                }
                if let Some(data) = &t.redacted {
                    blocks.push(json!({"type": "redacted_thinking", "data": data}));
                } else if let Some(sig) = &t.signature {
                    blocks.push(json!({"type": "thinking", "thinking": t.text, "signature": sig}));
                } else {
                    tracing::debug!("dropping a thinking block without a signature");
                }
            }
        }
        for p in m.parts.iter().filter(|p| !matches!(p, Part::Thinking(_))) {
            if let Some(block) = encode_block(p, &format!("messages[{i}]"))? {
                blocks.push(block);
            }
        }
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some((role, existing)) if *role == m.role => existing.extend(blocks),
            _ => messages.push((m.role, blocks)),
        }
    }
    body.insert(
        "messages".into(),
        messages
            .into_iter()
            .map(|(role, content)| {
                json!({"role": if role == Role::User { "user" } else { "assistant" }, "content": content})
            })
            .collect(),
    );

    match (r.temperature, r.top_p) {
        _ if thinking => {
            if r.temperature.is_some() {
                tracing::debug!(
                    "dropping temperature: Anthropic requires the default with thinking"
                );
            }
            if let Some(p) = r.top_p.filter(|p| *p >= 0.95) {
                body.insert("top_p".into(), num(p));
            }
        }
        (Some(t), top_p) => {
            body.insert("temperature".into(), num(t.clamp(0.0, 1.0)));
            if top_p.is_some() {
                tracing::debug!(
                    "dropping top_p: newer Claude models refuse it together with temperature"
                );
            }
        }
        (None, Some(p)) => {
            body.insert("top_p".into(), num(p));
        }
        (None, None) => {}
    }
    put(&mut body, "top_k", r.top_k);
    if !r.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(r.stop));
    }
    if r.stream {
        body.insert("stream".into(), true.into());
    }
    if let Some(user) = &r.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    match &r.response_format {
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            let mut schema = schema.clone();
            closed_objects(&mut schema);
            let config = body.entry("output_config").or_insert_with(|| json!({}));
            config["format"] = json!({"type": "json_schema", "schema": schema});
        }
        Some(ResponseFormat::JsonObject) => dropped("response_format.json_object", ME),
        _ => {}
    }
    for (field, present) in [
        ("seed", r.seed.is_some()),
        ("frequency_penalty", r.frequency_penalty.is_some()),
        ("presence_penalty", r.presence_penalty.is_some()),
    ] {
        if present {
            dropped(field, ME);
        }
    }
    Ok(Value::Object(body))
}

fn encode_source(media: &Media, image: bool) -> Value {
    match media {
        Media::Url { url, .. } => json!({"type": "url", "url": url}),
        Media::Base64 { media_type, data } => {
            let media_type = if image {
                // Anthropic checks the bytes against the declared type.
                sniff_image(data).map_or_else(|| normalize_media_type(media_type), str::to_owned)
            } else {
                normalize_media_type(media_type)
            };
            json!({"type": "base64", "media_type": media_type, "data": data})
        }
    }
}

fn encode_block(p: &Part, param: &str) -> Result<Option<Value>, Error> {
    Ok(Some(match p {
        Part::Text(t) | Part::Refusal(t) => {
            if t.is_empty() {
                return Ok(None);
            }
            json!({"type": "text", "text": t})
        }
        Part::Image(media) => json!({"type": "image", "source": encode_source(media, true)}),
        Part::Document { media, name } => {
            let source = match media {
                Media::Base64 { media_type, data } if media_type == "text/plain" => {
                    let text = ids::base64_decode(data)
                        .and_then(|b| String::from_utf8(b).ok())
                        .unwrap_or_default();
                    json!({"type": "text", "media_type": "text/plain", "data": text})
                }
                Media::Base64 { media_type, .. } if media_type != "application/pdf" => {
                    return Err(unsupported(
                        param,
                        format!(
                            "Anthropic accepts PDF and plain-text documents, not `{media_type}`"
                        ),
                    ));
                }
                m => encode_source(m, false),
            };
            let mut doc = json!({"type": "document", "source": source});
            if let Some(name) = name {
                doc["title"] = name.clone().into();
            }
            doc
        }
        Part::Audio { .. } => {
            return Err(unsupported(
                param,
                "audio input cannot be sent to an Anthropic upstream",
            ));
        }
        Part::ToolCall(c) => {
            if c.signature.is_some() {
                tracing::debug!("dropping a Gemini thought signature Anthropic cannot use");
            }
            json!({
                "type": "tool_use",
                "id": ids::anthropic_id(&c.id),
                "name": c.name,
                "input": args_object(&c.arguments),
            })
        }
        Part::ToolResult(r) => {
            let mut content = Vec::new();
            for c in &r.content {
                if let Some(b) = encode_block(c, param)? {
                    content.push(b);
                }
            }
            let content = match content.as_slice() {
                [] => Value::String(String::new()),
                [only] if s(only, "type") == Some("text") => only["text"].clone(),
                _ => Value::Array(content),
            };
            let mut block = json!({
                "type": "tool_result",
                "tool_use_id": ids::anthropic_id(&r.id),
                "content": content,
            });
            if r.is_error {
                block["is_error"] = true.into();
            }
            block
        }
        Part::Thinking(_) => return Ok(None),
    }))
}

// ----------------------------------------------------------------------------------- response in

/// `stop_reason` → stop reason.
pub(crate) fn stop_from(reason: &str) -> Option<StopReason> {
    Some(match reason {
        "end_turn" | "pause_turn" => StopReason::EndTurn,
        "stop_sequence" => StopReason::StopSequence,
        "max_tokens" | "model_context_window_exceeded" => StopReason::MaxTokens,
        "tool_use" => StopReason::ToolUse,
        "refusal" => StopReason::ContentFilter,
        "" => return None,
        _ => StopReason::EndTurn,
    })
}

/// Stop reason → `stop_reason`.
pub(crate) fn stop_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn => "end_turn",
        StopReason::StopSequence => "stop_sequence",
        StopReason::MaxTokens => "max_tokens",
        StopReason::ToolUse => "tool_use",
        StopReason::ContentFilter => "refusal",
    }
}

/// Reads a `message` body.
pub(crate) fn decode_response(v: &Value) -> Result<CanonicalResponse, Error> {
    let mut parts = Vec::new();
    for block in arr(v, "content") {
        match s(block, "type") {
            Some("text") => parts.push(Part::Text(s(block, "text").unwrap_or_default().to_owned())),
            Some("thinking") => parts.push(Part::Thinking(Thinking {
                text: s(block, "thinking").unwrap_or_default().to_owned(),
                signature: s(block, "signature")
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned),
                redacted: None,
            })),
            Some("redacted_thinking") => parts.push(Part::Thinking(Thinking {
                redacted: Some(s(block, "data").unwrap_or_default().to_owned()),
                ..Thinking::default()
            })),
            Some("tool_use") => parts.push(Part::ToolCall(ToolCall {
                id: s(block, "id").unwrap_or_default().to_owned(),
                name: s(block, "name").unwrap_or_default().to_owned(),
                arguments: block
                    .get("input")
                    .map_or_else(|| "{}".to_owned(), Value::to_string),
                signature: None,
            })),
            other => tracing::debug!(block = other.unwrap_or(""), "dropping a response block"),
        }
    }
    Ok(CanonicalResponse {
        id: s(v, "id").unwrap_or_default().to_owned(),
        model: s(v, "model").unwrap_or_default().to_owned(),
        created: None,
        parts,
        stop: s(v, "stop_reason").and_then(stop_from),
        stop_sequence: s(v, "stop_sequence").map(str::to_owned),
        usage: v.get("usage").and_then(Usage::from_anthropic),
    })
}

// ---------------------------------------------------------------------------------- response out

/// Writes a `message` body.
pub(crate) fn encode_response(r: &CanonicalResponse) -> Value {
    let mut content = Vec::with_capacity(r.parts.len());
    let thinking_first = r
        .parts
        .iter()
        .filter(|p| matches!(p, Part::Thinking(_)))
        .chain(r.parts.iter().filter(|p| !matches!(p, Part::Thinking(_))));
    for p in thinking_first {
        match p {
            Part::Thinking(t) => match &t.redacted {
                Some(data) => content.push(json!({"type": "redacted_thinking", "data": data})),
                None => content.push(json!({
                    "type": "thinking",
                    "thinking": t.text,
                    "signature": t.signature.clone().unwrap_or_default(),
                })),
            },
            Part::Text(t) | Part::Refusal(t) if !t.is_empty() => {
                content.push(json!({"type": "text", "text": t}));
            }
            Part::ToolCall(c) => content.push(json!({
                "type": "tool_use",
                "id": ids::anthropic_id(&ids::fold_signature(&c.id, c.signature.as_deref())),
                "name": c.name,
                "input": args_object(&c.arguments),
            })),
            _ => {}
        }
    }
    let stop = r.effective_stop();
    let mut out = json!({
        "id": r.id,
        "type": "message",
        "role": "assistant",
        "model": r.model,
        "content": content,
        "stop_reason": stop_reason(stop),
        "usage": r.usage.unwrap_or_default().to_anthropic(),
    });
    if stop == StopReason::StopSequence {
        out["stop_sequence"] = r.stop_sequence.clone().map_or(Value::Null, Value::String);
    }
    out
}

/// [`encode_response`]'s document written straight to bytes, without building it: the same
/// members, in the order serde_json's map serialises them (sorted by key), so the bytes are
/// `serde_json::to_vec(&encode_response(r))`'s (tested below on every shape).
pub(crate) fn encode_response_bytes(r: &CanonicalResponse) -> Vec<u8> {
    serde_json::to_vec(&MessageOut(r)).unwrap_or_default()
}

struct MessageOut<'a>(&'a CanonicalResponse);

impl serde::Serialize for MessageOut<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.0;
        let stop = r.effective_stop();
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("content", &ContentOut(r))?;
        m.serialize_entry("id", &r.id)?;
        m.serialize_entry("model", &r.model)?;
        m.serialize_entry("role", "assistant")?;
        m.serialize_entry("stop_reason", stop_reason(stop))?;
        if stop == StopReason::StopSequence {
            m.serialize_entry("stop_sequence", &r.stop_sequence)?;
        }
        m.serialize_entry("type", "message")?;
        m.serialize_entry("usage", &UsageOut(r.usage.unwrap_or_default()))?;
        m.end()
    }
}

/// `content`: thinking blocks first, as [`encode_response`] orders them.
struct ContentOut<'a>(&'a CanonicalResponse);

impl serde::Serialize for ContentOut<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct Block<'a>(&'a Part);
        impl serde::Serialize for Block<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let mut m = ser.serialize_map(None)?;
                match self.0 {
                    Part::Thinking(t) => match &t.redacted {
                        Some(data) => {
                            m.serialize_entry("data", data)?;
                            m.serialize_entry("type", "redacted_thinking")?;
                        }
                        None => {
                            m.serialize_entry("signature", t.signature.as_deref().unwrap_or(""))?;
                            m.serialize_entry("thinking", &t.text)?;
                            m.serialize_entry("type", "thinking")?;
                        }
                    },
                    Part::Text(t) | Part::Refusal(t) => {
                        m.serialize_entry("text", t)?;
                        m.serialize_entry("type", "text")?;
                    }
                    Part::ToolCall(c) => {
                        let id = ids::fold_signature(&c.id, c.signature.as_deref());
                        m.serialize_entry("id", &ids::anthropic_id(&id))?;
                        m.serialize_entry("input", &args_object(&c.arguments))?;
                        m.serialize_entry("name", &c.name)?;
                        m.serialize_entry("type", "tool_use")?;
                    }
                    _ => {}
                }
                m.end()
            }
        }
        let r = self.0;
        let written = |p: &&Part| match p {
            Part::Thinking(_) | Part::ToolCall(_) => true,
            Part::Text(t) | Part::Refusal(t) => !t.is_empty(),
            _ => false,
        };
        let thinking_first = r
            .parts
            .iter()
            .filter(|p| matches!(p, Part::Thinking(_)))
            .chain(r.parts.iter().filter(|p| !matches!(p, Part::Thinking(_))))
            .filter(written);
        let mut seq = ser.serialize_seq(None)?;
        for p in thinking_first {
            seq.serialize_element(&Block(p))?;
        }
        seq.end()
    }
}

/// `usage` as [`Usage::to_anthropic`] writes it: the cache counts only when non-zero.
struct UsageOut(Usage);

impl serde::Serialize for UsageOut {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let u = &self.0;
        let mut m = ser.serialize_map(None)?;
        if u.cache_write_tokens > 0 {
            m.serialize_entry("cache_creation_input_tokens", &u.cache_write_tokens)?;
        }
        if u.cache_read_tokens > 0 {
            m.serialize_entry("cache_read_input_tokens", &u.cache_read_tokens)?;
        }
        m.serialize_entry("input_tokens", &u.input_tokens)?;
        m.serialize_entry("output_tokens", &u.output_tokens)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_answer_written_as_bytes_is_the_document_serialised() {
        let thinking = |text: &str, signature: Option<&str>, redacted: Option<&str>| {
            Part::Thinking(Thinking {
                text: text.to_owned(),
                signature: signature.map(str::to_owned),
                redacted: redacted.map(str::to_owned),
            })
        };
        let call = |id: &str, args: &str, signature: Option<&str>| {
            Part::ToolCall(ToolCall {
                id: id.to_owned(),
                name: "f\u{e9}\"".to_owned(),
                arguments: args.to_owned(),
                signature: signature.map(str::to_owned),
            })
        };
        let usages = [
            None,
            Some(Usage {
                input_tokens: 3,
                output_tokens: 2,
                ..Usage::default()
            }),
            Some(Usage {
                input_tokens: 3,
                output_tokens: 2,
                cache_read_tokens: 5,
                cache_write_tokens: 7,
                reasoning_tokens: 1,
            }),
        ];
        let partss = [
            vec![],
            vec![Part::Text("Hi \"there\"\n\u{1f600}".into())],
            vec![Part::Text(String::new()), Part::Refusal("no".into())],
            vec![
                Part::Text("a".into()),
                thinking("t", Some("sig"), None),
                thinking("", None, Some("data")),
                call("call_1", r#"{"b":1,"a":[2]}"#, None),
                call("toolu_x", "not json", Some("c2lnbmF0dXJl")),
                call("", "", None),
                thinking("late", None, None),
                Part::Text("b".into()),
            ],
        ];
        let stops = [
            None,
            Some(StopReason::EndTurn),
            Some(StopReason::StopSequence),
            Some(StopReason::MaxTokens),
            Some(StopReason::ToolUse),
            Some(StopReason::ContentFilter),
        ];
        let mut n = 0;
        for parts in &partss {
            for stop in stops {
                for usage in usages {
                    for stop_sequence in [None, Some("END".to_owned())] {
                        let r = CanonicalResponse {
                            id: "msg_1".into(),
                            model: "m\u{e9}".into(),
                            created: Some(1),
                            parts: parts.clone(),
                            stop,
                            stop_sequence,
                            usage,
                        };
                        assert_eq!(
                            String::from_utf8(encode_response_bytes(&r)).unwrap(),
                            serde_json::to_string(&encode_response(&r)).unwrap(),
                            "{r:?}"
                        );
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 4 * 6 * 3 * 2);
    }

    use super::*;

    fn decode_request(body: &Value) -> Result<CanonicalRequest, Error> {
        crate::testing::decode(Protocol::Anthropic, body, &RouteParams::default())
    }

    #[test]
    fn n_above_one_is_refused() {
        let r = CanonicalRequest {
            n: Some(2),
            ..CanonicalRequest::default()
        };
        let e = encode_request(&r, &ConvertOptions::default()).unwrap_err();
        assert_eq!(e.param(), Some("n"));
        assert_eq!(e.status().as_u16(), 400);
    }

    #[test]
    fn billing_header_is_stripped_and_system_turns_folded() {
        let r = decode_request(&json!({
            "model": "m", "max_tokens": 5,
            "system": [{"type": "text", "text": "x-anthropic-billing-header: cc=1"}, {"type": "text", "text": "Be brief."}],
            "messages": [{"role": "system", "content": "Mid"}, {"role": "user", "content": "hi"}]
        }))
        .unwrap();
        assert_eq!(r.system, ["Be brief.", "Mid"]);
        assert_eq!(r.messages.len(), 1);
    }

    #[test]
    fn thinking_needs_budget_room_and_no_temperature() {
        let r = CanonicalRequest {
            model: "m".into(),
            max_tokens: Some(100),
            temperature: Some(0.5),
            reasoning: Some(ReasoningConfig {
                effort: Some("low".into()),
                ..ReasoningConfig::default()
            }),
            ..CanonicalRequest::default()
        };
        let v = encode_request(&r, &ConvertOptions::default()).unwrap();
        assert_eq!(
            v["thinking"],
            json!({"type": "enabled", "budget_tokens": 1024})
        );
        assert_eq!(v["max_tokens"], 1124);
        assert!(v.get("temperature").is_none());
    }
}
