/**
 * Notifications to people outside the inbox: the events a team's webhooks hear of, the webhook settings
 * in TEAMS_FILE, the SLA limits that escalate a waiting item, and the payloads both formats carry.
 * Pure: the workflow builds a {@link Notification}; an activity signs and delivers it.
 */
import { z } from 'zod';
import { asWords } from './rules';
import { ItemKind, type InboxItemSummary, type TaskState } from './task';

/** What a webhook can be told of. */
export const NotificationEvent = z.enum(['item_opened', 'item_escalated', 'task_ended']);
export type NotificationEvent = z.infer<typeof NotificationEvent>;

/** How a webhook's body is shaped: Slack's incoming-webhook message, or our JSON signed with HMAC-SHA256. */
export const WebhookFormat = z.enum(['slack', 'json']);
export type WebhookFormat = z.infer<typeof WebhookFormat>;

/** An environment variable's name, as `secret_env` gives it. */
const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name');

/** One outgoing webhook of a team. A `json` webhook is always signed, so it names where its secret is. */
export const Webhook = z
  .strictObject({
    // No user:password in the URL: it would end up in error messages, and so in histories and logs.
    url: z.url({ protocol: /^https?$/ }).refine((u) => !/^[a-z]+:\/\/[^/?#]*@/i.test(u), 'no credentials in the URL (put a token in its path, as Slack does)'),
    format: WebhookFormat.default('json'),
    /** The environment variable holding the HMAC key; the key itself is never in TEAMS_FILE or a workflow. */
    secret_env: EnvName.optional(),
    events: z.array(NotificationEvent).min(1).default([...NotificationEvent.options]),
  })
  .refine((w) => w.format !== 'json' || w.secret_env !== undefined, {
    path: ['secret_env'],
    message: 'a json webhook is signed: name the environment variable holding its secret',
  });
export type Webhook = z.infer<typeof Webhook>;

const DURATION_UNITS_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
/** The longest SLA: an item a year old is long past needing a timer. */
const MAX_SLA_MS = 365 * DURATION_UNITS_MS.d;

/** A limit such as `45s`, `30m`, `4h` or `2d`, in milliseconds. */
export const SlaLimit = z
  .string()
  .regex(/^\d+(\.\d+)?[smhd]$/, 'a duration such as 45s, 30m, 4h or 2d')
  .transform((text) => Math.round(Number(text.slice(0, -1)) * DURATION_UNITS_MS[text.slice(-1) as keyof typeof DURATION_UNITS_MS]))
  .refine((ms) => ms >= DURATION_UNITS_MS.s && ms <= MAX_SLA_MS, 'between 1s and 365d');

/** How long an item of each kind may wait before it escalates; kinds left out never do. */
export const SlaLimits = z.partialRecord(ItemKind, SlaLimit);
export type SlaLimits = z.infer<typeof SlaLimits>;

/** The events any of `webhooks` wants, in a stable order (what a task of the team publishes). */
export function eventsWanted(webhooks: readonly Webhook[]): NotificationEvent[] {
  return NotificationEvent.options.filter((e) => webhooks.some((w) => w.events.includes(e)));
}

/** The item a notification is about: what the inbox shows of it. */
export type NotifiedItem = InboxItemSummary;

/** What the workflow hands to delivery: plain JSON, small, no secret. */
export interface Notification {
  event: NotificationEvent;
  task_id: string;
  team: string;
  repo: string;
  /** The goal's first characters. */
  goal: string;
  state: TaskState;
  priority: number;
  /** When it happened (workflow time). */
  at: string;
  item?: NotifiedItem;
  /** How the task ended (task_ended). */
  result?: string | null;
}

/** The body of a `json` webhook: the notification, with the delivery's id and a link to the task. */
export interface WebhookBody extends Notification {
  delivery_id: string;
  url: string | null;
}

/** Header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. */
export const SIGNATURE_HEADER = 'x-agent-inbox-signature';
/** Header naming the event (unsigned, for routing at a glance; the signed body's `event` is the one to trust). */
export const EVENT_HEADER = 'x-agent-inbox-event';
/** Header carrying the delivery id, the same on every retry (unsigned; the signed body's `delivery_id` is the one to trust). */
export const DELIVERY_HEADER = 'x-agent-inbox-delivery';
/** How far from its clock a receiver should accept a signature timestamp, either way (what our README tells receivers). */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

/** The bytes a signature covers: the timestamp, a dot, and the exact body sent. */
export function signedContent(timestampSeconds: number, body: string): string {
  return `${timestampSeconds}.${body}`;
}

/** One line saying what happened, for a chat message or a log. */
export function headline(n: Notification): string {
  switch (n.event) {
    case 'item_opened':
      return `New ${kindLabel(n.item?.kind)} for ${n.repo}: ${n.item?.title ?? ''}`;
    case 'item_escalated':
      return `Overdue ${kindLabel(n.item?.kind)} for ${n.repo} (waiting since ${n.item?.created_at ?? '?'}): ${n.item?.title ?? ''}`;
    case 'task_ended':
      return `Task ${n.state} for ${n.repo}: ${n.result ?? ''}`;
  }
}

/** A Slack incoming-webhook message (plain `text` for notifications, a section block with a link). */
export function slackMessage(n: Notification, link: string | null): { text: string; blocks: unknown[] } {
  // Slack reads the top-level text as markup too (it is what notifications show): escape it like the block.
  const text = escapeSlack(headline(n));
  const lines = [`*${text}*`, `Team ${escapeSlack(n.team)} · goal: ${escapeSlack(n.goal)}`];
  if (link !== null) lines.push(`<${link}|Open in the Agent Inbox>`);
  return { text, blocks: [{ type: 'section', text: { type: 'mrkdwn', text: lines.join('\n') } }] };
}

/** Slack's three control characters in text; anything else is shown as typed. */
function escapeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function kindLabel(kind: ItemKind | undefined): string {
  return kind === undefined ? 'item' : asWords(kind);
}
