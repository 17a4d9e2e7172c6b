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
import { TASK_WORKFLOW_TYPE } from '../workflows/messages';
import {
  ALL_SEARCH_ATTRIBUTES,
  SA_ITEM_KINDS,
  SA_PENDING,
  SA_PRIORITY,
  SA_REPO,
  SA_REQUESTER,
  SA_STATE,
  SA_WAITING_SINCE,
} from '../workflows/search-attributes';
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
  const queue = `inbox-${process.pid}`;
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < TASKS) {
        const i = next++;
        const since = new Date(t0 - ((i * 7919) % TASKS) * 1000 - 5_000);
        const priority = i % 11 === 0 ? 2 : i % 4 === 0 ? 4 : 3;
        const items = [{ item_id: 'risky_action-1', kind: 'risky_action', title: 'Run', created_at: since.toISOString() }];
        // A second item comes a varying while after the first, so its order differs from the tasks' order.
        if (i % 2 === 0 && priority === 3) items.push({ item_id: 'budget_request-2', kind: 'budget_request', title: 'Budget', created_at: new Date(since.getTime() + (i % 5) * 20_000 + 500).toISOString() });
        await client.workflow.start(TASK_WORKFLOW_TYPE, {
          taskQueue: queue,
          workflowId: `t-inbox-${i}`,
          typedSearchAttributes: [
            { key: SA_STATE, value: 'awaiting_approval' },
            { key: SA_PENDING, value: items.length },
            { key: SA_PRIORITY, value: priority },
            { key: SA_REPO, value: '/srv/repo.git' },
            { key: SA_REQUESTER, value: 'alice' },
            { key: SA_WAITING_SINCE, value: since },
            { key: SA_ITEM_KINDS, value: [...new Set(items.map((x) => x.kind))] },
          ],
          memo: { inbox: { items } },
        });
      }
    }),
  );
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
  ];
  await eventually(async () => (await everything(Date.now())).length >= TASKS, 'visibility to show every task');
  const reader = new InboxReader(client);
  for (const round of ['before', 'after']) {
    const now = Date.now();
    const all = await everything(now);
    for (const f of filters) {
      const expected = ids(all.filter((i) => (!f.kind || i.kind === f.kind) && (!f.priority || i.priority === f.priority)).slice(0, f.limit));
      for (let k = 0; k < 3; k++) {
        const page = await reader.list(f, now);
        assert.deepEqual(ids(page.items), expected, `${round} ${JSON.stringify(f)} read ${k}`);
      }
    }
    if (round === 'before') {
      // The oldest tasks are decided and leave; the remembered windows shrink under them.
      const oldest = [...new Set(all.slice(0, 15).map((i) => i.task_id))];
      await Promise.all(oldest.map((id) => client.workflow.getHandle(id).terminate('decided')));
      await eventually(async () => !(await everything(Date.now())).some((i) => oldest.includes(i.task_id)), 'decided tasks to leave');
    }
  }
  assert.ok(reader.reads.window > reader.reads.full, `most pages came from windows: ${JSON.stringify(reader.reads)}`);
});

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

