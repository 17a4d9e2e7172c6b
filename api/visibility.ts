/**
 * Reading tasks out of Temporal's visibility store: search attributes and memo,
 * never a per-task query, so listings stay fast with many open tasks.
 */
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import type { InboxItemSummary, ItemKind, TaskState } from '../domain/task';
import { TASK_WORKFLOW_TYPE } from '../workflows/messages';
import {
  MEMO_INBOX,
  MEMO_SUMMARY,
  SA_LABELS,
  SA_PRIORITY,
  SA_REPO,
  SA_REQUESTER,
  SA_STATE,
  type InboxMemo,
  type SummaryMemo,
} from '../workflows/search-attributes';
import { HttpError } from './errors';

/** A clause of a visibility query; values are quoted, and those that cannot be quoted safely are refused. */
export function clause(attribute: string, value: string | number): string {
  if (typeof value === 'number') return `${attribute} = ${value}`;
  if (/['"\\\n\r]/.test(value)) throw new HttpError(400, 'invalid_request', `filter value for ${attribute} contains a quote, backslash or newline`);
  return `${attribute} = '${value}'`;
}

/** A task as listings show it, from search attributes and memo. */
export interface TaskRow {
  task_id: string;
  state: TaskState | null;
  goal: string | null;
  repo: string | null;
  requester: string | null;
  priority: number | null;
  labels: string[];
  created_at: string | null;
  updated_at: string | null;
  status: string;
}

/** Builds a row from one visibility record. */
export function taskRow(info: Pick<WorkflowExecutionInfo, 'workflowId' | 'typedSearchAttributes' | 'memo' | 'startTime' | 'status'>): TaskRow {
  const sa = info.typedSearchAttributes;
  const summary = (info.memo?.[MEMO_SUMMARY] ?? null) as SummaryMemo | null;
  return {
    task_id: info.workflowId,
    state: (sa.get(SA_STATE) as TaskState | undefined) ?? summary?.state ?? null,
    goal: summary?.goal ?? null,
    repo: sa.get(SA_REPO) ?? null,
    requester: sa.get(SA_REQUESTER) ?? null,
    priority: sa.get(SA_PRIORITY) ?? null,
    labels: sa.get(SA_LABELS) ?? [],
    created_at: summary?.created_at ?? info.startTime.toISOString(),
    updated_at: summary?.updated_at ?? null,
    status: info.status.name,
  };
}

/** Lists task workflows matching `clauses`, newest first, at most `limit`. */
export async function listTasks(client: Client, clauses: string[], limit: number): Promise<WorkflowExecutionInfo[]> {
  const query = [`WorkflowType = '${TASK_WORKFLOW_TYPE}'`, ...clauses].join(' AND ');
  const out: WorkflowExecutionInfo[] = [];
  for await (const info of client.workflow.list({ query, pageSize: Math.min(Math.max(limit, 100), 1_000) })) {
    out.push(info);
    if (out.length >= limit) break;
  }
  return out;
}

/** One pending inbox item with the task fields a reviewer needs to triage it. */
export interface InboxEntry extends InboxItemSummary {
  task_id: string;
  waiting_seconds: number;
  repo: string | null;
  requester: string | null;
  priority: number | null;
  state: TaskState | null;
  goal: string | null;
  links: { decide: string; task: string };
}

/** Filters of `GET /v1/inbox`. */
export interface InboxFilter {
  kind?: ItemKind;
  repo?: string;
  requester?: string;
  priority?: number;
  limit: number;
}

/** Most open tasks the inbox reads per request; beyond it the inbox says it is truncated. */
const INBOX_SCAN_MAX = 10_000;

/** The Agent Inbox: pending items of open tasks, highest priority first, then oldest first. */
export async function listInbox(client: Client, f: InboxFilter, now = Date.now()): Promise<{ items: InboxEntry[]; count: number; truncated: boolean }> {
  const clauses = [`ExecutionStatus = 'Running'`, 'AgentPendingItems > 0'];
  if (f.kind) clauses.push(clause('AgentItemKinds', f.kind));
  if (f.repo) clauses.push(clause('AgentRepo', f.repo));
  if (f.requester) clauses.push(clause('AgentRequester', f.requester));
  if (f.priority !== undefined) clauses.push(clause('AgentPriority', f.priority));
  const infos = await listTasks(client, clauses, INBOX_SCAN_MAX);
  const entries: InboxEntry[] = [];
  for (const info of infos) {
    const row = taskRow(info);
    const memo = (info.memo?.[MEMO_INBOX] ?? null) as InboxMemo | null;
    for (const item of memo?.items ?? []) {
      if (f.kind && item.kind !== f.kind) continue;
      entries.push({
        ...item,
        task_id: row.task_id,
        waiting_seconds: Math.max(0, Math.round((now - Date.parse(item.created_at)) / 1000)),
        repo: row.repo,
        requester: row.requester,
        priority: row.priority,
        state: row.state,
        goal: row.goal,
        links: { decide: `/v1/tasks/${row.task_id}/inbox/${item.item_id}`, task: `/v1/tasks/${row.task_id}` },
      });
    }
  }
  entries.sort((a, b) => (a.priority ?? 9) - (b.priority ?? 9) || a.created_at.localeCompare(b.created_at));
  return { items: entries.slice(0, f.limit), count: entries.length, truncated: infos.length >= INBOX_SCAN_MAX };
}
