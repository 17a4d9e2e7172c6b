/**
 * The pod driver's side of the cluster's egress proxy: a command granted egress gets the proxy
 * environment with credentials of its own (its task id and a token the worker signs with the secret
 * it shares with the proxy, naming what the command may reach and until when), and after the
 * command the worker asks the proxy's report port what the task's traffic did.
 *
 * The proxy attributes a request to the task its token names and applies that token's grant, so a
 * pod holding another task's token acts as that task, within that task's grant, never its own wider.
 */
import { z } from 'zod';
import type { Logger } from '../../workers/log';
import { proxyEnvironment } from '../egress/proxy-env';
import { MAX_BLOCKED_LISTED } from '../egress/ledger';
import { signEgressToken } from '../egress/token';
import type { EgressGrant, EgressReport } from '../egress/types';
import type { EgressProxy } from './k8s-objects';

/**
 * Seconds a token outlives its command's timeout: the exec's start and the worker's and the proxy's
 * clocks differing. Processes a command leaves running keep its grant until then, and no longer.
 */
export const TOKEN_MARGIN_SECONDS = 60;
/** How long asking the proxy for a task's report may take; past it the command's result goes on without one. */
export const REPORT_TIMEOUT_MS = 5_000;
/** Largest report body read from the proxy (its list of refusals is bounded, so a real one is far smaller). */
const MAX_REPORT_BYTES = 1 << 20;

const count = z.number().int().min(0);
/** A report as the proxy's report port answers it; checked, since the worker acts on it. */
const ReportBody = z.object({
  allowed: count,
  blocked: z
    .array(z.object({ host: z.string().max(300), port: z.number().int().min(0).max(65535), at: z.string().max(40), step: z.string().max(300), reason: z.string().max(500), count }))
    .max(MAX_BLOCKED_LISTED),
  blocked_count: count,
  bytes_sent: count,
  bytes_received: count,
}) satisfies z.ZodType<EgressReport>;

/** What the pod driver needs to hand commands to the cluster's egress proxy and read what it saw. */
export interface PodEgressOptions {
  proxy: EgressProxy;
  /** Shared with the proxy: signs tokens, authenticates report requests. */
  secret: string;
  /** The proxy's report port, e.g. `http://egress-proxy.agent-inbox:3129`. */
  reportUrl: string;
  log: Logger;
  /** Defaults to {@link REPORT_TIMEOUT_MS}. */
  reportTimeoutMs?: number;
}

/** Credentials for commands and reports of their traffic, from the cluster's egress proxy. */
export class PodEgress {
  readonly proxy: EgressProxy;
  private readonly secret: string;
  private readonly reportUrl: string;
  private readonly log: Logger;
  private readonly reportTimeoutMs: number;
  /** The issue time of the last token signed, so tokens issued in one millisecond still order. */
  private lastIat = 0;

  constructor(o: PodEgressOptions) {
    this.proxy = o.proxy;
    this.secret = o.secret;
    this.reportUrl = o.reportUrl.replace(/\/+$/, '');
    this.log = o.log;
    this.reportTimeoutMs = o.reportTimeoutMs ?? REPORT_TIMEOUT_MS;
  }

  /**
   * The proxy environment of one command of task `id` granted `grant`, whose token ends `timeoutMs` plus the
   * margin from `now`. The proxy applies the grant of the task's newest token (by issue time), so a command
   * never inherits the grant of an earlier one, whatever their timeouts, and neither across a worker restart.
   */
  environment(id: string, grant: EgressGrant, timeoutMs: number, now = Date.now()): Record<string, string> {
    const iat = Math.max(now, this.lastIat + 1);
    this.lastIat = iat;
    const exp = Math.ceil((now + timeoutMs) / 1000) + TOKEN_MARGIN_SECONDS;
    const token = signEgressToken(this.secret, { task: id, allow: [...grant.allow], step: grant.step, iat, exp });
    return proxyEnvironment(proxyUrlWithCredentials(this.proxy.url, id, token));
  }

  /** What the task's traffic did since the last report; undefined (and logged) when the proxy cannot tell. */
  async report(id: string): Promise<EgressReport | undefined> {
    try {
      const res = await this.call('GET', `${encodeURIComponent(id)}/report`);
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new Error(`status ${res.status}`);
      }
      const parsed = ReportBody.safeParse(JSON.parse(await boundedText(res, MAX_REPORT_BYTES)));
      if (!parsed.success) throw new Error(`not a report: ${parsed.error.issues[0]?.message ?? ''}`);
      return parsed.data;
    } catch (err) {
      this.log.warn('could not read the egress report of a command; its result has none', { sandbox_id: id, error: reason(err) });
      return undefined;
    }
  }

  /** Tell the proxy the task ended: it ends the task's exchanges and forgets it. Failures are logged. */
  async release(id: string): Promise<void> {
    try {
      const res = await this.call('DELETE', encodeURIComponent(id));
      await res.body?.cancel();
      if (res.status !== 200) throw new Error(`status ${res.status}`);
    } catch (err) {
      this.log.warn('could not release the task at the egress proxy', { sandbox_id: id, error: reason(err) });
    }
  }

  private call(method: string, route: string): Promise<Response> {
    return fetch(`${this.reportUrl}/egress/v1/tasks/${route}`, {
      method,
      headers: { authorization: `Bearer ${this.secret}` },
      signal: AbortSignal.timeout(this.reportTimeoutMs),
      redirect: 'error',
    });
  }
}

/** `url` (scheme, host, port) with the task as user and the token as password, as proxy clients read it. */
export function proxyUrlWithCredentials(url: string, task: string, token: string): string {
  const u = new URL(url);
  return `${u.protocol}//${encodeURIComponent(task)}:${encodeURIComponent(token)}@${u.host}`;
}

/** The body of `res` as text, read no further than `max` bytes (past them it throws). */
async function boundedText(res: Response, max: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body ?? []) {
    size += chunk.length;
    if (size > max) throw new Error(`a report of more than ${max} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Why a call failed, in words that carry no credential (the URL has none; the secret is only in a header). */
function reason(err: unknown): string {
  if (err instanceof Error) return err.name === 'TimeoutError' ? 'timed out' : err.message;
  return String(err);
}
