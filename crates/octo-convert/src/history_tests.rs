//! Histories one side cannot express, several choices, and the reasoning dialects of
//! OpenAI-compatible vendors (`docs/conversion.md`).

use octo_core::{Protocol, RouteParams};
use serde_json::{Value, json};

use crate::{ConvertOptions, ReasoningDialect, convert_request};

fn convert(client: Protocol, upstream: Protocol, body: Value, opts: &ConvertOptions) -> Value {
    convert_request(client, upstream, &body, &RouteParams::default(), opts)
        .unwrap()
        .body
}

fn chat_tool_loop(assistant_extra: Value) -> Value {
    let mut assistant = json!({"role": "assistant", "content": null,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]});
    if let (Some(a), Some(extra)) = (assistant.as_object_mut(), assistant_extra.as_object()) {
        a.extend(extra.clone());
    }
    json!({"model": "m", "reasoning_effort": "high",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "messages": [{"role": "user", "content": "go"}, assistant,
            {"role": "tool", "tool_call_id": "call_1", "content": "done"}]})
}

#[test]
fn a_chat_tool_loop_toward_anthropic_drops_thinking_unless_the_turn_is_signed() {
    let opts = ConvertOptions::default();
    // No thinking block can be replayed: thinking would make Anthropic refuse the request.
    let v = convert(
        Protocol::OpenAiChat,
        Protocol::Anthropic,
        chat_tool_loop(json!({})),
        &opts,
    );
    assert!(v.get("thinking").is_none(), "{v}");
    assert_eq!(v["messages"][1]["content"][0]["type"], "tool_use");
    // A signed block (LiteLLM's thinking_blocks) is replayed first, and thinking stays on.
    let signed = json!({"reasoning_content": "hmm",
        "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "SIG"}]});
    let v = convert(
        Protocol::OpenAiChat,
        Protocol::Anthropic,
        chat_tool_loop(signed),
        &opts,
    );
    assert_eq!(v["thinking"]["type"], "enabled", "{v}");
    assert_eq!(
        v["messages"][1]["content"][0],
        json!({"type": "thinking", "thinking": "hmm", "signature": "SIG"})
    );
    // A new user turn after a finished tool loop is not a replayed tool turn: thinking stays on.
    let mut fresh = chat_tool_loop(json!({}));
    fresh["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": "It is done."}),
        json!({"role": "user", "content": "thanks"}),
    ]);
    let v = convert(Protocol::OpenAiChat, Protocol::Anthropic, fresh, &opts);
    assert_eq!(v["thinking"]["type"], "enabled", "{v}");
}

#[test]
fn several_choices_are_refused_in_the_clients_terms() {
    let opts = ConvertOptions::default();
    let chat = json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]});
    for upstream in [
        Protocol::Anthropic,
        Protocol::OpenAiResponses,
        Protocol::Gemini,
    ] {
        let e = convert_request(
            Protocol::OpenAiChat,
            upstream,
            &chat,
            &RouteParams::default(),
            &opts,
        )
        .unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(e.param(), Some("n"), "{upstream}");
        assert!(e.message().contains("one candidate"), "{}", e.message());
    }
    let gemini = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"candidateCount": 3}});
    let route = RouteParams {
        model: Some("m".into()),
        stream: Some(false),
    };
    for upstream in [
        Protocol::OpenAiChat,
        Protocol::Anthropic,
        Protocol::OpenAiResponses,
    ] {
        let e = convert_request(Protocol::Gemini, upstream, &gemini, &route, &opts).unwrap_err();
        assert_eq!(
            e.param(),
            Some("generationConfig.candidateCount"),
            "{upstream}"
        );
    }
    // One choice is fine.
    let one = json!({"model": "m", "n": 1, "messages": [{"role": "user", "content": "hi"}]});
    assert!(
        convert_request(
            Protocol::OpenAiChat,
            Protocol::Gemini,
            &one,
            &RouteParams::default(),
            &opts
        )
        .is_ok()
    );
}

/// An Anthropic client's history: a signed thinking block before a tool call, then a text turn.
fn anthropic_history(model: &str, thinking: bool) -> Value {
    let mut call_turn =
        vec![json!({"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}})];
    if thinking {
        call_turn.insert(
            0,
            json!({"type": "thinking", "thinking": "let me look", "signature": "SIG"}),
        );
    }
    json!({"model": model, "max_tokens": 1024,
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": call_turn},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "done"}]},
            {"role": "user", "content": "more"}]})
}

fn assistant_messages(v: &Value) -> Vec<Value> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .cloned()
        .collect()
}

#[test]
fn reasoning_goes_back_the_way_each_vendor_wants_it() {
    let with = |dialect| ConvertOptions::default().with_reasoning_dialect(dialect);
    // DeepSeek (detected by name): on the tool-call turn only.
    let v = convert(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        anthropic_history("deepseek-v4-pro", true),
        &ConvertOptions::default(),
    );
    let a = assistant_messages(&v);
    assert_eq!(a[0]["reasoning_content"], "let me look");
    assert!(a[0].get("thinking_blocks").is_none(), "{v}");
    assert!(a[1].get("reasoning_content").is_none(), "{v}");
    // DeepSeek with no reasoning to give back: an empty string, which it accepts.
    let v = convert(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        anthropic_history("deepseek-v4-pro", false),
        &ConvertOptions::default(),
    );
    assert_eq!(assistant_messages(&v)[0]["reasoning_content"], "");
    // Kimi: never empty on a tool-call turn.
    let v = convert(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        anthropic_history("kimi-k2.5", false),
        &ConvertOptions::default(),
    );
    assert_eq!(assistant_messages(&v)[0]["reasoning_content"], ".");
    let v = convert(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        anthropic_history("kimi-k2.5", true),
        &ConvertOptions::default(),
    );
    assert_eq!(
        assistant_messages(&v)[0]["reasoning_content"],
        "let me look"
    );
    // vLLM: `reasoning`.
    let v = convert(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        anthropic_history("qwen3", true),
        &with(ReasoningDialect::Vllm),
    );
    let a = assistant_messages(&v);
    assert_eq!(a[0]["reasoning"], "let me look");
    assert!(a[0].get("reasoning_content").is_none());
    // OpenRouter: `reasoning` and `reasoning_details` with the signature.
    let v = convert(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        anthropic_history("anthropic/claude", true),
        &with(ReasoningDialect::OpenRouter),
    );
    let a = assistant_messages(&v);
    assert_eq!(
        a[0]["reasoning_details"],
        json!([{"type": "reasoning.text", "text": "let me look", "signature": "SIG"}])
    );
    // None: nothing.
    let v = convert(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        anthropic_history("deepseek-v4-pro", true),
        &with(ReasoningDialect::None),
    );
    assert!(
        assistant_messages(&v)
            .iter()
            .all(|m| m.get("reasoning_content").is_none() && m.get("reasoning").is_none())
    );
    // The default elsewhere: LiteLLM's fields.
    let v = convert(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        anthropic_history("gpt-4o", true),
        &ConvertOptions::default(),
    );
    assert_eq!(
        assistant_messages(&v)[0]["thinking_blocks"][0]["signature"],
        "SIG"
    );
}

#[test]
fn openrouter_reasoning_details_are_read_with_their_signatures() {
    let answer = json!({"id": "gen-1", "model": "anthropic/claude", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "ok", "reasoning": "thought",
            "reasoning_details": [{"type": "reasoning.text", "text": "thought", "signature": "SIG", "format": "anthropic-claude-v1"}]}}]});
    let v = crate::testing::convert_response(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        answer.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(
        v["content"][0],
        json!({"type": "thinking", "thinking": "thought", "signature": "SIG"})
    );
    assert_eq!(v["content"][1]["text"], "ok");
    // Streamed: the text from `reasoning`, the signature from the details, not the text twice.
    let chunks = [
        json!({"id": "gen-1", "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning": "thought",
            "reasoning_details": [{"type": "reasoning.text", "text": "thought"}]}}]}),
        json!({"id": "gen-1", "choices": [{"index": 0, "delta": {"reasoning_details": [{"type": "reasoning.text", "signature": "SIG"}]}}]}),
        json!({"id": "gen-1", "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}),
    ];
    let events = chunks
        .iter()
        .map(|c| Ok(octo_core::Event::data(bytes::Bytes::from(c.to_string()))))
        .chain([Ok(octo_core::Event::data(bytes::Bytes::from_static(
            b"[DONE]",
        )))]);
    let out =
        crate::testing::convert_stream(Protocol::Anthropic, Protocol::OpenAiChat, true, events);
    let text: String = out
        .iter()
        .map(|e| String::from_utf8(e.as_ref().unwrap().to_frame().to_vec()).unwrap())
        .collect();
    assert_eq!(
        text.matches("\"thinking\":\"thought\"").count(),
        1,
        "{text}"
    );
    assert!(text.contains("\"signature\":\"SIG\""), "{text}");
}

#[test]
fn a_json_object_answer_toward_anthropic_is_asked_through_a_forced_tool() {
    let body = json!({"model": "m", "response_format": {"type": "json_object"}, "reasoning_effort": "low",
        "messages": [{"role": "user", "content": "as JSON"}]});
    let v = convert(
        Protocol::OpenAiChat,
        Protocol::Anthropic,
        body,
        &ConvertOptions::default(),
    );
    assert_eq!(v["tools"][0]["name"], crate::tools::JSON_ANSWER_TOOL);
    assert_eq!(
        v["tool_choice"],
        json!({"type": "tool", "name": crate::tools::JSON_ANSWER_TOOL})
    );
    // Anthropic refuses thinking with a forced tool.
    assert!(v.get("thinking").is_none(), "{v}");
    assert!(v.get("output_config").is_none(), "{v}");

    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "c",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": crate::tools::JSON_ANSWER_TOOL, "input": {"a": 1}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 4}});
    let converted = convert_request(
        Protocol::OpenAiChat,
        Protocol::Anthropic,
        &json!({"model": "m", "response_format": {"type": "json_object"}, "messages": [{"role": "user", "content": "x"}]}),
        &RouteParams::default(),
        &ConvertOptions::default(),
    )
    .unwrap();
    let v = converted.response.convert(&answer).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], r#"{"a":1}"#);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(
        v["choices"][0]["message"].get("tool_calls").is_none(),
        "{v}"
    );

    // Streamed: the tool's input fragments are the text.
    let frames = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "c", "content": [], "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": crate::tools::JSON_ANSWER_TOOL, "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let events = frames.iter().map(|(name, data)| {
        Ok(octo_core::Event::named(
            *name,
            bytes::Bytes::from(data.to_string()),
        ))
    });
    let out = converted.response.stream().convert_all(events);
    let text: String = out
        .iter()
        .map(|e| String::from_utf8(e.as_ref().unwrap().to_frame().to_vec()).unwrap())
        .collect();
    assert!(text.contains(r#""content":"{\"a\":""#), "{text}");
    assert!(text.contains(r#""finish_reason":"stop""#), "{text}");
    assert!(!text.contains("tool_calls"), "{text}");
}

#[test]
fn anthropic_structured_outputs_are_read_in_both_shapes_and_objects_are_closed() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}}}});
    for body in [
        json!({"model": "m", "max_tokens": 64, "output_config": {"format": {"type": "json_schema", "schema": schema}},
            "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "m", "max_tokens": 64, "output_format": {"type": "json_schema", "schema": schema},
            "messages": [{"role": "user", "content": "x"}]}),
    ] {
        let v = convert(
            Protocol::Anthropic,
            Protocol::OpenAiChat,
            body,
            &ConvertOptions::default(),
        );
        assert_eq!(v["response_format"]["type"], "json_schema", "{v}");
        assert_eq!(v["response_format"]["json_schema"]["schema"], schema);
    }
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}});
    let v = convert(
        Protocol::OpenAiChat,
        Protocol::Anthropic,
        chat,
        &ConvertOptions::default(),
    );
    let sent = &v["output_config"]["format"]["schema"];
    assert_eq!(sent["additionalProperties"], false, "{v}");
    assert_eq!(
        sent["properties"]["a"]["additionalProperties"], false,
        "{v}"
    );
}
