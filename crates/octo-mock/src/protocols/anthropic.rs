//! Anthropic Messages (`POST /v1/messages`): `message` bodies, the `event:` SSE sequence
//! (`message_start` → per block `content_block_start` → `content_block_delta`* →
//! `content_block_stop` → `message_delta` with cumulative usage → `message_stop`, one `ping` after
//! the first block start), and `{"type":"error","error":{…}}` errors.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use super::{Event, array_field, collect_text, str_field, wants_stream};
use crate::reply::{DEFAULT_MODEL, Finish, Plan, Summary, ToolChoice};
use crate::sse;

/// `signature` of the thinking block sent for the `thinking` directive (base64 of
/// `mock-anthropic-signature`).
pub(crate) const SIGNATURE: &str = "bW9jay1hbnRocm9waWMtc2lnbmF0dXJl";

pub(crate) fn summarize(body: &Value) -> Summary {
    let messages = array_field(body, "messages");
    let is_user = |m: &&Value| str_field(m, "role") == Some("user");
    let tool_result = messages.last().filter(is_user).and_then(|m| {
        let blocks = m.get("content")?.as_array()?;
        let result = blocks
            .iter()
            .rev()
            .find(|b| str_field(b, "type") == Some("tool_result"))?;
        Some(
            result
                .get("content")
                .and_then(collect_text)
                .unwrap_or_default(),
        )
    });
    let user_text = messages
        .iter()
        .rev()
        .filter(is_user)
        .find_map(|m| m.get("content").and_then(collect_text));
    let tools = array_field(body, "tools")
        .iter()
        .filter(|t| matches!(str_field(t, "type"), None | Some("custom")))
        .filter_map(|t| str_field(t, "name").map(str::to_owned))
        .collect();
    let tool_schemas = array_field(body, "tools")
        .iter()
        .filter_map(|t| {
            Some((
                str_field(t, "name")?.to_owned(),
                t.get("input_schema")?.clone(),
            ))
        })
        .collect();
    let tool_choice = match body.get("tool_choice").and_then(|c| str_field(c, "type")) {
        Some("any") => ToolChoice::Forced(None),
        Some("tool") => ToolChoice::Forced(
            body.pointer("/tool_choice/name")
                .and_then(Value::as_str)
                .map(str::to_owned),
        ),
        Some("none") => ToolChoice::None,
        _ => ToolChoice::Auto,
    };
    Summary {
        output: None,
        model: str_field(body, "model").unwrap_or(DEFAULT_MODEL).to_owned(),
        stream: wants_stream(body),
        include_usage: false,
        user_text,
        tool_result,
        tools,
        tool_schemas,
        tool_choice,
        stop: array_field(body, "stop_sequences")
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
    }
}

fn stop_reason(plan: &Plan) -> &'static str {
    match plan.finish {
        Finish::Stop => "end_turn",
        Finish::StopSequence => "stop_sequence",
        Finish::Length => "max_tokens",
        Finish::ToolCalls => "tool_use",
    }
}

fn message_id(plan: &Plan) -> String {
    format!("msg_mock_{}", plan.id)
}

fn usage(plan: &Plan, output_tokens: u64) -> Value {
    json!({
        "input_tokens": plan.input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    })
}

pub(crate) fn render_unary(plan: &Plan) -> Bytes {
    let mut content: Vec<Value> = plan
        .thinking
        .map(|t| json!({"type": "thinking", "thinking": t, "signature": SIGNATURE}))
        .into_iter()
        .collect();
    if plan.tool_calls.is_empty() {
        content.push(json!({"type": "text", "text": plan.text()}));
    } else {
        content.extend(plan.tool_calls.iter().map(|c| {
            json!({
                "type": "tool_use",
                "id": format!("toolu_mock_{}", c.id),
                "name": c.name,
                "input": c.arguments_json(),
            })
        }));
    }
    let body = json!({
        "id": message_id(plan),
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": content,
        "stop_reason": stop_reason(plan),
        "stop_sequence": plan.stop_sequence,
        "usage": usage(plan, plan.output_tokens),
    });
    sse::to_vec(&body).into()
}

fn event(kind: &str, data: &Value) -> Event {
    Event::new(sse::event(kind, &sse::to_vec(data)))
}

/// `content_block_delta` for block `index` with `delta` = `{"type": <kind>, <field>: <text>}`.
fn delta(index: usize, kind: &str, field: &str, text: &str) -> Event {
    let mut data = Vec::with_capacity(text.len() + 96);
    data.extend_from_slice(br#"{"type":"content_block_delta","index":"#);
    data.extend_from_slice(index.to_string().as_bytes());
    data.extend_from_slice(br#","delta":{"type":""#);
    data.extend_from_slice(kind.as_bytes());
    data.extend_from_slice(b"\",\"");
    data.extend_from_slice(field.as_bytes());
    data.extend_from_slice(b"\":");
    sse::push_json_str(&mut data, text);
    data.extend_from_slice(b"}}");
    Event::content(sse::event("content_block_delta", &data))
}

pub(crate) fn render_stream(plan: &Plan) -> Vec<Event> {
    let mut events = Vec::with_capacity(plan.pieces.len() + 4 * plan.tool_calls.len() + 8);
    events.push(event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": message_id(plan),
            "type": "message",
            "role": "assistant",
            "model": plan.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage(plan, 1),
        }}),
    ));
    let ping = || event("ping", &json!({"type": "ping"}));
    let first = usize::from(plan.thinking.is_some());
    if let Some(thinking) = plan.thinking {
        events.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ));
        events.push(delta(0, "thinking_delta", "thinking", thinking));
        events.push(delta(0, "signature_delta", "signature", SIGNATURE));
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ));
    }
    if plan.tool_calls.is_empty() {
        events.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": first, "content_block": {"type": "text", "text": ""}}),
        ));
        events.push(ping());
        for piece in &plan.pieces {
            events.push(delta(first, "text_delta", "text", piece));
        }
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": first}),
        ));
    } else {
        for (i, call) in plan.tool_calls.iter().enumerate() {
            let index = first + i;
            events.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": index, "content_block": {
                    "type": "tool_use",
                    "id": format!("toolu_mock_{}", call.id),
                    "name": call.name,
                    "input": {},
                }}),
            ));
            if i == 0 {
                events.push(ping());
            }
            let (a, b) = call.fragments();
            events.push(delta(index, "input_json_delta", "partial_json", a));
            events.push(delta(index, "input_json_delta", "partial_json", b));
            events.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }
    let mut final_usage = usage(plan, plan.output_tokens);
    if let Some(map) = final_usage.as_object_mut() {
        map.remove("service_tier");
    }
    events.push(event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(plan), "stop_sequence": plan.stop_sequence},
            "usage": final_usage,
        }),
    ));
    events.push(event("message_stop", &json!({"type": "message_stop"})));
    events
}

/// `event: error` with an `overloaded_error`.
pub(crate) fn stream_error(message: &str) -> Bytes {
    let data = json!({"type": "error", "error": {"type": "overloaded_error", "message": message}});
    sse::event("error", &sse::to_vec(&data))
}

/// `{"type":"error","error":{"type","message"}}` with Anthropic's error type for `status`.
pub(crate) fn error_body(status: StatusCode, message: &str) -> Bytes {
    let kind = match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        409 => "conflict_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    };
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    sse::to_vec(&body).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(body: Value, directives: &str) -> Plan {
        super::super::test_plan(summarize(&body), directives)
    }

    use super::super::parse_named_events as parse;

    #[test]
    fn summary_reads_tool_results_and_choice() {
        let s = summarize(&json!({
            "model": "claude-x", "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "what is up"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "ok"}]}]}
            ],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}, {"type": "web_search_20250305", "name": "web_search"}],
            "tool_choice": {"type": "tool", "name": "f"}
        }));
        assert_eq!(s.model, "claude-x");
        assert_eq!(s.user_text.as_deref(), Some("what is up"));
        assert_eq!(s.tool_result.as_deref(), Some("ok"));
        assert_eq!(s.tools, ["f"]);
        assert_eq!(s.tool_choice, ToolChoice::Forced(Some("f".into())));
    }

    #[test]
    fn text_stream_is_canonical() {
        let p = plan(
            json!({"model": "c", "messages": [{"role": "user", "content": "yo"}]}),
            "[mock:events=2]",
        );
        let parsed = parse(&render_stream(&p));
        let names: Vec<&str> = parsed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(parsed[0].1["message"]["usage"]["output_tokens"], 1);
        assert_eq!(parsed[0].1["message"]["model"], "c");
        assert_eq!(parsed[6].1["usage"]["output_tokens"], 2);
        assert_eq!(parsed[6].1["delta"]["stop_reason"], "end_turn");
        let text: String = parsed
            .iter()
            .filter_map(|(_, d)| d["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, "Hello from octo-mock. You said: yo");
    }

    #[test]
    fn tool_stream_uses_input_json_deltas() {
        let p = plan(
            json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"name": "a"}, {"name": "b"}],
                   "tool_choice": {"type": "any"}}),
            "[mock:tools=2]",
        );
        let parsed = parse(&render_stream(&p));
        let starts: Vec<&Value> = parsed
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| d)
            .collect();
        assert_eq!(starts[0]["index"], 0);
        assert_eq!(starts[1]["index"], 1);
        assert_eq!(starts[1]["content_block"]["id"], "toolu_mock_2");
        assert_eq!(starts[1]["content_block"]["name"], "b");
        let json1: String = parsed
            .iter()
            .filter(|(_, d)| d["index"] == 1)
            .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
            .collect();
        assert_eq!(json1, r#"{"query":"mock","n":1}"#);
        let md = &parsed[parsed.len() - 2].1;
        assert_eq!(md["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn thinking_and_stop_sequences() {
        let body = json!({"messages": [{"role": "user", "content": "a|STOP|b"}], "stop_sequences": ["|STOP|"]});
        let p = plan(body, "[mock:thinking]");
        let v: Value = serde_json::from_slice(&render_unary(&p)).unwrap();
        assert_eq!(v["content"][0]["type"], "thinking");
        assert_eq!(v["content"][0]["signature"], SIGNATURE);
        assert_eq!(v["content"][1]["text"], "Hello from octo-mock. You said: a");
        assert_eq!(v["stop_reason"], "stop_sequence");
        assert_eq!(v["stop_sequence"], "|STOP|");
        let parsed = parse(&render_stream(&p));
        let sig: String = parsed
            .iter()
            .filter_map(|(_, d)| d["delta"]["signature"].as_str())
            .collect();
        assert_eq!(sig, SIGNATURE);
        assert_eq!(parsed[1].1["content_block"]["type"], "thinking");
        let text_start = parsed
            .iter()
            .find(|(_, d)| d["content_block"]["type"] == "text")
            .unwrap();
        assert_eq!(text_start.1["index"], 1);
        let md = &parsed[parsed.len() - 2].1;
        assert_eq!(md["delta"]["stop_reason"], "stop_sequence");
        assert_eq!(md["delta"]["stop_sequence"], "|STOP|");
    }

    #[test]
    fn unary_and_errors() {
        let p = plan(
            json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"name": "a"}]}),
            "[mock:tool]",
        );
        let v: Value = serde_json::from_slice(&render_unary(&p)).unwrap();
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(v["content"][0]["input"], json!({"query": "mock", "n": 0}));
        let e: Value =
            serde_json::from_slice(&error_body(StatusCode::from_u16(529).unwrap(), "m")).unwrap();
        assert_eq!(e["error"]["type"], "overloaded_error");
        let parsed = parse(&[Event::new(stream_error("boom"))]);
        assert_eq!(parsed[0].1["error"]["type"], "overloaded_error");
    }
}
