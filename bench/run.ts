/**
 * Core benchmark: intake throughput, decision latency, inbox latency and worker
 * memory with many tasks parked on approval. Real dev server, real worker process.
 *
 *   npm run bench                      # 1,000 parked tasks (the figure)
 *   BENCH_TASKS=200 npm run bench      # a quicker run
 *   BENCH_PARK=plan BENCH_TASKS=10000 npm run bench
 *                                      # parked on plan approval, holding no sandbox
 *
 * By default every task parks on a risky_action before its only step, its working copy cloned. With
 * BENCH_PARK=plan it parks on its plan's approval instead, with no sandbox and no working copy (the repository
 * read, its checkpoint kept in the artifact store); an approval then provisions it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeOriginRepo, tempDir } from '../test/support/git-fixture';
import { call, eventually } from '../test/support/http';
import { REPO_ROOT, stackEnv, startTestStack, startTestTemporal } from '../test/support/stack';
import { startBurst } from './intake';
import { summary } from './stats';

const TASKS = Number(process.env.BENCH_TASKS ?? 1_000);
const START_CONCURRENCY = Number(process.env.BENCH_START_CONCURRENCY ?? 16);
const DECISIONS = Number(process.env.BENCH_DECISIONS ?? 100);
const INBOX_SAMPLES = Number(process.env.BENCH_INBOX_SAMPLES ?? 50);
const cachedWorkflows = Number(process.env.WORKER_MAX_CACHED_WORKFLOWS ?? 250);
/** How long all the tasks may take to park (10,000 take over half an hour on 2 cores). */
const PARK_TIMEOUT_MINUTES = Number(process.env.BENCH_PARK_TIMEOUT_MINUTES ?? 60);
/** What the tasks wait on: a risky command with its working copy (`risky`), or their plan with no sandbox (`plan`). */
const PARK = process.env.BENCH_PARK === 'plan' ? 'plan' : 'risky';
const PARKED_KIND = PARK === 'plan' ? 'plan_approval' : 'risky_action';

/** MemAvailable from /proc/meminfo, in MB. */
function memAvailableMb(): number {
  const kb = Number(/MemAvailable:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))![1]);
  return Math.round(kb / 1024);
}

function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
  return Math.round(kb / 1024);
}

async function main(): Promise<void> {
  const temporal = await startTestTemporal();
  const root = tempDir('bench');
  const dataDir = path.join(root, 'data');
  const origin = makeOriginRepo(root, { 'README.md': 'bench\n' });
  const queue = `bench-${process.pid}`;
  const api = await startTestStack(temporal, dataDir, queue, { ROLES: 'api' });
  const base = api.url!;
  const workerLog = fs.openSync(path.join(root, 'worker.log'), 'a');
  let worker: ChildProcess | null = null;
  try {
    // Every task parks on a risky_action before its only step (approval_commands matches it), or on its plan.
    const body = {
      repo: origin,
      goal: 'bench: parked on approval',
      planner: { kind: 'recipe', steps: [{ run: 'echo change >> README.md' }] },
      policy: PARK === 'plan' ? { require_plan_approval: true } : { approval_commands: ['^echo'] },
    };
    const memIdle = memAvailableMb();

    // 1. Intake throughput.
    const burst = await startBurst(base, body, TASKS, START_CONCURRENCY);
    if (burst.failures.length > 0) throw new Error(`${burst.failures.length} starts failed, the first: ${JSON.stringify(burst.failures[0])}`);
    const { ids, latencies: startLatencies, seconds: startSeconds } = burst;

    // The worker starts only now, so intake above measured the API and Temporal alone (a burst is queued durably).
    worker = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'workers', 'main.js')], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', ...stackEnv(temporal, dataDir, queue, { ROLES: 'worker', WORKER_MAX_CACHED_WORKFLOWS: String(cachedWorkflows) }) },
      stdio: ['ignore', workerLog, workerLog],
    });

    // 2. Wait until every task is parked in the inbox.
    const parkT0 = performance.now();
    // Counted by Temporal: the inbox reads at most 1,000 items and its count is then a lower bound.
    await eventually(
      () => api.client.workflow.count(`AgentState = 'awaiting_approval'`),
      (r) => r.count >= TASKS,
      `${TASKS} parked tasks`,
      PARK_TIMEOUT_MINUTES * 60_000,
    );
    const parkSeconds = (performance.now() - parkT0) / 1000;
    await new Promise((r) => setTimeout(r, 2_000));
    const workerRssParked = rssMb(worker.pid!);
    const hostMemParked = memIdle - memAvailableMb();
    const workspaces = path.join(dataDir, 'workspaces');
    const copies = fs.existsSync(workspaces) ? fs.readdirSync(workspaces).filter((n) => !n.startsWith('.')).length : 0;

    // 3. Inbox latency with all of them parked.
    const inboxDefault: number[] = [];
    const inboxAll: number[] = [];
    for (let i = 0; i < INBOX_SAMPLES; i++) {
      let s = performance.now();
      const a = await call(base, 'GET', '/v1/inbox');
      inboxDefault.push(performance.now() - s);
      s = performance.now();
      const b = await call(base, 'GET', '/v1/inbox?limit=1000');
      inboxAll.push(performance.now() - s);
      if (a.status !== 200 || b.status !== 200) throw new Error('inbox failed');
    }

    // 4. Decision → state change latency. The update returns once the workflow task that applied the decision
    // (and moved the task on) has completed, so the response time is the latency; the query only checks it.
    const decisions: number[] = [];
    // The inbox again after each decision: the decided task leaves the oldest part of the page, as in daily use.
    const inboxAfterDecision: number[] = [];
    for (const id of ids.slice(0, DECISIONS)) {
      const handle = api.client.workflow.getHandle(id);
      const view = await call(base, 'GET', `/v1/tasks/${id}`);
      const item = view.body.items.find((i: { status: string }) => i.status === 'pending');
      const s = performance.now();
      const res = await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'approve', actor: 'bench' });
      decisions.push(performance.now() - s);
      if (res.status !== 200) throw new Error(`decision failed: ${JSON.stringify(res.body)}`);
      const after = await handle.query<{ state: string }>('task');
      if (after.state === 'awaiting_approval') throw new Error(`state did not change with the decision on ${id}`);
      // Let the approved task finish its step so the next sample is not measured against its git work.
      await eventually(() => handle.query<{ state: string }>('task'), (t) => t.state === 'pr_open', `${id} to reach pr_open`);
      const s2 = performance.now();
      const page = await call(base, 'GET', '/v1/inbox');
      inboxAfterDecision.push(performance.now() - s2);
      if (page.status !== 200) throw new Error('inbox failed');
    }

    const result = {
      date: new Date().toISOString(),
      machine: `${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.cpus()[0]?.model ?? 'unknown cpu'}, node ${process.version}`,
      tasks: TASKS,
      parked_on: PARKED_KIND,
      starts_per_second: Math.round(TASKS / startSeconds),
      start_latency_ms: summary(startLatencies),
      seconds_until_all_parked: Math.round(parkSeconds),
      inbox_default_limit_ms: summary(inboxDefault),
      inbox_limit_1000_ms: summary(inboxAll),
      inbox_after_each_decision_ms: summary(inboxAfterDecision),
      decision_to_state_change_ms: summary(decisions),
      worker_rss_mb_parked: workerRssParked,
      host_memory_mb_used_since_start: hostMemParked,
      working_copies_parked: copies,
      worker_max_cached_workflows: cachedWorkflows,
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    if (worker && worker.exitCode === null) {
      const w = worker;
      w.kill('SIGTERM');
      await new Promise((r) => w.once('exit', r));
    }
    await api.stop();
    await temporal.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
