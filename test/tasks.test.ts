/**
 * End-to-end behaviour of tasks through the HTTP API, on a real Temporal dev server,
 * a real worker and real local git repositories.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { branchCommit, git, makeOriginRepo, tempDir } from './support/git-fixture';
import { call, eventually } from './support/http';
import { recordHistory, recorded } from './support/histories';
import { Worker } from '@temporalio/worker';
import { WORKFLOWS_PATH } from '../workers/worker';
import { startTestStack, startTestTemporal } from './support/stack';
import { createActivities } from '../activities';
import { ArtifactStore } from '../activities/artifacts/store';
import { ProcessSandboxDriver } from '../activities/sandbox/process';
import { createLogger } from '../workers/log';
import { reapOrphanSandboxes } from '../workers/reaper';

const quiet = createLogger({ level: 'error', component: 'test' });

let temporal: DevServer;
let stack: Stack;
let base: string;
let dataDir: string;
let origin: string;

const FILES = {
  'README.md': '# fixture\n',
  'src/greeting.txt': 'hello world\n',
  'secrets/config.env': 'TOKEN=placeholder\n',
  '.agent/policy.yaml': 'protected_paths:\n  - secrets/**\napproval_commands:\n  - "^deploy\\\\b"\n',
};

before(async () => {
  temporal = await startTestTemporal();
  const root = tempDir('tasks');
  dataDir = path.join(root, 'data');
  origin = makeOriginRepo(root, FILES);
  stack = await startTestStack(temporal, dataDir, `tasks-${process.pid}`);
  base = stack.url!;
});

after(async () => {
  await stack?.stop();
  await temporal?.stop();
});

/** Submits a recipe task and returns its id. */
async function submit(steps: object[], extra: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<string> {
  const res = await call(base, 'POST', '/v1/tasks', {
    repo: origin,
    goal: 'Fix the greeting\n\nMake it friendlier.',
    planner: { kind: 'recipe', steps },
    requester: 'alice',
    ...extra,
  }, headers);
  assert.equal(res.status, 202, JSON.stringify(res.body));
  assert.equal(res.headers.get('location'), `/v1/tasks/${res.body.task_id}`);
  return res.body.task_id;
}

async function task(id: string): Promise<any> {
  const res = await call(base, 'GET', `/v1/tasks/${id}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

/** Waits until the task has a pending item of `kind` and returns it. */
async function pendingItem(id: string, kind: string): Promise<any> {
  const t = await eventually(() => task(id), (t) => t.items.some((i: any) => i.status === 'pending' && i.kind === kind), `${kind} on ${id}`);
  return t.items.find((i: any) => i.status === 'pending' && i.kind === kind);
}

async function settledState(id: string, state: string, timeoutMs = 30_000): Promise<any> {
  return eventually(() => task(id), (t) => t.state === state, `${id} to reach ${state}`, timeoutMs);
}

async function decide(id: string, itemId: string, body: object): Promise<{ status: number; body: any }> {
  return call(base, 'POST', `/v1/tasks/${id}/inbox/${itemId}`, body);
}

function sandboxGone(id: string): boolean {
  return !fs.existsSync(path.join(dataDir, 'sandboxes', id)) && !fs.existsSync(path.join(dataDir, 'workspaces', id));
}

describe('a recipe task', () => {
  it('runs to a review item, lists in the inbox, and completes on approval', async () => {
    const id = await submit([{ name: 'friendlier', run: "sed -i 's/hello world/hello, friend/' src/greeting.txt" }], { priority: 2, labels: ['demo'] });
    const item = await pendingItem(id, 'pr_review');
    assert.match(item.detail.diff_preview, /\+hello, friend/);
    assert.match(item.detail.summary, /## Goal[\s\S]*## Changes[\s\S]*## Risks[\s\S]*## How to test/);
    assert.equal(item.detail.branch, `agent/${id}`);

    const inbox = await eventually(
      () => call(base, 'GET', '/v1/inbox?kind=pr_review&requester=local-admin'),
      (r) => r.body.items?.some((i: any) => i.task_id === id),
      'the review item in the inbox',
    );
    const listed = inbox.body.items.find((i: any) => i.task_id === id);
    assert.equal(listed.item_id, item.item_id);
    assert.equal(listed.priority, 2);

    const pushed = branchCommit(origin, `agent/${id}`);
    assert.ok(pushed, 'branch pushed to origin');
    assert.equal(git(origin, 'rev-list', '--count', `main..agent/${id}`), '1');
    assert.equal(git(origin, 'show', `agent/${id}:src/greeting.txt`), 'hello, friend');

    const ok = await decide(id, item.item_id, { action: 'approve', actor: 'bob' });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const done = await settledState(id, 'done');
    assert.match(done.result, /approved by local admin/);
    assert.ok(sandboxGone(id), 'sandbox and working copy removed');
    const trace = await call(base, 'GET', `/v1/tasks/${id}/trace`);
    assert.ok(trace.body.entries.some((e: any) => e.type === 'decision' && e.actor === 'local admin' && e.data?.by?.subject === 'local-admin'));
    const after = await call(base, 'GET', '/v1/inbox');
    assert.ok(!after.body.items.some((i: any) => i.task_id === id), 'no longer in the inbox');
    await recordHistory(stack.client, id, 'happy-path');
  });

  it('refuses a decision on an item that is no longer pending, or of the wrong kind', async () => {
    const id = await submit([{ run: 'echo more >> README.md' }], { policy: { approval_commands: ['^echo more'] } });
    const risky = await pendingItem(id, 'risky_action');
    const wrong = await decide(id, risky.item_id, { action: 'grant_budget', budget: { max_steps: 1 } });
    assert.equal(wrong.status, 409);
    assert.equal(wrong.body.error.code, 'invalid_decision');
    assert.match(wrong.body.error.message, /does not apply to a risky_action item/);
    const unknown = await decide(id, 'risky_action-999', { action: 'approve' });
    assert.equal(unknown.status, 404);
    assert.equal((await decide(id, risky.item_id, { action: 'approve', actor: 'carol' })).status, 200);
    const review = await pendingItem(id, 'pr_review');
    const stale = await decide(id, risky.item_id, { action: 'reject', actor: 'dave' });
    assert.equal(stale.status, 409);
    assert.equal(stale.body.error.code, 'stale_decision');
    assert.match(stale.body.error.message, /approve by local admin/);
    assert.equal((await task(id)).state, 'pr_open', 'the stale decision changed nothing');
    assert.equal((await decide(id, review.item_id, { action: 'approve', actor: 'carol' })).status, 200);
    await settledState(id, 'done');
    const late = await decide(id, review.item_id, { action: 'reject', actor: 'dave' });
    assert.equal(late.status, 409);
    assert.equal(late.body.error.code, 'stale_decision');
    assert.match(late.body.error.message, /task has ended \(done\)/);
  });

  it('returns to running on request_changes and deletes the branch on reject', async () => {
    const id = await submit([{ run: 'echo "round $AGENT_ROUND ${AGENT_FEEDBACK:-}" >> notes.txt' }]);
    const first = await pendingItem(id, 'pr_review');
    assert.equal((await decide(id, first.item_id, { action: 'request_changes', comment: 'add more', actor: 'erin' })).status, 200);
    const second = await eventually(() => task(id), (t) => t.items.some((i: any) => i.status === 'pending' && i.kind === 'pr_review' && i.item_id !== first.item_id), 'second review');
    assert.equal(second.round, 2);
    assert.equal(git(origin, 'rev-list', '--count', `main..agent/${id}`), '2');
    assert.match(git(origin, 'show', `agent/${id}:notes.txt`), /round 2 add more/);
    const item2 = second.items.find((i: any) => i.status === 'pending');
    assert.equal((await decide(id, item2.item_id, { action: 'reject', actor: 'erin' })).status, 200);
    const end = await settledState(id, 'rejected');
    assert.equal(end.branch, `agent/${id}`);
    await eventually(async () => branchCommit(origin, `agent/${id}`), (c) => c === null, 'branch deleted');
    assert.ok(sandboxGone(id));
  });

  it('ends without a branch when the recipe changes nothing', async () => {
    const id = await submit([{ run: 'true' }]);
    const t = await settledState(id, 'done');
    assert.match(t.result, /changed nothing/);
    assert.equal(branchCommit(origin, `agent/${id}`), null);
  });
});

describe('policy gates', () => {
  it('holds a command matching approval_commands until it is approved', async () => {
    const id = await submit([{ run: 'deploy() { echo deployed > deployed.txt; }; deploy' }], { policy: { approval_commands: ['deploy\\(\\)'] } });
    const item = await pendingItem(id, 'risky_action');
    assert.equal((await task(id)).state, 'awaiting_approval');
    assert.match(item.detail.command, /deploy/);
    assert.ok(!fs.existsSync(path.join(dataDir, 'workspaces', id, 'deployed.txt')), 'command has not run');
    assert.equal((await decide(id, item.item_id, { action: 'approve', actor: 'ops' })).status, 200);
    const review = await pendingItem(id, 'pr_review');
    assert.match(review.detail.summary, /Run command: .*\(approved by local admin\)/);
    await recordHistory(stack.client, id, 'risky-approved-pending-review');
  });

  it('ends the task as rejected when the risky command is rejected, without running it', async () => {
    const id = await submit([{ run: 'deploy --prod' }]);
    const item = await pendingItem(id, 'risky_action');
    assert.equal(item.detail.matched, '^deploy\\b', 'pattern from the repo policy');
    assert.equal((await decide(id, item.item_id, { action: 'reject', actor: 'ops' })).status, 200);
    const t = await settledState(id, 'rejected');
    assert.equal(t.usage.steps, 0);
    assert.equal(branchCommit(origin, `agent/${id}`), null);
    assert.ok(sandboxGone(id));
  });

  it('shows the diff of protected paths before going on', async () => {
    const id = await submit([{ run: 'echo TOKEN=rotated > secrets/config.env && echo ok >> README.md' }]);
    const item = await pendingItem(id, 'risky_action');
    assert.deepEqual(item.detail.paths, ['secrets/config.env']);
    assert.match(item.detail.diff_preview, /\+TOKEN=rotated/);
    assert.doesNotMatch(item.detail.diff_preview, /README/);
    assert.equal((await decide(id, item.item_id, { action: 'approve' })).status, 200);
    await pendingItem(id, 'pr_review');
  });

  it('keeps the repo policy\'s protected paths when the task asks for none', async () => {
    // The repo protects secrets/**; a task cannot remove that, only add more.
    const id = await submit([{ run: 'echo x > secrets/new.txt' }], { policy: { protected_paths: [] } });
    const item = await pendingItem(id, 'risky_action');
    assert.deepEqual(item.detail.paths, ['secrets/new.txt']);
    assert.equal((await call(base, 'POST', `/v1/tasks/${id}/cancel`, { reason: 'test done' })).status, 200);
    await settledState(id, 'cancelled');
  });
});

describe('plan approval and the reaper', () => {
  it('waits for plan approval when policy requires it; a recipe plan cannot be sent back for changes', async () => {
    const id = await submit([{ name: 'touch', run: 'echo planned > plan.txt' }], { policy: { require_plan_approval: true } });
    const item = await pendingItem(id, 'plan_approval');
    assert.deepEqual(item.detail.steps, [{ name: 'touch', run: 'echo planned > plan.txt' }]);
    assert.equal((await task(id)).usage.steps, 0, 'nothing ran before the plan was approved');
    const changes = await decide(id, item.item_id, { action: 'request_changes', comment: 'different plan' });
    assert.equal(changes.status, 409);
    assert.match(changes.body.error.message, /recipe plan is fixed/);
    assert.equal((await decide(id, item.item_id, { action: 'approve', actor: 'lead' })).status, 200);
    await pendingItem(id, 'pr_review');
  });

  it('removes sandboxes and working copies whose task is not open', async () => {
    const orphan = path.join(dataDir, 'workspaces', 't-orphan-of-a-crash');
    fs.mkdirSync(path.join(orphan, 'src'), { recursive: true });
    const open = await submit([{ run: 'sleep 120' }]);
    await eventually(() => task(open), (t) => t.state === 'running', 'running');
    const driver = new ProcessSandboxDriver({ root: path.join(dataDir, 'sandboxes'), log: quiet });
    const activities = createActivities({ sandbox: driver, artifacts: new ArtifactStore(path.join(dataDir, 'artifacts')), dataDir, log: quiet });
    const removed = await reapOrphanSandboxes({
      client: stack.client,
      list: async () => [...new Set([...(await driver.list()), ...fs.readdirSync(path.join(dataDir, 'workspaces'))])],
      remove: (taskId) => activities.teardownSandbox({ task_id: taskId, sandbox: null }),
      log: quiet,
    });
    assert.ok(removed.includes('t-orphan-of-a-crash'));
    assert.ok(!removed.includes(open), 'an open task keeps its sandbox');
    assert.ok(!fs.existsSync(orphan));
    assert.ok(fs.existsSync(path.join(dataDir, 'workspaces', open)));
    await call(base, 'POST', `/v1/tasks/${open}/cancel`, {});
    await settledState(open, 'cancelled');
  });
});

describe('budgets and guards', () => {
  it('pauses on a budget request and continues the same run after a grant', async () => {
    const id = await submit([{ run: 'echo one >> a.txt' }, { run: 'echo two >> a.txt' }], { budget: { max_steps: 1 } });
    const item = await pendingItem(id, 'budget_request');
    const t = await task(id);
    assert.equal(t.state, 'awaiting_budget');
    assert.equal(t.usage.steps, 1);
    const inbox = await eventually(() => call(base, 'GET', '/v1/inbox?kind=budget_request'), (r) => r.body.items.some((i: any) => i.task_id === id), 'budget item listed');
    assert.ok(inbox.body.items.length >= 1);
    const bad = await decide(id, item.item_id, { action: 'grant_budget' });
    assert.equal(bad.status, 400);
    assert.equal((await decide(id, item.item_id, { action: 'grant_budget', budget: { max_steps: 1 }, actor: 'lead' })).status, 200);
    await pendingItem(id, 'pr_review');
    const after = await task(id);
    assert.equal(after.usage.steps, 2);
    assert.equal(after.budget.max_steps, 2);
    assert.equal(git(origin, 'show', `agent/${id}:a.txt`), 'one\ntwo');
    await recordHistory(stack.client, id, 'budget-grant-pending-review');
  });

  it('ends timed_out at the wall-clock cap, cancelling the step and removing the sandbox', async () => {
    const id = await submit([{ run: 'sleep 120' }], { budget: { max_wall_clock_minutes: 0.05 } });
    const t = await settledState(id, 'timed_out', 40_000);
    assert.ok(sandboxGone(id));
    const trace = await call(base, 'GET', `/v1/tasks/${id}/trace`);
    assert.ok(trace.body.entries.some((e: any) => e.type === 'health' && /wall-clock cap/.test(e.message)));
    assert.equal(t.items.filter((i: any) => i.status === 'pending').length, 0);
  });

  it('raises a stuck alert when no step succeeds within the idle cap, and retries after a message', async () => {
    // The same cap also runs from the message to the retried step's push, which takes several
    // seconds on a loaded machine: 12 s leaves that room without a long first wait.
    const id = await submit([{ run: '[ -n "${AGENT_MESSAGE:-}" ] || sleep 120; echo "$AGENT_MESSAGE" > msg.txt' }], { budget: { max_idle_minutes: 0.2 } });
    const item = await pendingItem(id, 'health_alert');
    assert.equal((await task(id)).state, 'stuck');
    assert.equal(item.detail.reason, 'idle');
    const msg = await call(base, 'POST', `/v1/tasks/${id}/messages`, { text: 'go ahead', actor: 'oncall' });
    assert.equal(msg.status, 200, JSON.stringify(msg.body));
    assert.equal(msg.body.item.item_id, item.item_id);
    await pendingItem(id, 'pr_review');
    assert.equal(git(origin, 'show', `agent/${id}:msg.txt`), 'go ahead');
  });

  it('raises a health alert for a failing step and lets a human cancel', async () => {
    const id = await submit([{ run: 'echo broken >&2; exit 3' }]);
    const item = await pendingItem(id, 'health_alert');
    assert.equal(item.detail.exit_code, 3);
    assert.match(item.detail.output_preview, /broken/);
    const res = await decide(id, item.item_id, { action: 'cancel', actor: 'oncall' });
    assert.equal(res.status, 200);
    await settledState(id, 'cancelled');
    assert.ok(sandboxGone(id));
  });

  it('cancels a running step and tears the sandbox down', async () => {
    const id = await submit([{ run: 'sleep 120' }]);
    await eventually(() => task(id), (t) => t.state === 'running', 'running');
    const res = await call(base, 'POST', `/v1/tasks/${id}/cancel`, { reason: 'not needed', actor: 'alice' });
    assert.equal(res.status, 200);
    const t = await settledState(id, 'cancelled');
    assert.match(t.result, /cancelled by local admin: not needed/);
    assert.ok(sandboxGone(id));
    const again = await call(base, 'POST', `/v1/tasks/${id}/cancel`, {});
    assert.equal(again.status, 409);
  });
});

describe('intake', () => {
  it('refuses bad input with a clear 4xx and starts nothing', async () => {
    const count = async () => (await call(base, 'GET', '/v1/tasks?limit=500')).body.tasks.length;
    const before = await count();
    const good = { repo: origin, goal: 'x', planner: { kind: 'recipe', steps: [{ run: 'true' }] } };
    const malformed = await call(base, 'POST', '/v1/tasks', '{"repo": ');
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body.error.code, 'invalid_json');
    const wrongType = await call(base, 'POST', '/v1/tasks', { ...good, budget: { max_steps: 'ten' }, priority: 9 });
    assert.equal(wrongType.status, 400);
    const paths = wrongType.body.error.details.map((d: any) => d.path);
    assert.ok(paths.includes('budget.max_steps') && paths.includes('priority'), JSON.stringify(paths));
    const unknown = await call(base, 'POST', '/v1/tasks', { ...good, colour: 'blue' });
    assert.equal(unknown.status, 400);
    assert.match(JSON.stringify(unknown.body.error.details), /colour/);
    const noPlanner = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'x' });
    assert.deepEqual(noPlanner.body.error.details.map((d: any) => d.path), ['planner']);
    const badRegex = await call(base, 'POST', '/v1/tasks', { ...good, policy: { approval_commands: ['('] } });
    assert.equal(badRegex.body.error.details[0].path, 'policy.approval_commands.0');
    const huge = await call(base, 'POST', '/v1/tasks', { ...good, goal: 'x'.repeat(600 * 1024) });
    assert.equal(huge.status, 413);
    const text = await call(base, 'POST', '/v1/tasks', 'repo=x', { 'content-type': 'text/plain' });
    assert.equal(text.status, 415);
    const badKey = await call(base, 'POST', '/v1/tasks', good, { 'idempotency-key': 'has spaces' });
    assert.equal(badKey.status, 400);
    const badFilter = await call(base, 'GET', "/v1/inbox?repo=x'%20OR%20'1'='1");
    assert.equal(badFilter.status, 400);
    assert.equal((await call(base, 'GET', '/v1/inbox?kind=nope')).status, 400);
    assert.equal((await call(base, 'GET', '/v1/tasks/t-does-not-exist')).status, 404);
    assert.equal((await call(base, 'GET', '/v1/tasks/../etc')).status, 404);
    const missing = await call(base, 'POST', '/v1/tasks/t-missing/inbox/pr_review-1', { action: 'approve' });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'task_not_found');
    const rid = await call(base, 'GET', '/v1/nowhere', undefined, { 'x-request-id': 'abc-123' });
    assert.equal(rid.status, 404);
    assert.equal(rid.headers.get('x-request-id'), 'abc-123');
    assert.equal(await count(), before, 'nothing was started');
  });

  it('returns the same task for a repeated Idempotency-Key and refuses a different body with it', async () => {
    const key = { 'idempotency-key': `key-${Date.now()}` };
    const id = await submit([{ run: 'echo a >> a.txt' }], {}, key);
    const again = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'Fix the greeting\n\nMake it friendlier.', planner: { kind: 'recipe', steps: [{ run: 'echo a >> a.txt' }] }, requester: 'alice' }, key);
    assert.equal(again.status, 200);
    assert.equal(again.body.task_id, id);
    const other = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'something else', planner: { kind: 'recipe', steps: [{ run: 'true' }] }, requester: 'alice' }, key);
    assert.equal(other.status, 409);
    await call(base, 'POST', `/v1/tasks/${id}/cancel`, {});
  });

  it('fails the task with a clear reason when the repository cannot be cloned', async () => {
    const res = await call(base, 'POST', '/v1/tasks', { repo: path.join(path.dirname(dataDir), 'no-such-repo'), goal: 'x', planner: { kind: 'recipe', steps: [{ run: 'true' }] } });
    assert.equal(res.status, 202);
    const t = await settledState(res.body.task_id, 'failed');
    assert.match(t.result, /RepoUnavailable/);
  });

  it('lists tasks with filters', async () => {
    const res = await call(base, 'GET', '/v1/tasks?requester=local-admin&limit=200');
    assert.equal(res.status, 200);
    assert.ok(res.body.tasks.length >= 5);
    assert.ok(res.body.tasks.every((t: any) => t.requester === 'local-admin'));
  });
});

describe('determinism', () => {
  it('replays the histories this suite recorded against the current workflow code', async () => {
    assert.ok(recorded.length >= 3, 'histories were recorded');
    for await (const result of Worker.runReplayHistories({ workflowsPath: WORKFLOWS_PATH }, recorded)) {
      assert.equal(result.error, undefined, `${result.workflowId}: ${String(result.error)}`);
    }
  });
});
