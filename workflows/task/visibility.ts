/**
 * What the outside sees of a task: its state, the search attributes and memo the inbox is a query
 * over, the trace, and the task view.
 */
import { upsertMemo, upsertSearchAttributes } from '@temporalio/workflow';
import { preview, sandboxStateOf } from '../../domain/rules';
import type { EgressView } from '../../domain/egress';
import type { InboxItem, InboxItemSummary, TaskState, TaskView, TraceEntry } from '../../domain/task';
import { egressView } from './egress';
import { MEMO_INBOX, MEMO_SUMMARY, SA_ITEM_KINDS, SA_PENDING, SA_STATE, SA_UPDATED_AT, SA_WAITING_SINCE, type InboxMemo, type SummaryMemo } from '../search-attributes';
import { io } from './proxies';
import type { TaskRun } from './state';

/** Trace entries kept in workflow state; older ones are archived to the artifact store. */
const TRACE_KEEP = 200;

/** Moves the task to `state` (traced), and republishes what the inbox reads; `force` republishes an unchanged state. */
export function setState(t: TaskRun, state: TaskState, force = false): void {
  const s = t.s;
  if (s.state === state && !force) return;
  if (s.state !== state) trace(t, 'state', `${s.state} → ${state}`, { from: s.state, to: state });
  s.state = state;
  s.updated_at = new Date().toISOString();
  publishVisibility(t);
}

/** Upserts the search attributes and memo the inbox reads: the inbox is a query over these. */
export function publishVisibility(t: TaskRun): void {
  const s = t.s;
  const pending = s.items.filter((i) => i.status === 'pending');
  const oldest = pending.reduce<string | null>((min, i) => (min === null || i.created_at < min ? i.created_at : min), null);
  const kinds = [...new Set(pending.map((i) => i.kind))];
  upsertSearchAttributes([
    { key: SA_STATE, value: s.state },
    { key: SA_PENDING, value: pending.length },
    { key: SA_ITEM_KINDS, value: kinds.length > 0 ? kinds : null },
    { key: SA_WAITING_SINCE, value: oldest ? new Date(oldest) : null },
    // Workflow time, replay-safe: every publish moves it, so a listing by it sees each change.
    { key: SA_UPDATED_AT, value: new Date() },
  ]);
  const inbox: InboxMemo = { items: pending.map(summaryOfItem) };
  const summary: SummaryMemo = {
    goal: preview(t.input.spec.goal, 200),
    state: s.state,
    created_at: t.input.created_at,
    updated_at: s.updated_at,
  };
  upsertMemo({ [MEMO_INBOX]: inbox, [MEMO_SUMMARY]: summary });
}

/** What the inbox memo keeps of a pending item. */
export function summaryOfItem(i: InboxItem): InboxItemSummary {
  const out: InboxItemSummary = { item_id: i.item_id, kind: i.kind, title: i.title, created_at: i.created_at };
  if (i.due_at !== undefined) out.due_at = i.due_at;
  if (i.escalated_at !== undefined) out.escalated_at = i.escalated_at;
  return out;
}

/** Appends an entry to the task's trace. */
export function trace(t: TaskRun, type: string, message: string, data?: Record<string, unknown>, actor?: string): void {
  const entry: TraceEntry = { at: new Date().toISOString(), type, message };
  if (actor !== undefined) entry.actor = actor;
  if (data !== undefined) entry.data = data;
  t.s.trace.push(entry);
}

/** Moves all but the newest trace entries to the artifact store so state stays small. */
export async function flushTrace(t: TaskRun): Promise<void> {
  const s = t.s;
  if (s.trace.length <= TRACE_KEEP) return;
  const old = s.trace.slice(0, s.trace.length - TRACE_KEEP / 2);
  await io.archiveTrace({ task_id: t.input.task_id, first_index: s.trace_offset, entries: old });
  s.trace = s.trace.slice(old.length);
  s.trace_offset += old.length;
}

/** The task as the task query answers it. */
export function view(t: TaskRun): TaskView {
  const s = t.s;
  return {
    task_id: t.input.task_id,
    state: s.state,
    spec: t.input.spec,
    created_at: t.input.created_at,
    updated_at: s.updated_at,
    usage: s.usage,
    budget: s.budget,
    policy: s.policy,
    isolation: s.provision?.sandbox.isolation ?? 'unknown',
    sandbox_id: s.provision?.sandbox.id ?? null,
    sandbox: sandboxStateOf(s.state, s.provision !== null && s.provision.deferred !== true, s.sandbox_released === true),
    branch: s.branch,
    commit: s.commit,
    round: s.round,
    step_index: s.step_index,
    items: s.items,
    trace_count: s.trace_offset + s.trace.length,
    result: s.result,
    ...egressPart(t),
    ...(s.pr === undefined ? {} : { pull_request: { ...s.pr } }),
    ...(s.merge === undefined ? {} : { merge: { approved_by: s.merge.approved_by, approved_at: s.merge.approved_at, sha: s.merge.sha, method: t.input.source?.merge_method ?? null, attempts: s.merge.attempts } }),
  };
}

function egressPart(t: TaskRun): { egress?: EgressView } {
  const e = egressView(t);
  return e ? { egress: e } : {};
}
