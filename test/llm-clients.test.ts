/**
 * The model clients on the real provider SDKs against loopback fakes of the Gemini and OpenAI wire
 * formats, plus the price table and the environment handling of the factory.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createModelClient, ModelError, parseRetryAfter, type ModelClient } from '../activities/llm/client';
import { GeminiModelClient } from '../activities/llm/gemini';
import { OpenAICompatibleModelClient } from '../activities/llm/openai';
import { costUsd, DEFAULT_PRICES, InvalidPriceTableError, loadPriceTable } from '../activities/llm/prices';
import { isRetryableModelError, type ModelMessage, type ModelRequest, type ToolDeclaration } from '../activities/llm/types';
import { startFakeGemini, type FakeGemini } from './support/fake-gemini';
import { startFakeOpenAI, type FakeOpenAI } from './support/fake-openai';

const TOOLS: ToolDeclaration[] = [
  {
    name: 'read_file',
    description: 'Read a file of the working copy.',
    parameters: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] },
  },
  {
    name: 'run',
    description: 'Run a shell command in the sandbox.',
    parameters: { type: 'object', properties: { command: { type: 'string' } }, required: ['command'] },
  },
];

function request(model: string, messages: ModelMessage[], extra: Partial<ModelRequest> = {}): ModelRequest {
  return { model, system: 'You are a careful coding agent.', messages, tools: TOOLS, ...extra };
}

/** A conversation in which the model already called two tools and got their results. */
const CONVERSATION: ModelMessage[] = [
  { role: 'user', text: 'Fix the failing test.' },
  {
    role: 'assistant',
    text: 'Let me look first.',
    tool_calls: [
      { id: 'c-1', name: 'read_file', args: { path: 'src/a.txt' }, thought_signature: 'c2lnLTE=' },
      { id: 'c-2', name: 'run', args: { command: 'npm test' } },
    ],
  },
  {
    role: 'tool',
    results: [
      { id: 'c-1', name: 'read_file', output: 'a\n' },
      { id: 'c-2', name: 'run', output: 'exit 1: expected b' },
    ],
  },
];

async function modelErrorOf(promise: Promise<unknown>): Promise<ModelError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ModelError, `expected a ModelError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to fail');
}

/** A loopback URL nothing listens on. */
async function closedPortUrl(): Promise<string> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

describe('GeminiModelClient against a fake Gemini API', () => {
  let fake: FakeGemini;
  let client: ModelClient;

  before(async () => {
    fake = await startFakeGemini();
    client = new GeminiModelClient({ apiKey: fake.apiKey, baseUrl: fake.url });
  });
  after(() => fake.close());

  it('returns the text and the usage, thinking tokens counted as output', async () => {
    fake.script({ text: 'All good.', usage: { prompt: 100, output: 20, cached: 40, thoughts: 7 } });
    const res = await client.generate(request('gemini-2.5-flash', [{ role: 'user', text: 'hi' }], { max_output_tokens: 512, temperature: 0.2 }));
    assert.equal(res.text, 'All good.');
    assert.deepEqual(res.tool_calls, []);
    assert.deepEqual(res.usage, { prompt_tokens: 100, output_tokens: 27, cached_tokens: 40 });
    assert.equal(res.finish_reason, 'STOP');
    assert.equal(res.model, 'gemini-2.5-flash');
  });

  it('sends the system instruction, the function declarations and the generation config on the wire', async () => {
    fake.script({ text: 'ok' });
    await client.generate(request('gemini-2.5-flash', [{ role: 'user', text: 'hi' }], { max_output_tokens: 512, temperature: 0.2 }));
    const sent = fake.requests.at(-1)!;
    assert.equal(sent.method, 'POST');
    assert.equal(sent.path, '/v1beta/models/gemini-2.5-flash:generateContent');
    assert.equal(sent.headers['x-goog-api-key'], fake.apiKey);
    assert.deepEqual(sent.body.systemInstruction.parts, [{ text: 'You are a careful coding agent.' }]);
    assert.deepEqual(sent.body.tools, [
      {
        functionDeclarations: TOOLS.map((t) => ({ name: t.name, description: t.description, parametersJsonSchema: t.parameters })),
      },
    ]);
    assert.deepEqual(sent.body.generationConfig, { maxOutputTokens: 512, temperature: 0.2 });
    assert.deepEqual(sent.body.contents, [{ role: 'user', parts: [{ text: 'hi' }] }]);
    assert.equal(JSON.stringify(sent.body).includes('automaticFunctionCalling'), false, 'SDK-side settings must not reach the wire');
  });

  it('reads back two function calls with parsed args, keeping server ids and generating missing ones', async () => {
    fake.script({
      calls: [
        { name: 'read_file', args: { path: 'src/a.txt' }, thoughtSignature: 'c2lnLTE=' },
        { name: 'run', args: { command: 'npm test' }, id: 'srv-7' },
      ],
    });
    const res = await client.generate(request('gemini-2.5-flash', [{ role: 'user', text: 'go' }]));
    assert.equal(res.text, '');
    assert.deepEqual(res.tool_calls, [
      { id: 'call_1', name: 'read_file', args: { path: 'src/a.txt' }, thought_signature: 'c2lnLTE=' },
      { id: 'srv-7', name: 'run', args: { command: 'npm test' } },
    ]);
  });

  it('sends earlier tool calls as model functionCall parts and tool results as user functionResponse parts', async () => {
    fake.script((body) => ({ text: `saw ${body.contents.length} turns` }));
    const res = await client.generate(request('gemini-2.5-flash', CONVERSATION));
    assert.equal(res.text, 'saw 3 turns');
    assert.deepEqual(fake.requests.at(-1)!.body.contents, [
      { role: 'user', parts: [{ text: 'Fix the failing test.' }] },
      {
        role: 'model',
        parts: [
          { text: 'Let me look first.' },
          { functionCall: { id: 'c-1', name: 'read_file', args: { path: 'src/a.txt' } }, thoughtSignature: 'c2lnLTE=' },
          { functionCall: { id: 'c-2', name: 'run', args: { command: 'npm test' } } },
        ],
      },
      {
        role: 'user',
        parts: [
          { functionResponse: { id: 'c-1', name: 'read_file', response: { output: 'a\n' } } },
          { functionResponse: { id: 'c-2', name: 'run', response: { output: 'exit 1: expected b' } } },
        ],
      },
    ]);
  });

  it('turns a 429 into a retryable rate_limited error carrying the RetryInfo delay, without retrying itself', async () => {
    const before = fake.requests.length;
    fake.script({ status: 429, retryAfter: 7 });
    const err = await modelErrorOf(client.generate(request('gemini-2.5-flash', [{ role: 'user', text: 'hi' }])));
    assert.equal(err.kind, 'rate_limited');
    assert.equal(err.retryable, true);
    assert.equal(err.status, 429);
    assert.equal(err.retryAfterMs, 7000);
    assert.match(err.message, /RESOURCE_EXHAUSTED/);
    assert.equal(fake.requests.length, before + 1, 'the SDK must not retry on its own');
  });

  it('turns a 500 into a retryable unavailable error, without retrying itself', async () => {
    const before = fake.requests.length;
    fake.script({ status: 500 });
    const err = await modelErrorOf(client.generate(request('gemini-2.5-flash', [{ role: 'user', text: 'hi' }])));
    assert.equal(err.kind, 'unavailable');
    assert.equal(err.retryable, true);
    assert.equal(err.status, 500);
    assert.equal(fake.requests.length, before + 1);
  });

  it('reports a wrong API key (400 API_KEY_INVALID) as auth, not retryable', async () => {
    const wrong = new GeminiModelClient({ apiKey: 'not-the-key', baseUrl: fake.url });
    const err = await modelErrorOf(wrong.generate(request('gemini-2.5-flash', [{ role: 'user', text: 'hi' }])));
    assert.equal(err.kind, 'auth');
    assert.equal(err.retryable, false);
    assert.equal(err.status, 400);
    assert.match(err.message, /API key not valid/);
  });

  it('reports an unknown model as not_found, not retryable', async () => {
    const err = await modelErrorOf(client.generate(request('gemini-0-nonexistent', [{ role: 'user', text: 'hi' }])));
    assert.equal(err.kind, 'not_found');
    assert.equal(err.retryable, false);
    assert.equal(err.status, 404);
  });

  it('reports a prompt or a reply withheld by the safety filter as blocked', async () => {
    fake.script([{ blocked: 'prompt' }, { blocked: 'response' }]);
    const onPrompt = await modelErrorOf(client.generate(request('gemini-2.5-flash', [{ role: 'user', text: 'hi' }])));
    assert.equal(onPrompt.kind, 'blocked');
    assert.match(onPrompt.message, /prompt blocked \(SAFETY\)/);
    const onReply = await modelErrorOf(client.generate(request('gemini-2.5-flash', [{ role: 'user', text: 'hi' }])));
    assert.equal(onReply.kind, 'blocked');
    assert.equal(onReply.retryable, false);
  });

  it('answers an under-scripted test with a loud 500', async () => {
    assert.equal(fake.pending(), 0);
    const err = await modelErrorOf(client.generate(request('gemini-2.5-flash', [{ role: 'user', text: 'hi' }])));
    assert.match(err.message, /no scripted turn left/);
  });

  it('rejects with an AbortError when the signal aborts mid-call', async () => {
    fake.script({ text: 'too late', delayMs: 5000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(client.generate(request('gemini-2.5-flash', [{ role: 'user', text: 'hi' }]), controller.signal), { name: 'AbortError' });
  });

  it('reports a server that cannot be reached as unavailable', async () => {
    const offline = new GeminiModelClient({ apiKey: 'k', baseUrl: await closedPortUrl() });
    const err = await modelErrorOf(offline.generate(request('gemini-2.5-flash', [{ role: 'user', text: 'hi' }])));
    assert.equal(err.kind, 'unavailable');
    assert.equal(err.status, undefined);
  });
});

describe('OpenAICompatibleModelClient against a fake Chat Completions API', () => {
  let fake: FakeOpenAI;
  let client: ModelClient;

  before(async () => {
    fake = await startFakeOpenAI();
    client = new OpenAICompatibleModelClient({ apiKey: fake.apiKey, baseURL: `${fake.url}/v1` });
  });
  after(() => fake.close());

  it('returns the text and the usage, cached tokens from prompt_tokens_details', async () => {
    fake.script({ text: 'All good.', usage: { prompt: 100, output: 20, cached: 64 } });
    const res = await client.generate(request('gpt-4.1-mini', [{ role: 'user', text: 'hi' }], { max_output_tokens: 512, temperature: 0.2 }));
    assert.equal(res.text, 'All good.');
    assert.deepEqual(res.tool_calls, []);
    assert.deepEqual(res.usage, { prompt_tokens: 100, output_tokens: 20, cached_tokens: 64 });
    assert.equal(res.finish_reason, 'stop');
    assert.equal(res.model, 'gpt-4.1-mini');

    const sent = fake.requests.at(-1)!;
    assert.equal(sent.path, '/v1/chat/completions');
    assert.equal(sent.headers.authorization, `Bearer ${fake.apiKey}`);
    assert.equal(sent.body.max_tokens, 512);
    assert.equal(sent.body.temperature, 0.2);
    assert.deepEqual(sent.body.messages, [
      { role: 'system', content: 'You are a careful coding agent.' },
      { role: 'user', content: 'hi' },
    ]);
    assert.deepEqual(
      sent.body.tools,
      TOOLS.map((t) => ({ type: 'function', function: { name: t.name, description: t.description, parameters: t.parameters } })),
    );
  });

  it('reads back two function calls with parsed args', async () => {
    fake.script({
      calls: [
        { id: 'call_a', name: 'read_file', args: { path: 'src/a.txt' } },
        { id: 'call_b', name: 'run', args: { command: 'npm test' } },
      ],
    });
    const res = await client.generate(request('gpt-4.1-mini', [{ role: 'user', text: 'go' }]));
    assert.equal(res.finish_reason, 'tool_calls');
    assert.deepEqual(res.tool_calls, [
      { id: 'call_a', name: 'read_file', args: { path: 'src/a.txt' } },
      { id: 'call_b', name: 'run', args: { command: 'npm test' } },
    ]);
  });

  it('sends earlier tool calls as assistant tool_calls and each tool result as its own tool message', async () => {
    fake.script((body) => ({ text: `saw ${body.messages.length} messages` }));
    const res = await client.generate(request('gpt-4.1-mini', CONVERSATION));
    assert.equal(res.text, 'saw 5 messages');
    assert.deepEqual(fake.requests.at(-1)!.body.messages, [
      { role: 'system', content: 'You are a careful coding agent.' },
      { role: 'user', content: 'Fix the failing test.' },
      {
        role: 'assistant',
        content: 'Let me look first.',
        tool_calls: [
          { id: 'c-1', type: 'function', function: { name: 'read_file', arguments: '{"path":"src/a.txt"}' } },
          { id: 'c-2', type: 'function', function: { name: 'run', arguments: '{"command":"npm test"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'c-1', content: 'a\n' },
      { role: 'tool', tool_call_id: 'c-2', content: 'exit 1: expected b' },
    ]);
  });

  it('returns malformed function-call arguments as args null with the reason and the raw text', async () => {
    fake.script({
      calls: [
        { id: 'call_x', name: 'read_file', rawArgs: '{"path": "a.txt"' },
        { id: 'call_y', name: 'run', rawArgs: '["npm", "test"]' },
      ],
    });
    const res = await client.generate(request('gpt-4.1-mini', [{ role: 'user', text: 'go' }]));
    const [truncated, notObject] = res.tool_calls;
    assert.equal(truncated!.args, null);
    assert.match(truncated!.parse_error!, /not valid JSON/);
    assert.ok(truncated!.parse_error!.endsWith('{"path": "a.txt"'), truncated!.parse_error);
    assert.equal(notObject!.args, null);
    assert.match(notObject!.parse_error!, /must be a JSON object, got an array/);
  });

  it('turns a 429 with Retry-After into a retryable rate_limited error, without retrying itself', async () => {
    const before = fake.requests.length;
    fake.script({ status: 429, retryAfter: 3 });
    const err = await modelErrorOf(client.generate(request('gpt-4.1-mini', [{ role: 'user', text: 'hi' }])));
    assert.equal(err.kind, 'rate_limited');
    assert.equal(err.retryable, true);
    assert.equal(err.status, 429);
    assert.equal(err.retryAfterMs, 3000);
    assert.equal(fake.requests.length, before + 1, 'the SDK must not retry on its own');
  });

  it('turns a 500 into a retryable unavailable error, without retrying itself', async () => {
    const before = fake.requests.length;
    fake.script({ status: 500 });
    const err = await modelErrorOf(client.generate(request('gpt-4.1-mini', [{ role: 'user', text: 'hi' }])));
    assert.equal(err.kind, 'unavailable');
    assert.equal(err.retryable, true);
    assert.equal(err.status, 500);
    assert.equal(fake.requests.length, before + 1);
  });

  it('reports a wrong API key as auth, not retryable', async () => {
    const wrong = new OpenAICompatibleModelClient({ apiKey: 'sk-wrong', baseURL: `${fake.url}/v1` });
    const err = await modelErrorOf(wrong.generate(request('gpt-4.1-mini', [{ role: 'user', text: 'hi' }])));
    assert.equal(err.kind, 'auth');
    assert.equal(err.retryable, false);
    assert.equal(err.status, 401);
    assert.match(err.message, /invalid_api_key/);
  });

  it('reports an unknown model as not_found, not retryable', async () => {
    const err = await modelErrorOf(client.generate(request('gpt-0-nonexistent', [{ role: 'user', text: 'hi' }])));
    assert.equal(err.kind, 'not_found');
    assert.equal(err.retryable, false);
    assert.match(err.message, /model_not_found/);
  });

  it('reports an exhausted balance (429 insufficient_quota) as auth, since waiting does not lift it', async () => {
    fake.script({
      status: 429,
      body: { error: { message: 'You exceeded your current quota, please check your plan and billing details.', type: 'insufficient_quota', param: null, code: 'insufficient_quota' } },
    });
    const err = await modelErrorOf(client.generate(request('gpt-4.1-mini', [{ role: 'user', text: 'hi' }])));
    assert.equal(err.kind, 'auth');
    assert.equal(err.retryable, false);
  });

  it('reports a refusal with no content as blocked', async () => {
    fake.script({ refusal: "I'm sorry, I can't help with that." });
    const err = await modelErrorOf(client.generate(request('gpt-4.1-mini', [{ role: 'user', text: 'hi' }])));
    assert.equal(err.kind, 'blocked');
  });

  it('rejects with an AbortError when the signal aborts mid-call', async () => {
    fake.script({ text: 'too late', delayMs: 5000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(client.generate(request('gpt-4.1-mini', [{ role: 'user', text: 'hi' }]), controller.signal), { name: 'AbortError' });
  });

  it('reports a server that cannot be reached as unavailable', async () => {
    const offline = new OpenAICompatibleModelClient({ apiKey: 'k', baseURL: `${await closedPortUrl()}/v1` });
    const err = await modelErrorOf(offline.generate(request('gpt-4.1-mini', [{ role: 'user', text: 'hi' }])));
    assert.equal(err.kind, 'unavailable');
    assert.equal(err.status, undefined);
  });
});

describe('createModelClient', () => {
  let gemini: FakeGemini;
  let openai: FakeOpenAI;

  before(async () => {
    gemini = await startFakeGemini();
    openai = await startFakeOpenAI();
  });
  after(async () => {
    await gemini.close();
    await openai.close();
  });

  it('refuses to build a Gemini client without a key, naming the variable', () => {
    assert.throws(() => createModelClient('gemini', {}), (err: unknown) => {
      assert.ok(err instanceof ModelError);
      assert.equal(err.kind, 'auth');
      assert.equal(err.retryable, false);
      assert.match(err.message, /GEMINI_API_KEY/);
      return true;
    });
  });

  it('refuses to build an OpenAI client without a key, naming the variable', () => {
    assert.throws(() => createModelClient('openai', { OPENAI_API_KEY: '  ' }), (err: unknown) => {
      assert.ok(err instanceof ModelError && err.kind === 'auth');
      assert.match(err.message, /OPENAI_API_KEY/);
      return true;
    });
  });

  it('uses GEMINI_API_KEY and GOOGLE_GEMINI_BASE_URL', async () => {
    gemini.script({ text: 'from env' });
    const client = createModelClient('gemini', { GEMINI_API_KEY: gemini.apiKey, GOOGLE_GEMINI_BASE_URL: gemini.url });
    assert.equal(client.provider, 'gemini');
    assert.equal((await client.generate(request('gemini-2.5-flash', [{ role: 'user', text: 'hi' }]))).text, 'from env');
  });

  it('accepts GOOGLE_API_KEY, preferring it over GEMINI_API_KEY as the SDK does', async () => {
    gemini.script({ text: 'google key' });
    const client = createModelClient('gemini', { GOOGLE_API_KEY: gemini.apiKey, GEMINI_API_KEY: 'stale', GOOGLE_GEMINI_BASE_URL: gemini.url });
    assert.equal((await client.generate(request('gemini-2.5-flash', [{ role: 'user', text: 'hi' }]))).text, 'google key');
  });

  it('uses OPENAI_API_KEY and OPENAI_BASE_URL', async () => {
    openai.script({ text: 'from env' });
    const client = createModelClient('openai', { OPENAI_API_KEY: openai.apiKey, OPENAI_BASE_URL: `${openai.url}/v1` });
    assert.equal(client.provider, 'openai');
    assert.equal((await client.generate(request('gpt-4.1-mini', [{ role: 'user', text: 'hi' }]))).text, 'from env');
  });
});

describe('model errors and prices', () => {
  it('retries only rate limits and outages', () => {
    assert.deepEqual(
      (['auth', 'not_found', 'rate_limited', 'unavailable', 'invalid_request', 'blocked'] as const).filter(isRetryableModelError),
      ['rate_limited', 'unavailable'],
    );
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    assert.equal(parseRetryAfter('2'), 2000);
    assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4_000), 6000);
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(parseRetryAfter(null), undefined);
  });

  it('bills cached prompt tokens at the cached rate and the rest of the prompt at the input rate', () => {
    const { usd, priced } = costUsd(DEFAULT_PRICES, 'gpt-4.1', { prompt_tokens: 1_000_000, cached_tokens: 400_000, output_tokens: 100_000 });
    assert.equal(priced, true);
    // 600k at $2.00 + 400k at $0.50 + 100k at $8.00
    assert.ok(Math.abs(usd - (1.2 + 0.2 + 0.8)) < 1e-9, String(usd));
  });

  it('bills a long Gemini Pro prompt at the long-prompt rates', () => {
    const { usd } = costUsd(DEFAULT_PRICES, 'gemini-2.5-pro', { prompt_tokens: 300_000, cached_tokens: 0, output_tokens: 0 });
    assert.ok(Math.abs(usd - 0.75) < 1e-9, String(usd));
  });

  it('prices a versioned model name by its base name, and the longest one', () => {
    const usage = { prompt_tokens: 1_000_000, cached_tokens: 0, output_tokens: 0 };
    assert.deepEqual(costUsd(DEFAULT_PRICES, 'gemini-2.5-flash-001', usage), { usd: 0.3, priced: true });
    assert.deepEqual(costUsd(DEFAULT_PRICES, 'gemini-2.5-flash-lite-preview-09-2025', usage), { usd: 0.1, priced: true });
    assert.deepEqual(costUsd(DEFAULT_PRICES, 'gpt-4o-mini-2024-07-18', usage), { usd: 0.15, priced: true });
    assert.deepEqual(costUsd(DEFAULT_PRICES, 'models/gemini-2.5-pro', { ...usage, prompt_tokens: 100_000 }), { usd: 0.125, priced: true });
  });

  it('leaves an unknown model, or another model sharing a prefix, unpriced', () => {
    const usage = { prompt_tokens: 10, cached_tokens: 0, output_tokens: 10 };
    assert.deepEqual(costUsd(DEFAULT_PRICES, 'llama-3.3-70b', usage), { usd: 0, priced: false });
    assert.deepEqual(costUsd(DEFAULT_PRICES, 'gpt-4.1-nano', usage), { usd: 0, priced: false });
  });

  it('lets MODEL_PRICES override and extend the built-in table', () => {
    const table = loadPriceTable({ MODEL_PRICES: JSON.stringify({ 'gpt-4.1': { input: 1, cached_input: 0.1, output: 4 }, 'llama-3.3-70b': { input: 0.5, cached_input: 0.5, output: 0.5 } }) });
    assert.equal(table['gpt-4.1']!.input, 1);
    assert.equal(table['gpt-4o']!.input, DEFAULT_PRICES['gpt-4o']!.input);
    assert.deepEqual(costUsd(table, 'llama-3.3-70b', { prompt_tokens: 1_000_000, cached_tokens: 0, output_tokens: 0 }), { usd: 0.5, priced: true });
    assert.deepEqual(loadPriceTable({}), DEFAULT_PRICES);
  });

  it('rejects a MODEL_PRICES that is not JSON or misses a rate, naming the variable', () => {
    assert.throws(() => loadPriceTable({ MODEL_PRICES: '{nope' }), (err: unknown) => err instanceof InvalidPriceTableError && /MODEL_PRICES: not valid JSON/.test(err.message));
    assert.throws(() => loadPriceTable({ MODEL_PRICES: '{"m": {"input": 1}}' }), (err: unknown) => err instanceof InvalidPriceTableError && /m\.output/.test(err.message));
  });
});
