"""Every client protocol against every upstream protocol (the sixteen pairs), through each
official SDK and its stream helper, which is stricter than plain iteration.

Each SDK names one of the four exposed models; the model's backend speaks one protocol, so three of
the four models are reached through the gateway's protocol conversion (the fourth is passthrough).
Checks: text, the stream accumulator's final object, usage, finish reason, and two parallel tool
calls with distinct ids and names that come back whole. The upstream's request is checked to be in
the backend's own protocol on its own path. Further down, for every pair, unary and through the
stream helper: image input (base64 and URL), a stop sequence, and reasoning replayed with its
signature (see the section comment there for what each pair can and cannot express). For the
Responses client through a conversion also a `custom` (free-form, grammar) tool called and
replayed, and a mid-stream failure seen as `response.failed`.
"""

from __future__ import annotations

import base64
import inspect
import json

import pytest

from support import BACKENDS, MODELS, REPLY_PREFIX

UPSTREAM_PATHS = {
    "openai_chat": "/v1/chat/completions",
    "openai_responses": "/v1/responses",
    "anthropic": "/v1/messages",
    "gemini": ":generateContent",
}

#: (exposed model, upstream protocol)
PAIRS = [(model, BACKENDS[backend].protocol) for model, (backend, _) in MODELS.items()]
IDS = [protocol for _, protocol in PAIRS]


def check_upstream_protocol(mock, protocol: str, stream: bool) -> None:
    (req,) = mock.requests()
    path = req["path_and_query"]
    if protocol == "gemini":
        assert ("streamGenerateContent" if stream else ":generateContent") in path, path
    else:
        assert path == UPSTREAM_PATHS[protocol], path


def tool_args(raw) -> dict:
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


# ------------------------------------------------------------------------------------ OpenAI Chat

OA_TOOLS = [
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "fetch", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}},
]


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_openai_chat_client(openai_client, mock, model, upstream):
    done = openai_client.chat.completions.create(model=model, messages=[{"role": "user", "content": "pair text"}])
    assert done.choices[0].message.content == REPLY_PREFIX + "pair text"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0
    check_upstream_protocol(mock, upstream, stream=False)

    mock.reset()
    with openai_client.chat.completions.stream(
        model=model, messages=[{"role": "user", "content": "pair stream"}], stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == REPLY_PREFIX + "pair stream"
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.completion_tokens > 0
    check_upstream_protocol(mock, upstream, stream=True)

    mock.reset()
    with openai_client.chat.completions.stream(
        model=model, messages=[{"role": "user", "content": "two calls [mock:tools=2]"}], tools=OA_TOOLS
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in calls] == ["lookup", "fetch"]
    assert len({c.id for c in calls}) == 2 and all(c.id for c in calls)
    assert [tool_args(c.function.arguments)["n"] for c in calls] == [0, 1]


# ------------------------------------------------------------------------------------ OpenAI Responses

RESP_TOOLS = [
    {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}},
    {"type": "function", "name": "fetch", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}},
]


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_openai_responses_client(openai_client, mock, model, upstream):
    done = openai_client.responses.create(model=model, input="pair text", instructions="Be brief.")
    assert done.output_text == REPLY_PREFIX + "pair text"
    assert done.status == "completed"
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0
    check_upstream_protocol(mock, upstream, stream=False)

    mock.reset()
    with openai_client.responses.stream(model=model, input="pair stream") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == REPLY_PREFIX + "pair stream"
    assert final.output_text == REPLY_PREFIX + "pair stream"
    assert final.usage is not None and final.usage.output_tokens > 0

    mock.reset()
    with openai_client.responses.stream(model=model, input="two calls [mock:tools=2]", tools=RESP_TOOLS) as stream:
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["lookup", "fetch"]
    assert len({c.call_id for c in calls}) == 2
    assert [tool_args(c.arguments)["n"] for c in calls] == [0, 1]


#: A free-form tool, as Codex CLI declares `apply_patch`.
CUSTOM_TOOLS = [
    {
        "type": "custom",
        "name": "apply_patch",
        "description": "Edit files with a patch.",
        "format": {"type": "grammar", "syntax": "lark", "definition": "start: /(.|\\n)+/"},
    }
]

CONVERTED = [pair for pair in PAIRS if pair[1] != "openai_responses"]


@pytest.mark.parametrize(("model", "upstream"), CONVERTED, ids=[p for _, p in CONVERTED])
def test_openai_responses_custom_tool_through_conversion(openai_client, mock, model, upstream):
    ask = "patch it [mock:tool=apply_patch] [mock:tool_arg=add a line]"
    done = openai_client.responses.create(model=model, input=ask, tools=CUSTOM_TOOLS)
    assert done.id.startswith("resp_"), done.id
    (call,) = [item for item in done.output if item.type == "custom_tool_call"]
    assert (call.name, call.input) == ("apply_patch", "add a line")
    assert call.id.startswith("ctc_"), call.id
    check_upstream_protocol(mock, upstream, stream=False)

    mock.reset()
    with openai_client.responses.stream(model=model, input=ask, tools=CUSTOM_TOOLS) as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = "".join(e.delta for e in events if e.type == "response.custom_tool_call_input.delta")
    assert deltas == "add a line"
    (done_event,) = [e for e in events if e.type == "response.custom_tool_call_input.done"]
    assert done_event.input == "add a line"
    assert [(i.type, i.input) for i in final.output] == [("custom_tool_call", "add a line")]

    # The call and its output replayed on the next turn, ids kept.
    mock.reset()
    follow = openai_client.responses.create(
        model=model,
        tools=CUSTOM_TOOLS,
        input=[
            {"role": "user", "content": "patch it"},
            {"type": "custom_tool_call", "call_id": call.call_id, "name": "apply_patch", "input": call.input},
            {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "patched"},
        ],
    )
    assert "Tool result: " in follow.output_text and "patched" in follow.output_text, follow.output_text


@pytest.mark.parametrize(("model", "upstream"), CONVERTED, ids=[p for _, p in CONVERTED])
def test_openai_responses_midstream_failure_through_conversion(openai_client, mock, model, upstream):
    failed = []
    with pytest.raises(RuntimeError, match="response.completed"):
        with openai_client.responses.stream(model=model, input="fail later [mock:midstream_error=1]") as stream:
            first = None
            for event in stream:
                first = first or event
                if event.type == "response.failed":
                    assert event.response.id == first.response.id
                    failed.append((event.response.status, event.response.error.code, event.response.error.message))
            stream.get_final_response()
    assert failed == [("failed", "server_error", "octo-mock: injected mid-stream error")]


# ------------------------------------------------------------------------------------ Anthropic

AN_TOOLS = [
    {"name": "lookup", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}},
    {"name": "fetch", "input_schema": {"type": "object", "properties": {"n": {"type": "integer"}}}},
]


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_anthropic_client(anthropic_client, mock, model, upstream):
    msg = anthropic_client.messages.create(
        model=model, max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "pair text"}]
    )
    assert msg.content[0].text == REPLY_PREFIX + "pair text"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens > 0
    check_upstream_protocol(mock, upstream, stream=False)

    mock.reset()
    with anthropic_client.messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "pair stream"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REPLY_PREFIX + "pair stream"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0

    mock.reset()
    with anthropic_client.messages.stream(
        model=model, max_tokens=64, tools=AN_TOOLS, messages=[{"role": "user", "content": "two calls [mock:tools=2]"}]
    ) as stream:
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use"
    assert [u.name for u in uses] == ["lookup", "fetch"]
    assert [u.input["n"] for u in uses] == [0, 1]
    assert len({u.id for u in uses}) == 2
    assert all(all(ch.isalnum() or ch in "_-" for ch in u.id) for u in uses), [u.id for u in uses]

    # The tool results go back with the ids the gateway handed out; the turn completes with text.
    mock.reset()
    history = [
        {"role": "user", "content": "two calls [mock:tools=2]"},
        {"role": "assistant", "content": [u.model_dump(exclude_none=True) for u in uses]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u.id, "content": f"result {u.name}"} for u in uses]},
    ]
    reply = anthropic_client.messages.create(model=model, max_tokens=64, tools=AN_TOOLS, messages=history)
    assert reply.stop_reason == "end_turn"
    assert reply.content[0].type == "text"


# ------------------------------------------------------------------------------------ Gemini


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_gemini_client(genai_client_factory, mock, model, upstream):
    from google.genai import types

    client = genai_client_factory("v1beta")
    done = client.models.generate_content(model=model, contents="pair text")
    assert done.text == REPLY_PREFIX + "pair text"
    assert done.candidates[0].finish_reason == types.FinishReason.STOP
    assert done.usage_metadata.candidates_token_count > 0
    check_upstream_protocol(mock, upstream, stream=False)

    mock.reset()
    chunks = list(client.models.generate_content_stream(model=model, contents="pair stream"))
    assert "".join(c.text or "" for c in chunks) == REPLY_PREFIX + "pair stream"
    assert chunks[-1].usage_metadata.candidates_token_count > 0

    mock.reset()
    tools = [
        types.Tool(
            function_declarations=[
                types.FunctionDeclaration(name="lookup", parameters={"type": "OBJECT", "properties": {"query": {"type": "STRING"}}}),
                types.FunctionDeclaration(name="fetch", parameters={"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}}),
            ]
        )
    ]
    calls = []
    for chunk in client.models.generate_content_stream(
        model=model, contents="two calls [mock:tools=2]", config=types.GenerateContentConfig(tools=tools)
    ):
        calls.extend(chunk.function_calls or [])
    assert [c.name for c in calls] == ["lookup", "fetch"]
    assert [int(c.args["n"]) for c in calls] == [0, 1]


# ==================================================================================================
# Images, stop sequences and reasoning replay, for every pair.
#
# What the upstream received is read back from the mock (`/_mock/requests?body=1`) and reduced to
# the same neutral form whatever its protocol, so each client test states one expectation:
#
# - images: `("base64", mime, data)` / `("url", url)` in the upstream's own image shape (Chat
#   `image_url`, Responses `input_image`, Anthropic `image` sources, Gemini `inlineData` /
#   `fileData`);
# - stop sequences: the upstream's own stop parameter (Chat `stop`, Anthropic `stop_sequences`,
#   Gemini `generationConfig.stopSequences`). The Responses API has none: toward a Responses
#   upstream the gateway drops `stop` (documented in docs/architecture.md) and the answer is not
#   cut; a Responses client cannot send one (its SDK has no such parameter).
#   Only an Anthropic upstream says *which* sequence matched: through the others an Anthropic
#   client gets `end_turn` with `stop_sequence: null` (docs/conversion.md, "Stop reasons", maps `stop`/`STOP` there).
# - reasoning: with `[mock:thinking]` the mock answers reasoning with its protocol's signature
#   (`MOCK_SIGNATURES`); the client sends the assistant turn back as its SDK gives it, and the
#   upstream must receive its own signature and text in its own shape (Anthropic `thinking` block,
#   Chat `thinking_blocks`, Responses `reasoning.encrypted_content`, Gemini `thoughtSignature`).
# ==================================================================================================


#: A 1×1 PNG.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
IMAGE_URL = "https://example.com/octo/cat.png"
EXPECTED_IMAGES = [("base64", "image/png", PNG_B64), ("url", IMAGE_URL)]

STOP = "|STOP|"
STOP_TEXT = f"cut here{STOP}never shown"
CUT_REPLY = REPLY_PREFIX + "cut here"
UNCUT_REPLY = REPLY_PREFIX + STOP_TEXT

#: The mock's reasoning text and, per upstream protocol, the signature it attaches.
THINKING_TEXT = "The mock thinks before it answers."
MOCK_SIGNATURES = {
    "anthropic": "bW9jay1hbnRocm9waWMtc2lnbmF0dXJl",
    "openai_chat": "bW9jay1jaGF0LXNpZ25hdHVyZQ==",
    "openai_responses": "bW9jay1yZXNwb25zZXMtZW5jcnlwdGVkLWNvbnRlbnQ=",
    "gemini": "bW9jay1nZW1pbmktdGhvdWdodC1zaWduYXR1cmU=",
}


def upstream_body(mock) -> dict:
    """The body of the single request the mock received."""
    reqs = mock.requests(body=True)
    assert len(reqs) == 1, f"expected one upstream request, got {len(reqs)}"
    return reqs[0]["body"]


def _image_from_url(url: str):
    if url.startswith("data:"):
        head, data = url[len("data:"):].split(",", 1)
        return ("base64", head.split(";")[0], data)
    return ("url", url)


def upstream_images(protocol: str, body: dict) -> list:
    """Every image in the upstream request, in order, as `("base64", mime, data)` / `("url", url)`."""
    out = []
    if protocol == "openai_chat":
        for m in body["messages"]:
            for p in m["content"] if isinstance(m.get("content"), list) else []:
                if p.get("type") == "image_url":
                    out.append(_image_from_url(p["image_url"]["url"]))
    elif protocol == "openai_responses":
        items = body["input"] if isinstance(body["input"], list) else []
        for item in items:
            for p in item.get("content") if isinstance(item.get("content"), list) else []:
                if p.get("type") == "input_image":
                    out.append(_image_from_url(p["image_url"]))
    elif protocol == "anthropic":
        for m in body["messages"]:
            for b in m["content"] if isinstance(m["content"], list) else []:
                if b.get("type") == "image":
                    src = b["source"]
                    out.append(("base64", src["media_type"], src["data"]) if src["type"] == "base64" else ("url", src["url"]))
    else:
        for c in body["contents"]:
            for p in c["parts"]:
                inline = p.get("inlineData") or p.get("inline_data")
                file = p.get("fileData") or p.get("file_data")
                if inline:
                    out.append(("base64", inline.get("mimeType") or inline.get("mime_type"), inline["data"]))
                elif file:
                    out.append(("url", file.get("fileUri") or file.get("file_uri")))
    return out


def upstream_stop(protocol: str, body: dict):
    """The upstream request's stop sequences as a list (None when it has none)."""
    if protocol == "openai_chat":
        stop = body.get("stop")
        return [stop] if isinstance(stop, str) else stop
    if protocol == "anthropic":
        return body.get("stop_sequences")
    if protocol == "gemini":
        config = body.get("generationConfig") or body.get("generation_config") or {}
        return config.get("stopSequences") or config.get("stop_sequences")
    assert "stop" not in body, body
    return None


def upstream_replayed_reasoning(protocol: str, body: dict) -> list:
    """`(text, signature)` of every reasoning block the upstream request replays."""
    out = []
    if protocol == "anthropic":
        for m in body["messages"]:
            if m["role"] == "assistant" and isinstance(m["content"], list):
                out += [(b["thinking"], b["signature"]) for b in m["content"] if b["type"] == "thinking"]
    elif protocol == "openai_chat":
        for m in body["messages"]:
            if m["role"] == "assistant":
                out += [(b.get("thinking") or m.get("reasoning_content"), b["signature"]) for b in m.get("thinking_blocks", [])]
    elif protocol == "openai_responses":
        for item in body["input"]:
            if item.get("type") == "reasoning":
                text = "".join(s["text"] for s in item.get("summary", []))
                out.append((text, item.get("encrypted_content")))
    else:
        for c in body["contents"]:
            if c.get("role") == "model":
                out += [(p["text"], p.get("thoughtSignature") or p.get("thought_signature")) for p in c["parts"] if p.get("thought")]
    return out


def check_replay(mock, upstream: str) -> None:
    """The upstream got its own reasoning back: the mock's text and signature, in its own shape."""
    assert upstream_replayed_reasoning(upstream, upstream_body(mock)) == [(THINKING_TEXT, MOCK_SIGNATURES[upstream])]


# ------------------------------------------------------------------------------------ OpenAI Chat


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_openai_chat_image_input(openai_client, mock, model, upstream):
    content = [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "image_url", "image_url": {"url": IMAGE_URL}},
    ]
    done = openai_client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}])
    assert done.choices[0].message.content == REPLY_PREFIX + "describe"
    assert upstream_images(upstream, upstream_body(mock)) == EXPECTED_IMAGES

    mock.reset()
    with openai_client.chat.completions.stream(model=model, messages=[{"role": "user", "content": content}]) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == REPLY_PREFIX + "describe"
    assert upstream_images(upstream, upstream_body(mock)) == EXPECTED_IMAGES


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_openai_chat_stop_sequence(openai_client, mock, model, upstream):
    cut = upstream != "openai_responses"
    messages = [{"role": "user", "content": STOP_TEXT}]
    done = openai_client.chat.completions.create(model=model, messages=messages, stop=[STOP])
    assert done.choices[0].message.content == (CUT_REPLY if cut else UNCUT_REPLY)
    assert done.choices[0].finish_reason == "stop"
    assert upstream_stop(upstream, upstream_body(mock)) == ([STOP] if cut else None)

    mock.reset()
    with openai_client.chat.completions.stream(model=model, messages=messages, stop=STOP) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == (CUT_REPLY if cut else UNCUT_REPLY)
    assert final.choices[0].finish_reason == "stop"
    assert upstream_stop(upstream, upstream_body(mock)) == ([STOP] if cut else None)


def _chat_reasoning(message) -> tuple:
    extra = message.model_extra or {}
    blocks = extra.get("thinking_blocks") or []
    return extra.get("reasoning_content"), [b.get("signature") for b in blocks]


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_openai_chat_reasoning_replay(openai_client, mock, model, upstream):
    """Reasoning arrives as `reasoning_content` + `thinking_blocks` (LiteLLM's extension) and the
    assistant message, sent back as the SDK returned it, replays it to the upstream."""
    first = [{"role": "user", "content": "think first [mock:thinking]"}]
    done = openai_client.chat.completions.create(model=model, messages=first, reasoning_effort="low")
    assert done.choices[0].message.content == REPLY_PREFIX + "think first [mock:thinking]"
    assert _chat_reasoning(done.choices[0].message) == (THINKING_TEXT, [MOCK_SIGNATURES[upstream]])

    mock.reset()
    with openai_client.chat.completions.stream(model=model, messages=first, reasoning_effort="low") as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == REPLY_PREFIX + "think first [mock:thinking]"
    assert _chat_reasoning(message) == (THINKING_TEXT, [MOCK_SIGNATURES[upstream]])

    mock.reset()
    history = first + [message.model_dump(exclude_none=True), {"role": "user", "content": "and now?"}]
    again = openai_client.chat.completions.create(model=model, messages=history, reasoning_effort="low")
    assert again.choices[0].message.content == REPLY_PREFIX + "and now?"
    check_replay(mock, upstream)


# ------------------------------------------------------------------------------------ OpenAI Responses


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_openai_responses_image_input(openai_client, mock, model, upstream):
    content = [
        {"type": "input_text", "text": "describe"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}", "detail": "auto"},
        {"type": "input_image", "image_url": IMAGE_URL, "detail": "auto"},
    ]
    done = openai_client.responses.create(model=model, input=[{"role": "user", "content": content}])
    assert done.output_text == REPLY_PREFIX + "describe"
    assert upstream_images(upstream, upstream_body(mock)) == EXPECTED_IMAGES

    mock.reset()
    with openai_client.responses.stream(model=model, input=[{"role": "user", "content": content}]) as stream:
        final = stream.get_final_response()
    assert final.output_text == REPLY_PREFIX + "describe"
    assert upstream_images(upstream, upstream_body(mock)) == EXPECTED_IMAGES


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_openai_responses_stop_sequence(openai_client, mock, model, upstream):
    """The Responses API has no stop sequences: the SDK cannot send one, and text that would match
    another protocol's stop sequence comes back whole, with no stop parameter upstream."""
    assert "stop" not in inspect.signature(openai_client.responses.create).parameters
    done = openai_client.responses.create(model=model, input=STOP_TEXT)
    assert done.output_text == UNCUT_REPLY
    assert done.status == "completed"
    assert upstream_stop(upstream, upstream_body(mock)) is None


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_openai_responses_reasoning_replay(openai_client, mock, model, upstream):
    """Reasoning arrives as a `reasoning` item with `encrypted_content`; the output items, sent
    back as input, replay it to the upstream."""
    first = [{"role": "user", "content": "think first [mock:thinking]"}]
    reasoning = {"effort": "low", "summary": "auto"}
    done = openai_client.responses.create(
        model=model, input=first, reasoning=reasoning, include=["reasoning.encrypted_content"]
    )
    items = [i for i in done.output if i.type == "reasoning"]
    assert [(i.summary[0].text, i.encrypted_content) for i in items] == [(THINKING_TEXT, MOCK_SIGNATURES[upstream])]
    assert done.output_text == REPLY_PREFIX + "think first [mock:thinking]"

    mock.reset()
    with openai_client.responses.stream(
        model=model, input=first, reasoning=reasoning, include=["reasoning.encrypted_content"]
    ) as stream:
        final = stream.get_final_response()
    items = [i for i in final.output if i.type == "reasoning"]
    assert [("".join(s.text for s in i.summary), i.encrypted_content) for i in items] == [
        (THINKING_TEXT, MOCK_SIGNATURES[upstream])
    ]
    assert final.output_text == REPLY_PREFIX + "think first [mock:thinking]"

    mock.reset()
    history = first + [i.model_dump(exclude_none=True) for i in final.output] + [{"role": "user", "content": "and now?"}]
    again = openai_client.responses.create(model=model, input=history, reasoning=reasoning)
    assert again.output_text == REPLY_PREFIX + "and now?"
    check_replay(mock, upstream)


# ------------------------------------------------------------------------------------ Anthropic


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_anthropic_image_input(anthropic_client, mock, model, upstream):
    content = [
        {"type": "text", "text": "describe"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": IMAGE_URL}},
    ]
    msg = anthropic_client.messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": content}])
    assert msg.content[0].text == REPLY_PREFIX + "describe"
    assert upstream_images(upstream, upstream_body(mock)) == EXPECTED_IMAGES

    mock.reset()
    with anthropic_client.messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": content}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == REPLY_PREFIX + "describe"
    assert upstream_images(upstream, upstream_body(mock)) == EXPECTED_IMAGES


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_anthropic_stop_sequence(anthropic_client, mock, model, upstream):
    cut = upstream != "openai_responses"
    # Only an Anthropic upstream says which sequence matched.
    expected_stop = ("stop_sequence", STOP) if upstream == "anthropic" else ("end_turn", None)
    messages = [{"role": "user", "content": STOP_TEXT}]
    msg = anthropic_client.messages.create(model=model, max_tokens=64, messages=messages, stop_sequences=[STOP])
    assert msg.content[0].text == (CUT_REPLY if cut else UNCUT_REPLY)
    assert (msg.stop_reason, msg.stop_sequence) == expected_stop
    assert upstream_stop(upstream, upstream_body(mock)) == ([STOP] if cut else None)

    mock.reset()
    with anthropic_client.messages.stream(model=model, max_tokens=64, messages=messages, stop_sequences=[STOP]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == (CUT_REPLY if cut else UNCUT_REPLY)
    assert (final.stop_reason, final.stop_sequence) == expected_stop
    assert upstream_stop(upstream, upstream_body(mock)) == ([STOP] if cut else None)


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_anthropic_reasoning_replay(anthropic_client, mock, model, upstream):
    """Reasoning arrives as a `thinking` block with a signature; the assistant content, sent back
    as the SDK returned it, replays it to the upstream."""
    thinking = {"type": "enabled", "budget_tokens": 1024}
    first = [{"role": "user", "content": "think first [mock:thinking]"}]
    msg = anthropic_client.messages.create(model=model, max_tokens=2048, thinking=thinking, messages=first)
    blocks = [(b.thinking, b.signature) for b in msg.content if b.type == "thinking"]
    assert blocks == [(THINKING_TEXT, MOCK_SIGNATURES[upstream])]
    assert msg.content[-1].text == REPLY_PREFIX + "think first [mock:thinking]"

    mock.reset()
    with anthropic_client.messages.stream(model=model, max_tokens=2048, thinking=thinking, messages=first) as stream:
        final = stream.get_final_message()
    blocks = [(b.thinking, b.signature) for b in final.content if b.type == "thinking"]
    assert blocks == [(THINKING_TEXT, MOCK_SIGNATURES[upstream])]
    assert final.content[0].type == "thinking"

    mock.reset()
    history = first + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
        {"role": "user", "content": "and now?"},
    ]
    again = anthropic_client.messages.create(model=model, max_tokens=2048, thinking=thinking, messages=history)
    assert again.content[-1].text == REPLY_PREFIX + "and now?"
    check_replay(mock, upstream)


# ------------------------------------------------------------------------------------ Gemini


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_gemini_image_input(genai_client_factory, mock, model, upstream):
    from google.genai import types

    client = genai_client_factory("v1beta")
    contents = [
        types.Content(
            role="user",
            parts=[
                types.Part.from_text(text="describe"),
                types.Part.from_bytes(data=base64.b64decode(PNG_B64), mime_type="image/png"),
                types.Part.from_uri(file_uri=IMAGE_URL, mime_type="image/png"),
            ],
        )
    ]
    # The SDK sends the bytes in the URL-safe base64 alphabet, which Gemini accepts: a Gemini
    # upstream gets them untouched (passthrough), the others standard base64, which they require.
    expected = EXPECTED_IMAGES
    if upstream == "gemini":
        expected = [("base64", "image/png", base64.urlsafe_b64encode(base64.b64decode(PNG_B64)).decode()), EXPECTED_IMAGES[1]]
    done = client.models.generate_content(model=model, contents=contents)
    assert done.text == REPLY_PREFIX + "describe"
    assert upstream_images(upstream, upstream_body(mock)) == expected

    mock.reset()
    chunks = list(client.models.generate_content_stream(model=model, contents=contents))
    assert "".join(c.text or "" for c in chunks) == REPLY_PREFIX + "describe"
    assert upstream_images(upstream, upstream_body(mock)) == expected


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_gemini_stop_sequence(genai_client_factory, mock, model, upstream):
    from google.genai import types

    client = genai_client_factory("v1beta")
    cut = upstream != "openai_responses"
    config = types.GenerateContentConfig(stop_sequences=[STOP])
    done = client.models.generate_content(model=model, contents=STOP_TEXT, config=config)
    assert done.text == (CUT_REPLY if cut else UNCUT_REPLY)
    assert done.candidates[0].finish_reason == types.FinishReason.STOP
    assert upstream_stop(upstream, upstream_body(mock)) == ([STOP] if cut else None)

    mock.reset()
    chunks = list(client.models.generate_content_stream(model=model, contents=STOP_TEXT, config=config))
    assert "".join(c.text or "" for c in chunks) == (CUT_REPLY if cut else UNCUT_REPLY)
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert upstream_stop(upstream, upstream_body(mock)) == ([STOP] if cut else None)


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_gemini_reasoning_replay(genai_client_factory, mock, model, upstream):
    """Reasoning arrives as a thought part with a `thoughtSignature`; the model turn, sent back as
    the SDK returned it, replays it to the upstream."""
    from google.genai import types

    client = genai_client_factory("v1beta")
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=1024, include_thoughts=True))
    first = types.Content(role="user", parts=[types.Part.from_text(text="think first [mock:thinking]")])
    sig = base64.b64decode(MOCK_SIGNATURES[upstream])

    done = client.models.generate_content(model=model, contents=[first], config=config)
    parts = done.candidates[0].content.parts
    assert [(p.text, p.thought_signature) for p in parts if p.thought] == [(THINKING_TEXT, sig)]
    assert done.text == REPLY_PREFIX + "think first [mock:thinking]"

    mock.reset()
    chunks = list(client.models.generate_content_stream(model=model, contents=[first], config=config))
    # Streamed, the signature may come in a later thought part than the text (as Gemini itself
    # does when it streams thoughts): the text and the signatures are checked over the stream.
    thoughts = [p for c in chunks for p in c.candidates[0].content.parts or [] if p.thought]
    assert "".join(p.text or "" for p in thoughts) == THINKING_TEXT
    assert [p.thought_signature for p in thoughts if p.thought_signature] == [sig]

    next_turn = types.Content(role="user", parts=[types.Part.from_text(text="and now?")])
    mock.reset()
    history = [first, done.candidates[0].content, next_turn]
    again = client.models.generate_content(model=model, contents=history, config=config)
    assert again.text == REPLY_PREFIX + "and now?"
    check_replay(mock, upstream)

    # The streamed turn replayed as received: every part of every chunk, in order.
    mock.reset()
    streamed = types.Content(role="model", parts=[p for c in chunks for p in c.candidates[0].content.parts or []])
    again = client.models.generate_content(model=model, contents=[first, streamed, next_turn], config=config)
    assert again.text == REPLY_PREFIX + "and now?"
    check_replay(mock, upstream)


# ------------------------------------------------------------------------------------ tool results
#
# Two parallel calls, then both results sent back the way each SDK's users do; the upstream must
# receive the calls and the results paired in its own protocol (ids, or names for Gemini, whose
# function calls may have no id), and the mock, seeing a tool result last, answers with text.

TOOL_REPLY = "Hello from octo-mock. Tool result: "


def upstream_tool_pairs(protocol: str, body: dict) -> tuple[list, list]:
    """(calls, results) of the upstream request: call keys in order, and the key each result names
    (ids; names for Gemini)."""
    calls, results = [], []
    if protocol == "openai_chat":
        for m in body["messages"]:
            calls += [c["id"] for c in m.get("tool_calls") or []]
            if m["role"] == "tool":
                results.append(m["tool_call_id"])
    elif protocol == "openai_responses":
        for item in body["input"]:
            if item.get("type") == "function_call":
                calls.append(item["call_id"])
            elif item.get("type") == "function_call_output":
                results.append(item["call_id"])
    elif protocol == "anthropic":
        for m in body["messages"]:
            for b in m["content"] if isinstance(m["content"], list) else []:
                if b["type"] == "tool_use":
                    calls.append(b["id"])
                elif b["type"] == "tool_result":
                    results.append(b["tool_use_id"])
    else:
        for c in body["contents"]:
            for p in c["parts"]:
                call = p.get("functionCall") or p.get("function_call")
                resp = p.get("functionResponse") or p.get("function_response")
                if call:
                    calls.append(call["name"])
                if resp:
                    results.append(resp["name"])
    return calls, results


def check_tool_reply(text: str) -> None:
    """The mock echoes the last tool result (Gemini's as its `response` object)."""
    assert text.startswith(TOOL_REPLY) and "result fetch" in text, text


def check_tool_round_trip(mock, upstream: str) -> None:
    calls, results = upstream_tool_pairs(upstream, upstream_body(mock))
    assert len(calls) == 2 and sorted(results) == sorted(calls), (calls, results)


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_openai_chat_tool_round_trip(openai_client, mock, model, upstream):
    first = [{"role": "user", "content": "two calls [mock:tools=2]"}]
    done = openai_client.chat.completions.create(model=model, messages=first, tools=OA_TOOLS)
    message = done.choices[0].message
    assert [c.function.name for c in message.tool_calls] == ["lookup", "fetch"]

    mock.reset()
    history = first + [message.model_dump(exclude_none=True)] + [
        {"role": "tool", "tool_call_id": c.id, "content": f"result {c.function.name}"} for c in message.tool_calls
    ]
    with openai_client.chat.completions.stream(model=model, messages=history, tools=OA_TOOLS) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "stop"
    check_tool_reply(final.choices[0].message.content)
    check_tool_round_trip(mock, upstream)


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_openai_responses_tool_round_trip(openai_client, mock, model, upstream):
    first = [{"role": "user", "content": "two calls [mock:tools=2]"}]
    done = openai_client.responses.create(model=model, input=first, tools=RESP_TOOLS)
    calls = [i for i in done.output if i.type == "function_call"]
    assert [c.name for c in calls] == ["lookup", "fetch"]

    mock.reset()
    history = first + [i.model_dump(exclude_none=True) for i in done.output] + [
        {"type": "function_call_output", "call_id": c.call_id, "output": f"result {c.name}"} for c in calls
    ]
    with openai_client.responses.stream(model=model, input=history, tools=RESP_TOOLS) as stream:
        final = stream.get_final_response()
    assert final.status == "completed"
    check_tool_reply(final.output_text)
    check_tool_round_trip(mock, upstream)


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_anthropic_tool_round_trip_streamed(anthropic_client, mock, model, upstream):
    first = [{"role": "user", "content": "two calls [mock:tools=2]"}]
    with anthropic_client.messages.stream(model=model, max_tokens=64, tools=AN_TOOLS, messages=first) as stream:
        calls = stream.get_final_message()
    uses = [b for b in calls.content if b.type == "tool_use"]

    mock.reset()
    history = first + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in calls.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u.id, "content": f"result {u.name}"} for u in uses]},
    ]
    with anthropic_client.messages.stream(model=model, max_tokens=64, tools=AN_TOOLS, messages=history) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn"
    check_tool_reply(final.content[0].text)
    check_tool_round_trip(mock, upstream)


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_gemini_tool_round_trip(genai_client_factory, mock, model, upstream):
    from google.genai import types

    client = genai_client_factory("v1beta")
    tools = [
        types.Tool(
            function_declarations=[
                types.FunctionDeclaration(name="lookup", parameters={"type": "OBJECT", "properties": {"query": {"type": "STRING"}}}),
                types.FunctionDeclaration(name="fetch", parameters={"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}}),
            ]
        )
    ]
    config = types.GenerateContentConfig(tools=tools, automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    first = types.Content(role="user", parts=[types.Part.from_text(text="two calls [mock:tools=2]")])
    done = client.models.generate_content(model=model, contents=[first], config=config)
    calls = done.function_calls
    assert [c.name for c in calls] == ["lookup", "fetch"]

    mock.reset()
    results = types.Content(
        role="user",
        parts=[
            types.Part(function_response=types.FunctionResponse(id=c.id, name=c.name, response={"output": f"result {c.name}"}))
            for c in calls
        ],
    )
    chunks = list(client.models.generate_content_stream(model=model, contents=[first, done.candidates[0].content, results], config=config))
    check_tool_reply("".join(c.text or "" for c in chunks))
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    check_tool_round_trip(mock, upstream)


# ------------------------------------------------------------------------------------ reasoning + tools
#
# The agent-loop case: reasoning, then parallel calls; the results go back with the assistant turn
# as the SDK returned it, and the upstream must receive its own signed reasoning before the calls.


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_anthropic_reasoning_with_tool_calls(anthropic_client, mock, model, upstream):
    thinking = {"type": "enabled", "budget_tokens": 1024}
    first = [{"role": "user", "content": "think, then call [mock:thinking] [mock:tools=2]"}]
    with anthropic_client.messages.stream(model=model, max_tokens=2048, thinking=thinking, tools=AN_TOOLS, messages=first) as stream:
        msg = stream.get_final_message()
    assert [b.type for b in msg.content] == ["thinking", "tool_use", "tool_use"]
    assert msg.stop_reason == "tool_use"

    mock.reset()
    uses = [b for b in msg.content if b.type == "tool_use"]
    history = first + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u.id, "content": f"result {u.name}"} for u in uses]},
    ]
    reply = anthropic_client.messages.create(model=model, max_tokens=2048, thinking=thinking, tools=AN_TOOLS, messages=history)
    check_tool_reply(reply.content[-1].text)
    check_tool_round_trip(mock, upstream)
    check_replay(mock, upstream)


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_openai_chat_reasoning_with_tool_calls(openai_client, mock, model, upstream):
    first = [{"role": "user", "content": "think, then call [mock:thinking] [mock:tools=2]"}]
    with openai_client.chat.completions.stream(model=model, messages=first, tools=OA_TOOLS, reasoning_effort="low") as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert _chat_reasoning(message) == (THINKING_TEXT, [MOCK_SIGNATURES[upstream]])

    mock.reset()
    history = first + [message.model_dump(exclude_none=True)] + [
        {"role": "tool", "tool_call_id": c.id, "content": f"result {c.function.name}"} for c in message.tool_calls
    ]
    reply = openai_client.chat.completions.create(model=model, messages=history, tools=OA_TOOLS, reasoning_effort="low")
    check_tool_reply(reply.choices[0].message.content)
    check_tool_round_trip(mock, upstream)
    check_replay(mock, upstream)


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_openai_responses_reasoning_with_tool_calls(openai_client, mock, model, upstream):
    first = [{"role": "user", "content": "think, then call [mock:thinking] [mock:tools=2]"}]
    reasoning = {"effort": "low", "summary": "auto"}
    with openai_client.responses.stream(
        model=model, input=first, tools=RESP_TOOLS, reasoning=reasoning, include=["reasoning.encrypted_content"]
    ) as stream:
        final = stream.get_final_response()
    assert [i.type for i in final.output] == ["reasoning", "function_call", "function_call"]

    mock.reset()
    calls = [i for i in final.output if i.type == "function_call"]
    history = first + [i.model_dump(exclude_none=True) for i in final.output] + [
        {"type": "function_call_output", "call_id": c.call_id, "output": f"result {c.name}"} for c in calls
    ]
    reply = openai_client.responses.create(model=model, input=history, tools=RESP_TOOLS, reasoning=reasoning)
    check_tool_reply(reply.output_text)
    check_tool_round_trip(mock, upstream)
    check_replay(mock, upstream)


@pytest.mark.parametrize(("model", "upstream"), PAIRS, ids=IDS)
def test_gemini_reasoning_with_tool_calls(genai_client_factory, mock, model, upstream):
    from google.genai import types

    client = genai_client_factory("v1beta")
    tools = [
        types.Tool(
            function_declarations=[
                types.FunctionDeclaration(name="lookup", parameters={"type": "OBJECT", "properties": {"query": {"type": "STRING"}}}),
                types.FunctionDeclaration(name="fetch", parameters={"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}}),
            ]
        )
    ]
    config = types.GenerateContentConfig(
        tools=tools,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        thinking_config=types.ThinkingConfig(thinking_budget=1024, include_thoughts=True),
    )
    first = types.Content(role="user", parts=[types.Part.from_text(text="think, then call [mock:thinking] [mock:tools=2]")])
    chunks = list(client.models.generate_content_stream(model=model, contents=[first], config=config))
    parts = [p for c in chunks for p in c.candidates[0].content.parts or []]
    calls = [p.function_call for p in parts if p.function_call]
    assert [c.name for c in calls] == ["lookup", "fetch"]

    mock.reset()
    results = types.Content(
        role="user",
        parts=[
            types.Part(function_response=types.FunctionResponse(id=c.id, name=c.name, response={"output": f"result {c.name}"}))
            for c in calls
        ],
    )
    model_turn = types.Content(role="model", parts=parts)
    reply = client.models.generate_content(model=model, contents=[first, model_turn, results], config=config)
    check_tool_reply(reply.text)
    check_tool_round_trip(mock, upstream)
    check_replay(mock, upstream)
