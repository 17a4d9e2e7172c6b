/**
 * The inbox reader on a real dev server with hundreds of waiting tasks: pages read
 * through a remembered window are exactly the pages a full read gives, also after
 * the oldest tasks leave the inbox.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { InboxReader, type InboxFilter } from '../api/inbox';
import { ensureSearchAttributes } from '../workers/namespace-setup';
import type { DevServer } from '../workers/temporal-server';
import { ALL_SEARCH_ATTRIBUTES } from '../workflows/search-attributes';
import { startParked, type ParkedTask } from './support/parked-executions';
import { startTestTemporal } from './support/stack';

const TASKS = 300;
let temporal: DevServer;
let connection: Connection;
let client: Client;

before(async () => {
  temporal = await startTestTemporal();
  connection = await Connection.connect({ address: temporal.address });
  await ensureSearchAttributes(connection, temporal.namespace, [...ALL_SEARCH_ATTRIBUTES]);
  client = new Client({ connection, namespace: temporal.namespace });
  // Parked tasks as the workflow publishes them, on a queue no worker polls: priorities mixed,
  // waiting times unrelated to start order, many priority-3 tasks with a second, newer item.
  const t0 = Date.now();
  const tasks: ParkedTask[] = Array.from({ length: TASKS }, (_, i) => {
    const since = new Date(t0 - ((i * 7919) % TASKS) * 1000 - 5_000);
    const priority = i % 11 === 0 ? 2 : i % 4 === 0 ? 4 : 3;
    const items: ParkedTask['items'] = [{ item_id: 'risky_action-1', kind: 'risky_action', title: 'Run', created_at: since.toISOString() }];
    // A second item comes a varying while after the first, so its order differs from the tasks' order.
    if (i % 2 === 0 && priority === 3) items.push({ item_id: 'budget_request-2', kind: 'budget_request', title: 'Budget', created_at: new Date(since.getTime() + (i % 5) * 20_000 + 500).toISOString() });
    return { id: `t-inbox-${i}`, priority, items };
  });
  await startParked(client, `inbox-${process.pid}`, tasks);
});

after(async () => {
  await connection?.close();
  await temporal?.stop();
});

/** Every item in inbox order, by a reader that has no window to use. */
async function everything(now: number) {
  return (await new InboxReader(client).list({ limit: 5_000, teams: 'all' }, now)).items;
}

const ids = (items: { task_id: string; item_id: string }[]) => items.map((i) => `${i.task_id}/${i.item_id}`);

it('gives the same pages through a remembered window as a full read, before and after tasks leave', async () => {
  const filters: InboxFilter[] = [
    { limit: 20, teams: 'all' },
    { limit: 20, priority: 3, teams: 'all' },
    { limit: 10, kind: 'budget_request', teams: 'all' },
    { limit: 50, requester: 'alice', teams: 'all' },
    // Priority 2 holds a page of 25 but not a window's room to spare.
    { limit: 25, teams: 'all' },
    { limit: 20, older_than_minutes: 2, teams: 'all' },
  ];
  await eventually(async () => (await everything(Date.now())).length >= TASKS, 'visibility to show every task');
  const reader = new InboxReader(client);
  let fullBeforeThinning = 0;
  for (const round of ['before', 'after', 'thinned']) {
    const now = Date.now();
    const all = await everything(now);
    for (const f of filters) {
      const oldEnough = (i: { created_at: string }) => f.older_than_minutes === undefined || Date.parse(i.created_at) <= now - f.older_than_minutes * 60_000;
      const expected = ids(all.filter((i) => (!f.kind || i.kind === f.kind) && (!f.priority || i.priority === f.priority) && oldEnough(i)).slice(0, f.limit));
      for (let k = 0; k < 3; k++) {
        const page = await reader.list(f, now);
        assert.deepEqual(ids(page.items), expected, `${round} ${JSON.stringify(f)} read ${k}`);
      }
    }
    // The oldest tasks are decided and leave, the remembered windows shrink under them: first the
    // oldest of all (the priority-2 tasks), then the oldest of priority 3, which every window now holds.
    const leaving =
      round === 'before' ? all.slice(0, 15) : round === 'after' ? all.filter((i) => i.priority === 3).slice(0, 12) : [];
    const gone = [...new Set(leaving.map((i) => i.task_id))];
    await Promise.all(gone.map((id) => client.workflow.getHandle(id).terminate('decided')));
    await eventually(async () => !(await everything(Date.now())).some((i) => gone.includes(i.task_id)), 'decided tasks to leave');
    if (round === 'after') fullBeforeThinning = reader.reads.full;
  }
  console.log(`inbox reads: ${JSON.stringify(reader.reads)}`);
  assert.ok(reader.reads.window > reader.reads.full, `most pages came from windows: ${JSON.stringify(reader.reads)}`);
  assert.ok(reader.reads.searched > 0, `first reads found their windows by counts: ${JSON.stringify(reader.reads)}`);
  // Windows thinned inside their priority are widened with counts, not read in full again.
  assert.ok(reader.reads.widened > 0, `thinned windows were widened: ${JSON.stringify(reader.reads)}`);
  assert.equal(reader.reads.full, fullBeforeThinning, `no filter was read in full after the thinning: ${JSON.stringify(reader.reads)}`);
});

it('shows every item once a remembered window holds all the tasks left, also those raised after its cut', async () => {
  // 30 tasks of one requester, each with a second item an hour after its first: later than any cut.
  const t0 = Date.now() - 3_600_000;
  const tasks: ParkedTask[] = Array.from({ length: 30 }, (_, i) => {
    const since = new Date(t0 - i * 1000);
    return {
      id: `t-few-${i}`,
      priority: 3,
      requester: 'bob',
      items: [
        { item_id: 'risky_action-1', kind: 'risky_action', title: 'Run', created_at: since.toISOString() },
        { item_id: 'clarification-2', kind: 'clarification', title: 'Ask', created_at: new Date(since.getTime() + 3_600_000 - 60_000).toISOString() },
      ],
    };
  });
  const started = await startParked(client, `inbox-few-${process.pid}`, tasks);
  const filter: InboxFilter = { limit: 10, requester: 'bob', teams: 'all' };
  const reference = async () => ids((await new InboxReader(client).list({ ...filter, limit: 5_000 })).items).slice(0, filter.limit);
  await eventually(async () => (await reference()).length === filter.limit && (await new InboxReader(client).list({ ...filter, limit: 5_000 })).count === 30, 'visibility to show the 30 tasks');
  const reader = new InboxReader(client);
  const first = await reader.list(filter);
  assert.deepEqual(ids(first.items), await reference());
  assert.equal(reader.reads.searched, 1, 'the first page came through a window found by counts');
  // Every task but the 4 oldest leaves: the window now holds all there are, and 8 items, fewer than a page.
  const staying = new Set(first.items.slice(0, 4).map((i) => i.task_id));
  await Promise.all(started.filter((h) => !staying.has(h.workflowId)).map((h) => h.terminate('decided')));
  await eventually(async () => (await new InboxReader(client).list({ ...filter, limit: 5_000 })).count === 4, 'the others to leave');
  const page = await reader.list(filter);
  assert.equal(page.items.length, 8, `every item of the 4 tasks: ${JSON.stringify(ids(page.items))}`);
  assert.deepEqual(ids(page.items), await reference());
});

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

