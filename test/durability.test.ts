/**
 * Crash and restart behaviour with real processes: a worker killed with SIGKILL
 * mid-step, and the whole backend stopped and started again on the same DATA_DIR.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { branchCommit, git, makeOriginRepo, tempDir } from './support/git-fixture';
import { authorize, call, eventually, freePort } from './support/http';
import { backendHealthy, exited, spawnBackend } from './support/backend-process';
import { adminTokenOf, removeSandboxes, stackEnv, startTestStack, startTestTemporal } from './support/stack';

async function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('a worker killed with SIGKILL mid-step', () => {
  let temporal: DevServer;
  let api: Stack;
  const children: ChildProcess[] = [];

  before(async () => {
    temporal = await startTestTemporal();
  });
  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    await api?.stop();
    await temporal?.stop();
  });

  it('finishes the task exactly once, with one commit and one push', async () => {
    const root = tempDir('sigkill');
    const origin = makeOriginRepo(root, { 'README.md': 'fixture\n' });
    const dataDir = path.join(root, 'data');
    const queue = `sigkill-${process.pid}`;
    api = await startTestStack(temporal, dataDir, queue, { ROLES: 'api' });
    const base = api.url!;
    // The worker runs its commands in gVisor: the sandbox outlives the killed worker and the next one takes it over.
    const workerEnv = stackEnv(temporal, dataDir, queue, { ROLES: 'worker', SANDBOX_DRIVER: 'gvisor' });
    const logFile = path.join(root, 'worker.log');
    const first = spawnBackend(workerEnv, logFile);
    children.push(first);

    const res = await call(base, 'POST', '/v1/tasks', {
      repo: origin,
      goal: 'Append to the log',
      planner: { kind: 'recipe', steps: [{ run: 'echo start >> log.txt; sleep 4; echo end >> log.txt' }] },
    });
    assert.equal(res.status, 202);
    const id = res.body.task_id;
    const logInCopy = path.join(dataDir, 'workspaces', id, 'log.txt');
    await eventually(async () => fs.existsSync(logInCopy), Boolean, 'the step to start', 60_000);

    first.kill('SIGKILL');
    await exited(first);
    const second = spawnBackend(workerEnv, logFile);
    children.push(second);

    const review = await eventually(
      () => call(base, 'GET', `/v1/tasks/${id}`),
      (r) => r.body.items?.some((i: any) => i.kind === 'pr_review' && i.status === 'pending'),
      'the review item after the restart',
      90_000,
    );
    assert.equal(git(origin, 'show', `agent/${id}:log.txt`), 'start\nend', 'the step took effect exactly once');
    assert.equal(git(origin, 'rev-list', '--count', `main..agent/${id}`), '1', 'one commit');
    const item = review.body.items.find((i: any) => i.kind === 'pr_review');
    assert.equal((await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'approve' })).status, 200);
    const done = await eventually(() => call(base, 'GET', `/v1/tasks/${id}`), (r) => r.body.state === 'done', 'done');
    assert.equal(done.body.usage.steps, 1);
    const trace = await call(base, 'GET', `/v1/tasks/${id}/trace`);
    assert.equal(trace.body.entries.filter((e: any) => e.type === 'pushed').length, 1, 'pushed once');
    assert.match(trace.body.entries.find((e: any) => e.type === 'provisioned').message, /driver gvisor, isolation: gvisor/);
    assert.equal(trace.body.entries.filter((e: any) => e.type === 'ended').length, 1, 'ended once');
    second.kill('SIGTERM');
    await exited(second);
  });
});

describe('the whole stack restarted on the same DATA_DIR', () => {
  let child: ChildProcess | null = null;
  let dataDir: string | null = null;
  after(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await exited(child);
    }
    if (dataDir) await removeSandboxes(dataDir);
  });

  it('keeps open tasks in the inbox, and they can still be approved', async () => {
    const root = tempDir('restart');
    const origin = makeOriginRepo(root, { 'README.md': 'fixture\n' });
    const [apiPort, temporalPort, uiPort] = [await freePort(), await freePort(), await freePort()];
    const data = path.join(root, 'data');
    dataDir = data;
    const env = {
      DATA_DIR: data,
      PORT: String(apiPort),
      TEMPORAL_PORT: String(temporalPort),
      TEMPORAL_UI_PORT: String(uiPort),
      LOG_LEVEL: 'info',
      SANDBOX_DRIVER: 'gvisor',
    };
    const base = `http://127.0.0.1:${apiPort}`;
    const logFile = path.join(root, 'stack.log');
    child = spawnBackend(env, logFile);
    const health = await backendHealthy(child, base, logFile);
    // A restart keeps the admin token: read it from the file at each call.
    authorize(base, () => adminTokenOf(data));
    assert.equal(health.body.sandbox.driver, 'gvisor');
    assert.equal(health.body.isolation_warning, undefined);
    const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'Survive a restart', planner: { kind: 'recipe', steps: [{ run: 'echo kept > kept.txt' }] } });
    assert.equal(res.status, 202);
    const id = res.body.task_id;
    await eventually(() => call(base, 'GET', '/v1/inbox'), (r) => r.body.items?.some((i: any) => i.task_id === id), 'the item in the inbox', 60_000);

    child.kill('SIGTERM');
    assert.equal(await exited(child), 0, fs.readFileSync(logFile, 'utf8').slice(-2_000));
    assert.equal(await portOpen(temporalPort), false, 'the embedded Temporal server stopped with the stack');

    child = spawnBackend(env, logFile);
    await backendHealthy(child, base, logFile);
    const inbox = await eventually(() => call(base, 'GET', '/v1/inbox'), (r) => r.body.items?.some((i: any) => i.task_id === id), 'the item after the restart', 60_000);
    const item = inbox.body.items.find((i: any) => i.task_id === id);
    assert.equal(item.kind, 'pr_review');
    const ok = await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'approve', actor: 'after-restart' });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    await eventually(() => call(base, 'GET', `/v1/tasks/${id}`), (r) => r.body.state === 'done', 'done after the restart');
    assert.ok(branchCommit(origin, `agent/${id}`));
  });
});
