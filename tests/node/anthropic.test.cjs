// The official `@anthropic-ai/sdk` Node SDK through the gateway: Messages (plain and the
// `messages.stream` helper, text, tool use, thinking with its signature) on every chat backend:
// passthrough to Anthropic, converted to the three others.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const Anthropic = require("@anthropic-ai/sdk");
const h = require("./helpers.cjs");

const client = new Anthropic({ apiKey: h.CLIENT_KEY, baseURL: h.GATEWAY, maxRetries: 0, timeout: 30_000 });

const TOOLS = [
  { name: "lookup", description: "Look something up", input_schema: { type: "object", properties: { query: { type: "string" }, n: { type: "integer" } }, required: ["query"] } },
  { name: "fetch_page", input_schema: { type: "object", properties: { query: { type: "string" }, n: { type: "integer" } } } },
];

test("anthropic messages.create on every backend", async () => {
  for (const model of h.CHAT_MODELS) {
    await h.mockReset();
    const text = `plain ${model}`;
    const msg = await client.messages.create({ model, max_tokens: 256, messages: [{ role: "user", content: text }] });
    assert.equal(msg.type, "message", model);
    assert.deepEqual(msg.content.map((b) => b.type), ["text"], model);
    assert.equal(msg.content[0].text, h.REPLY_PREFIX + text, model);
    assert.equal(msg.stop_reason, "end_turn", model);
    assert.ok(msg.usage.input_tokens > 0 && msg.usage.output_tokens > 0, model);
    await h.checkUpstream(model, { count: 1 });
  }
});

test("anthropic messages.stream helper with text events on every backend", async () => {
  for (const model of h.CHAT_MODELS) {
    await h.mockReset();
    const text = `stream ${model}`;
    const stream = client.messages.stream({ model, max_tokens: 256, messages: [{ role: "user", content: text }] });
    let deltas = "";
    stream.on("text", (delta) => { deltas += delta; });
    const msg = await stream.finalMessage();
    assert.equal(deltas, h.REPLY_PREFIX + text, model);
    assert.equal(msg.content[0].text, h.REPLY_PREFIX + text, model);
    assert.equal(msg.stop_reason, "end_turn", model);
    assert.ok(msg.usage.output_tokens > 0, model);
    await h.checkUpstream(model, { count: 1 });
  }
});

test("anthropic stream of two tool uses, then the tool results, on every backend", async () => {
  for (const model of h.CHAT_MODELS) {
    await h.mockReset();
    const messages = [{ role: "user", content: "two calls [mock:tools=2]" }];
    const stream = client.messages.stream({ model, max_tokens: 256, tools: TOOLS, messages });
    const inputs = [];
    stream.on("inputJson", (_delta, snapshot) => { inputs.push(snapshot); });
    const msg = await stream.finalMessage();
    const uses = msg.content.filter((b) => b.type === "tool_use");
    assert.equal(msg.stop_reason, "tool_use", model);
    assert.deepEqual(uses.map((u) => u.name), ["lookup", "fetch_page"], model);
    assert.deepEqual(uses.map((u) => u.input), [{ query: "mock", n: 0 }, { query: "mock", n: 1 }], model);
    assert.ok(uses.every((u) => /^[a-zA-Z0-9_-]+$/.test(u.id)), `${model}: ${uses.map((u) => u.id)}`);
    assert.ok(inputs.length > 0, `${model}: no input_json_delta`);
    messages.push({ role: "assistant", content: msg.content });
    messages.push({ role: "user", content: uses.map((u) => ({ type: "tool_result", tool_use_id: u.id, content: `result of ${u.name}` })) });
    const next = await client.messages.create({ model, max_tokens: 256, tools: TOOLS, messages });
    assert.match(next.content[0].text, /^Hello from octo-mock\. Tool result: .*result of (lookup|fetch_page)/, `${model}: ${JSON.stringify(next.content)}`);
    await h.checkUpstream(model, { count: 2 });
  }
});

test("anthropic thinking block with its signature, replayed on the next turn, on every backend", async () => {
  for (const model of h.CHAT_MODELS) {
    await h.mockReset();
    const messages = [{ role: "user", content: "think first [mock:thinking]" }];
    const params = { model, max_tokens: 4096, thinking: { type: "enabled", budget_tokens: 1024 }, messages };
    const msg = await client.messages.stream(params).finalMessage();
    const [thinking, text] = msg.content;
    assert.equal(thinking.type, "thinking", `${model}: ${JSON.stringify(msg.content)}`);
    assert.equal(thinking.thinking, "The mock thinks before it answers.", model);
    assert.ok(thinking.signature, `${model}: no signature`);
    assert.equal(text.text, h.REPLY_PREFIX + "think first [mock:thinking]", model);
    messages.push({ role: "assistant", content: msg.content });
    messages.push({ role: "user", content: "and again" });
    const next = await client.messages.create({ ...params, messages });
    assert.equal(next.content.at(-1).text, h.REPLY_PREFIX + "and again", model);
    await h.checkUpstream(model, { count: 2 });
  }
});

test("anthropic errors keep their type through conversion", async () => {
  for (const model of h.CHAT_MODELS) {
    await h.mockReset();
    await assert.rejects(
      client.messages.create({ model, max_tokens: 64, messages: [{ role: "user", content: "limit [mock:status=429]" }] }),
      (e) => e instanceof Anthropic.RateLimitError && e.status === 429,
      model,
    );
  }
});

test("anthropic messages.countTokens passed through or estimated, and models.list", async () => {
  for (const model of h.CHAT_MODELS) {
    await h.mockReset();
    const resp = await client.messages.countTokens({ model, messages: [{ role: "user", content: "count these tokens please" }] });
    assert.ok(resp.input_tokens > 0, `${model}: ${JSON.stringify(resp)}`);
    const upstream = (await h.mockRequests()).map((r) => r.path_and_query);
    // Only a target speaking Anthropic answers itself; the others are estimated by the gateway.
    assert.deepEqual(upstream, model === "claude-model" ? ["/v1/messages/count_tokens"] : [], model);
  }
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids.sort(), Object.keys(h.MODELS).sort());
});
