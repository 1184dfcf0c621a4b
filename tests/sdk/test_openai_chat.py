"""OpenAI Chat Completions through the gateway (`chat-model` → backend `oa-chat`, upstream model
`mock-gpt`), driven by the official `openai` SDK: plain calls, the `chat.completions.stream()`
accumulator, parallel tool calls, and errors in the SDK's own exception types."""

from __future__ import annotations

import json

import openai
import pytest

from support import CHAT_EXTRA_HEADER, REPLY_PREFIX, assert_upstream_request

MODEL = "chat-model"
UPSTREAM = "mock-gpt"
PATH = "/v1/chat/completions"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "n": {"type": "integer"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Local time in a city.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "n": {"type": "integer"}}},
        },
    },
]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def check_upstream(mock, sent) -> dict:
    record = mock.only_request()
    assert_upstream_request(
        record, backend="oa-chat", path=PATH, sent=sent.only(), exposed_model=MODEL, upstream_model=UPSTREAM
    )
    name, value = CHAT_EXTRA_HEADER
    assert record["headers"].get(name) == value, "backend `headers:` not sent upstream"
    return record


def test_create(openai_client, mock, sent):
    completion = openai_client.chat.completions.create(model=MODEL, messages=user("ping chat"))
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == REPLY_PREFIX + "ping chat"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    check_upstream(mock, sent)


def test_create_max_tokens_finish_length(openai_client, mock, sent):
    completion = openai_client.chat.completions.create(
        model=MODEL, messages=user("long story [mock:max_tokens]"), max_completion_tokens=5
    )
    assert completion.choices[0].finish_reason == "length"
    check_upstream(mock, sent)


def test_stream_helper_with_include_usage(openai_client, mock, sent):
    deltas, chunks = [], []
    with openai_client.chat.completions.stream(
        model=MODEL, messages=user("stream me please"), stream_options={"include_usage": True}
    ) as stream:
        for event in stream:
            if event.type == "content.delta" and event.delta:
                deltas.append(event.delta)
            elif event.type == "chunk":
                chunks.append(event.chunk)
        final = stream.get_final_completion()
    text = REPLY_PREFIX + "stream me please"
    assert len(deltas) > 1, "reply was not streamed in several deltas"
    assert "".join(deltas) == text
    assert final.choices[0].message.content == text
    assert final.choices[0].finish_reason == "stop"
    # include_usage: exactly one chunk carries usage, the last one, with no choices.
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1]
    assert chunks[-1].choices == []
    assert final.usage is not None
    assert final.usage.completion_tokens > 0
    assert final.usage.total_tokens == final.usage.prompt_tokens + final.usage.completion_tokens
    check_upstream(mock, sent)


def test_stream_without_include_usage(openai_client, mock, sent):
    stream = openai_client.chat.completions.create(model=MODEL, messages=user("no usage"), stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY_PREFIX + "no usage"
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    check_upstream(mock, sent)


def test_stream_parallel_tool_calls(openai_client, mock, sent):
    args_done = []
    with openai_client.chat.completions.stream(
        model=MODEL, messages=user("weather and time in Paris [mock:tools=2]"), tools=TOOLS
    ) as stream:
        for event in stream:
            if event.type == "tool_calls.function.arguments.done":
                args_done.append((event.index, event.name, event.arguments))
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 2
    ids = [c.id for c in calls]
    names = [c.function.name for c in calls]
    # The accumulator concatenates repeated string fields: duplicated id/name deltas would show up
    # as "call_xcall_x" / "get_weatherget_weather".
    assert len(set(ids)) == 2 and all(i and ids.count(i) == 1 for i in ids)
    for call_id in ids:
        assert call_id.count("call_") == 1, f"tool-call id duplicated by the accumulator: {call_id!r}"
    assert names == ["get_weather", "get_time"]
    assert [c.type for c in calls] == ["function", "function"]
    assert [json.loads(c.function.arguments) for c in calls] == [{"query": "mock", "n": 0}, {"query": "mock", "n": 1}]
    assert [(i, n) for i, n, _ in args_done] == [(0, "get_weather"), (1, "get_time")]
    check_upstream(mock, sent)


def test_tool_call_non_streaming(openai_client, mock, sent):
    completion = openai_client.chat.completions.create(
        model=MODEL, messages=user("weather? [mock:tool]"), tools=TOOLS
    )
    (call,) = completion.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"query": "mock", "n": 0}
    assert completion.choices[0].finish_reason == "tool_calls"
    check_upstream(mock, sent)


# ------------------------------------------------------------------------------------------ errors


def test_unknown_model_is_404(openai_client, mock):
    with pytest.raises(openai.NotFoundError) as exc:
        openai_client.chat.completions.create(model="no-such-model", messages=user("hi"))
    assert exc.value.status_code == 404
    assert mock.requests() == [], "an unknown model must not reach any upstream"


def test_upstream_429_is_rate_limit_error(openai_client, mock, sent):
    with pytest.raises(openai.RateLimitError) as exc:
        openai_client.chat.completions.create(model=MODEL, messages=user("slow down [mock:status=429]"))
    assert exc.value.status_code == 429
    assert "octo-mock: injected HTTP 429" in exc.value.message
    check_upstream(mock, sent)


def test_upstream_429_streaming(openai_client, mock, sent):
    with pytest.raises(openai.RateLimitError) as exc:
        with openai_client.chat.completions.stream(model=MODEL, messages=user("[mock:status=429]")) as stream:
            for _ in stream:
                pass
    assert "octo-mock: injected HTTP 429" in exc.value.message
    check_upstream(mock, sent)


def test_midstream_error_raises(openai_client, mock, sent):
    received = []
    with pytest.raises(openai.APIError) as exc:
        with openai_client.chat.completions.stream(
            model=MODEL, messages=user("fail later [mock:midstream_error=2]")
        ) as stream:
            for event in stream:
                if event.type == "content.delta" and event.delta:
                    received.append(event.delta)
    assert "octo-mock: injected mid-stream error" in exc.value.message
    assert len(received) == 2, "the events before the error must reach the client"
    check_upstream(mock, sent)
