/**
 * Browser sessions: a signed, httpOnly cookie naming the identity and a session id, the CSRF token derived
 * from that id, and the key both are signed with (`DATA_DIR/session-secret`, mode 0600, made once).
 */
import { createHmac, randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Request, Response } from 'express';
import type { Identity } from '../../domain/access';
import { sameBytes } from './digest';
import { ensureSecretFile, SecretFileError } from './secret-file';
import { UnauthenticatedError, type Authenticated, type CredentialSource } from './context';

/** The session cookie's name. */
export const SESSION_COOKIE = 'agent_inbox_session';
/** The session key's file name under DATA_DIR. */
export const SESSION_SECRET_FILE = 'session-secret';
/** How long a session lasts after sign-in. */
export const SESSION_TTL_MS = 12 * 60 * 60_000;
/** Bytes of the signing key. */
const SECRET_BYTES = 32;
/** Longest cookie value read; anything longer is not ours. */
const MAX_COOKIE_CHARS = 4_096;

/** What the cookie carries, signed. */
interface SessionPayload {
  sid: string;
  exp: number;
  identity: Identity;
}

/** The session key in `DATA_DIR/session-secret`: made once (mode 0600), refused when others could read or change it. */
export async function ensureSessionSecret(dataDir: string): Promise<Buffer> {
  const file = path.join(dataDir, SESSION_SECRET_FILE);
  const secret = Buffer.from(await ensureSecretFile(file, () => randomBytes(SECRET_BYTES).toString('base64url'), 'session key (every session ends)'), 'base64url');
  if (secret.length < SECRET_BYTES) throw new SecretFileError(`${file} holds a key shorter than ${SECRET_BYTES} bytes; remove it and restart`);
  return secret;
}

/** Signs, reads and ends sessions with one key. */
export class Sessions {
  /** Ended sessions, until their cookies would have expired anyway (kept in this process only). */
  private readonly ended = new Map<string, number>();

  constructor(
    private readonly secret: Buffer,
    private readonly opts: { secure: boolean; now?: () => number } = { secure: false },
  ) {}

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  private mac(purpose: string, value: string): Buffer {
    return createHmac('sha256', this.secret).update(`${purpose}\n${value}`).digest();
  }

  /** Starts a session for `identity` (its `via` becomes the session) and sets the cookie; returns the session id. */
  start(res: Response, identity: Identity): string {
    const sid = randomBytes(16).toString('base64url');
    const exp = this.now() + SESSION_TTL_MS;
    const payload: SessionPayload = { sid, exp, identity: { ...identity, via: { kind: 'session', id: sid } } };
    const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
    const value = `${body}.${this.mac('session', body).toString('base64url')}`;
    res.cookie(SESSION_COOKIE, value, {
      httpOnly: true,
      sameSite: 'lax',
      secure: this.opts.secure,
      path: '/',
      maxAge: SESSION_TTL_MS,
    });
    return sid;
  }

  /** The session a request's cookie names: null without the cookie; throws for a forged, expired or ended one. */
  read(req: Request): { sid: string; identity: Identity } | null {
    const value = cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (value === null) return null;
    const dot = value.indexOf('.');
    if (value.length > MAX_COOKIE_CHARS || dot <= 0) throw new UnauthenticatedError('the session cookie is not valid; sign in again');
    const body = value.slice(0, dot);
    const given = Buffer.from(value.slice(dot + 1), 'base64url');
    const expected = this.mac('session', body);
    if (!sameBytes(given, expected)) throw new UnauthenticatedError('the session cookie is not valid; sign in again');
    const payload = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as SessionPayload;
    if (payload.exp <= this.now()) throw new UnauthenticatedError('the session has expired; sign in again');
    if (this.ended.has(payload.sid)) throw new UnauthenticatedError('the session was signed out; sign in again');
    return { sid: payload.sid, identity: payload.identity };
  }

  /** Ends a session: its cookie is refused from now on, and the browser is told to drop it. */
  end(res: Response, sid: string): void {
    const now = this.now();
    for (const [id, until] of this.ended) if (until <= now) this.ended.delete(id);
    this.ended.set(sid, now + SESSION_TTL_MS);
    res.clearCookie(SESSION_COOKIE, { httpOnly: true, sameSite: 'lax', secure: this.opts.secure, path: '/' });
  }

  /** The CSRF token of a session: a state-changing request made with its cookie must send it in `x-csrf-token`. */
  csrfToken(sid: string): string {
    return this.mac('csrf', sid).toString('base64url');
  }

  /** Whether `token` is the CSRF token of session `sid`. */
  csrfMatches(sid: string, token: string | undefined): boolean {
    if (token === undefined) return false;
    const given = Buffer.from(token, 'base64url');
    const expected = this.mac('csrf', sid);
    return sameBytes(given, expected);
  }
}

/** The value of cookie `name` in a `Cookie` header, or null. */
function cookieValue(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

/** A credential source for the session cookie; the CSRF check runs after authentication (see `csrfGuard`). */
export function sessionSource(sessions: Sessions): CredentialSource {
  return {
    name: 'session',
    async authenticate(req): Promise<Authenticated | null> {
      const s = sessions.read(req);
      return s === null ? null : { identity: s.identity, carrier: 'cookie', sessionId: s.sid };
    },
  };
}
