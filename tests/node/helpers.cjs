// What every Node SDK test shares: the gateway and mock URLs (from the environment set by
// tests/sdk/test_node_sdks.py), the mock's request log, and the checks on what the upstream got.
"use strict";

const assert = require("node:assert/strict");

const GATEWAY = process.env.OCTO_GATEWAY_URL;
const MOCK = process.env.OCTO_MOCK_URL;
if (!GATEWAY || !MOCK) {
  throw new Error("OCTO_GATEWAY_URL and OCTO_MOCK_URL must be set (run through tests/sdk/test_node_sdks.py)");
}

/** The key every client sends; it must never reach the upstream. */
const CLIENT_KEY = "sk-node-client-secret";
/** How the mock answers: this prefix, then the last user text (first 64 characters). */
const REPLY_PREFIX = "Hello from octo-mock. You said: ";

/** Exposed model → [backend protocol, upstream model, upstream auth header, its value]. */
const MODELS = {
  "chat-model": ["openai_chat", "mock-gpt", "authorization", "Bearer sk-upstream-chat"],
  "responses-model": ["openai_responses", "mock-resp", "authorization", "Bearer sk-upstream-resp"],
  "claude-model": ["anthropic", "mock-claude", "x-api-key", "sk-upstream-anth"],
  "gemini-model": ["gemini", "mock-gemini", "x-goog-api-key", "sk-upstream-gem"],
  "embed-oa": ["openai_embeddings", "mock-embed", "authorization", "Bearer sk-upstream-chat"],
  "embed-gem": ["gemini_embeddings", "mock-gemini-embed", "x-goog-api-key", "sk-upstream-gem"],
};

/** The path a request of each upstream protocol must arrive on. */
function upstreamPath(protocol, model) {
  switch (protocol) {
    case "openai_chat": return /^\/v1\/chat\/completions$/;
    case "openai_responses": return /^\/v1\/responses$/;
    case "anthropic": return /^\/v1\/messages$/;
    case "gemini": return new RegExp(`^/v1beta/models/${model}:(generateContent|streamGenerateContent\\?alt=sse)$`);
    case "openai_embeddings": return /^\/v1\/embeddings$/;
    case "gemini_embeddings": return new RegExp(`^/v1beta/models/${model}:(embedContent|batchEmbedContents)$`);
    default: throw new Error(`unknown protocol ${protocol}`);
  }
}

async function mockReset() {
  const r = await fetch(`${MOCK}/_mock/reset`, { method: "POST" });
  assert.equal(r.status, 200);
}

async function mockRequests() {
  const r = await fetch(`${MOCK}/_mock/requests?body=1`);
  assert.equal(r.status, 200);
  return r.json();
}

/** The mock's vectors for `texts` (asked directly, floats): what every path must give. */
async function mockVectors(texts, dimensions) {
  const r = await fetch(`${MOCK}/v1/embeddings`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "direct", input: texts, dimensions }),
  });
  assert.equal(r.status, 200);
  return (await r.json()).data.map((d) => d.embedding);
}

/**
 * Checks every request the mock got since the last reset (the direct embeddings calls of
 * `mockVectors` aside): on the upstream's path for `exposed`, with the backend's key and model,
 * never the client's key. Returns them (bodies parsed).
 */
async function checkUpstream(exposed, { count } = {}) {
  const [protocol, upstream, header, value] = MODELS[exposed];
  const all = (await mockRequests()).filter((r) => !(r.body && r.body.model === "direct"));
  assert.ok(all.length > 0, `no upstream request for ${exposed}`);
  if (count !== undefined) assert.equal(all.length, count, JSON.stringify(all.map((r) => r.path_and_query)));
  for (const r of all) {
    assert.match(r.path_and_query, upstreamPath(protocol, upstream));
    assert.equal(r.headers[header], value, `${header} upstream: ${JSON.stringify(r.headers)}`);
    assert.ok(!JSON.stringify(r).includes(CLIENT_KEY), "the client's key went upstream");
    if (["openai_chat", "openai_responses", "anthropic", "openai_embeddings"].includes(protocol)) {
      assert.equal(r.body.model, upstream);
    }
  }
  return all;
}

function assertVectors(got, want) {
  assert.equal(got.length, want.length);
  got.forEach((g, i) => {
    assert.equal(g.length, want[i].length);
    g.forEach((x, j) => assert.ok(Math.abs(x - want[i][j]) < 1e-6, `vector ${i}[${j}]: ${x} != ${want[i][j]}`));
  });
}

/** The chat models, each with the protocol of its backend (for passthrough and conversions). */
const CHAT_MODELS = ["chat-model", "responses-model", "claude-model", "gemini-model"];

module.exports = {
  GATEWAY, MOCK, CLIENT_KEY, REPLY_PREFIX, MODELS, CHAT_MODELS,
  mockReset, mockRequests, mockVectors, checkUpstream, assertVectors,
};
