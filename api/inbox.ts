/**
 * The Agent Inbox: pending items of open tasks, read from visibility (search attributes
 * and each execution's `inbox` memo), never from a per-task query.
 */
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import type { ItemKind, TaskState } from '../domain/task';
import {
  MEMO_INBOX,
  SA_ITEM_KINDS,
  SA_LABELS,
  SA_PENDING,
  SA_PRIORITY,
  SA_REPO,
  SA_REQUESTER,
  SA_TEAM,
  SA_WAITING_SINCE,
  type InboxMemo,
} from '../workflows/search-attributes';
import { listExecutions, taskRow, teamClause, visibilityQuery, where } from './visibility';

/** Filters of `GET /v1/inbox`. */
export interface InboxFilter {
  kind?: ItemKind;
  repo?: string;
  requester?: string;
  team?: string;
  label?: string;
  /** Only items that have waited at least this many minutes. */
  older_than_minutes?: number;
  priority?: number;
  limit: number;
  /** The teams the caller sees (`'all'` for an admin): items of other teams never leave the store. */
  teams: readonly string[] | 'all';
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
  team: string | null;
  labels: string[];
  priority: number | null;
  state: TaskState | null;
  goal: string | null;
  /** When the item passes its team's SLA, and when it escalated; null without an SLA or before it passed. */
  due_at: string | null;
  escalated_at: string | null;
  /** Whether `due_at` has passed (the item is pending, as every inbox entry is). */
  overdue: boolean;
  links: { decide: string; task: string };
}

/** What `GET /v1/inbox` returns: the first `limit` items, and how many tasks have matching items. */
export interface InboxPage {
  items: InboxEntry[];
  count: number;
  /** True when more open tasks matched than one request reads; `count` is then a lower bound. */
  truncated: boolean;
}

/** Most tasks one inbox request reads; ordering needs them all, and this bounds the cost of a runaway backlog. */
export const INBOX_SCAN_MAX = 10_000;

/** Where a page was cut last time: every task above `priority`, and tasks of `priority` waiting since `until` or longer. */
interface Window {
  priority: number;
  until: string;
}

/** Tasks a remembered window aims to hold, as a multiple of the page: room for decisions before it runs short. */
const WINDOW_HEADROOM = 1.3;
/** A remembered window holding more than this multiple of the page is read in full again instead. */
const WINDOW_MAX = 2.5;
/** Distinct filters whose windows are remembered (least recently refreshed dropped first). */
const WINDOWS_KEPT = 500;

/**
 * Reads inbox pages. SQL visibility has no ORDER BY and costs about 0.4 ms per row it returns,
 * while a count costs a few milliseconds: so the first read of a filter lists every matching task,
 * and remembers the window of oldest tasks that filled the page. Later reads check that window with
 * two fresh counts and list only the tasks inside it. The counts prove the page exact (the window
 * holds at least `limit` tasks, and every task outside it ranks after every task inside), so the
 * remembered window is a starting guess, never a source of data.
 */
export class InboxReader {
  private readonly windows = new Map<string, Window>();
  /** How pages were read so far: every matching task listed, or only a remembered window. */
  readonly reads = { full: 0, window: 0 };

  constructor(private readonly client: Client) {}

  /** Pending items of open tasks, highest priority first, then oldest first. */
  async list(filter: InboxFilter, now: number = Date.now()): Promise<InboxPage> {
    const teams = teamClause(filter.teams);
    if (teams === null) return { items: [], count: 0, truncated: false };
    const clauses = [where('ExecutionStatus', '=', 'Running'), where(SA_PENDING, '>', 0)];
    if (teams !== undefined) clauses.push(teams);
    if (filter.kind !== undefined) clauses.push(where(SA_ITEM_KINDS, '=', filter.kind));
    if (filter.repo !== undefined) clauses.push(where(SA_REPO, '=', filter.repo));
    if (filter.requester !== undefined) clauses.push(where(SA_REQUESTER, '=', filter.requester));
    if (filter.team !== undefined) clauses.push(where(SA_TEAM, '=', filter.team));
    if (filter.label !== undefined) clauses.push(where(SA_LABELS, '=', filter.label));
    if (filter.priority !== undefined) clauses.push(where(SA_PRIORITY, '=', filter.priority));
    // A task whose oldest pending item is younger than the cut has no item old enough.
    if (filter.older_than_minutes !== undefined) clauses.push(where(SA_WAITING_SINCE, '<=', cutoffOf(filter, now)!));
    const key = JSON.stringify([filter.teams, filter.kind, filter.repo, filter.requester, filter.team, filter.label, filter.older_than_minutes, filter.priority, filter.limit]);

    const remembered = this.windows.get(key);
    if (remembered) {
      const page = await this.readWindow(clauses, remembered, filter, now);
      if (page) return page;
    }
    this.reads.full += 1;
    const executions = await listExecutions(this.client, visibilityQuery(clauses), INBOX_SCAN_MAX);
    const window = windowFor(executions, Math.ceil(filter.limit * WINDOW_HEADROOM));
    this.windows.delete(key);
    if (window) {
      // Filters come from callers: keep only the most recently used ones.
      if (this.windows.size >= WINDOWS_KEPT) this.windows.delete(this.windows.keys().next().value!);
      this.windows.set(key, window);
    }
    const entries = toEntries(executions, filter, null, now);
    return { items: entries.slice(0, filter.limit), count: executions.length, truncated: executions.length >= INBOX_SCAN_MAX };
  }

  /** The page from a remembered window, or null when fresh counts show the window no longer fits. */
  private async readWindow(clauses: string[], w: Window, filter: InboxFilter, now: number): Promise<InboxPage | null> {
    const above = [...clauses, where(SA_PRIORITY, '<', w.priority)];
    const inside = [...clauses, where(SA_PRIORITY, '=', w.priority), where(SA_WAITING_SINCE, '<=', w.until)];
    const noneAbove = w.priority <= 1 || filter.priority !== undefined;
    const [total, nAbove, nInside] = await Promise.all([this.count(clauses), noneAbove ? 0 : this.count(above), this.count(inside)]);
    const held = nAbove + nInside;
    if (nAbove >= filter.limit || held < Math.min(filter.limit, total) || held > filter.limit * WINDOW_MAX) return null;
    const [a, b] = await Promise.all([
      nAbove > 0 ? listExecutions(this.client, visibilityQuery(above), INBOX_SCAN_MAX) : Promise.resolve([]),
      listExecutions(this.client, visibilityQuery(inside), INBOX_SCAN_MAX),
    ]);
    const entries = toEntries([...a, ...b], filter, w, now);
    // With a kind filter a task in the window may hold no item of that kind before the cut: then read in full.
    if (entries.length < Math.min(filter.limit, total)) return null;
    this.reads.window += 1;
    return { items: entries.slice(0, filter.limit), count: total, truncated: total >= INBOX_SCAN_MAX };
  }

  private async count(clauses: string[]): Promise<number> {
    return (await this.client.workflow.count(visibilityQuery(clauses))).count;
  }
}

/** The latest `created_at` an item may have to pass `older_than_minutes`, or null without that filter. */
function cutoffOf(filter: InboxFilter, now: number): string | null {
  return filter.older_than_minutes === undefined ? null : new Date(now - filter.older_than_minutes * 60_000).toISOString();
}

/** The window holding the first `size` tasks in inbox order, or null when fewer tasks wait. */
function windowFor(executions: WorkflowExecutionInfo[], size: number): Window | null {
  if (executions.length <= size) return null;
  const tasks = executions
    .map((info) => ({ priority: info.typedSearchAttributes.get(SA_PRIORITY), since: info.typedSearchAttributes.get(SA_WAITING_SINCE) }))
    .filter((t): t is { priority: number; since: Date } => t.priority !== undefined && t.since !== undefined)
    .sort((a, b) => a.priority - b.priority || a.since.getTime() - b.since.getTime());
  const edge = tasks[size - 1];
  return edge ? { priority: edge.priority, until: edge.since.toISOString() } : null;
}

/** One entry per pending item, sorted; items of the window's priority newer than its cut are left out. */
function toEntries(executions: WorkflowExecutionInfo[], filter: InboxFilter, w: Window | null, now: number): InboxEntry[] {
  const entries: InboxEntry[] = [];
  const cutoff = cutoffOf(filter, now);
  for (const info of executions) {
    const task = taskRow(info);
    const memo = info.memo?.[MEMO_INBOX] as InboxMemo | undefined;
    for (const item of memo?.items ?? []) {
      // The kinds attribute says the task has one such item; the memo says which.
      if (filter.kind !== undefined && item.kind !== filter.kind) continue;
      if (cutoff !== null && item.created_at > cutoff) continue;
      // Past the cut another task outside the window may rank first.
      if (w && task.priority === w.priority && item.created_at > w.until) continue;
      entries.push({
        task_id: task.task_id,
        item_id: item.item_id,
        kind: item.kind,
        title: item.title,
        created_at: item.created_at,
        waiting_seconds: Math.max(0, Math.floor((now - Date.parse(item.created_at)) / 1000)),
        repo: task.repo,
        requester: task.requester,
        team: task.team,
        labels: task.labels,
        priority: task.priority,
        state: task.state,
        goal: task.goal,
        due_at: item.due_at ?? null,
        escalated_at: item.escalated_at ?? null,
        overdue: item.due_at !== undefined && Date.parse(item.due_at) <= now,
        links: {
          decide: `/v1/tasks/${task.task_id}/inbox/${encodeURIComponent(item.item_id)}`,
          task: `/v1/tasks/${task.task_id}`,
        },
      });
    }
  }
  return entries.sort(byPriorityThenAge);
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
