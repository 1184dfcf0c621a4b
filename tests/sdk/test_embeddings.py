"""Embeddings through the official SDKs: openai `client.embeddings.create` and google-genai
`models.embed_content`, each passed through to a backend of its own provider and converted to the
other (docs/conversion.md, "Embeddings").

The mock's vector for a text depends on the text and the dimension only, so every client must get
exactly the vectors the mock gives for its texts when asked directly, whichever path the request
took; the upstream request is checked in the upstream's own protocol.
"""

from __future__ import annotations

import json
import math

import pytest

from support import BACKENDS, EMBED_MODELS, assert_upstream_request, http

TEXTS = ["embed this sentence, please", "and this ünïcode one"]
DIMS = 6


def mock_vectors(mock, texts: list[str], dims: int) -> list[list[float]]:
    """What the mock answers for `texts`, asked directly (OpenAI shape, floats)."""
    status, _, body = http("POST", f"{mock.url}/v1/embeddings", {"model": "direct", "input": texts, "dimensions": dims})
    assert status == 200, body
    return [d["embedding"] for d in json.loads(body)["data"]]


def assert_vectors(got, want) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert len(g) == len(w)
        assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(g, w)), (g, w)


def estimate(texts: list[str]) -> int:
    """The gateway's usage estimate for a Gemini upstream: characters / 4, rounded up, per text."""
    return sum(max(1, -(-len(t) // 4)) for t in texts)


def mock_tokens(texts: list[str]) -> int:
    """The mock's OpenAI usage: UTF-8 bytes / 4 + 1 per text."""
    return sum(len(t.encode()) // 4 + 1 for t in texts)


@pytest.mark.parametrize("encoding", [None, "float", "base64"])
def test_openai_embeddings_passthrough(openai_client, mock, sent, encoding):
    """The SDK's default is `encoding_format: "base64"` (it decodes the vectors itself)."""
    extra = {} if encoding is None else {"encoding_format": encoding}
    resp = openai_client.embeddings.create(model="embed-oa", input=TEXTS, dimensions=DIMS, **extra)
    want = mock_vectors(mock, TEXTS, DIMS)
    if encoding == "base64":
        import base64
        import struct

        got = [list(struct.unpack(f"<{DIMS}f", base64.b64decode(d.embedding))) for d in resp.data]
    else:
        got = [d.embedding for d in resp.data]
    assert_vectors(got, want)
    assert resp.usage.prompt_tokens == mock_tokens(TEXTS)
    record = mock.requests()[0]
    assert_upstream_request(
        record,
        backend="oa-chat",
        path="/v1/embeddings",
        sent=sent.only(),
        exposed_model="embed-oa",
        upstream_model=EMBED_MODELS["embed-oa"][1],
    )


def test_openai_embeddings_to_gemini_upstream(openai_client, mock):
    resp = openai_client.embeddings.create(model="embed-gem", input=TEXTS, dimensions=DIMS)
    assert_vectors([d.embedding for d in resp.data], mock_vectors(mock, TEXTS, DIMS))
    assert [d.index for d in resp.data] == [0, 1]
    assert resp.usage.prompt_tokens == estimate(TEXTS)
    (record,) = [r for r in mock.requests(body=True) if "direct" not in json.dumps(r.get("body"))]
    upstream = EMBED_MODELS["embed-gem"][1]
    assert_upstream_request(record, backend="gem", path=f"/v1beta/models/{upstream}:batchEmbedContents")
    assert record["body"] == {
        "requests": [
            {"model": f"models/{upstream}", "content": {"parts": [{"text": t}]}, "outputDimensionality": DIMS}
            for t in TEXTS
        ]
    }


def test_openai_embeddings_token_ids_refused_toward_gemini(openai_client, mock):
    import openai

    with pytest.raises(openai.BadRequestError) as err:
        openai_client.embeddings.create(model="embed-gem", input=[[1, 2, 3]])
    assert err.value.body["param"] == "input"
    assert mock.requests() == []


@pytest.mark.parametrize("api_version", ["v1", "v1beta"])
@pytest.mark.parametrize("model", ["embed-gem", "embed-oa"])
def test_genai_embed_content(genai_client_factory, mock, model, api_version):
    from google.genai import types

    client = genai_client_factory(api_version)
    resp = client.models.embed_content(
        model=model,
        contents=TEXTS,
        config=types.EmbedContentConfig(output_dimensionality=DIMS, task_type="RETRIEVAL_DOCUMENT"),
    )
    assert_vectors([e.values for e in resp.embeddings], mock_vectors(mock, TEXTS, DIMS))
    backend, upstream = EMBED_MODELS[model]
    (record,) = [r for r in mock.requests(body=True) if "direct" not in json.dumps(r.get("body"))]
    if BACKENDS[backend].protocol == "gemini":
        # Passed through (on the backend's Gemini path, `/v1beta/…` by default), the batch's
        # models pointed at the upstream model.
        assert_upstream_request(record, backend=backend, path=f"/v1beta/models/{upstream}:batchEmbedContents")
        assert [r["model"] for r in record["body"]["requests"]] == [f"models/{upstream}"] * len(TEXTS)
        assert record["body"]["requests"][0]["taskType"] == "RETRIEVAL_DOCUMENT"
    else:
        assert_upstream_request(record, backend=backend, path="/v1/embeddings")
        assert record["body"] == {"model": upstream, "input": TEXTS, "encoding_format": "float", "dimensions": DIMS}


def test_embedding_models_are_listed(openai_client, genai_client_factory):
    ids = {m.id for m in openai_client.models.list()}
    assert set(EMBED_MODELS) <= ids
    names = {m.name for m in genai_client_factory("v1beta").models.list()}
    assert {f"models/{m}" for m in EMBED_MODELS} <= names
