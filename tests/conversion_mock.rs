//! End to end: `ConvertEngine` around a real `HttpEndpoint` talking HTTP to the in-process mock
//! upstream, for every (client, upstream) pair, streaming and not: plain text, two parallel tool
//! calls and the next turn that answers them, an in-band error mid-stream, and an upstream that ends
//! its stream early.

use std::sync::Arc;

use futures::StreamExt;
use octo_core::{Body, Engine, Protocol, Request, ResponseBody, RouteParams};
use octo_engines::convert::ConvertEngine;
use octo_engines::endpoint::{EndpointConfig, HttpEndpoint};
use octo_mock::MockServer;
use octo_test::{events, mock};
use serde_json::{Value, json};

const MODEL: &str = "mock-model";

fn engine(mock: &MockServer, upstream: Protocol) -> ConvertEngine {
    let endpoint = HttpEndpoint::new(EndpointConfig::new("mock", mock.url(), upstream)).unwrap();
    ConvertEngine::new(Arc::new(endpoint), upstream)
}

fn pairs() -> impl Iterator<Item = (Protocol, Protocol)> {
    Protocol::CHAT_PROTOCOLS.into_iter().flat_map(|c| {
        Protocol::CHAT_PROTOCOLS
            .into_iter()
            .filter(move |u| *u != c)
            .map(move |u| (c, u))
    })
}

/// What a turn holds, in the canonical shapes the requests are built from.
enum Turn {
    User(String),
    /// Calls `(id, name, arguments JSON)`.
    Calls(Vec<(String, String, String)>),
    /// Results `(id, name, text)`.
    Results(Vec<(String, String, String)>),
}

fn tools_for(client: Protocol) -> Value {
    let schema = |prop: &str| json!({"type": "object", "properties": {prop: {"type": "string"}}});
    match client {
        Protocol::OpenAiChat => json!([
            {"type": "function", "function": {"name": "get_weather", "parameters": schema("location")}},
            {"type": "function", "function": {"name": "search", "parameters": schema("query")}}
        ]),
        Protocol::OpenAiResponses => json!([
            {"type": "function", "name": "get_weather", "parameters": schema("location"), "strict": false},
            {"type": "function", "name": "search", "parameters": schema("query"), "strict": false}
        ]),
        Protocol::Anthropic => json!([
            {"name": "get_weather", "input_schema": schema("location")},
            {"name": "search", "input_schema": schema("query")}
        ]),
        _ => json!([{"functionDeclarations": [
            {"name": "get_weather", "parameters": schema("location")},
            {"name": "search", "parameters": schema("query")}
        ]}]),
    }
}

/// A request in `client`'s protocol.
fn request(client: Protocol, turns: &[Turn], stream: bool, tools: bool) -> Request {
    let mut body = match client {
        Protocol::OpenAiChat => {
            let mut messages = Vec::new();
            for t in turns {
                match t {
                    Turn::User(text) => messages.push(json!({"role": "user", "content": text})),
                    Turn::Calls(calls) => messages.push(json!({"role": "assistant", "content": null,
                        "tool_calls": calls.iter().map(|(id, name, args)| json!({"id": id, "type": "function",
                            "function": {"name": name, "arguments": args}})).collect::<Vec<_>>()})),
                    Turn::Results(results) => {
                        for (id, _, text) in results {
                            messages.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
                        }
                    }
                }
            }
            let mut b = json!({"model": MODEL, "messages": messages});
            if stream {
                b["stream"] = true.into();
                b["stream_options"] = json!({"include_usage": true});
            }
            b
        }
        Protocol::OpenAiResponses => {
            let mut input = Vec::new();
            for t in turns {
                match t {
                    Turn::User(text) => input.push(json!({"role": "user", "content": text})),
                    Turn::Calls(calls) => {
                        for (id, name, args) in calls {
                            input.push(json!({"type": "function_call", "call_id": id, "name": name, "arguments": args}));
                        }
                    }
                    Turn::Results(results) => {
                        for (id, _, text) in results {
                            input.push(json!({"type": "function_call_output", "call_id": id, "output": text}));
                        }
                    }
                }
            }
            json!({"model": MODEL, "input": input, "stream": stream})
        }
        Protocol::Anthropic => {
            let mut messages = Vec::new();
            for t in turns {
                match t {
                    Turn::User(text) => messages.push(json!({"role": "user", "content": text})),
                    Turn::Calls(calls) => messages.push(json!({"role": "assistant", "content":
                        calls.iter().map(|(id, name, args)| json!({"type": "tool_use", "id": id, "name": name,
                            "input": serde_json::from_str::<Value>(args).unwrap()})).collect::<Vec<_>>()})),
                    Turn::Results(results) => messages.push(json!({"role": "user", "content":
                        results.iter().map(|(id, _, text)| json!({"type": "tool_result", "tool_use_id": id,
                            "content": text})).collect::<Vec<_>>()})),
                }
            }
            json!({"model": MODEL, "max_tokens": 256, "messages": messages, "stream": stream})
        }
        _ => {
            let mut contents = Vec::new();
            for t in turns {
                match t {
                    Turn::User(text) => contents.push(json!({"role": "user", "parts": [{"text": text}]})),
                    Turn::Calls(calls) => contents.push(json!({"role": "model", "parts":
                        calls.iter().map(|(id, name, args)| json!({"functionCall": {"id": id, "name": name,
                            "args": serde_json::from_str::<Value>(args).unwrap()}})).collect::<Vec<_>>()})),
                    Turn::Results(results) => contents.push(json!({"role": "user", "parts":
                        results.iter().map(|(id, name, text)| json!({"functionResponse": {"id": id, "name": name,
                            "response": {"output": text}}})).collect::<Vec<_>>()})),
                }
            }
            json!({"contents": contents})
        }
    };
    if tools {
        body["tools"] = tools_for(client);
    }
    let mut req = Request::post(client, "/", Body::from_json(body));
    if client == Protocol::Gemini {
        req.route = RouteParams {
            model: Some(MODEL.to_owned()),
            stream: Some(stream),
        };
    }
    req
}

/// A client's view of the answer.
#[derive(Debug, Default)]
struct Answer {
    text: String,
    /// `(id, name, arguments)`.
    calls: Vec<(String, String, String)>,
    stop: Option<String>,
    error: Option<String>,
    terminated: bool,
}

fn read_full(client: Protocol, v: &Value) -> Answer {
    let mut a = Answer {
        terminated: true,
        ..Answer::default()
    };
    match client {
        Protocol::OpenAiChat => {
            let msg = &v["choices"][0]["message"];
            a.text = msg["content"].as_str().unwrap_or_default().to_owned();
            for tc in msg["tool_calls"].as_array().into_iter().flatten() {
                a.calls.push((
                    tc["id"].as_str().unwrap().to_owned(),
                    tc["function"]["name"].as_str().unwrap().to_owned(),
                    tc["function"]["arguments"].as_str().unwrap().to_owned(),
                ));
            }
            a.stop = v["choices"][0]["finish_reason"].as_str().map(str::to_owned);
        }
        Protocol::OpenAiResponses => {
            for item in v["output"].as_array().unwrap() {
                match item["type"].as_str() {
                    Some("message") => {
                        for c in item["content"].as_array().unwrap() {
                            a.text.push_str(c["text"].as_str().unwrap_or_default());
                        }
                    }
                    Some("function_call") => a.calls.push((
                        item["call_id"].as_str().unwrap().to_owned(),
                        item["name"].as_str().unwrap().to_owned(),
                        item["arguments"].as_str().unwrap().to_owned(),
                    )),
                    _ => {}
                }
            }
            a.stop = v["status"].as_str().map(str::to_owned);
        }
        Protocol::Anthropic => {
            for b in v["content"].as_array().unwrap() {
                match b["type"].as_str() {
                    Some("text") => a.text.push_str(b["text"].as_str().unwrap()),
                    Some("tool_use") => a.calls.push((
                        b["id"].as_str().unwrap().to_owned(),
                        b["name"].as_str().unwrap().to_owned(),
                        b["input"].to_string(),
                    )),
                    _ => {}
                }
            }
            a.stop = v["stop_reason"].as_str().map(str::to_owned);
        }
        _ => {
            let cand = &v["candidates"][0];
            for p in cand["content"]["parts"].as_array().unwrap() {
                if let Some(fc) = p.get("functionCall") {
                    a.calls.push((
                        fc["id"].as_str().unwrap().to_owned(),
                        fc["name"].as_str().unwrap().to_owned(),
                        fc["args"].to_string(),
                    ));
                } else {
                    a.text.push_str(p["text"].as_str().unwrap_or_default());
                }
            }
            a.stop = cand["finishReason"].as_str().map(str::to_owned);
        }
    }
    a
}

/// Reads a client stream, checking the strictness rules of each protocol's SDK as it goes.
fn read_stream(client: Protocol, frames: &str) -> Answer {
    let mut a = Answer::default();
    let mut open_block: Option<u64> = None;
    let mut next_block = 0;
    let mut block_call: Vec<Option<usize>> = Vec::new();
    let mut seq = None;
    for ev in events(frames) {
        assert!(!a.terminated, "{client}: event after the terminator");
        let data = ev.data_body().to_bytes();
        if ev.is_done_marker() {
            assert_eq!(client, Protocol::OpenAiChat);
            a.terminated = true;
            continue;
        }
        let v: Value = serde_json::from_slice(&data).unwrap();
        if let Some(e) = v.get("error") {
            let msg = e["message"]
                .as_str()
                .or_else(|| e.as_str())
                .unwrap_or_default();
            a.error = Some(msg.to_owned());
            continue;
        }
        match client {
            Protocol::OpenAiChat => {
                assert!(v["choices"].is_array(), "choices is never null: {v}");
                let Some(choice) = v["choices"].get(0) else {
                    continue;
                };
                let d = &choice["delta"];
                a.text.push_str(d["content"].as_str().unwrap_or_default());
                for tc in d["tool_calls"].as_array().into_iter().flatten() {
                    let i = tc["index"].as_u64().unwrap() as usize;
                    if tc.get("id").is_some() {
                        assert_eq!(i, a.calls.len(), "a new call takes the next index");
                        assert_eq!(tc["type"], "function");
                        a.calls.push((
                            tc["id"].as_str().unwrap().to_owned(),
                            tc["function"]["name"].as_str().unwrap().to_owned(),
                            String::new(),
                        ));
                    } else {
                        assert!(tc["function"].get("name").is_none(), "name repeated: {tc}");
                    }
                    a.calls[i]
                        .2
                        .push_str(tc["function"]["arguments"].as_str().unwrap_or_default());
                }
                if let Some(f) = choice["finish_reason"].as_str() {
                    a.stop = Some(f.to_owned());
                }
            }
            Protocol::Anthropic => {
                let name = ev.name().unwrap();
                assert_eq!(v["type"], name);
                match name {
                    "content_block_start" => {
                        assert_eq!(open_block, None);
                        assert_eq!(v["index"], next_block);
                        open_block = Some(next_block);
                        next_block += 1;
                        let b = &v["content_block"];
                        if b["type"] == "tool_use" {
                            let id = b["id"].as_str().unwrap();
                            assert!(
                                id.bytes()
                                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'),
                                "tool id {id} is not Anthropic-safe"
                            );
                            a.calls.push((
                                id.to_owned(),
                                b["name"].as_str().unwrap().to_owned(),
                                String::new(),
                            ));
                            block_call.push(Some(a.calls.len() - 1));
                        } else {
                            block_call.push(None);
                        }
                    }
                    "content_block_delta" => {
                        let i = v["index"].as_u64().unwrap();
                        assert_eq!(Some(i), open_block);
                        let d = &v["delta"];
                        match d["type"].as_str().unwrap() {
                            "text_delta" => a.text.push_str(d["text"].as_str().unwrap()),
                            "input_json_delta" => {
                                let call = block_call[i as usize].unwrap();
                                a.calls[call]
                                    .2
                                    .push_str(d["partial_json"].as_str().unwrap());
                            }
                            _ => {}
                        }
                    }
                    "content_block_stop" => {
                        assert_eq!(Some(v["index"].as_u64().unwrap()), open_block);
                        open_block = None;
                    }
                    "message_delta" => {
                        a.stop = v["delta"]["stop_reason"].as_str().map(str::to_owned);
                        assert!(a.stop.is_some(), "message_delta carries a stop_reason");
                    }
                    "message_stop" => a.terminated = true,
                    "error" => a.error = v["error"]["message"].as_str().map(str::to_owned),
                    _ => {}
                }
            }
            Protocol::OpenAiResponses => {
                let name = ev.name().unwrap();
                if name == "error" {
                    a.error = v["message"].as_str().map(str::to_owned);
                    continue;
                }
                let n = v["sequence_number"].as_u64().unwrap();
                assert!(
                    seq.is_none_or(|s| n == s + 1),
                    "sequence numbers are consecutive"
                );
                seq = Some(n);
                match name {
                    "response.output_item.added" if v["item"]["type"] == "function_call" => {
                        a.calls.push((
                            v["item"]["call_id"].as_str().unwrap().to_owned(),
                            v["item"]["name"].as_str().unwrap().to_owned(),
                            String::new(),
                        ));
                    }
                    "response.output_text.delta" => a.text.push_str(v["delta"].as_str().unwrap()),
                    "response.function_call_arguments.delta" => {
                        a.calls
                            .last_mut()
                            .unwrap()
                            .2
                            .push_str(v["delta"].as_str().unwrap());
                    }
                    "response.failed" => {
                        // What the API and the SDK's stream helper expect of a stream that broke.
                        assert_eq!(v["response"]["status"], "failed", "{v}");
                        assert!(v["response"]["error"]["code"].is_string(), "{v}");
                        a.error = v["response"]["error"]["message"]
                            .as_str()
                            .map(str::to_owned);
                    }
                    "response.completed" | "response.incomplete" => {
                        let full = read_full(client, &v["response"]);
                        assert_eq!(full.text, a.text, "response.completed repeats the text");
                        assert_eq!(full.calls, a.calls, "response.completed repeats the calls");
                        a.stop = v["response"]["status"].as_str().map(str::to_owned);
                        a.terminated = true;
                    }
                    _ => {}
                }
            }
            _ => {
                let cand = &v["candidates"][0];
                for part in cand["content"]["parts"].as_array().unwrap() {
                    if let Some(fc) = part.get("functionCall") {
                        a.calls.push((
                            fc["id"].as_str().unwrap().to_owned(),
                            fc["name"].as_str().unwrap().to_owned(),
                            fc["args"].to_string(),
                        ));
                    } else {
                        a.text.push_str(part["text"].as_str().unwrap_or_default());
                    }
                }
                if let Some(f) = cand["finishReason"].as_str() {
                    a.stop = Some(f.to_owned());
                    a.terminated = true;
                }
            }
        }
    }
    a
}

async fn ask(engine: &ConvertEngine, client: Protocol, req: Request) -> Answer {
    let resp = engine.process(req).await.expect("the conversion succeeds");
    assert_eq!(resp.status, 200);
    match resp.body {
        ResponseBody::Full(mut body) => read_full(client, body.json().unwrap()),
        ResponseBody::Stream(mut events) => {
            let mut frames = String::new();
            while let Some(item) = events.next().await {
                let frame = match item {
                    Ok(ev) => ev.to_frame(),
                    Err(e) => e.render_stream_frame(client),
                };
                frames.push_str(std::str::from_utf8(&frame).unwrap());
            }
            read_stream(client, &frames)
        }
    }
}

fn natural_stop(client: Protocol) -> &'static str {
    match client {
        Protocol::OpenAiChat => "stop",
        Protocol::OpenAiResponses => "completed",
        Protocol::Anthropic => "end_turn",
        _ => "STOP",
    }
}

fn tool_stop(client: Protocol) -> &'static str {
    match client {
        Protocol::OpenAiChat => "tool_calls",
        Protocol::OpenAiResponses => "completed",
        Protocol::Anthropic => "tool_use",
        _ => "STOP",
    }
}

#[tokio::test]
async fn text_for_every_pair_streaming_and_not() {
    let mock = mock().await;
    for (client, upstream) in pairs() {
        let engine = engine(&mock, upstream);
        for stream in [false, true] {
            let what = format!("{client} client, {upstream} upstream, stream {stream}");
            let turns = [Turn::User("héllo wörld".into())];
            let a = ask(&engine, client, request(client, &turns, stream, false)).await;
            assert_eq!(
                a.text, "Hello from octo-mock. You said: héllo wörld",
                "{what}"
            );
            assert!(a.calls.is_empty(), "{what}");
            assert_eq!(a.stop.as_deref(), Some(natural_stop(client)), "{what}");
            assert!(a.terminated, "{what}");
            assert!(a.error.is_none(), "{what}");
            let recorded = mock.requests().pop().unwrap();
            let body = recorded.body_json().unwrap();
            match upstream {
                Protocol::OpenAiChat if stream => {
                    assert_eq!(body["stream_options"]["include_usage"], true, "{what}");
                }
                Protocol::Anthropic => assert!(body["max_tokens"].is_u64(), "{what}"),
                Protocol::Gemini => {
                    let action = if stream {
                        ":streamGenerateContent?alt=sse"
                    } else {
                        ":generateContent"
                    };
                    assert_eq!(
                        recorded.path_and_query,
                        format!("/v1beta/models/{MODEL}{action}"),
                        "{what}"
                    );
                }
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn parallel_tool_calls_and_their_results_for_every_pair() {
    let mock = mock().await;
    for (client, upstream) in pairs() {
        let engine = engine(&mock, upstream);
        for stream in [false, true] {
            let what = format!("{client} client, {upstream} upstream, stream {stream}");
            let first = Turn::User("weather and news [mock:tools=2]".into());
            let a = ask(
                &engine,
                client,
                request(client, std::slice::from_ref(&first), stream, true),
            )
            .await;
            assert_eq!(a.calls.len(), 2, "{what}: {a:?}");
            assert_ne!(a.calls[0].0, a.calls[1].0, "{what}: distinct ids");
            assert!(a.calls.iter().all(|c| !c.0.is_empty()), "{what}");
            assert_eq!(a.calls[0].1, "get_weather", "{what}");
            assert_eq!(a.calls[1].1, "search", "{what}");
            for (i, call) in a.calls.iter().enumerate() {
                let args: Value = serde_json::from_str(&call.2)
                    .unwrap_or_else(|e| panic!("{what}: arguments {:?}: {e}", call.2));
                assert_eq!(args, json!({"query": "mock", "n": i}), "{what}");
            }
            assert_eq!(a.stop.as_deref(), Some(tool_stop(client)), "{what}");
            assert!(a.terminated, "{what}");

            // The next turn answers both calls with the ids the client got.
            let results: Vec<(String, String, String)> = a
                .calls
                .iter()
                .enumerate()
                .map(|(i, (id, name, _))| (id.clone(), name.clone(), format!("sunny-{i}")))
                .collect();
            let turns = [first, Turn::Calls(a.calls.clone()), Turn::Results(results)];
            let b = ask(&engine, client, request(client, &turns, stream, true)).await;
            assert!(
                b.text.starts_with("Hello from octo-mock. Tool result: ")
                    && b.text.contains("sunny-1"),
                "{what}: {b:?}"
            );
            let body = mock.requests().pop().unwrap().body_json().unwrap();
            match upstream {
                Protocol::Gemini => {
                    let model_turn = &body["contents"][1]["parts"];
                    assert_eq!(
                        model_turn[0]["thoughtSignature"], "b2N0by1tb2Nr",
                        "{what}: {body}"
                    );
                    let replies = &body["contents"][2]["parts"];
                    assert_eq!(
                        replies[0]["functionResponse"]["name"], "get_weather",
                        "{what}"
                    );
                    assert_eq!(replies[1]["functionResponse"]["name"], "search", "{what}");
                }
                Protocol::Anthropic => {
                    let calls = &body["messages"][1]["content"];
                    let results = &body["messages"][2]["content"];
                    assert_eq!(calls[0]["id"], results[0]["tool_use_id"], "{what}: {body}");
                    assert_eq!(calls[1]["id"], results[1]["tool_use_id"], "{what}: {body}");
                }
                Protocol::OpenAiChat => {
                    let calls = &body["messages"][1]["tool_calls"];
                    assert_eq!(
                        calls[0]["id"], body["messages"][2]["tool_call_id"],
                        "{what}"
                    );
                    assert_eq!(
                        calls[1]["id"], body["messages"][3]["tool_call_id"],
                        "{what}"
                    );
                }
                _ => {
                    let input = &body["input"];
                    assert_eq!(input[1]["call_id"], input[3]["call_id"], "{what}: {body}");
                    assert_eq!(input[2]["call_id"], input[4]["call_id"], "{what}: {body}");
                }
            }
        }
    }
}

#[tokio::test]
async fn midstream_error_reaches_the_client_in_its_protocol() {
    let mock = mock().await;
    for (client, upstream) in pairs() {
        let engine = engine(&mock, upstream);
        let what = format!("{client} client, {upstream} upstream");
        let turns = [Turn::User(
            "one two three four [mock:midstream_error=2]".into(),
        )];
        let a = ask(&engine, client, request(client, &turns, true, false)).await;
        assert_eq!(
            a.error.as_deref(),
            Some("octo-mock: injected mid-stream error"),
            "{what}: {a:?}"
        );
        assert_eq!(
            a.text, "Hello from",
            "{what}: the two deltas before the error"
        );
        assert!(!a.terminated, "{what}: an error is the end");
    }
}

#[tokio::test]
async fn an_upstream_that_stops_early_is_an_error_not_a_short_answer() {
    // The upstream closes its stream cleanly before its finish reason (a proxy's timeout, a
    // crashed worker): the endpoint reports the truncation, and the client gets its protocol's
    // error ending, never its natural terminator with a stop reason the upstream never sent.
    let mock = mock().await;
    for (client, upstream) in pairs() {
        let engine = engine(&mock, upstream);
        let what = format!("{client} client, {upstream} upstream");
        let turns = [Turn::User("one two three four [mock:truncate=3]".into())];
        let a = ask(&engine, client, request(client, &turns, true, false)).await;
        assert!(
            a.error.as_deref().is_some_and(|e| e.contains("truncated")),
            "{what}: {a:?}"
        );
        assert!(!a.terminated, "{what}: {a:?}");
        assert_ne!(a.stop.as_deref(), Some(natural_stop(client)), "{what}");
    }
}

#[tokio::test]
async fn length_stops_map_for_every_pair() {
    let mock = mock().await;
    for (client, upstream) in pairs() {
        let engine = engine(&mock, upstream);
        for stream in [false, true] {
            let what = format!("{client} client, {upstream} upstream, stream {stream}");
            let turns = [Turn::User("go on [mock:max_tokens]".into())];
            let a = ask(&engine, client, request(client, &turns, stream, false)).await;
            let expected = match client {
                Protocol::OpenAiChat => "length",
                Protocol::OpenAiResponses => "incomplete",
                Protocol::Anthropic => "max_tokens",
                _ => "MAX_TOKENS",
            };
            assert_eq!(a.stop.as_deref(), Some(expected), "{what}");
        }
    }
}

#[tokio::test]
async fn upstream_http_errors_keep_their_message_in_the_client_shape() {
    let mock = mock().await;
    for (client, upstream) in pairs() {
        let engine = engine(&mock, upstream);
        let turns = [Turn::User("x [mock:status=429]".into())];
        let err = engine
            .process(request(client, &turns, false, false))
            .await
            .unwrap_err();
        assert_eq!(err.status().as_u16(), 429);
        let rendered = err.render(client);
        let v: Value = serde_json::from_slice(&rendered.body).unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(!msg.is_empty(), "{client} from {upstream}: {v}");
        match client {
            Protocol::Anthropic => assert_eq!(v["type"], "error"),
            Protocol::Gemini => assert_eq!(v["error"]["code"], 429),
            _ => assert!(v["error"]["type"].is_string()),
        }
    }
}
