"""OpenAI Responses through the gateway (`responses-model` → backend `oa-resp`, upstream model
`mock-resp`), driven by the official `openai` SDK: `responses.create`, the `responses.stream()`
accumulator, a function call, and errors."""

from __future__ import annotations

import json

import openai
import pytest

from support import REPLY_PREFIX, assert_upstream_request

MODEL = "responses-model"
UPSTREAM = "mock-resp"
PATH = "/v1/responses"

TOOLS = [
    {
        "type": "function",
        "name": "lookup",
        "description": "Looks something up.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "n": {"type": "integer"}}},
        "strict": False,
    }
]


def check_upstream(mock, sent) -> None:
    assert_upstream_request(
        mock.only_request(), backend="oa-resp", path=PATH, sent=sent.only(), exposed_model=MODEL, upstream_model=UPSTREAM
    )


def test_create(openai_client, mock, sent):
    response = openai_client.responses.create(model=MODEL, input="ping responses")
    assert response.status == "completed"
    assert response.output_text == REPLY_PREFIX + "ping responses"
    assert response.usage is not None
    assert response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    check_upstream(mock, sent)


def test_create_with_message_items(openai_client, mock, sent):
    response = openai_client.responses.create(
        model=MODEL,
        instructions="Be brief.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "items please"}]}],
    )
    assert response.output_text == REPLY_PREFIX + "items please"
    check_upstream(mock, sent)


def test_stream_helper(openai_client, mock, sent):
    deltas, types = [], []
    with openai_client.responses.stream(model=MODEL, input="stream the response") as stream:
        for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    text = REPLY_PREFIX + "stream the response"
    assert len(deltas) > 1
    assert "".join(deltas) == text
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert final.status == "completed"
    assert final.output_text == text
    assert final.usage is not None and final.usage.output_tokens > 0
    check_upstream(mock, sent)


def test_stream_function_call(openai_client, mock, sent):
    with openai_client.responses.stream(model=MODEL, input="look it up [mock:tool]", tools=TOOLS) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "lookup"
    assert calls[0].call_id
    assert json.loads(calls[0].arguments) == {"query": "mock", "n": 0}
    check_upstream(mock, sent)


def test_unknown_model_is_404(openai_client, mock):
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.create(model="no-such-model", input="hi")
    assert mock.requests() == []


def test_upstream_429_is_rate_limit_error(openai_client, mock, sent):
    with pytest.raises(openai.RateLimitError) as exc:
        openai_client.responses.create(model=MODEL, input="[mock:status=429]")
    assert "octo-mock: injected HTTP 429" in exc.value.message
    check_upstream(mock, sent)


def test_midstream_error_raises(openai_client, mock, sent):
    errors = []
    with pytest.raises(RuntimeError, match="response.completed"):
        with openai_client.responses.stream(model=MODEL, input="fail later [mock:midstream_error=1]") as stream:
            for event in stream:
                if event.type == "error":
                    errors.append(event.message)
            stream.get_final_response()
    assert errors == ["octo-mock: injected mid-stream error"]
    check_upstream(mock, sent)
