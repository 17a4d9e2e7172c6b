/**
 * The Agent Inbox: every pending item of every open task, from ONE visibility list
 * query reading each execution's `inbox` memo and search attributes.
 */
import type { Client } from '@temporalio/client';
import type { ItemKind, TaskState } from '../domain/task';
import { MEMO_INBOX, SA_ITEM_KINDS, SA_PENDING, SA_PRIORITY, SA_REPO, SA_REQUESTER, type InboxMemo } from '../workflows/search-attributes';
import { listExecutions, taskRow, visibilityQuery, where } from './visibility';

/** Filters of `GET /v1/inbox`. */
export interface InboxFilter {
  kind?: ItemKind;
  repo?: string;
  requester?: string;
  priority?: number;
  limit: number;
}

/** One pending item with the task fields a reviewer needs to triage it. */
export interface InboxEntry {
  task_id: string;
  item_id: string;
  kind: ItemKind;
  title: string;
  created_at: string;
  waiting_seconds: number;
  repo: string | null;
  requester: string | null;
  priority: number | null;
  state: TaskState | null;
  goal: string | null;
  links: { decide: string; task: string };
}

/** What `GET /v1/inbox` returns: the first `limit` items, and how many match in all. */
export interface InboxPage {
  items: InboxEntry[];
  count: number;
  /** True when more open tasks matched than one request reads; `count` is then a lower bound. */
  truncated: boolean;
}

/** Most tasks one inbox request reads; ordering needs them all, and this bounds the cost of a runaway backlog. */
export const INBOX_SCAN_MAX = 10_000;

/** Pending items of open tasks, highest priority first, then oldest first. */
export async function listInbox(client: Client, filter: InboxFilter, now: number = Date.now()): Promise<InboxPage> {
  const clauses = [where('ExecutionStatus', '=', 'Running'), where(SA_PENDING, '>', 0)];
  if (filter.kind !== undefined) clauses.push(where(SA_ITEM_KINDS, '=', filter.kind));
  if (filter.repo !== undefined) clauses.push(where(SA_REPO, '=', filter.repo));
  if (filter.requester !== undefined) clauses.push(where(SA_REQUESTER, '=', filter.requester));
  if (filter.priority !== undefined) clauses.push(where(SA_PRIORITY, '=', filter.priority));
  const executions = await listExecutions(client, visibilityQuery(clauses), INBOX_SCAN_MAX);

  const entries: InboxEntry[] = [];
  for (const info of executions) {
    const task = taskRow(info);
    const memo = info.memo?.[MEMO_INBOX] as InboxMemo | undefined;
    for (const item of memo?.items ?? []) {
      // The kinds attribute says the task has one such item; the memo says which.
      if (filter.kind !== undefined && item.kind !== filter.kind) continue;
      entries.push({
        task_id: task.task_id,
        item_id: item.item_id,
        kind: item.kind,
        title: item.title,
        created_at: item.created_at,
        waiting_seconds: Math.max(0, Math.floor((now - Date.parse(item.created_at)) / 1000)),
        repo: task.repo,
        requester: task.requester,
        priority: task.priority,
        state: task.state,
        goal: task.goal,
        links: {
          decide: `/v1/tasks/${task.task_id}/inbox/${encodeURIComponent(item.item_id)}`,
          task: `/v1/tasks/${task.task_id}`,
        },
      });
    }
  }
  entries.sort(byPriorityThenAge);
  return { items: entries.slice(0, filter.limit), count: entries.length, truncated: executions.length >= INBOX_SCAN_MAX };
}

/** Priority ascending (unknown last), then oldest first; ids break ties so pages are stable. */
function byPriorityThenAge(a: InboxEntry, b: InboxEntry): number {
  return (
    (a.priority ?? Number.MAX_SAFE_INTEGER) - (b.priority ?? Number.MAX_SAFE_INTEGER) ||
    compare(a.created_at, b.created_at) ||
    compare(a.task_id, b.task_id) ||
    compare(a.item_id, b.item_id)
  );
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
