/**
 * API tokens the operator creates for programs: kept hashed in `DATA_DIR/api-tokens.json` (mode 0600, replaced
 * atomically), shown once as `ait_<id>_<secret>`, checked by id and a constant-time hash compare, and re-read
 * when the file changes so a revocation holds without a restart.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Request } from 'express';
import { z } from 'zod';
import { Role, TeamName, type Identity } from '../../domain/access';
import { UnauthenticatedError, type Authenticated, type CredentialSource } from './context';
import { withFileLockSync } from '../../workers/file-lock';
import { sameBytes, sha256 } from './digest';
import { fileStamp, replacePrivateFile } from './private-file';

/** The store's file name under DATA_DIR. */
export const API_TOKENS_FILE = 'api-tokens.json';

/** How an API token looks: `ait_`, 16 hex of id, `_`, 43 base64url characters of secret (256 bits). */
const TOKEN_FORMAT = /^ait_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

/** A token as the store keeps it: everything but the secret, which only its SHA-256 stands for. */
export const ApiTokenRecord = z.strictObject({
  id: z.string().regex(/^[0-9a-f]{16}$/),
  name: z.string().min(1).max(100),
  role: Role,
  teams: z.array(TeamName).max(100),
  created_at: z.string(),
  revoked_at: z.string().optional(),
  /** Hex SHA-256 of the whole token. */
  hash: z.string().regex(/^[0-9a-f]{64}$/),
});
export type ApiTokenRecord = z.infer<typeof ApiTokenRecord>;

const StoreFile = z.strictObject({ tokens: z.array(ApiTokenRecord) });

/** Thrown when the token file cannot be trusted or read: not valid, or writable by others. */
export class TokenStoreError extends Error {
  override readonly name = 'TokenStoreError';
}

/** Thrown by {@link ApiTokenStore.revoke} for an id the store does not have. */
export class UnknownTokenError extends Error {
  override readonly name = 'UnknownTokenError';
}

/** How long a change waits for another process changing the store before breaking its lock. */
const STORE_LOCK_WAIT_MS = 10_000;

/** Bits of a mode that let anyone but the owner write. */
const WRITABLE_BY_OTHERS = 0o022;

/** The hashed API tokens in one data directory; every method re-reads the file when it changed on disk. */
export class ApiTokenStore {
  readonly file: string;
  private byId = new Map<string, ApiTokenRecord>();
  /** What the file was when last read (inode, size, mtime), or null when it did not exist. */
  private seen: string | null = null;

  constructor(dataDir: string) {
    this.file = path.join(dataDir, API_TOKENS_FILE);
  }

  /** Creates a token; the returned `token` is the only time its secret exists outside the caller. */
  create(opts: { name: string; role: Role; teams: string[] }, now: Date = new Date()): { token: string; record: ApiTokenRecord } {
    return this.changing(() => this.add(opts, now));
  }

  private add(opts: { name: string; role: Role; teams: string[] }, now: Date): { token: string; record: ApiTokenRecord } {
    let id = randomBytes(8).toString('hex');
    while (this.byId.has(id)) id = randomBytes(8).toString('hex');
    const token = `ait_${id}_${randomBytes(32).toString('base64url')}`;
    const record = ApiTokenRecord.parse({
      id,
      name: opts.name,
      role: opts.role,
      teams: [...new Set(opts.teams)],
      created_at: now.toISOString(),
      hash: sha256(token).toString('hex'),
    });
    this.write([...this.byId.values(), record]);
    return { token, record };
  }

  /** Every token, revoked ones included, oldest first. */
  list(): ApiTokenRecord[] {
    this.refresh();
    return [...this.byId.values()].sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0));
  }

  /** Marks the token revoked (idempotent); throws {@link UnknownTokenError} for an unknown id. */
  revoke(id: string, now: Date = new Date()): ApiTokenRecord {
    return this.changing(() => this.markRevoked(id, now));
  }

  private markRevoked(id: string, now: Date): ApiTokenRecord {
    const record = this.byId.get(id);
    if (!record) throw new UnknownTokenError(`no API token ${JSON.stringify(id)}`);
    if (record.revoked_at !== undefined) return record;
    const revoked = { ...record, revoked_at: now.toISOString() };
    this.write([...this.byId.values()].map((r) => (r.id === id ? revoked : r)));
    return revoked;
  }

  /** The record a presented token belongs to, or null when it is malformed, unknown, wrong or revoked. */
  verify(token: string): ApiTokenRecord | null {
    const m = TOKEN_FORMAT.exec(token);
    if (!m) return null;
    this.refresh();
    const record = this.byId.get(m[1]!);
    if (!record) return null;
    // Constant-time over the hashes: how much of a guess matched never shows in the timing.
    const ok = sameBytes(sha256(token), Buffer.from(record.hash, 'hex'));
    return ok && record.revoked_at === undefined ? record : null;
  }

  /**
   * Runs a read-modify-write of the store holding its lock, on the file as it is now: two CLI commands at
   * once (or a CLI and another host's) cannot lose each other's change.
   */
  private changing<T>(change: () => T): T {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    return withFileLockSync(`${this.file}.lock`, { waitLimitMs: STORE_LOCK_WAIT_MS }, () => {
      this.seen = null;
      this.refresh();
      return change();
    });
  }

  /** Re-reads the file when its inode, size or mtime moved (a stat: microseconds per request). */
  private refresh(): void {
    const now = fileStamp(this.file);
    if (now === null) {
      this.byId = new Map();
      this.seen = null;
      return;
    }
    const { stamp, mode } = now;
    if (stamp === this.seen) return;
    if ((mode & WRITABLE_BY_OTHERS) !== 0) {
      throw new TokenStoreError(`${this.file} is writable by others (mode ${(mode & 0o777).toString(8)}): anyone could add a token; chmod 600 it`);
    }
    let parsed: z.infer<typeof StoreFile>;
    try {
      parsed = StoreFile.parse(JSON.parse(fs.readFileSync(this.file, 'utf8')));
    } catch (err) {
      throw new TokenStoreError(`${this.file} is not a valid token store: ${(err as Error).message}`);
    }
    this.byId = new Map(parsed.tokens.map((r) => [r.id, r]));
    this.seen = stamp;
  }

  /** Writes the whole store to a private temporary file and renames it over the old one. */
  private write(tokens: ApiTokenRecord[]): void {
    replacePrivateFile(this.file, `${JSON.stringify({ tokens }, null, 2)}\n`);
    this.seen = null;
    this.refresh();
  }
}

/** The bearer token of a request, or null when it sends no `Authorization: Bearer …`. */
export function bearerToken(req: Request): string | null {
  const header = req.headers.authorization;
  if (typeof header !== 'string') return null;
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return m ? m[1]! : null;
}

/** The identity an API token acts as. */
export function tokenIdentity(record: ApiTokenRecord): Identity {
  return { subject: `token:${record.id}`, name: record.name, role: record.role, teams: [...record.teams], via: { kind: 'api_token', id: record.id } };
}

/** A credential source for `Authorization: Bearer ait_…`; any other bearer token is left to the other sources. */
export function apiTokenSource(store: ApiTokenStore): CredentialSource {
  return {
    name: 'api_token',
    async authenticate(req): Promise<Authenticated | null> {
      const token = bearerToken(req);
      if (token === null || !token.startsWith('ait_')) return null;
      const record = store.verify(token);
      if (record === null) throw new UnauthenticatedError('the API token is unknown, malformed or revoked');
      return { identity: tokenIdentity(record), carrier: 'bearer' };
    },
  };
}
