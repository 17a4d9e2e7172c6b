/**
 * The LLM planner across a killed worker and across continue-as-new: a finished model call is
 * never made (or billed) again, and a long session keeps its conversation and its totals.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { startFakeGemini, type FakeGemini, type GeminiTurn } from './support/fake-gemini';
import { git, makeOriginRepo, tempDir } from './support/git-fixture';
import { call, eventually } from './support/http';
import { recordHistory } from './support/histories';
import { REPO_ROOT, stackEnv, startTestStack, startTestTemporal } from './support/stack';

const MAIN = path.join(REPO_ROOT, 'dist', 'workers', 'main.js');
const usage = { prompt: 800, output: 50 };

let temporal: DevServer;
let gemini: FakeGemini;
const children: ChildProcess[] = [];
const stacks: Stack[] = [];

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function pending(base: string, id: string, kind: string, timeoutMs = 90_000): Promise<any> {
  const t = await eventually(
    () => call(base, 'GET', `/v1/tasks/${id}`),
    (r) => r.body.items?.some((i: any) => i.kind === kind && i.status === 'pending') || ['failed', 'done'].includes(r.body.state),
    `a pending ${kind} item`,
    timeoutMs,
  );
  const item = t.body.items.find((i: any) => i.kind === kind && i.status === 'pending');
  assert.ok(item, `no pending ${kind}; task is ${t.body.state}: ${t.body.result}`);
  return item;
}

describe('LLM planner durability', () => {
  before(async () => {
    // A low threshold makes a long session continue as new several times.
    temporal = await startTestTemporal(['--dynamic-config-value', 'limit.historyCount.suggestContinueAsNew=400']);
    gemini = await startFakeGemini();
  });

  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    for (const s of stacks) await s.stop();
    await temporal?.stop();
    await gemini?.close();
  });

  it('does not call (or bill) a finished model call again when the worker is killed during the tool call after it', async () => {
    const root = tempDir('agent-kill');
    const origin = makeOriginRepo(root, { 'README.md': 'fixture\n' });
    const dataDir = path.join(root, 'data');
    const queue = `agent-kill-${process.pid}`;
    const api = await startTestStack(temporal, dataDir, queue, { ROLES: 'api' });
    stacks.push(api);
    const env = {
      ...stackEnv(temporal, dataDir, queue, { ROLES: 'worker', SANDBOX_DRIVER: 'process' }),
      GEMINI_API_KEY: gemini.apiKey,
      GOOGLE_GEMINI_BASE_URL: gemini.url,
    };
    const logFile = path.join(root, 'worker.log');
    const start = (): ChildProcess => {
      const out = fs.openSync(logFile, 'a');
      const child = spawn(process.execPath, [MAIN], { cwd: REPO_ROOT, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', out, out] });
      fs.closeSync(out);
      children.push(child);
      return child;
    };
    const before = gemini.requests.length;
    gemini.script([
      { text: '1. Run the slow command\n2. Finish', usage },
      { calls: [{ name: 'run', args: { command: 'echo start >> log.txt; sleep 4; echo end >> log.txt' } }], usage },
      { calls: [{ name: 'finish', args: { summary: 'Logged once.', risks: 'none', how_to_test: 'cat log.txt' } }], usage },
    ]);
    const first = start();
    const res = await call(api.url!, 'POST', '/v1/tasks', { repo: origin, goal: 'Log once', planner: { kind: 'llm' }, requester: 'alice' });
    assert.equal(res.status, 202);
    const id = res.body.task_id;
    await eventually(async () => fs.existsSync(path.join(dataDir, 'workspaces', id, 'log.txt')), Boolean, 'the tool call to start', 60_000);
    assert.equal(gemini.requests.length - before, 2, 'two model calls made before the kill');
    first.kill('SIGKILL');
    await exited(first);
    start();

    const review = await pending(api.url!, id, 'pr_review');
    assert.equal(gemini.requests.length - before, 3, 'the model call before the kill was not made again');
    assert.equal(git(origin, 'show', `agent/${id}:log.txt`), 'start\nend', 'the tool call took effect once');
    const task = (await call(api.url!, 'GET', `/v1/tasks/${id}`)).body;
    assert.equal(task.usage.tokens, 3 * 850, 'three calls billed, not four');
    assert.equal(task.usage.steps, 1);
    assert.equal((await call(api.url!, 'POST', `/v1/tasks/${id}/inbox/${review.item_id}`, { action: 'approve', actor: 'bob' })).status, 200);
  });

  it('runs a 200-step session across continue-as-new and keeps its conversation and totals', async () => {
    const root = tempDir('agent-long');
    const origin = makeOriginRepo(root, { 'README.md': 'fixture\n' });
    // This worker runs in this process: the model clients read their configuration from its environment.
    process.env.GEMINI_API_KEY = gemini.apiKey;
    process.env.GOOGLE_GEMINI_BASE_URL = gemini.url;
    delete process.env.GOOGLE_API_KEY;
    const stack = await startTestStack(temporal, path.join(root, 'data'), `agent-long-${process.pid}`, { SANDBOX_DRIVER: 'process' });
    stacks.push(stack);
    const base = stack.url!;
    const STEPS = 200;
    const turns: GeminiTurn[] = [{ text: '1. Count to 200\n2. Finish', usage }];
    for (let i = 1; i <= STEPS; i++) {
      turns.push((body: any) => {
        // Every earlier step is still in the conversation the model is sent.
        const calls = (body.contents as any[]).filter((c) => c.role === 'model').flatMap((c) => c.parts.filter((p: any) => p.functionCall));
        assert.equal(calls.length, i - 1, `turn ${i + 1} is sent the ${i - 1} earlier calls`);
        return { calls: [{ name: 'run', args: { command: `echo ${i} > count.txt` } }], usage };
      });
    }
    turns.push({ calls: [{ name: 'finish', args: { summary: 'Counted.', risks: 'none', how_to_test: 'cat count.txt' } }], usage });
    gemini.script(turns);
    const before = gemini.requests.length;
    const res = await call(base, 'POST', '/v1/tasks', {
      repo: origin,
      goal: 'Count to 200',
      planner: { kind: 'llm' },
      budget: { max_steps: 1_000, max_tokens: 10_000_000, max_usd: 100 },
    });
    assert.equal(res.status, 202);
    const id = res.body.task_id;
    const review = await pending(base, id, 'pr_review', 300_000);
    assert.equal(gemini.requests.length - before, STEPS + 2);
    assert.equal(git(origin, 'show', `agent/${id}:count.txt`), String(STEPS));
    const task = (await call(base, 'GET', `/v1/tasks/${id}`)).body;
    assert.equal(task.usage.steps, STEPS);
    assert.equal(task.usage.tokens, (STEPS + 2) * 850);
    const runs: string[] = [];
    for await (const run of stack.client.workflow.list({ query: `WorkflowId = '${id}'` })) runs.push(run.status.name);
    assert.ok(runs.filter((s) => s === 'CONTINUED_AS_NEW').length >= 1, `continued as new: ${runs.join(', ')}`);
    const trace = (await call(base, 'GET', `/v1/tasks/${id}/trace`)).body.entries;
    assert.equal(trace.filter((e: any) => e.type === 'model').length, STEPS + 2, 'every model call is in the trace, archived ones included');
    await recordHistory(stack.client, id, 'llm-long-session-pending-review');
    assert.equal((await call(base, 'POST', `/v1/tasks/${id}/inbox/${review.item_id}`, { action: 'approve', actor: 'bob' })).status, 200);
  });
});
