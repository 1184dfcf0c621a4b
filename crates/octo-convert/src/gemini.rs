//! Google Gemini `generateContent`: request and response codecs.
//!
//! - The model and the streaming choice live in the URL ([`octo_core::RouteParams`]), not the body.
//! - Field names are read in camelCase and snake_case (the official SDK sends some in snake_case).
//! - Function calls without an id get one ([`ids::synthesized_id`] for responses, `call_<turn>_<n>`
//!   for request history), and function responses without an id are paired by name with the calls
//!   of the turn before. Synthesised ids are never sent to Gemini.
//! - Signatures that did not come from Gemini (Anthropic `signature`, Responses
//!   `encrypted_content`) reach a Gemini client as `thoughtSignature` = base64 of their text, since
//!   the SDK base64-decodes that field; they are unwrapped when the client replays them.

use serde_json::{Map, Value, json};

use octo_core::{Error, Protocol, RouteParams};

use crate::canonical::{
    CanonicalRequest, CanonicalResponse, Media, Message, Part, ReasoningConfig, ResponseFormat,
    Role, StopReason, Thinking, Tool, ToolCall, ToolChoice, ToolResult, Usage,
};
use crate::codec::{ClientSide, Codec};
use crate::ids;
use crate::media::{guess_from_url, normalize_media_type, standard_base64};
use crate::options::ConvertOptions;
use crate::schema;
use crate::stream::{Decoder, Encoder};
use crate::util::{
    At, args_object, arr, as_u64, bad, dropped, get2, num, put, s, strings, unsupported,
};

const ME: Protocol = Protocol::Gemini;
/// Marks a wrapped Anthropic `redacted_thinking` payload.
const REDACTED_MARK: &str = "octollm-redacted:";

/// The Gemini `generateContent` codec.
pub(crate) struct Gemini;

impl Codec for Gemini {
    fn decode_request(
        &self,
        body: &Value,
        route: &RouteParams,
        r: CanonicalRequest,
    ) -> Result<CanonicalRequest, Error> {
        decode_request(body, route, r)
    }

    fn encode_request(
        &self,
        r: &CanonicalRequest,
        _options: &ConvertOptions,
    ) -> Result<Value, Error> {
        encode_request(r)
    }

    fn upstream_route(&self, r: &CanonicalRequest) -> RouteParams {
        RouteParams {
            model: Some(r.model.clone()),
            stream: Some(r.stream),
        }
    }

    fn decode_response(&self, body: &Value) -> Result<CanonicalResponse, Error> {
        decode_response(body)
    }

    fn encode_response(&self, r: &CanonicalResponse, _client: &ClientSide) -> Value {
        encode_response(r)
    }

    fn stream_decoder(&self) -> Box<dyn Decoder> {
        Box::<crate::gemini_stream::GeminiDecoder>::default()
    }

    fn stream_encoder(&self, client: &ClientSide) -> Box<dyn Encoder> {
        Box::new(crate::gemini_stream::GeminiEncoder::new(&client.model))
    }
}

// ------------------------------------------------------------------------------------ request in

/// Reads a `generateContent` request; the model and stream flag come from the route.
pub(crate) fn decode_request(
    body: &Value,
    route: &RouteParams,
    mut r: CanonicalRequest,
) -> Result<CanonicalRequest, Error> {
    if get2(body, "cachedContent", "cached_content").is_some() {
        return Err(unsupported(
            "cachedContent",
            "cached content lives in Gemini's store and cannot be converted for another upstream",
        ));
    }
    // The model and the stream flag are in the path, not the body.
    if let Some(model) = &route.model {
        r.model.clone_from(model);
    }
    r.stream = route.stream.unwrap_or(false);
    if let Some(si) = get2(body, "systemInstruction", "system_instruction") {
        match si {
            Value::String(t) => r.system.push(t.clone()),
            _ => {
                for p in arr(si, "parts") {
                    if let Some(t) = s(p, "text").filter(|t| !t.is_empty()) {
                        r.system.push(t.to_owned());
                    }
                }
            }
        }
    }
    // Calls of the last model turn that no response has answered yet: (name, id).
    let mut pending: Vec<(String, String)> = Vec::new();
    for (m, content) in arr(body, "contents").iter().enumerate() {
        let role = match s(content, "role") {
            Some("model") => Role::Assistant,
            _ => Role::User,
        };
        if role == Role::Assistant {
            pending.clear();
        }
        let mut parts: Vec<Part> = Vec::new();
        let mut calls = 0;
        for (k, p) in arr(content, "parts").iter().enumerate() {
            let param = || format!("contents[{m}].parts[{k}]");
            let thought = p.get("thought").and_then(Value::as_bool) == Some(true);
            let replayed = get2(p, "thoughtSignature", "thought_signature")
                .and_then(Value::as_str)
                .map(unwrap_signature);
            if let Some(fc) = get2(p, "functionCall", "function_call") {
                let name = s(fc, "name").unwrap_or_default().to_owned();
                let id = s(fc, "id")
                    .filter(|x| !x.is_empty())
                    .map_or_else(|| format!("call_{m}_{calls}"), str::to_owned);
                calls += 1;
                pending.push((name.clone(), id.clone()));
                let args = fc.get("args").cloned().unwrap_or_else(|| json!({}));
                if replayed.is_some() {
                    tracing::debug!(
                        "dropping a thoughtSignature on a function call the upstream did not make"
                    );
                }
                parts.push(Part::ToolCall(ToolCall {
                    id,
                    name,
                    arguments: args.to_string(),
                    signature: None,
                }));
            } else if let Some(fr) = get2(p, "functionResponse", "function_response") {
                let name = s(fr, "name").unwrap_or_default().to_owned();
                let id = match s(fr, "id").filter(|x| !x.is_empty()) {
                    Some(id) => {
                        pending.retain(|(_, pid)| pid != id);
                        id.to_owned()
                    }
                    None => match pending.iter().position(|(n, _)| *n == name) {
                        Some(i) => pending.remove(i).1,
                        None => format!("call_{m}_r{k}"),
                    },
                };
                let response = fr.get("response").unwrap_or(&Value::Null);
                let (text, is_error) = response_text(response);
                parts.push(Part::ToolResult(ToolResult {
                    id,
                    name: Some(name),
                    content: vec![Part::Text(text)],
                    is_error,
                }));
            } else if let Some(text) = s(p, "text") {
                if thought {
                    let (sig, redacted) = match replayed {
                        Some(Replayed::Signature(s)) => (Some(s), None),
                        Some(Replayed::Redacted(d)) => (None, Some(d)),
                        None => (None, None),
                    };
                    match parts.last_mut() {
                        // Consecutive thought parts form one block until a signature closes it.
                        Some(Part::Thinking(t))
                            if t.signature.is_none() && t.redacted.is_none() =>
                        {
                            t.text.push_str(text);
                            if redacted.is_some() {
                                t.redacted = redacted;
                            } else {
                                t.signature = sig;
                            }
                        }
                        _ => parts.push(Part::Thinking(Thinking {
                            text: text.to_owned(),
                            signature: sig,
                            redacted,
                        })),
                    }
                } else {
                    parts.push(Part::Text(text.to_owned()));
                }
            } else if let Some(data) = get2(p, "inlineData", "inline_data") {
                let mime = normalize_media_type(
                    get2(data, "mimeType", "mime_type")
                        .and_then(Value::as_str)
                        .unwrap_or("application/octet-stream"),
                );
                let b64 = standard_base64(s(data, "data").unwrap_or_default());
                parts.push(if mime.starts_with("image/") {
                    Part::Image(Media::Base64 {
                        media_type: mime,
                        data: b64,
                    })
                } else if let Some(format) = mime.strip_prefix("audio/") {
                    Part::Audio {
                        format: format.trim_start_matches("x-").to_owned(),
                        data: b64,
                    }
                } else {
                    Part::Document {
                        media: Media::Base64 {
                            media_type: mime,
                            data: b64,
                        },
                        name: s(data, "displayName").map(str::to_owned),
                    }
                });
            } else if let Some(file) = get2(p, "fileData", "file_data") {
                let mime = get2(file, "mimeType", "mime_type")
                    .and_then(Value::as_str)
                    .map(normalize_media_type);
                let url = get2(file, "fileUri", "file_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(&param(), "fileData needs a fileUri"))?
                    .to_owned();
                let is_image = mime.as_deref().is_some_and(|m| m.starts_with("image/"))
                    || guess_from_url(&url).is_some_and(|m| m.starts_with("image/"));
                let media = Media::Url {
                    url,
                    media_type: mime,
                };
                parts.push(if is_image {
                    Part::Image(media)
                } else {
                    Part::Document { media, name: None }
                });
            } else {
                tracing::debug!("dropping a Gemini part other protocols cannot express");
            }
        }
        r.messages.push(Message { role, parts });
    }
    for t in arr(body, "tools") {
        let Some(decls) = get2(t, "functionDeclarations", "function_declarations") else {
            tracing::debug!("dropping a Gemini built-in tool");
            continue;
        };
        for d in decls.as_array().map_or(&[][..], Vec::as_slice) {
            let parameters = get2(d, "parametersJsonSchema", "parameters_json_schema")
                .cloned()
                .or_else(|| d.get("parameters").map(schema::from_gemini))
                .filter(Value::is_object);
            r.tools.push(Tool {
                name: s(d, "name").unwrap_or_default().to_owned(),
                description: s(d, "description").map(str::to_owned),
                parameters,
                strict: None,
                origin: None,
            });
        }
    }
    if let Some(cfg) = get2(body, "toolConfig", "tool_config")
        .and_then(|c| get2(c, "functionCallingConfig", "function_calling_config"))
    {
        let names = strings(get2(cfg, "allowedFunctionNames", "allowed_function_names"));
        r.tool_choice = match (s(cfg, "mode").unwrap_or("AUTO"), names.len()) {
            ("NONE", _) => Some(ToolChoice::None),
            ("ANY", 0) => Some(ToolChoice::Required),
            ("ANY", 1) => Some(ToolChoice::Tool(names[0].clone())),
            ("ANY", _) => Some(ToolChoice::Allowed {
                required: true,
                names,
            }),
            (_, 0) => Some(ToolChoice::Auto),
            (_, _) => Some(ToolChoice::Allowed {
                required: false,
                names,
            }),
        };
    }
    if let Some(g) = get2(body, "generationConfig", "generation_config") {
        r.temperature = g.get("temperature").and_then(Value::as_f64);
        r.top_p = get2(g, "topP", "top_p").and_then(Value::as_f64);
        r.top_k = get2(g, "topK", "top_k").and_then(as_u64);
        r.n = get2(g, "candidateCount", "candidate_count").and_then(as_u64);
        r.max_tokens = get2(g, "maxOutputTokens", "max_output_tokens").and_then(as_u64);
        r.stop = strings(get2(g, "stopSequences", "stop_sequences"));
        r.seed = g.get("seed").and_then(Value::as_i64);
        r.presence_penalty = get2(g, "presencePenalty", "presence_penalty").and_then(Value::as_f64);
        r.frequency_penalty =
            get2(g, "frequencyPenalty", "frequency_penalty").and_then(Value::as_f64);
        let modalities = get2(g, "responseModalities", "response_modalities")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        if modalities.iter().any(|m| m != "TEXT" && m != "text") {
            return Err(unsupported(
                "generationConfig.responseModalities",
                "only text output can be produced by this upstream",
            ));
        }
        let mime = get2(g, "responseMimeType", "response_mime_type").and_then(Value::as_str);
        let schema = get2(g, "responseJsonSchema", "response_json_schema")
            .cloned()
            .or_else(|| get2(g, "responseSchema", "response_schema").map(schema::from_gemini));
        r.response_format = match (mime, schema) {
            (_, Some(schema)) => Some(ResponseFormat::JsonSchema {
                name: "response".to_owned(),
                schema,
                strict: None,
                description: None,
            }),
            (Some("application/json"), None) => Some(ResponseFormat::JsonObject),
            _ => None,
        };
        if let Some(tc) = get2(g, "thinkingConfig", "thinking_config") {
            let budget = get2(tc, "thinkingBudget", "thinking_budget").and_then(Value::as_i64);
            let level = get2(tc, "thinkingLevel", "thinking_level")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase);
            let include = get2(tc, "includeThoughts", "include_thoughts")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            r.reasoning = Some(ReasoningConfig {
                disabled: budget == Some(0),
                budget_tokens: budget.filter(|b| *b > 0).map(|b| b as u64),
                effort: level.or_else(|| (budget == Some(-1)).then(|| "medium".to_owned())),
                include_thoughts: include,
            });
        }
    }
    Ok(r)
}

/// The text of a `functionResponse.response`, and whether it reports an error.
fn response_text(response: &Value) -> (String, bool) {
    match response {
        Value::Object(o) if o.len() == 1 && o.contains_key("output") => match &o["output"] {
            Value::String(t) => (t.clone(), false),
            other => (other.to_string(), false),
        },
        Value::Object(o) if o.len() == 1 && o.contains_key("error") => match &o["error"] {
            Value::String(t) => (t.clone(), true),
            other => (other.to_string(), true),
        },
        Value::String(t) => (t.clone(), false),
        Value::Null => (String::new(), false),
        other => (other.to_string(), false),
    }
}

/// Marks a wrapped signature.
const SIG_MARK: &str = "octollm-sig:";

/// A signature as a Gemini client sees it. The SDK base64-decodes `thoughtSignature` and encodes it
/// again when replaying, so a canonical standard-base64 signature (Anthropic's) survives as is;
/// anything else (a URL-safe Responses `encrypted_content`, say) is sent as base64 of
/// `octollm-sig:<signature>` and unwrapped when the client replays it.
pub(crate) fn wrap_signature(sig: &str) -> String {
    let canonical = ids::base64_decode(sig)
        .is_some_and(|bytes| ids::base64_encode(&bytes, false) == sig && !sig.is_empty());
    if canonical {
        sig.to_owned()
    } else {
        ids::base64_encode(format!("{SIG_MARK}{sig}").as_bytes(), false)
    }
}

/// An Anthropic `redacted_thinking` payload as a Gemini client's `thoughtSignature`.
pub(crate) fn wrap_redacted(data: &str) -> String {
    ids::base64_encode(format!("{REDACTED_MARK}{data}").as_bytes(), false)
}

/// What a Gemini client replays in `thoughtSignature`.
#[derive(Debug, PartialEq, Eq)]
enum Replayed {
    Signature(String),
    Redacted(String),
}

fn unwrap_signature(sig: &str) -> Replayed {
    let text = ids::base64_decode(sig).and_then(|b| String::from_utf8(b).ok());
    if let Some(text) = text {
        if let Some(inner) = text.strip_prefix(SIG_MARK) {
            return Replayed::Signature(inner.to_owned());
        }
        if let Some(inner) = text.strip_prefix(REDACTED_MARK) {
            return Replayed::Redacted(inner.to_owned());
        }
    }
    Replayed::Signature(sig.to_owned())
}

// ----------------------------------------------------------------------------------- request out

/// Writes a `generateContent` request body (the model and action go into the URL).
pub(crate) fn encode_request(r: &CanonicalRequest) -> Result<Value, Error> {
    if r.n.is_some_and(|n| n > 1) {
        return Err(unsupported(
            "n",
            "more than one choice per request is not supported through a converter; `n` must be 1",
        ));
    }
    let mut body = Map::new();
    // id → name of every call so far, for function responses that lack a name.
    let mut call_names: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    let mut contents: Vec<(Role, Vec<Value>)> = Vec::with_capacity(r.messages.len());
    for (i, m) in r.messages.iter().enumerate() {
        let mut parts = Vec::with_capacity(m.parts.len());
        let mut trailing = Vec::new();
        for p in &m.parts {
            match p {
                Part::Text(t) | Part::Refusal(t) => parts.push(json!({"text": t})),
                Part::Image(media) => parts.push(media_part(media, "image/jpeg")),
                Part::Document { media, .. } => parts.push(media_part(media, "application/pdf")),
                Part::Audio { data, format } => parts.push(
                    json!({"inlineData": {"mimeType": format!("audio/{format}"), "data": data}}),
                ),
                Part::Thinking(t) => match &t.signature {
                    Some(sig) => parts
                        .push(json!({"text": t.text, "thought": true, "thoughtSignature": sig})),
                    None => tracing::debug!("dropping a thought without a Gemini signature"),
                },
                Part::ToolCall(c) => {
                    call_names.insert(&c.id, &c.name);
                    let mut call = Map::new();
                    if !ids::is_synthesized(&c.id) {
                        call.insert("id".into(), c.id.clone().into());
                    }
                    call.insert("name".into(), c.name.clone().into());
                    call.insert("args".into(), args_object(&c.arguments));
                    let mut part = json!({"functionCall": call});
                    if let Some(sig) = &c.signature {
                        part["thoughtSignature"] = sig.clone().into();
                    }
                    parts.push(part);
                }
                Part::ToolResult(res) => {
                    let name = res
                        .name
                        .clone()
                        .or_else(|| call_names.get(res.id.as_str()).map(|n| (*n).to_owned()))
                        .ok_or_else(|| {
                            bad(
                                &format!("messages[{i}]"),
                                format!("tool result `{}` answers no known function call", res.id),
                            )
                        })?;
                    let key = if res.is_error { "error" } else { "output" };
                    let mut fr = Map::new();
                    if !ids::is_synthesized(&res.id) {
                        fr.insert("id".into(), res.id.clone().into());
                    }
                    fr.insert("name".into(), name.into());
                    fr.insert("response".into(), json!({ key: res.text() }));
                    parts.push(json!({"functionResponse": fr}));
                    for c in &res.content {
                        match c {
                            Part::Image(media) => trailing.push(media_part(media, "image/jpeg")),
                            Part::Document { media, .. } => {
                                trailing.push(media_part(media, "application/pdf"));
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        parts.extend(trailing);
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some((role, existing)) if *role == m.role => existing.extend(parts),
            _ => contents.push((m.role, parts)),
        }
    }
    body.insert(
        "contents".into(),
        contents
            .into_iter()
            .map(|(role, parts)| {
                json!({"role": if role == Role::User { "user" } else { "model" }, "parts": parts})
            })
            .collect(),
    );
    if !r.system.is_empty() {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": r.system.iter().map(|t| json!({"text": t})).collect::<Vec<_>>()}),
        );
    }
    if !r.tools.is_empty() {
        let decls: Vec<Value> = r
            .tools
            .iter()
            .map(|t| {
                let mut d = Map::new();
                d.insert("name".into(), t.name.clone().into());
                put(&mut d, "description", t.description.clone());
                put(
                    &mut d,
                    "parameters",
                    t.parameters.as_ref().and_then(schema::to_gemini),
                );
                Value::Object(d)
            })
            .collect();
        body.insert("tools".into(), json!([{"functionDeclarations": decls}]));
        if let Some(choice) = &r.tool_choice {
            let cfg = match choice {
                ToolChoice::Auto => json!({"mode": "AUTO"}),
                ToolChoice::None => json!({"mode": "NONE"}),
                ToolChoice::Required => json!({"mode": "ANY"}),
                ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
                ToolChoice::Allowed { required, names } => json!({
                    "mode": if *required { "ANY" } else { "AUTO" },
                    "allowedFunctionNames": names,
                }),
            };
            body.insert("toolConfig".into(), json!({"functionCallingConfig": cfg}));
        }
        if r.parallel_tool_calls == Some(false) {
            dropped("parallel_tool_calls", ME);
        }
    }
    let mut g = Map::new();
    put(&mut g, "temperature", r.temperature.map(num));
    put(&mut g, "topP", r.top_p.map(num));
    put(&mut g, "topK", r.top_k);
    put(&mut g, "maxOutputTokens", r.max_tokens);
    if !r.stop.is_empty() {
        let mut stop = r.stop.clone();
        if stop.len() > 5 {
            tracing::debug!("Gemini accepts at most 5 stop sequences; dropping the rest");
            stop.truncate(5);
        }
        g.insert("stopSequences".into(), json!(stop));
    }
    put(&mut g, "seed", r.seed);
    put(&mut g, "presencePenalty", r.presence_penalty.map(num));
    put(&mut g, "frequencyPenalty", r.frequency_penalty.map(num));
    match &r.response_format {
        Some(ResponseFormat::JsonObject) => {
            g.insert("responseMimeType".into(), "application/json".into());
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            g.insert("responseMimeType".into(), "application/json".into());
            g.insert("responseJsonSchema".into(), schema.clone());
        }
        _ => {}
    }
    if let Some(reasoning) = r.reasoning.as_ref().filter(|x| x.enabled()) {
        let mut tc = Map::new();
        put(&mut tc, "thinkingBudget", reasoning.budget_or_from_effort());
        if reasoning.include_thoughts {
            tc.insert("includeThoughts".into(), true.into());
        }
        if !tc.is_empty() {
            g.insert("thinkingConfig".into(), Value::Object(tc));
        }
    }
    if !g.is_empty() {
        body.insert("generationConfig".into(), Value::Object(g));
    }
    if r.user.is_some() {
        dropped("user", ME);
    }
    Ok(Value::Object(body))
}

fn media_part(media: &Media, default_type: &str) -> Value {
    match media {
        Media::Base64 { media_type, data } => {
            json!({"inlineData": {"mimeType": media_type, "data": data}})
        }
        Media::Url { url, media_type } => {
            let mime = media_type
                .clone()
                .or_else(|| guess_from_url(url).map(str::to_owned))
                .unwrap_or_else(|| default_type.to_owned());
            json!({"fileData": {"mimeType": mime, "fileUri": url}})
        }
    }
}

// ----------------------------------------------------------------------------------- response in

/// `finishReason` → stop reason.
pub(crate) fn stop_from(reason: &str) -> Option<StopReason> {
    Some(match reason {
        "MAX_TOKENS" => StopReason::MaxTokens,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION"
        | "MODEL_ARMOR" => StopReason::ContentFilter,
        "" | "FINISH_REASON_UNSPECIFIED" => return None,
        _ => StopReason::EndTurn,
    })
}

/// Stop reason → `finishReason`.
pub(crate) fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens => "MAX_TOKENS",
        StopReason::ContentFilter => "SAFETY",
        _ => "STOP",
    }
}

/// The parts of one candidate, with call ids synthesised from `response_id` and `calls` (the
/// number of calls seen before in this response).
pub(crate) fn candidate_parts(
    candidate: &Value,
    response_id: &str,
    calls: &mut usize,
    out: &mut Vec<Part>,
) {
    for p in candidate
        .at("content", "parts")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        let signature = get2(p, "thoughtSignature", "thought_signature")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(fc) = get2(p, "functionCall", "function_call") {
            let id = s(fc, "id")
                .filter(|x| !x.is_empty())
                .map_or_else(|| ids::synthesized_id(response_id, *calls), str::to_owned);
            *calls += 1;
            out.push(Part::ToolCall(ToolCall {
                id,
                name: s(fc, "name").unwrap_or_default().to_owned(),
                arguments: fc
                    .get("args")
                    .map_or_else(|| "{}".to_owned(), Value::to_string),
                signature,
            }));
        } else if let Some(text) = s(p, "text") {
            if p.get("thought").and_then(Value::as_bool) == Some(true) {
                out.push(Part::Thinking(Thinking {
                    text: text.to_owned(),
                    signature,
                    redacted: None,
                }));
            } else {
                if signature.is_some() {
                    tracing::debug!("dropping an optional thoughtSignature on a text part");
                }
                if !text.is_empty() {
                    out.push(Part::Text(text.to_owned()));
                }
            }
        } else {
            tracing::debug!("dropping a Gemini output part other protocols cannot express");
        }
    }
}

/// Reads a `GenerateContentResponse`.
pub(crate) fn decode_response(v: &Value) -> Result<CanonicalResponse, Error> {
    let id = get2(v, "responseId", "response_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let candidate = arr(v, "candidates").first().unwrap_or(&Value::Null);
    let mut parts = Vec::new();
    let mut calls = 0;
    candidate_parts(candidate, &id, &mut calls, &mut parts);
    let mut stop = get2(candidate, "finishReason", "finish_reason")
        .and_then(Value::as_str)
        .and_then(stop_from);
    if candidate.is_null()
        && get2(v, "promptFeedback", "prompt_feedback")
            .and_then(|f| get2(f, "blockReason", "block_reason"))
            .is_some()
    {
        stop = Some(StopReason::ContentFilter);
    }
    Ok(CanonicalResponse {
        model: get2(v, "modelVersion", "model_version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        id,
        created: None,
        parts,
        stop,
        stop_sequence: None,
        usage: get2(v, "usageMetadata", "usage_metadata").and_then(Usage::from_gemini),
    })
}

// ---------------------------------------------------------------------------------- response out

/// One output part for a Gemini client.
pub(crate) fn encode_part(p: &Part) -> Option<Value> {
    Some(match p {
        Part::Text(t) | Part::Refusal(t) => json!({"text": t}),
        Part::Thinking(t) => {
            let mut part = json!({"text": t.text, "thought": true});
            if let Some(data) = &t.redacted {
                part["thoughtSignature"] = wrap_redacted(data).into();
            } else if let Some(sig) = &t.signature {
                part["thoughtSignature"] = wrap_signature(sig).into();
            }
            part
        }
        Part::ToolCall(c) => json!({"functionCall": {
            "id": ids::fold_signature(&c.id, c.signature.as_deref()),
            "name": c.name,
            "args": args_object(&c.arguments),
        }}),
        _ => return None,
    })
}

/// Writes a `GenerateContentResponse`.
pub(crate) fn encode_response(r: &CanonicalResponse) -> Value {
    let mut parts: Vec<Value> = r.parts.iter().filter_map(encode_part).collect();
    if parts.is_empty() {
        parts.push(json!({"text": ""}));
    }
    let mut out = json!({
        "candidates": [{
            "content": {"role": "model", "parts": parts},
            "finishReason": finish_reason(r.effective_stop()),
            "index": 0,
        }],
        "modelVersion": r.model,
        "responseId": r.id,
    });
    out["usageMetadata"] = r.usage.unwrap_or_default().to_gemini();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_request(body: &Value, route: &RouteParams) -> Result<CanonicalRequest, Error> {
        crate::testing::decode(Protocol::Gemini, body, route)
    }

    #[test]
    fn url_safe_inline_data_is_read_as_standard_base64() {
        let route = RouteParams {
            model: Some("g".into()),
            stream: None,
        };
        let r = decode_request(
            &json!({"contents": [{"role": "user", "parts": [
                {"inline_data": {"mime_type": "image/png", "data": "iVBO-_8"}}
            ]}]}),
            &route,
        )
        .unwrap();
        assert_eq!(
            r.messages[0].parts[0],
            Part::Image(Media::Base64 {
                media_type: "image/png".into(),
                data: "iVBO+/8=".into()
            })
        );
    }

    #[test]
    fn responses_pair_with_calls_by_name() {
        let route = RouteParams {
            model: Some("g".into()),
            stream: Some(true),
        };
        let r = decode_request(
            &json!({"contents": [
                {"role": "user", "parts": [{"text": "go"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "a", "args": {}}}, {"functionCall": {"name": "b", "args": {"x": 1}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "b", "response": {"output": "B"}}}, {"functionResponse": {"name": "a", "response": {"error": "boom"}}}]}
            ]}),
            &route,
        )
        .unwrap();
        assert_eq!(r.model, "g");
        assert!(r.stream);
        let Part::ToolResult(first) = &r.messages[2].parts[0] else {
            panic!()
        };
        assert_eq!(first.id, "call_1_1");
        assert_eq!(first.text(), "B");
        let Part::ToolResult(second) = &r.messages[2].parts[1] else {
            panic!()
        };
        assert_eq!(second.id, "call_1_0");
        assert!(second.is_error);
    }

    #[test]
    fn signatures_are_wrapped_for_clients_and_unwrapped_back() {
        let part = encode_part(&Part::Thinking(Thinking {
            text: "t".into(),
            signature: Some("gAAAA-_x".into()),
            redacted: None,
        }))
        .unwrap();
        let wrapped = part["thoughtSignature"].as_str().unwrap();
        assert_eq!(
            unwrap_signature(wrapped),
            Replayed::Signature("gAAAA-_x".into())
        );
        // Canonical base64 (Anthropic's signatures) is sent unchanged and comes back unchanged.
        assert_eq!(wrap_signature("EqQBCkgI"), "EqQBCkgI");
        assert_eq!(
            unwrap_signature("EqQBCkgI"),
            Replayed::Signature("EqQBCkgI".into())
        );
        assert_eq!(
            unwrap_signature(&wrap_redacted("blob")),
            Replayed::Redacted("blob".into())
        );
    }

    #[test]
    fn synthesized_ids_stay_out_of_gemini_requests() {
        let r = CanonicalRequest {
            messages: vec![
                Message {
                    role: Role::Assistant,
                    parts: vec![Part::ToolCall(ToolCall {
                        id: ids::synthesized_id("r", 0),
                        name: "f".into(),
                        arguments: "{}".into(),
                        signature: Some("c2ln".into()),
                    })],
                },
                Message {
                    role: Role::User,
                    parts: vec![Part::ToolResult(ToolResult {
                        id: ids::synthesized_id("r", 0),
                        name: None,
                        content: vec![Part::Text("ok".into())],
                        is_error: false,
                    })],
                },
            ],
            ..CanonicalRequest::default()
        };
        let v = encode_request(&r).unwrap();
        assert_eq!(
            v["contents"][0]["parts"][0],
            json!({"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"})
        );
        assert_eq!(
            v["contents"][1]["parts"][0],
            json!({"functionResponse": {"name": "f", "response": {"output": "ok"}}})
        );
    }
}
