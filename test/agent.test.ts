/**
 * The LLM planner end to end: the real task workflow on the real dev server, a real worker whose
 * tools run in gVisor sandboxes, a real git origin, and the real `@google/genai` / `openai` clients
 * talking to loopback servers that speak the providers' wire formats and answer from scripts.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { startFakeGemini, type FakeGemini } from './support/fake-gemini';
import { startFakeOpenAI, type FakeOpenAI } from './support/fake-openai';
import { git, makeOriginRepo, tempDir } from './support/git-fixture';
import { call, eventually } from './support/http';
import { startTestStack, startTestTemporal } from './support/stack';
import { recordHistory, recorded } from './support/histories';
import { Worker } from '@temporalio/worker';
import { WORKFLOWS_PATH } from '../workers/worker';

const FILES = {
  'calc.js': 'exports.add = (a, b) => a - b;\n',
  'test.js': "const assert = require('assert');\nconst { add } = require('./calc');\nassert.strictEqual(add(2, 3), 5);\nconsole.log('tests pass');\n",
  'package.json': '{"name": "fixture", "private": true, "scripts": {"test": "node test.js"}}\n',
  'AGENTS.md': '# Agents\nAlways run `npm test` before finishing.\n',
  '.agent/policy.yaml': 'protected_paths:\n  - deploy/**\napproval_commands:\n  - "^npm publish"\n',
};

let temporal: DevServer;
let stack: Stack;
let base: string;
let origin: string;
let gemini: FakeGemini;
let openai: FakeOpenAI;
const saved: Record<string, string | undefined> = {};

/** Text of every function response (tool result) in a Gemini request body. */
function toolResults(body: any): string[] {
  return (body.contents as any[]).flatMap((c) => (c.parts ?? []).filter((p: any) => p.functionResponse).map((p: any) => JSON.stringify(p.functionResponse.response)));
}

async function submit(planner: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'Fix add() in calc.js so the tests pass', planner: { kind: 'llm', ...planner }, requester: 'alice', ...extra });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body.task_id;
}

async function pendingItem(id: string, kind: string, timeoutMs = 60_000): Promise<any> {
  const t = await eventually(
    () => call(base, 'GET', `/v1/tasks/${id}`),
    (r) => r.body.items?.some((i: any) => i.kind === kind && i.status === 'pending') || ['failed', 'done', 'rejected', 'cancelled'].includes(r.body.state),
    `a pending ${kind} item`,
    timeoutMs,
  );
  const item = t.body.items.find((i: any) => i.kind === kind && i.status === 'pending');
  assert.ok(item, `no pending ${kind}; task is ${t.body.state}: ${t.body.result}`);
  return item;
}

async function decide(id: string, item: any, body: Record<string, unknown>): Promise<void> {
  const res = await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { actor: 'bob', ...body });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

async function ended(id: string): Promise<any> {
  return (await eventually(() => call(base, 'GET', `/v1/tasks/${id}`), (r) => ['done', 'failed', 'rejected', 'cancelled', 'timed_out'].includes(r.body.state), 'the task to end', 60_000)).body;
}

const usage = { prompt: 1_000, output: 100, cached: 400 };
const BIG_CALC = `exports.add = (a, b) => a + b;\n${'// filler line\n'.repeat(1_000)}`;

describe('LLM planner', () => {
  before(async () => {
    temporal = await startTestTemporal();
    gemini = await startFakeGemini();
    openai = await startFakeOpenAI();
    const env = { GEMINI_API_KEY: gemini.apiKey, GOOGLE_GEMINI_BASE_URL: gemini.url, OPENAI_API_KEY: openai.apiKey, OPENAI_BASE_URL: `${openai.url}/v1`, GOOGLE_API_KEY: undefined };
    for (const [k, v] of Object.entries(env)) {
      saved[k] = process.env[k];
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    const root = tempDir('agent');
    origin = makeOriginRepo(root, FILES);
    // The model the provider does not know has a price, so intake lets it through to the provider's refusal.
    const MODEL_PRICES = JSON.stringify({ 'gemini-0-nonexistent': { input: 0.3, cached_input: 0.03, output: 2.5 } });
    stack = await startTestStack(temporal, path.join(root, 'data'), `agent-${process.pid}`, { SANDBOX_DRIVER: 'gvisor', MODEL_PRICES });
    base = stack.url!;
  });

  after(async () => {
    await stack?.stop();
    await temporal?.stop();
    await gemini?.close();
    await openai?.close();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it('reads, edits, runs the tests, sees them fail, fixes the code and finishes with a review whose diff is right', async () => {
    gemini.script([
      { text: '1. Read calc.js\n2. Fix add()\n3. Run the tests\n4. Finish', usage },
      { calls: [{ name: 'read_file', args: { path: 'calc.js' } }], usage },
      (body) => {
        assert.match(toolResults(body).join('\n'), /a - b/, 'the model was shown the file');
        return { calls: [{ name: 'edit_file', args: { path: 'calc.js', old_string: 'a - b', new_string: 'a * b' } }], usage };
      },
      { calls: [{ name: 'run', args: { command: 'npm test' } }], usage },
      (body) => {
        assert.match(toolResults(body).join('\n'), /AssertionError/, 'the model saw the failing test');
        return { text: 'Multiplication was wrong; it must be addition.', calls: [{ name: 'edit_file', args: { path: 'calc.js', old_string: 'a * b', new_string: 'a + b' } }], usage };
      },
      { calls: [{ name: 'run', args: { command: 'npm test' } }], usage },
      (body) => {
        assert.match(toolResults(body).join('\n'), /tests pass/);
        return { calls: [{ name: 'finish', args: { summary: 'add() now adds.', risks: 'none', how_to_test: 'npm test' } }], usage };
      },
    ]);
    const id = await submit({ model: 'gemini-2.5-flash' });
    const review = await pendingItem(id, 'pr_review');
    assert.equal(gemini.pending(), 0);
    assert.match(review.detail.diff_preview, /^-exports\.add = \(a, b\) => a - b;$/m);
    assert.match(review.detail.diff_preview, /^\+exports\.add = \(a, b\) => a \+ b;$/m);
    assert.match(review.detail.summary, /add\(\) now adds\./);
    assert.equal(git(origin, 'show', `agent/${id}:calc.js`), 'exports.add = (a, b) => a + b;');

    // The system context carried AGENTS.md and the tools; the wire format is Gemini's.
    const first = gemini.requests.at(-7)!.body;
    assert.match(JSON.stringify(first.systemInstruction), /Always run `npm test` before finishing/);
    const declared = first.tools[0].functionDeclarations.map((d: any) => d.name).sort();
    assert.deepEqual(declared, ['ask_human', 'edit_file', 'finish', 'git_diff', 'list_dir', 'read_file', 'request_approval', 'request_network', 'run', 'search', 'write_file']);

    const task = (await call(base, 'GET', `/v1/tasks/${id}`)).body;
    assert.equal(task.usage.tokens, 7 * 1_100, 'metered from the usage metadata of 7 calls');
    assert.ok(task.usage.usd > 0, 'priced from the table');
    const trace = (await call(base, 'GET', `/v1/tasks/${id}/trace`)).body.entries;
    assert.match(trace.find((e: any) => e.type === 'plan').message, /Read calc\.js/);
    assert.ok(trace.some((e: any) => e.type === 'check' && /npm test/.test(e.message) && /passed/.test(e.message)), 'the self-check ran');
    const transcript = await call(base, 'GET', `/v1/tasks/${id}/artifacts/agent-transcript.jsonl`);
    assert.equal(transcript.status, 200);
    await recordHistory(stack.client, id, 'llm-session-pending-review');
    await decide(id, review, { action: 'approve' });
    assert.equal((await ended(id)).state, 'done');
  });

  it('asks a human through a clarification item and feeds the answer back', async () => {
    gemini.script([
      { text: '1. Ask which operation\n2. Write it\n3. Finish', usage },
      { calls: [{ name: 'ask_human', args: { question: 'Should add() add or concatenate?' } }], usage },
      (body) => {
        assert.match(toolResults(body).join('\n'), /local admin answered: add numbers/);
        return { calls: [{ name: 'write_file', args: { path: 'calc.js', content: BIG_CALC } }], usage };
      },
      { calls: [{ name: 'finish', args: { summary: 'Fixed as told.', risks: 'none', how_to_test: 'npm test' } }], usage },
    ]);
    const id = await submit({});
    const question = await pendingItem(id, 'clarification');
    assert.match(question.title, /add or concatenate/);
    assert.equal((await call(base, 'GET', `/v1/tasks/${id}`)).body.state, 'awaiting_answer');
    const inbox = (await call(base, 'GET', '/v1/inbox?kind=clarification')).body;
    assert.ok(inbox.items.some((i: any) => i.task_id === id));
    await decide(id, question, { action: 'answer', answer: 'add numbers' });
    const review = await pendingItem(id, 'pr_review');
    // A long argument reaches the file whole but travels through the workflow history only by reference.
    assert.equal(git(origin, 'show', `agent/${id}:calc.js`), BIG_CALC.trimEnd());
    const history = JSON.stringify(await stack.client.workflow.getHandle(id).fetchHistory());
    assert.ok(history.split('filler line').length - 1 < 50, 'the file content is not in the history');
    await decide(id, review, { action: 'reject' });
    assert.equal((await ended(id)).state, 'rejected');
  });

  it('gates a command and a protected path in code, whatever the model asks', async () => {
    gemini.script([
      { text: '1. Publish\n2. Deploy', usage },
      { calls: [{ name: 'run', args: { command: 'npm publish --force' } }], usage },
      (body) => {
        assert.match(toolResults(body).join('\n'), /not run: local admin rejected this command/);
        // A command that writes a protected path without naming it in its arguments.
        return { calls: [{ name: 'run', args: { command: 'mkdir -p deploy && echo prod > deploy/target' } }], usage };
      },
      (body) => {
        assert.match(toolResults(body).join('\n'), /was rejected by local admin; it has been undone/);
        return { calls: [{ name: 'write_file', args: { path: 'deploy/other', content: 'x\n' } }], usage };
      },
      (body) => {
        assert.match(toolResults(body).join('\n'), /not done: local admin rejected the change to deploy\/other/);
        return { calls: [{ name: 'write_file', args: { path: 'calc.js', content: 'exports.add = (a, b) => a + b;\n' } }, { name: 'finish', args: { summary: 'Only the fix.', risks: 'none', how_to_test: 'npm test' } }], usage };
      },
    ]);
    const id = await submit({});
    const publish = await pendingItem(id, 'risky_action');
    assert.match(publish.title, /npm publish/);
    await decide(id, publish, { action: 'reject' });
    const deploy = await pendingItem(id, 'risky_action');
    assert.match(deploy.title, /changed protected paths: deploy\/target/);
    assert.match(deploy.detail.diff_preview, /\+prod/);
    await decide(id, deploy, { action: 'reject' });
    const other = await pendingItem(id, 'risky_action');
    assert.match(other.title, /Change protected path: deploy\/other/);
    await decide(id, other, { action: 'reject' });
    const review = await pendingItem(id, 'pr_review');
    assert.doesNotMatch(review.detail.diff_stat, /deploy/, 'rejected changes are not in the output');
    assert.match(review.detail.diff_stat, /calc\.js/);
    await recordHistory(stack.client, id, 'llm-gates-pending-review');
    await decide(id, review, { action: 'reject' });
    await ended(id);
  });

  it('pauses on a budget request before a call would exceed the token budget, and continues the same conversation after a grant', async () => {
    gemini.script([
      { text: '1. Write the fix\n2. Finish', usage: { prompt: 500, output: 100 } },
      { calls: [{ name: 'write_file', args: { path: 'calc.js', content: 'exports.add = (a, b) => a + b;\n' } }], usage: { prompt: 500, output: 100 } },
      (body) => {
        assert.match(toolResults(body).join('\n'), /calc\.js/, 'the tool result of the call before the pause');
        return { calls: [{ name: 'finish', args: { summary: 'Done after a grant.', risks: 'none', how_to_test: 'npm test' } }], usage: { prompt: 500, output: 100 } };
      },
    ]);
    const id = await submit({ max_output_tokens: 256 }, { budget: { max_tokens: 1_500 } });
    const request = await pendingItem(id, 'budget_request');
    assert.equal(request.detail.exhausted, 'max_tokens');
    assert.equal(request.detail.usage.tokens, 1_200);
    assert.equal(gemini.pending(), 1, 'no call was made past the budget');
    await decide(id, request, { action: 'grant_budget', budget: { max_tokens: 10_000 } });
    const review = await pendingItem(id, 'pr_review');
    assert.match(review.detail.summary, /Done after a grant/);
    const task = (await call(base, 'GET', `/v1/tasks/${id}`)).body;
    assert.equal(task.usage.tokens, 1_800);
    assert.equal(task.budget.max_tokens, 11_500);
    await decide(id, review, { action: 'approve' });
    await ended(id);
  });

  it('retries a rate-limited call, tells the model about malformed arguments, and works with an OpenAI-compatible server', async () => {
    openai.script([
      { status: 429, retryAfter: 1 },
      { text: '1. Fix\n2. Finish', usage: { prompt: 300, output: 50, cached: 100 } },
      { calls: [{ name: 'edit_file', rawArgs: '{"path": "calc.js", "old_string": "a - b"' }], usage: { prompt: 300, output: 50 } },
      (body) => {
        const tool = body.messages.find((m: any) => m.role === 'tool');
        assert.match(tool.content, /not a JSON object/);
        return { calls: [{ name: 'edit_file', args: { path: 'calc.js', old_string: 'a - b', new_string: 'a + b' } }], usage: { prompt: 300, output: 50 } };
      },
      { calls: [{ name: 'finish', args: { summary: 'Fixed through an OpenAI-compatible model.', risks: 'none', how_to_test: 'npm test' } }], usage: { prompt: 300, output: 50 } },
    ]);
    const id = await submit({ provider: 'openai', model: 'gpt-4.1-mini' });
    const review = await pendingItem(id, 'pr_review');
    assert.equal(openai.pending(), 0);
    assert.match(review.detail.diff_preview, /\+exports\.add = \(a, b\) => a \+ b;/);
    const task = (await call(base, 'GET', `/v1/tasks/${id}`)).body;
    assert.equal(task.usage.tokens, 4 * 350, 'the rate-limited attempt billed nothing');
    await decide(id, review, { action: 'approve' });
    await ended(id);
  });

  it('sends a plan back for changes when policy asks for plan approval, then follows the revised plan', async () => {
    gemini.script([
      { text: '1. Rewrite everything', usage },
      (body) => {
        const last = body.contents.at(-1).parts.map((p: any) => p.text ?? '').join('');
        assert.match(last, /Only touch calc\.js/);
        return { text: '1. Fix add() in calc.js\n2. Finish', usage };
      },
      { calls: [{ name: 'edit_file', args: { path: 'calc.js', old_string: 'a - b', new_string: 'a + b' } }], usage },
      { calls: [{ name: 'finish', args: { summary: 'Small fix.', risks: 'none', how_to_test: 'npm test' } }], usage },
    ]);
    const id = await submit({}, { policy: { require_plan_approval: true } });
    const first = await pendingItem(id, 'plan_approval');
    assert.match(first.detail.plan, /Rewrite everything/);
    await decide(id, first, { action: 'request_changes', comment: 'Only touch calc.js' });
    const second = await pendingItem(id, 'plan_approval');
    assert.match(second.detail.plan, /Fix add\(\) in calc\.js/);
    await decide(id, second, { action: 'approve' });
    const review = await pendingItem(id, 'pr_review');
    await decide(id, review, { action: 'reject' });
    await ended(id);
  });

  it('opens a health alert instead of a review when the self-check keeps failing, and one when the same command keeps failing', async () => {
    gemini.script([
      { text: '1. Try\n2. Finish', usage },
      { calls: [{ name: 'finish', args: { summary: 'Untested.', risks: 'none', how_to_test: 'npm test' } }], usage },
      (body) => {
        assert.match(toolResults(body).join('\n') + JSON.stringify(body.contents.at(-1)), /checks failed/);
        return { calls: [{ name: 'run', args: { command: 'node test.js' } }], usage };
      },
      { calls: [{ name: 'run', args: { command: 'node test.js' } }], usage },
      { calls: [{ name: 'run', args: { command: 'node test.js' } }], usage },
      (body) => {
        assert.match(JSON.stringify(body.contents.at(-1)), /Message from local admin: look at calc\.js/);
        return { calls: [{ name: 'edit_file', args: { path: 'calc.js', old_string: 'a - b', new_string: 'a + b' } }, { name: 'finish', args: { summary: 'Fixed.', risks: 'none', how_to_test: 'npm test' } }], usage };
      },
    ]);
    const id = await submit({ max_check_rounds: 2 });
    const stuck = await pendingItem(id, 'health_alert');
    assert.match(stuck.title, /Stuck: the same command failed 3 times in a row/);
    assert.match(stuck.detail.last_error, /node test\.js/);
    assert.equal((await call(base, 'GET', `/v1/tasks/${id}`)).body.state, 'stuck');
    assert.equal((await call(base, 'POST', `/v1/tasks/${id}/messages`, { text: 'look at calc.js', actor: 'bob' })).status, 200);
    const review = await pendingItem(id, 'pr_review');
    assert.match(review.detail.diff_preview, /\+exports\.add = \(a, b\) => a \+ b;/);
    await decide(id, review, { action: 'reject' });
    await ended(id);

    gemini.script([
      { text: '1. Finish', usage },
      { calls: [{ name: 'finish', args: { summary: 'Untested.', risks: 'none', how_to_test: 'npm test' } }], usage },
      { calls: [{ name: 'finish', args: { summary: 'Still untested.', risks: 'none', how_to_test: 'npm test' } }], usage },
    ]);
    const id2 = await submit({ max_check_rounds: 2 });
    const alert = await pendingItem(id2, 'health_alert');
    assert.match(alert.title, /Self-check failed 2 times/);
    assert.match(alert.detail.failures[0], /npm test/);
    assert.equal((await call(base, 'GET', `/v1/tasks/${id2}`)).body.items.some((i: any) => i.kind === 'pr_review'), false);
    await decide(id2, alert, { action: 'cancel' });
    assert.equal((await ended(id2)).state, 'cancelled');
  });

  it('fails fast with a clear error for an unknown model, a bad key or no key', async () => {
    const unknown = await ended(await submit({ model: 'gemini-0-nonexistent' }));
    assert.equal(unknown.state, 'failed');
    assert.match(unknown.result, /not_found|not found/i);
    assert.match(unknown.result, /gemini-0-nonexistent/);

    process.env.OPENAI_API_KEY = 'sk-wrong';
    try {
      const started = Date.now();
      const badKey = await ended(await submit({ provider: 'openai', model: 'gpt-4.1-mini' }));
      assert.equal(badKey.state, 'failed');
      assert.match(badKey.result, /Model_auth/);
      delete process.env.OPENAI_API_KEY;
      const noKey = await ended(await submit({ provider: 'openai', model: 'gpt-4.1-mini' }));
      assert.equal(noKey.state, 'failed');
      assert.match(noKey.result, /OPENAI_API_KEY/);
      assert.ok(Date.now() - started < 30_000, 'not retried for minutes');
    } finally {
      process.env.OPENAI_API_KEY = openai.apiKey;
    }
  });

  it('replays the histories it recorded against the current workflow code', async () => {
    assert.ok(recorded.length >= 2);
    for await (const result of Worker.runReplayHistories({ workflowsPath: WORKFLOWS_PATH }, recorded)) {
      assert.equal(result.error, undefined, `${result.workflowId}: ${String(result.error)}`);
    }
  });
});
