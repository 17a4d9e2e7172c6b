/**
 * Ended tasks outlive Temporal's retention: the final record a task writes when it ends, the API reading it
 * once the workflow is gone, and the clean-up of tasks past TASK_RETENTION_DAYS.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WorkflowNotFoundError } from '@temporalio/client';
import { ArtifactStore } from '../activities/artifacts/store';
import { removeExpiredTasks } from '../activities/records/expiry';
import { RECORD_TRACE, TASK_RECORD, TaskRecordStore, writeTaskRecord } from '../activities/records/task-record';
import type { TaskView, TraceEntry } from '../domain/task';
import { createLogger, type Logger } from '../workers/log';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { makeOriginRepo, tempDir } from './support/git-fixture';
import { call, eventually } from './support/http';
import { startTestStack, startTestTemporal } from './support/stack';

/** How long the dev server may take to delete a closed workflow it was asked to delete. */
const DELETION_TIMEOUT_MS = 120_000;

const quiet = createLogger({ level: 'error', component: 'test' });

/** A logger that keeps what it is given, to check what a clean-up pass says it removed. */
function recordingLogger(): Logger & { lines: { msg: string; attrs: Record<string, unknown> }[] } {
  const lines: { msg: string; attrs: Record<string, unknown> }[] = [];
  const keep = (msg: string, attrs: Record<string, unknown> = {}): void => {
    lines.push({ msg, attrs });
  };
  return { lines, debug: keep, info: keep, warn: keep, error: keep };
}

describe('an ended task whose workflow Temporal no longer has', () => {
  let temporal: DevServer;
  let stack: Stack;
  let base: string;
  let origin: string;

  before(async () => {
    temporal = await startTestTemporal();
    const root = tempDir('records');
    origin = makeOriginRepo(root, { 'README.md': '# fixture\n' });
    stack = await startTestStack(temporal, path.join(root, 'data'), `records-${process.pid}`, { SANDBOX_DRIVER: 'process' });
    base = stack.url!;
  });

  after(async () => {
    await stack?.stop();
    await temporal?.stop();
  });

  async function submit(body: Record<string, unknown>): Promise<string> {
    const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'Say more', requester: 'alice', ...body });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    return res.body.task_id;
  }

  async function pendingItem(id: string, kind: string): Promise<any> {
    const t = await eventually(
      () => call(base, 'GET', `/v1/tasks/${id}`).then((r) => r.body),
      (t: any) => t.items?.some((i: any) => i.status === 'pending' && i.kind === kind),
      `${kind} on ${id}`,
    );
    return t.items.find((i: any) => i.status === 'pending' && i.kind === kind);
  }

  async function decide(id: string, itemId: string, body: object): Promise<void> {
    const res = await call(base, 'POST', `/v1/tasks/${id}/inbox/${itemId}`, body);
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }

  /** Deletes the workflow as retention would, and waits until Temporal says it does not know it (the server deletes in the background, about 30 s). */
  async function forget(id: string): Promise<void> {
    await stack.client.workflowService.deleteWorkflowExecution({ namespace: temporal.namespace, workflowExecution: { workflowId: id } });
    await eventually(
      () => stack.client.workflow.getHandle(id).describe().then(() => 'known', (err) => (err instanceof WorkflowNotFoundError ? 'gone' : 'error')),
      (v) => v === 'gone',
      `${id} deleted from Temporal`,
      DELETION_TIMEOUT_MS,
    );
  }

  it('still answers GET task and trace from its record, with the same decisions and actors, and lists with include_ended', async () => {
    const approved = await submit({ planner: { kind: 'recipe', steps: [{ run: 'echo more >> README.md' }] }, policy: { approval_commands: ['^echo more'] }, labels: ['kept'] });
    await decide(approved, (await pendingItem(approved, 'risky_action')).item_id, { action: 'approve', actor: 'carol' });
    await decide(approved, (await pendingItem(approved, 'pr_review')).item_id, { action: 'approve', actor: 'bob' });
    await stack.client.workflow.getHandle(approved).result();

    const cancelled = await submit({ planner: { kind: 'recipe', steps: [{ run: 'echo more >> README.md' }] }, policy: { approval_commands: ['^echo more'] }, labels: ['kept'] });
    await pendingItem(cancelled, 'risky_action');
    assert.equal((await call(base, 'POST', `/v1/tasks/${cancelled}/cancel`, { actor: 'erin', reason: 'not needed' })).status, 200);
    await stack.client.workflow.getHandle(cancelled).result();

    const before = new Map<string, { view: any; trace: any }>();
    for (const id of [approved, cancelled]) {
      const view = await call(base, 'GET', `/v1/tasks/${id}`);
      const trace = await call(base, 'GET', `/v1/tasks/${id}/trace`);
      assert.equal(view.status, 200);
      assert.equal(trace.status, 200);
      before.set(id, { view: view.body, trace: trace.body });
    }
    await Promise.all([approved, cancelled].map(forget));

    for (const id of [approved, cancelled]) {
      const view = await call(base, 'GET', `/v1/tasks/${id}`);
      const trace = await call(base, 'GET', `/v1/tasks/${id}/trace`);
      assert.equal(view.status, 200, JSON.stringify(view.body));
      assert.equal(trace.status, 200, JSON.stringify(trace.body));
      assert.deepEqual(view.body, before.get(id)!.view);
      assert.deepEqual(trace.body.entries, before.get(id)!.trace.entries);
      assert.equal(trace.body.first_index, 0);
    }
    const decisions = (await call(base, 'GET', `/v1/tasks/${approved}/trace`)).body.entries.filter((e: TraceEntry) => e.type === 'decision');
    assert.deepEqual(
      decisions.map((e: TraceEntry) => e.actor),
      ['local admin', 'local admin'],
    );
    assert.equal((await call(base, 'GET', `/v1/tasks/${approved}`)).body.state, 'done');
    const cancelDecision = (await call(base, 'GET', `/v1/tasks/${cancelled}/trace`)).body.entries.find((e: TraceEntry) => e.type === 'decision');
    assert.equal(cancelDecision.actor, 'local admin');
    assert.equal((await call(base, 'GET', `/v1/tasks/${cancelled}`)).body.state, 'cancelled');

    // Without include_ended the listing is Temporal's, which has forgotten both.
    const plain = await call(base, 'GET', '/v1/tasks?label=kept');
    assert.ok(!plain.body.tasks.some((t: any) => t.task_id === approved || t.task_id === cancelled));

    // Newest end first, one per page, the token leading from one to the next.
    const first = await call(base, 'GET', '/v1/tasks?label=kept&include_ended=true&limit=1');
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(first.body.tasks.map((t: any) => [t.task_id, t.state, t.status]), [[cancelled, 'cancelled', 'ENDED']]);
    assert.equal(typeof first.body.next_page_token, 'string');
    const second = await call(base, 'GET', `/v1/tasks?label=kept&include_ended=true&limit=1&page_token=${first.body.next_page_token}`);
    assert.deepEqual(second.body.tasks.map((t: any) => [t.task_id, t.state, t.requester]), [[approved, 'done', 'local-admin']]);
    assert.equal(second.body.next_page_token, null);

    const done = await call(base, 'GET', '/v1/tasks?state=done&label=kept&include_ended=true');
    assert.deepEqual(done.body.tasks.map((t: any) => t.task_id), [approved]);

    const forged = await call(base, 'GET', '/v1/tasks?include_ended=true&page_token=bm90LWEtdG9rZW4');
    assert.equal(forged.status, 400);
    assert.equal(forged.body.error.details[0].path, 'page_token');
  });

  it('stays a 404 for a task that never existed', async () => {
    const res = await call(base, 'GET', '/v1/tasks/t-00000000-0000-0000-0000-000000000000/trace');
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, 'task_not_found');
  });
});

/** A view as a workflow hands it to its record, ended at `endedAt`. */
function endedView(taskId: string, endedAt: string, state: TaskView['state'] = 'done'): TaskView {
  return {
    task_id: taskId,
    state,
    spec: {
      repo: '/tmp/origin',
      base_branch: 'main',
      goal: 'g',
      context_files: [],
      budget: {} as TaskView['budget'],
      policy: {} as TaskView['policy'],
      priority: 3,
      planner: { kind: 'recipe', steps: [] } as unknown as TaskView['spec']['planner'],
      requester: 'alice',
      labels: [],
    } as TaskView['spec'],
    created_at: endedAt,
    updated_at: endedAt,
    usage: { steps: 0, tokens: 0, usd: 0 },
    budget: {} as TaskView['budget'],
    policy: {} as TaskView['policy'],
    isolation: 'none',
    sandbox_id: null,
    branch: null,
    commit: null,
    round: 1,
    step_index: 0,
    items: [],
    trace_count: 0,
    result: null,
  };
}

const entry = (n: number): TraceEntry => ({ at: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(), type: 'note', message: `entry ${n}` });

describe('the final record', () => {
  it('holds the archived head and the live entries in order, and a retry writes the same', async () => {
    const store = new ArtifactStore(tempDir('record-store'));
    const id = 't-archived';
    // The archive holds entries 0-2 plus a batch appended twice by a retried archive step.
    await store.append(id, 'trace.jsonl', [0, 1, 2, 1, 2].map((n) => `${JSON.stringify(entry(n))}\n`).join(''));
    const input = { task_id: id, view: endedView(id, '2026-01-02T00:00:00.000Z'), first_index: 3, entries: [entry(3), entry(4)] };
    await writeTaskRecord(store, input, quiet);
    const firstTrace = await store.readByName(id, RECORD_TRACE);
    const firstRecord = await store.readByName(id, TASK_RECORD);
    await writeTaskRecord(store, input, quiet);
    assert.deepEqual(await store.readByName(id, RECORD_TRACE), firstTrace);
    assert.deepEqual(await store.readByName(id, TASK_RECORD), firstRecord);

    const records = new TaskRecordStore(store, quiet);
    assert.deepEqual(await records.trace(id), [0, 1, 2, 3, 4].map(entry));
    const record = await records.read(id);
    assert.equal(record?.trace_complete, true);
    assert.equal(record?.ended_at, '2026-01-02T00:00:00.000Z');
  });

  it('says so when the archive lost entries, rather than claiming a whole trace', async () => {
    const store = new ArtifactStore(tempDir('record-gap'));
    const id = 't-gap';
    await store.append(id, 'trace.jsonl', `${JSON.stringify(entry(0))}\n`);
    await writeTaskRecord(store, { task_id: id, view: endedView(id, '2026-01-02T00:00:00.000Z'), first_index: 3, entries: [entry(3)] }, quiet);
    const record = await new TaskRecordStore(store, quiet).read(id);
    assert.equal(record?.trace_complete, false);
    assert.equal(record?.trace_entries, 2);
  });
});

describe('the retention clean-up', () => {
  it('removes the artifacts of a task that ended before the retention and keeps one still within it, logging what it removed', async () => {
    const store = new ArtifactStore(tempDir('expiry'));
    const now = new Date('2026-03-01T00:00:00.000Z');
    const old = 't-old';
    const recent = 't-recent';
    const open = 't-open';
    await store.put(old, 'step-1-0.log', 'old output');
    await writeTaskRecord(store, { task_id: old, view: endedView(old, '2026-02-20T23:59:59.000Z'), first_index: 0, entries: [entry(0)] }, quiet);
    await store.put(recent, 'step-1-0.log', 'recent output');
    await writeTaskRecord(store, { task_id: recent, view: endedView(recent, '2026-02-22T00:00:01.000Z'), first_index: 0, entries: [entry(0)] }, quiet);
    await store.put(open, 'step-1-0.log', 'a running task has no record');
    // A removal an earlier pass began and did not finish.
    fs.mkdirSync(path.join(store.dir, '.expired-t-half-0000'));

    const log = recordingLogger();
    const records = new TaskRecordStore(store, log);
    const removed = await removeExpiredTasks({ records, retentionDays: 7, now, log });

    assert.deepEqual(removed.map((r) => r.task_id), [old]);
    assert.equal(removed[0]!.files, 3);
    assert.ok(!fs.existsSync(path.join(store.dir, old)), 'the expired task directory is gone');
    assert.deepEqual(await store.readByName(recent, 'step-1-0.log'), Buffer.from('recent output'));
    assert.ok((await records.read(recent)) !== null);
    assert.deepEqual(await store.readByName(open, 'step-1-0.log'), Buffer.from('a running task has no record'));
    assert.deepEqual(fs.readdirSync(store.dir).sort(), [open, recent].sort());
    const said = log.lines.find((l) => l.msg === 'removed artifacts of a task past its retention');
    assert.equal(said?.attrs.task_id, old);
    assert.equal(said?.attrs.ended_at, '2026-02-20T23:59:59.000Z');

    assert.deepEqual(await removeExpiredTasks({ records, retentionDays: 7, now, log }), [], 'a second pass removes nothing more');
  });
});
