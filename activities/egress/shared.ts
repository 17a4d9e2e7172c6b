/**
 * Who a request on the shared (cluster) proxy listener is: the task whose signed token it presents
 * as the password of proxy basic auth, the task id as the user. The token's grant becomes the
 * task's grant, the newest token (by the time the worker issued it) winning.
 */
import type { IncomingMessage } from 'node:http';
import type { EgressProxyPort } from './types';
import { verifyEgressToken } from './token';

/** The user and password of a `Proxy-Authorization: Basic …` header, or null. */
export function proxyBasicAuth(header: string | undefined): { user: string; password: string } | null {
  const m = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(header?.trim() ?? '');
  if (!m) return null;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) return null;
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

/**
 * An `identify` for `EgressProxy.serveShared` that accepts tokens signed with `secret` and sets the
 * task's grant from the newest one seen.
 */
export function identifyByToken(proxy: Pick<EgressProxyPort, 'setGrant'>, secret: string, now: () => number = Date.now): (req: IncomingMessage) => string | null {
  const newest = new Map<string, number>();
  return (req) => {
    const auth = proxyBasicAuth(req.headers['proxy-authorization']);
    if (!auth) return null;
    const v = verifyEgressToken(secret, auth.password, now());
    if (!v.ok || v.claims.task !== auth.user) return null;
    const { task, allow, step, iat } = v.claims;
    // An older token (a process a finished command left running) still identifies its task but never sets its grant again.
    if (iat > (newest.get(task) ?? -1)) {
      newest.set(task, iat);
      proxy.setGrant(task, { allow, step });
    }
    return task;
  };
}
