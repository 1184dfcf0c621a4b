"""Structured outputs across every pair, reasoning from OpenAI-compatible vendors, and histories one
side cannot express, through the official SDKs, the real gateway and the mock (which answers
structured-output requests with JSON of the schema and refuses, with the provider's message, what
the real APIs refuse: see octo-mock's `rules`).

- Structured outputs: each SDK's own helper (`chat.completions.parse`, `responses.parse`,
  `messages.parse`, google-genai's `response_schema`) against each of the four upstreams; the
  client gets valid JSON for its schema. `json_object` toward Anthropic (no such mode) goes through
  a forced tool whose input becomes the text.
- Vendor reasoning: DeepSeek, Kimi and vLLM models (an OpenAI Chat backend of this module's own
  gateway) stream reasoning beside `content`; an Anthropic client sees a thinking block, a Responses
  client a reasoning item, a Gemini client a thought part; the next turn sends it back as the vendor
  requires (DeepSeek and Kimi answer 400 without it on tool-call turns).
- Histories: a Chat client's `reasoning_effort` on a replayed tool loop toward Anthropic (thinking
  dropped, or Anthropic would refuse), and several choices refused with a 400 in the client's shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from support import BACKENDS, CLIENT_KEY, CLIENT_TIMEOUT, MODELS, REPLY_PREFIX, RUNNING, Proc, bin_path

PAIRS = [(model, BACKENDS[backend].protocol) for model, (backend, _) in MODELS.items()]
IDS = [protocol for _, protocol in PAIRS]


class Weather(BaseModel):
    city: str
    degrees: int
    sunny: bool
    tags: list[str]


def check_weather(value) -> None:
    w = value if isinstance(value, Weather) else Weather.model_validate(value)
    assert w.degrees == 0 and w.sunny is True and len(w.tags) == 1, w
    assert w.city.startswith("Hello from octo-mock."), w


def upstream_body(mock) -> dict:
    (req,) = mock.requests(body=True)
    return req["body"]


# ------------------------------------------------------------------------------ structured outputs


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_openai_chat_parse_gets_json_of_its_schema(openai_client, mock, model, upstream):
    done = openai_client.chat.completions.parse(
        model=model, messages=[{"role": "user", "content": "weather as JSON"}], response_format=Weather
    )
    check_weather(done.choices[0].message.parsed)
    assert done.choices[0].finish_reason == "stop"
    body = upstream_body(mock)
    schema_seen = json.dumps(body)
    assert '"degrees"' in schema_seen, f"the schema did not reach the {upstream} upstream: {body}"

    # `json_object`: any object; toward Anthropic through the forced answer tool.
    mock.reset()
    done = openai_client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "any JSON"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(done.choices[0].message.content), dict)
    assert done.choices[0].finish_reason == "stop"
    assert not done.choices[0].message.tool_calls
    if upstream == "anthropic":
        body = upstream_body(mock)
        assert body["tool_choice"] == {"type": "tool", "name": "octollm_json_answer"}, body

    # Streamed through the SDK's stream helper, which parses at the end.
    mock.reset()
    with openai_client.chat.completions.stream(
        model=model, messages=[{"role": "user", "content": "weather streamed"}], response_format=Weather
    ) as stream:
        final = stream.get_final_completion()
    check_weather(final.choices[0].message.parsed)


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_responses_parse_gets_json_of_its_schema(openai_client, mock, model, upstream):
    done = openai_client.responses.parse(model=model, input="weather as JSON", text_format=Weather, store=False)
    check_weather(done.output_parsed)
    mock.reset()
    with openai_client.responses.stream(model=model, input="weather streamed", text_format=Weather, store=False) as stream:
        final = stream.get_final_response()
    check_weather(final.output_parsed)


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_anthropic_parse_gets_json_of_its_schema(anthropic_client, mock, model, upstream):
    done = anthropic_client.messages.parse(
        model=model, max_tokens=256, messages=[{"role": "user", "content": "weather as JSON"}], output_format=Weather
    )
    check_weather(done.parsed_output)
    assert done.stop_reason == "end_turn"
    assert '"degrees"' in json.dumps(upstream_body(mock))


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_gemini_response_schema_gets_json_of_its_schema(genai_client_factory, mock, model, upstream):
    from google.genai import types

    client = genai_client_factory("v1beta")
    done = client.models.generate_content(
        model=model,
        contents="weather as JSON",
        config=types.GenerateContentConfig(response_mime_type="application/json", response_schema=Weather),
    )
    check_weather(done.parsed)
    assert '"degrees"' in json.dumps(upstream_body(mock))


# ------------------------------------------------------------------------------ vendor reasoning

VENDORS = {
    "deepseek-model": "deepseek-v4-pro",
    "kimi-model": "kimi-k2.5",
    "vllm-model": "vllm-qwen3",
}
TOOLS_ANTHROPIC = [{"name": "lookup", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}]


@pytest.fixture(scope="module")
def vendor_gateway(mock, tmp_path_factory):
    """A gateway whose models are OpenAI-compatible vendors (the mock knows them by model name);
    vLLM needs its dialect named (`conversion.reasoning_dialect: vllm`), the others are detected."""
    config = tmp_path_factory.mktemp("vendor-gateway") / "octollm.yaml"
    text = f"""\
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0"}}
storage: off
backends:
  compat: {{base_url: "{mock.url}", protocol: openai_chat, api_key: "sk-upstream-compat"}}
  vllm: {{base_url: "{mock.url}", protocol: openai_chat, api_key: "sk-upstream-vllm", conversion: {{reasoning_dialect: vllm}}}}
models:
"""
    for exposed, upstream in VENDORS.items():
        backend = "vllm" if exposed == "vllm-model" else "compat"
        text += f"  {exposed}: {{access: public, retry: {{max_attempts: 1}}, targets: [{{backend: {backend}, model: {upstream}}}]}}\n"
    Path(config).write_text(text, encoding="utf-8")
    proc = Proc("octollm-server", [str(bin_path("octollm-server")), "--config", str(config)])
    RUNNING.append(proc)
    try:
        yield proc.url
    finally:
        proc.stop()


@pytest.fixture
def vendor_anthropic(vendor_gateway):
    import anthropic

    client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=vendor_gateway, max_retries=0, timeout=CLIENT_TIMEOUT)
    yield client
    client.close()


THOUGHT = "The mock thinks before it answers."


@pytest.mark.parametrize("model", list(VENDORS))
def test_vendor_reasoning_reaches_every_client(vendor_gateway, vendor_anthropic, mock, model):
    import openai
    from google import genai
    from google.genai import types

    with vendor_anthropic.messages.stream(
        model=model, max_tokens=256, messages=[{"role": "user", "content": "think [mock:thinking]"}]
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"], final.content
    assert final.content[0].thinking == THOUGHT

    oa = openai.OpenAI(api_key=CLIENT_KEY, base_url=f"{vendor_gateway}/v1", max_retries=0, timeout=CLIENT_TIMEOUT)
    try:
        done = oa.responses.create(model=model, input="think [mock:thinking]", store=False, reasoning={"summary": "auto"})
        reasoning = [item for item in done.output if item.type == "reasoning"]
        assert reasoning and reasoning[0].summary[0].text == THOUGHT, done.output
    finally:
        oa.close()

    gem = genai.Client(
        api_key=CLIENT_KEY,
        http_options=types.HttpOptions(base_url=vendor_gateway, api_version="v1beta", timeout=int(CLIENT_TIMEOUT * 1000)),
    )
    try:
        done = gem.models.generate_content(
            model=model,
            contents="think [mock:thinking]",
            config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True)),
        )
        parts = done.candidates[0].content.parts
        assert parts[0].thought is True and parts[0].text == THOUGHT, parts
    finally:
        gem.close()


@pytest.mark.parametrize("model", ["deepseek-model", "kimi-model"])
@pytest.mark.parametrize("replay_thinking", [True, False], ids=["with-thinking", "without-thinking"])
def test_the_next_turn_sends_reasoning_back_as_the_vendor_requires(vendor_anthropic, mock, model, replay_thinking):
    """A Claude Code-style tool loop: the vendor refuses a tool-call turn without its reasoning."""
    first = vendor_anthropic.messages.create(
        model=model,
        max_tokens=256,
        tools=TOOLS_ANTHROPIC,
        messages=[{"role": "user", "content": "look it up [mock:thinking] [mock:tool]"}],
    )
    assert [b.type for b in first.content] == ["thinking", "tool_use"], first.content
    content = [b.model_dump(exclude_none=True) for b in first.content]
    if not replay_thinking:
        content = content[1:]
    mock.reset()
    second = vendor_anthropic.messages.create(
        model=model,
        max_tokens=256,
        tools=TOOLS_ANTHROPIC,
        messages=[
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[1].id, "content": "found"}]},
        ],
    )
    assert second.content[-1].text == "Hello from octo-mock. Tool result: found"
    assistant = [m for m in upstream_body(mock)["messages"] if m["role"] == "assistant"][0]
    expected = THOUGHT if replay_thinking else ("" if model == "deepseek-model" else ".")
    assert assistant["reasoning_content"] == expected, assistant
    assert "thinking_blocks" not in assistant


def test_vllm_gets_reasoning_back_in_its_field(vendor_anthropic, mock):
    first = vendor_anthropic.messages.create(
        model="vllm-model", max_tokens=256, tools=TOOLS_ANTHROPIC,
        messages=[{"role": "user", "content": "look [mock:thinking] [mock:tool]"}],
    )
    mock.reset()
    vendor_anthropic.messages.create(
        model="vllm-model", max_tokens=256, tools=TOOLS_ANTHROPIC,
        messages=[
            {"role": "user", "content": "look"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[1].id, "content": "x"}]},
        ],
    )
    assistant = [m for m in upstream_body(mock)["messages"] if m["role"] == "assistant"][0]
    assert assistant["reasoning"] == THOUGHT and "reasoning_content" not in assistant, assistant


# ------------------------------------------------------------------------------ histories


def test_reasoning_effort_on_a_replayed_tool_loop_toward_anthropic_is_accepted(openai_client, mock):
    """A Chat client has no thinking blocks to replay; with thinking on, Anthropic (and the mock)
    would refuse the tool turn, so the gateway sends the request without thinking."""
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"query\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]
    done = openai_client.chat.completions.create(model="claude-model", messages=messages, tools=tools, reasoning_effort="high")
    assert done.choices[0].message.content == "Hello from octo-mock. Tool result: sunny"
    assert "thinking" not in upstream_body(mock)
    # A first turn keeps thinking on.
    mock.reset()
    openai_client.chat.completions.create(model="claude-model", messages=[{"role": "user", "content": "hi"}], reasoning_effort="high")
    assert upstream_body(mock)["thinking"]["type"] == "enabled"


@pytest.mark.parametrize("model", ["claude-model", "gemini-model", "responses-model"])
def test_several_choices_are_refused_not_cut_to_one(openai_client, mock, model):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        openai_client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], n=2)
    assert e.value.body["param"] == "n"
    assert "one candidate" in e.value.message
    assert mock.requests() == []
    # Passthrough keeps every choice (the upstream speaks Chat).
    done = openai_client.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "hi"}], n=1)
    assert done.choices[0].message.content == REPLY_PREFIX + "hi"


def test_several_gemini_candidates_are_refused_in_geminis_shape(genai_client_factory, mock):
    from google.genai import errors, types

    client = genai_client_factory("v1beta")
    with pytest.raises(errors.ClientError) as e:
        client.models.generate_content(
            model="chat-model", contents="hi", config=types.GenerateContentConfig(candidate_count=2)
        )
    assert e.value.code == 400
    assert "candidateCount" in e.value.message
    assert mock.requests() == []
