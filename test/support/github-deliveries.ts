/**
 * GitHub webhook deliveries as tests send them: GitHub's own example payloads (@octokit/webhooks-examples),
 * adjusted by the test, signed with the test secret as GitHub signs, and posted without a bearer token.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { call } from './http';

/** The secret the tests' backends verify deliveries with. */
export const WEBHOOK_SECRET = 'github-webhook-test-secret-0123456789abcdef';

/** A deep copy of the first example GitHub gives for `event` whose payload `pick` accepts. */
export function exampleDelivery(event: string, pick: (payload: any) => boolean = () => true): any {
  const index = JSON.parse(fs.readFileSync(require.resolve('@octokit/webhooks-examples/api.github.com/index.json'), 'utf8')) as any[];
  const examples = index.find((e) => e.name === event).examples as any[];
  const found = examples.find(pick);
  if (found === undefined) throw new Error(`no example ${event} delivery matches`);
  return structuredClone(found);
}

/** `sha256=` and the HMAC of `body` under `secret`, as GitHub signs. */
export function sign(body: string, secret = WEBHOOK_SECRET): string {
  return `sha256=${crypto.createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** What {@link deliver} may change of a delivery: its event, its id, its signature (null: none), its raw body, the backend. */
export interface DeliveryOptions {
  event?: string;
  delivery?: string;
  signature?: string | null;
  body?: string;
  url?: string;
}

/** Delivers `payload` to the backend at `base` as GitHub would: JSON, signed (unless `signature` overrides it), no bearer token. */
export async function deliver(base: string, payload: unknown, opts: DeliveryOptions = {}) {
  const body = opts.body ?? JSON.stringify(payload);
  const headers: Record<string, string> = {
    authorization: '',
    'content-type': 'application/json',
    'x-github-event': opts.event ?? 'issues',
    'x-github-delivery': opts.delivery ?? crypto.randomUUID(),
  };
  const signature = opts.signature === undefined ? sign(JSON.stringify(payload)) : opts.signature;
  if (signature !== null) headers['x-hub-signature-256'] = signature;
  return call(opts.url ?? base, 'POST', '/v1/webhooks/github', body, headers);
}

/** The issue the GitHub end-to-end tests label: a spelling fix the recipe makes. */
export const SPELLING_ISSUE = { title: 'Spelling error in the README file', body: "It looks like you accidently spelled 'commit' with three 'm's." };

/** An `issues.labeled` delivery (from GitHub's examples): issue `number` of `repo` labelled `agent-ready` by octocat. */
export function labelledIssue(repo: string, number: number, opts: { title?: string; body?: string } = {}): any {
  const p = exampleDelivery('issues', (e) => e.action === 'labeled' && e.organization !== undefined);
  p.repository.full_name = repo;
  p.repository.name = repo.split('/')[1];
  p.repository.default_branch = 'main';
  p.label = { ...p.label, name: 'agent-ready' };
  p.issue.number = number;
  p.issue.title = opts.title ?? SPELLING_ISSUE.title;
  p.issue.body = opts.body ?? SPELLING_ISSUE.body;
  p.issue.labels = [{ ...p.issue.labels[0], name: 'agent-ready' }];
  p.sender = { ...p.sender, login: 'octocat', type: 'User' };
  return p;
}
