/**
 * Browser sessions: a signed, httpOnly cookie naming the identity and a session id, the CSRF token derived
 * from that id, and the key both are signed with (`DATA_DIR/session-secret`, mode 0600, made once).
 */
import { createHmac, randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Request, Response } from 'express';
import type { Identity } from '../../domain/access';
import { sameBytes } from './digest';
import type { EndedSessions } from './ended-sessions';
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
  /** Ended sessions, until their cookies would have expired anyway, when no file keeps them (this process only). */
  private readonly endedHere = new Map<string, number>();

  constructor(
    private readonly secret: Buffer,
    /** `realm` names the sign-in these sessions belong to (mode, provider, mapping): a cookie signed for another never reads. */
    /** `ended` keeps signed-out sessions across restarts and processes; without it they are kept in this process. */
    private readonly opts: { secure: boolean; realm?: string; now?: () => number; ended?: EndedSessions } = { secure: false },
  ) {}

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  private mac(purpose: string, value: string): Buffer {
    return createHmac('sha256', this.secret).update(`${this.opts.realm ?? ''}\n${purpose}\n${value}`).digest();
  }

  /** Starts a session for `identity` (its `via` becomes the session) and sets the cookie; returns the session id. */
  start(res: Response, identity: Identity): string {
    const sid = randomBytes(16).toString('base64url');
    const payload: SessionPayload = { sid, exp: this.now() + SESSION_TTL_MS, identity: { ...identity, via: { kind: 'session', id: sid } } };
    this.setSealedCookie(res, SESSION_COOKIE, 'session', payload, SESSION_TTL_MS);
    return sid;
  }

  /** The session a request's cookie names: null without the cookie; throws for a forged, expired or ended one. */
  read(req: Request): { sid: string; identity: Identity } | null {
    const value = cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (value === null) return null;
    const payload = this.unseal<SessionPayload>('session', value);
    if (payload === null) throw new UnauthenticatedError('the session cookie is not valid; sign in again');
    if (payload.exp <= this.now()) throw new UnauthenticatedError('the session has expired; sign in again');
    if (this.opts.ended?.has(payload.sid) ?? this.endedHere.has(payload.sid)) throw new UnauthenticatedError('the session was signed out; sign in again');
    return { sid: payload.sid, identity: payload.identity };
  }

  /**
   * Sets cookie `name` to `payload` signed for `purpose` (httpOnly, SameSite=Lax, Secure behind https), for `ttlMs`.
   * The payload is readable by whoever holds the cookie: signed, not encrypted.
   */
  setSealedCookie(res: Response, name: string, purpose: string, payload: { exp: number }, ttlMs: number): void {
    res.cookie(name, this.seal(purpose, payload), { ...this.cookieOptions(), maxAge: ttlMs });
  }

  /** The payload of cookie `name` signed for `purpose`: null when the request lacks it, or it is forged, malformed or expired. */
  readSealedCookie<T extends { exp: number }>(req: Request, name: string, purpose: string): T | null {
    const value = cookieValue(req.headers.cookie, name);
    const payload = value === null ? null : this.unseal<T>(purpose, value);
    return payload !== null && typeof payload.exp === 'number' && payload.exp > this.now() ? payload : null;
  }

  /** Tells the browser to drop cookie `name`. */
  clearCookie(res: Response, name: string): void {
    res.clearCookie(name, this.cookieOptions());
  }

  private cookieOptions(): { httpOnly: true; sameSite: 'lax'; secure: boolean; path: string } {
    return { httpOnly: true, sameSite: 'lax', secure: this.opts.secure, path: '/' };
  }

  /** `payload` as `<base64url JSON>.<MAC for purpose>`. */
  private seal(purpose: string, payload: object): string {
    const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
    return `${body}.${this.mac(purpose, body).toString('base64url')}`;
  }

  /** The payload `seal(purpose, …)` made `value` from, or null when it is too long, malformed or not signed for `purpose`. */
  private unseal<T>(purpose: string, value: string): T | null {
    const dot = value.indexOf('.');
    if (value.length > MAX_COOKIE_CHARS || dot <= 0) return null;
    const body = value.slice(0, dot);
    if (!sameBytes(Buffer.from(value.slice(dot + 1), 'base64url'), this.mac(purpose, body))) return null;
    try {
      return JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as T;
    } catch {
      return null;
    }
  }

  /** Ends a session: its cookie is refused from now on, and the browser is told to drop it. */
  end(res: Response, sid: string): void {
    const now = this.now();
    if (this.opts.ended !== undefined) {
      this.opts.ended.add(sid, now + SESSION_TTL_MS, now);
    } else {
      for (const [id, until] of this.endedHere) if (until <= now) this.endedHere.delete(id);
      this.endedHere.set(sid, now + SESSION_TTL_MS);
    }
    this.clearCookie(res, SESSION_COOKIE);
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
