/**
 * The Agent Inbox: pending items of open tasks, read from visibility (search attributes
 * and each execution's `inbox` memo), never from a per-task query.
 */
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import { HIGHEST_PRIORITY, LOWEST_PRIORITY, type ItemKind, type TaskState } from '../domain/task';
import {
  MEMO_INBOX,
  SA_ITEM_KINDS,
  SA_LABELS,
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
  /** The first step when the window is widened: how far its cut moved last (at least `MIN_SPAN_MS`). */
  span_ms: number;
}

/** Tasks a window aims to hold, as a multiple of the page: room for decisions before it runs short. */
const WINDOW_HEADROOM = 1.2;
/** How far past its aim a new cut may go: a wider band takes fewer counts to find, a narrower one lists fewer rows. */
const CUT_SLACK = 1.2;
/** A remembered window holding more than this multiple of the page is searched for afresh. */
const WINDOW_MAX = 2.5;
/** Distinct filters whose windows are remembered (least recently refreshed dropped first). */
const WINDOWS_KEPT = 500;
/** Counts one search for a cut may make before the filter is read in full. */
const CUT_PROBES = 32;
/** Times a window is widened when its tasks hold too few items of the filtered kind before its cut. */
const KIND_PASSES = 3;
/** First step of a widening when the window's tasks were all raised within this long of each other. */
const MIN_SPAN_MS = 1_000;
/** How long ago a fresh search for a cut starts; a task waiting longer makes the search fail, and the filter is read in full. */
const SEARCH_LOOKBACK_MS = 400 * 24 * 3_600_000;
/** The latest time a bound names when only "has a pending item" is meant. */
const FAR_FUTURE = '9999-12-31T23:59:59.999Z';

/**
 * Reads inbox pages. SQL visibility has no ORDER BY and costs about 0.3 ms per row it returns, while a
 * count whose bounds an index covers costs about a millisecond. So a page is read through a window: every
 * task above some priority, and the tasks of that priority waiting since some cut or longer. Counts find
 * a cut where the window holds a page with room to spare, checked again on every later read, moved when
 * decisions thin the window, and only the window's tasks are listed. The counts prove the page exact (the
 * window holds at least `limit` tasks, and every task outside it ranks after every task inside), so a
 * remembered window is a starting guess, never a source of data. A filter is listed in full when it holds
 * few tasks, or when no cut is found.
 *
 * Pending tasks are selected by a bound on `AgentWaitingSince` (set exactly while items are pending),
 * never by `AgentPendingItems > 0`: given that range, SQLite's planner would scan every pending task
 * instead of the window's few through the waiting-time index.
 */
export class InboxReader {
  private readonly windows = new Map<string, Window>();
  /** How pages were read: every matching task listed, through a window, and how often a window was found by a search or widened. */
  readonly reads = { full: 0, window: 0, searched: 0, widened: 0 };

  constructor(private readonly client: Client) {}

  /** Pending items of open tasks, highest priority first, then oldest first. */
  async list(filter: InboxFilter, now: number = Date.now()): Promise<InboxPage> {
    const teams = teamClause(filter.teams);
    if (teams === null) return { items: [], count: 0, truncated: false };
    const clauses = [where('ExecutionStatus', '=', 'Running')];
    if (teams !== undefined) clauses.push(teams);
    if (filter.kind !== undefined) clauses.push(where(SA_ITEM_KINDS, '=', filter.kind));
    if (filter.repo !== undefined) clauses.push(where(SA_REPO, '=', filter.repo));
    if (filter.requester !== undefined) clauses.push(where(SA_REQUESTER, '=', filter.requester));
    if (filter.team !== undefined) clauses.push(where(SA_TEAM, '=', filter.team));
    if (filter.label !== undefined) clauses.push(where(SA_LABELS, '=', filter.label));
    if (filter.priority !== undefined) clauses.push(where(SA_PRIORITY, '=', filter.priority));
    // A task whose oldest pending item is younger than the cut has no item old enough.
    const scope: Scope = { clauses, bound: cutoffOf(filter, now) ?? FAR_FUTURE };
    const key = JSON.stringify([filter.teams, filter.kind, filter.repo, filter.requester, filter.team, filter.label, filter.older_than_minutes, filter.priority, filter.limit]);

    const page = await this.readWindow(scope, key, filter, now);
    if (page) return page;
    this.reads.full += 1;
    this.windows.delete(key);
    const executions = await listExecutions(this.client, visibilityQuery(pendingIn(scope)), INBOX_SCAN_MAX);
    const entries = toEntries(executions, filter, null, now);
    return { items: entries.slice(0, filter.limit), count: executions.length, truncated: executions.length >= INBOX_SCAN_MAX };
  }

  /** The page through a window (remembered, widened or searched for), or null when the filter is best read in full. */
  private async readWindow(scope: Scope, key: string, filter: InboxFilter, now: number): Promise<InboxPage | null> {
    const need = Math.ceil(filter.limit * WINDOW_HEADROOM);
    const most = Math.floor(filter.limit * WINDOW_MAX);
    let fit = await this.check(scope, this.windows.get(key), filter, need, most, now);
    if (fit === null) {
      fit = await this.search(scope, filter, need, most, now);
      if (fit === null) return null;
      this.reads.searched += 1;
    }
    for (let pass = 0; pass < KIND_PASSES; pass++) {
      this.remember(key, fit.w);
      // The count of all matching tasks, the slowest query of a read, runs beside the listing.
      const [a, b, total] = await Promise.all([
        fit.nAbove > 0 ? listExecutions(this.client, visibilityQuery(aboveOf(scope, fit.w)), INBOX_SCAN_MAX) : Promise.resolve([]),
        listExecutions(this.client, visibilityQuery(insideOf(scope, fit.w, fit.w.until)), INBOX_SCAN_MAX),
        fit.total,
      ]);
      const rows = [...a, ...b];
      // Holding every matching task, the window needs no cut: every item is in hand.
      const entries = toEntries(rows, filter, rows.length >= total ? null : fit.w, now);
      if (entries.length >= filter.limit || rows.length >= total) {
        this.reads.window += 1;
        return { items: entries.slice(0, filter.limit), count: total, truncated: total >= INBOX_SCAN_MAX };
      }
      // A task in the window may hold some items only after the cut (with a kind filter, its only one): widen by what is missing.
      const more = fit.held + filter.limit - entries.length;
      if (more > most) return null;
      const wider = await this.cut(scope, fit.w, fit.nAbove, more, now, Date.parse(fit.w.until));
      if (wider === null) return null;
      fit = { ...fit, w: { ...fit.w, until: wider.until, span_ms: wider.span_ms }, held: wider.held };
      this.reads.widened += 1;
    }
    return null;
  }

  /** A remembered window checked with fresh counts, widened if decisions thinned it; null when it no longer fits. */
  private async check(scope: Scope, w: Window | undefined, filter: InboxFilter, need: number, most: number, now: number): Promise<Fit | null> {
    if (!w) return null;
    const noneAbove = w.priority <= HIGHEST_PRIORITY || filter.priority !== undefined;
    const total = awaitedLater(this.count(pendingIn(scope)));
    const [nAbove, nInside] = await Promise.all([noneAbove ? 0 : this.count(aboveOf(scope, w)), this.count(insideOf(scope, w, w.until))]);
    const held = nAbove + nInside;
    if (nAbove >= filter.limit || held > most) return null;
    // A window holding a page needs no total to be proved.
    if (held >= filter.limit || held >= (await total)) return { w, total, nAbove, held };
    const wider = await this.cut(scope, w, nAbove, Math.min(need, await total), now, Date.parse(w.until));
    if (wider === null) return null;
    this.reads.widened += 1;
    return { w: { ...w, until: wider.until, span_ms: wider.span_ms }, total, nAbove, held: wider.held };
  }

  /**
   * A window found by counts alone: the priority where the page ends, then a cut inside it. Null when the
   * filter holds few enough tasks to list them all, or no cut is found.
   */
  private async search(scope: Scope, filter: InboxFilter, need: number, most: number, now: number): Promise<Fit | null> {
    const total = await this.count(pendingIn(scope));
    if (total <= most) return null;
    let priority = filter.priority ?? HIGHEST_PRIORITY;
    // Tasks above the priority tried, and above the one before it.
    let nAbove = 0;
    let nAboveBefore = 0;
    for (; filter.priority === undefined && priority <= LOWEST_PRIORITY; priority++) {
      const through = await this.count(pendingIn(scope, where(SA_PRIORITY, '<=', priority)));
      if (through >= need) break;
      [nAboveBefore, nAbove] = [nAbove, through];
    }
    if (priority > LOWEST_PRIORITY) return null;
    // The priorities above hold a page but no room to spare: the window is all of the one just above.
    if (nAbove >= filter.limit) return { w: { priority: priority - 1, until: scope.bound, span_ms: MIN_SPAN_MS }, total: Promise.resolve(total), nAbove: nAboveBefore, held: nAbove };
    const from = now - SEARCH_LOOKBACK_MS;
    const w: Window = { priority, until: new Date(from).toISOString(), span_ms: MIN_SPAN_MS };
    const found = await this.cut(scope, w, nAbove, need, now, from, null);
    if (found === null) return null;
    return { w: { ...w, until: found.until, span_ms: found.span_ms }, total: Promise.resolve(total), nAbove, held: found.held };
  }

  /**
   * A cut later than `short` at the window's priority where the window holds between `need` and `need × CUT_SLACK`
   * tasks: steps that double from `first` (or, without it, straight to now), then halving
   * between the last cut too few and the first too many. Null when the priority holds too few up to now
   * or the filter's own cut (the page reaches past it), or no cut is found within `CUT_PROBES` counts.
   */
  private async cut(scope: Scope, w: Window, nAbove: number, need: number, now: number, short: number, first: number | null = Math.max(w.span_ms, MIN_SPAN_MS)): Promise<Cut | null> {
    const most = Math.ceil(need * CUT_SLACK);
    let over: number | null = null;
    let step = first;
    for (let probe = 0; probe < CUT_PROBES; probe++) {
      const at: number = over !== null ? Math.floor((short + over) / 2) : step !== null ? Math.min(short + step, now) : now;
      if (step !== null) step *= 2;
      if (at <= short) return null;
      const until = new Date(at).toISOString();
      const held = nAbove + (await this.count(insideOf(scope, w, until)));
      if (held >= need && held <= most) return { until, held, span_ms: Math.max(MIN_SPAN_MS, at - short) };
      if (held > most) over = at;
      // Nothing of the priority waits past now or past the filter's cut: the page reaches into the next priority.
      else if (at >= now || until >= scope.bound) return null;
      else short = at;
    }
    return null;
  }

  /** Keeps a filter's window, dropping the least recently refreshed beyond `WINDOWS_KEPT` (filters come from callers). */
  private remember(key: string, w: Window): void {
    this.windows.delete(key);
    if (this.windows.size >= WINDOWS_KEPT) this.windows.delete(this.windows.keys().next().value!);
    this.windows.set(key, w);
  }

  private async count(clauses: string[]): Promise<number> {
    return (await this.client.workflow.count(visibilityQuery(clauses))).count;
  }
}

/** A cut that fits: tasks the window then holds, and how far it moved past the last cut that held too few (a widening's first step). */
interface Cut {
  until: string;
  held: number;
  span_ms: number;
}

/** A window that fits, with the counts that showed it: tasks matching in all, above its priority, and inside it. */
interface Fit {
  w: Window;
  /** Still being counted while the window is listed. */
  total: Promise<number>;
  nAbove: number;
  /** Tasks above and inside. */
  held: number;
}

/** `p`, with its failure left to whoever awaits it later (not reported as unhandled while other queries run first). */
function awaitedLater<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

/** A filter's clauses, and the latest waiting time its tasks may have (the `older_than_minutes` cut, or none). */
interface Scope {
  clauses: string[];
  bound: string;
}

/** The scope's open tasks with pending items old enough, narrowed by `extra`. */
function pendingIn(scope: Scope, ...extra: string[]): string[] {
  return [...scope.clauses, ...extra, where(SA_WAITING_SINCE, '<=', scope.bound)];
}

/** The scope's tasks above the window's priority. */
function aboveOf(scope: Scope, w: Window): string[] {
  return pendingIn(scope, where(SA_PRIORITY, '<', w.priority));
}

/** The scope's tasks of the window's priority waiting since `until` or longer. */
function insideOf(scope: Scope, w: Window, until: string): string[] {
  return [...scope.clauses, where(SA_PRIORITY, '=', w.priority), where(SA_WAITING_SINCE, '<=', until < scope.bound ? until : scope.bound)];
}

/** The latest `created_at` an item may have to pass `older_than_minutes`, or null without that filter. */
function cutoffOf(filter: InboxFilter, now: number): string | null {
  return filter.older_than_minutes === undefined ? null : new Date(now - filter.older_than_minutes * 60_000).toISOString();
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
