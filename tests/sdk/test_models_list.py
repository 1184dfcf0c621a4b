"""The model list through each official SDK: every configured model, in each SDK's own shape."""

from __future__ import annotations

import anthropic
import pytest

from support import ALL_MODELS, assert_upstream_request


def test_openai_lists_and_retrieves(openai_client):
    ids = [m.id for m in openai_client.models.list()]
    assert sorted(ids) == sorted(ALL_MODELS)
    assert openai_client.models.retrieve("chat-model").id == "chat-model"


def test_anthropic_lists_and_retrieves(anthropic_client):
    ids = [m.id for m in anthropic_client.models.list()]
    assert sorted(ids) == sorted(ALL_MODELS)
    assert anthropic_client.models.retrieve("claude-model").id == "claude-model"


def test_gemini_lists_and_gets(genai_client_factory):
    client = genai_client_factory("v1beta")
    names = [m.name for m in client.models.list()]
    assert sorted(names) == sorted(f"models/{m}" for m in ALL_MODELS)
    assert client.models.get(model="gemini-model").name == "models/gemini-model"


def _mock_count(record: dict) -> int:
    """The mock's token count for a request it received (`body_len / 4 + 1`)."""
    return record["body_len"] // 4 + 1


def test_anthropic_count_tokens_passes_through(anthropic_client, mock, sent):
    """`claude-model` is on an Anthropic backend: the count comes from the upstream, asked with the
    backend's key and the upstream model name."""
    raw = anthropic_client.messages.with_raw_response.count_tokens(
        model="claude-model", messages=[{"role": "user", "content": "count these words please"}]
    )
    count = raw.parse()
    assert raw.headers["x-octollm-token-count"] == "upstream"
    up = mock.only_request()
    assert_upstream_request(
        up, backend="anth", path="/v1/messages/count_tokens", sent=sent.only(),
        exposed_model="claude-model", upstream_model="mock-claude",
    )
    assert count.input_tokens == _mock_count(up)


def test_anthropic_count_tokens_estimates_for_other_backends(anthropic_client, mock):
    for model in ("chat-model", "responses-model", "gemini-model"):
        raw = anthropic_client.messages.with_raw_response.count_tokens(
            model=model, messages=[{"role": "user", "content": "count these words please"}]
        )
        assert raw.headers["x-octollm-token-count"] == "estimate", model
        # "user" + "count these words please" = 28 characters / 4 + 4 for the message.
        assert raw.parse().input_tokens == 11, model
    assert mock.requests() == []


def test_anthropic_count_tokens_upstream_error(anthropic_client, mock):
    with pytest.raises(anthropic.RateLimitError) as err:
        anthropic_client.messages.count_tokens(
            model="claude-model", messages=[{"role": "user", "content": "fail [mock:status=429]"}]
        )
    assert err.value.status_code == 429
    assert err.value.body["error"]["message"] == "octo-mock: injected HTTP 429"
    assert len(mock.requests()) == 1


def test_gemini_count_tokens_passes_through(genai_client_factory, mock, sent):
    client = genai_client_factory("v1beta")
    count = client.models.count_tokens(model="gemini-model", contents="count these words please")
    up = mock.only_request()
    assert_upstream_request(up, backend="gem", path="/v1beta/models/mock-gemini:countTokens", sent=sent.only())
    assert count.total_tokens == _mock_count(up)
    assert sent.only().url.endswith("/v1beta/models/gemini-model:countTokens")


def test_gemini_count_tokens_estimates_for_other_backends(genai_client_factory, mock):
    from google.genai import types

    client = genai_client_factory("v1beta")
    for model in ("chat-model", "responses-model", "claude-model"):
        resp = client.models.count_tokens(model=model, contents="count these words please")
        # "user" + "count these words please" = 28 characters / 4 + 4 for the content.
        assert resp.total_tokens == 11, model
        assert isinstance(resp, types.CountTokensResponse)
        assert resp.sdk_http_response.headers["x-octollm-token-count"] == "estimate", model
    assert mock.requests() == []


def test_gemini_count_tokens_upstream_error(genai_client_factory, mock):
    from google.genai import errors

    client = genai_client_factory("v1beta")
    with pytest.raises(errors.ClientError) as err:
        client.models.count_tokens(model="gemini-model", contents="fail [mock:status=400]")
    assert err.value.code == 400
    assert err.value.status == "INVALID_ARGUMENT"
    assert "octo-mock: injected HTTP 400" in err.value.message
