//! OpenAI Responses: request and response codecs.
//!
//! The converter is stateless: `previous_response_id`, `conversation`, `item_reference` and
//! `background` are refused with a 400 naming the parameter (the gateway expands
//! `previous_response_id` from its store before converting: `octo_engines::responses`), and
//! requests to a Responses upstream are sent with `store: false` (the full history travels every
//! turn, as Codex does).
//!
//! `custom` tools become functions with one string parameter `input` (their grammar in the
//! description) and `namespace` tools functions named `<namespace>__<name>`; [`call_item`] renders
//! calls of them back (`custom_tool_call` with `input`, or `function_call` with `namespace`).
//! Built-in tools are dropped (debug log); a `tool_choice` forcing one is refused.

use serde_json::{Map, Value, json};

use octo_core::{Error, Protocol, RouteParams};

use crate::canonical::{
    CUSTOM_INPUT, CanonicalRequest, CanonicalResponse, Media, Message, Part, ReasoningConfig,
    ResponseFormat, Role, StopReason, Thinking, Tool, ToolCall, ToolChoice, ToolOrigin, ToolResult,
    Usage, refusal_stop,
};
use crate::codec::{ClientSide, Codec};
use crate::ids;
use crate::media::{data_uri, media_from_url};
use crate::options::ConvertOptions;
use crate::stream::{Decoder, Encoder};
use crate::tools::ToolMap;
use crate::util;
use crate::util::{
    At, arr, as_u64, b, bad, content_text, dropped, f, inband_error, num, put, s, u, unsupported,
};

const ME: Protocol = Protocol::OpenAiResponses;

/// The OpenAI Responses codec.
pub(crate) struct OpenAiResponses;

impl Codec for OpenAiResponses {
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
        _options: &ConvertOptions,
    ) -> Result<Value, Error> {
        encode_request(r)
    }

    fn decode_response(&self, body: &Value) -> Result<CanonicalResponse, Error> {
        decode_response(body)
    }

    fn encode_response(&self, r: &CanonicalResponse, client: &ClientSide) -> Value {
        encode_response(r, util::now(), &client.tools)
    }

    fn stream_decoder(&self) -> Box<dyn Decoder> {
        Box::<crate::openai_responses_stream::OpenAiResponsesDecoder>::default()
    }

    fn stream_encoder(&self, client: &ClientSide) -> Box<dyn Encoder> {
        Box::new(crate::openai_responses_stream::OpenAiResponsesEncoder::new(
            &client.model,
            client.tools.clone(),
        ))
    }
}

// ------------------------------------------------------------------------------------ request in

/// Reads a Responses request.
pub(crate) fn decode_request(
    body: &Value,
    mut r: CanonicalRequest,
) -> Result<CanonicalRequest, Error> {
    for stateful in ["previous_response_id", "conversation"] {
        if body.get(stateful).is_some_and(|v| !v.is_null()) {
            return Err(unsupported(
                stateful,
                format!(
                    "`{stateful}` needs server-side state this converting gateway does not keep; send the full input instead"
                ),
            ));
        }
    }
    if b(body, "background") == Some(true) {
        return Err(unsupported(
            "background",
            "background responses are not supported through a converter",
        ));
    }
    if let Some(instructions) = s(body, "instructions").filter(|t| !t.is_empty()) {
        r.system.push(instructions.to_owned());
    }
    match body.get("input") {
        Some(Value::String(t)) => r.messages.push(Message {
            role: Role::User,
            parts: vec![Part::Text(t.clone())],
        }),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                decode_item(item, i, &mut r)?;
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(bad("input", "`input` must be a string or an array")),
    }
    for t in arr(body, "tools") {
        decode_tool(t, None, &mut r)?;
    }
    r.tool_choice = match body.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => match c.as_str() {
            "none" => Some(ToolChoice::None),
            "auto" => Some(ToolChoice::Auto),
            "required" => Some(ToolChoice::Required),
            other => return Err(bad("tool_choice", format!("unknown tool_choice `{other}`"))),
        },
        Some(c) => match s(c, "type") {
            Some("function" | "custom") => {
                s(c, "name").map(|n| ToolChoice::Tool(ToolOrigin::qualified(s(c, "namespace"), n)))
            }
            Some("allowed_tools") => Some(ToolChoice::Allowed {
                required: s(c, "mode") == Some("required"),
                names: arr(c, "tools")
                    .iter()
                    .filter(|t| {
                        let callable = matches!(s(t, "type"), Some("function" | "custom") | None);
                        if !callable {
                            tracing::debug!(
                                "dropping a built-in tool from an allowed_tools choice"
                            );
                        }
                        callable
                    })
                    .filter_map(|t| {
                        s(t, "name").map(|n| ToolOrigin::qualified(s(t, "namespace"), n))
                    })
                    .collect(),
            }),
            other => {
                // Forcing a built-in tool cannot be honoured by an upstream that lacks it, and
                // dropping the choice would let the model answer without it.
                let kind = other.unwrap_or("");
                return Err(unsupported(
                    "tool_choice",
                    format!(
                        "`tool_choice` forces the built-in tool `{kind}`, which a converted upstream does not have; choose a function or custom tool, or `auto`"
                    ),
                ));
            }
        },
    };
    r.parallel_tool_calls = b(body, "parallel_tool_calls");
    r.max_tokens = u(body, "max_output_tokens");
    r.temperature = f(body, "temperature");
    r.top_p = f(body, "top_p");
    if let Some(reasoning) = body.get("reasoning").filter(|v| v.is_object()) {
        let effort = s(reasoning, "effort").map(str::to_owned);
        r.reasoning = Some(ReasoningConfig {
            disabled: effort.as_deref() == Some("none"),
            include_thoughts: reasoning
                .get("summary")
                .or_else(|| reasoning.get("generate_summary"))
                .is_some_and(|v| !v.is_null()),
            effort,
            budget_tokens: None,
        });
    }
    if let Some(format) = body.at("text", "format") {
        r.response_format = match s(format, "type") {
            Some("text") => Some(ResponseFormat::Text),
            Some("json_object") => Some(ResponseFormat::JsonObject),
            Some("json_schema") => Some(ResponseFormat::JsonSchema {
                name: s(format, "name").unwrap_or("response").to_owned(),
                schema: format.get("schema").cloned().unwrap_or_else(|| json!({})),
                strict: b(format, "strict"),
                description: s(format, "description").map(str::to_owned),
            }),
            _ => None,
        };
    }
    r.user = s(body, "safety_identifier")
        .or_else(|| s(body, "user"))
        .map(str::to_owned);
    Ok(r)
}

/// One entry of `tools`: a function or `custom` tool (inside `namespace` when given), or a
/// `namespace` of them. Built-in tools (`web_search`, `file_search`, `local_shell`, `shell`,
/// `computer`, `code_interpreter`, `image_generation`, `mcp`, `apply_patch`, `tool_search`, …) run
/// on OpenAI's side or need their own item types; a converted upstream has none of them, so they
/// are dropped with a debug log (the model answers without them, as with any tool it may or may
/// not use). Forcing one with `tool_choice` is refused instead.
fn decode_tool(t: &Value, namespace: Option<&str>, r: &mut CanonicalRequest) -> Result<(), Error> {
    let kind = s(t, "type");
    if matches!(kind, Some("function" | "custom" | "namespace")) && s(t, "name").is_none() {
        return Err(bad(
            "tools",
            format!("a {} tool needs a `name`", kind.unwrap_or("")),
        ));
    }
    let name = s(t, "name").unwrap_or_default();
    let origin = |custom: bool| {
        (custom || namespace.is_some()).then(|| ToolOrigin {
            custom,
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        })
    };
    match kind {
        Some("function") => r.tools.push(Tool {
            name: ToolOrigin::qualified(namespace, name),
            description: s(t, "description").map(str::to_owned),
            parameters: t.get("parameters").filter(|p| p.is_object()).cloned(),
            strict: b(t, "strict").filter(|strict| *strict),
            origin: origin(false),
        }),
        Some("custom") => r.tools.push(Tool {
            name: ToolOrigin::qualified(namespace, name),
            description: Some(custom_description(s(t, "description"), t.get("format"))),
            parameters: Some(json!({
                "type": "object",
                "properties": {CUSTOM_INPUT: {
                    "type": "string",
                    "description": "The tool's whole input, as free-form text (not JSON).",
                }},
                "required": [CUSTOM_INPUT],
            })),
            strict: None,
            origin: origin(true),
        }),
        Some("namespace") if namespace.is_none() => {
            if s(t, "description").is_some() {
                tracing::debug!(namespace = name, "dropping a namespace description");
            }
            for inner in arr(t, "tools") {
                decode_tool(inner, Some(name), r)?;
            }
        }
        other => tracing::debug!(tool_type = other.unwrap_or(""), "dropping a built-in tool"),
    }
    Ok(())
}

/// The description of the function a `custom` tool becomes: the tool's own, then how to write the
/// `input` parameter (free text, or text following the tool's grammar).
fn custom_description(description: Option<&str>, format: Option<&Value>) -> String {
    let mut out = description.unwrap_or_default().trim_end().to_owned();
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    let grammar = format.filter(|f| s(f, "type") == Some("grammar"));
    match grammar.and_then(|g| s(g, "definition")) {
        Some(definition) => {
            let syntax = grammar.and_then(|g| s(g, "syntax")).unwrap_or("lark");
            out.push_str(&format!(
                "Put the tool's whole input in the string parameter `{CUSTOM_INPUT}`. It is free-form text, not JSON, and must match this {syntax} grammar:\n{definition}"
            ));
        }
        None => out.push_str(&format!(
            "Put the tool's whole input in the string parameter `{CUSTOM_INPUT}` as free-form text, not JSON."
        )),
    }
    out
}

fn push(r: &mut CanonicalRequest, role: Role, part: Part) {
    match r.messages.last_mut() {
        Some(m) if m.role == role => m.parts.push(part),
        _ => r.messages.push(Message {
            role,
            parts: vec![part],
        }),
    }
}

fn decode_item(item: &Value, i: usize, r: &mut CanonicalRequest) -> Result<(), Error> {
    let kind = s(item, "type").unwrap_or(if item.get("role").is_some() {
        "message"
    } else {
        ""
    });
    match kind {
        "message" => {
            let content = item.get("content").unwrap_or(&Value::Null);
            match s(item, "role") {
                Some("system" | "developer") => {
                    let t = content_text(content);
                    if !t.is_empty() {
                        r.system.push(t);
                    }
                }
                Some("assistant") => {
                    for p in content_parts(content, i)? {
                        push(r, Role::Assistant, p);
                    }
                }
                _ => {
                    let parts = content_parts(content, i)?;
                    for p in parts {
                        push(r, Role::User, p);
                    }
                }
            }
        }
        "function_call" | "custom_tool_call" => {
            let (id, signature) = ids::unfold_signature(s(item, "call_id").unwrap_or_default());
            let arguments = if kind == "custom_tool_call" {
                custom_arguments(s(item, "input").unwrap_or_default())
            } else {
                s(item, "arguments").unwrap_or("{}").to_owned()
            };
            push(
                r,
                Role::Assistant,
                Part::ToolCall(ToolCall {
                    id,
                    name: ToolOrigin::qualified(
                        s(item, "namespace"),
                        s(item, "name").unwrap_or_default(),
                    ),
                    arguments,
                    signature,
                }),
            );
        }
        "function_call_output" | "custom_tool_call_output" => {
            let (id, _) = ids::unfold_signature(s(item, "call_id").unwrap_or_default());
            let content = match item.get("output") {
                Some(Value::String(t)) => vec![Part::Text(t.clone())],
                Some(o @ Value::Array(_)) => content_parts(o, i)?,
                _ => Vec::new(),
            };
            push(
                r,
                Role::User,
                Part::ToolResult(ToolResult {
                    id,
                    name: None,
                    content,
                    is_error: false,
                }),
            );
        }
        "reasoning" => {
            let mut text: Vec<&str> = arr(item, "summary")
                .iter()
                .filter_map(|p| s(p, "text"))
                .collect();
            if text.is_empty() {
                text = arr(item, "content")
                    .iter()
                    .filter_map(|p| s(p, "text"))
                    .collect();
            }
            push(
                r,
                Role::Assistant,
                Part::Thinking(Thinking {
                    text: text.join("\n\n"),
                    signature: s(item, "encrypted_content")
                        .filter(|x| !x.is_empty())
                        .map(str::to_owned),
                    redacted: None,
                }),
            );
        }
        "item_reference" => {
            return Err(unsupported(
                &format!("input[{i}]"),
                "`item_reference` needs server-side state this converting gateway does not keep",
            ));
        }
        other => tracing::debug!(
            item = other,
            "dropping an input item other protocols cannot express"
        ),
    }
    Ok(())
}

fn content_parts(content: &Value, i: usize) -> Result<Vec<Part>, Error> {
    let parts = match content {
        Value::String(t) => return Ok(vec![Part::Text(t.clone())]),
        Value::Array(parts) => parts,
        _ => return Ok(Vec::new()),
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let param = || format!("input[{i}].content[{j}]");
        match s(p, "type") {
            Some("input_text" | "output_text" | "text") => {
                out.push(Part::Text(s(p, "text").unwrap_or_default().to_owned()));
            }
            Some("refusal") => {
                out.push(Part::Refusal(
                    s(p, "refusal").unwrap_or_default().to_owned(),
                ));
            }
            Some("input_image") => match s(p, "image_url") {
                Some(url) => out.push(Part::Image(media_from_url(url))),
                None => {
                    return Err(unsupported(
                        &param(),
                        "image file ids refer to OpenAI's file store and cannot be converted",
                    ));
                }
            },
            Some("input_file") => {
                let name = s(p, "filename").map(str::to_owned);
                if let Some(data) = s(p, "file_data") {
                    let media = match media_from_url(data) {
                        m @ Media::Base64 { .. } => m,
                        Media::Url { .. } => Media::Base64 {
                            media_type: "application/pdf".into(),
                            data: data.to_owned(),
                        },
                    };
                    out.push(Part::Document { media, name });
                } else if let Some(url) = s(p, "file_url") {
                    out.push(Part::Document {
                        media: Media::Url {
                            url: url.to_owned(),
                            media_type: None,
                        },
                        name,
                    });
                } else {
                    return Err(unsupported(
                        &param(),
                        "file ids refer to OpenAI's file store and cannot be converted",
                    ));
                }
            }
            other => tracing::debug!(part = other.unwrap_or(""), "dropping a content part"),
        }
    }
    Ok(out)
}

// ----------------------------------------------------------------------------------- request out

/// Writes a Responses request.
pub(crate) fn encode_request(r: &CanonicalRequest) -> Result<Value, Error> {
    if r.n.is_some_and(|n| n > 1) {
        return Err(unsupported(
            "n",
            "this upstream (OpenAI Responses) returns one answer per request; `n` must be 1",
        ));
    }
    let mut input = Vec::new();
    for (i, m) in r.messages.iter().enumerate() {
        match m.role {
            Role::User => encode_user(m, i, &mut input)?,
            Role::Assistant => encode_assistant(m, &mut input),
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), r.model.clone().into());
    if !r.system.is_empty() {
        body.insert("instructions".into(), r.system.join("\n\n").into());
    }
    body.insert("input".into(), Value::Array(input));
    if !r.tools.is_empty() {
        body.insert(
            "tools".into(),
            r.tools
                .iter()
                .map(|t| {
                    let mut tool = Map::new();
                    tool.insert("type".into(), "function".into());
                    tool.insert("name".into(), t.name.clone().into());
                    put(&mut tool, "description", t.description.clone());
                    tool.insert(
                        "parameters".into(),
                        t.parameters
                            .clone()
                            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                    );
                    tool.insert("strict".into(), t.strict.unwrap_or(false).into());
                    Value::Object(tool)
                })
                .collect(),
        );
        if let Some(choice) = &r.tool_choice {
            body.insert(
                "tool_choice".into(),
                match choice {
                    ToolChoice::Auto => json!("auto"),
                    ToolChoice::None => json!("none"),
                    ToolChoice::Required => json!("required"),
                    ToolChoice::Tool(name) => json!({"type": "function", "name": name}),
                    ToolChoice::Allowed { required, names } => json!({
                        "type": "allowed_tools",
                        "mode": if *required { "required" } else { "auto" },
                        "tools": names.iter().map(|n| json!({"type": "function", "name": n})).collect::<Vec<_>>(),
                    }),
                },
            );
        }
        put(&mut body, "parallel_tool_calls", r.parallel_tool_calls);
    }
    put(&mut body, "max_output_tokens", r.max_tokens);
    put(&mut body, "temperature", r.temperature.map(num));
    put(&mut body, "top_p", r.top_p.map(num));
    for (field, present) in [
        ("stop", !r.stop.is_empty()),
        ("top_k", r.top_k.is_some()),
        ("seed", r.seed.is_some()),
        ("frequency_penalty", r.frequency_penalty.is_some()),
        ("presence_penalty", r.presence_penalty.is_some()),
    ] {
        if present {
            dropped(field, ME);
        }
    }
    if let Some(reasoning) = r.reasoning.as_ref().filter(|x| x.enabled()) {
        let mut rs = Map::new();
        put(
            &mut rs,
            "effort",
            reasoning
                .effort_or_from_budget()
                .map(|e| if e == "max" { "xhigh".to_owned() } else { e }),
        );
        if reasoning.include_thoughts {
            rs.insert("summary".into(), "auto".into());
        }
        body.insert("reasoning".into(), Value::Object(rs));
        // Stateless reasoning: the encrypted content comes back and is replayed next turn.
        body.insert("include".into(), json!(["reasoning.encrypted_content"]));
    }
    if let Some(rf) = &r.response_format {
        let format = match rf {
            ResponseFormat::Text => json!({"type": "text"}),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
                description,
            } => {
                let mut f = Map::new();
                f.insert("type".into(), "json_schema".into());
                f.insert("name".into(), name.clone().into());
                f.insert("schema".into(), schema.clone());
                put(&mut f, "strict", *strict);
                put(&mut f, "description", description.clone());
                Value::Object(f)
            }
        };
        body.insert("text".into(), json!({"format": format}));
    }
    put(&mut body, "user", r.user.clone());
    body.insert("store".into(), false.into());
    if r.stream {
        body.insert("stream".into(), true.into());
    }
    Ok(Value::Object(body))
}

fn input_part(p: &Part, i: usize) -> Result<Option<Value>, Error> {
    Ok(Some(match p {
        Part::Text(t) | Part::Refusal(t) => json!({"type": "input_text", "text": t}),
        Part::Image(media) => {
            let url = match media {
                Media::Url { url, .. } => url.clone(),
                Media::Base64 { media_type, data } => data_uri(media_type, data),
            };
            json!({"type": "input_image", "image_url": url, "detail": "auto"})
        }
        Part::Document { media, name } => {
            let mut file = Map::new();
            file.insert("type".into(), "input_file".into());
            match media {
                Media::Url { url, .. } => {
                    file.insert("file_url".into(), url.clone().into());
                }
                Media::Base64 { media_type, data } => {
                    file.insert("file_data".into(), data_uri(media_type, data).into());
                }
            }
            put(&mut file, "filename", name.clone());
            Value::Object(file)
        }
        Part::Audio { .. } => {
            return Err(unsupported(
                &format!("messages[{i}]"),
                "audio input cannot be sent to an OpenAI Responses upstream",
            ));
        }
        Part::Thinking(_) | Part::ToolCall(_) | Part::ToolResult(_) => return Ok(None),
    }))
}

fn encode_user(m: &Message, i: usize, out: &mut Vec<Value>) -> Result<(), Error> {
    let mut content = Vec::new();
    for p in &m.parts {
        if let Part::ToolResult(r) = p {
            let has_media = r.content.iter().any(|c| !matches!(c, Part::Text(_)));
            let prefix = if r.is_error { "Error: " } else { "" };
            let output = if has_media {
                let mut parts = Vec::new();
                if r.is_error {
                    parts.push(json!({"type": "input_text", "text": "Error:"}));
                }
                for c in &r.content {
                    if let Some(v) = input_part(c, i)? {
                        parts.push(v);
                    }
                }
                Value::Array(parts)
            } else {
                Value::String(format!("{prefix}{}", r.text()))
            };
            out.push(json!({"type": "function_call_output", "call_id": r.id, "output": output}));
        } else if let Some(v) = input_part(p, i)? {
            content.push(v);
        }
    }
    if !content.is_empty() {
        out.push(json!({"type": "message", "role": "user", "content": content}));
    }
    Ok(())
}

fn encode_assistant(m: &Message, out: &mut Vec<Value>) {
    let mut content: Vec<Value> = Vec::new();
    let flush = |content: &mut Vec<Value>, out: &mut Vec<Value>| {
        if !content.is_empty() {
            out.push(json!({
                "type": "message",
                "role": "assistant",
                "content": std::mem::take(content),
            }));
        }
    };
    for p in &m.parts {
        match p {
            Part::Text(t) => content.push(message_content(t, false)),
            Part::Refusal(t) => content.push(message_content(t, true)),
            Part::Thinking(t) => {
                flush(&mut content, out);
                match &t.signature {
                    Some(sig) => {
                        let summary: Vec<Value> = if t.text.is_empty() {
                            Vec::new()
                        } else {
                            vec![json!({"type": "summary_text", "text": t.text})]
                        };
                        out.push(json!({"type": "reasoning", "summary": summary, "encrypted_content": sig}));
                    }
                    None => tracing::debug!("dropping a reasoning item without encrypted content"),
                }
            }
            Part::ToolCall(c) => {
                flush(&mut content, out);
                out.push(json!({
                    "type": "function_call",
                    "call_id": ids::fold_signature(&c.id, c.signature.as_deref()),
                    "name": c.name,
                    "arguments": c.arguments_json(),
                }));
            }
            _ => {}
        }
    }
    flush(&mut content, out);
}

// ----------------------------------------------------------------------------------- response in

/// `status` + `incomplete_details.reason` → stop reason.
pub(crate) fn stop_from(
    status: Option<&str>,
    incomplete_reason: Option<&str>,
) -> Option<StopReason> {
    match status? {
        "incomplete" => Some(match incomplete_reason {
            Some("content_filter") => StopReason::ContentFilter,
            _ => StopReason::MaxTokens,
        }),
        "completed" => Some(StopReason::EndTurn),
        _ => None,
    }
}

/// Reads one output item into parts.
pub(crate) fn item_parts(item: &Value, parts: &mut Vec<Part>) {
    match s(item, "type") {
        Some("message") => {
            for c in arr(item, "content") {
                match s(c, "type") {
                    Some("output_text") => {
                        parts.push(Part::Text(s(c, "text").unwrap_or_default().to_owned()));
                    }
                    Some("refusal") => {
                        parts.push(Part::Refusal(
                            s(c, "refusal").unwrap_or_default().to_owned(),
                        ));
                    }
                    _ => {}
                }
            }
        }
        Some(kind @ ("function_call" | "custom_tool_call")) => {
            let (id, signature) = ids::unfold_signature(s(item, "call_id").unwrap_or_default());
            parts.push(Part::ToolCall(ToolCall {
                id,
                name: ToolOrigin::qualified(
                    s(item, "namespace"),
                    s(item, "name").unwrap_or_default(),
                ),
                arguments: if kind == "custom_tool_call" {
                    custom_arguments(s(item, "input").unwrap_or_default())
                } else {
                    s(item, "arguments").unwrap_or_default().to_owned()
                },
                signature,
            }));
        }
        Some("reasoning") => {
            let mut text: Vec<&str> = arr(item, "summary")
                .iter()
                .filter_map(|p| s(p, "text"))
                .collect();
            if text.is_empty() {
                text = arr(item, "content")
                    .iter()
                    .filter_map(|p| s(p, "text"))
                    .collect();
            }
            parts.push(Part::Thinking(Thinking {
                text: text.join("\n\n"),
                signature: s(item, "encrypted_content")
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned),
                redacted: None,
            }));
        }
        other => tracing::debug!(item = other.unwrap_or(""), "dropping an output item"),
    }
}

/// The function arguments a free-form `input` becomes: `{"input": "<input>"}`.
pub(crate) fn custom_arguments(input: &str) -> String {
    json!({CUSTOM_INPUT: input}).to_string()
}

/// The free-form input of a call to a `custom` tool, from the function arguments the upstream
/// wrote: the `input` string, else the only string member, else a JSON string, else the text as is.
pub(crate) fn custom_input(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(o)) => {
            if let Some(Value::String(input)) = o.get(CUSTOM_INPUT) {
                return input.clone();
            }
            let mut strings = o.values().filter_map(Value::as_str);
            match (strings.next(), strings.next(), o.len()) {
                (Some(only), None, 1) => only.to_owned(),
                _ => arguments.to_owned(),
            }
        }
        Ok(Value::String(input)) => input,
        _ => arguments.to_owned(),
    }
}

/// The error of a `failed` response.
pub(crate) fn failed_error(response: &Value) -> Error {
    let err = response
        .get("error")
        .cloned()
        .unwrap_or_else(|| json!({"message": "the upstream response failed"}));
    let status = super::util::status_for_type(s(&err, "code").unwrap_or_default());
    inband_error(ME, status, &err)
}

/// Reads a `response` object.
pub(crate) fn decode_response(v: &Value) -> Result<CanonicalResponse, Error> {
    if s(v, "status") == Some("failed") {
        return Err(failed_error(v));
    }
    let mut parts = Vec::new();
    for item in arr(v, "output") {
        item_parts(item, &mut parts);
    }
    let refused = parts.iter().any(|p| matches!(p, Part::Refusal(_)));
    Ok(CanonicalResponse {
        id: s(v, "id").unwrap_or_default().to_owned(),
        model: s(v, "model").unwrap_or_default().to_owned(),
        created: v.get("created_at").and_then(as_u64),
        parts,
        stop: refusal_stop(
            stop_from(
                s(v, "status"),
                v.at("incomplete_details", "reason").and_then(Value::as_str),
            ),
            refused,
        ),
        stop_sequence: None,
        usage: v.get("usage").and_then(Usage::from_openai_responses),
    })
}

// ---------------------------------------------------------------------------------- response out

/// An output item id: `<prefix>_<hash of the response id>_<index>`.
pub(crate) fn item_id(prefix: &str, response_id: &str, index: usize) -> String {
    format!(
        "{prefix}_{:08x}{index:04}",
        ids::fnv1a(response_id.as_bytes())
    )
}

/// `(status, incomplete_details)` for a stop reason.
pub(crate) fn status_of(stop: StopReason) -> (&'static str, Value) {
    match stop {
        StopReason::MaxTokens => ("incomplete", json!({"reason": "max_output_tokens"})),
        StopReason::ContentFilter => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The `response` object around `output`.
pub(crate) fn response_object(
    id: &str,
    model: &str,
    created: u64,
    status: &str,
    incomplete: Value,
    output: Vec<Value>,
    usage: &Usage,
) -> Value {
    json!({
        "id": id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage.to_openai_responses(),
    })
}

/// The output item of a call: `function_call`, or `custom_tool_call` (with the free-form `input`)
/// for a client `custom` tool; the client's own name and `namespace` for a namespaced tool.
/// `response_id` and `index` make the item id (`fc_…` / `ctc_…`).
pub(crate) fn call_item(
    response_id: &str,
    index: usize,
    call_id: &str,
    name: &str,
    arguments: &str,
    origin: Option<&ToolOrigin>,
) -> Value {
    let mut item = Map::new();
    let custom = origin.is_some_and(|o| o.custom);
    if custom {
        item.insert("type".into(), "custom_tool_call".into());
        item.insert("id".into(), item_id("ctc", response_id, index).into());
    } else {
        item.insert("type".into(), "function_call".into());
        item.insert("id".into(), item_id("fc", response_id, index).into());
    }
    item.insert("call_id".into(), call_id.into());
    item.insert(
        "name".into(),
        origin.map_or(name, |o| o.name.as_str()).into(),
    );
    put(
        &mut item,
        "namespace",
        origin.and_then(|o| o.namespace.clone()),
    );
    if custom {
        item.insert("input".into(), custom_input(arguments).into());
    } else {
        let arguments = if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        };
        item.insert("arguments".into(), arguments.into());
        item.insert("status".into(), "completed".into());
    }
    Value::Object(item)
}

/// Writes a `response` object.
pub(crate) fn encode_response(r: &CanonicalResponse, created: u64, tools: &ToolMap) -> Value {
    let mut output: Vec<Value> = Vec::new();
    let mut message: Vec<Value> = Vec::new();
    let flush = |message: &mut Vec<Value>, output: &mut Vec<Value>| {
        if !message.is_empty() {
            let id = item_id("msg", &r.id, output.len());
            output.push(json!({
                "type": "message",
                "id": id,
                "status": "completed",
                "role": "assistant",
                "content": std::mem::take(message),
            }));
        }
    };
    for p in &r.parts {
        match p {
            Part::Text(t) => message.push(message_content(t, false)),
            Part::Refusal(t) => message.push(message_content(t, true)),
            Part::Thinking(t) => {
                flush(&mut message, &mut output);
                output.push(reasoning_item(&item_id("rs", &r.id, output.len()), t));
            }
            Part::ToolCall(c) => {
                flush(&mut message, &mut output);
                output.push(call_item(
                    &r.id,
                    output.len(),
                    &ids::fold_signature(&c.id, c.signature.as_deref()),
                    &c.name,
                    &c.arguments,
                    tools.origin(&c.name),
                ));
            }
            _ => {}
        }
    }
    flush(&mut message, &mut output);
    let (status, incomplete) = status_of(r.effective_stop());
    response_object(
        &r.id,
        &r.model,
        r.created.unwrap_or(created),
        status,
        incomplete,
        output,
        &r.usage.unwrap_or_default(),
    )
}

/// A `reasoning` output item.
pub(crate) fn reasoning_item(id: &str, t: &Thinking) -> Value {
    let summary: Vec<Value> = if t.text.is_empty() {
        Vec::new()
    } else {
        vec![json!({"type": "summary_text", "text": t.text})]
    };
    let mut item = json!({"type": "reasoning", "id": id, "summary": summary});
    if let Some(sig) = t.signature.as_ref().or(t.redacted.as_ref()) {
        item["encrypted_content"] = sig.clone().into();
    }
    item
}

/// One part of an assistant message's `content`: `output_text`, or `refusal` when `refusal`.
pub(crate) fn message_content(text: &str, refusal: bool) -> Value {
    if refusal {
        json!({"type": "refusal", "refusal": text})
    } else {
        json!({"type": "output_text", "text": text, "annotations": []})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_request(body: &Value) -> Result<CanonicalRequest, Error> {
        crate::testing::decode(Protocol::OpenAiResponses, body, &RouteParams::default())
    }

    #[test]
    fn stateful_requests_are_refused() {
        let e =
            decode_request(&json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}))
                .unwrap_err();
        assert_eq!(e.param(), Some("previous_response_id"));
        let e = decode_request(
            &json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}),
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("input[0]"));
    }

    #[test]
    fn custom_tools_become_single_string_functions() {
        let r = decode_request(&json!({
            "model": "m", "input": "hi",
            "tools": [
                {"type": "custom", "name": "apply_patch", "description": "Patch files.",
                 "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
                {"type": "custom", "name": "note"},
                {"type": "web_search"},
                {"type": "local_shell"},
            ]
        }))
        .unwrap();
        assert_eq!(r.tools.len(), 2, "built-in tools are dropped");
        let patch = &r.tools[0];
        assert_eq!(patch.name, "apply_patch");
        let d = patch.description.as_deref().unwrap();
        assert!(d.starts_with("Patch files.\n\n"), "{d}");
        assert!(d.contains("lark grammar:\nstart: /.+/"), "{d}");
        let params = patch.parameters.as_ref().unwrap();
        assert_eq!(params["required"], json!(["input"]));
        assert_eq!(params["properties"]["input"]["type"], "string");
        assert!(patch.origin.as_ref().unwrap().custom);
        let note = r.tools[1].description.as_deref().unwrap();
        assert!(note.contains("free-form text, not JSON"), "{note}");
    }

    #[test]
    fn namespace_tools_are_qualified_and_history_items_map() {
        let r = decode_request(&json!({
            "model": "m",
            "input": [
                {"type": "function_call", "call_id": "c1", "name": "search", "namespace": "docs", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "found"},
                {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch\n\"x\""},
                {"type": "custom_tool_call_output", "call_id": "c2", "output": "Done!"},
            ],
            "tools": [{"type": "namespace", "name": "docs", "description": "d", "tools": [
                {"type": "function", "name": "search", "parameters": {"type": "object"}},
                {"type": "custom", "name": "raw"},
            ]}],
            "tool_choice": {"type": "custom", "name": "apply_patch"},
        }))
        .unwrap();
        let names: Vec<&str> = r.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["docs__search", "docs__raw"]);
        let o = r.tools[1].origin.as_ref().unwrap();
        assert_eq!(
            (o.custom, o.namespace.as_deref(), o.name.as_str()),
            (true, Some("docs"), "raw")
        );
        assert_eq!(r.tool_choice, Some(ToolChoice::Tool("apply_patch".into())));
        let Part::ToolCall(call) = &r.messages[0].parts[0] else {
            panic!()
        };
        assert_eq!(call.name, "docs__search");
        let Part::ToolCall(call) = &r.messages[2].parts[0] else {
            panic!("{:?}", r.messages)
        };
        assert_eq!(
            (call.id.as_str(), call.name.as_str()),
            ("c2", "apply_patch")
        );
        assert_eq!(custom_input(&call.arguments), "*** Begin Patch\n\"x\"");
        let Part::ToolResult(res) = &r.messages[3].parts[0] else {
            panic!()
        };
        assert_eq!((res.id.as_str(), res.text().as_str()), ("c2", "Done!"));
        assert_eq!(
            ToolOrigin::qualified(Some("mcp__fs__"), "read"),
            "mcp__fs__read"
        );
    }

    #[test]
    fn forcing_a_built_in_tool_is_refused() {
        let e = decode_request(&json!({"model": "m", "input": "x",
            "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}))
        .unwrap_err();
        assert_eq!(e.param(), Some("tool_choice"));
        assert!(e.message().contains("web_search"));
        // Built-ins in an allowed list are dropped, the rest kept.
        let r = decode_request(&json!({"model": "m", "input": "x", "tool_choice": {
            "type": "allowed_tools", "mode": "auto",
            "tools": [{"type": "web_search"}, {"type": "custom", "name": "apply_patch"}]}}))
        .unwrap();
        assert_eq!(
            r.tool_choice,
            Some(ToolChoice::Allowed {
                required: false,
                names: vec!["apply_patch".into()]
            })
        );
    }

    #[test]
    fn custom_input_reads_any_reasonable_argument_shape() {
        assert_eq!(custom_input(&custom_arguments("a \"b\"\n")), "a \"b\"\n");
        assert_eq!(custom_input(r#"{"patch": "p"}"#), "p");
        assert_eq!(custom_input(r#""just a string""#), "just a string");
        assert_eq!(custom_input("*** Begin Patch"), "*** Begin Patch");
        assert_eq!(
            custom_input(r#"{"a": "x", "b": "y"}"#),
            r#"{"a": "x", "b": "y"}"#
        );
    }

    #[test]
    fn calls_of_custom_and_namespaced_tools_go_back_in_their_shape() {
        let tools = ToolMap {
            tools: vec![
                (
                    "apply_patch".into(),
                    ToolOrigin {
                        custom: true,
                        namespace: None,
                        name: "apply_patch".into(),
                    },
                ),
                (
                    "docs__search".into(),
                    ToolOrigin {
                        custom: false,
                        namespace: Some("docs".into()),
                        name: "search".into(),
                    },
                ),
            ],
        };
        let call = |id: &str, name: &str, args: &str| {
            Part::ToolCall(ToolCall {
                id: id.into(),
                name: name.into(),
                arguments: args.into(),
                signature: None,
            })
        };
        let r = CanonicalResponse {
            id: "resp_1".into(),
            parts: vec![
                call("c1", "apply_patch", r#"{"input":"*** Begin Patch\n"}"#),
                call("c2", "docs__search", r#"{"q":1}"#),
                call("c3", "plain", ""),
            ],
            stop: Some(StopReason::ToolUse),
            ..CanonicalResponse::default()
        };
        let v = encode_response(&r, 1, &tools);
        let out = v["output"].as_array().unwrap();
        assert_eq!(out[0]["type"], "custom_tool_call");
        assert!(out[0]["id"].as_str().unwrap().starts_with("ctc_"));
        assert_eq!(out[0]["call_id"], "c1");
        assert_eq!(out[0]["input"], "*** Begin Patch\n");
        assert!(out[0].get("arguments").is_none());
        assert_eq!(out[1]["type"], "function_call");
        assert_eq!(
            (out[1]["name"].as_str(), out[1]["namespace"].as_str()),
            (Some("search"), Some("docs"))
        );
        assert_eq!(out[2]["arguments"], "{}");
        assert!(out[2].get("namespace").is_none());
    }

    #[test]
    fn custom_tool_call_items_from_a_responses_upstream_decode() {
        let r = decode_response(&json!({"id": "resp_1", "status": "completed", "output": [
            {"type": "custom_tool_call", "call_id": "c9", "name": "raw", "namespace": "docs", "input": "text"}
        ]}))
        .unwrap();
        let Part::ToolCall(c) = &r.parts[0] else {
            panic!()
        };
        assert_eq!((c.id.as_str(), c.name.as_str()), ("c9", "docs__raw"));
        assert_eq!(c.arguments, r#"{"input":"text"}"#);
    }

    #[test]
    fn items_become_turns() {
        let r = decode_request(&json!({
            "model": "m", "instructions": "sys",
            "input": [
                {"role": "user", "content": "hi"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "ENC"},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"}
            ]
        }))
        .unwrap();
        assert_eq!(r.system, ["sys"]);
        assert_eq!(r.messages.len(), 3);
        assert_eq!(r.messages[1].parts.len(), 2);
        let v = encode_request(&r).unwrap();
        assert_eq!(v["input"][1]["type"], "reasoning");
        assert_eq!(v["input"][1]["encrypted_content"], "ENC");
        assert_eq!(v["input"][3]["output"], "ok");
        assert_eq!(v["store"], false);
    }
}
