/**
 * Hooks of the repository the worker pushes to never run in the worker: a whole task through publish,
 * and a rejected task's branch deletion, against a real local origin whose hooks write marker files.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { branchCommit, git, makeOriginRepo, tempDir } from './support/git-fixture';
import { markers, plantHooks } from './support/hooks';
import { call, eventually } from './support/http';
import { startTestStack, startTestTemporal } from './support/stack';

let temporal: DevServer;
let stack: Stack;
let base: string;
let origin: string;
let markerDir: string;

before(async () => {
  temporal = await startTestTemporal();
  const root = tempDir('git-hooks');
  origin = makeOriginRepo(root, { 'README.md': '# fixture\n' });
  markerDir = path.join(root, 'markers');
  fs.mkdirSync(markerDir);
  // Hooks where git looks by default, and more behind the origin's own core.hooksPath.
  plantHooks(path.join(origin, 'hooks'), markerDir, 'default');
  const configured = path.join(root, 'configured-hooks');
  plantHooks(configured, markerDir, 'configured');
  git(origin, 'config', 'core.hooksPath', configured);
  stack = await startTestStack(temporal, path.join(root, 'data'), `git-hooks-${process.pid}`);
  base = stack.url!;
});

after(async () => {
  await stack?.stop();
  await temporal?.stop();
});

beforeEach(() => {
  for (const m of markers(markerDir)) fs.rmSync(path.join(markerDir, m));
});

async function submit(): Promise<string> {
  const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'Touch the readme', planner: { kind: 'recipe', steps: [{ run: 'echo more >> README.md' }] } });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body.task_id;
}

async function review(id: string): Promise<any> {
  const t = await eventually(
    () => call(base, 'GET', `/v1/tasks/${id}`),
    (r) => r.body.items?.some((i: any) => i.kind === 'pr_review' && i.status === 'pending') || ['failed', 'done', 'rejected', 'cancelled'].includes(r.body.state),
    `${id} to open a review`,
  );
  const item = t.body.items.find((i: any) => i.kind === 'pr_review' && i.status === 'pending');
  assert.ok(item, `no review; task is ${t.body.state}: ${t.body.result}`);
  return item;
}

async function settled(id: string, state: string): Promise<any> {
  return (await eventually(() => call(base, 'GET', `/v1/tasks/${id}`), (r) => r.body.state === state, `${id} to reach ${state}`)).body;
}

describe('pushing to a local origin with hooks', () => {
  it('the hooks are live: an ordinary push runs them (control)', () => {
    const seed = tempDir('git-hooks-seed');
    git(seed, 'clone', '--quiet', origin, 'c');
    const clone = path.join(seed, 'c');
    git(clone, 'commit', '--allow-empty', '-m', 'control');
    git(clone, 'push', '--quiet', 'origin', 'HEAD:refs/heads/control');
    assert.ok(markers(markerDir).includes('pre-receive-configured'), markers(markerDir).join(', '));
    assert.ok(markers(markerDir).includes('post-receive-configured'));
    assert.ok(markers(markerDir).includes('reference-transaction-configured'));
  });

  it('publishes a task and completes it without running any hook of the origin', async () => {
    const id = await submit();
    const item = await review(id);
    const pushed = branchCommit(origin, `agent/${id}`);
    assert.ok(pushed, 'the push landed');
    assert.match(git(origin, 'show', `agent/${id}:README.md`), /more/);
    const ok = await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'approve', actor: 'bob' });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    await settled(id, 'done');
    assert.deepEqual(markers(markerDir), []);
  });

  it('deletes a rejected task\'s branch without running any hook of the origin', async () => {
    const id = await submit();
    const item = await review(id);
    assert.ok(branchCommit(origin, `agent/${id}`), 'the push landed');
    assert.deepEqual(markers(markerDir), [], 'no hook ran on publish');
    const no = await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'reject', actor: 'bob' });
    assert.equal(no.status, 200, JSON.stringify(no.body));
    const t = await settled(id, 'rejected');
    assert.equal(branchCommit(origin, `agent/${id}`), null, `branch deleted; result: ${t.result}`);
    assert.deepEqual(markers(markerDir), []);
  });
});
