/**
 * Several worker processes on one task queue, sharing an artifact store: each task's sandbox work goes to the
 * worker holding its sandbox; a worker killed mid-step hands its tasks to another from their checkpoints; a
 * task parked on a human gives its sandbox back and takes one again, on any worker, when it goes on.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GvisorSandboxDriver } from '../../activities/sandbox/gvisor';
import { resolveRunsc } from '../../workers/sandbox';
import { createLogger } from '../../workers/log';
import type { Stack } from '../../workers/stack';
import type { DevServer } from '../../workers/temporal-server';
import { git, makeOriginRepo, tempDir } from '../support/git-fixture';
import { call, eventually, freePort } from '../support/http';
import { backendHealthy, exited, spawnBackend } from '../support/backend-process';
import { removeSandboxes, stackEnv, startTestStack, startTestTemporal } from '../support/stack';

/** Seconds sandbox work waits for its worker's queue before the task counts the worker as gone. */
const LOST_AFTER_SECONDS = 3;
/** Minutes a parked task keeps its sandbox: three seconds. */
const RELEASE_AFTER_MINUTES = 0.05;
const TASKS = 20;

interface WorkerProcess {
  id: string;
  dataDir: string;
  child: ChildProcess;
  health: string;
}

describe('two workers on one task queue', () => {
  let temporal: DevServer;
  let api: Stack;
  let base: string;
  let root: string;
  let origin: string;
  let queue: string;
  let shared: string;
  const workers = new Map<string, WorkerProcess>();

  async function startWorker(id: string): Promise<WorkerProcess> {
    const dataDir = path.join(root, id);
    const port = await freePort();
    const env = stackEnv(temporal, dataDir, queue, {
      ROLES: 'worker',
      WORKER_ID: id,
      ARTIFACTS_DIR: shared,
      WORKER_LOST_AFTER_SECONDS: String(LOST_AFTER_SECONDS),
      SANDBOX_RELEASE_AFTER_MINUTES: String(RELEASE_AFTER_MINUTES),
      SANDBOX_DRIVER: 'gvisor',
      HEALTH_PORT: String(port),
      HOST: '127.0.0.1',
    });
    const logFile = path.join(root, `${id}.log`);
    const child = spawnBackend(env, logFile);
    const health = `http://127.0.0.1:${port}`;
    const w = { id, dataDir, child, health };
    workers.set(id, w);
    const h = await backendHealthy(child, health, logFile);
    assert.equal(h.body.worker_id, id);
    assert.equal(h.body.sandbox_queue, `${queue}@${id}`);
    return w;
  }

  async function kill(id: string): Promise<void> {
    const w = workers.get(id)!;
    w.child.kill('SIGKILL');
    await exited(w.child);
  }

  async function task(id: string): Promise<any> {
    const res = await call(base, 'GET', `/v1/tasks/${id}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body;
  }

  async function traceOf(id: string): Promise<any[]> {
    const res = await call(base, 'GET', `/v1/tasks/${id}/trace`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body.entries;
  }

  async function pending(id: string, kind: string, timeoutMs = 90_000): Promise<any> {
    const t = await eventually(() => task(id), (t) => t.items.some((i: any) => i.kind === kind && i.status === 'pending') || ['failed', 'rejected', 'done', 'stuck'].includes(t.state), `${id}: a pending ${kind}`, timeoutMs);
    const item = t.items.find((i: any) => i.kind === kind && i.status === 'pending');
    assert.ok(item, `${id} ended ${t.state} (${t.result}) without a ${kind} item`);
    return item;
  }

  async function approve(id: string, item: any): Promise<void> {
    const res = await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'approve' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }

  async function submit(steps: string[]): Promise<string> {
    const res = await call(base, 'POST', `/v1/tasks`, { repo: origin, goal: 'Write files', planner: { kind: 'recipe', steps: steps.map((run) => ({ run })) } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    return res.body.task_id;
  }

  async function workerOf(id: string): Promise<string> {
    const entries = await eventually(() => traceOf(id), (e) => e.some((x: any) => x.type === 'provisioned'), `${id} provisioned`, 60_000);
    return entries.find((x: any) => x.type === 'provisioned').data.worker;
  }

  before(async () => {
    // As a production server does: the dev server hands a workflow's activities to the worker that scheduled them, which hides
    // a task's sandbox work landing on a worker without its sandbox.
    temporal = await startTestTemporal(['--dynamic-config-value', 'system.enableActivityEagerExecution=false']);
    root = tempDir('workers');
    origin = makeOriginRepo(root, { 'README.md': 'fixture\n', '.agent/policy.yaml': 'approval_commands:\n  - "^deploy\\\\b"\n' });
    queue = `workers-${process.pid}`;
    shared = path.join(root, 'shared-artifacts');
    api = await startTestStack(temporal, path.join(root, 'api'), queue, { ROLES: 'api', ARTIFACTS_DIR: shared });
    base = api.url!;
    await Promise.all([startWorker('worker-a'), startWorker('worker-b')]);
  });

  after(async () => {
    for (const w of workers.values()) {
      if (w.child.exitCode === null && w.child.signalCode === null) {
        w.child.kill('SIGTERM');
        await exited(w.child);
      }
      await removeSandboxes(w.dataDir);
    }
    await api?.stop();
    await temporal?.stop();
  });

  it(`finishes ${TASKS} tasks of several steps spread over both, none losing its sandbox`, async () => {
    const ids: string[] = [];
    for (let i = 0; i < TASKS; i++) ids.push(await submit([`echo ${i} > n.txt`, 'cat n.txt n.txt > twice.txt']));
    for (const id of ids) await approve(id, await pending(id, 'pr_review', 180_000));
    const placed = new Set<string>();
    for (const [i, id] of ids.entries()) {
      const t = await eventually(() => task(id), (t) => ['done', 'failed'].includes(t.state), `${id} done`, 60_000);
      assert.equal(t.state, 'done', t.result);
      assert.equal(t.usage.steps, 2);
      assert.equal(git(origin, 'show', `agent/${id}:twice.txt`), `${i}\n${i}`);
      const entries = await traceOf(id);
      assert.equal(entries.filter((e) => /SandboxLost/.test(e.message)).length, 0, JSON.stringify(entries));
      assert.equal(entries.filter((e) => e.type === 'reprovisioned').length, 0, 'nothing was re-provisioned');
      placed.add(await workerOf(id));
    }
    assert.deepEqual([...placed].sort(), ['worker-a', 'worker-b'], 'both workers provisioned tasks');
  });

  it('re-provisions the tasks of a worker killed mid-step on the other, from their checkpoints, pushing once', async () => {
    const id = await submit(['echo one >> log.txt', 'echo start >> log.txt; sleep 6; echo end >> log.txt']);
    const victim = await workerOf(id);
    const survivor = victim === 'worker-a' ? 'worker-b' : 'worker-a';
    const logInCopy = path.join(workers.get(victim)!.dataDir, 'workspaces', id, 'log.txt');
    await eventually(async () => (fs.existsSync(logInCopy) ? fs.readFileSync(logInCopy, 'utf8') : ''), (s) => s.includes('start'), 'the second step to start', 60_000);
    await kill(victim);

    const review = await pending(id, 'pr_review', 120_000);
    assert.equal(git(origin, 'show', `agent/${id}:log.txt`), 'one\nstart\nend', 'the first step came from its checkpoint, the second ran once to its end');
    assert.equal(git(origin, 'rev-list', '--count', `main..agent/${id}`), '1', 'one commit');
    const entries = await traceOf(id);
    const moved = entries.filter((e) => e.type === 'reprovisioned');
    assert.equal(moved.length, 1, JSON.stringify(moved));
    assert.equal(moved[0].data.reason, 'worker_lost');
    assert.equal(moved[0].data.from_worker, victim);
    assert.equal(moved[0].data.to_worker, survivor);
    assert.match(moved[0].message, new RegExp(`worker ${victim} stopped answering`));
    await approve(id, review);
    const t = await eventually(() => task(id), (t) => ['done', 'failed'].includes(t.state), `${id} done`, 60_000);
    assert.equal(t.state, 'done', t.result);
    assert.equal(t.usage.steps, 2);
    const all = await traceOf(id);
    assert.equal(all.filter((e) => e.type === 'pushed').length, 1, 'pushed once');
    assert.equal(all.filter((e) => e.type === 'ended').length, 1, 'ended once');
    // The killed worker comes back under its own name, for the next test.
    await startWorker(victim);
  });

  it('releases the sandbox of a task parked on a human, and the decision re-provisions it elsewhere with the same tree', async () => {
    const id = await submit(['echo one > one.txt', 'deploy 2>/dev/null; cat one.txt > two.txt']);
    const holder = await workerOf(id);
    const other = holder === 'worker-a' ? 'worker-b' : 'worker-a';
    const risky = await pending(id, 'risky_action');
    const parked = await eventually(() => task(id), (t) => t.sandbox === 'released', `${id}: sandbox released`, 60_000);
    assert.equal(parked.state, 'awaiting_approval');
    const released = (await traceOf(id)).find((e) => e.type === 'sandbox_released');
    assert.ok(released, 'the trace says so');
    assert.equal(released.data.worker, holder);

    // Nothing of the sandbox is left on its worker: no container, no network, no mount, no working copy.
    const holderDir = workers.get(holder)!.dataDir;
    const runsc = await resolveRunsc();
    assert.ok(runsc, 'runsc');
    const driver = new GvisorSandboxDriver({ root: path.join(holderDir, 'sandboxes'), runsc, log: createLogger({ level: 'error', component: 'test' }) });
    assert.deepEqual((await driver.list()).filter((s) => s === parked.sandbox_id), [], 'the sandbox is gone');
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(path.join(holderDir, 'workspaces', id)) || l.includes(path.join(holderDir, 'sandboxes', parked.sandbox_id)));
    assert.deepEqual(mounts, [], 'no mount of it is left');
    assert.equal(fs.existsSync(path.join(holderDir, 'workspaces', id)), false, 'its working copy is removed');

    // Its worker goes away meanwhile: the decision brings the task back on the other one, from the shared store.
    await kill(holder);
    await approve(id, risky);
    const review = await pending(id, 'pr_review', 120_000);
    assert.equal(git(origin, 'show', `agent/${id}:two.txt`), 'one', 'the second step ran on the tree the first left');
    const again = (await traceOf(id)).filter((e) => e.type === 'reprovisioned');
    assert.equal(again.length, 1, JSON.stringify(again));
    assert.equal(again[0].data.reason, 'released');
    assert.equal(again[0].data.from_worker, holder);
    assert.equal(again[0].data.to_worker, other);
    await eventually(() => task(id), (t) => t.sandbox === 'released', 'parked on the review past the delay, it is released again', 60_000);
    await approve(id, review);
    const t = await eventually(() => task(id), (t) => ['done', 'failed'].includes(t.state), `${id} done`, 60_000);
    assert.equal(t.state, 'done', t.result);
    assert.equal(t.sandbox, 'none');
    await startWorker(holder);
  });
});
