/**
 * What a task tells its team's webhooks: each event starts a notification workflow as an abandoned
 * child, so delivery, with its retries, outlives neither more nor less than it must.
 */
import { CancellationScope, log, patched, startChild } from '@temporalio/workflow';
import { DEFAULT_TEAM } from '../../domain/roles';
import { preview } from '../../domain/rules';
import type { Notification, NotificationEvent } from '../../domain/notifications';
import type { InboxItem } from '../../domain/task';
import { notificationWorkflow } from '../notify';
import type { TaskRun } from './state';
import { summaryOfItem } from './visibility';

/** Characters of the goal, an item's title and a task's result a notification carries. */
const GOAL_PREVIEW_CHARS = 200;
const TITLE_PREVIEW_CHARS = 300;
const RESULT_PREVIEW_CHARS = 500;

/** Marks the workflows that start notification workflows, so one an older worker began never grows them on replay. */
export const NOTIFY_PATCH = 'notifications';

/** The task's priority now: the spec's, or what escalations raised it to. */
export function currentPriority(t: TaskRun): number {
  return t.s.priority ?? t.input.spec.priority;
}

/** Starts the delivery of `event` when the team's webhooks want it (a task of a team without any starts nothing). */
export function notify(t: TaskRun, event: NotificationEvent, item?: InboxItem): void {
  if (!t.input.notify?.includes(event) || !patched(NOTIFY_PATCH)) return;
  const s = t.s;
  s.notify_seq = (s.notify_seq ?? 0) + 1;
  const notification: Notification = {
    event,
    task_id: t.input.task_id,
    team: t.input.spec.team ?? DEFAULT_TEAM,
    repo: t.input.spec.repo,
    goal: preview(t.input.spec.goal, GOAL_PREVIEW_CHARS),
    state: s.state,
    priority: currentPriority(t),
    at: new Date().toISOString(),
  };
  // A title can hold a command of any length: the notification carries its ends.
  if (item !== undefined) notification.item = { ...summaryOfItem(item), title: preview(item.title, TITLE_PREVIEW_CHARS) };
  if (event === 'task_ended') notification.result = s.result === null ? null : preview(s.result, RESULT_PREVIEW_CHARS);
  const workflowId = `${t.input.task_id}.notify-${s.notify_seq}`;
  // Not cancellable, and abandoned on cancel and close: cancelling the task must not cancel telling people it ended.
  const started = CancellationScope.nonCancellable(() =>
    startChild(notificationWorkflow, {
      workflowId,
      args: [notification],
      parentClosePolicy: 'ABANDON',
      cancellationType: 'ABANDON',
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
    }),
  ).then(
    () => undefined,
    // A notification that cannot start (its id taken after a reset) is lost, never the task.
    (err: unknown) => log.warn('notification not started', { task_id: t.input.task_id, event, error: String(err) }),
  );
  t.notifying.push(started);
}

/** Waits for every notification this run started to be under way (before it ends or continues as new). */
export async function notificationsStarted(t: TaskRun): Promise<void> {
  await Promise.all(t.notifying);
}
