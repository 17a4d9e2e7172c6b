/**
 * The task's messages: queries, and Updates whose validators refuse stale or invalid decisions.
 */
import { ApplicationFailure, setHandler } from '@temporalio/workflow';
import { ACTIONS_BY_KIND, isTerminal, preview } from '../../domain/rules';
import type { Principal } from '../../domain/access';
import { BUILTIN_GRANT_CEILING, grantOverCeiling } from '../../domain/grant-ceiling';
import type { Decision, FromForgeComment, InboxItem, Resolution } from '../../domain/task';
import { cancelUpdate, decideUpdate, messageUpdate, taskQuery, traceQuery, type DecisionAck, type TaskMessage } from '../messages';
import { settle } from './inbox';
import { grant } from './limits';
import type { TaskRun } from './state';
import { publishVisibility, trace, view } from './visibility';

/**
 * Forge comments a task remembers having taken. Temporal takes an Update id (the API names these by the comment)
 * once per run only: the ids carried in the state keep a comment re-sent after a continue-as-new from acting again.
 */
const FORGE_COMMENTS_KEEP = 500;

/** Refuses a decision or message made from a forge comment the task took already. */
function assertCommentNew(t: TaskRun, m: FromForgeComment): void {
  const id = m.forge_comment_id;
  if (id !== undefined && (t.s.forge_comments ?? []).includes(id)) {
    throw ApplicationFailure.create({ type: 'DuplicateDelivery', message: `comment ${id} was taken already`, nonRetryable: true });
  }
}

/** Remembers the forge comment a decision or message was made from (bounded, oldest forgotten first). */
function takeComment(t: TaskRun, m: FromForgeComment): void {
  if (m.forge_comment_id === undefined) return;
  const taken = (t.s.forge_comments ??= []);
  taken.push(m.forge_comment_id);
  if (taken.length > FORGE_COMMENTS_KEEP) taken.splice(0, taken.length - FORGE_COMMENTS_KEEP);
}

/** Installs the query and update handlers; decisions settle items and never block. */
export function installHandlers(t: TaskRun): void {
  setHandler(taskQuery, () => view(t));
  setHandler(traceQuery, () => ({ entries: t.s.trace, first_index: t.s.trace_offset }));
  setHandler(decideUpdate, (d) => decide(t, d), { validator: (d) => validateDecision(t, d) });
  setHandler(
    messageUpdate,
    (m) => {
      const at = new Date().toISOString();
      takeComment(t, m);
      t.s.last_message = m.text;
      trace(t, 'message', preview(m.text, 2_000), byData(m.by), m.actor);
      let settled: InboxItem | null = null;
      for (const item of t.s.items) {
        if (item.status === 'pending' && item.kind === 'health_alert') {
          const resolution: Resolution = { action: 'message', actor: m.actor, at, comment: m.text };
          if (m.by !== undefined) resolution.by = m.by;
          settle(t, item, resolution);
          settled = item;
        }
      }
      publishVisibility(t);
      return ack(t, settled);
    },
    { validator: (m) => validateMessage(t, m) },
  );
  setHandler(
    cancelUpdate,
    (c) => {
      trace(t, 'decision', `cancelled${c.reason ? `: ${preview(c.reason, 500)}` : ''}`, byData(c.by), c.actor);
      t.requestEnd({ state: 'cancelled', result: `cancelled by ${c.actor}${c.reason ? `: ${preview(c.reason, 500)}` : ''}` });
      return ack(t, null);
    },
    { validator: (_c) => assertOpen(t) },
  );
}

/** Refuses a message to an ended task, and one that would settle a health alert from someone who may not decide it. */
function validateMessage(t: TaskRun, m: TaskMessage): void {
  assertOpen(t);
  assertCommentNew(t, m);
  if (m.may_settle === false && t.s.items.some((i) => i.status === 'pending' && i.kind === 'health_alert')) {
    throw ApplicationFailure.create({
      type: 'NeedsApprover',
      message: `a message to task ${t.input.task_id} would retry its pending health alert, which needs the approver role`,
      nonRetryable: true,
    });
  }
}

/** Trace data naming who acted, when the API said (histories from before sign-in have no `by`). */
function byData(by: Principal | undefined): Record<string, unknown> | undefined {
  return by === undefined ? undefined : { by };
}

/** Refuses a message to a task that has ended or is ending. */
export function assertOpen(t: TaskRun): void {
  if (t.endRequest || t.finished || isTerminal(t.s.state)) {
    throw ApplicationFailure.create({
      type: 'TaskEnded',
      message: `task ${t.input.task_id} has ended or is ending (${t.endRequest?.state ?? t.s.state})`,
      nonRetryable: true,
    });
  }
}

function validateDecision(t: TaskRun, d: Decision): void {
  assertOpen(t);
  assertCommentNew(t, d);
  const item = t.s.items.find((i) => i.item_id === d.item_id);
  if (!item) {
    throw ApplicationFailure.create({ type: 'UnknownItem', message: `task ${t.input.task_id} has no item ${d.item_id}`, nonRetryable: true });
  }
  if (item.status !== 'pending') {
    const r = item.resolution;
    throw ApplicationFailure.create({
      type: 'StaleDecision',
      message: r
        ? `item ${d.item_id} is no longer pending: ${r.action} by ${r.actor} at ${r.at}`
        : `item ${d.item_id} is no longer pending`,
      nonRetryable: true,
    });
  }
  const allowed = ACTIONS_BY_KIND[item.kind];
  if (!allowed.includes(d.action)) {
    throw ApplicationFailure.create({
      type: 'InvalidDecision',
      message: `action "${d.action}" does not apply to a ${item.kind} item; use one of: ${allowed.join(', ')}`,
      nonRetryable: true,
    });
  }
  if (item.kind === 'plan_approval' && d.action === 'request_changes' && t.input.spec.planner.kind === 'recipe') {
    throw ApplicationFailure.create({
      type: 'InvalidDecision',
      message: 'a recipe plan is fixed: approve or reject it',
      nonRetryable: true,
    });
  }
  if (d.action === 'grant_budget' && !d.budget) {
    throw ApplicationFailure.create({ type: 'InvalidDecision', message: 'grant_budget needs a budget', nonRetryable: true });
  }
  // The API checked the ceiling against the budget it read; checked again here, two grants cannot pass it together.
  // A decision without one (an older API, a direct client) is held to the built-in ceiling. Validators do not
  // run on replay, so this changes no recorded history.
  const over = d.action === 'grant_budget' && d.budget ? grantOverCeiling(t.s.budget, d.budget, d.ceiling ?? BUILTIN_GRANT_CEILING) : [];
  if (over.length > 0) {
    throw ApplicationFailure.create({
      type: 'OverCeiling',
      message: `the grant would lift the budget above the team's ceiling: ${over.map((o) => `${o.field} to ${o.after} (ceiling ${o.ceiling})`).join(', ')}`,
      nonRetryable: true,
    });
  }
}

/** Applies a validated decision; never blocks (the main line reacts to the settled item). */
function decide(t: TaskRun, d: Decision): DecisionAck {
  const s = t.s;
  const item = s.items.find((i) => i.item_id === d.item_id)!;
  takeComment(t, d);
  const resolution: Resolution = { action: d.action, actor: d.actor, at: new Date().toISOString() };
  if (d.by !== undefined) resolution.by = d.by;
  if (d.comment !== undefined) resolution.comment = d.comment;
  if (d.answer !== undefined) resolution.answer = d.answer;
  if (d.budget !== undefined) resolution.budget = d.budget;
  settle(t, item, resolution);
  trace(t, 'decision', `${d.action} on ${item.kind} ${item.item_id}${d.comment ? `: ${preview(d.comment, 500)}` : ''}`, { item_id: item.item_id, action: d.action, ...byData(d.by) }, d.actor);
  if (d.action === 'grant_budget' && d.budget) grant(t, d.budget);
  if (d.action === 'message' && d.comment) s.last_message = d.comment;
  if (d.action === 'cancel') {
    t.requestEnd({ state: 'cancelled', result: `cancelled by ${d.actor} from ${item.kind} ${item.item_id}` });
  }
  publishVisibility(t);
  return ack(t, item);
}

function ack(t: TaskRun, item: InboxItem | null): DecisionAck {
  return { task_id: t.input.task_id, item, state: t.s.state };
}
