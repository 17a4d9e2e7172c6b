/**
 * Health that tells the truth: when the worker's run loop fails for real (Temporal comes back without the
 * namespace the worker polls), `/healthz` answers 503 and a backend process exits non-zero. Both backends run as
 * child processes: the SDK never releases a worker whose run loop failed, so its process cannot end cleanly.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../workers/log';
import { resolveTemporalCli, startDevServer, type DevServer } from '../workers/temporal-server';
import { tempDir } from './support/git-fixture';
import { FAILING_STACK_ENV } from './support/failing-stack';
import { call, eventually, freePort } from './support/http';
import { REPO_ROOT, stackEnv } from './support/stack';

const MAIN = path.join(REPO_ROOT, 'dist', 'workers', 'main.js');
const FAILING_STACK = path.join(REPO_ROOT, 'dist', 'test', 'support', 'failing-stack.js');
/** The worker notices a lost namespace when its in-flight long polls return: about a minute on the dev server. */
const FAILURE_TIMEOUT_MS = 180_000;
const log = createLogger({ level: 'warn', component: 'test-health' });


function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** The JSON lines a child process has printed so far. */
function jsonLines(child: ChildProcess): () => any[] {
  let text = '';
  child.stdout!.on('data', (b: Buffer) => (text += b.toString('utf8')));
  return () => text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

describe('a worker whose run loop fails', () => {
  const namespace = `health-${process.pid}`;
  let cli: string;
  let temporal: DevServer;
  const children: ChildProcess[] = [];

  before(async () => {
    cli = await resolveTemporalCli({ cacheDir: path.join(REPO_ROOT, '.cache', 'temporal'), log });
    temporal = await startDevServer({ cli, dataDir: tempDir('health-temporal'), namespace, uiPort: null, log });
  });

  after(async () => {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited(child);
      }
    }
    await temporal?.stop();
  });

  it('turns /healthz to 503 in an api+worker process, and a worker-only process exits non-zero', async () => {
    const logDir = tempDir('health-logs');
    const spawnBackend = (script: string, name: string, env: Record<string, string>): ChildProcess => {
      const err = fs.openSync(path.join(logDir, `${name}.log`), 'a');
      const child = spawn(process.execPath, [script], { cwd: REPO_ROOT, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', err] });
      children.push(child);
      return child;
    };
    const logOf = (name: string): string => fs.readFileSync(path.join(logDir, `${name}.log`), 'utf8').slice(-2_000);

    const both = spawnBackend(FAILING_STACK, 'both', { ...stackEnv(temporal, tempDir('health-both'), `health-both-${process.pid}`), SANDBOX_DRIVER: 'process', [FAILING_STACK_ENV]: '1' });
    const bothSaid = jsonLines(both);
    const ready = await eventually(async () => bothSaid().find((l) => l.ready), (l) => l !== undefined, 'the api+worker backend to start');
    const healthy = await call(ready.ready, 'GET', '/healthz');
    assert.equal(healthy.status, 200, JSON.stringify(healthy.body));
    assert.equal(healthy.body.worker, 'RUNNING');
    assert.equal((await call(ready.ready, 'GET', '/livez')).status, 200);

    const healthPort = await freePort();
    const workerOnly = spawnBackend(MAIN, 'worker', {
      ...stackEnv(temporal, tempDir('health-worker'), `health-worker-${process.pid}`),
      ROLES: 'worker',
      SANDBOX_DRIVER: 'process',
      HEALTH_PORT: String(healthPort),
    });
    const workerHealth = `http://127.0.0.1:${healthPort}`;
    const up = await eventually(() => call(workerHealth, 'GET', '/healthz'), (r) => r.status === 200, 'the worker-only process to be healthy');
    assert.equal(up.body.worker, 'RUNNING');
    const workerExit = exited(workerOnly);

    // Temporal comes back on the same address with a fresh store: the namespace both workers poll is gone.
    const port = Number(temporal.address.split(':').pop());
    await temporal.stop();
    temporal = await startDevServer({ cli, dataDir: tempDir('health-temporal-fresh'), port, uiPort: null, log });

    const report = await eventually(async () => bothSaid().find((l) => l.failure), (l) => l !== undefined, 'the api+worker backend to see its worker fail', FAILURE_TIMEOUT_MS);
    assert.equal(report.healthz.status, 503, JSON.stringify(report));
    assert.equal(report.healthz.body.temporal, 'ok', 'Temporal itself answers: the 503 is the worker');
    assert.deepEqual(report.healthz.body.failing, ['worker FAILED']);
    assert.equal(report.livez.status, 503);
    assert.equal(await exited(both), 0, logOf('both'));

    const code = await Promise.race([
      workerExit,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the worker-only process stayed up')), FAILURE_TIMEOUT_MS).unref()),
    ]);
    assert.notEqual(code, null, 'it exited on its own, not by a signal');
    assert.notEqual(code, 0, logOf('worker'));
    assert.match(logOf('worker'), /a part of the backend stopped; exiting/);
  });

  it('exits 0 on SIGTERM without reporting a failed worker', async () => {
    const logFile = path.join(tempDir('health-sigterm'), 'backend.log');
    const out = fs.openSync(logFile, 'a');
    const healthPort = await freePort();
    const env = { ...stackEnv(temporal, tempDir('health-sigterm-data'), `health-sigterm-${process.pid}`), ROLES: 'worker', SANDBOX_DRIVER: 'process', HEALTH_PORT: String(healthPort) };
    const child = spawn(process.execPath, [MAIN], { cwd: REPO_ROOT, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', out, out] });
    children.push(child);
    await eventually(() => call(`http://127.0.0.1:${healthPort}`, 'GET', '/healthz'), (r) => r.status === 200, 'the worker-only process to be healthy');
    child.kill('SIGTERM');
    assert.equal(await exited(child), 0, fs.readFileSync(logFile, 'utf8').slice(-2_000));
    assert.doesNotMatch(fs.readFileSync(logFile, 'utf8'), /worker stopped with an error|a part of the backend stopped/);
  });
});
