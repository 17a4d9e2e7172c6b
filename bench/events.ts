/**
 * Event latency: from a workflow transition (a decision, once its Update returns) to an SSE client of
 * `GET /v1/events` receiving the task's changed state. Real dev server, backend in this process.
 *
 *   npm run bench:events                # 40 transitions
 */
import os from 'node:os';
import path from 'node:path';
import { makeOriginRepo, tempDir } from '../test/support/git-fixture';
import { call, eventually } from '../test/support/http';
import { listenEvents } from '../test/support/sse';
import { startTestStack, startTestTemporal } from '../test/support/stack';
import { summary } from './stats';

const TRANSITIONS = Number(process.env.BENCH_TRANSITIONS ?? 40);

async function main(): Promise<void> {
  const temporal = await startTestTemporal();
  const root = tempDir('bench-events');
  const origin = makeOriginRepo(root, { 'README.md': 'bench\n' });
  const stack = await startTestStack(temporal, path.join(root, 'data'), `bench-events-${process.pid}`, { SANDBOX_DRIVER: 'process' });
  const base = stack.url!;
  const stream = listenEvents(base, stack.auth.adminToken!);
  const fromReturn: number[] = [];
  const fromRequest: number[] = [];
  try {
    const body = { repo: origin, goal: 'bench: parked on approval', planner: { kind: 'recipe', steps: [{ run: 'echo change >> README.md' }] }, policy: { approval_commands: ['^echo'] } };
    for (let i = 0; i < TRANSITIONS; i++) {
      const id = (await call(base, 'POST', '/v1/tasks', body)).body.task_id as string;
      const parked = await eventually(() => call(base, 'GET', `/v1/tasks/${id}`), (r) => r.body.items?.some((x: any) => x.status === 'pending'), `${id} parked`);
      const item = parked.body.items.find((x: any) => x.status === 'pending');
      await stream.waitFor((e) => e.data.task_id === id && e.data.items.some((x: any) => x.item_id === item.item_id), `${id} parked event`);
      const t0 = performance.now();
      const res = await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'approve' });
      const t1 = performance.now();
      if (res.status !== 200) throw new Error(`decision failed: ${res.status} ${JSON.stringify(res.body)}`);
      const e = await stream.waitFor((x) => x.at >= t0 && x.data.task_id === id && !x.data.items.some((y: any) => y.item_id === item.item_id), `${id} approved event`);
      fromReturn.push(Math.max(0, e.at - t1));
      fromRequest.push(e.at - t0);
    }
  } finally {
    await stream.close();
    await stack.stop();
    await temporal.stop();
  }
  const a = summary(fromReturn);
  const b = summary(fromRequest);
  console.log(`# Event latency (${TRANSITIONS} transitions; ${os.cpus().length} cores, node ${process.version}, ${new Date().toISOString().slice(0, 10)})\n`);
  console.log('| measured from | p50 ms | p95 ms | max ms |');
  console.log('| --- | ---: | ---: | ---: |');
  console.log(`| the decision's Update returned (the transition is recorded) | ${a.p50} | ${a.p95} | ${a.max} |`);
  console.log(`| the decision was sent | ${b.p50} | ${b.p95} | ${b.max} |`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
