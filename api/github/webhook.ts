/**
 * GitHub's side of forge intake: a webhook delivery's signature (`X-Hub-Signature-256`, HMAC-SHA256 over the raw
 * body) checked in constant time before anything reads the body, then the few payload fields intake needs.
 */
import { createHash, createHmac } from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import { GithubRepoName } from '../../domain/access';
import type { ForgeIntake, IntakeEvent, ReviewSubmitted, WebhookDelivery } from '../../domain/forge';
import type { MergeMethod } from '../../domain/merge';
import type { Planner } from '../../domain/task';
import { agentRequest } from '../../domain/forge-comments';
import { checkRunEvent, checkSuiteEvent } from './check-events';
import { commentEvent } from './comment-events';
import { Label, Sender, senderOf } from './payload';
import { sameBytes } from '../auth/digest';
import { HttpError, InvalidJsonError, RequestValidationError, UnsupportedMediaTypeError } from '../errors';

/** What GitHub intake needs: the webhook secret, where repositories live, the label, the planner, the bots it listens to. */
export interface GithubIntakeSettings {
  secret: string;
  /** CI rounds in a row failing checks may send a task's agent back (GITHUB_MAX_CI_ROUNDS), kept in each task's source. */
  maxCiRounds: number;
  /** A URL or an absolute directory, without a trailing slash. */
  gitBase: string;
  label: string;
  planner: Planner;
  botAllow: string[];
  /** The login a comment mentions to speak to the agent (besides the `/agent` command); null: the command only. */
  mention: string | null;
  /** How the worker merges an approved pull request (GITHUB_MERGE_ON_APPROVE); null or absent: it waits for a merge on GitHub. */
  mergeMethod?: MergeMethod | null;
}

/** Thrown when a delivery's signature is missing, malformed or wrong (401): nothing of it is read. */
export class BadSignatureError extends HttpError {
  override readonly name = 'BadSignatureError';
  constructor(why: string) {
    super(401, 'bad_signature', `X-Hub-Signature-256: ${why}`);
  }
}

/** Thrown when a signed delivery lacks a header GitHub always sends, or has one out of its format (400). */
export class BadDeliveryError extends HttpError {
  override readonly name = 'BadDeliveryError';
  constructor(header: string, why: string) {
    super(400, 'bad_delivery', `${header}: ${why}`, { details: [{ path: header, message: why }] });
  }
}

/** The signature header's one form: `sha256=` and the 32-byte MAC in hex. */
const SIGNATURE = /^sha256=([0-9a-f]{64})$/i;
/** A delivery id as GitHub makes them (a GUID), bounded; it names the task, so nothing else is taken. */
const DELIVERY_ID = /^[A-Za-z0-9-]{1,100}$/;
/** An event name (`issues`, `ping`, `pull_request`, …). */
const EVENT_NAME = /^[a-z_]{1,64}$/;


/** The fields of an `issues` delivery intake reads; GitHub's other fields are ignored. */
const IssuesPayload = z.object({
  action: z.string(),
  label: Label.optional(),
  issue: z.object({
    number: z.number().int().positive(),
    title: z.string(),
    body: z.string().nullable().optional(),
    labels: z.array(Label).default([]),
  }),
  repository: z.object({ full_name: GithubRepoName, default_branch: z.string().min(1) }),
  sender: Sender,
});

/** A pull request's head: its branch, and the repository it lives in (null when a fork was deleted). */
const Head = z.object({ ref: z.string().min(1).max(255), repo: z.object({ full_name: GithubRepoName }).nullable() });

/** The fields of a `pull_request` delivery a closed pull request needs. */
const PullRequestPayload = z.object({
  action: z.string(),
  pull_request: z.object({
    number: z.number().int().positive(),
    merged: z.boolean().nullable().optional(),
    merged_at: z.string().nullable().optional(),
    merged_by: Sender.nullable().optional(),
    head: Head,
  }),
  repository: z.object({ full_name: GithubRepoName }),
  sender: Sender,
});

/** The fields of a `pull_request_review` delivery. */
const ReviewPayload = z.object({
  action: z.string(),
  review: z.object({ id: z.number().int().positive(), state: z.string(), body: z.string().nullable().optional(), user: Sender.nullable() }),
  pull_request: z.object({ number: z.number().int().positive(), head: Head }),
  repository: z.object({ full_name: GithubRepoName }),
  sender: Sender,
});

const REVIEW_STATES = ['approved', 'changes_requested', 'commented', 'dismissed'] as const;

/** Why a `pull_request_review_comment` delivery is only acknowledged: its comment reaches the agent with its review. */
export const REVIEW_COMMENT_REASON = 'a review comment is taken with its review (the pull_request_review event it belongs to), not on its own';


/** The head branch, or null when it lives in another repository (a fork): a fork's branch is never the agent's. */
function ownHead(head: z.infer<typeof Head>, repo: string): string | null {
  return head.repo !== null && head.repo.full_name.toLowerCase() === repo.toLowerCase() ? head.ref : null;
}

/** The value of header `name`, or undefined (a repeated header counts as absent: GitHub sends each once). */
function header(delivery: WebhookDelivery, name: string): string | undefined {
  const v = delivery.headers[name];
  return typeof v === 'string' ? v : undefined;
}

/** Throws {@link BadSignatureError} unless `body`'s HMAC-SHA256 under `secret` is what the header says. */
export function verifySignature(secret: string, body: Buffer, signature: string | undefined): void {
  if (signature === undefined) throw new BadSignatureError('missing');
  const m = SIGNATURE.exec(signature.trim());
  if (m === null) throw new BadSignatureError('expected sha256=<64 hex digits>');
  const expected = createHmac('sha256', secret).update(body).digest();
  if (!sameBytes(Buffer.from(m[1]!, 'hex'), expected)) throw new BadSignatureError('does not match the body');
}

/** The JSON of a verified body; GitHub's form-encoded deliveries are refused with what to change. */
function payloadOf(delivery: WebhookDelivery): unknown {
  const type = header(delivery, 'content-type') ?? '';
  if (!/^application\/json\s*(;|$)/i.test(type)) throw new UnsupportedMediaTypeError("set the webhook's content type to application/json");
  try {
    return JSON.parse(delivery.body.toString('utf8'));
  } catch (err) {
    throw new InvalidJsonError(err);
  }
}

/** GitHub intake over `secret`: an `issues` delivery whose action adds `label` is an issue ready for an agent. */
export function githubIntake(opts: { secret: string; label: string; mention?: string | null }): ForgeIntake {
  return {
    forge: 'github',
    receive(delivery: WebhookDelivery): IntakeEvent {
      verifySignature(opts.secret, delivery.body, header(delivery, 'x-hub-signature-256'));
      const deliveryId = header(delivery, 'x-github-delivery');
      if (deliveryId === undefined || !DELIVERY_ID.test(deliveryId)) throw new BadDeliveryError('X-GitHub-Delivery', 'expected the delivery GUID GitHub sends');
      const event = header(delivery, 'x-github-event');
      if (event === undefined || !EVENT_NAME.test(event)) throw new BadDeliveryError('X-GitHub-Event', 'expected the event name GitHub sends');
      const payload = payloadOf(delivery);
      if (event === 'ping') return { kind: 'ping', delivery_id: deliveryId };
      if (event === 'pull_request') return pullRequestEvent(deliveryId, payload);
      if (event === 'pull_request_review') return reviewEvent(deliveryId, payload, opts.mention ?? null);
      // Every review comment belongs to a review (a lone one makes a review of its own), whose submitted event carries it.
      if (event === 'pull_request_review_comment') return { kind: 'ignored', delivery_id: deliveryId, reason: REVIEW_COMMENT_REASON };
      if (event === 'issue_comment') return commentEvent(deliveryId, payload, opts.mention ?? null);
      if (event === 'check_run') return checkRunEvent(deliveryId, payload);
      if (event === 'check_suite') return checkSuiteEvent(deliveryId, payload);
      if (event !== 'issues') return { kind: 'ignored', delivery_id: deliveryId, reason: `event ${event}` };
      const parsed = IssuesPayload.safeParse(payload);
      if (!parsed.success) throw new RequestValidationError('issues payload', parsed.error);
      const p = parsed.data;
      if (p.action !== 'labeled') return { kind: 'ignored', delivery_id: deliveryId, reason: `issues action ${p.action}` };
      if (p.label?.name !== opts.label) return { kind: 'ignored', delivery_id: deliveryId, reason: `label ${JSON.stringify(p.label?.name ?? null)} is not ${JSON.stringify(opts.label)}` };
      return {
        kind: 'issue_ready',
        delivery_id: deliveryId,
        repo: p.repository.full_name,
        default_branch: p.repository.default_branch,
        number: p.issue.number,
        title: p.issue.title,
        body: p.issue.body ?? '',
        labels: p.issue.labels.map((l) => l.name),
        label: p.label.name,
        sender: senderOf(p.sender),
        body_sha256: createHash('sha256').update(delivery.body).digest('hex'),
      };
    },
  };
}

/** A `pull_request` delivery: only `closed` on a branch of the repository itself matters. */
function pullRequestEvent(deliveryId: string, payload: unknown): IntakeEvent {
  const parsed = PullRequestPayload.safeParse(payload);
  if (!parsed.success) throw new RequestValidationError('pull_request payload', parsed.error);
  const p = parsed.data;
  if (p.action !== 'closed') return { kind: 'ignored', delivery_id: deliveryId, reason: `pull_request action ${p.action}` };
  const head = ownHead(p.pull_request.head, p.repository.full_name);
  if (head === null) return { kind: 'ignored', delivery_id: deliveryId, reason: 'the pull request comes from another repository' };
  const merged = p.pull_request.merged === true;
  return {
    kind: 'pr_closed',
    delivery_id: deliveryId,
    repo: p.repository.full_name,
    number: p.pull_request.number,
    head,
    merged,
    merged_at: merged ? (p.pull_request.merged_at ?? null) : null,
    // Who merged it, when GitHub says; else who closed it.
    sender: senderOf(merged && p.pull_request.merged_by ? p.pull_request.merged_by : p.sender),
  };
}

/** A `pull_request_review` delivery: a submitted review on a branch of the repository itself. */
function reviewEvent(deliveryId: string, payload: unknown, mention: string | null): IntakeEvent {
  const parsed = ReviewPayload.safeParse(payload);
  if (!parsed.success) throw new RequestValidationError('pull_request_review payload', parsed.error);
  const p = parsed.data;
  if (p.action !== 'submitted') return { kind: 'ignored', delivery_id: deliveryId, reason: `pull_request_review action ${p.action}` };
  const head = ownHead(p.pull_request.head, p.repository.full_name);
  if (head === null) return { kind: 'ignored', delivery_id: deliveryId, reason: 'the pull request comes from another repository' };
  const state = p.review.state.toLowerCase();
  if (!(REVIEW_STATES as readonly string[]).includes(state)) return { kind: 'ignored', delivery_id: deliveryId, reason: `review state ${p.review.state}` };
  return {
    kind: 'review_submitted',
    delivery_id: deliveryId,
    repo: p.repository.full_name,
    number: p.pull_request.number,
    head,
    review_id: p.review.id,
    state: state as ReviewSubmitted['state'],
    addressed: agentRequest(p.review.body ?? '', mention) !== null,
    sender: senderOf(p.review.user ?? p.sender),
  };
}

/** Where the repository `owner/name` is cloned from under `gitBase` (a URL, or a local directory of bare repositories). */
export function githubRepoUrl(gitBase: string, fullName: string): string {
  const [owner, name] = fullName.split('/') as [string, string];
  return path.isAbsolute(gitBase) ? path.join(gitBase, owner, `${name}.git`) : `${gitBase}/${owner}/${name}.git`;
}
