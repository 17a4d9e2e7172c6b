/**
 * The credential a sandbox pod presents to the shared egress proxy: its task, what it may reach and
 * until when, signed by the worker with the secret it shares with the proxy. Format:
 * `base64url(JSON {task, allow, step, iat, exp}) + "." + base64url(HMAC-SHA256(secret, <first part>))`,
 * `iat` in milliseconds (the order the worker issued them in), `exp` in Unix seconds; sent as the password of proxy basic auth with the task id as the user.
 */
import crypto from 'node:crypto';
import { z } from 'zod';

/** What a token grants. */
export const EgressClaims = z.object({
  task: z.string().min(1).max(256),
  allow: z.array(z.string().max(256)).max(1_000),
  step: z.string().max(256),
  /** When the worker issued it, in milliseconds: the newest token of a task sets its grant, whatever the expiries. */
  iat: z.number().int().nonnegative(),
  exp: z.number().int().positive(),
});
/** What a token grants. */
export type EgressClaims = z.infer<typeof EgressClaims>;

/** Shortest secret the proxy and the worker may share (256 bits as base64 or hex is longer). */
export const MIN_SECRET_CHARS = 32;

function mac(secret: string, payload: string): Buffer {
  return crypto.createHmac('sha256', secret).update(payload).digest();
}

/** A token for `claims`, for the driver that starts a task's pod. */
export function signEgressToken(secret: string, claims: EgressClaims): string {
  const payload = Buffer.from(JSON.stringify(EgressClaims.parse(claims))).toString('base64url');
  return `${payload}.${mac(secret, payload).toString('base64url')}`;
}

/** A token's claims when its signature is the secret's and it has not expired; else why not. */
export function verifyEgressToken(secret: string, token: string, now = Date.now()): { ok: true; claims: EgressClaims } | { ok: false; reason: string } {
  const dot = token.indexOf('.');
  if (dot <= 0 || token.indexOf('.', dot + 1) !== -1) return { ok: false, reason: 'not a token' };
  const payload = token.slice(0, dot);
  const given = Buffer.from(token.slice(dot + 1), 'base64url');
  const expected = mac(secret, payload);
  // Equal lengths first: timingSafeEqual throws otherwise, and a digest's length is no secret.
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return { ok: false, reason: 'bad signature' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, reason: 'not a token' };
  }
  const claims = EgressClaims.safeParse(parsed);
  if (!claims.success) return { ok: false, reason: 'not a token' };
  if (claims.data.exp * 1000 <= now) return { ok: false, reason: 'expired' };
  return { ok: true, claims: claims.data };
}

/** Whether `given` equals `secret`, in time that does not depend on where they differ. */
export function secretEquals(given: string, secret: string): boolean {
  // Compare digests so the lengths match and the secret's length does not leak.
  return crypto.timingSafeEqual(mac('compare', given), mac('compare', secret));
}
