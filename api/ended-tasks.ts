/**
 * Ended tasks for the API, read from the final records they leave in the artifact store: the fallback when
 * Temporal no longer knows a task, listing rows, and the page tokens of `include_ended` listings.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { z } from 'zod';
import { preview } from '../domain/rules';
import type { TaskView } from '../domain/task';
import { taskQuery } from '../workflows/messages';
import type { EndedCursor, EndedTask, TaskRecordReader } from './deps';
import { RequestValidationError } from './errors';
import type { TaskListQuery } from './schemas';
import type { TaskRow } from './visibility';

/** Characters of the goal a listing row shows, as the summary memo keeps it. */
const GOAL_PREVIEW_CHARS = 200;

/** A listing row of an ended task: its final state, and when it ended. */
export interface EndedTaskRow extends TaskRow {
  ended_at: string;
}

/** Where the next page of an `include_ended` listing starts: after a record, or at the newest record. */
const PageToken = z.strictObject({ v: z.literal(1), after: z.strictObject({ ended_at: z.string(), task_id: z.string() }).nullable() });
type PageToken = z.infer<typeof PageToken>;

/**
 * `read()` on the task's record when Temporal says it does not know the task (retention removed it);
 * any other failure, or a task without a record, rethrows the original error (a 404 stays a 404).
 */
export async function fromRecord<T>(err: unknown, records: TaskRecordReader | undefined, read: (r: TaskRecordReader) => Promise<T | null>): Promise<T> {
  if (!(err instanceof WorkflowNotFoundError) || records === undefined) throw err;
  const found = await read(records);
  if (found === null) throw err;
  return found;
}

/** The task's view: from its workflow while Temporal knows it, else from its final record. */
export async function readTaskView(client: Client, records: TaskRecordReader | undefined, id: string): Promise<TaskView> {
  try {
    return await client.workflow.getHandle(id).query(taskQuery);
  } catch (err) {
    return (await fromRecord(err, records, (r) => r.read(id))).view;
  }
}

/** The row an ended task lists as; `status` is `ENDED` because Temporal's execution status is gone with it. */
export function endedRow(record: EndedTask): EndedTaskRow {
  const v = record.view;
  return {
    task_id: record.task_id,
    state: v.state,
    goal: preview(v.spec.goal, GOAL_PREVIEW_CHARS),
    repo: v.spec.repo,
    requester: v.spec.requester,
    team: v.spec.team ?? null,
    priority: v.spec.priority,
    labels: v.spec.labels,
    created_at: v.created_at,
    updated_at: v.updated_at,
    status: 'ENDED',
    ended_at: record.ended_at,
  };
}

/**
 * Whether an ended task passes the listing's filters and is of a team the caller sees (the same rules the
 * visibility query applies to open tasks; a record without a team is for admins only).
 */
export function matchesListing(q: TaskListQuery, teams: readonly string[] | 'all'): (record: EndedTask) => boolean {
  return function matches(record: EndedTask): boolean {
    const spec = record.view.spec;
    const team = spec.team ?? null;
    return (
      (teams === 'all' || (team !== null && teams.includes(team))) &&
      (q.team === undefined || team === q.team) &&
      (q.state === undefined || record.view.state === q.state) &&
      (q.repo === undefined || spec.repo === q.repo) &&
      (q.requester === undefined || spec.requester === q.requester) &&
      (q.label === undefined || spec.labels.includes(q.label)) &&
      (q.priority === undefined || spec.priority === q.priority)
    );
  };
}

/** The token of the page after `after` (null: records from the newest). */
export function encodePageToken(after: EndedCursor | null): string {
  const token: PageToken = { v: 1, after: after === null ? null : { ended_at: after.ended_at, task_id: after.task_id } };
  return Buffer.from(JSON.stringify(token), 'utf8').toString('base64url');
}

/** The cursor a `page_token` names; a 400 naming the field for one this server did not hand out. */
export function decodePageToken(token: string): EndedCursor | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const result = PageToken.safeParse(parsed);
  if (!result.success) {
    throw new RequestValidationError('query', new z.ZodError([{ code: 'custom', path: ['page_token'], message: 'must be a next_page_token from an earlier page', input: token }]));
  }
  return result.data.after;
}
