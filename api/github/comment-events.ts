/**
 * GitHub's `issue_comment` deliveries: a comment that speaks to the agent (`/agent …`, or a mention of the
 * configured login) on an issue asks for a task; on the agent's own pull request it steers the task that opened
 * it. Only people with write access steer: their permission is looked up at GitHub, never taken from the payload.
 */
import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { GithubRepoName, type Principal } from '../../domain/access';
import { agentRequest, type ForgeLookup, type IssueCommented } from '../../domain/forge-comments';
import type { IntakeEvent } from '../../domain/forge';
import { decideUpdate, messageUpdate, taskQuery, TASK_WORKFLOW_TYPE } from '../../workflows/messages';
import { RequestValidationError } from '../errors';
import { updateAcrossRuns } from './across-runs';
import { taskOfBranch } from './pull-request-events';
import { Label, Sender, senderOf } from './payload';

/** The fields of an `issue_comment` delivery intake reads. */
const IssueCommentPayload = z.object({
  action: z.string(),
  comment: z.object({ id: z.number().int().positive(), body: z.string().nullable().optional(), user: Sender.nullable() }),
  issue: z.object({
    number: z.number().int().positive(),
    title: z.string(),
    body: z.string().nullable().optional(),
    labels: z.array(Label).default([]),
    pull_request: z.object({}).passthrough().nullable().optional(),
  }),
  repository: z.object({ full_name: GithubRepoName, default_branch: z.string().min(1) }),
  sender: Sender,
});

/** An `issue_comment` delivery: a new comment that speaks to the agent. */
export function commentEvent(deliveryId: string, payload: unknown, mention: string | null): IntakeEvent {
  const parsed = IssueCommentPayload.safeParse(payload);
  if (!parsed.success) throw new RequestValidationError('issue_comment payload', parsed.error);
  const p = parsed.data;
  // An edited comment is not a new request: its command ran (or was refused) when it was written.
  if (p.action !== 'created') return { kind: 'ignored', delivery_id: deliveryId, reason: `issue_comment action ${p.action}` };
  const request = agentRequest(p.comment.body ?? '', mention);
  if (request === null) return { kind: 'ignored', delivery_id: deliveryId, reason: 'the comment does not speak to the agent' };
  return {
    kind: 'issue_commented',
    delivery_id: deliveryId,
    repo: p.repository.full_name,
    default_branch: p.repository.default_branch,
    number: p.issue.number,
    on_pull_request: p.issue.pull_request !== undefined && p.issue.pull_request !== null,
    title: p.issue.title,
    body: p.issue.body ?? '',
    labels: p.issue.labels.map((l) => l.name),
    comment_id: p.comment.id,
    request,
    // Who wrote the comment is whose permission counts.
    sender: senderOf(p.comment.user ?? p.sender),
  };
}

/** The id of the Update a pull request comment becomes: Temporal takes an Update id once per run, whichever Update it names. */
function commentUpdateId(commentId: number): string {
  return `github-comment-${commentId}`;
}

/** What became of a comment on a pull request: handed to the task as a round's request or a message, or ignored. */
export type Steered = { taken: 'request_changes' | 'message'; task_id: string } | { taken: false; reason: string };

/** Update failures meaning the comment is not the task's to take now. */
const NOT_NOW = new Set(['TaskEnded', 'StaleDecision', 'DuplicateDelivery']);

/**
 * Hands a writer's comment on pull request `event.number` to the task whose pull request it is: while the task
 * waits for its review, as a request for changes (another round); otherwise as a message the agent reads.
 */
export async function steerFromComment(client: Client, lookup: ForgeLookup, event: IssueCommented, by: Principal): Promise<Steered> {
  const head = await lookup.pullHead(event.repo, event.number);
  if (head === null) return { taken: false, reason: 'the pull request comes from another repository' };
  const taskId = taskOfBranch(head);
  if (taskId === null) return { taken: false, reason: `branch ${head} is not a task's` };
  const handle = client.workflow.getHandle(taskId);
  try {
    const d = await handle.describe();
    if (d.type !== TASK_WORKFLOW_TYPE) return { taken: false, reason: `no task ${taskId}` };
    const view = await handle.query(taskQuery);
    // Anyone with write access somewhere can name a branch `agent/<id>`: only the task's own pull request steers it.
    const pr = view.pull_request;
    if (pr === undefined || pr.repo.toLowerCase() !== event.repo.toLowerCase() || pr.number !== event.number) {
      return { taken: false, reason: `task ${taskId} is not on ${event.repo}#${event.number}` };
    }
    // The task remembers the comment too: an Update id is taken once per run, and the task may have continued as new since.
    const acted = { actor: `github:${event.sender.login}`, by, forge_comment_id: event.comment_id };
    // Named by the comment (in the signed body), not the delivery: the same comment delivered again is the same Update, taken once.
    const updateId = commentUpdateId(event.comment_id);
    const review = view.items.find((i) => i.status === 'pending' && i.kind === 'pr_review');
    if (review !== undefined) {
      await updateAcrossRuns(handle, d.runId, () => handle.executeUpdate(decideUpdate, { updateId, args: [{ item_id: review.item_id, action: 'request_changes', comment: event.request, ...acted }] }));
      return { taken: 'request_changes', task_id: taskId };
    }
    await updateAcrossRuns(handle, d.runId, () => handle.executeUpdate(messageUpdate, { updateId, args: [{ text: event.request, ...acted }] }));
    return { taken: 'message', task_id: taskId };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return { taken: false, reason: `no open task ${taskId}` };
    if (err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure && NOT_NOW.has(err.cause.type ?? '')) {
      return { taken: false, reason: err.cause.message };
    }
    throw err;
  }
}
