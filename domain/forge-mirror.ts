/**
 * How a task shows on the forge issue it came from: one `agent:*` label for where it stands, and one status
 * comment, edited in place, with its state and a link to the inbox.
 *
 * Pure module: no I/O, so the workflow bundle may import it.
 */
import { inertMarkdown } from './markdown';
import { asWords } from './rules';
import type { ItemKind, TaskState } from './task';

/** The labels the backend owns on a source issue; it adds and removes these and never any other. */
export const MIRROR_LABELS = ['agent:queued', 'agent:working', 'agent:needs-input', 'agent:pr-open', 'agent:done'] as const;
/** One of {@link MIRROR_LABELS}. */
export type MirrorLabel = (typeof MIRROR_LABELS)[number];

/** Longest headline a mirror carries (characters), so the workflow's payloads stay small. */
export const MAX_HEADLINE_CHARS = 200;
/** Longest part of an item's title or the task's result a headline quotes. */
const QUOTED_CHARS = 120;

/** What the source issue should show of the task now. */
export interface IssueMirror {
  /** The one `agent:*` label the issue carries, or null for none (a task that ended other than done). */
  label: MirrorLabel | null;
  state: TaskState;
  /** One line saying where the task stands; task text in it is made inert when rendered. */
  headline: string;
  /** The task in the web inbox; filled in by the forge side, which knows the public URL. */
  inbox_url?: string;
  /** The task's pull request, while it has one. */
  pr_url?: string;
}

/** What mirroring a task onto its source issue takes. */
export interface MirrorIssue {
  /** `owner/name`. */
  repo: string;
  issue: number;
  task_id: string;
  mirror: IssueMirror;
  /** The status comment an earlier call wrote, when it is known; without it the comment is looked for by its marker. */
  comment_id?: number;
}

/** One forge's issue side: keeps a task's source issue mirroring it. Idempotent: repeating a call changes nothing more. */
export interface ForgeIssues {
  /** Sets the issue's `agent:*` label to the mirror's (other labels untouched) and writes the one status comment; returns that comment's id. */
  mirrorIssue(input: MirrorIssue): Promise<{ comment_id: number }>;
}

/** What the mirror is made from: the task's state, its pending items' kinds and titles, its pull request and result. */
export interface MirrorSource {
  state: TaskState;
  round: number;
  pending: { kind: ItemKind; title: string }[];
  /** The task's pull request, once it has one; `open` until the forge said it was merged or closed. */
  pr?: { number: number; url: string; open: boolean };
  result: string | null;
}

/** States a task waits in for a human decision other than the review of its pull request. */
const NEEDS_INPUT_STATES: ReadonlySet<TaskState> = new Set(['awaiting_approval', 'awaiting_answer', 'awaiting_budget', 'stuck']);
/** States a task has ended in other than done: the issue keeps no `agent:*` label, the comment says how it ended. */
const ENDED_OTHERWISE: ReadonlySet<TaskState> = new Set(['rejected', 'failed', 'cancelled', 'timed_out']);

/** The mirror of a task: queued, working, waiting for input, its pull request up for review or approved and waiting to be merged, done, or ended otherwise. */
export function mirrorOf(src: MirrorSource): IssueMirror {
  const withPr = (m: IssueMirror): IssueMirror => (src.pr === undefined ? m : { ...m, pr_url: src.pr.url });
  if (src.state === 'done') return withPr({ label: 'agent:done', state: src.state, headline: bounded(`Done: ${quote(src.result ?? 'the task ended done')}`) });
  if (ENDED_OTHERWISE.has(src.state)) return withPr({ label: null, state: src.state, headline: bounded(`Ended ${asWords(src.state)}: ${quote(src.result ?? 'no result given')}`) });
  if (src.state === 'queued') return { label: 'agent:queued', state: src.state, headline: 'Queued: waiting for a worker to start it' };
  const asks = src.pending.find((i) => i.kind !== 'pr_review');
  if (asks !== undefined || NEEDS_INPUT_STATES.has(src.state)) {
    const what = asks === undefined ? 'a decision' : `${asWords(asks.kind)}: ${quote(asks.title)}`;
    return withPr({ label: 'agent:needs-input', state: src.state, headline: bounded(`Waiting for input in the inbox (${what})`) });
  }
  // Approved in the inbox: the pull request is still open on the forge, now waiting to be merged.
  if (src.state === 'awaiting_merge' && src.pr?.open === true) {
    return withPr({ label: 'agent:pr-open', state: src.state, headline: `Pull request #${src.pr.number} is approved and waiting to be merged` });
  }
  const review = src.pending.find((i) => i.kind === 'pr_review');
  if (review !== undefined && src.pr?.open === true) {
    return withPr({ label: 'agent:pr-open', state: src.state, headline: `Pull request #${src.pr.number} is waiting for review (round ${src.round})` });
  }
  // A review with no pull request on the forge (opening it failed) is taken in the inbox.
  if (review !== undefined) return { label: 'agent:needs-input', state: src.state, headline: `Round ${src.round} is waiting for review in the inbox` };
  return withPr({ label: 'agent:working', state: src.state, headline: src.round === 1 ? 'Working on it' : `Working on round ${src.round}` });
}

/**
 * A stable key of what a mirror shows: equal keys need no write. The state itself is left out (the label and the
 * headline say what the issue shows of it), so moving between working states writes nothing.
 */
export function mirrorKey(m: IssueMirror): string {
  return JSON.stringify([m.label, m.headline, m.pr_url ?? null, m.inbox_url ?? null]);
}

/** The hidden first line of a task's status comment, by which the comment is found again. */
export function statusMarker(taskId: string): string {
  return `<!-- agent-inbox:status task=${markerSafe(taskId)} -->`;
}

/** The status comment's Markdown: the marker, the state and headline, the pull request and the inbox link. Nothing in it pings or links an issue. */
export function statusComment(m: IssueMirror, taskId: string): string {
  const lines = [
    statusMarker(taskId),
    `**Agent status:** ${m.label === null ? `ended (${asWords(m.state)})` : `\`${m.label}\``}`,
    '',
    inertMarkdown(oneLine(m.headline)),
  ];
  if (m.pr_url !== undefined) lines.push('', `Pull request: ${m.pr_url}`);
  if (m.inbox_url !== undefined) lines.push('', `Follow task \`${markerSafe(taskId)}\` in the Agent Inbox: ${m.inbox_url}`);
  else lines.push('', `Task \`${markerSafe(taskId)}\` (this comment is edited as it goes).`);
  return lines.join('\n');
}

/** A task id as the marker and the comment carry it: only characters that cannot end an HTML comment or a code span. */
function markerSafe(taskId: string): string {
  return taskId.replace(/[^A-Za-z0-9._:-]/g, '_');
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function quote(text: string): string {
  const line = oneLine(text);
  return line.length <= QUOTED_CHARS ? line : `${line.slice(0, QUOTED_CHARS - 1)}…`;
}

function bounded(text: string): string {
  return text.length <= MAX_HEADLINE_CHARS ? text : `${text.slice(0, MAX_HEADLINE_CHARS - 1)}…`;
}
