"""The README's demo (`octollm-server --demo`: the gateway in front of the in-process mock) answers
all four official SDKs, streaming and not, with no API key and no network."""

from __future__ import annotations

import os

import pytest

import support
from support import CLIENT_KEY, REPLY_PREFIX, Proc, bin_path


@pytest.fixture(scope="module")
def demo_proc():
    env = dict(os.environ)
    env["OCTOLLM_LISTEN"] = "127.0.0.1:0"
    env["OCTOLLM_ADMIN_LISTEN"] = "127.0.0.1:0"
    proc = Proc("octollm-server", [str(bin_path("octollm-server")), "--demo"], env=env)
    support.RUNNING.append(proc)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def demo_url(demo_proc):
    return demo_proc.url


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


def test_demo_shows_each_request_with_usage_and_cost_in_the_admin_api(demo_proc):
    """The demo prints its admin URL and a one-time token before the listening line; the request
    log there has the SDK's request, its usage and its cost (embedded SQLite, no set-up)."""
    import json
    import re
    import time
    import urllib.request

    import openai

    printed = "\n".join(demo_proc._stdout_lines)
    admin = re.search(r"admin on (http://\S+) ", printed).group(1)
    token = re.search(r"(octo_admin_[0-9a-f]{64})", printed).group(1)
    client = openai.OpenAI(api_key=CLIENT_KEY, base_url=f"{demo_proc.url}/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "logged"}]
    )
    request_id = raw.headers["x-octollm-request-id"]
    client.close()

    def get(path, auth=True):
        req = urllib.request.Request(f"{admin}{path}")
        if auth:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    deadline = time.monotonic() + 10
    while True:
        try:
            record = get(f"/api/v1/logs/{request_id}")
            break
        except urllib.error.HTTPError as e:
            # The writer batches every 100 ms: wait for it, within a bound.
            if e.code != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert record["client_protocol"] == "openai_chat"
    assert record["model"] == "gpt-4o-mini"
    assert record["status"] == 200
    assert record["usage"]["output_tokens"] > 0
    assert record["cost_usd"] > 0
    assert record["price"]["source"].startswith("snapshot:")
    with pytest.raises(urllib.error.HTTPError) as refused:
        get("/api/v1/logs", auth=False)
    assert refused.value.code == 401
    stats = get("/api/v1/stats?bucket=minute")
    assert stats["totals"]["requests"] >= 1
