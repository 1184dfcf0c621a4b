"""Stateful Responses API through conversion, with the official OpenAI SDK.

A Responses client chains turns with `previous_response_id` and reads stored answers back with
`responses.retrieve`, `responses.input_items.list` and `responses.delete`. When the model's upstream
speaks another protocol (OpenAI Chat, Anthropic, Gemini), the gateway keeps the answers in its
database, per org, and sends the upstream the whole history. A Responses upstream keeps its own
state: `previous_response_id` passes through to it untouched. With `storage: off` the gateway says
so (400) instead of answering without the history.

Two gateways of this module's own (the session one has no orgs): one with two orgs and SQLite
storage, one with `storage: off`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import BACKENDS, CLIENT_TIMEOUT, REPLY_PREFIX, RUNNING, Proc, bin_path

ACME_KEY = "sk-acme-responses"
BETA_KEY = "sk-beta-responses"

#: Exposed model → (backend, upstream protocol).
CONVERTED = {
    "chat-model": "openai_chat",
    "claude-model": "anthropic",
    "gemini-model": "gemini",
}


def write_config(path: Path, mock_url: str, storage: str | None) -> None:
    text = f"""\
# Written by tests/sdk/test_responses_state.py
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0"}}
backends:
  oa-chat: {{base_url: "{mock_url}", protocol: openai_chat, api_key: "{BACKENDS['oa-chat'].key}"}}
  oa-resp: {{base_url: "{mock_url}", protocol: openai_responses, api_key: "{BACKENDS['oa-resp'].key}"}}
  anth: {{base_url: "{mock_url}", protocol: anthropic, api_key: "{BACKENDS['anth'].key}"}}
  gem: {{base_url: "{mock_url}", protocol: gemini, api_key: "{BACKENDS['gem'].key}"}}
models:
  chat-model: {{retry: {{max_attempts: 1}}, targets: [{{backend: oa-chat, model: mock-gpt}}]}}
  claude-model: {{retry: {{max_attempts: 1}}, targets: [{{backend: anth, model: mock-claude}}]}}
  gemini-model: {{retry: {{max_attempts: 1}}, targets: [{{backend: gem, model: mock-gemini}}]}}
  responses-model: {{retry: {{max_attempts: 1}}, targets: [{{backend: oa-resp, model: mock-resp}}]}}
orgs:
  acme: {{api_keys: {{alice: "{ACME_KEY}"}}}}
  beta: {{api_keys: {{bob: "{BETA_KEY}"}}}}
"""
    if storage is not None:
        text += f"storage: {storage}\n"
    path.write_text(text, encoding="utf-8")


def start_gateway(mock, tmp_path_factory, name: str, storage: str | None):
    config = tmp_path_factory.mktemp(name) / "octollm.yaml"
    write_config(config, mock.url, storage)
    proc = Proc("octollm-server", [str(bin_path("octollm-server")), "--config", str(config)])
    RUNNING.append(proc)
    return proc


@pytest.fixture(scope="module")
def stateful_gateway(mock, tmp_path_factory):
    proc = start_gateway(mock, tmp_path_factory, "responses-state", None)
    try:
        yield proc.url
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def stateless_gateway(mock, tmp_path_factory):
    proc = start_gateway(mock, tmp_path_factory, "responses-stateless", "off")
    try:
        yield proc.url
    finally:
        proc.stop()


def client_for(url: str, key: str):
    import openai

    return openai.OpenAI(api_key=key, base_url=f"{url}/v1", max_retries=0, timeout=CLIENT_TIMEOUT)


@pytest.fixture
def acme(stateful_gateway):
    client = client_for(stateful_gateway, ACME_KEY)
    yield client
    client.close()


@pytest.fixture
def beta(stateful_gateway):
    client = client_for(stateful_gateway, BETA_KEY)
    yield client
    client.close()


def upstream_body(mock) -> dict:
    (req,) = mock.requests(body=True)
    return req["body"]


def texts(value) -> list[str]:
    """Every string in a JSON value, in order."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    if isinstance(value, dict):
        return [t for k, v in value.items() if k not in ("type", "role") for t in texts(v)]
    return []


def history_of(body: dict, protocol: str) -> list[tuple[str, str]]:
    """(role, text) of each turn of an upstream request, in the upstream's own shape."""
    if protocol == "openai_chat":
        turns = [(m["role"], m.get("content")) for m in body["messages"]]
    elif protocol == "anthropic":
        turns = [(m["role"], m["content"]) for m in body["messages"]]
    else:
        turns = [(c["role"], c["parts"]) for c in body["contents"]]
    return [(role, " ".join(texts(content))) for role, content in turns]


@pytest.mark.parametrize(("model", "protocol"), CONVERTED.items(), ids=list(CONVERTED.values()))
def test_previous_response_id_expands_the_history(acme, mock, model, protocol):
    first = acme.responses.create(model=model, input="first turn", instructions="Be brief.")
    assert first.output_text == REPLY_PREFIX + "first turn"
    assert first.id.startswith("resp")

    mock.reset()
    second = acme.responses.create(model=model, input="second turn", previous_response_id=first.id)
    assert second.output_text == REPLY_PREFIX + "second turn"
    assert second.previous_response_id == first.id
    history = history_of(upstream_body(mock), protocol)
    assistant = "assistant" if protocol != "gemini" else "model"
    assert history == [
        ("user", "first turn"),
        (assistant, REPLY_PREFIX + "first turn"),
        ("user", "second turn"),
    ], history
    # `instructions` are not carried over by previous_response_id (as in the API).
    assert "Be brief." not in json.dumps(upstream_body(mock))

    # The stream helper, chained to the second answer; stored before `response.completed` is seen.
    mock.reset()
    with acme.responses.stream(model=model, input="third turn", previous_response_id=second.id) as stream:
        third = stream.get_final_response()
    assert third.output_text == REPLY_PREFIX + "third turn"
    assert len(history_of(upstream_body(mock), protocol)) == 5

    again = acme.responses.retrieve(third.id)
    assert again.id == third.id
    assert again.output_text == third.output_text
    assert again.previous_response_id == second.id

    # The input items, newest first by default, the whole history, paginated by the SDK.
    items = list(acme.responses.input_items.list(third.id, limit=2))
    roles = [getattr(i, "role", None) for i in items]
    assert roles == ["user", "assistant", "user", "assistant", "user"], roles
    first_text = items[-1].content[0].text
    assert first_text == "first turn"
    ascending = acme.responses.input_items.list(third.id, order="asc")
    assert [i.content[0].text for i in ascending.data][::2] == ["first turn", "second turn", "third turn"]
    assert len({i.id for i in items}) == 5

    acme.responses.delete(third.id)
    import openai

    with pytest.raises(openai.NotFoundError) as e:
        acme.responses.retrieve(third.id)
    assert third.id in str(e.value)
    with pytest.raises(openai.NotFoundError):
        acme.responses.delete(third.id)
    # The earlier answers are still there.
    assert acme.responses.retrieve(second.id).output_text == second.output_text


def test_a_tool_call_and_its_output_chain_through_previous_response_id(acme, mock):
    import openai  # noqa: F401

    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}]
    first = acme.responses.create(model="claude-model", input="call it [mock:tool]", tools=tools)
    (call,) = [item for item in first.output if item.type == "function_call"]
    mock.reset()
    second = acme.responses.create(
        model="claude-model",
        previous_response_id=first.id,
        tools=tools,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "42 degrees"}],
    )
    assert second.output_text == "Hello from octo-mock. Tool result: 42 degrees"
    messages = upstream_body(mock)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"][-1]["type"] == "tool_use"
    assert messages[2]["content"][0] == {"type": "tool_result", "tool_use_id": messages[1]["content"][-1]["id"], "content": "42 degrees"} or messages[2]["content"][0]["tool_use_id"] == messages[1]["content"][-1]["id"]


def test_store_false_is_not_kept(acme, mock):
    import openai

    answer = acme.responses.create(model="chat-model", input="forget me", store=False)
    assert answer.output_text == REPLY_PREFIX + "forget me"
    with pytest.raises(openai.NotFoundError):
        acme.responses.retrieve(answer.id)
    mock.reset()
    with pytest.raises(openai.NotFoundError) as e:
        acme.responses.create(model="chat-model", input="again", previous_response_id=answer.id)
    assert e.value.body["param"] == "previous_response_id"
    assert e.value.body["type"] == "invalid_request_error" or e.value.status_code == 404
    assert mock.requests() == [], "an unknown previous_response_id never reaches the upstream"


def test_another_orgs_answer_is_a_404(acme, beta, mock):
    import openai

    mine = acme.responses.create(model="gemini-model", input="acme only")
    for call in (
        lambda: beta.responses.retrieve(mine.id),
        lambda: beta.responses.input_items.list(mine.id),
        lambda: beta.responses.delete(mine.id),
        lambda: beta.responses.create(model="gemini-model", input="peek", previous_response_id=mine.id),
    ):
        with pytest.raises(openai.NotFoundError) as e:
            call()
        assert e.value.status_code == 404
        assert "not found" in e.value.message
    # Still acme's, untouched by beta's delete.
    assert acme.responses.retrieve(mine.id).output_text == REPLY_PREFIX + "acme only"
    with pytest.raises(openai.NotFoundError):
        acme.responses.retrieve("resp_never_existed")


def test_a_responses_upstream_keeps_its_own_state(acme, mock):
    """Passthrough is untouched: the id goes to the upstream, nothing is expanded or stored."""
    answer = acme.responses.create(model="responses-model", input="next", previous_response_id="resp_upstream_7")
    assert answer.output_text == REPLY_PREFIX + "next"
    body = upstream_body(mock)
    assert body["previous_response_id"] == "resp_upstream_7"
    assert body["input"] == "next"
    import openai

    with pytest.raises(openai.NotFoundError):
        acme.responses.retrieve(answer.id)


def test_without_storage_previous_response_id_is_refused_naming_the_fix(stateless_gateway, mock):
    import openai

    client = client_for(stateless_gateway, ACME_KEY)
    try:
        answer = client.responses.create(model="chat-model", input="no state")
        assert answer.output_text == REPLY_PREFIX + "no state"
        mock.reset()
        with pytest.raises(openai.BadRequestError) as e:
            client.responses.create(model="chat-model", input="more", previous_response_id=answer.id)
        assert e.value.body["param"] == "previous_response_id"
        assert "storage" in e.value.message
        assert mock.requests() == []
        with pytest.raises(openai.NotFoundError) as e:
            client.responses.retrieve(answer.id)
        assert "storage" in e.value.message
    finally:
        client.close()
