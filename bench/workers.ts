/**
 * Worker throughput: the same batch of recipe tasks through one worker process, then through two on the same
 * task queue (sharing an artifact directory), in one run so the ratio compares. Each task provisions a gVisor
 * sandbox, runs its steps, pushes, and ends at its review, which the benchmark approves at once.
 *
 *   npm run bench:workers                # 20 tasks per phase
 *   BENCH_TASKS=40 npm run bench:workers
 */
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { backendHealthy, exited, spawnBackend } from '../test/support/backend-process';
import { makeOriginRepo, tempDir } from '../test/support/git-fixture';
import { call, freePort } from '../test/support/http';
import { removeSandboxes, stackEnv, startTestStack, startTestTemporal } from '../test/support/stack';
import type { DevServer } from '../workers/temporal-server';

const TASKS = Number(process.env.BENCH_TASKS ?? 20);

async function phase(temporal: DevServer, root: string, workers: number): Promise<{ workers: number; tasks: number; seconds: number; tasks_per_minute: number }> {
  const dir = path.join(root, `phase-${workers}`);
  const origin = makeOriginRepo(dir, { 'README.md': 'bench\n' });
  const queue = `bench-workers-${workers}-${process.pid}`;
  const shared = path.join(dir, 'artifacts');
  const api = await startTestStack(temporal, path.join(dir, 'api'), queue, { ROLES: 'api', ARTIFACTS_DIR: shared });
  const base = api.url!;
  const children: { child: ChildProcess; dataDir: string }[] = [];
  try {
    for (let i = 0; i < workers; i++) {
      const dataDir = path.join(dir, `worker-${i}`);
      const port = await freePort();
      const logFile = path.join(dir, `worker-${i}.log`);
      const child = spawnBackend(
        stackEnv(temporal, dataDir, queue, { ROLES: 'worker', WORKER_ID: `bench-${i}`, ARTIFACTS_DIR: shared, SANDBOX_DRIVER: 'gvisor', HEALTH_PORT: String(port), HOST: '127.0.0.1' }),
        logFile,
      );
      children.push({ child, dataDir });
      await backendHealthy(child, `http://127.0.0.1:${port}`, logFile);
    }
    const t0 = performance.now();
    const ids: string[] = [];
    for (let i = 0; i < TASKS; i++) {
      const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: `bench ${i}`, planner: { kind: 'recipe', steps: [{ run: `echo ${i} > a.txt` }, { run: 'cat a.txt a.txt > b.txt' }] } });
      if (res.status !== 202) throw new Error(JSON.stringify(res.body));
      ids.push(res.body.task_id);
    }
    const open = new Set(ids);
    while (open.size > 0) {
      for (const id of [...open]) {
        const t = (await call(base, 'GET', `/v1/tasks/${id}`)).body;
        const review = t.items?.find((i: any) => i.kind === 'pr_review' && i.status === 'pending');
        if (review) await call(base, 'POST', `/v1/tasks/${id}/inbox/${review.item_id}`, { action: 'approve' });
        if (['done', 'failed', 'rejected', 'stuck'].includes(t.state)) {
          if (t.state !== 'done') throw new Error(`${id} ended ${t.state}: ${t.result}`);
          open.delete(id);
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const seconds = (performance.now() - t0) / 1000;
    return { workers, tasks: TASKS, seconds: Math.round(seconds * 10) / 10, tasks_per_minute: Math.round((TASKS / seconds) * 60 * 10) / 10 };
  } finally {
    for (const { child, dataDir } of children) {
      child.kill('SIGTERM');
      await exited(child);
      await removeSandboxes(dataDir);
    }
    await api.stop();
  }
}

async function main(): Promise<void> {
  const temporal = await startTestTemporal(['--dynamic-config-value', 'system.enableActivityEagerExecution=false']);
  const root = tempDir('bench-workers');
  try {
    const one = await phase(temporal, root, 1);
    const two = await phase(temporal, root, 2);
    console.log(
      JSON.stringify(
        {
          date: new Date().toISOString(),
          machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, mem_gib: Math.round(os.totalmem() / 2 ** 30), node: process.version },
          one_worker: one,
          two_workers: two,
          throughput_ratio_two_to_one: Math.round((two.tasks_per_minute / one.tasks_per_minute) * 100) / 100,
        },
        null,
        2,
      ),
    );
  } finally {
    await temporal.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
