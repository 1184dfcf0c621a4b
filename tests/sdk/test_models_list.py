"""The model list through each official SDK: every configured model, in each SDK's own shape."""

from __future__ import annotations

from support import MODELS


def test_openai_lists_and_retrieves(openai_client):
    ids = [m.id for m in openai_client.models.list()]
    assert sorted(ids) == sorted(MODELS)
    assert openai_client.models.retrieve("chat-model").id == "chat-model"


def test_anthropic_lists_and_retrieves(anthropic_client):
    ids = [m.id for m in anthropic_client.models.list()]
    assert sorted(ids) == sorted(MODELS)
    assert anthropic_client.models.retrieve("claude-model").id == "claude-model"


def test_gemini_lists_and_gets(genai_client_factory):
    client = genai_client_factory("v1beta")
    names = [m.name for m in client.models.list()]
    assert sorted(names) == sorted(f"models/{m}" for m in MODELS)
    assert client.models.get(model="gemini-model").name == "models/gemini-model"


def test_anthropic_count_tokens(anthropic_client):
    count = anthropic_client.messages.count_tokens(
        model="claude-model", messages=[{"role": "user", "content": "count these words please"}]
    )
    assert count.input_tokens > 0


def test_gemini_count_tokens(genai_client_factory):
    client = genai_client_factory("v1beta")
    count = client.models.count_tokens(model="gemini-model", contents="count these words please")
    assert count.total_tokens > 0
