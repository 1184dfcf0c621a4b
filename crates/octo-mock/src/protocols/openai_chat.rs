//! OpenAI Chat Completions (`POST /v1/chat/completions`): `chat.completion` bodies, data-only SSE
//! chunks (role chunk first, tool-call `id`/`type`/`name` on the first fragment only, finish chunk,
//! optional `choices: []` usage chunk, `data: [DONE]`), and `{"error":{…}}` errors (also used by
//! the Responses API and for unknown routes).

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use super::{Event, array_field, collect_text, str_field, wants_stream};
use crate::reply::{CREATED, DEFAULT_MODEL, Finish, Plan, Summary, ToolChoice};
use crate::rules::Dialect;
use crate::sse;

const FINGERPRINT: &str = "fp_octo_mock";

/// `signature` of the thinking block sent for the `thinking` directive, in LiteLLM's
/// `thinking_blocks` extension (base64 of `mock-chat-signature`).
pub(crate) const SIGNATURE: &str = "bW9jay1jaGF0LXNpZ25hdHVyZQ==";

pub(crate) fn summarize(body: &Value) -> Summary {
    let messages = array_field(body, "messages");
    let role = |m: &Value| str_field(m, "role").unwrap_or_default().to_owned();
    let tool_result = messages
        .last()
        .filter(|m| role(m) == "tool")
        .map(|m| m.get("content").and_then(collect_text).unwrap_or_default());
    let user_text = messages
        .iter()
        .rev()
        .filter(|m| role(m) == "user")
        .find_map(|m| m.get("content").and_then(collect_text));
    let tools = array_field(body, "tools")
        .iter()
        .filter_map(|t| {
            t.pointer("/function/name")
                .or_else(|| t.pointer("/custom/name"))
                .or_else(|| t.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    let tool_schemas = array_field(body, "tools")
        .iter()
        .filter_map(|t| {
            let name = t.pointer("/function/name")?.as_str()?;
            Some((name.to_owned(), t.pointer("/function/parameters")?.clone()))
        })
        .collect();
    Summary {
        output: None,
        model: str_field(body, "model").unwrap_or(DEFAULT_MODEL).to_owned(),
        stream: wants_stream(body),
        include_usage: body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true)),
        user_text,
        tool_result,
        tools,
        tool_schemas,
        tool_choice: tool_choice(body.get("tool_choice")),
        stop: match body.get("stop") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        },
    }
}

fn tool_choice(choice: Option<&Value>) -> ToolChoice {
    let Some(choice) = choice else {
        return ToolChoice::Auto;
    };
    match (choice.as_str(), str_field(choice, "type")) {
        (Some("none"), _) => ToolChoice::None,
        (Some("required"), _) => ToolChoice::Forced(None),
        (_, Some("function")) => ToolChoice::Forced(
            choice
                .pointer("/function/name")
                .and_then(Value::as_str)
                .map(str::to_owned),
        ),
        (_, Some("custom")) => ToolChoice::Forced(
            choice
                .pointer("/custom/name")
                .and_then(Value::as_str)
                .map(str::to_owned),
        ),
        (_, Some("allowed_tools"))
            if choice
                .pointer("/allowed_tools/mode")
                .and_then(Value::as_str)
                == Some("required") =>
        {
            ToolChoice::Forced(None)
        }
        _ => ToolChoice::Auto,
    }
}

fn finish_reason(plan: &Plan) -> &'static str {
    match plan.finish {
        Finish::Stop | Finish::StopSequence => "stop",
        Finish::Length => "length",
        Finish::ToolCalls => "tool_calls",
    }
}

fn usage(plan: &Plan) -> Value {
    json!({
        "prompt_tokens": plan.input_tokens,
        "completion_tokens": plan.output_tokens,
        "total_tokens": plan.total_tokens(),
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

pub(crate) fn render_unary(plan: &Plan) -> Bytes {
    let mut message = json!({
        "role": "assistant",
        "content": if plan.tool_calls.is_empty() { Value::String(plan.text()) } else { Value::Null },
        "refusal": null,
        "annotations": [],
    });
    if let Some(thinking) = plan.thinking {
        match Dialect::of(&plan.model) {
            Dialect::Vllm => message["reasoning"] = thinking.into(),
            Dialect::DeepSeek | Dialect::Kimi => message["reasoning_content"] = thinking.into(),
            Dialect::Default => {
                message["reasoning_content"] = thinking.into();
                message["thinking_blocks"] =
                    json!([{"type": "thinking", "thinking": thinking, "signature": SIGNATURE}]);
            }
        }
    }
    if !plan.tool_calls.is_empty() {
        message["tool_calls"] = plan
            .tool_calls
            .iter()
            .map(|c| {
                json!({
                    "id": format!("call_mock_{}", c.id),
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments}
                })
            })
            .collect();
    }
    let body = json!({
        "id": format!("chatcmpl-mock-{}", plan.id),
        "object": "chat.completion",
        "created": CREATED,
        "model": plan.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(plan),
        }],
        "usage": usage(plan),
        "system_fingerprint": FINGERPRINT,
        "service_tier": "default",
    });
    sse::to_vec(&body).into()
}

/// Chunk framing shared by every chunk of one stream: `prefix + delta + suffix`.
struct Chunks {
    prefix: Vec<u8>,
    open_suffix: &'static [u8],
}

impl Chunks {
    fn new(plan: &Plan) -> Self {
        let mut prefix = Vec::with_capacity(160 + plan.model.len());
        prefix.extend_from_slice(br#"data: {"id":"chatcmpl-mock-"#);
        prefix.extend_from_slice(plan.id.to_string().as_bytes());
        prefix.extend_from_slice(br#"","object":"chat.completion.chunk","created":"#);
        prefix.extend_from_slice(CREATED.to_string().as_bytes());
        prefix.extend_from_slice(br#","model":"#);
        sse::push_json_str(&mut prefix, &plan.model);
        prefix.extend_from_slice(br#","system_fingerprint":""#);
        prefix.extend_from_slice(FINGERPRINT.as_bytes());
        prefix.extend_from_slice(b"\",");
        if plan.include_usage {
            prefix.extend_from_slice(br#""usage":null,"#);
        }
        prefix.extend_from_slice(br#""choices":[{"index":0,"delta":"#);
        Chunks {
            prefix,
            open_suffix: br#","logprobs":null,"finish_reason":null}]}"#,
        }
    }

    /// A chunk whose choice carries `delta` and no finish reason.
    fn delta(&self, delta: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(self.prefix.len() + delta.len() + 48);
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(delta);
        out.extend_from_slice(self.open_suffix);
        out.extend_from_slice(b"\n\n");
        out.into()
    }

    fn finish(&self, reason: &str) -> Bytes {
        let mut out = self.prefix.clone();
        out.extend_from_slice(br#"{},"logprobs":null,"finish_reason":""#);
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\"}]}\n\n");
        out.into()
    }
}

pub(crate) fn render_stream(plan: &Plan) -> Vec<Event> {
    let chunks = Chunks::new(plan);
    let mut events = Vec::with_capacity(plan.pieces.len() + 3 * plan.tool_calls.len() + 6);
    let thinking = |events: &mut Vec<Event>| {
        if let Some(thinking) = plan.thinking {
            let dialect = Dialect::of(&plan.model);
            let field = if dialect == Dialect::Vllm {
                "reasoning"
            } else {
                "reasoning_content"
            };
            let text = json!({ field: thinking });
            events.push(Event::content(chunks.delta(&sse::to_vec(&text))));
            if dialect == Dialect::Default {
                let sig = json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": SIGNATURE}]});
                events.push(Event::content(chunks.delta(&sse::to_vec(&sig))));
            }
        }
    };
    if plan.tool_calls.is_empty() {
        events.push(Event::new(
            chunks.delta(br#"{"role":"assistant","content":""}"#),
        ));
        thinking(&mut events);
        for piece in &plan.pieces {
            let mut delta = Vec::with_capacity(piece.len() + 16);
            delta.extend_from_slice(br#"{"content":"#);
            sse::push_json_str(&mut delta, piece);
            delta.push(b'}');
            events.push(Event::content(chunks.delta(&delta)));
        }
    } else {
        events.push(Event::new(
            chunks.delta(br#"{"role":"assistant","content":null,"refusal":null}"#),
        ));
        thinking(&mut events);
        for call in &plan.tool_calls {
            let head = json!({"tool_calls": [{
                "index": call.index,
                "id": format!("call_mock_{}", call.id),
                "type": "function",
                "function": {"name": call.name, "arguments": ""}
            }]});
            events.push(Event::new(chunks.delta(&sse::to_vec(&head))));
            let (a, b) = call.fragments();
            for fragment in [a, b] {
                let delta = json!({"tool_calls": [{
                    "index": call.index,
                    "function": {"arguments": fragment}
                }]});
                events.push(Event::content(chunks.delta(&sse::to_vec(&delta))));
            }
        }
    }
    events.push(Event::new(chunks.finish(finish_reason(plan))));
    if plan.include_usage {
        let chunk = json!({
            "id": format!("chatcmpl-mock-{}", plan.id),
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": plan.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [],
            "usage": usage(plan),
        });
        events.push(Event::new(sse::data(&sse::to_vec(&chunk))));
    }
    events.push(Event::new(Bytes::from_static(sse::DONE)));
    events
}

pub(crate) fn stream_error(message: &str) -> Bytes {
    let body = json!({"error": {
        "message": message,
        "type": "server_error",
        "param": null,
        "code": "server_error"
    }});
    sse::data(&sse::to_vec(&body))
}

/// `{"error":{"message","type","param":null,"code"}}` with OpenAI's type/code for `status`.
pub(crate) fn error_body(status: StatusCode, message: &str) -> Bytes {
    let (kind, code) = match status.as_u16() {
        400 => ("invalid_request_error", "invalid_request"),
        401 => ("invalid_request_error", "invalid_api_key"),
        403 => ("permission_error", "permission_denied"),
        404 => ("invalid_request_error", "not_found"),
        405 => ("invalid_request_error", "method_not_allowed"),
        408 => ("timeout_error", "timeout"),
        409 => ("invalid_request_error", "conflict"),
        413 => ("invalid_request_error", "request_too_large"),
        422 => ("invalid_request_error", "unprocessable_entity"),
        429 => ("requests", "rate_limit_exceeded"),
        503 => ("server_error", "service_unavailable"),
        s if s >= 500 => ("server_error", "server_error"),
        _ => ("invalid_request_error", "invalid_request"),
    };
    let body = json!({"error": {
        "message": message,
        "type": kind,
        "param": null,
        "code": code
    }});
    sse::to_vec(&body).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(body: Value, directives: &str) -> Plan {
        super::super::test_plan(summarize(&body), directives)
    }

    fn data_json(frame: &Bytes) -> Value {
        let text = std::str::from_utf8(frame).unwrap();
        let json = text
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn summary_reads_messages_tools_and_choice() {
        let s = summarize(&json!({
            "model": "gpt-x", "stream": true, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "hello"}]},
                {"role": "assistant", "content": null, "tool_calls": []},
                {"role": "tool", "tool_call_id": "c", "content": "42"}
            ],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}}
        }));
        assert_eq!(s.model, "gpt-x");
        assert!(s.stream && s.include_usage);
        assert_eq!(s.user_text.as_deref(), Some("hello"));
        assert_eq!(s.tool_result.as_deref(), Some("42"));
        assert_eq!(s.tools, ["f"]);
        assert_eq!(s.tool_choice, ToolChoice::Forced(Some("f".into())));
        assert_eq!(
            tool_choice(Some(&json!("required"))),
            ToolChoice::Forced(None)
        );
        assert_eq!(tool_choice(Some(&json!("none"))), ToolChoice::None);
        assert_eq!(tool_choice(Some(&json!("auto"))), ToolChoice::Auto);
    }

    #[test]
    fn text_stream_shape() {
        let p = plan(
            json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "hi there"}]}),
            "",
        );
        let events = render_stream(&p);
        assert_eq!(events.last().unwrap().frame, sse::DONE);
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| data_json(&e.frame))
            .collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[0]["usage"], Value::Null);
        assert_eq!(chunks[0]["model"], "m");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello from octo-mock. You said: hi there");
        let n = chunks.len();
        assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[n - 1]["choices"], json!([]));
        assert_eq!(chunks[n - 1]["usage"]["completion_tokens"], p.pieces.len());
        assert_eq!(events.iter().filter(|e| e.content).count(), p.pieces.len());
    }

    #[test]
    fn tool_stream_has_ids_on_first_fragment_only() {
        let p = plan(
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}],
                   "tools": [{"type": "function", "function": {"name": "a"}},
                             {"type": "function", "function": {"name": "b"}}]}),
            "[mock:tools=2]",
        );
        let events = render_stream(&p);
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| data_json(&e.frame))
            .collect();
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        let mut calls: Vec<(String, String, String, String)> = vec![Default::default(); 2];
        for c in &chunks {
            for tc in c["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let call = &mut calls[tc["index"].as_u64().unwrap() as usize];
                call.0 += tc["id"].as_str().unwrap_or_default();
                call.1 += tc["type"].as_str().unwrap_or_default();
                call.2 += tc["function"]["name"].as_str().unwrap_or_default();
                call.3 += tc["function"]["arguments"].as_str().unwrap_or_default();
            }
        }
        assert_eq!(
            calls[0],
            (
                "call_mock_1".into(),
                "function".into(),
                "a".into(),
                r#"{"query":"mock","n":0}"#.into()
            )
        );
        assert_eq!(calls[1].0, "call_mock_2");
        assert_eq!(calls[1].2, "b");
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "tool_calls"
        );
        assert_eq!(events.iter().filter(|e| e.content).count(), 4);
    }

    #[test]
    fn thinking_and_stop() {
        let body = json!({"messages": [{"role": "user", "content": "a|STOP|b"}], "stop": "|STOP|"});
        let p = plan(body, "[mock:thinking]");
        let v: Value = serde_json::from_slice(&render_unary(&p)).unwrap();
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], "Hello from octo-mock. You said: a");
        assert_eq!(m["thinking_blocks"][0]["signature"], SIGNATURE);
        assert_eq!(m["reasoning_content"], crate::reply::THINKING_TEXT);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let events = render_stream(&p);
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| data_json(&e.frame))
            .collect();
        assert_eq!(
            chunks[1]["choices"][0]["delta"]["reasoning_content"],
            crate::reply::THINKING_TEXT
        );
        assert_eq!(
            chunks[2]["choices"][0]["delta"]["thinking_blocks"][0]["signature"],
            SIGNATURE
        );
    }

    #[test]
    fn unary_and_errors() {
        let p = plan(
            json!({"messages": [{"role": "user", "content": "x"}]}),
            "[mock:max_tokens]",
        );
        let v: Value = serde_json::from_slice(&render_unary(&p)).unwrap();
        assert_eq!(v["model"], DEFAULT_MODEL);
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["prompt_tokens"], 26);
        let e: Value =
            serde_json::from_slice(&error_body(StatusCode::TOO_MANY_REQUESTS, "m")).unwrap();
        assert_eq!(e["error"]["code"], "rate_limit_exceeded");
        assert_eq!(e["error"]["param"], Value::Null);
        let e = data_json(&stream_error("boom"));
        assert_eq!(e["error"]["message"], "boom");
    }
}
