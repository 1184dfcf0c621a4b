//! Google Gemini (`/{v1,v1beta}/models/{model}:generateContent` / `:streamGenerateContent`):
//! `GenerateContentResponse` bodies; streams as `data: <response>` events with CRLF separators
//! (`alt=sse`; no comments, no `[DONE]`) or as one JSON array (without `alt=sse`); cumulative
//! `usageMetadata`; whole `functionCall` parts ending with `STOP`; `{"error":{code,message,status}}`.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use super::{Event, Mode, array_field, collect_text};
use crate::reply::{DEFAULT_MODEL, Finish, Plan, Summary, ToolChoice};
use crate::sse;

/// `thoughtSignature` put on the first function call, as current Gemini models do
/// (base64 of `octo-mock`).
const THOUGHT_SIGNATURE: &str = "b2N0by1tb2Nr";

/// `thoughtSignature` of the thought part sent for the `thinking` directive (base64 of
/// `mock-gemini-thought-signature`).
pub(crate) const THINKING_SIGNATURE: &str = "bW9jay1nZW1pbmktdGhvdWdodC1zaWduYXR1cmU=";

/// `value[camel]`, or `value[snake]` (the API accepts both spellings).
fn field<'a>(value: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    value.get(camel).or_else(|| value.get(snake))
}

pub(crate) fn summarize(body: &Value, model: &str) -> Summary {
    let contents = array_field(body, "contents");
    let tool_result = contents.last().and_then(|c| {
        let response = c
            .get("parts")?
            .as_array()?
            .iter()
            .rev()
            .find_map(|p| field(p, "functionResponse", "function_response"))?;
        Some(
            response
                .get("response")
                .map_or_else(String::new, |r| r.to_string()),
        )
    });
    let user_text = contents
        .iter()
        .rev()
        .filter(|c| matches!(c.get("role").and_then(Value::as_str), None | Some("user")))
        .find_map(|c| c.get("parts").and_then(collect_text));
    let mut tools: Vec<String> = array_field(body, "tools")
        .iter()
        .filter_map(|t| field(t, "functionDeclarations", "function_declarations"))
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|d| d.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let tool_schemas = array_field(body, "tools")
        .iter()
        .filter_map(|t| field(t, "functionDeclarations", "function_declarations"))
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|d| {
            let name = d.get("name")?.as_str()?;
            let schema = d
                .get("parameters")
                .or_else(|| field(d, "parametersJsonSchema", "parameters_json_schema"))?;
            Some((name.to_owned(), schema.clone()))
        })
        .collect();
    let config = field(body, "toolConfig", "tool_config")
        .and_then(|c| field(c, "functionCallingConfig", "function_calling_config"));
    let mode = config
        .and_then(|c| c.get("mode"))
        .and_then(Value::as_str)
        .unwrap_or("AUTO");
    let tool_choice = match mode {
        "ANY" => ToolChoice::Forced(None),
        "NONE" => ToolChoice::None,
        _ => ToolChoice::Auto,
    };
    let allowed: Vec<&str> = config
        .and_then(|c| field(c, "allowedFunctionNames", "allowed_function_names"))
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !allowed.is_empty() {
        tools.retain(|t| allowed.contains(&t.as_str()));
    }
    Summary {
        output: None,
        model: if model.is_empty() {
            DEFAULT_MODEL
        } else {
            model
        }
        .to_owned(),
        stream: false,
        include_usage: false,
        user_text,
        tool_result,
        tools,
        tool_schemas,
        tool_choice,
        stop: field(body, "generationConfig", "generation_config")
            .and_then(|c| field(c, "stopSequences", "stop_sequences"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
    }
}

/// The thought part of a reply with reasoning.
fn thought_part(plan: &Plan) -> Option<Value> {
    plan.thinking
        .map(|t| json!({"text": t, "thought": true, "thoughtSignature": THINKING_SIGNATURE}))
}

fn finish_reason(plan: &Plan) -> &'static str {
    match plan.finish {
        Finish::Stop | Finish::StopSequence | Finish::ToolCalls => "STOP",
        Finish::Length => "MAX_TOKENS",
    }
}

fn usage(plan: &Plan, candidates: u64) -> Value {
    json!({
        "promptTokenCount": plan.input_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": plan.input_tokens + candidates,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": plan.input_tokens}],
    })
}

fn call_parts(plan: &Plan) -> Vec<Value> {
    plan.tool_calls
        .iter()
        .map(|c| {
            let mut part = json!({"functionCall": {"name": c.name, "args": c.arguments_json()}});
            if c.index == 0 {
                part["thoughtSignature"] = THOUGHT_SIGNATURE.into();
            }
            part
        })
        .collect()
}

/// One `GenerateContentResponse`.
fn response(plan: &Plan, parts: Vec<Value>, finish: bool, candidates: u64) -> Value {
    let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if finish {
        candidate["finishReason"] = finish_reason(plan).into();
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": usage(plan, candidates),
        "modelVersion": plan.model,
        "responseId": format!("mockresp-{}", plan.id),
    })
}

pub(crate) fn render_unary(plan: &Plan) -> Bytes {
    let mut parts: Vec<Value> = thought_part(plan).into_iter().collect();
    if plan.tool_calls.is_empty() {
        parts.push(json!({"text": plan.text()}));
    } else {
        parts.extend(call_parts(plan));
    }
    sse::to_vec(&response(plan, parts, true, plan.output_tokens)).into()
}

pub(crate) fn render_stream(plan: &Plan, mode: Mode) -> Vec<Event> {
    // (JSON object, is content) in order; framed below.
    let mut chunks: Vec<(Value, bool)> = Vec::new();
    if let Some(part) = thought_part(plan) {
        chunks.push((response(plan, vec![part], false, 1), true));
    }
    if plan.tool_calls.is_empty() {
        let n = plan.pieces.len();
        for (i, piece) in plan.pieces.iter().enumerate() {
            let parts = vec![json!({"text": piece})];
            chunks.push((response(plan, parts, i + 1 == n, i as u64 + 1), true));
        }
        if n == 0 {
            chunks.push((response(plan, vec![json!({"text": ""})], true, 0), false));
        }
    } else {
        let n = plan.tool_calls.len();
        for (i, part) in call_parts(plan).into_iter().enumerate() {
            let done = 2 * (i as u64 + 1);
            chunks.push((response(plan, vec![part], i + 1 == n, done), true));
        }
    }
    let mut events = Vec::with_capacity(chunks.len() + 1);
    for (i, (chunk, content)) in chunks.into_iter().enumerate() {
        let json = sse::to_vec(&chunk);
        let frame = match mode {
            Mode::JsonArray => sse::framed(if i == 0 { b"[" } else { b",\r\n" }, &json, b""),
            Mode::Sse | Mode::Unary => sse::data_crlf(&json),
        };
        events.push(Event { frame, content });
    }
    if mode == Mode::JsonArray {
        events.push(Event::new(Bytes::from_static(b"]")));
    }
    events
}

fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        409 => "ABORTED",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if s >= 500 => "INTERNAL",
        _ => "INVALID_ARGUMENT",
    }
}

fn error_json(status: StatusCode, message: &str) -> Vec<u8> {
    sse::to_vec(&json!({"error": {
        "code": status.as_u16(),
        "message": message,
        "status": status_name(status),
    }}))
}

/// The in-band error as the `seq`-th frame: a `data:` event, or an array element that also closes
/// the array.
pub(crate) fn stream_error(message: &str, mode: Mode, seq: usize) -> Bytes {
    let json = error_json(StatusCode::INTERNAL_SERVER_ERROR, message);
    match mode {
        Mode::JsonArray => sse::framed(if seq == 0 { b"[" } else { b",\r\n" }, &json, b"]"),
        Mode::Sse | Mode::Unary => sse::data_crlf(&json),
    }
}

/// `{"error":{"code","message","status"}}`.
pub(crate) fn error_body(status: StatusCode, message: &str) -> Bytes {
    error_json(status, message).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(body: Value, directives: &str) -> Plan {
        super::super::test_plan(summarize(&body, "gem"), directives)
    }

    fn sse_json(events: &[Event]) -> Vec<Value> {
        events
            .iter()
            .map(|e| {
                let text = std::str::from_utf8(&e.frame).unwrap();
                let json = text
                    .strip_prefix("data: ")
                    .unwrap()
                    .strip_suffix("\r\n\r\n")
                    .unwrap();
                serde_json::from_str(json).unwrap()
            })
            .collect()
    }

    #[test]
    fn summary_reads_both_casings() {
        let s = summarize(
            &json!({
                "contents": [
                    {"role": "user", "parts": [{"text": "hi "}, {"text": "there"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                    {"role": "user", "parts": [{"function_response": {"name": "f", "response": {"output": "ok"}}}]}
                ],
                "tools": [{"function_declarations": [{"name": "f"}, {"name": "g"}]}],
                "tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["g"]}}
            }),
            "gem",
        );
        assert_eq!(s.model, "gem");
        assert_eq!(s.user_text.as_deref(), Some("hi there"));
        assert_eq!(s.tool_result.as_deref(), Some(r#"{"output":"ok"}"#));
        assert_eq!(s.tools, ["g"]);
        assert_eq!(s.tool_choice, ToolChoice::Forced(None));
    }

    #[test]
    fn sse_stream_has_cumulative_usage_and_final_stop() {
        let p = plan(json!({"contents": [{"parts": [{"text": "abc"}]}]}), "");
        let events = render_stream(&p, Mode::Sse);
        let chunks = sse_json(&events);
        let n = chunks.len();
        assert_eq!(n, p.pieces.len());
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c["usageMetadata"]["candidatesTokenCount"], i + 1);
            assert_eq!(c["modelVersion"], "gem");
            assert_eq!(c["candidates"][0].get("finishReason").is_some(), i + 1 == n);
        }
        assert_eq!(chunks[n - 1]["candidates"][0]["finishReason"], "STOP");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
            .collect();
        assert_eq!(text, "Hello from octo-mock. You said: abc");
    }

    #[test]
    fn json_array_stream_parses_as_array() {
        let p = plan(
            json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{"name": "f"}]}]}),
            "[mock:tools=2]",
        );
        let events = render_stream(&p, Mode::JsonArray);
        let all: Vec<u8> = events.iter().flat_map(|e| e.frame.to_vec()).collect();
        let v: Value = serde_json::from_slice(&all).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 2);
        assert_eq!(
            arr[0]["candidates"][0]["content"]["parts"][0]["functionCall"]["args"]["n"],
            0
        );
        assert_eq!(
            arr[0]["candidates"][0]["content"]["parts"][0]["thoughtSignature"],
            THOUGHT_SIGNATURE
        );
        assert_eq!(arr[1]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(arr[1]["usageMetadata"]["candidatesTokenCount"], 4);

        let mut cut: Vec<u8> = events[0].frame.to_vec();
        cut.extend_from_slice(&stream_error("boom", Mode::JsonArray, 1));
        let v: Value = serde_json::from_slice(&cut).unwrap();
        assert_eq!(v[1]["error"]["status"], "INTERNAL");
    }

    #[test]
    fn thinking_and_stop_sequences() {
        let body = json!({"contents": [{"parts": [{"text": "a|STOP|b"}]}],
                          "generation_config": {"stop_sequences": ["|STOP|"]}});
        let p = plan(body, "[mock:thinking]");
        let v: Value = serde_json::from_slice(&render_unary(&p)).unwrap();
        let parts = &v["candidates"][0]["content"]["parts"];
        assert_eq!(parts[0]["thought"], true);
        assert_eq!(parts[0]["thoughtSignature"], THINKING_SIGNATURE);
        assert_eq!(parts[1]["text"], "Hello from octo-mock. You said: a");
        assert_eq!(v["candidates"][0]["finishReason"], "STOP");
        let chunks = sse_json(&render_stream(&p, Mode::Sse));
        assert_eq!(
            chunks[0]["candidates"][0]["content"]["parts"][0]["thoughtSignature"],
            THINKING_SIGNATURE
        );
    }

    #[test]
    fn unary_and_errors() {
        let p = plan(
            json!({"contents": [{"parts": [{"text": "x"}]}]}),
            "[mock:max_tokens]",
        );
        let v: Value = serde_json::from_slice(&render_unary(&p)).unwrap();
        assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
        assert_eq!(v["usageMetadata"]["totalTokenCount"], p.total_tokens());
        let e: Value =
            serde_json::from_slice(&error_body(StatusCode::TOO_MANY_REQUESTS, "m")).unwrap();
        assert_eq!(e["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(e["error"]["code"], 429);
    }
}
