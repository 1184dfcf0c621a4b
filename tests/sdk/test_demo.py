"""The README's demo (`octollm-server --demo`: the gateway in front of the in-process mock) answers
all four official SDKs, streaming and not, with no API key and no network."""

from __future__ import annotations

import os

import pytest

import support
from support import CLIENT_KEY, REPLY_PREFIX, Proc, bin_path


@pytest.fixture(scope="module")
def demo_url():
    env = dict(os.environ)
    env["OCTOLLM_LISTEN"] = "127.0.0.1:0"
    proc = Proc("octollm-server", [str(bin_path("octollm-server")), "--demo"], env=env)
    support.RUNNING.append(proc)
    try:
        yield proc.url
    finally:
        proc.stop()


def test_demo_answers_openai_chat_and_responses(demo_url):
    import openai

    client = openai.OpenAI(api_key=CLIENT_KEY, base_url=f"{demo_url}/v1", max_retries=0)
    done = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "demo"}])
    assert done.choices[0].message.content == REPLY_PREFIX + "demo"
    with client.chat.completions.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": "demo"}]) as s:
        assert s.get_final_completion().choices[0].message.content == REPLY_PREFIX + "demo"
    with client.responses.stream(model="gpt-4o-mini", input="demo") as s:
        assert s.get_final_response().output_text == REPLY_PREFIX + "demo"
    client.close()


def test_demo_answers_anthropic(demo_url):
    import anthropic

    client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=demo_url, max_retries=0)
    msg = client.messages.create(model="claude-sonnet-5-5", max_tokens=64, messages=[{"role": "user", "content": "demo"}])
    assert msg.content[0].text == REPLY_PREFIX + "demo"
    with client.messages.stream(model="claude-sonnet-5-5", max_tokens=64, messages=[{"role": "user", "content": "demo"}]) as s:
        assert s.get_final_message().content[0].text == REPLY_PREFIX + "demo"
    client.close()


def test_demo_answers_gemini(demo_url):
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key=CLIENT_KEY,
        http_options=types.HttpOptions(base_url=demo_url, retry_options=types.HttpRetryOptions(attempts=1)),
    )
    assert client.models.generate_content(model="gemini-2.5-flash", contents="demo").text == REPLY_PREFIX + "demo"
    chunks = client.models.generate_content_stream(model="gemini-2.5-flash", contents="demo")
    assert "".join(c.text or "" for c in chunks) == REPLY_PREFIX + "demo"
    client.close()
