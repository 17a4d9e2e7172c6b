/**
 * Reading tasks out of Temporal's visibility store: list queries built from typed
 * search-attribute keys, and rows read from search attributes and memo only —
 * never a per-task query, so listings stay fast with many open tasks.
 */
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import type { TaskState } from '../domain/task';
import { TASK_WORKFLOW_TYPE } from '../workflows/messages';
import {
  MEMO_SUMMARY,
  SA_LABELS,
  SA_PRIORITY,
  SA_REPO,
  SA_REQUESTER,
  SA_STATE,
  SA_TEAM,
  type SummaryMemo,
} from '../workflows/search-attributes';

/**
 * What a string filter value may contain. The visibility query language has no escape
 * every store agrees on, so quotes, backslashes and control characters are refused, not escaped.
 */
export const SAFE_FILTER_VALUE = /^[^'"`\\\u0000-\u001f\u007f]*$/;

/** Thrown when a value that would change a visibility query's meaning reaches the builder (the schemas should have refused it). */
export class UnsafeFilterValueError extends Error {
  override readonly name = 'UnsafeFilterValueError';
  constructor(readonly attribute: string) {
    super(`refusing to put an unsafe value for ${attribute} into a visibility query`);
  }
}

/** A comparison against a search attribute key or a system attribute name (for a keyword list, `=` means "contains"). */
export function where(key: { readonly name: string } | string, op: '=' | '!=' | '>' | '<' | '<=', value: string | number): string {
  const attribute = typeof key === 'string' ? key : key.name;
  return `${attribute} ${op} ${literal(attribute, value)}`;
}

/** A search attribute equal to one of `values` (non-empty: an empty set matches nothing, which the caller handles). */
export function whereIn(key: { readonly name: string }, values: readonly string[]): string {
  if (values.length === 0) throw new Error(`whereIn(${key.name}) needs at least one value`);
  return `${key.name} IN (${values.map((v) => literal(key.name, v)).join(', ')})`;
}

/**
 * The clause restricting a listing to the teams a caller sees: none for an admin (`'all'`), `null` when the
 * caller sees no team at all (the listing is empty). Tasks without a team never match a team, so they stay admin-only.
 */
export function teamClause(teams: readonly string[] | 'all'): string | undefined | null {
  if (teams === 'all') return undefined;
  if (teams.length === 0) return null;
  return whereIn(SA_TEAM, teams);
}

/** The clauses joined with AND, always restricted to task workflows. */
export function visibilityQuery(clauses: readonly string[]): string {
  return [where('WorkflowType', '=', TASK_WORKFLOW_TYPE), ...clauses].join(' AND ');
}

function literal(attribute: string, value: string | number): string {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new UnsafeFilterValueError(attribute);
    return String(value);
  }
  if (!SAFE_FILTER_VALUE.test(value)) throw new UnsafeFilterValueError(attribute);
  return `'${value}'`;
}

/** Largest page the frontend returns by default; asking for more is clamped by the server anyway. */
const MAX_PAGE_SIZE = 1_000;

/** Executions matching `query`, in the store's order (newest first), at most `limit`. */
export async function listExecutions(client: Client, query: string, limit: number): Promise<WorkflowExecutionInfo[]> {
  const out: WorkflowExecutionInfo[] = [];
  if (limit <= 0) return out;
  for await (const info of client.workflow.list({ query, pageSize: Math.min(limit, MAX_PAGE_SIZE) })) {
    out.push(info);
    if (out.length >= limit) break;
  }
  return out;
}

/** A task as `GET /v1/tasks` shows it. */
export interface TaskRow {
  task_id: string;
  state: TaskState | null;
  goal: string | null;
  repo: string | null;
  requester: string | null;
  /** Null for a task from before teams. */
  team: string | null;
  priority: number | null;
  labels: string[];
  created_at: string;
  updated_at: string | null;
  /** Temporal's execution status (`RUNNING`, `COMPLETED`, `TERMINATED`, …). */
  status: string;
  /** A queued task's place in the admission order, 1 first. */
  queue_position?: number;
}

/** The fields of an execution a row is built from (a listing entry or a describe result). */
export type ExecutionFields = Pick<WorkflowExecutionInfo, 'workflowId' | 'typedSearchAttributes' | 'memo' | 'startTime' | 'status'>;

/** The task's summary memo, written at start and kept current by the workflow. */
export function summaryOf(info: Pick<WorkflowExecutionInfo, 'memo'>): SummaryMemo | null {
  return (info.memo?.[MEMO_SUMMARY] as SummaryMemo | undefined) ?? null;
}

/** A row from one execution's search attributes and summary memo. */
export function taskRow(info: ExecutionFields): TaskRow {
  const sa = info.typedSearchAttributes;
  const summary = summaryOf(info);
  return {
    task_id: info.workflowId,
    state: (sa.get(SA_STATE) as TaskState | undefined) ?? summary?.state ?? null,
    goal: summary?.goal ?? null,
    repo: sa.get(SA_REPO) ?? null,
    requester: sa.get(SA_REQUESTER) ?? null,
    team: sa.get(SA_TEAM) ?? null,
    priority: sa.get(SA_PRIORITY) ?? null,
    labels: sa.get(SA_LABELS) ?? [],
    created_at: summary?.created_at ?? info.startTime.toISOString(),
    updated_at: summary?.updated_at ?? null,
    status: info.status.name,
  };
}
