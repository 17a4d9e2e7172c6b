/**
 * Long tasks continue as new when Temporal suggests it, carrying their state:
 * the dev server here suggests it after a few dozen history events. The trace
 * outgrows what the workflow keeps, so older entries go to the artifact store.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, it } from 'node:test';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { git, makeOriginRepo, tempDir } from './support/git-fixture';
import { call, eventually } from './support/http';
import { startTestStack, startTestTemporal } from './support/stack';

let temporal: DevServer;
let stack: Stack;

before(async () => {
  temporal = await startTestTemporal(['--dynamic-config-value', 'limit.historyCount.suggestContinueAsNew=60']);
});
after(async () => {
  await stack?.stop();
  await temporal?.stop();
});

it('carries usage, trace, items and the working copy across continue-as-new, archiving old trace entries', async () => {
  const root = tempDir('can');
  const origin = makeOriginRepo(root, { 'README.md': 'fixture\n' });
  stack = await startTestStack(temporal, path.join(root, 'data'), `can-${process.pid}`);
  const base = stack.url!;
  const STEPS = 80;
  const steps = Array.from({ length: STEPS }, (_, i) => ({ run: `echo ${i} >> count.txt` }));
  const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'Count to twelve', planner: { kind: 'recipe', steps }, budget: { max_steps: 40 } });
  assert.equal(res.status, 202);
  const id = res.body.task_id;

  // A budget request in the middle: its grant must reach the run that is waiting, whichever run that is.
  const mid = await eventually(() => call(base, 'GET', `/v1/tasks/${id}`), (r) => r.body.items?.some((i: any) => i.kind === 'budget_request' && i.status === 'pending'), 'budget request', 60_000);
  const grant = mid.body.items.find((i: any) => i.kind === 'budget_request' && i.status === 'pending');
  // Messages are traced too: enough of them push the trace past what the workflow keeps in state.
  for (let i = 0; i < 150; i++) {
    assert.equal((await call(base, 'POST', `/v1/tasks/${id}/messages`, { text: `note ${i}` })).status, 200);
  }
  assert.equal((await call(base, 'POST', `/v1/tasks/${id}/inbox/${grant.item_id}`, { action: 'grant_budget', budget: { max_steps: 40 } })).status, 200);

  const review = await eventually(() => call(base, 'GET', `/v1/tasks/${id}`), (r) => r.body.state === 'pr_open', 'the review', 90_000);
  assert.equal(review.body.usage.steps, STEPS);
  assert.equal(git(origin, 'show', `agent/${id}:count.txt`), Array.from({ length: STEPS }, (_, i) => String(i)).join('\n'));

  const runs: string[] = [];
  for await (const run of stack.client.workflow.list({ query: `WorkflowId = '${id}'` })) runs.push(run.status.name);
  assert.ok(runs.filter((s) => s === 'CONTINUED_AS_NEW').length >= 1, `the task continued as new at least once: ${runs.join(', ')}`);
  const trace = await call(base, 'GET', `/v1/tasks/${id}/trace`);
  assert.ok(review.body.trace_count > 200, 'enough entries that older ones were archived');
  assert.equal(trace.body.entries.length, review.body.trace_count, 'archived and live entries together');
  assert.equal(trace.body.entries[0].type, 'created');
  assert.equal(trace.body.entries.filter((e: any) => e.type === 'step').length, STEPS, 'the trace kept every step');
  assert.deepEqual(
    trace.body.entries.filter((e: any) => e.type === 'message').map((e: any) => e.message),
    Array.from({ length: 150 }, (_, i) => `note ${i}`),
    'every message once, in order',
  );
  const inbox = await eventually(() => call(base, 'GET', '/v1/inbox'), (r) => r.body.items?.some((i: any) => i.task_id === id), 'the review in the inbox');
  const item = inbox.body.items.find((i: any) => i.task_id === id);
  assert.equal((await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'approve' })).status, 200);
  await eventually(() => call(base, 'GET', `/v1/tasks/${id}`), (r) => r.body.state === 'done', 'done');
  const tasks = await call(base, 'GET', '/v1/tasks');
  assert.equal(tasks.body.tasks.filter((t: any) => t.task_id === id).length, 1, 'listed once despite several runs');
});
