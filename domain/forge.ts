/**
 * What the backend needs of a code forge (GitHub now, GitLab later), as plain data: the intake events a
 * webhook delivery stands for, where a task came from, and how an issue becomes a task's goal.
 *
 * Pure module: no I/O, so the workflow bundle may import it.
 */

/** The forges tasks can come from. */
export type ForgeName = 'github';

/** Where a task came from on its forge, so later work can answer on the issue; absent for tasks submitted through the API. */
export interface TaskSource {
  forge: ForgeName;
  /** `owner/name` as the forge spells it. */
  repo: string;
  /** The issue's number in that repository. */
  issue: number;
  /** The delivery that started the task. */
  delivery_id: string;
}

/** Who made a forge event happen. */
export interface ForgeSender {
  login: string;
  /** Whether the forge says this account is a bot (an app, an integration): their events are ignored unless allowlisted. */
  bot: boolean;
}

/** An issue someone marked ready for an agent (on GitHub: labelled with the intake label). */
export interface IssueReady {
  kind: 'issue_ready';
  delivery_id: string;
  /** `owner/name` as the forge spells it. */
  repo: string;
  default_branch: string;
  number: number;
  title: string;
  body: string;
  /** Every label the issue has now, the one just added among them. */
  labels: string[];
  /** The label whose adding this event is. */
  label: string;
  sender: ForgeSender;
}

/** The forge checking that its webhook reaches us. */
export interface ForgePing {
  kind: 'ping';
  delivery_id: string;
}

/** A delivery the intake has nothing to do with (another event or action); `reason` says which. */
export interface ForgeIgnored {
  kind: 'ignored';
  delivery_id: string;
  reason: string;
}

/** What one webhook delivery stands for, once its signature is verified. */
export type IntakeEvent = IssueReady | ForgePing | ForgeIgnored;

/** A verified webhook delivery as a forge's HTTP edge hands it over: headers by lower-case name, the body as sent. */
export interface WebhookDelivery {
  headers: Readonly<Record<string, string | string[] | undefined>>;
  body: Buffer;
}

/**
 * One forge's intake: turns a webhook delivery into an intake event, or throws when its signature does not
 * verify. The pull-request side (branches, PRs, comments) is a second interface of the same forge, added with it.
 */
export interface ForgeIntake {
  readonly forge: ForgeName;
  /** The event the delivery stands for; throws before reading the body as JSON when the signature is missing or wrong. */
  receive(delivery: WebhookDelivery): IntakeEvent;
}

/** Longest goal a forge issue gives a task (the task schema's limit). */
export const MAX_ISSUE_GOAL_CHARS = 20_000;

/** The goal of a task made from an issue: its title, then its body, cut to {@link MAX_ISSUE_GOAL_CHARS} with a note saying so. */
export function issueGoal(title: string, body: string): string {
  const goal = body.trim() === '' ? title.trim() : `${title.trim()}\n\n${body.trim()}`;
  if (goal.length <= MAX_ISSUE_GOAL_CHARS) return goal;
  const note = '\n\n[the rest of the issue is cut]';
  return goal.slice(0, MAX_ISSUE_GOAL_CHARS - note.length) + note;
}
