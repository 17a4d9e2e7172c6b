/**
 * Task routes: intake, reads, decisions, messages and cancellation.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Router } from 'express';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { z } from 'zod';
import { CancelBody, DecisionBody, ItemKind, MessageBody, TaskSpec, TaskState, type TraceEntry } from '../domain/task';
import {
  TASK_WORKFLOW_TYPE,
  cancelUpdate,
  decideUpdate,
  messageUpdate,
  taskQuery,
  traceQuery,
  type TaskWorkflowInput,
} from '../workflows/messages';
import {
  MEMO_REQUEST_HASH,
  MEMO_SUMMARY,
  SA_LABELS,
  SA_PENDING,
  SA_PRIORITY,
  SA_REPO,
  SA_REQUESTER,
  SA_STATE,
  type SummaryMemo,
} from '../workflows/search-attributes';
import { HttpError, taskNotFound } from './errors';
import { requireJson, validate, parsed } from './validate';
import { clause, listInbox, listTasks, taskRow } from './visibility';

/** What the task routes need. */
export interface TaskRouteDeps {
  client: Client;
  taskQueue: string;
  artifacts?: { readByName(taskId: string, name: string): Promise<Buffer> };
}

const TaskParams = z.object({ id: z.string().regex(/^t-[A-Za-z0-9-]{1,64}$/) });
const ItemParams = TaskParams.extend({ item_id: z.string().regex(/^[a-z_]+-\d{1,9}$/) });
const ArtifactParams = TaskParams.extend({ name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/) });
const IdempotencyKey = z.string().regex(/^[A-Za-z0-9._:-]{1,200}$/, 'Idempotency-Key must be 1-200 characters of A-Z a-z 0-9 . _ : -');

const TaskListQuery = z.strictObject({
  state: TaskState.optional(),
  repo: z.string().min(1).max(2_000).optional(),
  requester: z.string().min(1).max(200).optional(),
  label: z.string().min(1).max(100).optional(),
  priority: z.coerce.number().int().min(1).max(5).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
});

const InboxQuery = z.strictObject({
  kind: ItemKind.optional(),
  repo: z.string().min(1).max(2_000).optional(),
  requester: z.string().min(1).max(200).optional(),
  priority: z.coerce.number().int().min(1).max(5).optional(),
  limit: z.coerce.number().int().min(1).max(1_000).default(100),
});

/** Routes under `/v1`. */
export function taskRoutes(deps: TaskRouteDeps): Router {
  const { client } = deps;
  const router = Router();
  const handle = (id: string) => client.workflow.getHandle(id);

  /** Maps "no such workflow" to 404, and an update to a task that has ended to 409. */
  const onTask = async <T>(id: string, call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
      const exists = await handle(id)
        .describe()
        .then(() => true)
        .catch(() => false);
      if (exists) throw new HttpError(409, 'task_ended', `task ${id} has ended`, undefined, { cause: err });
      throw taskNotFound(id, err);
    }
  };

  router.post('/tasks', requireJson(), validate('body', TaskSpec), async (req, res) => {
    const spec = parsed(res, 'body', TaskSpec);
    const rawKey = req.header('idempotency-key');
    const key = rawKey === undefined ? undefined : IdempotencyKey.parse(rawKey);
    const taskId = key ? `t-${sha256(`${spec.requester}\n${key}`).slice(0, 32)}` : `t-${randomUUID()}`;
    const requestHash = sha256(JSON.stringify(spec));
    const createdAt = new Date().toISOString();
    const input: TaskWorkflowInput = { task_id: taskId, spec, created_at: createdAt };
    const summary: SummaryMemo = { goal: spec.goal.slice(0, 200), state: 'queued', created_at: createdAt, updated_at: createdAt };
    const links = { self: `/v1/tasks/${taskId}`, trace: `/v1/tasks/${taskId}/trace` };
    try {
      await client.workflow.start(TASK_WORKFLOW_TYPE, {
        workflowId: taskId,
        taskQueue: deps.taskQueue,
        args: [input],
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        typedSearchAttributes: [
          { key: SA_STATE, value: 'queued' },
          { key: SA_REPO, value: spec.repo },
          { key: SA_REQUESTER, value: spec.requester },
          { key: SA_PRIORITY, value: spec.priority },
          { key: SA_LABELS, value: spec.labels },
          { key: SA_PENDING, value: 0 },
        ],
        memo: { [MEMO_SUMMARY]: summary, [MEMO_REQUEST_HASH]: requestHash },
      });
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError) || !key) throw err;
      const existing = await handle(taskId).describe();
      if (existing.memo?.[MEMO_REQUEST_HASH] !== requestHash) {
        throw new HttpError(409, 'idempotency_key_reused', 'this Idempotency-Key was used with a different request', undefined, { cause: err });
      }
      res.status(200).location(links.self).json({ ...taskRow(existing), links });
      return;
    }
    res.status(202).location(links.self).json({ task_id: taskId, state: 'queued', links });
  });

  router.get('/tasks', validate('query', TaskListQuery), async (_req, res) => {
    const q = parsed(res, 'query', TaskListQuery);
    const clauses: string[] = [];
    if (q.state) clauses.push(clause('AgentState', q.state));
    if (q.repo) clauses.push(clause('AgentRepo', q.repo));
    if (q.requester) clauses.push(clause('AgentRequester', q.requester));
    if (q.label) clauses.push(clause('AgentLabels', q.label));
    if (q.priority !== undefined) clauses.push(clause('AgentPriority', q.priority));
    const infos = await listTasks(client, clauses, q.limit);
    res.json({ tasks: infos.map(taskRow) });
  });

  router.get('/tasks/:id', validate('params', TaskParams), async (_req, res) => {
    const { id } = parsed(res, 'params', TaskParams);
    res.json(await onTask(id, () => handle(id).query(taskQuery)));
  });

  router.get('/tasks/:id/trace', validate('params', TaskParams), async (_req, res) => {
    const { id } = parsed(res, 'params', TaskParams);
    const live = await onTask(id, () => handle(id).query(traceQuery));
    let archived: TraceEntry[] = [];
    if (live.first_index > 0 && deps.artifacts) {
      const text = (await deps.artifacts.readByName(id, 'trace.jsonl')).toString('utf8');
      archived = text
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as TraceEntry);
    }
    res.json({ entries: [...archived, ...live.entries] });
  });

  router.get('/tasks/:id/artifacts/:name', validate('params', ArtifactParams), async (_req, res) => {
    const { id, name } = parsed(res, 'params', ArtifactParams);
    if (!deps.artifacts) throw new HttpError(404, 'artifact_not_found', 'no artifact store configured');
    let content: Buffer;
    try {
      content = await deps.artifacts.readByName(id, name);
    } catch (err) {
      if ((err as Error).name === 'ArtifactNotFoundError') throw new HttpError(404, 'artifact_not_found', `task ${id} has no artifact ${name}`, undefined, { cause: err });
      throw err;
    }
    res.type('text/plain; charset=utf-8').send(content);
  });

  router.post('/tasks/:id/cancel', requireJson(), validate('params', TaskParams), validate('body', CancelBody), async (_req, res) => {
    const { id } = parsed(res, 'params', TaskParams);
    const body = parsed(res, 'body', CancelBody);
    const ack = await onTask(id, () => handle(id).executeUpdate(cancelUpdate, { args: [{ ...body, actor: body.actor ?? 'anonymous' }] }));
    res.json(ack);
  });

  router.post('/tasks/:id/messages', requireJson(), validate('params', TaskParams), validate('body', MessageBody), async (_req, res) => {
    const { id } = parsed(res, 'params', TaskParams);
    const body = parsed(res, 'body', MessageBody);
    const ack = await onTask(id, () => handle(id).executeUpdate(messageUpdate, { args: [{ ...body, actor: body.actor ?? 'anonymous' }] }));
    res.json(ack);
  });

  router.post('/tasks/:id/inbox/:item_id', requireJson(), validate('params', ItemParams), validate('body', DecisionBody), async (_req, res) => {
    const { id, item_id } = parsed(res, 'params', ItemParams);
    const body = parsed(res, 'body', DecisionBody);
    try {
      const ack = await onTask(id, () =>
        handle(id).executeUpdate(decideUpdate, { args: [{ ...body, item_id, actor: body.actor ?? 'anonymous' }] }),
      );
      res.json(ack);
    } catch (err) {
      if (!(err instanceof HttpError && err.code === 'task_ended')) throw err;
      // A closed task still answers queries: say who settled the item, as an open task's validator would.
      const view = await handle(id).query(taskQuery).catch(() => null);
      const r = view?.items.find((i) => i.item_id === item_id)?.resolution;
      if (!r) throw err;
      throw new HttpError(409, 'stale_decision', `item ${item_id} is no longer pending: ${r.action} by ${r.actor} at ${r.at}; the task has ended (${view!.state})`, undefined, { cause: err });
    }
  });

  router.get('/inbox', validate('query', InboxQuery), async (_req, res) => {
    const q = parsed(res, 'query', InboxQuery);
    res.json(await listInbox(client, q));
  });

  return router;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
