/**
 * The production topology on one machine: a real Temporal server on PostgreSQL (not the dev server), a SeaweedFS S3
 * store for artifacts, two API processes and two gVisor worker processes, each a process of its own as a deploy
 * runs them. Tasks submitted through one API run on both workers and are read, artifacts and trace, through the
 * other; a command inside a sandbox reaches neither the database nor any of Temporal's listeners.
 *
 * Needs root, runsc, PostgreSQL's binaries, `temporal-server` and `weed` (`npm run setup:test`, which `.ci/run` calls).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PROXY_ADDRESS } from '../../activities/sandbox/gvisor-net';
import { git, makeOriginRepo, tempDir } from '../support/git-fixture';
import { authorize, call, eventually, freePort } from '../support/http';
import { backendHealthy, exited, spawnBackend } from '../support/backend-process';
import { startPostgres, type Postgres } from '../support/postgres';
import { startSeaweedS3, type SeaweedS3 } from '../support/seaweedfs';
import { adminTokenOf, removeSandboxes, stackEnv } from '../support/stack';
import { startTemporalOnPostgres, type PostgresTemporal } from '../support/temporal-postgres';
import { PY_CONNECT } from '../support/sandbox-probe';

/** Recipe tasks submitted at once. */
const TASKS = 6;
/** Sandboxes each worker holds at most: half the tasks, so while they wait on review both workers must take some. */
const SANDBOXES_PER_WORKER = TASKS / 2;
const BUCKET = 'artifacts';
/** How long a task may take to reach its review, and then to end, on a loaded machine. */
const TASK_TIMEOUT_MS = 90_000;

/**
 * Run inside the sandbox: listens on its own loopback first (the control: a port that is reachable must read
 * `connected`, or the probe proves nothing), then connects to each `host:port` argument and prints the result.
 */
const PROBE = `${PY_CONNECT}
import sys
control = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
control.bind(('127.0.0.1', 0))
control.listen(1)
targets = ['control:127.0.0.1:%d' % control.getsockname()[1]] + sys.argv[1:]
for target in targets:
    name, host, port = target.rsplit(':', 2)
    print('probe', target, connect(host, port, 2))
`;

interface Backend {
  name: string;
  dataDir: string;
  child: ChildProcess;
  base: string;
}

/** This machine's IPv4 addresses other than loopback: where a service bound to all interfaces would answer. */
function hostAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((a) => a !== undefined && a.family === 'IPv4' && !a.internal)
    .map((a) => a!.address);
}

describe('Temporal on PostgreSQL with two APIs and two workers', () => {
  let pg: Postgres;
  let temporal: PostgresTemporal;
  let s3: SeaweedS3;
  let root: string;
  let origin: string;
  let queue: string;
  let shared: Record<string, string>;
  let first: string;
  let second: string;
  const backends: Backend[] = [];

  async function spawn(name: string, extra: Record<string, string>, healthPortVar: 'PORT' | 'HEALTH_PORT'): Promise<Backend> {
    const dataDir = path.join(root, name);
    const port = await freePort();
    const env = stackEnv(temporal, dataDir, queue, { ...shared, ...extra, HOST: '127.0.0.1', [healthPortVar]: String(port) });
    const logFile = path.join(root, `${name}.log`);
    const child = spawnBackend(env, logFile);
    const b = { name, dataDir, child, base: `http://127.0.0.1:${port}` };
    backends.push(b);
    await backendHealthy(child, b.base, logFile);
    return b;
  }

  async function api(name: string): Promise<string> {
    const b = await spawn(name, { ROLES: 'api' }, 'PORT');
    authorize(b.base, adminTokenOf(b.dataDir));
    return b.base;
  }

  async function worker(id: string): Promise<void> {
    const b = await spawn(id, { ROLES: 'worker', WORKER_ID: id, SANDBOX_DRIVER: 'gvisor', WORKER_MAX_SANDBOXES: String(SANDBOXES_PER_WORKER) }, 'HEALTH_PORT');
    const h = await call(b.base, 'GET', '/healthz');
    assert.equal(h.body.worker_id, id);
  }

  async function task(base: string, id: string): Promise<any> {
    const res = await call(base, 'GET', `/v1/tasks/${id}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body;
  }

  async function submit(base: string, steps: string[]): Promise<string> {
    const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'Write files', planner: { kind: 'recipe', steps: steps.map((run) => ({ run })) } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    return res.body.task_id;
  }

  /** Approves the task's review and waits for it to end; returns its final view. */
  async function finish(base: string, id: string): Promise<any> {
    const review = await eventually(() => task(base, id), (t) => t.items.some((i: any) => i.kind === 'pr_review' && i.status === 'pending') || ['failed', 'rejected', 'done', 'stuck'].includes(t.state), `${id}: its review`, TASK_TIMEOUT_MS);
    const item = review.items.find((i: any) => i.kind === 'pr_review' && i.status === 'pending');
    assert.ok(item, `${id} ended ${review.state} (${review.result}) without a review`);
    const res = await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'approve' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return eventually(() => task(base, id), (t) => ['done', 'failed', 'rejected'].includes(t.state), `${id} done`, TASK_TIMEOUT_MS);
  }

  before(async () => {
    root = tempDir('topology-pg');
    [pg, s3] = await Promise.all([startPostgres(), startSeaweedS3()]);
    await s3.createBucket(BUCKET);
    temporal = await startTemporalOnPostgres(pg);
    origin = makeOriginRepo(root, { 'README.md': 'fixture\n', 'probe.py': PROBE });
    queue = `topology-pg-${process.pid}`;
    shared = s3.env(BUCKET, path.join(root, 'secrets'), 'agent-inbox/');
    [first, second] = await Promise.all([api('api-1'), api('api-2'), worker('worker-a'), worker('worker-b')]);
  });

  after(async () => {
    for (const b of backends) {
      if (b.child.exitCode === null && b.child.signalCode === null) {
        b.child.kill('SIGTERM');
        await exited(b.child);
      }
      await removeSandboxes(b.dataDir);
    }
    await temporal?.stop();
    await Promise.all([pg?.stop(), s3?.stop()]);
  });

  it(`runs ${TASKS} tasks submitted through one API on both workers, and serves them through the other`, async () => {
    const ids: string[] = [];
    for (let i = 0; i < TASKS; i++) ids.push(await submit(first, [`echo ${i} > n.txt`, 'cat n.txt n.txt > twice.txt']));
    const placed = new Set<string>();
    for (const [i, id] of ids.entries()) {
      const t = await finish(first, id);
      assert.equal(t.state, 'done', t.result);
      assert.equal(git(origin, 'show', `agent/${id}:twice.txt`), `${i}\n${i}`);

      const seen = await task(second, id);
      assert.equal(seen.state, 'done');
      const trace = await call(second, 'GET', `/v1/tasks/${id}/trace`);
      assert.equal(trace.status, 200, JSON.stringify(trace.body));
      const provisioned = trace.body.entries.find((e: any) => e.type === 'provisioned');
      assert.ok(provisioned, JSON.stringify(trace.body.entries));
      placed.add(provisioned.data.worker);
      assert.ok(trace.body.entries.some((e: any) => e.type === 'ended'), 'the trace through the other API is whole');
      const log = await call(second, 'GET', `/v1/tasks/${id}/artifacts/step-1-1.log`);
      assert.equal(log.status, 200, JSON.stringify(log.body));
    }
    assert.deepEqual([...placed].sort(), ['worker-a', 'worker-b'], 'both workers ran tasks');
    for (const b of backends) assert.ok(!fs.existsSync(path.join(b.dataDir, 'artifacts')), `${b.name} kept no artifact on its own disk: they are in the bucket`);
  });

  it("keeps PostgreSQL's and Temporal's ports out of a sandbox's reach", async () => {
    const ports = [pg.port, ...temporal.listeners.map((l) => Number(l.split(':')[1]))];
    const addresses = ['127.0.0.1', PROXY_ADDRESS, ...hostAddresses()];
    const targets = ports.flatMap((p) => addresses.map((a) => `${p === pg.port ? 'postgres' : 'temporal'}:${a}:${p}`));
    const id = await submit(first, [`python3 probe.py ${targets.join(' ')} > probe.txt; cat probe.txt`]);
    const t = await finish(first, id);
    assert.equal(t.state, 'done', t.result);
    const lines = git(origin, 'show', `agent/${id}:probe.txt`).split('\n');
    const results = new Map(lines.map((l) => l.split(' ')).map(([, target, result]) => [target!, result!]));
    assert.equal(results.size, targets.length + 1, lines.join('\n'));
    const control = [...results].find(([target]) => target.startsWith('control:'));
    assert.equal(control?.[1], 'connected', `the probe reaches a listener in its own sandbox: ${lines.join('\n')}`);
    for (const target of targets) assert.notEqual(results.get(target), 'connected', `${target} answered the sandbox: ${lines.join('\n')}`);
  });
});
