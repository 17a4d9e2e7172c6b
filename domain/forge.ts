/**
 * What the backend needs of a code forge (GitHub now, GitLab later), as plain data: the intake events a
 * webhook delivery stands for, where a task came from, and how an issue becomes a task's goal.
 *
 * Pure module: no I/O, so the workflow bundle may import it.
 */
import type { ChecksFailed, TaskChecksFailed } from './checks';
import type { IssueCommented } from './forge-comments';
import type { MergeMethod } from './merge';

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
  /**
   * How the worker merges the task's pull request once it is approved in the inbox (GITHUB_MERGE_ON_APPROVE when the
   * task started); absent: it waits for the pull request to be merged on the forge.
   */
  merge_method?: MergeMethod;
  /** CI rounds in a row failing checks may send the agent back (GITHUB_MAX_CI_ROUNDS when the task started); absent: the default. */
  max_ci_rounds?: number;
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
  /**
   * What names the event's task: the signed body's SHA-256. GitHub's signature covers the body, not the delivery id,
   * so the same body re-sent under another delivery id (a redelivery, or a replay) names the same task.
   */
  body_sha256: string;
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

/** The agent's pull request was closed on the forge: merged, or closed without merging. */
export interface PullRequestClosed {
  kind: 'pr_closed';
  delivery_id: string;
  repo: string;
  number: number;
  /** The head branch (`agent/<task id>` for the agent's own). */
  head: string;
  merged: boolean;
  /** When it was merged (ISO), or null. */
  merged_at: string | null;
  sender: ForgeSender;
}

/**
 * A review was submitted on a pull request; `changes_requested` sends the agent back to work, and so does
 * `commented` (every line comment belongs to a review: a lone one is a review in that state) when it has line
 * comments or a body that speaks to the agent.
 */
export interface ReviewSubmitted {
  kind: 'review_submitted';
  delivery_id: string;
  repo: string;
  number: number;
  head: string;
  review_id: number;
  state: 'approved' | 'changes_requested' | 'commented' | 'dismissed';
  /** Whether the review's body speaks to the agent (`/agent …`, or a mention of the configured login). */
  addressed: boolean;
  sender: ForgeSender;
}

/** What one webhook delivery stands for, once its signature is verified. */
export type IntakeEvent = IssueReady | IssueCommented | PullRequestClosed | ReviewSubmitted | ChecksFailed | ForgePing | ForgeIgnored;

/**
 * A forge event about a task's own pull request, as the API hands it to the task workflow (an Update whose
 * validator refuses an event for another pull request, and one whose delivery it has seen).
 */
export type TaskForgeEvent =
  | { kind: 'pr_closed'; delivery_id: string; repo: string; number: number; merged: boolean; merged_at: string | null; actor: string }
  | { kind: 'changes_requested'; delivery_id: string; repo: string; number: number; review_id: number; reviewer: string }
  /** A `commented` review: a round when it has line comments or `addressed` (its body speaks to the agent), else nothing. */
  | { kind: 'review_commented'; delivery_id: string; repo: string; number: number; review_id: number; reviewer: string; addressed: boolean }
  | TaskChecksFailed;

/** A forge event carrying a review, which the task reads back at the forge before it may become a round. */
export type TaskReviewEvent = Extract<TaskForgeEvent, { kind: 'changes_requested' | 'review_commented' }>;

/** Longest review text handed to the agent as one request for changes (one review, or a writer's reviews folded together). */
export const MAX_REVIEW_REQUEST_CHARS = 20_000;
/** Line comments one request for changes hands on, across the reviews folded into it; the rest are counted, not passed on. */
export const MAX_REQUEST_COMMENTS = 100;
/**
 * Later reviews of one writer folded into their review waiting to be read while the agent works on a round (a lone
 * line comment is a review of its own); the one after them marks the fold full (the writer is told once the round
 * is read), and the rest are refused.
 */
export const MAX_FOLDED_REVIEWS = 10;

/** One round's request for changes, and whether a bound cut anything a reviewer wrote. */
export interface ReviewRequest {
  text: string;
  cut: boolean;
}

/**
 * One round's request for changes from a review, or from a writer's reviews folded together (oldest first): each
 * review's body, then each comment with where it points; at most {@link MAX_REQUEST_COMMENTS} comments, cut to
 * {@link MAX_REVIEW_REQUEST_CHARS}, with a note to the agent where anything is left out.
 */
export function reviewRequest(reviews: readonly Pick<ReviewFeedback, 'body' | 'comments' | 'comments_left'>[]): ReviewRequest {
  let room = MAX_REQUEST_COMMENTS;
  let left = 0;
  const blocks: string[] = [];
  for (const feedback of reviews) {
    left += feedback.comments_left ?? 0;
    const lines: string[] = [];
    if (feedback.body.trim() !== '') lines.push(feedback.body.trim());
    for (const c of feedback.comments) {
      if (room === 0) {
        left += 1;
        continue;
      }
      room -= 1;
      lines.push(`- ${c.path}${c.line === null ? '' : `:${c.line}`}: ${c.body.trim()}`);
    }
    if (lines.length > 0) blocks.push((blocks.length === 0 ? '' : 'Then, in a later review:\n') + lines.join('\n'));
  }
  let text = blocks.length === 0 ? '(the review has no text)' : blocks.join('\n\n');
  if (left > 0) text += `\n[${left} more comment(s) not passed on: at most ${MAX_REQUEST_COMMENTS} at once]`;
  if (text.length <= MAX_REVIEW_REQUEST_CHARS) return { text, cut: left > 0 };
  const note = '\n[the rest of the review is cut]';
  return { text: text.slice(0, MAX_REVIEW_REQUEST_CHARS - note.length) + note, cut: true };
}

/** The reply a review gets from someone who may not steer the agent. */
export function notAllowedReply(reviewer: string): string {
  return `Thanks for the review, @${reviewer}. Only people with write access to this repository can send the agent back to work, so this review was not passed on to it.`;
}

/** The one reply a writer gets when more of their reviews came during a round than fold into one request ({@link MAX_FOLDED_REVIEWS} after the first). */
export function foldFullReply(reviewer: string): string {
  return `@${reviewer}, your reviews during the agent's last round went to it together, up to ${MAX_FOLDED_REVIEWS} of them after the first; the ones after those were not passed on. Repeat what still applies on this round.`;
}

/** The one reply a writer gets when their review (or reviews folded together) held more than one request for changes takes. */
export function requestCutReply(reviewer: string): string {
  return `@${reviewer}, your review went to the agent, but a request for changes takes at most ${MAX_REQUEST_COMMENTS} line comments and ${MAX_REVIEW_REQUEST_CHARS} characters, so the rest was not passed on; repeat what still applies once the next round is up for review.`;
}

/** The check run that reports a round's self-check on the pull request's head commit. */
export interface SelfCheckReport {
  conclusion: 'success' | 'failure' | 'neutral';
  /** One line: what ran and how it ended. */
  summary: string;
  /** The checks' output, bounded (Markdown). */
  text: string;
}

/** What publishing a round as a pull request takes; the branch is already pushed. */
export interface PublishPullRequest {
  /** The task, for the link to it in the inbox. */
  task_id: string;
  /** `owner/name`. */
  repo: string;
  head: string;
  base: string;
  /** The head commit the round pushed. */
  commit: string;
  /** The task's pull request from an earlier round: updated, never replaced by another with the same head. */
  number?: number;
  title: string;
  /** The template's body (goal, changes, risks, how to test, network, cost); the forge adds the inbox link and "Fixes #N". */
  body: string;
  /** The source issue the pull request closes, if the task came from one. */
  fixes?: number;
  self_check: SelfCheckReport;
}

/** The pull request a round is on. */
export interface PublishedPullRequest {
  number: number;
  url: string;
  /** Whether this call opened it (false: an open one for the head branch already existed and was updated). */
  created: boolean;
  /** Whether it is still a draft (its self-check did not pass). */
  draft: boolean;
}

/** A review read back at the forge: whether its author may steer the agent, and its comments batched. */
export interface ReviewFeedback {
  /** The reviewer's permission on the repository as the forge reports it (`admin`, `write`, `read`, `none`, ...). */
  permission: string;
  /** Write access or more: only then does the review reach the agent. */
  allowed: boolean;
  /** The review's state now, lower case (`changes_requested`, `dismissed`, ...): a dismissed review asks nothing. Absent from workers before it was read. */
  state?: string;
  body: string;
  comments: { path: string; line: number | null; body: string }[];
  /** Whether the review has line comments, also when they were not read (someone without write access); absent from workers before it was read. */
  has_comments?: boolean;
  /** Line comments the forge had beyond what was read back (see {@link boundedReview}); absent when none. */
  comments_left?: number;
}

/**
 * What of a review is read back into the task: its body and at most {@link MAX_REQUEST_COMMENTS} comments, all of
 * it within {@link MAX_REVIEW_REQUEST_CHARS} (no more ever reaches a request for changes), with the count of
 * comments left out. Bounds what one review, or a writer's reviews folded together, adds to the task's history.
 */
export function boundedReview(body: string, comments: readonly { path: string; line: number | null; body: string }[]): Pick<ReviewFeedback, 'body' | 'comments' | 'comments_left'> {
  const kept: ReviewFeedback['comments'] = [];
  let room = MAX_REVIEW_REQUEST_CHARS - Math.min(body.length, MAX_REVIEW_REQUEST_CHARS);
  for (const c of comments) {
    if (kept.length >= MAX_REQUEST_COMMENTS || room <= 0) break;
    const text = c.body.length <= room ? c.body : `${c.body.slice(0, Math.max(room - 1, 0))}…`;
    room -= text.length;
    kept.push({ path: c.path, line: c.line, body: text });
  }
  const left = comments.length - kept.length;
  return { body: body.slice(0, MAX_REVIEW_REQUEST_CHARS), comments: kept, ...(left > 0 ? { comments_left: left } : {}) };
}

/** One forge's pull-request side: what the worker does there for a task. Implementations retry nothing themselves beyond rate limits. */
export interface ForgePullRequests {
  /** Finds the open pull request of `head` or opens one as a draft, updates its text, reports the self-check, and marks it ready when that passed. */
  publish(input: PublishPullRequest): Promise<PublishedPullRequest>;
  /** Closes the pull request (a no-op when it is closed already), with a comment saying why. */
  close(input: { repo: string; number: number; comment: string }): Promise<void>;
  /** The review `review_id` on pull request `number`, with the reviewer's permission. */
  reviewFeedback(input: { repo: string; number: number; review_id: number; reviewer: string }): Promise<ReviewFeedback>;
  /** Comments on the pull request (a polite refusal to someone who may not steer the agent). */
  comment(input: { repo: string; number: number; body: string }): Promise<void>;
}

/** A verified webhook delivery as a forge's HTTP edge hands it over: headers by lower-case name, the body as sent. */
export interface WebhookDelivery {
  headers: Readonly<Record<string, string | string[] | undefined>>;
  body: Buffer;
}

/**
 * One forge's intake: turns a webhook delivery into an intake event, or throws when its signature does not
 * verify. The pull-request side is {@link ForgePullRequests}.
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
