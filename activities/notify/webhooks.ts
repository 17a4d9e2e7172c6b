/**
 * Delivers notifications to the webhooks a team configured in TEAMS_FILE: a Slack message, or our JSON
 * signed with HMAC-SHA256 over `<timestamp>.<body>`. One call per webhook, so a retry never re-sends to
 * one that already took it; the delivery id stays the same on every retry, so a receiver can drop repeats.
 */
import crypto from 'node:crypto';
import type { AccessConfig } from '../../domain/access';
import {
  DELIVERY_HEADER,
  EVENT_HEADER,
  SIGNATURE_HEADER,
  signedContent,
  slackMessage,
  type Notification,
  type NotificationEvent,
  type Webhook,
  type WebhookBody,
} from '../../domain/notifications';
import type { Logger } from '../../workers/log';
import { activityFailure } from '../failures';

/** What delivery needs from the worker: the teams' webhooks, their secrets, and where people open a task. */
export interface NotifyDeps {
  access: Pick<AccessConfig, 'teams'>;
  /** Webhook secrets by the variable name `secret_env` gives. */
  secrets: Record<string, string>;
  /** The web inbox's URL (PUBLIC_URL); links are left out without it. */
  publicUrl: string | null;
  log?: Logger;
}

/** The activities of notification delivery, as the notification workflow calls them. */
export interface NotifyActivities {
  /** Ids of the team's webhooks that want `event` (stable across restarts; no URL or secret). */
  webhookTargets(input: { team: string; event: NotificationEvent }): Promise<string[]>;
  /** Sends one notification to one webhook; throws a retryable failure when the receiver may take it later. */
  deliverWebhook(input: { target: string; notification: Notification; delivery_id: string }): Promise<{ status: number }>;
}

/** How long one delivery attempt may take. */
const DELIVERY_TIMEOUT_MS = 10_000;
/** Statuses below 500 that still mean "try again later". */
const RETRY_LATER = new Set([408, 425, 429]);

/** A webhook's id: a digest of its team, URL and format, so editing one webhook does not renumber the others. */
export function webhookId(team: string, hook: Webhook): string {
  return crypto.createHash('sha256').update(`${team}\n${hook.format}\n${hook.url}`).digest('hex').slice(0, 16);
}

/** The signature header's value for `body` sent at `timestampSeconds`. */
export function webhookSignature(secret: string, timestampSeconds: number, body: string): string {
  const mac = crypto.createHmac('sha256', secret).update(signedContent(timestampSeconds, body)).digest('hex');
  return `t=${timestampSeconds},v1=${mac}`;
}

/** Builds the notification activities from their dependencies. */
export function createNotifyActivities(deps: NotifyDeps): NotifyActivities {
  const hooksOf = (team: string): Webhook[] => deps.access.teams[team]?.webhooks ?? [];
  const linkOf = (taskId: string): string | null =>
    deps.publicUrl === null ? null : `${deps.publicUrl.replace(/\/+$/, '')}/tasks/${encodeURIComponent(taskId)}`;

  return {
    async webhookTargets({ team, event }) {
      return hooksOf(team)
        .filter((h) => h.events.includes(event))
        .map((h) => webhookId(team, h));
    },

    async deliverWebhook({ target, notification, delivery_id }) {
      const hook = hooksOf(notification.team).find((h) => webhookId(notification.team, h) === target);
      if (hook === undefined) throw activityFailure('WebhookRefused', `webhook ${target} of team ${notification.team} is no longer configured`);
      const link = linkOf(notification.task_id);
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        [EVENT_HEADER]: notification.event,
        [DELIVERY_HEADER]: delivery_id,
      };
      let body: string;
      if (hook.format === 'slack') {
        body = JSON.stringify(slackMessage(notification, link));
      } else {
        const payload: WebhookBody = { ...notification, delivery_id, url: link };
        body = JSON.stringify(payload);
        // Signed at each attempt, so a receiver's freshness window holds for a retry hours later.
        const secret = deps.secrets[hook.secret_env!];
        if (secret === undefined) throw activityFailure('WebhookRefused', `the secret of webhook ${target} (${hook.secret_env}) is not in this worker's environment`);
        headers[SIGNATURE_HEADER] = webhookSignature(secret, Math.floor(Date.now() / 1000), body);
      }
      const host = new URL(hook.url).host;
      let res: Response;
      try {
        // No redirects: a receiver that moved is a configuration to fix, not a hop to follow with a signed body.
        res = await fetch(hook.url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS) });
      } catch (err) {
        // Only the host and an error code: a message may quote the whole URL, and a webhook URL is often its secret.
        throw activityFailure('WebhookFailed', `webhook ${target} (${host}) could not be reached: ${reachError(err)}`);
      }
      await res.body?.cancel();
      if (res.ok) {
        deps.log?.info('webhook delivered', { target, event: notification.event, task_id: notification.task_id, status: res.status });
        return { status: res.status };
      }
      const why = `webhook ${target} (${host}) answered ${res.status}`;
      if (res.status >= 500 || RETRY_LATER.has(res.status)) throw activityFailure('WebhookFailed', why);
      throw activityFailure('WebhookRefused', why);
    },
  };
}

/** A fetch failure as a code (ECONNREFUSED, TimeoutError, …), never its message, which may hold the URL. */
function reachError(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown } })?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  return err instanceof Error ? err.name : 'error';
}
