/**
 * Where a queued task stands: the order in which workers with room admit tasks (priority 1 first, then the
 * order they were submitted in), read from the open workflows' search attributes like the rest of the inbox.
 */
import type { Client } from '@temporalio/client';
import { SA_PRIORITY, SA_STATE } from '../workflows/search-attributes';
import { listExecutions, visibilityQuery, where } from './visibility';

/** Queued tasks ranked at most; one further back is shown as that many and more. */
export const MAX_QUEUED_RANKED = 1_000;
/** The priority of a task whose attribute is missing: the task schema's default. */
const DEFAULT_PRIORITY = 3;

/** 1-based positions of the queued tasks, by task id. */
export async function queuePositions(client: Client): Promise<Map<string, number>> {
  const queued = await listExecutions(client, visibilityQuery([where('ExecutionStatus', '=', 'Running'), where(SA_STATE, '=', 'queued')]), MAX_QUEUED_RANKED);
  const rows = queued.map((info) => ({ id: info.workflowId, priority: info.typedSearchAttributes.get(SA_PRIORITY) ?? DEFAULT_PRIORITY, at: info.startTime.getTime() }));
  rows.sort((a, b) => a.priority - b.priority || a.at - b.at || a.id.localeCompare(b.id));
  return new Map(rows.map((r, i) => [r.id, i + 1]));
}

/** `rows` with `queue_position` on the queued ones; one listing of the queue whatever their number. */
export async function withQueuePositions<T extends { task_id: string; state: string | null }>(client: Client, rows: T[]): Promise<(T & { queue_position?: number })[]> {
  if (!rows.some((r) => r.state === 'queued')) return rows;
  const positions = await queuePositions(client);
  return rows.map((r) => (r.state === 'queued' ? { ...r, queue_position: positions.get(r.task_id) ?? MAX_QUEUED_RANKED } : r));
}
