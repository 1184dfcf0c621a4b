// The official `openai` Node SDK through the gateway: Chat Completions and Responses (plain, the
// stream iterators and the stream helpers) on every chat backend (passthrough to its own
// protocol, converted to the three others), and embeddings passed through and converted.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const OpenAI = require("openai");
const h = require("./helpers.cjs");

const client = new OpenAI({ apiKey: h.CLIENT_KEY, baseURL: `${h.GATEWAY}/v1`, maxRetries: 0, timeout: 30_000 });

const TOOLS = [
  { type: "function", function: { name: "lookup", description: "Look something up", parameters: { type: "object", properties: { query: { type: "string" }, n: { type: "integer" } }, required: ["query"] } } },
  { type: "function", function: { name: "fetch_page", parameters: { type: "object", properties: { query: { type: "string" }, n: { type: "integer" } } } } },
];
const RESP_TOOLS = TOOLS.map((t) => ({ type: "function", name: t.function.name, parameters: t.function.parameters }));

test("openai chat.completions.create on every backend", async () => {
  for (const model of h.CHAT_MODELS) {
    await h.mockReset();
    const text = `plain ${model}`;
    const done = await client.chat.completions.create({ model, messages: [{ role: "user", content: text }] });
    assert.equal(done.choices[0].message.content, h.REPLY_PREFIX + text, model);
    assert.equal(done.choices[0].finish_reason, "stop", model);
    assert.ok(done.usage.prompt_tokens > 0 && done.usage.completion_tokens > 0, model);
    await h.checkUpstream(model, { count: 1 });
  }
});

test("openai chat.completions.stream helper with content events and usage on every backend", async () => {
  for (const model of h.CHAT_MODELS) {
    await h.mockReset();
    const text = `stream ${model}`;
    const stream = client.chat.completions.stream({
      model, messages: [{ role: "user", content: text }], stream_options: { include_usage: true },
    });
    let deltas = "";
    stream.on("content", (delta) => { deltas += delta; });
    const done = await stream.finalChatCompletion();
    assert.equal(deltas, h.REPLY_PREFIX + text, model);
    assert.equal(done.choices[0].message.content, h.REPLY_PREFIX + text, model);
    assert.equal(done.choices[0].finish_reason, "stop", model);
    assert.ok(done.usage && done.usage.completion_tokens > 0, `${model}: ${JSON.stringify(done.usage)}`);
    await h.checkUpstream(model, { count: 1 });
  }
});

test("openai chat stream of two parallel tool calls, then the tool results, on every backend", async () => {
  for (const model of h.CHAT_MODELS) {
    await h.mockReset();
    const messages = [{ role: "user", content: "two calls [mock:tools=2]" }];
    const stream = client.chat.completions.stream({ model, messages, tools: TOOLS });
    const done = await stream.finalChatCompletion();
    const calls = done.choices[0].message.tool_calls;
    assert.equal(done.choices[0].finish_reason, "tool_calls", model);
    assert.deepEqual(calls.map((c) => c.function.name), ["lookup", "fetch_page"], model);
    assert.deepEqual(calls.map((c) => JSON.parse(c.function.arguments)), [{ query: "mock", n: 0 }, { query: "mock", n: 1 }], model);
    assert.ok(calls.every((c) => c.type === "function" && c.id), model);
    assert.notEqual(calls[0].id, calls[1].id, model);
    // The results go back; the mock then answers with text.
    messages.push(done.choices[0].message);
    for (const c of calls) messages.push({ role: "tool", tool_call_id: c.id, content: `result of ${c.function.name}` });
    const next = await client.chat.completions.create({ model, messages, tools: TOOLS });
    assert.match(next.choices[0].message.content, /^Hello from octo-mock\. Tool result: .*result of (lookup|fetch_page)/, `${model}: ${JSON.stringify(next.choices[0].message)}`);
    await h.checkUpstream(model, { count: 2 });
  }
});

test("openai responses.create and the responses.stream helper on every backend", async () => {
  for (const model of h.CHAT_MODELS) {
    await h.mockReset();
    const done = await client.responses.create({ model, input: `responses ${model}` });
    assert.equal(done.output_text, h.REPLY_PREFIX + `responses ${model}`, model);
    assert.equal(done.status, "completed", model);
    let deltas = "";
    const stream = client.responses.stream({ model, input: `streamed ${model}` });
    stream.on("response.output_text.delta", (e) => { deltas += e.delta; });
    const final = await stream.finalResponse();
    assert.equal(final.output_text, h.REPLY_PREFIX + `streamed ${model}`, model);
    assert.equal(deltas, final.output_text, model);
    assert.ok(final.usage.output_tokens > 0, model);
    await h.checkUpstream(model, { count: 2 });
  }
});

test("openai responses stream of tool calls on every backend", async () => {
  for (const model of h.CHAT_MODELS) {
    await h.mockReset();
    const stream = client.responses.stream({ model, input: "two calls [mock:tools=2]", tools: RESP_TOOLS });
    const final = await stream.finalResponse();
    const calls = final.output.filter((i) => i.type === "function_call");
    assert.deepEqual(calls.map((c) => c.name), ["lookup", "fetch_page"], model);
    assert.deepEqual(calls.map((c) => JSON.parse(c.arguments)), [{ query: "mock", n: 0 }, { query: "mock", n: 1 }], model);
    await h.checkUpstream(model, { count: 1 });
  }
});

test("openai errors keep their type through conversion", async () => {
  for (const model of h.CHAT_MODELS) {
    await h.mockReset();
    await assert.rejects(
      client.chat.completions.create({ model, messages: [{ role: "user", content: "limit [mock:status=429]" }] }),
      (e) => e instanceof OpenAI.RateLimitError && e.status === 429,
      model,
    );
  }
  await assert.rejects(
    client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] }),
    (e) => e instanceof OpenAI.NotFoundError,
  );
});

test("openai embeddings.create (base64 by default, and float) passed through and converted to Gemini", async () => {
  const texts = ["embed this sentence", "ünïcode too"];
  const want = await h.mockVectors(texts, 6);
  for (const model of ["embed-oa", "embed-gem"]) {
    for (const encoding of [undefined, "float"]) {
      await h.mockReset();
      const params = { model, input: texts, dimensions: 6 };
      if (encoding) params.encoding_format = encoding;
      const resp = await client.embeddings.create(params);
      h.assertVectors(resp.data.map((d) => Array.from(d.embedding)), want);
      assert.deepEqual(resp.data.map((d) => d.index), [0, 1]);
      assert.ok(resp.usage.prompt_tokens > 0, `${model}: ${JSON.stringify(resp.usage)}`);
      await h.checkUpstream(model, { count: 1 });
    }
  }
});

test("openai models.list shows every configured model", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids.sort(), Object.keys(h.MODELS).sort());
});
