//! The text moderation reads, per client protocol: of a request (every message, the system
//! prompt or instructions, tool results), of a full answer (text and tool-call arguments) and of
//! one stream event (its text or argument delta). Images, audio and files are not read; reasoning
//! (thinking) text is not read either, since it is not shown as the answer.

use octo_core::Protocol;
use serde_json::Value;

/// The elements of the array at `key` in `v`; none when it is absent or not an array.
fn each<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// Appends `v` when it is a non-empty string.
fn push_str(out: &mut Vec<String>, v: Option<&Value>) {
    if let Some(s) = v.and_then(Value::as_str)
        && !s.is_empty()
    {
        out.push(s.to_owned());
    }
}

/// A string, or an array of parts whose `text` is read (`{type: "text" | "input_text" |
/// "output_text", text}`, Anthropic `tool_result` blocks with their own `content`).
fn push_content(out: &mut Vec<String>, v: Option<&Value>) {
    match v {
        Some(Value::String(_)) => push_str(out, v),
        Some(Value::Array(parts)) => {
            for p in parts {
                if p.get("thought").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                match p.get("type").and_then(Value::as_str) {
                    Some("thinking" | "redacted_thinking" | "reasoning") => continue,
                    Some("tool_result" | "function_call_output") => {
                        push_content(out, p.get("content").or_else(|| p.get("output")));
                        continue;
                    }
                    _ => {}
                }
                push_str(out, p.get("text"));
            }
        }
        _ => {}
    }
}

/// The texts of a request body in `protocol`, in order.
///
/// ```
/// use octo_core::Protocol;
/// use octo_engines::moderation::request_texts;
/// use serde_json::json;
///
/// let body = json!({"system": "be brief", "messages": [
///     {"role": "user", "content": [{"type": "text", "text": "hello"}]}]});
/// assert_eq!(request_texts(Protocol::Anthropic, &body), ["be brief", "hello"]);
/// ```
pub fn request_texts(protocol: Protocol, body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match protocol {
        Protocol::OpenAiChat => {
            for m in each(body, "messages") {
                push_content(&mut out, m.get("content"));
            }
        }
        Protocol::OpenAiResponses => {
            push_str(&mut out, body.get("instructions"));
            match body.get("input") {
                Some(Value::String(_)) => push_str(&mut out, body.get("input")),
                Some(Value::Array(items)) => {
                    for item in items {
                        push_content(&mut out, item.get("content"));
                        if item.get("type").and_then(Value::as_str) == Some("function_call_output")
                        {
                            push_content(&mut out, item.get("output"));
                        }
                    }
                }
                _ => {}
            }
        }
        Protocol::Anthropic => {
            push_content(&mut out, body.get("system"));
            for m in each(body, "messages") {
                push_content(&mut out, m.get("content"));
            }
        }
        Protocol::Gemini => {
            let system = body
                .get("systemInstruction")
                .or_else(|| body.get("system_instruction"));
            if let Some(s) = system {
                push_content(&mut out, s.get("parts"));
            }
            for c in each(body, "contents") {
                push_content(&mut out, c.get("parts"));
            }
        }
        _ => {}
    }
    out
}

/// Pushes tool-call arguments (a JSON string, or an object written as JSON).
fn push_args(out: &mut Vec<String>, v: Option<&Value>) {
    match v {
        Some(Value::String(s)) if !s.is_empty() => out.push(s.clone()),
        Some(v @ Value::Object(_)) => out.push(v.to_string()),
        _ => {}
    }
}

/// The answer text of a full response body in `protocol`: text and tool-call arguments.
///
/// ```
/// use octo_core::Protocol;
/// use octo_engines::moderation::answer_text;
/// use serde_json::json;
///
/// let body = json!({"choices": [{"message": {"role": "assistant", "content": "hi there"}}]});
/// assert_eq!(answer_text(Protocol::OpenAiChat, &body), "hi there");
/// ```
pub fn answer_text(protocol: Protocol, body: &Value) -> String {
    let mut out = Vec::new();
    match protocol {
        Protocol::OpenAiChat => chat_choices(&mut out, body, "message"),
        Protocol::OpenAiResponses => {
            for item in each(body, "output") {
                match item.get("type").and_then(Value::as_str) {
                    Some("message") => push_content(&mut out, item.get("content")),
                    Some("function_call") => push_args(&mut out, item.get("arguments")),
                    Some("custom_tool_call") => push_str(&mut out, item.get("input")),
                    _ => {}
                }
            }
        }
        Protocol::Anthropic => {
            for block in each(body, "content") {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => push_str(&mut out, block.get("text")),
                    Some("tool_use") => push_args(&mut out, block.get("input")),
                    _ => {}
                }
            }
        }
        Protocol::Gemini => gemini_candidates(&mut out, body),
        _ => {}
    }
    out.join("\n")
}

/// OpenAI Chat's choices: the `field` of each (`message` in an answer, `delta` in a stream
/// chunk), its content, refusal and tool-call arguments.
fn chat_choices(out: &mut Vec<String>, body: &Value, field: &str) {
    for m in each(body, "choices").filter_map(|c| c.get(field)) {
        push_content(out, m.get("content"));
        push_str(out, m.get("refusal"));
        for t in each(m, "tool_calls") {
            push_args(out, t.pointer("/function/arguments"));
        }
    }
}

/// Gemini's candidates: the parts of each (text and function-call arguments, thoughts skipped).
fn gemini_candidates(out: &mut Vec<String>, body: &Value) {
    for c in each(body, "candidates") {
        gemini_parts(out, c.pointer("/content/parts"));
    }
}

fn gemini_parts(out: &mut Vec<String>, parts: Option<&Value>) {
    for p in parts.and_then(Value::as_array).into_iter().flatten() {
        if p.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        push_str(out, p.get("text"));
        push_args(out, p.pointer("/functionCall/args"));
    }
}

/// The answer text one stream event adds, in `protocol` (event `name`, JSON `data`).
///
/// ```
/// use octo_core::Protocol;
/// use octo_engines::moderation::event_text;
///
/// let data = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#;
/// assert_eq!(event_text(Protocol::Anthropic, Some("content_block_delta"), data), "Hel");
/// ```
pub fn event_text(protocol: Protocol, name: Option<&str>, data: &[u8]) -> String {
    if data == b"[DONE]" {
        return String::new();
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return String::new();
    };
    let mut out = Vec::new();
    match protocol {
        Protocol::OpenAiChat => chat_choices(&mut out, &v, "delta"),
        Protocol::OpenAiResponses => {
            let kind = name.or_else(|| v.get("type").and_then(Value::as_str));
            if matches!(
                kind,
                Some(
                    "response.output_text.delta"
                        | "response.function_call_arguments.delta"
                        | "response.refusal.delta"
                        | "response.custom_tool_call_input.delta"
                )
            ) {
                push_str(&mut out, v.get("delta"));
            }
        }
        Protocol::Anthropic
            if v.get("type").and_then(Value::as_str) == Some("content_block_delta") =>
        {
            let d = v.get("delta");
            push_str(&mut out, d.and_then(|d| d.get("text")));
            push_str(&mut out, d.and_then(|d| d.get("partial_json")));
        }
        Protocol::Gemini => gemini_candidates(&mut out, &v),
        _ => {}
    }
    out.concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_text_per_protocol() {
        let chat = json!({"messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}]},
        ]});
        assert_eq!(request_texts(Protocol::OpenAiChat, &chat), ["sys", "a"]);
        let resp = json!({"instructions": "ins", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "b"}]},
            {"type": "function_call_output", "call_id": "c", "output": "tool said"},
        ]});
        assert_eq!(
            request_texts(Protocol::OpenAiResponses, &resp),
            ["ins", "b", "tool said"]
        );
        assert_eq!(
            request_texts(Protocol::OpenAiResponses, &json!({"input": "plain"})),
            ["plain"]
        );
        let an = json!({"system": [{"type": "text", "text": "s"}], "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "r"}]}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "c"}]},
        ]});
        assert_eq!(request_texts(Protocol::Anthropic, &an), ["s", "r", "c"]);
        let gem = json!({"systemInstruction": {"parts": [{"text": "g"}]},
            "contents": [{"role": "user", "parts": [{"text": "d"}, {"inlineData": {}}]}]});
        assert_eq!(request_texts(Protocol::Gemini, &gem), ["g", "d"]);
    }

    #[test]
    fn answer_text_per_protocol() {
        let chat = json!({"choices": [{"message": {"content": "x", "tool_calls": [
            {"function": {"name": "f", "arguments": "{\"q\":1}"}}]}}]});
        assert_eq!(answer_text(Protocol::OpenAiChat, &chat), "x\n{\"q\":1}");
        let resp = json!({"output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "no"}]},
            {"type": "message", "content": [{"type": "output_text", "text": "y"}]}]});
        assert_eq!(answer_text(Protocol::OpenAiResponses, &resp), "y");
        let an = json!({"content": [{"type": "text", "text": "z"}, {"type": "tool_use", "input": {"a": 1}}]});
        assert_eq!(answer_text(Protocol::Anthropic, &an), "z\n{\"a\":1}");
        let gem = json!({"candidates": [{"content": {"parts": [{"text": "t", "thought": true}, {"text": "w"}]}}]});
        assert_eq!(answer_text(Protocol::Gemini, &gem), "w");
    }

    #[test]
    fn event_text_per_protocol() {
        assert_eq!(
            event_text(
                Protocol::OpenAiChat,
                None,
                br#"{"choices":[{"delta":{"content":"a"}}]}"#
            ),
            "a"
        );
        assert_eq!(event_text(Protocol::OpenAiChat, None, b"[DONE]"), "");
        assert_eq!(
            event_text(
                Protocol::OpenAiResponses,
                Some("response.output_text.delta"),
                br#"{"type":"response.output_text.delta","delta":"b"}"#
            ),
            "b"
        );
        assert_eq!(
            event_text(
                Protocol::OpenAiResponses,
                Some("response.completed"),
                br#"{"type":"response.completed","response":{"output":[{"type":"message","content":[{"type":"output_text","text":"all"}]}]}}"#
            ),
            ""
        );
        assert_eq!(
            event_text(
                Protocol::Gemini,
                None,
                br#"{"candidates":[{"content":{"parts":[{"text":"c"}]}}]}"#
            ),
            "c"
        );
    }
}
