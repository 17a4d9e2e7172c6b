/**
 * Gates that bind: what ships is exactly the last checkpoint a gate saw, every path that makes a
 * checkpoint passes the protected-path gate, and the agent's budgets hold from the first call. The
 * real task workflow on the real dev server, a worker whose commands run in gVisor, a real git origin,
 * and the real Gemini client talking to a scripted loopback server.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { startFakeGemini, type FakeGemini } from './support/fake-gemini';
import { git, makeOriginRepo, tempDir } from './support/git-fixture';
import { call, eventually } from './support/http';
import { taskApi } from './support/task-api';
import { recordHistory, recorded } from './support/histories';
import { startTestStack, startTestTemporal } from './support/stack';
import { Worker } from '@temporalio/worker';
import { WORKFLOWS_PATH } from '../workers/worker';

const FILES = {
  'README.md': '# fixture\n',
  'deploy/prod.yaml': 'replicas: 1\n',
  '.agent/policy.yaml': 'protected_paths:\n  - deploy/**\n',
};
const usage = { prompt: 200, output: 20 };

let temporal: DevServer;
let stack: Stack;
let base: string;
let dataDir: string;
let origin: string;
let gemini: FakeGemini;
const saved: Record<string, string | undefined> = {};
/** Tasks this file started: one a failed test leaves open is cancelled so it cannot eat the next test's script. */
const started: string[] = [];

async function submit(planner: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'Tidy the fixture', planner, requester: 'alice', ...extra });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  started.push(res.body.task_id);
  return res.body.task_id;
}

const { task, nextItem, decide, ended, trace, cancelOpen } = taskApi(() => base);

/** A file of the branch pushed for the task, or null when the branch lacks it. */
function shipped(id: string, file: string): string | null {
  try {
    return git(origin, 'show', `agent/${id}:${file}`);
  } catch {
    return null;
  }
}

describe('gates that bind', () => {
  before(async () => {
    temporal = await startTestTemporal();
    for (const k of ['GEMINI_API_KEY', 'GOOGLE_GEMINI_BASE_URL', 'GOOGLE_API_KEY']) saved[k] = process.env[k];
    delete process.env.GOOGLE_API_KEY;
    const root = tempDir('gates');
    origin = makeOriginRepo(root, FILES);
    dataDir = path.join(root, 'data');
    stack = await startTestStack(temporal, dataDir, `gates-${process.pid}`, { SANDBOX_DRIVER: 'gvisor' });
    base = stack.url!;
  });

  // A fresh model server per test: a test that fails early leaves no scripted replies for the next one.
  beforeEach(async () => {
    gemini = await startFakeGemini();
    process.env.GEMINI_API_KEY = gemini.apiKey;
    process.env.GOOGLE_GEMINI_BASE_URL = gemini.url;
  });

  afterEach(async () => {
    await cancelOpen(started.splice(0));
    await gemini.close();
  });

  after(async () => {
    await stack?.stop();
    await temporal?.stop();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it('gates a self-check command that rewrites a protected path, and a rejection keeps the change out of what ships', async () => {
    gemini.script([
      { text: '1. Add a check script\n2. Finish', usage },
      { calls: [{ name: 'write_file', args: { path: 'check.sh', content: 'echo "replicas: 0" > deploy/prod.yaml\necho checks pass\n' } }], usage },
      { calls: [{ name: 'finish', args: { summary: 'Added a check.', risks: 'none', how_to_test: 'sh check.sh' } }], usage },
    ]);
    const id = await submit({ kind: 'llm', model: 'gemini-2.5-flash', check_commands: ['sh check.sh'] });
    const item = await nextItem(id, ['risky_action', 'pr_review']);
    assert.equal(item.kind, 'risky_action', 'the check changed deploy/prod.yaml: a human must see it before review');
    assert.deepEqual(item.detail.paths, ['deploy/prod.yaml']);
    assert.match(item.detail.diff_preview, /^\+replicas: 0$/m);
    await decide(id, item, { action: 'reject', comment: 'checks must not touch deploy/' });

    const review = await nextItem(id, ['pr_review']);
    assert.doesNotMatch(review.detail.diff_stat, /deploy/);
    assert.equal(shipped(id, 'deploy/prod.yaml'), 'replicas: 1');
    assert.equal(shipped(id, 'check.sh')?.split('\n')[1], 'echo checks pass');
    await recordHistory(stack.client, id, 'llm-check-gated-pending-review');
    await decide(id, review, { action: 'reject' });
    await ended(id);
  });

  it('asks before running a check command that matches an approval pattern, and does not run a rejected one', async () => {
    gemini.script([
      { text: '1. Note\n2. Finish', usage },
      { calls: [{ name: 'write_file', args: { path: 'NOTES.md', content: 'tidy\n' } }], usage },
      { calls: [{ name: 'finish', args: { summary: 'Noted.', risks: 'none', how_to_test: 'none' } }], usage },
    ]);
    const id = await submit(
      { kind: 'llm', model: 'gemini-2.5-flash', check_commands: ['touch check-ran.txt'] },
      { policy: { approval_commands: ['^touch\\b'] } },
    );
    const item = await nextItem(id, ['risky_action', 'pr_review']);
    assert.equal(item.kind, 'risky_action', 'a check command is a command: approval_commands apply');
    assert.equal(item.detail.command, 'touch check-ran.txt');
    await decide(id, item, { action: 'reject' });

    const review = await nextItem(id, ['pr_review']);
    assert.equal(shipped(id, 'NOTES.md'), 'tidy');
    assert.equal(shipped(id, 'check-ran.txt'), null, 'the rejected check did not run');
    assert.ok((await trace(id)).some((e) => e.type === 'check' && /not run/.test(e.message)));
    await decide(id, review, { action: 'reject' });
    await ended(id);
  });

  it('gates an approved protected write again when a process left running rewrote the file before the checkpoint', async () => {
    // The agent starts a process that, a moment later, rewrites deploy/prod.yaml without pause; then asks to write it.
    const rewriter = `(sleep 3; exec perl -e 'while (1) { open(my $f, ">", "deploy/prod.yaml"); print $f "replicas: 99\\n"; close $f }') > /dev/null 2>&1 < /dev/null &`;
    gemini.script([
      { text: '1. Scale up\n2. Finish', usage },
      { calls: [{ name: 'run', args: { command: rewriter } }], usage },
      { calls: [{ name: 'write_file', args: { path: 'deploy/prod.yaml', content: 'replicas: 2\n' } }], usage },
      { calls: [{ name: 'write_file', args: { path: 'NOTES.md', content: 'scaled\n' } }], usage },
      { calls: [{ name: 'finish', args: { summary: 'Scaled up.', risks: 'none', how_to_test: 'none' } }], usage },
    ]);
    const id = await submit({ kind: 'llm', model: 'gemini-2.5-flash', check_commands: [] });
    const shown = await nextItem(id, ['risky_action', 'pr_review']);
    assert.equal(shown.detail.tool, 'write_file');
    assert.match(shown.detail.preview, /replicas: 2/);
    // Approved once the rewriter runs: the human approved "replicas: 2", not what lands in the checkpoint.
    await new Promise((r) => setTimeout(r, 4_000));
    await decide(id, shown, { action: 'approve' });

    const again = await nextItem(id, ['risky_action', 'pr_review']);
    assert.equal(again.kind, 'risky_action', 'what the checkpoint holds is not what was approved: a human must see it');
    assert.deepEqual(again.detail.paths, ['deploy/prod.yaml']);
    assert.doesNotMatch(again.detail.diff_preview, /^\+replicas: 2$/m);
    await decide(id, again, { action: 'reject' });

    const review = await nextItem(id, ['pr_review']);
    assert.equal(shipped(id, 'deploy/prod.yaml'), 'replicas: 1');
    assert.equal(shipped(id, 'NOTES.md'), 'scaled');
    await decide(id, review, { action: 'reject' });
    await ended(id);
  });

  it('ships the gated checkpoint of a recipe, not what a process the last step left behind wrote after it', async () => {
    // The step's change is gated; while the human looks, its background writer rewrites the file and adds another.
    const writer = '(sleep 1; echo "replicas: 99" > deploy/prod.yaml; echo late > late.txt) >/dev/null 2>&1 &';
    const id = await submit({ kind: 'recipe', steps: [{ run: `echo "replicas: 2" > deploy/prod.yaml; ${writer}` }] });
    const item = await nextItem(id, ['risky_action']);
    assert.match(item.detail.diff_preview, /^\+replicas: 2$/m);
    // Give the writer its chance to land (it may also have been stopped when the step ended: both must hold).
    const late = path.join(dataDir, 'workspaces', id, 'late.txt');
    await eventually(async () => fs.existsSync(late), (x) => x, 'the late write', 10_000).catch(() => undefined);
    await decide(id, item, { action: 'approve' });

    const review = await nextItem(id, ['pr_review']);
    assert.equal(shipped(id, 'deploy/prod.yaml'), 'replicas: 2', 'what ships is what the human approved');
    assert.equal(shipped(id, 'late.txt'), null);
    assert.doesNotMatch(review.detail.diff_stat, /late\.txt/);
    await recordHistory(stack.client, id, 'recipe-gated-publish-pending-review');
    await decide(id, review, { action: 'reject' });
    await ended(id);
  });

  it('checks the first model call against the dollar budget before making it', async () => {
    gemini.script([
      { text: '1. Finish', usage },
      { calls: [{ name: 'finish', args: { summary: 'Nothing to do.', risks: 'none', how_to_test: 'none' } }], usage },
    ]);
    const id = await submit({ kind: 'llm', model: 'gemini-2.5-flash' }, { budget: { max_usd: 0.0001 } });
    const item = await nextItem(id, ['budget_request']);
    assert.equal(item.detail.exhausted, 'max_usd');
    assert.ok(item.detail.next_call_estimate.usd > 0.0001, JSON.stringify(item.detail.next_call_estimate));
    assert.ok(item.detail.next_call_estimate.usd > (8_192 * 2.5) / 1e6, 'the estimate prices the first prompt, not just the output cap');
    assert.equal(gemini.requests.length, 0, 'no model call was made past the budget');
    await decide(id, item, { action: 'grant_budget', budget: { max_usd: 5 } });
    const t = await ended(id);
    assert.equal(t.state, 'done', t.result);
    assert.equal(gemini.pending(), 0);
  });

  it('raises a stuck alert when no tool call makes progress within the idle cap, and goes on after a message', async () => {
    gemini.script([
      { text: '1. Wait for the build\n2. Finish', usage },
      { calls: [{ name: 'run', args: { command: 'sleep 600' } }], usage },
      (body) => {
        const sent = JSON.stringify(body.contents);
        assert.match(sent, /no tool call made progress/, 'the model is told why its command was stopped');
        assert.match(sent, /stop waiting/, "and gets the human's message");
        return { calls: [{ name: 'finish', args: { summary: 'Gave up waiting.', risks: 'none', how_to_test: 'none' } }], usage };
      },
    ]);
    const id = await submit({ kind: 'llm', model: 'gemini-2.5-flash' }, { budget: { max_idle_minutes: 0.05 } });
    const item = await nextItem(id, ['health_alert']);
    assert.equal(item.detail.reason, 'idle');
    assert.equal((await task(id)).state, 'stuck');
    const msg = await call(base, 'POST', `/v1/tasks/${id}/messages`, { text: 'stop waiting and finish', actor: 'oncall' });
    assert.equal(msg.status, 200, JSON.stringify(msg.body));
    const t = await ended(id);
    assert.equal(t.state, 'done', t.result);
    assert.equal(gemini.pending(), 0);
    await recordHistory(stack.client, id, 'llm-idle-stuck-done');
  });

  it('ends an idle LLM task when the human cancels from the stuck alert', async () => {
    gemini.script([
      { text: '1. Wait', usage },
      { calls: [{ name: 'run', args: { command: 'sleep 600' } }], usage },
    ]);
    const id = await submit({ kind: 'llm', model: 'gemini-2.5-flash' }, { budget: { max_idle_minutes: 0.05 } });
    const item = await nextItem(id, ['health_alert']);
    assert.equal(item.detail.reason, 'idle');
    await decide(id, item, { action: 'cancel' });
    assert.equal((await ended(id)).state, 'cancelled');
  });

  it('replays the histories it recorded against the current workflow code', async () => {
    assert.ok(recorded.length >= 3);
    for await (const result of Worker.runReplayHistories({ workflowsPath: WORKFLOWS_PATH }, recorded)) {
      assert.equal(result.error, undefined, `${result.workflowId}: ${String(result.error)}`);
    }
  });
});
