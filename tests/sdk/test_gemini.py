"""Gemini through the gateway (`gemini-model` → backend `gem`, upstream model `mock-gemini`),
driven by the official `google-genai` SDK on both API versions (`v1`, the 3.x default, and
`v1beta`): `generate_content`, `generate_content_stream`, function calling, and errors."""

from __future__ import annotations

import re

import pytest
from google.genai import errors, types

from support import CLIENT_KEY, REPLY_PREFIX, assert_upstream_request, http

MODEL = "gemini-model"
UPSTREAM = "mock-gemini"

VERSIONS = ["v1", "v1beta"]

WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="Weather for a city.",
            parameters_json_schema={
                "type": "object",
                "properties": {"query": {"type": "string"}, "n": {"type": "integer"}},
            },
        )
    ]
)


def upstream_path(action: str) -> re.Pattern:
    """The gateway may forward to either API version; the model must be the upstream name."""
    query = r"\?alt=sse" if action == "streamGenerateContent" else ""
    return re.compile(rf"/v1(beta)?/models/{UPSTREAM}:{action}{query}")


def check_upstream(mock, sent, action: str) -> dict:
    record = mock.only_request()
    # The model is in the URL, so the body must be passed through unchanged.
    assert_upstream_request(record, backend="gem", path=upstream_path(action), sent=sent.only())
    return record


@pytest.mark.parametrize("version", VERSIONS)
def test_generate_content(genai_client_factory, mock, sent, version):
    client = genai_client_factory(version)
    response = client.models.generate_content(model=MODEL, contents="ping gemini")
    assert f"/{version}/models/{MODEL}:generateContent" in sent.only().url
    assert response.text == REPLY_PREFIX + "ping gemini"
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage.prompt_token_count > 0 and usage.candidates_token_count > 0
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    check_upstream(mock, sent, "generateContent")


@pytest.mark.parametrize("version", VERSIONS)
def test_generate_content_stream(genai_client_factory, mock, sent, version):
    client = genai_client_factory(version)
    chunks = list(
        client.models.generate_content_stream(
            model=MODEL,
            contents="stream gemini",
            config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=64),
        )
    )
    assert f"/{version}/models/{MODEL}:streamGenerateContent?alt=sse" in sent.only().url
    assert len(chunks) > 1
    assert "".join(c.text or "" for c in chunks) == REPLY_PREFIX + "stream gemini"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count > 0
    check_upstream(mock, sent, "streamGenerateContent")


@pytest.mark.parametrize("version", VERSIONS)
def test_function_call(genai_client_factory, mock, sent, version):
    client = genai_client_factory(version)
    response = client.models.generate_content(
        model=MODEL,
        contents="weather in Paris? [mock:tool]",
        config=types.GenerateContentConfig(tools=[WEATHER]),
    )
    (call,) = response.function_calls
    assert call.name == "get_weather"
    assert call.args == {"query": "mock", "n": 0}
    check_upstream(mock, sent, "generateContent")


def test_function_call_streaming_and_result_round_trip(genai_client_factory, mock, sent):
    client = genai_client_factory("v1beta")
    config = types.GenerateContentConfig(tools=[WEATHER])
    chunks = list(
        client.models.generate_content_stream(model=MODEL, contents="weather? [mock:tools=2]", config=config)
    )
    calls = [fc for c in chunks for fc in (c.function_calls or [])]
    assert [(fc.name, fc.args) for fc in calls] == [
        ("get_weather", {"query": "mock", "n": 0}),
        ("get_weather", {"query": "mock", "n": 1}),
    ]
    # The first call carries a thought signature (bytes, base64 on the wire).
    first_part = chunks[0].candidates[0].content.parts[0]
    assert first_part.thought_signature == b"octo-mock"
    check_upstream(mock, sent, "streamGenerateContent")

    mock.reset()
    sent.requests.clear()
    follow_up = client.models.generate_content(
        model=MODEL,
        contents=[
            types.Content(role="user", parts=[types.Part(text="weather?")]),
            chunks[0].candidates[0].content,
            types.Content(
                role="user",
                parts=[types.Part.from_function_response(name="get_weather", response={"result": "sunny"})],
            ),
        ],
        config=config,
    )
    assert follow_up.text.startswith("Hello from octo-mock. Tool result: ")
    assert "sunny" in follow_up.text
    check_upstream(mock, sent, "generateContent")


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_model_is_404(genai_client_factory, mock, version):
    client = genai_client_factory(version)
    with pytest.raises(errors.ClientError) as exc:
        client.models.generate_content(model="no-such-model", contents="hi")
    assert exc.value.code == 404
    assert mock.requests() == []


def test_upstream_429_is_client_error(genai_client_factory, mock, sent):
    client = genai_client_factory(None)  # SDK default version
    with pytest.raises(errors.ClientError) as exc:
        client.models.generate_content(model=MODEL, contents="[mock:status=429]")
    assert exc.value.code == 429
    assert exc.value.status == "RESOURCE_EXHAUSTED"
    assert "octo-mock: injected HTTP 429" in exc.value.message
    check_upstream(mock, sent, "generateContent")


def test_midstream_error_raises(genai_client_factory, mock, sent):
    client = genai_client_factory("v1beta")
    texts = []
    with pytest.raises(errors.APIError) as exc:
        for chunk in client.models.generate_content_stream(model=MODEL, contents="fail later [mock:midstream_error=2]"):
            texts.append(chunk.text)
    assert exc.value.code == 500
    assert "octo-mock: injected mid-stream error" in exc.value.message
    assert len(texts) == 2
    check_upstream(mock, sent, "streamGenerateContent")


def test_key_in_query_string_is_not_forwarded(gateway, mock):
    """Gemini clients may authenticate with `?key=`; that key must not reach the upstream."""
    status, _, body = http(
        "POST",
        f"{gateway.url}/v1beta/models/{MODEL}:generateContent?key={CLIENT_KEY}",
        {"contents": [{"role": "user", "parts": [{"text": "query key"}]}]},
    )
    assert status == 200, body
    record = mock.only_request()
    assert_upstream_request(record, backend="gem", path=re.compile(rf"/v1(beta)?/models/{UPSTREAM}:generateContent"))
