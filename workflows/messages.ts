/**
 * Messages of the task workflow: defined once, imported by the workflow, the API, tests and benchmarks.
 */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { Principal } from '../domain/access';
import type { TaskChecksFailed } from '../domain/checks';
import type { TaskForgeEvent, TaskSource } from '../domain/forge';
import type { NotificationEvent } from '../domain/notifications';
import type { ActedBy, CancelBody, Decision, FromForgeComment, InboxItem, ItemKind, MessageBody, TaskSpec, TaskState, TaskView, TraceEntry } from '../domain/task';

/** Workflow type name, for starting tasks without importing workflow code. */
export const TASK_WORKFLOW_TYPE = 'taskWorkflow';

/** Input of one task workflow run; `carried` is set when a run continues as new. */
export interface TaskWorkflowInput {
  task_id: string;
  spec: TaskSpec;
  created_at: string;
  /** Who submitted the task (absent in histories from before sign-in). */
  requested_by?: Principal;
  /** Where on a forge the task came from, so later work can answer there (absent: submitted through the API, or from before forges). */
  source?: TaskSource;
  /** The team's SLA when the task started: milliseconds an item of each kind may wait before it escalates (absent: none). */
  sla?: Partial<Record<ItemKind, number>>;
  /** Events the team's webhooks want, when the task started (absent: the task notifies nobody). */
  notify?: NotificationEvent[];
  /** Opaque state handed from one run to the next by continue-as-new. */
  carried?: unknown;
}

/** What a task workflow returns when it ends. */
export interface TaskOutcome {
  task_id: string;
  state: TaskState;
  result: string | null;
  branch: string | null;
  commit: string | null;
}

/** What an accepted decision or message returns: the settled item (if any) and the task state after it. */
export interface DecisionAck {
  task_id: string;
  item: InboxItem | null;
  state: TaskState;
}

/** Failure types the workflow raises from update validators; the API maps them to HTTP statuses. */
export const DECISION_FAILURES = ['TaskEnded', 'UnknownItem', 'StaleDecision', 'InvalidDecision', 'OverCeiling', 'NeedsApprover', 'NotThisPullRequest', 'DuplicateDelivery', 'ReviewRefused'] as const;

/** Decide a pending inbox item (approve, reject, answer, request_changes, grant_budget, message, cancel). */
export const decideUpdate = defineUpdate<DecisionAck, [Decision]>('decide');
/** Send a message to the task; it also settles a pending `health_alert`. */
/** A message to the task, as the API sends it: `may_settle` false when its sender may not decide a pending health alert (absent in histories from before roles: it may). */
export type TaskMessage = Omit<MessageBody, 'actor'> & ActedBy & FromForgeComment & { may_settle?: boolean };
export const messageUpdate = defineUpdate<DecisionAck, [TaskMessage]>('message');
/** Cancel the task: the running step stops, the sandbox is torn down, a pushed branch is deleted. */
export const cancelUpdate = defineUpdate<DecisionAck, [Omit<CancelBody, 'actor'> & ActedBy]>('cancel');
/** An event about the task's own pull request on its forge (merged, closed, changes requested); refused for another pull request or a delivery already taken. */
export const forgeEventUpdate = defineUpdate<DecisionAck, [TaskForgeEvent]>('forge_event');
/**
 * Failing checks on the commit the task last pushed; refused for another pull request or commit, or a commit taken
 * already. An Update of its own: a worker from before CI feedback has no handler and refuses it, where its
 * `forge_event` handler would take any kind but a review for a close.
 */
export const checksFailedUpdate = defineUpdate<DecisionAck, [TaskChecksFailed]>('checks_failed');
/**
 * A `commented` review of the task's own pull request: its own Update, as failing checks have, because a worker from
 * before it took every `forge_event` that is no review requesting changes as the pull request closing.
 */
export const reviewCommentedUpdate = defineUpdate<DecisionAck, [Extract<TaskForgeEvent, { kind: 'review_commented' }>]>('review_commented');
/** The task as the workflow sees it now. */
export const taskQuery = defineQuery<TaskView>('task');
/** The trace entries still held in workflow state (older ones are in the trace artifact), from `offset` on. */
export const traceQuery = defineQuery<{ entries: TraceEntry[]; first_index: number }>('trace');
