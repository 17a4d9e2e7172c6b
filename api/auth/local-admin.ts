/**
 * The safe default for one machine without an identity provider: a local admin token kept in
 * `DATA_DIR/admin-token` (mode 0600), loopback only, and one-time codes for the web inbox's login link.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import type { Identity } from '../../domain/access';
import { UnauthenticatedError, type Authenticated, type CredentialSource } from './context';
import { sameSecret, sha256 } from './digest';
import { ensureSecretFile, SecretFileError } from './secret-file';
import { bearerToken } from './tokens';

/** The admin token's file name under DATA_DIR. */
export const ADMIN_TOKEN_FILE = 'admin-token';

/** How the local admin token looks: `aia_` and 43 base64url characters (256 bits). */
const ADMIN_TOKEN_FORMAT = /^aia_[A-Za-z0-9_-]{43}$/;

/** How long a one-time login code stays valid. */
export const LOGIN_CODE_TTL_MS = 15 * 60_000;

/** The identity the local admin token acts as. */
export const LOCAL_ADMIN: Identity = Object.freeze({
  subject: 'local-admin',
  name: 'local admin',
  role: 'admin',
  teams: [],
  via: { kind: 'local_admin', id: ADMIN_TOKEN_FILE },
}) as Identity;

/** Whether `host` is a loopback address (or `localhost`), the only place an API without an identity provider may listen. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (h === 'localhost') return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  if (net.isIPv6(h)) return h === '::1' || /^::ffff:127\./.test(h);
  return false;
}

/**
 * The admin token in `DATA_DIR/admin-token`: read when the file is there (restarts keep the operator's token),
 * else created with mode 0600. A file others can read is refused: its token may have leaked.
 */
export async function ensureAdminToken(dataDir: string): Promise<string> {
  const file = path.join(dataDir, ADMIN_TOKEN_FILE);
  const token = await ensureSecretFile(file, () => `aia_${randomBytes(32).toString('base64url')}`, 'admin token');
  if (!ADMIN_TOKEN_FORMAT.test(token)) throw new SecretFileError(`${file} does not hold an admin token; remove it and restart for a new one`);
  return token;
}

/** A credential source accepting `Authorization: Bearer <the local admin token>`. */
export function localAdminSource(adminToken: string): CredentialSource {
  return {
    name: 'local_admin',
    async authenticate(req): Promise<Authenticated | null> {
      const token = bearerToken(req);
      if (token === null || !token.startsWith('aia_')) return null;
      if (!sameSecret(token, adminToken)) throw new UnauthenticatedError('the admin token does not match DATA_DIR/admin-token');
      return { identity: LOCAL_ADMIN, carrier: 'bearer' };
    },
  };
}

/**
 * One-time login codes for the local admin's link to the web inbox: each is good once, for 15 minutes.
 * Codes are kept by their SHA-256, so a lookup never compares a guess with a secret byte by byte.
 */
export class OneTimeLoginCodes {
  private readonly expiries = new Map<string, number>();

  constructor(
    private readonly now: () => number = Date.now,
    private readonly ttlMs: number = LOGIN_CODE_TTL_MS,
  ) {}

  /** A fresh code (256 random bits, base64url). */
  issue(): string {
    this.prune();
    const code = randomBytes(32).toString('base64url');
    this.expiries.set(sha256(code).toString('hex'), this.now() + this.ttlMs);
    return code;
  }

  /** Whether `code` is one this issued, unused and unexpired; it is spent either way. */
  consume(code: string): boolean {
    if (typeof code !== 'string' || code.length === 0 || code.length > 200) return false;
    const key = sha256(code).toString('hex');
    const expiry = this.expiries.get(key);
    if (expiry === undefined) return false;
    this.expiries.delete(key);
    return expiry > this.now();
  }

  private prune(): void {
    const now = this.now();
    for (const [key, expiry] of this.expiries) if (expiry <= now) this.expiries.delete(key);
  }
}
