"""The response cache read by each official SDK's stream helper: the same streamed request twice
through a gateway whose models have `cache: true`; the first is a miss that reaches the mock, the
second a hit replayed from the cache (`x-octollm-cache: hit`) that the mock never sees, and the
SDK's stream helper assembles the same text, finish reason and usage from both.

The gateway here is this module's own (the session gateway has no cache), on the session mock.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import support
from support import CLIENT_KEY, REPLY_PREFIX, Proc, bin_path

#: Exposed model → (protocol, upstream model).
CACHED = {
    "c-chat": ("openai_chat", "mock-gpt"),
    "c-resp": ("openai_responses", "mock-resp"),
    "c-claude": ("anthropic", "mock-claude"),
    "c-gemini": ("gemini", "mock-gemini"),
}


@pytest.fixture(scope="module")
def cache_gateway(mock, tmp_path_factory: pytest.TempPathFactory) -> support.Gateway:
    path: Path = tmp_path_factory.mktemp("cache-gateway") / "octollm.yaml"
    text = f'listen: "127.0.0.1:0"\nstorage: off\ncache: {{store: memory, ttl: 10m}}\nbackends:\n'
    for protocol in {p for p, _ in CACHED.values()}:
        text += f'  {protocol}: {{base_url: "{mock.url}", protocol: {protocol}, api_key: "sk-upstream"}}\n'
    text += "models:\n"
    for exposed, (protocol, upstream) in CACHED.items():
        text += (
            f"  {exposed}: {{cache: true, retry: {{max_attempts: 1}}, "
            f"targets: [{{backend: {protocol}, model: {upstream}}}]}}\n"
        )
    path.write_text(text, encoding="utf-8")
    proc = Proc("octollm-server", [str(bin_path("octollm-server")), "--config", str(path)])
    support.RUNNING.append(proc)
    try:
        yield support.Gateway(proc.url, proc)
    finally:
        proc.stop()


class CacheHeaders:
    """The `x-octollm-cache` header of every answer a client received (an httpx2 response hook)."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def hook(self, response) -> None:
        self.seen.append(response.headers.get("x-octollm-cache"))


@pytest.fixture
def headers() -> CacheHeaders:
    return CacheHeaders()


def http_client(headers: CacheHeaders):
    import httpx2

    return httpx2.Client(event_hooks={"response": [headers.hook]}, timeout=support.CLIENT_TIMEOUT)


def twice(run, mock, headers: CacheHeaders):
    """`run()` twice: a miss that reaches the mock, then a hit that does not; both results."""
    first = run()
    assert len(mock.requests()) == 1
    second = run()
    assert len(mock.requests()) == 1, "the hit never reached the upstream"
    assert headers.seen == ["miss", "hit"]
    return first, second


def test_openai_chat_stream_helper_reads_a_hit(cache_gateway, mock, headers):
    import openai

    client = openai.OpenAI(
        api_key=CLIENT_KEY,
        base_url=f"{cache_gateway.url}/v1",
        max_retries=0,
        http_client=http_client(headers),
    )

    def run():
        with client.chat.completions.stream(
            model="c-chat",
            messages=[{"role": "user", "content": "cached chat"}],
            stream_options={"include_usage": True},
        ) as stream:
            pieces = [e.delta for e in stream if e.type == "content.delta"]
            final = stream.get_final_completion()
        return pieces, final

    (p1, f1), (p2, f2) = twice(run, mock, headers)
    assert "".join(p2) == REPLY_PREFIX + "cached chat"
    assert p1 == p2
    assert f2.choices[0].message.content == f1.choices[0].message.content
    assert f2.choices[0].finish_reason == "stop"
    assert f2.id == f1.id
    assert f2.usage is not None and f2.usage.completion_tokens == f1.usage.completion_tokens
    client.close()


def test_openai_responses_stream_helper_reads_a_hit(cache_gateway, mock, headers):
    import openai

    client = openai.OpenAI(
        api_key=CLIENT_KEY,
        base_url=f"{cache_gateway.url}/v1",
        max_retries=0,
        http_client=http_client(headers),
    )

    def run():
        with client.responses.stream(model="c-resp", input="cached responses") as stream:
            deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
            final = stream.get_final_response()
        return deltas, final

    (d1, f1), (d2, f2) = twice(run, mock, headers)
    assert "".join(d2) == REPLY_PREFIX + "cached responses"
    assert d1 == d2
    assert f2.output_text == f1.output_text
    assert f2.status == "completed"
    assert f2.id == f1.id
    assert f2.usage.output_tokens == f1.usage.output_tokens
    client.close()


def test_anthropic_stream_helper_reads_a_hit(cache_gateway, mock, headers):
    import anthropic

    client = anthropic.Anthropic(
        api_key=CLIENT_KEY, base_url=cache_gateway.url, max_retries=0, http_client=http_client(headers)
    )

    def run():
        with client.messages.stream(
            model="c-claude", max_tokens=64, messages=[{"role": "user", "content": "cached claude"}]
        ) as stream:
            pieces = list(stream.text_stream)
            final = stream.get_final_message()
        return pieces, final

    (p1, f1), (p2, f2) = twice(run, mock, headers)
    assert "".join(p2) == REPLY_PREFIX + "cached claude"
    assert p1 == p2
    assert f2.content[0].text == f1.content[0].text
    assert f2.stop_reason == "end_turn"
    assert f2.id == f1.id
    assert f2.usage.output_tokens == f1.usage.output_tokens
    client.close()


def test_gemini_stream_reads_a_hit(cache_gateway, mock, headers):
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key=CLIENT_KEY,
        http_options=types.HttpOptions(
            base_url=cache_gateway.url,
            api_version="v1beta",
            timeout=int(support.CLIENT_TIMEOUT * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
            client_args={"event_hooks": {"response": [headers.hook]}},
        ),
    )

    def run():
        return list(client.models.generate_content_stream(model="c-gemini", contents="cached gemini"))

    c1, c2 = twice(run, mock, headers)
    assert "".join(c.text or "" for c in c2) == REPLY_PREFIX + "cached gemini"
    assert [c.text for c in c1] == [c.text for c in c2]
    assert c2[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert c2[-1].usage_metadata.candidates_token_count == c1[-1].usage_metadata.candidates_token_count
    client.close()
