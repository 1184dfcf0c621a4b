// The official `@google/genai` Node SDK through the gateway: generateContent, the
// generateContentStream iterator (SSE), function calls and countTokens on every chat backend
// (passthrough to Gemini, converted to the three others), and embedContent passed through and
// converted to OpenAI embeddings; API versions v1beta and v1.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { GoogleGenAI } = require("@google/genai");
const h = require("./helpers.cjs");

function client(apiVersion) {
  return new GoogleGenAI({ apiKey: h.CLIENT_KEY, httpOptions: { baseUrl: h.GATEWAY, apiVersion, timeout: 30_000 } });
}

const TOOLS = [{
  functionDeclarations: [
    { name: "lookup", description: "Look something up", parameters: { type: "object", properties: { query: { type: "string" }, n: { type: "integer" } }, required: ["query"] } },
    { name: "fetch_page", parameters: { type: "object", properties: { query: { type: "string" }, n: { type: "integer" } } } },
  ],
}];

test("genai generateContent on every backend, v1beta and v1", async () => {
  for (const apiVersion of ["v1beta", "v1"]) {
    const ai = client(apiVersion);
    for (const model of h.CHAT_MODELS) {
      await h.mockReset();
      const text = `plain ${model}`;
      const resp = await ai.models.generateContent({ model, contents: text });
      assert.equal(resp.text, h.REPLY_PREFIX + text, `${apiVersion} ${model}`);
      assert.equal(resp.candidates[0].finishReason, "STOP", `${apiVersion} ${model}`);
      assert.ok(resp.usageMetadata.promptTokenCount > 0, `${apiVersion} ${model}`);
      await h.checkUpstream(model, { count: 1 });
    }
  }
});

test("genai generateContentStream on every backend", async () => {
  const ai = client("v1beta");
  for (const model of h.CHAT_MODELS) {
    await h.mockReset();
    const text = `stream ${model}`;
    let all = "";
    let last;
    for await (const chunk of await ai.models.generateContentStream({ model, contents: text })) {
      all += chunk.text ?? "";
      last = chunk;
    }
    assert.equal(all, h.REPLY_PREFIX + text, model);
    assert.equal(last.candidates[0].finishReason, "STOP", model);
    assert.ok(last.usageMetadata && last.usageMetadata.candidatesTokenCount > 0, `${model}: ${JSON.stringify(last.usageMetadata)}`);
    await h.checkUpstream(model, { count: 1 });
  }
});

test("genai streamed function calls, then the function responses, on every backend", async () => {
  const ai = client("v1beta");
  for (const model of h.CHAT_MODELS) {
    await h.mockReset();
    const contents = [{ role: "user", parts: [{ text: "two calls [mock:tools=2]" }] }];
    const calls = [];
    const parts = [];
    for await (const chunk of await ai.models.generateContentStream({ model, contents, config: { tools: TOOLS } })) {
      for (const part of chunk.candidates?.[0]?.content?.parts ?? []) {
        parts.push(part);
        if (part.functionCall) calls.push(part.functionCall);
      }
    }
    assert.deepEqual(calls.map((c) => c.name), ["lookup", "fetch_page"], model);
    assert.deepEqual(calls.map((c) => c.args), [{ query: "mock", n: 0 }, { query: "mock", n: 1 }], model);
    contents.push({ role: "model", parts: parts.filter((p) => p.functionCall) });
    contents.push({
      role: "user",
      parts: calls.map((c) => ({ functionResponse: { id: c.id, name: c.name, response: { output: `result of ${c.name}` } } })),
    });
    const next = await ai.models.generateContent({ model, contents, config: { tools: TOOLS } });
    assert.match(next.text, /^Hello from octo-mock\. Tool result: .*result of (lookup|fetch_page)/, `${model}: ${next.text}`);
    await h.checkUpstream(model, { count: 2 });
  }
});

test("genai countTokens on every backend", async () => {
  const ai = client("v1beta");
  for (const model of h.CHAT_MODELS) {
    await h.mockReset();
    const resp = await ai.models.countTokens({ model, contents: "count these tokens please" });
    assert.ok(resp.totalTokens > 0, `${model}: ${JSON.stringify(resp)}`);
  }
});

test("genai embedContent passed through and converted to OpenAI embeddings, v1beta and v1", async () => {
  const texts = ["embed this sentence", "ünïcode too"];
  const want = await h.mockVectors(texts, 6);
  for (const apiVersion of ["v1beta", "v1"]) {
    const ai = client(apiVersion);
    for (const model of ["embed-gem", "embed-oa"]) {
      await h.mockReset();
      const resp = await ai.models.embedContent({ model, contents: texts, config: { outputDimensionality: 6 } });
      h.assertVectors(resp.embeddings.map((e) => e.values), want);
      await h.checkUpstream(model, { count: 1 });
    }
  }
});

test("genai models.list shows every configured model", async () => {
  const names = [];
  for await (const m of await client("v1beta").models.list()) names.push(m.name);
  assert.deepEqual(names.sort(), Object.keys(h.MODELS).map((m) => `models/${m}`).sort());
});
