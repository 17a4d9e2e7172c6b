/**
 * Forge events about the agent's own pull requests, handed to the task that owns them: the task is named by the
 * head branch (`agent/<task id>`), and the task's workflow refuses an event for any pull request but its own.
 */
import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { PullRequestClosed, ReviewSubmitted, TaskForgeEvent } from '../../domain/forge';
import { checksFailedUpdate, forgeEventUpdate, reviewCommentedUpdate, TASK_WORKFLOW_TYPE } from '../../workflows/messages';
import { TASK_ID } from '../schemas';
import { updateAcrossRuns } from './across-runs';

/** Prefix of the branches tasks push. */
const AGENT_BRANCH_PREFIX = 'agent/';
/** Update failures meaning the event is not this task's to take: answered as ignored, not as an error. */
const NOT_FOR_THE_TASK = new Set(['NotThisPullRequest', 'DuplicateDelivery', 'ReviewRefused', 'ChecksRefused', 'TaskEnded']);

/** What became of a forwarded event: taken by a task, or ignored with the reason. */
export type Forwarded = { taken: true; task_id: string } | { taken: false; reason: string };

/** The task a head branch names, or null when the branch is not a task's. */
export function taskOfBranch(head: string): string | null {
  if (!head.startsWith(AGENT_BRANCH_PREFIX)) return null;
  const id = head.slice(AGENT_BRANCH_PREFIX.length);
  return TASK_ID.test(id) ? id : null;
}

/**
 * The event as the task takes it. A review requesting changes is one; so is a `commented` one, whose line comments
 * only the task reads back (the payload has none); an approval or a dismissal is nothing for the agent.
 */
function taskEvent(event: PullRequestClosed | ReviewSubmitted): TaskForgeEvent | string {
  if (event.kind === 'pr_closed') {
    return { kind: 'pr_closed', delivery_id: event.delivery_id, repo: event.repo, number: event.number, merged: event.merged, merged_at: event.merged_at, actor: `github:${event.sender.login}` };
  }
  const review = { delivery_id: event.delivery_id, repo: event.repo, number: event.number, review_id: event.review_id, reviewer: event.sender.login };
  if (event.state === 'commented') return { kind: 'review_commented', ...review, addressed: event.addressed };
  if (event.state !== 'changes_requested') return `a review that is ${event.state}`;
  return { kind: 'changes_requested', ...review };
}

/** Hands `event` to the task its head branch names. */
export async function forwardPullRequestEvent(client: Client, event: PullRequestClosed | ReviewSubmitted): Promise<Forwarded> {
  const taskId = taskOfBranch(event.head);
  if (taskId === null) return { taken: false, reason: `branch ${event.head} is not a task's` };
  const e = taskEvent(event);
  if (typeof e === 'string') return { taken: false, reason: e };
  return forwardToTask(client, taskId, e);
}

/** Hands `e` to task `taskId` through its Update (failing checks and comment reviews have their own); the task's refusal is an answer, not an error. */
export async function forwardToTask(client: Client, taskId: string, e: TaskForgeEvent): Promise<Forwarded> {
  const handle = client.workflow.getHandle(taskId);
  try {
    // Only task workflows take forge events; a notification workflow's id names no task.
    const d = await handle.describe();
    if (d.type !== TASK_WORKFLOW_TYPE) return { taken: false, reason: `no task ${taskId}` };
    // A task handing over to a new run (continue-as-new) refuses as ended: the run that takes over gets it.
    await updateAcrossRuns(handle, d.runId, () => {
      if (e.kind === 'checks_failed') return handle.executeUpdate(checksFailedUpdate, { args: [e] });
      if (e.kind === 'review_commented') return handle.executeUpdate(reviewCommentedUpdate, { args: [e] });
      return handle.executeUpdate(forgeEventUpdate, { args: [e] });
    });
    return { taken: true, task_id: taskId };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return { taken: false, reason: `no open task ${taskId}` };
    if (err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure && NOT_FOR_THE_TASK.has(err.cause.type ?? '')) {
      return { taken: false, reason: err.cause.message };
    }
    throw err;
  }
}
