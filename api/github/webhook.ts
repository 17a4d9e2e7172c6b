/**
 * GitHub's side of forge intake: a webhook delivery's signature (`X-Hub-Signature-256`, HMAC-SHA256 over the raw
 * body) checked in constant time before anything reads the body, then the few payload fields intake needs.
 */
import { createHmac } from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import { GithubRepoName } from '../../domain/access';
import type { ForgeIntake, IntakeEvent, WebhookDelivery } from '../../domain/forge';
import type { Planner } from '../../domain/task';
import { sameBytes } from '../auth/digest';
import { HttpError, InvalidJsonError, RequestValidationError, UnsupportedMediaTypeError } from '../errors';

/** What GitHub intake needs: the webhook secret, where repositories live, the label, the planner, the bots it listens to. */
export interface GithubIntakeSettings {
  secret: string;
  /** A URL or an absolute directory, without a trailing slash. */
  gitBase: string;
  label: string;
  planner: Planner;
  botAllow: string[];
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

/** A GitHub login; apps end in `[bot]`. */
const Login = z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$/, 'a GitHub login');
const Label = z.object({ name: z.string() });

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
  sender: z.object({ login: Login, type: z.string().optional() }),
});

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
export function githubIntake(opts: { secret: string; label: string }): ForgeIntake {
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
        sender: { login: p.sender.login, bot: p.sender.type === 'Bot' || p.sender.login.endsWith('[bot]') },
      };
    },
  };
}

/** Where the repository `owner/name` is cloned from under `gitBase` (a URL, or a local directory of bare repositories). */
export function githubRepoUrl(gitBase: string, fullName: string): string {
  const [owner, name] = fullName.split('/') as [string, string];
  return path.isAbsolute(gitBase) ? path.join(gitBase, owner, `${name}.git`) : `${gitBase}/${owner}/${name}.git`;
}
