//! Seven acceptance cases (one per request, answer and stream shape the converters must handle),
//! plus the edge cases of `docs/conversion.md` that the golden fixtures do not reach.

use bytes::Bytes;
use octo_core::{Event, Protocol, RouteParams};
use serde_json::{Value, json};

use crate::testing::{self, convert_response, convert_stream};
use crate::*;

fn anthropic_to_chat(body: Value, field: OpenAiMaxTokens) -> Value {
    let opts = ConvertOptions::default().with_openai_max_tokens_field(field);
    let converted = convert_request(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        &body,
        &RouteParams::default(),
        &opts,
    )
    .unwrap();
    assert_eq!(converted.response.upstream(), Protocol::OpenAiChat);
    converted.body
}

fn weather_tool() -> Value {
    json!({
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "input_schema": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "The unit of temperature, either \"celsius\" or \"fahrenheit\""}
            },
            "required": ["location"]
        }
    })
}

/// Parses the SSE frames of converted events into `(event name, data)`.
fn events(out: Vec<Result<Event, octo_core::Error>>) -> Vec<(Option<String>, Value)> {
    out.into_iter()
        .map(|r| {
            let ev = r.unwrap();
            let data = ev.data_body().to_bytes();
            let v = serde_json::from_slice(&data)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&data).into_owned()));
            (ev.name().map(str::to_owned), v)
        })
        .collect()
}

fn chat_chunks(chunks: &[Value]) -> Vec<Result<Event, octo_core::Error>> {
    chunks
        .iter()
        .map(|c| {
            Ok(match c {
                Value::String(s) => Event::data(Bytes::from(s.clone())),
                v => Event::data(Bytes::from(v.to_string())),
            })
        })
        .collect()
}

/// The Anthropic stream's `message_delta` (before `message_stop`) names `stop` and has `usage`.
fn assert_message_delta(out: &[(Option<String>, Value)], stop: &str, usage: Value) {
    let delta = &out[out.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], stop);
    assert_eq!(delta["usage"], usage);
}

fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

// 1. Request conversion, tool round trip.
#[test]
fn reference_1_request_with_tool_round_trip() {
    let out = anthropic_to_chat(
        json!({
            "model": "claude", "max_tokens": 1024, "tools": [weather_tool()],
            "messages": [
                {"role": "user", "content": "What is the weather like in San Francisco?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
                    {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
                     "input": {"location": "San Francisco, CA", "unit": "celsius"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"}
                ]}
            ]
        }),
        OpenAiMaxTokens::MaxTokens,
    );
    assert_eq!(
        out,
        json!({
            "model": "claude",
            "max_tokens": 1024,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "What is the weather like in San Francisco?"}]},
                {"role": "assistant",
                 "content": [{"type": "text", "text": "I'll check the current weather in San Francisco for you."}],
                 "tool_calls": [{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\",\"unit\":\"celsius\"}"}}]},
                {"role": "tool", "content": [{"type": "text", "text": "15 degrees"}], "tool_call_id": "toolu_01A09q90qw90lq917835lq9"}
            ],
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "parameters": weather_tool()["input_schema"].clone()
            }}]
        })
    );
    // The default field for OpenAI's current models.
    let out = anthropic_to_chat(
        json!({"model": "m", "max_tokens": 7, "messages": [{"role": "user", "content": "x"}]}),
        OpenAiMaxTokens::MaxCompletionTokens,
    );
    assert_eq!(out["max_completion_tokens"], 7);
    assert!(out.get("max_tokens").is_none());
}

// 2. Images and system.
#[test]
fn reference_2_images_and_system() {
    let out = anthropic_to_chat(
        json!({
            "model": "m", "max_tokens": 10,
            "system": [{"type": "text", "text": "You are a helpful assistant."}],
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": [
                    {"type": "text", "text": "Describe these."},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}
                ]}
            ]
        }),
        OpenAiMaxTokens::MaxTokens,
    );
    let m = &out["messages"];
    assert_eq!(
        m[0],
        json!({"role": "system", "content": "You are a helpful assistant."})
    );
    assert_eq!(
        m[3]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}})
    );
    assert_eq!(
        m[3]["content"][2],
        json!({"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}})
    );
}

// 3. Simple non-stream response.
#[test]
fn reference_3_simple_response() {
    let out = convert_response(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        br#"{"id":"chatcmpl-123","model":"gpt-4","choices":[{"message":{"role":"assistant","content":"I'm doing well, thank you!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":8}}"#,
    )
    .unwrap();
    assert_eq!(
        out,
        // docs/conversion.md ("Ids"): an Anthropic client gets a `msg_…` id derived from the
        // upstream's (`chatcmpl-123`), so it stays stable.
        json!({"id":"msg_123","type":"message","role":"assistant","model":"gpt-4",
               "content":[{"type":"text","text":"I'm doing well, thank you!"}],
               "stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":8}})
    );
}

// 4. Tool-call non-stream response.
#[test]
fn reference_4_tool_call_responses() {
    let calls = json!([
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\n\"location\": \"Boston, MA\"\n}"}},
        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    ]);
    let body = |content: Value| {
        json!({"id": "c", "model": "gpt-4", "choices": [{"message": {"role": "assistant", "content": content, "tool_calls": calls},
               "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
        .to_string()
    };
    let out = convert_response(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        body(Value::Null).as_bytes(),
    )
    .unwrap();
    assert_eq!(out["stop_reason"], "tool_use");
    assert_eq!(
        out["content"],
        json!([
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Boston, MA"}},
            {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}
        ])
    );
    let out = convert_response(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        body(json!("Checking.")).as_bytes(),
    )
    .unwrap();
    assert_eq!(
        out["content"][0],
        json!({"type": "text", "text": "Checking."})
    );
    assert_eq!(out["content"][1]["type"], "tool_use");
    assert_eq!(out["content"][2]["type"], "tool_use");
}

// 5. Stream, simple.
#[test]
fn reference_5_simple_stream() {
    let mut chunks = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let words = ["I'm", " Kim", ",", " your", " assistant", "."];
    for w in words {
        chunks.push(chunk(json!({"content": w}), Value::Null));
    }
    chunks.push(chunk(json!({"content": ""}), json!("stop")));
    chunks.push(json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4",
                       "choices": [], "usage": {"prompt_tokens": 31, "completion_tokens": 15, "total_tokens": 46}}));
    chunks.push(json!("[DONE]"));
    let out = events(convert_stream(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        true,
        chat_chunks(&chunks),
    ));
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    let mut expected = vec!["message_start", "content_block_start"];
    expected.extend(std::iter::repeat_n("content_block_delta", words.len()));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    for (name, data) in &out {
        assert_eq!(
            data["type"],
            name.as_deref().unwrap(),
            "event name = data.type"
        );
    }
    let start = &out[0].1["message"];
    assert_eq!(start["id"], "msg_123", "Anthropic's id convention");
    assert_eq!(start["model"], "gpt-4");
    assert_eq!(
        start["usage"],
        json!({"input_tokens": 0, "output_tokens": 0})
    );
    assert_eq!(
        out[1].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    let text: String = out[2..2 + words.len()]
        .iter()
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, words.concat());
    assert_message_delta(
        &out,
        "end_turn",
        json!({"input_tokens": 31, "output_tokens": 15}),
    );
}

// 6. Stream, sandwich: tool, text, tool.
#[test]
fn reference_6_sandwich_stream() {
    let tool = |index: u64, id: Option<&str>, name: Option<&str>, args: &str| {
        let mut tc = json!({"index": index, "function": {"arguments": args}});
        if let Some(id) = id {
            tc["id"] = id.into();
            tc["type"] = "function".into();
        }
        if let Some(name) = name {
            tc["function"]["name"] = name.into();
        }
        chunk(json!({"tool_calls": [tc]}), Value::Null)
    };
    let chunks = vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        tool(0, Some("functions.search:0"), Some("search"), ""),
        tool(0, None, None, "{\"queries"),
        tool(0, None, None, "\":"),
        tool(0, None, None, "1"),
        tool(0, None, None, "}"),
        chunk(json!({"content": "Now fetching."}), Value::Null),
        tool(
            1,
            Some("functions.fetch:1"),
            Some("fetch"),
            "{\"url\":\"x\"}",
        ),
        chunk(json!({}), json!("tool_calls")),
        json!({"id": "chatcmpl-123", "choices": [], "usage": {"prompt_tokens": 177, "completion_tokens": 69}}),
        json!("[DONE]"),
    ];
    let out = events(convert_stream(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        true,
        chat_chunks(&chunks),
    ));
    // Every block is closed before the next opens; indices are contiguous from 0.
    let mut open: Option<u64> = None;
    let mut next = 0;
    let mut blocks = Vec::new();
    for (name, d) in &out {
        match name.as_deref().unwrap() {
            "content_block_start" => {
                assert_eq!(open, None, "a block opened while another was open");
                assert_eq!(d["index"], next);
                open = Some(next);
                next += 1;
                blocks.push((d["content_block"].clone(), Vec::new()));
            }
            "content_block_delta" => {
                assert_eq!(Some(d["index"].as_u64().unwrap()), open);
                blocks.last_mut().unwrap().1.push(d["delta"].clone());
            }
            "content_block_stop" => {
                assert_eq!(Some(d["index"].as_u64().unwrap()), open);
                open = None;
            }
            _ => {}
        }
    }
    assert_eq!(blocks.len(), 3);
    assert_eq!(
        blocks[0].0,
        json!({"type": "tool_use", "id": "functions_search_0", "name": "search", "input": {}})
    );
    let fragments: Vec<&str> = blocks[0]
        .1
        .iter()
        .map(|d| d["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(fragments, ["{\"queries", "\":", "1", "}"]);
    assert_eq!(blocks[1].0["type"], "text");
    assert_eq!(blocks[2].0["id"], "functions_fetch_1");
    assert_message_delta(
        &out,
        "tool_use",
        json!({"input_tokens": 177, "output_tokens": 69}),
    );
}

// 7. SSE framing.
#[test]
fn reference_7_sse_framing() {
    let long = "x".repeat(70 * 1024);
    let got = octo_test::events(&format!(
        "event: message_start\r\nid: 7\r\ndata: {{\"a\":1}}\r\n\r\n: comment\n\ndata:x\n\ndata: x\n\ndata: {long}\n\ndata: [DONE]\n\n"
    ));
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].name(), Some("message_start"));
    assert_eq!(got[0].id(), Some("7"));
    assert_eq!(
        &got[0].to_frame()[..],
        b"event: message_start\r\nid: 7\r\ndata: {\"a\":1}\r\n\r\n"
    );
    assert_eq!(&got[1].data_body().to_bytes()[..], b"x");
    assert_eq!(&got[2].data_body().to_bytes()[..], b"x");
    assert_eq!(got[3].data_body().to_bytes().len(), long.len());
    assert!(got[4].is_done_marker());
    // Re-emitted canonically once edited.
    let mut ev = got[0].clone();
    ev.data_mut().set_json(json!({"a": 2}));
    assert_eq!(
        &ev.to_frame()[..],
        b"event: message_start\nid: 7\ndata: {\"a\":2}\n\n"
    );
}

// ------------------------------------------------------------------------------------ edge cases

#[test]
fn chat_client_without_include_usage_gets_no_usage_chunk_but_upstream_is_asked() {
    let body =
        br#"{"model":"m","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#;
    let up = testing::convert_request(
        Protocol::OpenAiChat,
        Protocol::Anthropic,
        body,
        RouteParams::default(),
    )
    .unwrap();
    assert_eq!(up["stream"], true);
    let chat_up = testing::convert_request(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        body,
        RouteParams::default(),
    )
    .unwrap();
    assert_eq!(chat_up["stream_options"], json!({"include_usage": true}));
    let stream = [
        r#"{"type":"message_start","message":{"id":"m1","model":"c","usage":{"input_tokens":3,"output_tokens":1}}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}"#,
        r#"{"type":"message_stop"}"#,
    ];
    let evs = || stream.iter().map(|s| Ok(Event::data(Bytes::from(*s))));
    let without = events(convert_stream(
        Protocol::OpenAiChat,
        Protocol::Anthropic,
        false,
        evs(),
    ));
    assert!(without.iter().all(|(_, d)| d.get("usage").is_none()));
    assert_eq!(without.last().unwrap().1, json!("[DONE]"));
    let with = events(convert_stream(
        Protocol::OpenAiChat,
        Protocol::Anthropic,
        true,
        evs(),
    ));
    let usage = &with[with.len() - 2].1;
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 3);
    assert_eq!(usage["usage"]["completion_tokens"], 2);
}

#[test]
fn empty_finish_reason_is_not_terminal_and_eof_still_terminates() {
    let chunks = vec![
        chunk(json!({"role": "assistant", "content": "a"}), json!("")),
        chunk(json!({"content": "b"}), json!("")),
    ];
    for client in [
        Protocol::Anthropic,
        Protocol::OpenAiResponses,
        Protocol::Gemini,
    ] {
        let out = events(convert_stream(
            client,
            Protocol::OpenAiChat,
            true,
            chat_chunks(&chunks),
        ));
        let last = &out.last().unwrap();
        match client {
            Protocol::Anthropic => {
                assert_eq!(last.0.as_deref(), Some("message_stop"));
                assert_eq!(out[out.len() - 2].1["delta"]["stop_reason"], "end_turn");
            }
            Protocol::OpenAiResponses => assert_eq!(last.0.as_deref(), Some("response.completed")),
            _ => assert_eq!(last.1["candidates"][0]["finishReason"], "STOP"),
        }
    }
}

#[test]
fn gemini_calls_without_ids_get_unique_ids_and_tool_use() {
    let chunk1 = json!({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "c2ln"},
        {"functionCall": {"name": "f", "args": {"a": 2}}}
    ]}}], "responseId": "r1", "modelVersion": "gemini-x"});
    let chunk2 = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 2}, "responseId": "r1"});
    let evs = [chunk1, chunk2].map(|c| Ok(Event::data(Bytes::from(c.to_string()))));
    let out = events(convert_stream(
        Protocol::OpenAiChat,
        Protocol::Gemini,
        true,
        evs,
    ));
    let starts: Vec<&Value> = out
        .iter()
        .filter_map(|(_, d)| d.pointer("/choices/0/delta/tool_calls/0"))
        .filter(|tc| tc.get("id").is_some())
        .collect();
    assert_eq!(starts.len(), 2);
    let id0 = starts[0]["id"].as_str().unwrap();
    let id1 = starts[1]["id"].as_str().unwrap();
    assert_ne!(id0, id1);
    assert!(id0.starts_with("call_syn_") && id0.contains("__thought__"));
    let (base, sig) = ids::unfold_signature(id0);
    assert!(ids::is_synthesized(&base));
    assert_eq!(sig.as_deref(), Some("c2ln"));
    let finish = out
        .iter()
        .find_map(|(_, d)| {
            d.pointer("/choices/0/finish_reason")
                .filter(|f| !f.is_null())
        })
        .unwrap();
    assert_eq!(finish, "tool_calls");
    let usage = &out[out.len() - 2].1["usage"];
    assert_eq!(usage["completion_tokens"], 6);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 2);

    // The next turn replays the calls: the signature goes back on the call, the made-up id does
    // not, and the results are named after their calls.
    let next = json!({"model": "m", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": id0, "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
            {"id": id1, "type": "function", "function": {"name": "f", "arguments": "{\"a\":2}"}}]},
        {"role": "tool", "tool_call_id": id0, "content": "one"},
        {"role": "tool", "tool_call_id": id1, "content": "two"}
    ]});
    let up = testing::convert_request(
        Protocol::OpenAiChat,
        Protocol::Gemini,
        next.to_string().as_bytes(),
        RouteParams::default(),
    )
    .unwrap();
    assert_eq!(
        up["contents"][1]["parts"][0],
        json!({"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "c2ln"})
    );
    assert_eq!(
        up["contents"][2]["parts"],
        json!([
            {"functionResponse": {"name": "f", "response": {"output": "one"}}},
            {"functionResponse": {"name": "f", "response": {"output": "two"}}}
        ])
    );
}

#[test]
fn anthropic_tools_without_input_become_empty_objects_for_openai_clients() {
    let stream = [
        r#"{"type":"message_start","message":{"id":"m1","model":"c","usage":{"input_tokens":3,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"now","input":{}}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":2}}"#,
        r#"{"type":"message_stop"}"#,
    ];
    let evs = || stream.iter().map(|s| Ok(Event::data(Bytes::from(*s))));
    let chat = events(convert_stream(
        Protocol::OpenAiChat,
        Protocol::Anthropic,
        false,
        evs(),
    ));
    let args: String = chat
        .iter()
        .filter_map(|(_, d)| d.pointer("/choices/0/delta/tool_calls/0/function/arguments"))
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args, "{}");
    let responses = events(convert_stream(
        Protocol::OpenAiResponses,
        Protocol::Anthropic,
        false,
        evs(),
    ));
    let done = responses
        .iter()
        .find(|(n, _)| n.as_deref() == Some("response.function_call_arguments.done"))
        .unwrap();
    assert_eq!(done.1["arguments"], "{}");
}

#[test]
fn image_jpg_is_normalised_and_sniffed_for_anthropic() {
    let jpeg = "/9j/4AAQSkZJRgABAQ";
    let body = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": format!("data:image/jpg;base64,{jpeg}")}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,/9j/4AAQSkZJRgABAQ"}}
    ]}]});
    let up = testing::convert_request(
        Protocol::OpenAiChat,
        Protocol::Anthropic,
        body.to_string().as_bytes(),
        RouteParams::default(),
    )
    .unwrap();
    let content = &up["messages"][0]["content"];
    assert_eq!(content[0]["source"]["media_type"], "image/jpeg");
    // Declared PNG, but the bytes are JPEG: Anthropic would refuse the mismatch.
    assert_eq!(content[1]["source"]["media_type"], "image/jpeg");
    assert_eq!(up["max_tokens"], DEFAULT_MAX_TOKENS);
}

#[test]
fn refusals_name_the_parameter() {
    let cases: [(Protocol, Protocol, &str, &str); 5] = [
        (
            Protocol::OpenAiChat,
            Protocol::Anthropic,
            r#"{"model":"m","n":2,"messages":[]}"#,
            "n",
        ),
        (
            Protocol::OpenAiChat,
            Protocol::Gemini,
            r#"{"model":"m","n":3,"messages":[]}"#,
            "n",
        ),
        (
            Protocol::OpenAiResponses,
            Protocol::Anthropic,
            r#"{"model":"m","input":"x","previous_response_id":"resp_1"}"#,
            "previous_response_id",
        ),
        (
            Protocol::OpenAiChat,
            Protocol::Anthropic,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AA==","format":"wav"}}]}]}"#,
            "messages[0]",
        ),
        (
            Protocol::Gemini,
            Protocol::OpenAiChat,
            r#"{"contents":[],"cachedContent":"cachedContents/x"}"#,
            "cachedContent",
        ),
    ];
    for (client, upstream, body, param) in cases {
        let e = testing::convert_request(client, upstream, body.as_bytes(), RouteParams::default())
            .unwrap_err();
        assert_eq!(e.status().as_u16(), 400, "{body}");
        assert_eq!(e.param(), Some(param), "{body}");
        let rendered: Value = serde_json::from_slice(&e.render(client).body).unwrap();
        assert!(rendered.to_string().contains(param) || client != Protocol::OpenAiChat);
    }
}

#[test]
fn tool_choice_rules_toward_anthropic() {
    let conv = |extra: Value| {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        testing::convert_request(
            Protocol::OpenAiChat,
            Protocol::Anthropic,
            body.to_string().as_bytes(),
            RouteParams::default(),
        )
        .unwrap()
    };
    assert_eq!(
        conv(json!({"tool_choice": "none"}))["tool_choice"],
        json!({"type": "none"})
    );
    assert_eq!(
        conv(json!({"tool_choice": "required"}))["tool_choice"],
        json!({"type": "any"})
    );
    assert_eq!(
        conv(json!({"parallel_tool_calls": false}))["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    assert_eq!(
        conv(
            json!({"tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": false})
        )["tool_choice"],
        json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true})
    );
    // temperature wins over top_p, and is clamped to Anthropic's range.
    let v = conv(json!({"temperature": 1.7, "top_p": 0.5}));
    assert_eq!(v["temperature"], 1.0);
    assert!(v.get("top_p").is_none());
    // No tools left: no tool_choice.
    let v = testing::convert_request(
        Protocol::OpenAiChat,
        Protocol::Anthropic,
        br#"{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"required"}"#,
        RouteParams::default(),
    )
    .unwrap();
    assert!(v.get("tool_choice").is_none());
}

#[test]
fn in_band_errors_keep_the_upstream_message_and_status() {
    let evs = [Ok(Event::named(
        "error",
        Bytes::from_static(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ),
    ))];
    let out = convert_stream(Protocol::OpenAiChat, Protocol::Anthropic, true, evs);
    let err = out.into_iter().last().unwrap().unwrap_err();
    assert_eq!(err.status().as_u16(), 529);
    assert_eq!(err.message(), "Overloaded");
    let frame = err.render_stream_frame(Protocol::OpenAiChat);
    assert!(
        std::str::from_utf8(&frame)
            .unwrap()
            .contains("\"message\":\"Overloaded\"")
    );
}

#[test]
fn gemini_schemas_are_cleaned_in_requests() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
        "additionalProperties": false, "properties": {"a": {"type": "string", "format": "email"}}}}}]});
    let up = testing::convert_request(
        Protocol::OpenAiChat,
        Protocol::Gemini,
        body.to_string().as_bytes(),
        RouteParams::default(),
    )
    .unwrap();
    assert_eq!(
        up["tools"][0]["functionDeclarations"][0]["parameters"],
        json!({"type": "object", "properties": {"a": {"type": "string"}}})
    );
}

#[test]
fn refusals_are_never_empty_turns() {
    // OpenAI's refusal (finish "stop") → an Anthropic text block with stop_reason "refusal".
    let out = convert_response(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        br#"{"id":"c","model":"g","choices":[{"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}"#,
    )
    .unwrap();
    assert_eq!(
        out["content"],
        json!([{"type": "text", "text": "I can't help with that."}])
    );
    assert_eq!(out["stop_reason"], "refusal");
    let chunks = vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"refusal": "No."}), Value::Null),
        chunk(json!({}), json!("stop")),
        json!("[DONE]"),
    ];
    let out = events(convert_stream(
        Protocol::Anthropic,
        Protocol::OpenAiChat,
        true,
        chat_chunks(&chunks),
    ));
    assert_eq!(out[2].1["delta"]["text"], "No.");
    assert_eq!(out[out.len() - 2].1["delta"]["stop_reason"], "refusal");
    // And back: Anthropic's refusal → OpenAI content_filter, Gemini SAFETY.
    let body = br#"{"id":"m","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"No."}],"stop_reason":"refusal","usage":{"input_tokens":1,"output_tokens":1}}"#;
    let chat = convert_response(Protocol::OpenAiChat, Protocol::Anthropic, body).unwrap();
    assert_eq!(chat["choices"][0]["finish_reason"], "content_filter");
    let gemini = convert_response(Protocol::Gemini, Protocol::Anthropic, body).unwrap();
    assert_eq!(gemini["candidates"][0]["finishReason"], "SAFETY");
    let responses = convert_response(Protocol::OpenAiResponses, Protocol::Anthropic, body).unwrap();
    assert_eq!(responses["status"], "incomplete");
    assert_eq!(responses["incomplete_details"]["reason"], "content_filter");
}

#[test]
fn responses_refusal_parts_stream_in_their_own_part() {
    let chunks = vec![
        chunk(json!({"role": "assistant", "content": "Well"}), Value::Null),
        chunk(json!({"refusal": "no"}), Value::Null),
        chunk(json!({}), json!("stop")),
        json!("[DONE]"),
    ];
    let out = events(convert_stream(
        Protocol::OpenAiResponses,
        Protocol::OpenAiChat,
        true,
        chat_chunks(&chunks),
    ));
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.content_part.added",
            "response.refusal.delta",
            "response.refusal.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.incomplete",
        ]
    );
    let seqs: Vec<u64> = out
        .iter()
        .map(|(_, d)| d["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    let last = &out.last().unwrap().1["response"];
    assert_eq!(
        last["output"][0]["content"],
        json!([
            {"type": "output_text", "text": "Well", "annotations": []},
            {"type": "refusal", "refusal": "no"}
        ])
    );
    assert_eq!(out[8].1["content_index"], 1);
}

#[test]
fn anthropic_message_start_does_not_wait_for_the_upstreams_second_event() {
    // OpenAI (and the mock) open a stream with a role-only chunk; a reasoning model may then think
    // for seconds. The Anthropic client's `message_start` must not wait for the next chunk.
    let role_only = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    let mut stream = testing::answer(Protocol::Anthropic, Protocol::OpenAiChat, false).stream();
    for ev in chat_chunks(&[role_only]) {
        stream.push(&ev.unwrap());
    }
    let first = stream
        .next_event()
        .expect("message_start is ready without a second upstream event")
        .unwrap();
    assert_eq!(first.name(), Some("message_start"));
    assert!(stream.next_event().is_none(), "then it waits");
    assert!(!stream.is_done(), "the stream has not ended");
}
