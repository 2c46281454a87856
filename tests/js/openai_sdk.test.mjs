// The official `openai` npm SDK, unchanged, against a real `baimo serve`.
//
// Run by tests/e2e/test_real_clients.py, which starts the server and sets:
//   BAIMO_BASE_URL      http://127.0.0.1:PORT/v1
//   BAIMO_CHAT_MODEL    a model that answers text
//   BAIMO_JSON_MODEL    a model asked for JSON (response_format json_schema)
//   BAIMO_TOOL_MODEL    a model asked to call a tool
//   BAIMO_EMBED_MODEL   an embedding model
//   BAIMO_EXPECT_TEXT   (optional) the exact answer of the chat model (a scripted remote model);
//                       unset for a local model, whose words are not asserted, only the shape of the answer.
import assert from "node:assert/strict";
import { test } from "node:test";

import OpenAI from "openai";

const env = process.env;
for (const name of ["BAIMO_BASE_URL", "BAIMO_CHAT_MODEL", "BAIMO_JSON_MODEL", "BAIMO_TOOL_MODEL", "BAIMO_EMBED_MODEL"]) {
  if (!env[name]) throw new Error(`${name} is not set (run this through tests/e2e/test_real_clients.py)`);
}
const client = new OpenAI({ baseURL: env.BAIMO_BASE_URL, apiKey: "unused", maxRetries: 0, timeout: 120_000 });
const expected = env.BAIMO_EXPECT_TEXT;
const user = (content) => [{ role: "user", content }];

const LOOKUP = {
  type: "function",
  function: {
    name: "lookup",
    description: "Look a word up in the dictionary",
    parameters: { type: "object", properties: { q: { type: "string", maxLength: 20 } }, required: ["q"] },
  },
};

const PERSON = {
  type: "json_schema",
  json_schema: {
    name: "person",
    strict: true,
    schema: {
      type: "object",
      properties: {
        name: { type: "string", maxLength: 20 },
        age: { type: "integer", minimum: 0, maximum: 150 },
      },
      required: ["name", "age"],
      additionalProperties: false,
    },
  },
};

test("chat.completions.create", async () => {
  const c = await client.chat.completions.create({
    model: env.BAIMO_CHAT_MODEL, messages: user("Say hello."), max_tokens: 24,
  });
  assert.equal(c.object, "chat.completion");
  assert.equal(c.model, env.BAIMO_CHAT_MODEL);
  const choice = c.choices[0];
  assert.equal(choice.message.role, "assistant");
  assert.equal(typeof choice.message.content, "string");
  assert.ok(["stop", "length"].includes(choice.finish_reason), choice.finish_reason);
  assert.ok(c.usage.prompt_tokens > 0 && c.usage.completion_tokens > 0);
  assert.equal(c.usage.total_tokens, c.usage.prompt_tokens + c.usage.completion_tokens);
  if (expected) assert.equal(choice.message.content, expected);
});

test("streaming with stream_options.include_usage", async () => {
  const stream = await client.chat.completions.create({
    model: env.BAIMO_CHAT_MODEL, messages: user("Say hello."), max_tokens: 24, stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.ok(chunks.length >= 3, `only ${chunks.length} chunks`);
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.ok(last.usage.completion_tokens > 0);
  for (const chunk of chunks.slice(0, -1)) {
    assert.equal(chunk.object, "chat.completion.chunk");
    assert.equal(chunk.choices.length, 1);
    assert.ok(!chunk.usage, "only the last chunk carries usage");
  }
  const text = chunks.slice(0, -1).map((ch) => ch.choices[0].delta.content ?? "").join("");
  const finishes = chunks.slice(0, -1).map((ch) => ch.choices[0].finish_reason).filter(Boolean);
  assert.equal(finishes.length, 1);
  if (expected) assert.equal(text, expected);
  else assert.equal(typeof text, "string");
});

test("the SDK's stream helper collects the final completion", async () => {
  const runner = client.chat.completions.stream({
    model: env.BAIMO_CHAT_MODEL, messages: user("Say hello."), max_tokens: 24,
    stream_options: { include_usage: true },
  });
  let deltas = "";
  runner.on("content", (delta) => { deltas += delta; });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.content, deltas);
  assert.ok(final.usage.completion_tokens > 0);
  if (expected) assert.equal(deltas, expected);
});

test("a tool call and the tool result sent back", async () => {
  const messages = user("Look up 'gateway'.");
  const first = await client.chat.completions.create({
    model: env.BAIMO_TOOL_MODEL, messages, tools: [LOOKUP],
    tool_choice: { type: "function", function: { name: "lookup" } },
  });
  const choice = first.choices[0];
  assert.equal(choice.finish_reason, "tool_calls");
  assert.equal(choice.message.tool_calls.length >= 1, true);
  const call = choice.message.tool_calls[0];
  assert.equal(call.type, "function");
  assert.equal(call.function.name, "lookup");
  assert.ok(call.id);
  const args = JSON.parse(call.function.arguments);
  assert.equal(typeof args.q, "string");
  assert.ok(args.q.length <= 20);

  const second = await client.chat.completions.create({
    model: env.BAIMO_TOOL_MODEL, tools: [LOOKUP], tool_choice: "none", max_tokens: 24,
    messages: [...messages, choice.message,
      { role: "tool", tool_call_id: call.id, content: "a place where traffic enters" }],
  });
  const answer = second.choices[0];
  assert.equal(answer.message.role, "assistant");
  assert.equal(typeof answer.message.content, "string");
  assert.ok(["stop", "length"].includes(answer.finish_reason), answer.finish_reason);
  if (expected) assert.equal(answer.message.content, "Tool said: a place where traffic enters");
});

test("response_format json_schema", async () => {
  const c = await client.chat.completions.create({
    model: env.BAIMO_JSON_MODEL, messages: user("Invent a person, as JSON."), response_format: PERSON,
    max_tokens: 80,
  });
  assert.equal(c.choices[0].finish_reason, "stop");
  const person = JSON.parse(c.choices[0].message.content);
  assert.deepEqual(Object.keys(person).sort(), ["age", "name"]);
  assert.equal(typeof person.name, "string");
  assert.ok(person.name.length <= 20);
  assert.ok(Number.isInteger(person.age) && person.age >= 0 && person.age <= 150);
});

test("embeddings (the SDK asks for base64 and hands back numbers)", async () => {
  const r = await client.embeddings.create({ model: env.BAIMO_EMBED_MODEL, input: ["hello world", "bonjour"] });
  assert.equal(r.object, "list");
  assert.equal(r.data.length, 2);
  for (const [i, item] of r.data.entries()) {
    assert.equal(item.index, i);
    assert.ok(Array.isArray(item.embedding) && item.embedding.length > 100);
    assert.ok(item.embedding.every((x) => typeof x === "number" && Number.isFinite(x)));
    const norm = Math.sqrt(item.embedding.reduce((s, x) => s + x * x, 0));
    assert.ok(Math.abs(norm - 1) < 1e-3, `norm ${norm}`);
  }
  assert.ok(r.usage.prompt_tokens > 0);
});
