//! Request rules the real APIs enforce, so a test through the mock fails where the provider
//! would answer 400, with the provider's own message.
//!
//! - **Anthropic, thinking on** (`thinking.type` `enabled` or `adaptive`): `budget_tokens` at
//!   least 1024 and below `max_tokens`; no forcing `tool_choice` (`any`, `tool`); `temperature`
//!   only 1; and the final assistant message, when its tool calls are answered after it, must
//!   start with a `thinking` or `redacted_thinking` block whose `signature` is present.
//! - **OpenAI-compatible vendors**, by the model name (see [`Dialect`]): DeepSeek in thinking
//!   mode (its default) and Kimi with thinking on require `reasoning_content` on every assistant
//!   message that carries `tool_calls` (Kimi: non-empty).
//!
//! Structured output: [`output_format`] reads the JSON the request asks for in each protocol
//! (Chat `response_format`, Responses `text.format`, Anthropic `output_config.format` or the beta
//! `output_format`, Gemini `responseMimeType` with `responseJsonSchema` / `responseSchema`), and
//! [`json_for_schema`] builds the deterministic answer that matches it.

use serde_json::{Map, Value, json};

use crate::protocols::Protocol;

/// The reasoning dialect of an OpenAI-compatible model, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `reasoning_content` + LiteLLM's `thinking_blocks` with a signature (the mock's default).
    Default,
    /// A model named `deepseek…`: `reasoning_content`, required back on tool-call turns.
    DeepSeek,
    /// A model named `kimi…` / `moonshot…`: `reasoning_content`, required (non-empty) back on
    /// tool-call turns.
    Kimi,
    /// A model named `vllm…`: `reasoning` (vLLM ≥ 0.9), no signature.
    Vllm,
}

impl Dialect {
    pub(crate) fn of(model: &str) -> Dialect {
        let m = model.to_ascii_lowercase();
        if m.contains("deepseek") {
            Dialect::DeepSeek
        } else if m.contains("kimi") || m.contains("moonshot") {
            Dialect::Kimi
        } else if m.contains("vllm") {
            Dialect::Vllm
        } else {
            Dialect::Default
        }
    }
}

/// The provider's 400 message when `body` breaks one of its rules.
pub(crate) fn violation(protocol: Protocol, body: &Value) -> Option<String> {
    match protocol {
        Protocol::Anthropic => anthropic(body),
        Protocol::OpenAiChat => openai_chat(body),
        _ => None,
    }
}

fn anthropic(body: &Value) -> Option<String> {
    let thinking = body.get("thinking")?;
    let kind = thinking.get("type").and_then(Value::as_str)?;
    if !matches!(kind, "enabled" | "adaptive") {
        return None;
    }
    if kind == "enabled" {
        let budget = thinking.get("budget_tokens").and_then(Value::as_u64);
        let max_tokens = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(0);
        match budget {
            None => return Some("thinking.enabled.budget_tokens: Field required".into()),
            Some(b) if b < 1024 => {
                return Some(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                        .into(),
                );
            }
            Some(b) if b >= max_tokens => {
                return Some("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size".into());
            }
            _ => {}
        }
    }
    if matches!(
        body.pointer("/tool_choice/type").and_then(Value::as_str),
        Some("any" | "tool")
    ) {
        return Some("Thinking may not be enabled when tool_choice forces tool use.".into());
    }
    if body
        .get("temperature")
        .and_then(Value::as_f64)
        .is_some_and(|t| (t - 1.0).abs() > f64::EPSILON)
    {
        return Some(
            "`temperature` may only be set to 1 when thinking is enabled or in adaptive mode."
                .into(),
        );
    }
    let messages = body.get("messages").and_then(Value::as_array)?;
    let blocks = |m: &Value| -> Vec<Value> {
        match m.get("content") {
            Some(Value::Array(b)) => b.clone(),
            Some(Value::String(t)) => vec![json!({"type": "text", "text": t})],
            _ => Vec::new(),
        }
    };
    let kind_of = |b: &Value| {
        b.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let pos = messages
        .iter()
        .rposition(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))?;
    let last = blocks(&messages[pos]);
    let calls = last.iter().any(|b| kind_of(b) == "tool_use");
    let answered = messages[pos + 1..]
        .iter()
        .any(|m| blocks(m).iter().any(|b| kind_of(b) == "tool_result"));
    if !(calls && answered) {
        return None;
    }
    let first = last.first().map(kind_of).unwrap_or_default();
    if first != "thinking" && first != "redacted_thinking" {
        return Some(format!(
            "messages.{pos}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
        ));
    }
    if first == "thinking"
        && last[0]
            .get("signature")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Some(format!(
            "messages.{pos}.content.0.thinking.signature: Field required"
        ));
    }
    None
}

fn openai_chat(body: &Value) -> Option<String> {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    let dialect = Dialect::of(model);
    let thinking_off = body.pointer("/thinking/type").and_then(Value::as_str) == Some("disabled");
    if !matches!(dialect, Dialect::DeepSeek | Dialect::Kimi) || thinking_off {
        return None;
    }
    let messages = body.get("messages").and_then(Value::as_array)?;
    for (i, m) in messages.iter().enumerate() {
        let assistant = m.get("role").and_then(Value::as_str) == Some("assistant");
        let calls = m
            .get("tool_calls")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty());
        if !(assistant && calls) {
            continue;
        }
        let reasoning = m.get("reasoning_content").and_then(Value::as_str);
        match dialect {
            Dialect::DeepSeek if reasoning.is_none() => {
                return Some(
                    "The `reasoning_content` in the thinking mode must be passed back to the API."
                        .into(),
                );
            }
            Dialect::Kimi if reasoning.is_none_or(|r| r.trim().is_empty()) => {
                return Some(format!(
                    "thinking is enabled but reasoning_content is missing in assistant tool call message at index {i}"
                ));
            }
            _ => {}
        }
    }
    None
}

/// The structured output a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OutputFormat {
    /// Any JSON object.
    JsonObject,
    /// JSON matching this schema.
    Schema(Value),
}

/// What JSON the request asks for, in its protocol's terms (see the [module docs](self)).
pub(crate) fn output_format(protocol: Protocol, body: &Value) -> Option<OutputFormat> {
    let from_type =
        |format: &Value, schema: Option<&Value>| match format.get("type").and_then(Value::as_str) {
            Some("json_object") => Some(OutputFormat::JsonObject),
            Some("json_schema") => Some(
                schema
                    .cloned()
                    .map_or(OutputFormat::JsonObject, OutputFormat::Schema),
            ),
            _ => None,
        };
    match protocol {
        Protocol::OpenAiChat => {
            let f = body.get("response_format")?;
            from_type(f, f.pointer("/json_schema/schema"))
        }
        Protocol::OpenAiResponses => {
            let f = body.pointer("/text/format")?;
            from_type(f, f.get("schema"))
        }
        Protocol::Anthropic => {
            let f = body
                .pointer("/output_config/format")
                .or_else(|| body.get("output_format"))?;
            from_type(f, f.get("schema"))
        }
        Protocol::Gemini => {
            let g = body
                .get("generationConfig")
                .or_else(|| body.get("generation_config"))?;
            let pick = |a: &str, b: &str| g.get(a).or_else(|| g.get(b));
            let mime = pick("responseMimeType", "response_mime_type").and_then(Value::as_str);
            if mime != Some("application/json") {
                return None;
            }
            Some(
                match pick("responseJsonSchema", "response_json_schema")
                    .or_else(|| pick("responseSchema", "response_schema"))
                {
                    Some(schema) => OutputFormat::Schema(schema.clone()),
                    None => OutputFormat::JsonObject,
                },
            )
        }
    }
}

/// The answer text for a structured output: `{"reply": <text>}` for any object, else a value
/// of the schema with every property filled (strings get `text`, numbers their `minimum` or 0,
/// booleans `true`, arrays one item, the first `enum`/`const`/`anyOf` choice; Gemini's upper-case
/// types read the same).
pub(crate) fn answer_json(format: &OutputFormat, text: &str) -> String {
    match format {
        OutputFormat::JsonObject => json!({"reply": text}).to_string(),
        OutputFormat::Schema(schema) => json_for_schema(schema, schema, text, 0).to_string(),
    }
}

/// A value matching `schema` (`root` resolves local `$ref`s).
pub(crate) fn json_for_schema(schema: &Value, root: &Value, text: &str, depth: usize) -> Value {
    if depth > 16 {
        return Value::Null;
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix('#')
            .and_then(|p| root.pointer(p))
            .unwrap_or(&Value::Null);
        return json_for_schema(target, root, text, depth + 1);
    }
    if let Some(v) = schema.get("const") {
        return v.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(first) = schema.get(key).and_then(Value::as_array).and_then(|a| {
            a.iter()
                .find(|s| s.get("type").and_then(Value::as_str) != Some("null"))
        }) {
            return json_for_schema(first, root, text, depth + 1);
        }
    }
    let kind = match schema.get("type") {
        Some(Value::String(k)) => Some(k.to_ascii_lowercase()),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| !k.eq_ignore_ascii_case("null"))
            .map(str::to_ascii_lowercase),
        _ if schema.get("properties").is_some() => Some("object".into()),
        _ => None,
    };
    match kind.as_deref() {
        Some("object") => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, s) in props {
                    out.insert(name.clone(), json_for_schema(s, root, text, depth + 1));
                }
            }
            Value::Object(out)
        }
        Some("array") => {
            let item = schema.get("items").unwrap_or(&Value::Null);
            let n = schema
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1);
            (0..n)
                .map(|_| json_for_schema(item, root, text, depth + 1))
                .collect()
        }
        Some("integer") => schema
            .get("minimum")
            .and_then(Value::as_i64)
            .map_or_else(|| Value::from(0), Value::from),
        Some("number") => schema
            .get("minimum")
            .cloned()
            .unwrap_or_else(|| Value::from(0)),
        Some("boolean") => Value::Bool(true),
        Some("null") => Value::Null,
        _ => Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_thinking_needs_a_signed_block_on_the_replayed_tool_turn() {
        let body = |assistant: Value| {
            json!({"model": "c", "max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 1024},
                "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": assistant},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]})
        };
        let call = json!({"type": "tool_use", "id": "t1", "name": "f", "input": {}});
        let e = violation(Protocol::Anthropic, &body(json!([call.clone()]))).unwrap();
        assert!(e.contains("must start with a thinking block"), "{e}");
        let signed = json!({"type": "thinking", "thinking": "x", "signature": "s"});
        assert_eq!(
            violation(Protocol::Anthropic, &body(json!([signed, call.clone()]))),
            None
        );
        let unsigned = json!({"type": "thinking", "thinking": "x", "signature": ""});
        assert!(violation(Protocol::Anthropic, &body(json!([unsigned, call]))).is_some());
        // Forced tools and low budgets are refused with thinking on.
        let mut forced = body(json!("plain"));
        forced["tool_choice"] = json!({"type": "any"});
        assert!(
            violation(Protocol::Anthropic, &forced)
                .unwrap()
                .contains("forces tool use")
        );
        let mut low = body(json!("plain"));
        low["thinking"]["budget_tokens"] = json!(512);
        assert!(violation(Protocol::Anthropic, &low).is_some());
        // Without thinking nothing is checked.
        let mut off = body(json!([{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]));
        off.as_object_mut().unwrap().remove("thinking");
        assert_eq!(violation(Protocol::Anthropic, &off), None);
    }

    #[test]
    fn vendors_require_reasoning_content_on_tool_call_turns() {
        let body = |model: &str, reasoning: Option<&str>| {
            let mut a = json!({"role": "assistant", "content": null,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
            if let Some(r) = reasoning {
                a["reasoning_content"] = r.into();
            }
            json!({"model": model, "messages": [{"role": "user", "content": "hi"}, a,
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}]})
        };
        assert!(
            violation(Protocol::OpenAiChat, &body("deepseek-v4", None))
                .unwrap()
                .contains("must be passed back")
        );
        assert_eq!(
            violation(Protocol::OpenAiChat, &body("deepseek-v4", Some(""))),
            None
        );
        assert!(
            violation(Protocol::OpenAiChat, &body("kimi-k2.5", Some("")))
                .unwrap()
                .contains("index 1")
        );
        assert_eq!(
            violation(Protocol::OpenAiChat, &body("kimi-k2.5", Some("because"))),
            None
        );
        assert_eq!(violation(Protocol::OpenAiChat, &body("gpt-4o", None)), None);
        let mut off = body("deepseek-v4", None);
        off["thinking"] = json!({"type": "disabled"});
        assert_eq!(violation(Protocol::OpenAiChat, &off), None);
    }

    #[test]
    fn structured_output_answers_match_the_schema() {
        let schema = json!({"type": "object", "properties": {
            "name": {"type": "string"}, "age": {"type": "integer", "minimum": 3},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["a", "b"]}, "ok": {"type": "boolean"},
            "nested": {"$ref": "#/$defs/n"}}, "$defs": {"n": {"type": "object", "properties": {"x": {"type": "number"}}}},
            "required": ["name"], "additionalProperties": false});
        let v: Value =
            serde_json::from_str(&answer_json(&OutputFormat::Schema(schema), "hi")).unwrap();
        assert_eq!(
            v,
            json!({"name": "hi", "age": 3, "tags": ["hi"], "kind": "a", "ok": true, "nested": {"x": 0}})
        );
        // Gemini's OpenAPI subset, upper-case types.
        let gemini = json!({"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}});
        assert_eq!(
            answer_json(&OutputFormat::Schema(gemini), "t"),
            r#"{"n":0}"#
        );
        assert_eq!(
            answer_json(&OutputFormat::JsonObject, "t"),
            r#"{"reply":"t"}"#
        );
        let chat = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}});
        assert_eq!(
            output_format(Protocol::OpenAiChat, &chat),
            Some(OutputFormat::Schema(json!({"type": "object"})))
        );
        let gem = json!({"generationConfig": {"responseMimeType": "application/json"}});
        assert_eq!(
            output_format(Protocol::Gemini, &gem),
            Some(OutputFormat::JsonObject)
        );
        let anth = json!({"output_format": {"type": "json_schema", "schema": {"type": "object"}}});
        assert!(output_format(Protocol::Anthropic, &anth).is_some());
    }
}
