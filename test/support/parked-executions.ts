/**
 * Task executions of the shape a task parked on people publishes (search attributes and inbox memo),
 * started on a queue no worker polls: the inbox's visibility rows without running the workflow, for
 * inbox tests and benchmarks. Thousands start in about a minute, where parking them takes half an hour.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { InboxItemSummary } from '../../domain/task';
import { TASK_WORKFLOW_TYPE } from '../../workflows/messages';
import {
  SA_ITEM_KINDS,
  SA_PENDING,
  SA_PRIORITY,
  SA_REPO,
  SA_REQUESTER,
  SA_STATE,
  SA_TEAM,
  SA_WAITING_SINCE,
  type InboxMemo,
} from '../../workflows/search-attributes';

/** One parked task: its pending items (at least one) and the fields inbox filters read. */
export interface ParkedTask {
  id: string;
  priority: number;
  items: InboxItemSummary[];
  requester?: string;
  repo?: string;
  team?: string;
}

/** Starts `tasks`, `concurrency` at a time; each task's waiting time is its oldest item's, as the workflow publishes it. */
export async function startParked(client: Client, queue: string, tasks: readonly ParkedTask[], concurrency = 8): Promise<WorkflowHandle[]> {
  const handles: WorkflowHandle[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < tasks.length) {
        const task = tasks[next++]!;
        const since = task.items.map((i) => i.created_at).reduce((a, b) => (b < a ? b : a));
        const memo: InboxMemo = { items: task.items };
        handles.push(
          await client.workflow.start(TASK_WORKFLOW_TYPE, {
            taskQueue: queue,
            workflowId: task.id,
            typedSearchAttributes: [
              { key: SA_STATE, value: 'awaiting_approval' },
              { key: SA_PENDING, value: task.items.length },
              { key: SA_PRIORITY, value: task.priority },
              { key: SA_REPO, value: task.repo ?? '/srv/repo.git' },
              { key: SA_REQUESTER, value: task.requester ?? 'alice' },
              { key: SA_TEAM, value: task.team ?? 'default' },
              { key: SA_WAITING_SINCE, value: new Date(since) },
              { key: SA_ITEM_KINDS, value: [...new Set(task.items.map((i) => i.kind))] },
            ],
            memo: { inbox: memo },
          }),
        );
      }
    }),
  );
  return handles;
}
