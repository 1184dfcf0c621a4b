//! OpenAI Responses (`POST /v1/responses`): `response` objects and the canonical `event:` SSE
//! sequence with `sequence_number` on every event (`response.created` → `response.in_progress` →
//! `output_item.added` → `content_part.added` → `output_text.delta`* → `output_text.done` →
//! `content_part.done` → `output_item.done` → `response.completed`, or function-call items with
//! `function_call_arguments.delta`/`.done`; `response.incomplete` for length), no `[DONE]`.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{Event, array_field, collect_text, str_field, wants_stream};
use crate::reply::{CREATED, DEFAULT_MODEL, Finish, Plan, Summary, ToolCall, ToolChoice};
use crate::sse;

/// `encrypted_content` of the reasoning item sent for the `thinking` directive (base64 of
/// `mock-responses-encrypted-content`).
pub(crate) const ENCRYPTED_CONTENT: &str = "bW9jay1yZXNwb25zZXMtZW5jcnlwdGVkLWNvbnRlbnQ=";

pub(crate) fn summarize(body: &Value) -> Summary {
    let (user_text, tool_result) = match body.get("input") {
        Some(Value::String(text)) => ((!text.is_empty()).then(|| text.clone()), None),
        Some(Value::Array(items)) => {
            let tool_result = items
                .last()
                .filter(|i| str_field(i, "type") == Some("function_call_output"))
                .map(|i| match i.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => collect_text(other).unwrap_or_default(),
                    None => String::new(),
                });
            let user_text = items
                .iter()
                .rev()
                .filter(|i| str_field(i, "role") == Some("user"))
                .find_map(|i| i.get("content").and_then(collect_text));
            (user_text, tool_result)
        }
        _ => (None, None),
    };
    let tools = array_field(body, "tools")
        .iter()
        .filter(|t| matches!(str_field(t, "type"), Some("function" | "custom")))
        .filter_map(|t| str_field(t, "name").map(str::to_owned))
        .collect();
    let tool_schemas = array_field(body, "tools")
        .iter()
        .filter_map(|t| {
            Some((
                str_field(t, "name")?.to_owned(),
                t.get("parameters")?.clone(),
            ))
        })
        .collect();
    Summary {
        output: None,
        model: str_field(body, "model").unwrap_or(DEFAULT_MODEL).to_owned(),
        stream: wants_stream(body),
        include_usage: false,
        user_text,
        tool_result,
        tools,
        tool_schemas,
        tool_choice: tool_choice(body.get("tool_choice")),
        // The Responses API has no stop sequences.
        stop: Vec::new(),
    }
}

fn tool_choice(choice: Option<&Value>) -> ToolChoice {
    let Some(choice) = choice else {
        return ToolChoice::Auto;
    };
    match (choice.as_str(), str_field(choice, "type")) {
        (Some("none"), _) => ToolChoice::None,
        (Some("required"), _) => ToolChoice::Forced(None),
        (_, Some("function" | "custom")) => {
            ToolChoice::Forced(str_field(choice, "name").map(str::to_owned))
        }
        (_, Some("allowed_tools")) if str_field(choice, "mode") == Some("required") => {
            ToolChoice::Forced(None)
        }
        _ => ToolChoice::Auto,
    }
}

fn message_id(plan: &Plan) -> String {
    format!("msg_mock_{}", plan.id)
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn message_item(plan: &Plan, status: &str, content: Vec<Value>) -> Value {
    json!({
        "id": message_id(plan),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    })
}

fn call_item(call: &ToolCall, status: &str, arguments: &str) -> Value {
    json!({
        "id": format!("fc_mock_{}", call.id),
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": format!("call_mock_{}", call.id),
        "name": call.name,
    })
}

/// Final status of the message item and of the response.
fn final_status(plan: &Plan) -> &'static str {
    match plan.finish {
        Finish::Length => "incomplete",
        Finish::Stop | Finish::StopSequence | Finish::ToolCalls => "completed",
    }
}

fn reasoning_id(plan: &Plan) -> String {
    format!("rs_mock_{}", plan.id)
}

/// The reasoning item of a reply with reasoning; `done` adds the summary and the encrypted content.
fn reasoning_item(plan: &Plan, done: bool) -> Option<Value> {
    let text = plan.thinking?;
    Some(if done {
        json!({
            "id": reasoning_id(plan),
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": text}],
            "encrypted_content": ENCRYPTED_CONTENT,
        })
    } else {
        json!({"id": reasoning_id(plan), "type": "reasoning", "summary": []})
    })
}

/// All output items in their final state.
fn final_output(plan: &Plan) -> Vec<Value> {
    let mut output: Vec<Value> = reasoning_item(plan, true).into_iter().collect();
    if plan.tool_calls.is_empty() {
        output.push(message_item(
            plan,
            final_status(plan),
            vec![text_part(&plan.text())],
        ));
    } else {
        output.extend(
            plan.tool_calls
                .iter()
                .map(|c| call_item(c, "completed", &c.arguments)),
        );
    }
    output
}

/// The `response` object; `done` selects the final state (status, output, usage).
fn response(plan: &Plan, done: bool) -> Value {
    let (status, output, usage) = if done {
        let usage = json!({
            "input_tokens": plan.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": plan.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": plan.total_tokens(),
        });
        (final_status(plan), final_output(plan), usage)
    } else {
        ("in_progress", Vec::new(), Value::Null)
    };
    let incomplete = if done && plan.finish == Finish::Length {
        json!({"reason": "max_output_tokens"})
    } else {
        Value::Null
    };
    json!({
        "id": format!("resp_mock_{}", plan.id),
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": null,
        "max_output_tokens": null,
        "model": plan.model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": false,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": null,
        "metadata": {},
    })
}

pub(crate) fn render_unary(plan: &Plan) -> Bytes {
    sse::to_vec(&response(plan, true)).into()
}

/// Numbers the events of one stream.
struct Seq {
    events: Vec<Event>,
}

impl Seq {
    fn next(&self) -> usize {
        self.events.len()
    }

    /// Adds `sequence_number` to `data` and frames it as `event: <type>`.
    fn push(&mut self, kind: &str, mut data: Value) {
        data["type"] = Value::String(kind.to_owned());
        data["sequence_number"] = Value::from(self.next());
        self.events
            .push(Event::new(sse::event(kind, &sse::to_vec(&data))));
    }
}

pub(crate) fn render_stream(plan: &Plan) -> Vec<Event> {
    let mut seq = Seq {
        events: Vec::with_capacity(plan.pieces.len() + 6 * plan.tool_calls.len() + 9),
    };
    seq.push(
        "response.created",
        json!({"response": response(plan, false)}),
    );
    seq.push(
        "response.in_progress",
        json!({"response": response(plan, false)}),
    );
    let first = usize::from(plan.thinking.is_some());
    if let (Some(text), Some(added), Some(done)) = (
        plan.thinking,
        reasoning_item(plan, false),
        reasoning_item(plan, true),
    ) {
        let item_id = reasoning_id(plan);
        let part = |text: &str| json!({"type": "summary_text", "text": text});
        seq.push(
            "response.output_item.added",
            json!({"output_index": 0, "item": added}),
        );
        seq.push(
            "response.reasoning_summary_part.added",
            json!({"item_id": item_id, "output_index": 0, "summary_index": 0, "part": part("")}),
        );
        seq.push(
            "response.reasoning_summary_text.delta",
            json!({"item_id": item_id, "output_index": 0, "summary_index": 0, "delta": text}),
        );
        seq.push(
            "response.reasoning_summary_text.done",
            json!({"item_id": item_id, "output_index": 0, "summary_index": 0, "text": text}),
        );
        seq.push(
            "response.reasoning_summary_part.done",
            json!({"item_id": item_id, "output_index": 0, "summary_index": 0, "part": part(text)}),
        );
        seq.push(
            "response.output_item.done",
            json!({"output_index": 0, "item": done}),
        );
    }
    if plan.tool_calls.is_empty() {
        let item_id = message_id(plan);
        let text = plan.text();
        seq.push(
            "response.output_item.added",
            json!({"output_index": first, "item": message_item(plan, "in_progress", vec![])}),
        );
        seq.push(
            "response.content_part.added",
            json!({"item_id": item_id, "output_index": first, "content_index": 0, "part": text_part("")}),
        );
        let mut prefix = Vec::with_capacity(96);
        prefix.extend_from_slice(br#"{"type":"response.output_text.delta","item_id":"#);
        sse::push_json_str(&mut prefix, &item_id);
        prefix.extend_from_slice(br#","output_index":"#);
        prefix.extend_from_slice(first.to_string().as_bytes());
        prefix.extend_from_slice(br#","content_index":0,"delta":"#);
        for piece in &plan.pieces {
            let mut data = prefix.clone();
            sse::push_json_str(&mut data, piece);
            data.extend_from_slice(br#","logprobs":[],"sequence_number":"#);
            data.extend_from_slice(seq.next().to_string().as_bytes());
            data.push(b'}');
            let frame = sse::event("response.output_text.delta", &data);
            seq.events.push(Event::content(frame));
        }
        seq.push(
            "response.output_text.done",
            json!({"item_id": item_id, "output_index": first, "content_index": 0, "text": text, "logprobs": []}),
        );
        seq.push(
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": first, "content_index": 0, "part": text_part(&text)}),
        );
        seq.push(
            "response.output_item.done",
            json!({"output_index": first, "item": message_item(plan, final_status(plan), vec![text_part(&text)])}),
        );
    } else {
        for (i, call) in plan.tool_calls.iter().enumerate() {
            let output_index = first + i;
            let item_id = format!("fc_mock_{}", call.id);
            seq.push(
                "response.output_item.added",
                json!({"output_index": output_index, "item": call_item(call, "in_progress", "")}),
            );
            let (a, b) = call.fragments();
            for fragment in [a, b] {
                let mut data =
                    json!({"item_id": item_id, "output_index": output_index, "delta": fragment});
                data["type"] = "response.function_call_arguments.delta".into();
                data["sequence_number"] = seq.next().into();
                let frame = sse::event(
                    "response.function_call_arguments.delta",
                    &sse::to_vec(&data),
                );
                seq.events.push(Event::content(frame));
            }
            seq.push(
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": output_index, "name": call.name, "arguments": call.arguments}),
            );
            seq.push(
                "response.output_item.done",
                json!({"output_index": output_index, "item": call_item(call, "completed", &call.arguments)}),
            );
        }
    }
    let last = match plan.finish {
        Finish::Length => "response.incomplete",
        Finish::Stop | Finish::StopSequence | Finish::ToolCalls => "response.completed",
    };
    seq.push(last, json!({"response": response(plan, true)}));
    seq.events
}

/// `event: error` with `{"type":"error","code","message","param","sequence_number"}`.
pub(crate) fn stream_error(message: &str, sequence_number: usize) -> Bytes {
    let data = json!({
        "type": "error",
        "code": "server_error",
        "message": message,
        "param": null,
        "sequence_number": sequence_number,
    });
    sse::event("error", &sse::to_vec(&data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(body: Value, directives: &str) -> Plan {
        super::super::test_plan(summarize(&body), directives)
    }

    use super::super::parse_named_events as parse;

    #[test]
    fn summary_reads_input_items() {
        let s = summarize(&json!({
            "model": "gpt-r", "stream": true,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "sunny"}
            ],
            "tools": [{"type": "function", "name": "f"}, {"type": "web_search"}],
            "tool_choice": "required"
        }));
        assert_eq!(s.model, "gpt-r");
        assert_eq!(s.user_text.as_deref(), Some("weather?"));
        assert_eq!(s.tool_result.as_deref(), Some("sunny"));
        assert_eq!(s.tools, ["f"]);
        assert_eq!(s.tool_choice, ToolChoice::Forced(None));
        assert_eq!(
            summarize(&json!({"input": "hi"})).user_text.as_deref(),
            Some("hi")
        );
    }

    #[test]
    fn text_stream_is_canonical() {
        let p = plan(json!({"model": "m", "input": "hello", "stream": true}), "");
        let events = render_stream(&p);
        let parsed = parse(&events);
        let names: Vec<&str> = parsed.iter().map(|(n, _)| n.as_str()).collect();
        let deltas = p.pieces.len();
        let mut expected = vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
        ];
        expected.extend(std::iter::repeat_n("response.output_text.delta", deltas));
        expected.extend([
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]);
        assert_eq!(names, expected);
        for (i, (_, data)) in parsed.iter().enumerate() {
            assert_eq!(data["sequence_number"], i);
        }
        let text: String = parsed
            .iter()
            .filter_map(|(_, d)| d["delta"].as_str())
            .collect();
        assert_eq!(text, "Hello from octo-mock. You said: hello");
        let done = &parsed.last().unwrap().1["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], text.as_str());
        assert_eq!(done["usage"]["output_tokens"], deltas);
        assert_eq!(done["model"], "m");
        assert_eq!(events.iter().filter(|e| e.content).count(), deltas);
    }

    #[test]
    fn thinking_is_a_reasoning_item_first() {
        let p = plan(json!({"input": "hi", "stream": true}), "[mock:thinking]");
        let v: Value = serde_json::from_slice(&render_unary(&p)).unwrap();
        assert_eq!(v["output"][0]["type"], "reasoning");
        assert_eq!(v["output"][0]["encrypted_content"], ENCRYPTED_CONTENT);
        assert_eq!(v["output"][1]["type"], "message");
        let parsed = parse(&render_stream(&p));
        for (i, (_, data)) in parsed.iter().enumerate() {
            assert_eq!(data["sequence_number"], i);
        }
        assert_eq!(parsed[2].1["item"]["type"], "reasoning");
        assert_eq!(parsed[7].1["item"]["encrypted_content"], ENCRYPTED_CONTENT);
        let text_delta = parsed
            .iter()
            .find(|(n, _)| n == "response.output_text.delta")
            .unwrap();
        assert_eq!(text_delta.1["output_index"], 1);
        let done = &parsed.last().unwrap().1["response"];
        assert_eq!(done["output"][0]["type"], "reasoning");
        assert_eq!(done["output"][1]["output_index"], Value::Null);
    }

    #[test]
    fn tool_stream_and_incomplete() {
        let p = plan(
            json!({"input": "x", "tools": [{"type": "function", "name": "f"}]}),
            "[mock:tool]",
        );
        let parsed = parse(&render_stream(&p));
        let names: Vec<&str> = parsed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let item = &parsed.last().unwrap().1["response"]["output"][0];
        assert_eq!(item["type"], "function_call");
        assert_eq!(item["call_id"], "call_mock_1");
        assert_eq!(item["arguments"], r#"{"query":"mock","n":0}"#);

        let p = plan(json!({"input": "x"}), "[mock:max_tokens]");
        let v: Value = serde_json::from_slice(&render_unary(&p)).unwrap();
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
        let parsed = parse(&render_stream(&p));
        assert_eq!(parsed.last().unwrap().0, "response.incomplete");
    }

    #[test]
    fn error_event() {
        let parsed = parse(&[Event::new(stream_error("boom", 7))]);
        assert_eq!(parsed[0].1["sequence_number"], 7);
        assert_eq!(parsed[0].1["message"], "boom");
    }
}
