/**
 * Starting a task workflow, the one way every intake (`POST /v1/tasks`, forge webhooks) does it: the workflow
 * input with the team's notices, the search attributes and memo the inbox and listings read, and the duplicate rule.
 */
import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowExecutionDescription } from '@temporalio/client';
import type { SearchAttributePair } from '@temporalio/common';
import { AccessConfig, taskNotices, teamSettings, type Principal } from '../domain/access';
import type { TaskSource } from '../domain/forge';
import type { TaskSpec } from '../domain/task';
import { TASK_WORKFLOW_TYPE, type TaskWorkflowInput } from '../workflows/messages';
import {
  MEMO_REQUEST_HASH,
  MEMO_SUMMARY,
  SA_LABELS,
  SA_PENDING,
  SA_PRIORITY,
  SA_REPO,
  SA_REQUESTER,
  SA_STATE,
  SA_TEAM,
  SA_UPDATED_AT,
  type SummaryMemo,
} from '../workflows/search-attributes';

/** Characters of the goal kept in the summary memo that listings show. */
const GOAL_PREVIEW_CHARS = 200;

/** What starting a task needs from the process. */
export interface StartTaskDeps {
  client: Client;
  taskQueue: string;
  /** The operator's team settings (TEAMS_FILE); default: none. */
  access?: AccessConfig;
}

/** One task to start: its id, its spec with requester and team filled in, and who asked for it. */
export interface NewTask {
  taskId: string;
  spec: TaskSpec & { team: string };
  requestedBy: Principal;
  /** Where on a forge the task came from (absent for tasks submitted through the API). */
  source?: TaskSource;
  /**
   * With a hash, a task of the same id that already exists is a retry of this request, not a fault: its
   * description comes back instead of an error, for the caller to compare with `MEMO_REQUEST_HASH`.
   */
  requestHash?: string;
}

/** What {@link startTask} did: started the task, or found one of the same id (only for a task with a request hash). */
export type StartOutcome = { started: true; createdAt: string } | { started: false; existing: WorkflowExecutionDescription };

/**
 * Starts the task's workflow. A duplicate id rejects with Temporal's `WorkflowExecutionAlreadyStartedError` unless
 * the task has a request hash; then the existing task's description is returned.
 */
export async function startTask(deps: StartTaskDeps, task: NewTask): Promise<StartOutcome> {
  const { spec, taskId } = task;
  const createdAt = new Date().toISOString();
  const input: TaskWorkflowInput = {
    task_id: taskId,
    spec,
    created_at: createdAt,
    requested_by: task.requestedBy,
    ...(task.source === undefined ? {} : { source: task.source }),
    // The team's SLA and webhooks as they are now: a running task keeps what it started with.
    ...taskNotices(teamSettings(deps.access ?? AccessConfig.parse({}), spec.team)),
  };
  const summary: SummaryMemo = { goal: spec.goal.slice(0, GOAL_PREVIEW_CHARS), state: 'queued', created_at: createdAt, updated_at: createdAt };
  const searchAttributes: SearchAttributePair[] = [
    { key: SA_STATE, value: 'queued' },
    { key: SA_REPO, value: spec.repo },
    { key: SA_REQUESTER, value: spec.requester },
    { key: SA_PRIORITY, value: spec.priority },
    { key: SA_PENDING, value: 0 },
    { key: SA_TEAM, value: spec.team },
    // A queued task is a change live inboxes hear of before any worker runs it.
    { key: SA_UPDATED_AT, value: new Date(createdAt) },
  ];
  if (spec.labels.length > 0) searchAttributes.push({ key: SA_LABELS, value: spec.labels });
  try {
    await deps.client.workflow.start(TASK_WORKFLOW_TYPE, {
      workflowId: taskId,
      taskQueue: deps.taskQueue,
      args: [input],
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      typedSearchAttributes: searchAttributes,
      memo: { [MEMO_SUMMARY]: summary, ...(task.requestHash === undefined ? {} : { [MEMO_REQUEST_HASH]: task.requestHash }) },
    });
  } catch (err) {
    // Without a hash a duplicate id is a fault for the error middleware; with one it is a retry, or a reused id.
    if (task.requestHash === undefined || !(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    return { started: false, existing: await deps.client.workflow.getHandle(taskId).describe() };
  }
  return { started: true, createdAt };
}
