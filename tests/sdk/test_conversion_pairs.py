"""Every client protocol against every upstream protocol (the sixteen pairs), through each
official SDK and its stream helper, which is stricter than plain iteration.

Each SDK names one of the four exposed models; the model's backend speaks one protocol, so three of
the four models are reached through the gateway's protocol conversion (the fourth is passthrough).
Checks: text, the stream accumulator's final object, usage, finish reason, and two parallel tool
calls with distinct ids and names that come back whole; for the Responses client through a
conversion also a `custom` (free-form, grammar) tool called and replayed, and a mid-stream failure
seen as `response.failed`. The upstream's request is checked to be in
the backend's own protocol on its own path.
"""

from __future__ import annotations

import json

import pytest

from support import BACKENDS, MODELS, REPLY_PREFIX

UPSTREAM_PATHS = {
    "openai_chat": "/v1/chat/completions",
    "openai_responses": "/v1/responses",
    "anthropic": "/v1/messages",
    "gemini": ":generateContent",
}

#: (exposed model, upstream protocol)
PAIRS = [(model, BACKENDS[backend].protocol) for model, (backend, _) in MODELS.items()]
IDS = [protocol for _, protocol in PAIRS]


def check_upstream_protocol(mock, protocol: str, stream: bool) -> None:
    (req,) = mock.requests()
    path = req["path_and_query"]
    if protocol == "gemini":
        assert ("streamGenerateContent" if stream else ":generateContent") in path, path
    else:
        assert path == UPSTREAM_PATHS[protocol], path


def tool_args(raw) -> dict:
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


# ------------------------------------------------------------------------------------ OpenAI Chat

OA_TOOLS = [
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "fetch", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}},
]


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_openai_chat_client(openai_client, mock, model, upstream):
    done = openai_client.chat.completions.create(model=model, messages=[{"role": "user", "content": "pair text"}])
    assert done.choices[0].message.content == REPLY_PREFIX + "pair text"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0
    check_upstream_protocol(mock, upstream, stream=False)

    mock.reset()
    with openai_client.chat.completions.stream(
        model=model, messages=[{"role": "user", "content": "pair stream"}], stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == REPLY_PREFIX + "pair stream"
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.completion_tokens > 0
    check_upstream_protocol(mock, upstream, stream=True)

    mock.reset()
    with openai_client.chat.completions.stream(
        model=model, messages=[{"role": "user", "content": "two calls [mock:tools=2]"}], tools=OA_TOOLS
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in calls] == ["lookup", "fetch"]
    assert len({c.id for c in calls}) == 2 and all(c.id for c in calls)
    assert [tool_args(c.function.arguments)["n"] for c in calls] == [0, 1]


# ------------------------------------------------------------------------------------ OpenAI Responses

RESP_TOOLS = [
    {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}},
    {"type": "function", "name": "fetch", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}},
]


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_openai_responses_client(openai_client, mock, model, upstream):
    done = openai_client.responses.create(model=model, input="pair text", instructions="Be brief.")
    assert done.output_text == REPLY_PREFIX + "pair text"
    assert done.status == "completed"
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0
    check_upstream_protocol(mock, upstream, stream=False)

    mock.reset()
    with openai_client.responses.stream(model=model, input="pair stream") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == REPLY_PREFIX + "pair stream"
    assert final.output_text == REPLY_PREFIX + "pair stream"
    assert final.usage is not None and final.usage.output_tokens > 0

    mock.reset()
    with openai_client.responses.stream(model=model, input="two calls [mock:tools=2]", tools=RESP_TOOLS) as stream:
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["lookup", "fetch"]
    assert len({c.call_id for c in calls}) == 2
    assert [tool_args(c.arguments)["n"] for c in calls] == [0, 1]


#: A free-form tool, as Codex CLI declares `apply_patch`.
CUSTOM_TOOLS = [
    {
        "type": "custom",
        "name": "apply_patch",
        "description": "Edit files with a patch.",
        "format": {"type": "grammar", "syntax": "lark", "definition": "start: /(.|\\n)+/"},
    }
]

CONVERTED = [pair for pair in PAIRS if pair[1] != "openai_responses"]


@pytest.mark.parametrize(("model", "upstream"), CONVERTED, ids=[p for _, p in CONVERTED])
def test_openai_responses_custom_tool_through_conversion(openai_client, mock, model, upstream):
    ask = "patch it [mock:tool=apply_patch] [mock:tool_arg=add a line]"
    done = openai_client.responses.create(model=model, input=ask, tools=CUSTOM_TOOLS)
    assert done.id.startswith("resp_"), done.id
    (call,) = [item for item in done.output if item.type == "custom_tool_call"]
    assert (call.name, call.input) == ("apply_patch", "add a line")
    assert call.id.startswith("ctc_"), call.id
    check_upstream_protocol(mock, upstream, stream=False)

    mock.reset()
    with openai_client.responses.stream(model=model, input=ask, tools=CUSTOM_TOOLS) as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = "".join(e.delta for e in events if e.type == "response.custom_tool_call_input.delta")
    assert deltas == "add a line"
    (done_event,) = [e for e in events if e.type == "response.custom_tool_call_input.done"]
    assert done_event.input == "add a line"
    assert [(i.type, i.input) for i in final.output] == [("custom_tool_call", "add a line")]

    # The call and its output replayed on the next turn, ids kept.
    mock.reset()
    follow = openai_client.responses.create(
        model=model,
        tools=CUSTOM_TOOLS,
        input=[
            {"role": "user", "content": "patch it"},
            {"type": "custom_tool_call", "call_id": call.call_id, "name": "apply_patch", "input": call.input},
            {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "patched"},
        ],
    )
    assert "Tool result: " in follow.output_text and "patched" in follow.output_text, follow.output_text


@pytest.mark.parametrize(("model", "upstream"), CONVERTED, ids=[p for _, p in CONVERTED])
def test_openai_responses_midstream_failure_through_conversion(openai_client, mock, model, upstream):
    failed = []
    with pytest.raises(RuntimeError, match="response.completed"):
        with openai_client.responses.stream(model=model, input="fail later [mock:midstream_error=1]") as stream:
            first = None
            for event in stream:
                first = first or event
                if event.type == "response.failed":
                    assert event.response.id == first.response.id
                    failed.append((event.response.status, event.response.error.code, event.response.error.message))
            stream.get_final_response()
    assert failed == [("failed", "server_error", "octo-mock: injected mid-stream error")]


# ------------------------------------------------------------------------------------ Anthropic

AN_TOOLS = [
    {"name": "lookup", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}},
    {"name": "fetch", "input_schema": {"type": "object", "properties": {"n": {"type": "integer"}}}},
]


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_anthropic_client(anthropic_client, mock, model, upstream):
    msg = anthropic_client.messages.create(
        model=model, max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "pair text"}]
    )
    assert msg.content[0].text == REPLY_PREFIX + "pair text"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens > 0
    check_upstream_protocol(mock, upstream, stream=False)

    mock.reset()
    with anthropic_client.messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "pair stream"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REPLY_PREFIX + "pair stream"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0

    mock.reset()
    with anthropic_client.messages.stream(
        model=model, max_tokens=64, tools=AN_TOOLS, messages=[{"role": "user", "content": "two calls [mock:tools=2]"}]
    ) as stream:
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use"
    assert [u.name for u in uses] == ["lookup", "fetch"]
    assert [u.input["n"] for u in uses] == [0, 1]
    assert len({u.id for u in uses}) == 2
    assert all(all(ch.isalnum() or ch in "_-" for ch in u.id) for u in uses), [u.id for u in uses]

    # The tool results go back with the ids the gateway handed out; the turn completes with text.
    mock.reset()
    history = [
        {"role": "user", "content": "two calls [mock:tools=2]"},
        {"role": "assistant", "content": [u.model_dump(exclude_none=True) for u in uses]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u.id, "content": f"result {u.name}"} for u in uses]},
    ]
    reply = anthropic_client.messages.create(model=model, max_tokens=64, tools=AN_TOOLS, messages=history)
    assert reply.stop_reason == "end_turn"
    assert reply.content[0].type == "text"


# ------------------------------------------------------------------------------------ Gemini


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_gemini_client(genai_client_factory, mock, model, upstream):
    from google.genai import types

    client = genai_client_factory("v1beta")
    done = client.models.generate_content(model=model, contents="pair text")
    assert done.text == REPLY_PREFIX + "pair text"
    assert done.candidates[0].finish_reason == types.FinishReason.STOP
    assert done.usage_metadata.candidates_token_count > 0
    check_upstream_protocol(mock, upstream, stream=False)

    mock.reset()
    chunks = list(client.models.generate_content_stream(model=model, contents="pair stream"))
    assert "".join(c.text or "" for c in chunks) == REPLY_PREFIX + "pair stream"
    assert chunks[-1].usage_metadata.candidates_token_count > 0

    mock.reset()
    tools = [
        types.Tool(
            function_declarations=[
                types.FunctionDeclaration(name="lookup", parameters={"type": "OBJECT", "properties": {"query": {"type": "STRING"}}}),
                types.FunctionDeclaration(name="fetch", parameters={"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}}),
            ]
        )
    ]
    calls = []
    for chunk in client.models.generate_content_stream(
        model=model, contents="two calls [mock:tools=2]", config=types.GenerateContentConfig(tools=tools)
    ):
        calls.extend(chunk.function_calls or [])
    assert [c.name for c in calls] == ["lookup", "fetch"]
    assert [int(c.args["n"]) for c in calls] == [0, 1]
