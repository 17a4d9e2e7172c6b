/**
 * A small JSON client over real HTTP for API tests, a polling helper and a free loopback port.
 */
import net from 'node:net';

/** An HTTP response with its parsed JSON body. */
export interface JsonResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

/** Bearer tokens per API base URL: a string, or a function read at each call (a backend restarted with a new one). */
const tokens = new Map<string, string | (() => string)>();

/** Makes {@link call} send `Authorization: Bearer <token>` to `base` (null forgets it). */
export function authorize(base: string, token: string | (() => string) | null): void {
  if (token === null) tokens.delete(base);
  else tokens.set(base, token);
}

/**
 * Sends a request to the API and parses the JSON answer. The token {@link authorize} registered for `base` goes
 * along unless `headers` has an `authorization` of its own (`''`: send none).
 */
export async function call<T = any>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<JsonResponse<T>> {
  const own = Object.keys(headers).find((k) => k.toLowerCase() === 'authorization');
  const sent: Record<string, string> = { ...headers };
  if (own !== undefined) {
    if (sent[own] === '') delete sent[own];
  } else {
    const token = tokens.get(base);
    if (token !== undefined) sent.authorization = `Bearer ${typeof token === 'function' ? token() : token}`;
  }
  const init: RequestInit = { method, headers: sent };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const res = await fetch(`${base}${path}`, init);
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (an artifact, say): keep the text.
  }
  return { status: res.status, headers: res.headers, body: parsed as T };
}

/** Polls `probe` until `done` holds for its value or the deadline passes (then throws with the last value). */
export async function eventually<T>(probe: () => Promise<T>, done: (v: T) => boolean, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      last = await probe();
      if (done(last)) return last;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(last)}${lastErr ? `; last error: ${String(lastErr)}` : ''}`);
}

/** A loopback port nothing listens on right now (for a server a test starts itself). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Distinct free TCP ports on 127.0.0.1 (held open together so they differ). */
export async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const srv = net.createServer();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', () => resolve());
      });
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}
