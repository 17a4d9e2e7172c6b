/**
 * Inbox reads with many open tasks (10,000 by default) on the dev server's SQLite visibility, without
 * parking them through a worker: executions of the shape a parked task publishes, on a queue no worker
 * polls (test/support/parked-executions.ts), started in about a minute where parking takes half an hour.
 * `npm run bench` measures the same reads with tasks a worker parked; this one is for quick comparisons.
 *
 *   npm run bench:inbox
 *   BENCH_TASKS=1000 npm run bench:inbox
 *
 * Every read goes through `GET /v1/inbox` of a real API process. The same run also lists every pending
 * task once (what a read of the whole filter costs), so the ratio holds on a noisy machine.
 */
import os from 'node:os';
import path from 'node:path';
import type { ItemKind } from '../domain/task';
import { listExecutions, visibilityQuery, where } from '../api/visibility';
import { SA_WAITING_SINCE } from '../workflows/search-attributes';
import { tempDir } from '../test/support/git-fixture';
import { call, eventually } from '../test/support/http';
import { startParked, type ParkedTask } from '../test/support/parked-executions';
import { startTestStack, startTestTemporal } from '../test/support/stack';
import { summary } from './stats';

const TASKS = Number(process.env.BENCH_TASKS ?? 10_000);
const SAMPLES = Number(process.env.BENCH_INBOX_SAMPLES ?? 50);
const DECISIONS = Number(process.env.BENCH_DECISIONS ?? 100);
/** Starts in flight while filling visibility. */
const FILL_CONCURRENCY = 32;
/** Tasks are raised this far apart: 10,000 span about 40 minutes, as if parked through a worker. */
const RAISED_APART_MS = 250;
const TEAMS = ['payments', 'search', 'platform', 'mobile'];

function parkedTask(i: number, t0: number): ParkedTask {
  const since = t0 - (TASKS - i) * RAISED_APART_MS;
  const item = (kind: ItemKind, at: number) => ({ item_id: `${kind}-1`, kind, title: `bench ${kind}`, created_at: new Date(at).toISOString() });
  const items = [item('plan_approval', since)];
  // Every seventh also asks for budget a little later; every tenth is more urgent.
  if (i % 7 === 0) items.push(item('budget_request', since + 30_000));
  return { id: `bench-inbox-${i}`, priority: i % 10 === 0 ? 2 : 3, items, requester: `eng-${i % 40}`, team: TEAMS[i % TEAMS.length]! };
}

async function main(): Promise<void> {
  const temporal = await startTestTemporal();
  const root = tempDir('bench-inbox');
  const api = await startTestStack(temporal, path.join(root, 'data'), `bench-inbox-${process.pid}`, { ROLES: 'api' });
  const base = api.url!;
  try {
    const t0 = Date.now();
    const fill0 = performance.now();
    await startParked(api.client, `bench-inbox-nobody-${process.pid}`, Array.from({ length: TASKS }, (_, i) => parkedTask(i, t0)), FILL_CONCURRENCY);
    const fillSeconds = (performance.now() - fill0) / 1000;
    await eventually(() => api.client.workflow.count(`AgentWaitingSince <= '9999-12-31T23:59:59Z'`), (r) => r.count >= TASKS, `${TASKS} tasks in visibility`, 10 * 60_000);

    const read = async (query: string, n: number): Promise<{ first: number; then: ReturnType<typeof summary> }> => {
      const times: number[] = [];
      for (let i = 0; i <= n; i++) {
        const s = performance.now();
        const res = await call(base, 'GET', `/v1/inbox${query}`);
        times.push(performance.now() - s);
        if (res.status !== 200) throw new Error(`inbox ${query}: ${res.status} ${JSON.stringify(res.body)}`);
      }
      return { first: Math.round(times[0]! * 10) / 10, then: summary(times.slice(1)) };
    };
    const reads = {
      default_limit: await read('', SAMPLES),
      limit_1000: await read('?limit=1000', Math.ceil(SAMPLES / 5)),
      one_team: await read('?team=search', SAMPLES),
      budget_requests: await read('?kind=budget_request', SAMPLES),
      older_than_10_minutes: await read('?older_than_minutes=10', SAMPLES),
    };

    // Decisions thin the window under the page: the oldest task leaves, then the inbox is read again.
    const afterDecision: number[] = [];
    for (let i = 0; i < DECISIONS; i++) {
      const page = await call(base, 'GET', '/v1/inbox');
      await api.client.workflow.getHandle(page.body.items[0].task_id).terminate('bench: decided');
      const s = performance.now();
      await call(base, 'GET', '/v1/inbox');
      afterDecision.push(performance.now() - s);
    }

    // What one read of the whole filter costs: every pending task listed.
    const everything: number[] = [];
    for (let i = 0; i < 3; i++) {
      const s = performance.now();
      await listExecutions(api.client, visibilityQuery([where('ExecutionStatus', '=', 'Running'), where(SA_WAITING_SINCE, '<=', '9999-12-31T23:59:59.999Z')]), TASKS);
      everything.push(performance.now() - s);
    }

    const result = {
      date: new Date().toISOString(),
      machine: `${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.cpus()[0]?.model ?? 'unknown cpu'}, node ${process.version}`,
      open_tasks: TASKS,
      fill_seconds: Math.round(fillSeconds),
      reads_ms: reads,
      read_after_each_decision_ms: summary(afterDecision),
      list_every_pending_task_ms: summary(everything),
      ratio_default_read_p50_to_listing_everything: Math.round((reads.default_limit.then.p50 / summary(everything).p50) * 1000) / 1000,
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await api.stop();
    await temporal.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
