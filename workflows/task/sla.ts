/**
 * SLA escalation: an item pending past its team's limit for its kind escalates once — it is marked,
 * traced, raises the task's priority by one level and notifies the team. A durable timer, re-armed
 * from the items' `due_at` by every run, so it holds across restarts and continue-as-new.
 */
import { condition, patched, upsertSearchAttributes } from '@temporalio/workflow';
import type { InboxItem, ItemKind } from '../../domain/task';
import { SA_PRIORITY } from '../search-attributes';
import { currentPriority, notify } from './notify';
import type { TaskRun } from './state';
import { publishVisibility, trace } from './visibility';

/** The highest priority (1 … 5): escalation never raises a task past it. */
const TOP_PRIORITY = 1;

/** Marks the workflows that run SLA timers: one an older worker started without them never grows them on replay. */
export const SLA_PATCH = 'sla-escalation';

/**
 * Whether this run escalates: its team had an SLA when the task started, and this run's history is one with SLA
 * timers (not a run an older worker began, which an API already passing `sla` may have started). Decided once,
 * when the run starts, so items never get a due time that no timer watches.
 */
function slaOn(t: TaskRun): boolean {
  t.slaActive ??= t.input.sla !== undefined && patched(SLA_PATCH);
  return t.slaActive;
}

/** When an item of `kind` raised at `createdAt` passes the task's SLA, or undefined when its kind has none. */
export function dueAt(t: TaskRun, kind: ItemKind, createdAt: string): string | undefined {
  if (!slaOn(t)) return undefined;
  const limit = t.input.sla?.[kind];
  return limit === undefined ? undefined : new Date(Date.parse(createdAt) + limit).toISOString();
}

/** The earliest due time of a pending item that has not escalated yet, or null. */
function nextDue(items: readonly InboxItem[]): string | null {
  let next: string | null = null;
  for (const i of items) {
    if (i.status !== 'pending' || i.due_at === undefined || i.escalated_at !== undefined) continue;
    if (next === null || i.due_at < next) next = i.due_at;
  }
  return next;
}

/** Escalates items as they pass their due time, until the run ends. Starts no timer for a task without an SLA. */
export async function slaGuard(t: TaskRun): Promise<void> {
  // Tasks from before SLAs, and tasks of teams without one, never start a timer: their histories stay as they were.
  if (!slaOn(t)) return;
  // An earlier run's escalations: the priority it raised is the task's, whatever continue-as-new carried.
  if (t.s.priority !== undefined) upsertSearchAttributes([{ key: SA_PRIORITY, value: t.s.priority }]);
  while (!t.finished) {
    const next = nextDue(t.s.items);
    if (next === null) {
      await condition(() => t.finished || nextDue(t.s.items) !== null);
      continue;
    }
    const left = Date.parse(next) - Date.now();
    if (left > 0) {
      await condition(() => t.finished || nextDue(t.s.items) !== next, left);
      continue;
    }
    escalateDue(t);
  }
}

/** Escalates every pending item whose due time has passed; the task's priority rises one level for them together. */
function escalateDue(t: TaskRun): void {
  const now = new Date().toISOString();
  const due = t.s.items.filter((i) => i.status === 'pending' && i.due_at !== undefined && i.escalated_at === undefined && i.due_at <= now);
  if (due.length === 0) return;
  const priority = Math.max(TOP_PRIORITY, currentPriority(t) - 1);
  if (priority !== currentPriority(t)) {
    t.s.priority = priority;
    upsertSearchAttributes([{ key: SA_PRIORITY, value: priority }]);
  }
  for (const item of due) {
    item.escalated_at = now;
    trace(t, 'item_escalated', `${item.kind} ${item.item_id} waited past its SLA (due ${item.due_at}); priority ${priority}`, {
      item_id: item.item_id,
      kind: item.kind,
      due_at: item.due_at,
      priority,
    });
    notify(t, 'item_escalated', item);
  }
  publishVisibility(t);
}
