/**
 * Approval commands read from a real shell parse inside the workflow sandbox: the parser
 * loads in the workflow bundle and holds commands that the old pattern matcher let through.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { branchCommit, makeOriginRepo, tempDir } from './support/git-fixture';
import { call, eventually } from './support/http';
import { startTestStack, startTestTemporal } from './support/stack';

let temporal: DevServer;
let stack: Stack;
let base: string;
let origin: string;

before(async () => {
  temporal = await startTestTemporal();
  const root = tempDir('shell-approval');
  origin = makeOriginRepo(root, {
    'README.md': '# fixture\n',
    '.agent/policy.yaml': 'approval_commands:\n  - "^deploy\\\\b"\n',
  });
  stack = await startTestStack(temporal, path.join(root, 'data'), `shell-approval-${process.pid}`);
  base = stack.url!;
});

after(async () => {
  await stack?.stop();
  await temporal?.stop();
});

async function task(id: string): Promise<any> {
  const res = await call(base, 'GET', `/v1/tasks/${id}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

/** Submits a one-step recipe and returns the risky_action item it raises before running the step. */
async function riskyItemFor(run: string): Promise<{ id: string; item: any }> {
  const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'Ship it', planner: { kind: 'recipe', steps: [{ run }] } });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const id: string = res.body.task_id;
  const t = await eventually(
    () => task(id),
    (t) => t.state !== 'queued' && t.state !== 'provisioning' && t.state !== 'planning' && t.state !== 'running',
    `${id} to stop before its step`,
  );
  const item = t.items.find((i: any) => i.kind === 'risky_action' && i.status === 'pending');
  assert.ok(item, `${JSON.stringify(run)} raised no risky_action; task went to ${t.state}`);
  return { id, item };
}

/** Rejects the item and checks the step never ran. */
async function rejectAndCheckNotRun(id: string, itemId: string): Promise<void> {
  const res = await call(base, 'POST', `/v1/tasks/${id}/inbox/${itemId}`, { action: 'reject' });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const t = await eventually(() => task(id), (t) => t.state === 'rejected', `${id} to be rejected`);
  assert.equal(t.usage.steps, 0, 'the step did not run');
  assert.equal(branchCommit(origin, `agent/${id}`), null);
}

describe('approval commands in the workflow', () => {
  it('holds a command hidden in sh -c behind split quotes', async () => {
    const { id, item } = await riskyItemFor("sh -c 'dep''loy --prod > deployed.txt'");
    assert.equal(item.detail.matched, '^deploy\\b');
    await rejectAndCheckNotRun(id, item.item_id);
  });

  it('holds a command whose name is computed', async () => {
    const { id, item } = await riskyItemFor('x=deploy; $x --prod > deployed.txt');
    assert.equal(item.detail.matched, 'computed command name');
    await rejectAndCheckNotRun(id, item.item_id);
  });
});
