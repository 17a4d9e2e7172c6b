/**
 * The notification workflow: delivers one notification to each of its team's webhooks that wants it.
 * A task starts one per event as an abandoned child, so a receiver that is down for hours holds up
 * neither the task nor its end, and delivery survives worker restarts like any activity.
 */
import { ActivityFailure, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Notification } from '../domain/notifications';
import type { NotifyActivities } from '../activities/notify/webhooks';
import { describeFailure } from './task/proxies';

/** Finding the team's webhooks reads the worker's configuration only. */
const lookup = proxyActivities<NotifyActivities>({ startToCloseTimeout: '30 seconds', retry: { maximumAttempts: 5 } });

/**
 * One delivery: each attempt is bounded, and retries back off to an hour apart for up to a day, so a
 * receiver that is down overnight still gets the notification when it is back.
 */
const delivery = proxyActivities<NotifyActivities>({
  startToCloseTimeout: '30 seconds',
  scheduleToCloseTimeout: '24 hours',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 hour' },
});

/** What became of each webhook's delivery. */
export interface NotificationOutcome {
  delivered: string[];
  failed: { target: string; error: string }[];
}

/** Delivers `notification` to every webhook of its team that wants its event, each on its own retries. */
export async function notificationWorkflow(notification: Notification): Promise<NotificationOutcome> {
  const targets = await lookup.webhookTargets({ team: notification.team, event: notification.event });
  const id = workflowInfo().workflowId;
  const results = await Promise.allSettled(
    targets.map((target) => delivery.deliverWebhook({ target, notification, delivery_id: `${id}:${target}` })),
  );
  const outcome: NotificationOutcome = { delivered: [], failed: [] };
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') outcome.delivered.push(targets[i]!);
    else outcome.failed.push({ target: targets[i]!, error: r.reason instanceof ActivityFailure ? describeFailure(r.reason) : String(r.reason) });
  });
  return outcome;
}
