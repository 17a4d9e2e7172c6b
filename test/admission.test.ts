/**
 * Admission by capacity: a worker with WORKER_MAX_SANDBOXES=2 never holds more than two sandboxes; tasks beyond
 * it wait in `queued`, with their place shown, and are admitted by priority as sandboxes are given back.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { makeOriginRepo, tempDir } from './support/git-fixture';
import { recordHistory } from './support/histories';
import { call, eventually } from './support/http';
import { startTestStack, startTestTemporal } from './support/stack';

const MAX_SANDBOXES = 2;
const LOW = 5;
const HIGH = 1;

describe('a worker with room for two sandboxes', () => {
  let temporal: DevServer;
  let stack: Stack;
  let base: string;
  let origin: string;

  before(async () => {
    temporal = await startTestTemporal();
    const root = tempDir('admission');
    origin = makeOriginRepo(root, { 'README.md': 'fixture\n' });
    stack = await startTestStack(temporal, path.join(root, 'data'), `admission-${process.pid}`, { WORKER_MAX_SANDBOXES: String(MAX_SANDBOXES), SANDBOX_DRIVER: 'gvisor' });
    base = stack.url!;
  });

  after(async () => {
    await stack?.stop();
    await temporal?.stop();
  });

  const task = async (id: string): Promise<any> => (await call(base, 'GET', `/v1/tasks/${id}`)).body;
  const traceOf = async (id: string): Promise<any[]> => (await call(base, 'GET', `/v1/tasks/${id}/trace`)).body.entries;
  async function submit(priority: number, n: number): Promise<string> {
    const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: `Task ${n}`, priority, planner: { kind: 'recipe', steps: [{ run: `echo ${n} > n.txt` }] } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    return res.body.task_id;
  }
  const reviewOf = (t: any) => t.items.find((i: any) => i.kind === 'pr_review' && i.status === 'pending');

  it('holds two at a time, shows the queue, admits priority 1 first, and finishes all six', async () => {
    const low: string[] = [];
    for (let i = 0; i < 5; i++) low.push(await submit(LOW, i));
    // Two are admitted and park on their review holding their sandboxes; three wait.
    await eventually(async () => Promise.all(low.map(task)), (ts) => ts.filter(reviewOf).length === MAX_SANDBOXES && ts.filter((t) => t.state === 'queued').length === 3, 'two parked, three queued', 90_000);
    const high = await submit(HIGH, 5);
    const queued = await eventually(
      async () => Promise.all([...low, high].map(task)),
      (ts) => ts.filter((t) => t.state === 'queued').length === 4 && ts.every((t) => t.state !== 'queued' || t.queue_position !== undefined),
      'four queued with positions',
    );
    const byId = new Map(queued.map((t) => [t.task_id, t]));
    assert.equal(byId.get(high).queue_position, 1, 'priority 1 is first in line though submitted last');
    assert.deepEqual(
      low.filter((id) => byId.get(id).state === 'queued').map((id) => byId.get(id).queue_position),
      [2, 3, 4],
      'then the others in the order they came',
    );
    const listed = (await call(base, 'GET', '/v1/tasks?limit=50')).body.tasks.find((r: any) => r.task_id === high);
    assert.equal(listed.queue_position, 1, 'the list shows it too');
    // Still only two live: the queue does not move while nobody decides.
    assert.equal((await call(base, 'GET', '/healthz')).body.sandboxes.live, MAX_SANDBOXES);

    // Each decision gives a sandbox back, and the next in line takes it.
    const order: string[] = [];
    const all = [...low, high];
    for (;;) {
      const ts = await Promise.all(all.map(task));
      for (const t of ts) if (t.state !== 'queued' && !order.includes(t.task_id)) order.push(t.task_id);
      const open = ts.filter((t) => !['done', 'failed', 'rejected'].includes(t.state));
      if (open.length === 0) break;
      const parked = ts.find(reviewOf);
      if (parked) {
        const res = await call(base, 'POST', `/v1/tasks/${parked.task_id}/inbox/${reviewOf(parked).item_id}`, { action: 'approve' });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        await eventually(() => task(parked.task_id), (t) => t.state === 'done', `${parked.task_id} done`, 60_000);
      } else {
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    for (const id of all) assert.equal((await task(id)).state, 'done');
    assert.equal(order.indexOf(high), MAX_SANDBOXES, 'the priority-1 task was the first admitted after the two that were running');

    // Never more than two at once: the worker counts a sandbox from its admission until its teardown is done.
    const health = (await call(base, 'GET', '/healthz')).body;
    assert.equal(health.sandboxes.peak, MAX_SANDBOXES, `at most ${MAX_SANDBOXES} sandboxes at once: ${JSON.stringify(health.sandboxes)}`);
  });

  it('gives a task waiting on its plan’s approval, or on its first command’s, no sandbox and no place: more wait than there is room for, and each takes a sandbox once approved', async () => {
    const WAITING = MAX_SANDBOXES + 1;
    const ids: string[] = [];
    for (let n = 0; n < WAITING; n++) {
      // The last waits on its first command instead of its plan.
      const firstCommand = n === WAITING - 1;
      const res = await call(base, 'POST', '/v1/tasks', {
        repo: origin, goal: `Planned ${n}`, policy: firstCommand ? { approval_commands: ['^cat '] } : { require_plan_approval: true },
        planner: { kind: 'recipe', steps: [{ run: `cat README.md > copy-${n}.txt` }] },
      });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      ids.push(res.body.task_id);
    }
    const planOf = (t: any) => t.items.find((i: any) => ['plan_approval', 'risky_action'].includes(i.kind) && i.status === 'pending');
    // All of them wait on a human at once, more than the worker has room for: none holds a sandbox or a place.
    const waiting = await eventually(async () => Promise.all(ids.map(task)), (ts) => ts.every(planOf), `${WAITING} waiting on their plans or first commands`, 60_000);
    assert.deepEqual(waiting.map((t) => planOf(t).kind), ['plan_approval', 'plan_approval', 'risky_action']);
    for (const t of waiting) assert.equal(t.sandbox, 'none', `${t.task_id} has no sandbox while it waits`);
    assert.equal((await call(base, 'GET', '/healthz')).body.sandboxes.live, 0);
    for (const id of ids) {
      const provisioned = (await traceOf(id)).find((e) => e.type === 'provisioned');
      assert.equal(provisioned?.data?.deferred, true, JSON.stringify(provisioned));
      assert.equal(provisioned?.data?.waits_on, ids.indexOf(id) === WAITING - 1 ? 'risky_action' : 'plan_approval');
    }

    // Approved, they go through admission like any task: two run and park on their reviews, the third waits its turn.
    for (const t of waiting) {
      const res = await call(base, 'POST', `/v1/tasks/${t.task_id}/inbox/${planOf(t).item_id}`, { action: 'approve' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }
    const running = await eventually(async () => Promise.all(ids.map(task)), (ts) => ts.filter(reviewOf).length === MAX_SANDBOXES && ts.filter((t) => t.state === 'queued').length === 1, 'two parked on review, one queued', 90_000);
    assert.equal(running.find((t) => t.state === 'queued').queue_position, 1);
    assert.equal((await call(base, 'GET', '/healthz')).body.sandboxes.live, MAX_SANDBOXES);
    for (const t of running.filter(reviewOf)) {
      assert.equal(t.sandbox, 'live');
      const res = await call(base, 'POST', `/v1/tasks/${t.task_id}/inbox/${reviewOf(t).item_id}`, { action: 'approve' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }
    const last = await eventually(async () => task(running.find((t) => t.state === 'queued').task_id), (t) => reviewOf(t) !== undefined, 'the third parked on review', 90_000);
    await call(base, 'POST', `/v1/tasks/${last.task_id}/inbox/${reviewOf(last).item_id}`, { action: 'approve' });
    for (const id of ids) {
      await eventually(() => task(id), (t) => t.state === 'done', `${id} done`, 60_000);
      // The step ran in a sandbox on the copy restored from the deferred checkpoint: it read the repository's README (a failed cat would not end done).
      const n = ids.indexOf(id);
      const trace = await traceOf(id);
      const again = trace.find((e) => e.type === 'reprovisioned');
      assert.equal(again?.data?.reason, 'deferred', JSON.stringify(again));
      assert.ok(trace.some((e) => e.type === 'step' && (e.data?.changed_paths ?? []).includes(`copy-${n}.txt`)), `step of ${id} wrote its file`);
    }
    await recordHistory(stack.client, ids[0]!, 'recipe-plan-deferred-done');
    await recordHistory(stack.client, ids[WAITING - 1]!, 'recipe-first-command-deferred-done');
  });
});
