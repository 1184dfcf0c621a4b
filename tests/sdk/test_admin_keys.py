"""A gateway key made through the admin API (`POST /api/v1/keys`) works from the official OpenAI SDK
at once, and is refused at once after `DELETE /api/v1/keys/{org}/{name}`."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request

import pytest

import support
from support import REPLY_PREFIX, MockClient, Proc, bin_path

ADMIN_TOKEN = "sdk-admin-token-0123456789"


@pytest.fixture(scope="module")
def keyed_gateway(mock: MockClient, tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("admin-keys")
    config = d / "gateway.yaml"
    config.write_text(
        f"""
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{ADMIN_TOKEN}"]}}
backends:
  oa: {{base_url: "{mock.url}", protocol: openai_chat, api_key: "sk-upstream-sdk-0001"}}
models:
  secure: {{access: internal, targets: [{{backend: oa, model: up-secure}}]}}
orgs:
  acme: {{api_keys: {{file-key: "sk-acme-file-key"}}}}
"""
    )
    env = dict(os.environ)
    env["OCTOLLM_STORAGE"] = f"sqlite://{d / 'octollm.db'}"
    env["OCTOLLM_SECRET_KEY"] = "02" * 32
    proc = Proc("octollm-server", [str(bin_path("octollm-server")), "--config", str(config)], env=env)
    support.RUNNING.append(proc)
    admin = next(
        m.group(1)
        for line in proc._stdout_lines
        if (m := re.match(r"^octollm-server admin on (http://\S+)", line))
    )
    try:
        yield proc.url, admin
    finally:
        proc.stop()


def admin_call(admin: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
    req = urllib.request.Request(
        f"{admin}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=support.CLIENT_TIMEOUT) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_a_created_key_works_at_once_and_a_revoked_one_is_refused_at_once(keyed_gateway):
    import openai

    url, admin = keyed_gateway
    status, created = admin_call(admin, "POST", "/api/v1/keys", {"org": "acme", "name": "sdk", "models": ["secure"]})
    assert status == 201, created
    key = created["key"]
    assert key.startswith("sk-octo-")

    client = openai.OpenAI(api_key=key, base_url=f"{url}/v1", max_retries=0, timeout=support.CLIENT_TIMEOUT)
    done = client.chat.completions.create(model="secure", messages=[{"role": "user", "content": "hi"}])
    assert done.choices[0].message.content == REPLY_PREFIX + "hi"
    with client.chat.completions.stream(model="secure", messages=[{"role": "user", "content": "hi"}]) as s:
        assert s.get_final_completion().choices[0].message.content == REPLY_PREFIX + "hi"

    status, listed = admin_call(admin, "GET", "/api/v1/keys")
    assert status == 200
    assert key not in json.dumps(listed)
    assert {(k["org"], k["name"], k["source"]) for k in listed["data"]} == {
        ("acme", "file-key", "file"),
        ("acme", "sdk", "api"),
    }

    status, _ = admin_call(admin, "DELETE", "/api/v1/keys/acme/sdk")
    assert status == 204
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="secure", messages=[{"role": "user", "content": "hi"}])
    client.close()
