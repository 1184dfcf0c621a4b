"""Anthropic Messages through the gateway (`claude-model` → backend `anth`, upstream model
`mock-claude`), driven by the official `anthropic` SDK: `messages.create`, the `messages.stream()`
accumulator, tool use, both client auth styles, and errors."""

from __future__ import annotations

import anthropic
import pytest

from support import CLIENT_KEY, REPLY_PREFIX, assert_upstream_request

MODEL = "claude-model"
UPSTREAM = "mock-claude"
PATH = "/v1/messages"

TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city.",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}, "n": {"type": "integer"}}},
    }
]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def check_upstream(mock, sent) -> None:
    assert_upstream_request(
        mock.only_request(), backend="anth", path=PATH, sent=sent.only(), exposed_model=MODEL, upstream_model=UPSTREAM
    )


def test_create(anthropic_client, mock, sent):
    message = anthropic_client.messages.create(model=MODEL, max_tokens=64, messages=user("ping claude"))
    assert message.role == "assistant"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == REPLY_PREFIX + "ping claude"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    check_upstream(mock, sent)


def test_stream_helper(anthropic_client, mock, sent):
    with anthropic_client.messages.stream(
        model=MODEL, max_tokens=64, system="Be brief.", messages=user("stream claude")
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    text = REPLY_PREFIX + "stream claude"
    assert len(pieces) > 1
    assert "".join(pieces) == text
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    check_upstream(mock, sent)


def test_stream_max_tokens(anthropic_client, mock, sent):
    with anthropic_client.messages.stream(model=MODEL, max_tokens=3, messages=user("[mock:max_tokens] go")) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens"
    check_upstream(mock, sent)


def test_tool_use(anthropic_client, mock, sent):
    message = anthropic_client.messages.create(
        model=MODEL, max_tokens=64, tools=TOOLS, messages=user("weather in Paris? [mock:tool]")
    )
    assert message.stop_reason == "tool_use"
    (block,) = [b for b in message.content if b.type == "tool_use"]
    assert block.name == "get_weather"
    assert block.id.startswith("toolu_")
    assert block.input == {"query": "mock", "n": 0}
    check_upstream(mock, sent)


def test_stream_tool_use_and_result_round_trip(anthropic_client, mock, sent):
    with anthropic_client.messages.stream(
        model=MODEL, max_tokens=64, tools=TOOLS, messages=user("weather in Paris? [mock:tool]")
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (block,) = [b for b in final.content if b.type == "tool_use"]
    assert block.name == "get_weather"
    assert block.input == {"query": "mock", "n": 0}
    check_upstream(mock, sent)

    # Second turn: send the tool result back with the id the upstream gave.
    mock.reset()
    sent.requests.clear()
    follow_up = anthropic_client.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}]},
        ],
    )
    assert follow_up.stop_reason == "end_turn"
    assert follow_up.content[0].text == "Hello from octo-mock. Tool result: sunny"
    check_upstream(mock, sent)


def test_legacy_x_api_key_client_auth(anthropic_client, mock, sent):
    """Anthropic SDKs before 2.x authenticate with `x-api-key` + `anthropic-version: 2023-06-01`."""
    message = anthropic_client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=user("old client"),
        extra_headers={"Authorization": anthropic.omit, "X-Api-Key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
    )
    assert message.content[0].text == REPLY_PREFIX + "old client"
    request = sent.only()
    assert request.headers.get("x-api-key") == CLIENT_KEY and "authorization" not in request.headers
    check_upstream(mock, sent)


# ------------------------------------------------------------------------------------------ errors


def test_unknown_model_is_404(anthropic_client, mock):
    with pytest.raises(anthropic.NotFoundError) as exc:
        anthropic_client.messages.create(model="no-such-model", max_tokens=16, messages=user("hi"))
    assert exc.value.status_code == 404
    assert mock.requests() == []


def test_upstream_429_is_rate_limit_error(anthropic_client, mock, sent):
    with pytest.raises(anthropic.RateLimitError) as exc:
        anthropic_client.messages.create(model=MODEL, max_tokens=16, messages=user("[mock:status=429]"))
    assert exc.value.status_code == 429
    assert "octo-mock: injected HTTP 429" in exc.value.message
    check_upstream(mock, sent)


def test_midstream_error_raises(anthropic_client, mock, sent):
    pieces = []
    with pytest.raises(anthropic.APIStatusError) as exc:
        with anthropic_client.messages.stream(
            model=MODEL, max_tokens=64, messages=user("fail later [mock:midstream_error=2]")
        ) as stream:
            for piece in stream.text_stream:
                pieces.append(piece)
    assert "octo-mock: injected mid-stream error" in exc.value.message
    assert len(pieces) == 2
    check_upstream(mock, sent)
