//! End-to-end wire shapes of the four protocols, unary and streamed, over a real socket, plus the
//! auxiliary routes and introspection endpoints.

use octo_test::http::{json, text};
use octo_test::{client, h2_client, mock, parse_sse, post};
use serde_json::{Value, json};

const GREETING: &str = "Hello from octo-mock. You said: ";

#[tokio::test]
async fn openai_chat_unary_and_stream() {
    let mock = mock().await;
    let c = client();
    let url = format!("{}/v1/chat/completions", mock.url());

    let body = json!({"model": "gpt-test", "messages": [{"role": "user", "content": "ping"}]});
    let response = post(&c, &url, &body, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let v = json(response).await;
    assert_eq!(v["id"], "chatcmpl-mock-1");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-test");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("{GREETING}ping")
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let usage = &v["usage"];
    assert_eq!(
        usage["total_tokens"],
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );

    let body = json!({"model": "gpt-test", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "ping"}]});
    let response = post(&c, &url, &body, &[]).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = parse_sse(&text(response).await);
    assert!(events.iter().all(|e| e.event.is_none()));
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect();
    assert_eq!(chunks[0]["id"], "chatcmpl-mock-2");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, format!("{GREETING}ping"));
    let n = chunks.len();
    assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert_eq!(chunks[n - 1]["usage"]["completion_tokens"], n - 3);
    mock.shutdown().await;
}

#[tokio::test]
async fn openai_chat_parallel_tool_calls_stream() {
    let mock = mock().await;
    let body = json!({
        "model": "gpt-test", "stream": true,
        "messages": [{"role": "user", "content": "use tools [mock:tools=3]"}],
        "tools": [{"type": "function", "function": {"name": "alpha"}},
                  {"type": "function", "function": {"name": "beta"}}]
    });
    let url = format!("{}/v1/chat/completions", mock.url());
    let events = parse_sse(&text(post(&client(), &url, &body, &[]).await).await);
    let mut calls = vec![(String::new(), String::new(), String::new()); 3];
    let mut finish = None;
    for event in &events[..events.len() - 1] {
        let chunk = event.json();
        assert!(chunk.get("usage").is_none());
        let choice = &chunk["choices"][0];
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = Some(reason.to_owned());
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let slot = &mut calls[call["index"].as_u64().unwrap() as usize];
            slot.0 += call["id"].as_str().unwrap_or_default();
            slot.1 += call["function"]["name"].as_str().unwrap_or_default();
            slot.2 += call["function"]["arguments"].as_str().unwrap_or_default();
        }
    }
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    let names: Vec<&str> = calls.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(names, ["alpha", "beta", "alpha"]);
    assert_eq!(calls[0].0, "call_mock_1");
    assert_eq!(calls[2].0, "call_mock_3");
    for (i, call) in calls.iter().enumerate() {
        let args: Value = serde_json::from_str(&call.2).unwrap();
        assert_eq!(args, json!({"query": "mock", "n": i}));
    }

    // Second turn: the last message is the tool result, so the reply is text.
    let body = json!({
        "model": "gpt-test",
        "messages": [
            {"role": "user", "content": "use tools [mock:tools=3]"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_mock_1", "type": "function", "function": {"name": "alpha", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_mock_1", "content": "42 degrees"}
        ],
        "tools": [{"type": "function", "function": {"name": "alpha"}}]
    });
    let v = json(post(&client(), &url, &body, &[]).await).await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from octo-mock. Tool result: 42 degrees"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn openai_responses_stream_and_unary() {
    let mock = mock().await;
    let url = format!("{}/v1/responses", mock.url());
    let body = json!({"model": "gpt-r", "input": "hi", "stream": true});
    let events = parse_sse(&text(post(&client(), &url, &body, &[]).await).await);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    assert_eq!(
        names[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    assert_eq!(
        names[names.len() - 4..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (i, event) in events.iter().enumerate() {
        let data = event.json();
        assert_eq!(data["sequence_number"], i);
        assert_eq!(data["type"], names[i]);
    }
    let completed = events.last().unwrap().json();
    assert_eq!(completed["response"]["id"], "resp_mock_1");
    assert_eq!(completed["response"]["model"], "gpt-r");
    assert_eq!(
        completed["response"]["output"][0]["content"][0]["text"],
        format!("{GREETING}hi")
    );

    let body = json!({"model": "gpt-r", "input": "hi", "tools": [{"type": "function", "name": "f"}],
                      "tool_choice": "required"});
    let v = json(post(&client(), &url, &body, &[]).await).await;
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"][0]["type"], "function_call");
    assert_eq!(v["output"][0]["name"], "f");
    assert_eq!(v["output"][0]["call_id"], "call_mock_1");
    mock.shutdown().await;
}

#[tokio::test]
async fn anthropic_stream_and_unary() {
    let mock = mock().await;
    let url = format!("{}/v1/messages", mock.url());
    let body = json!({"model": "claude-test", "max_tokens": 64, "stream": true,
                      "messages": [{"role": "user", "content": "hey"}],
                      "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
                      "tool_choice": {"type": "any"}});
    let events = parse_sse(&text(post(&client(), &url, &body, &[]).await).await);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
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
    let start_event = events[0].json();
    assert_eq!(start_event["message"]["id"], "msg_mock_1");
    assert_eq!(start_event["message"]["model"], "claude-test");
    let block = events[1].json();
    assert_eq!(block["content_block"]["id"], "toolu_mock_1");
    assert_eq!(block["content_block"]["input"], json!({}));
    let input: String = events[3..5]
        .iter()
        .map(|e| {
            e.json()["delta"]["partial_json"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&input).unwrap(),
        json!({"query": "mock", "n": 0})
    );
    let delta = events[6].json();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], 2);

    let body = json!({"model": "claude-test", "max_tokens": 64,
                      "messages": [{"role": "user", "content": [{"type": "text", "text": "hey"}]}]});
    let v = json(post(&client(), &url, &body, &[]).await).await;
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], format!("{GREETING}hey"));
    assert_eq!(v["stop_reason"], "end_turn");
    mock.shutdown().await;
}

#[tokio::test]
async fn gemini_sse_array_and_unary() {
    let mock = mock().await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "bonjour"}]}]});

    let url = format!(
        "{}/v1beta/models/gemini-test:streamGenerateContent?alt=sse",
        mock.url()
    );
    let raw = text(post(&client(), &url, &body, &[]).await).await;
    assert!(raw.starts_with("data: {"));
    assert!(!raw.contains("[DONE]"));
    let events = parse_sse(&raw);
    assert!(events.iter().all(|e| e.event.is_none()));
    let chunks: Vec<Value> = events.iter().map(|e| e.json()).collect();
    let text_out: String = chunks
        .iter()
        .map(|c| {
            c["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(text_out, format!("{GREETING}bonjour"));
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["modelVersion"], "gemini-test");
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], chunks.len());

    let url = format!("{}/v1/models/gemini-test:streamGenerateContent", mock.url());
    let array = json(post(&client(), &url, &body, &[]).await).await;
    assert_eq!(array.as_array().unwrap().len(), chunks.len());

    let url = format!("{}/v1/models/gemini-test:generateContent", mock.url());
    let v = json(post(&client(), &url, &body, &[("x-mock-tool", "1")]).await).await;
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        format!("{GREETING}bonjour")
    );
    let with_tools = json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}],
                            "tools": [{"functionDeclarations": [{"name": "f"}]}],
                            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}});
    let v = json(post(&client(), &url, &with_tools, &[]).await).await;
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
        "f"
    );
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    mock.shutdown().await;
}

#[tokio::test]
async fn h2c_is_served() {
    let mock = mock().await;
    let url = format!("{}/v1/chat/completions", mock.url());
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "h2"}]});
    let response = post(&h2_client(), &url, &body, &[]).await;
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let events = parse_sse(&text(response).await);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let stats = mock.wait_for(|s| s.streams_completed == 1).await;
    assert_eq!(stats.streams_started, 1);
    // The request log records the version the request arrived in.
    assert_eq!(mock.requests()[0].version, http::Version::HTTP_2);
    let log = json(
        client()
            .get(format!("{}/_mock/requests", mock.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(log[0]["version"], "HTTP/2.0");
    mock.shutdown().await;
}

#[tokio::test]
async fn models_errors_and_introspection() {
    let mock = mock().await;
    let c = client();
    let models = json(
        c.get(format!("{}/v1/models", mock.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(models["object"], "list");
    assert!(models["data"].as_array().unwrap().len() >= 3);

    let missing = c
        .post(format!("{}/v2/nothing", mock.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        json(missing).await["error"]["type"],
        "invalid_request_error"
    );
    let wrong = c
        .get(format!("{}/v1/messages", mock.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()["allow"], "POST");

    let bad = c
        .post(format!("{}/v1/messages", mock.url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(json(bad).await["error"]["type"], "invalid_request_error");

    let requests = mock.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[3].path_and_query, "/v1/messages");
    assert_eq!(&requests[3].body[..], b"{not json");

    let log = json(
        c.get(format!("{}/_mock/requests", mock.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 4);
    assert_eq!(log[0]["method"], "GET");
    assert_eq!(log[0]["version"], "HTTP/1.1");
    assert_eq!(log[0]["path_and_query"], "/v1/models");
    assert_eq!(log[3]["body_len"], 9);
    assert_eq!(log[3]["body_fnv64"], requests[3].body_fnv64());
    assert!(log[3]["headers"]["host"].is_string());
    assert!(log[3].get("body").is_none());

    let log = json(
        c.get(format!("{}/_mock/requests?body=1", mock.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(log[3]["body"], "{not json");

    let stats = json(
        c.get(format!("{}/_mock/stats", mock.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(stats["requests"], 4);
    assert_eq!(stats["streams_started"], 0);
    let reset = c
        .post(format!("{}/_mock/reset", mock.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    assert_eq!(mock.stats().requests, 0);
    assert!(mock.requests().is_empty());

    // Ids restart after a reset.
    let body = json!({"messages": [{"role": "user", "content": "x"}]});
    let v = json(
        post(
            &c,
            &format!("{}/v1/chat/completions", mock.url()),
            &body,
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(v["id"], "chatcmpl-mock-1");
    mock.shutdown().await;
}
