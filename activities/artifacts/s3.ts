/**
 * Artifacts in S3-compatible object storage, so every worker and API process reads what any worker wrote.
 *
 * Keys, under the configured prefix `P` (empty, or ending in `/`):
 *   `P<task_id>/<name>`              an artifact written whole (`put`): one object, so a put is atomic
 *   `P<task_id>/<name>~/<seq>`       the pieces of an appended one, `<seq>` zero-padded so listing order is append order
 * Task ids and names are checked with `isSafeName` (one path segment of `[A-Za-z0-9._-]`, no leading dot), and `~`
 * is outside that alphabet: no name can reach another task's keys, another artifact's pieces, or leave the prefix.
 * An artifact's bytes are its whole object (if any) followed by its pieces in order.
 */
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import type { ArtifactRef } from '../../domain/task';
import { ArtifactNotFoundError, artifactRef, checkName, completeLinesOf, isSafeName, parseArtifactRef, type ArtifactEntry, type ArtifactStorage, type RemovedArtifacts } from './store';

/** Where the store is and how to reach it; `credentials` absent means the SDK's default chain (environment, profile, instance role). */
export interface S3StoreSettings {
  bucket: string;
  /** Key prefix of every artifact: empty, or `/`-separated safe segments ending in `/` (see {@link isSafePrefix}). */
  prefix: string;
  region: string;
  /** An S3-compatible server's URL (no credentials in it); absent: AWS's own endpoint for the region. */
  endpoint?: string;
  /** Address buckets as `<endpoint>/<bucket>` rather than `<bucket>.<endpoint>` (most S3-compatible servers want this). */
  forcePathStyle: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

/** Thrown when the object store fails or refuses a request; the message names the operation, key and endpoint, never a credential. */
export class ArtifactStoreUnavailableError extends Error {
  override readonly name = 'ArtifactStoreUnavailableError';
}

/** Digits of a piece's sequence number: enough for any log, and fixed so that names sort as numbers. */
const SEQ_DIGITS = 10;
/** Marks the pieces of an appended artifact; outside the name alphabet, so never part of a name. */
const PIECES = '~/';
/** At most this many keys per DeleteObjects request (S3's limit). */
const DELETE_BATCH = 1000;
/** Appends that lost a race for the next sequence number retry this often before giving up. */
const APPEND_ATTEMPTS = 5;
/** Pieces of one artifact read at once. */
const PARALLEL_GETS = 8;
/** A request that has not connected or answered by then fails (and is retried by the SDK). */
const CONNECT_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 120_000;
const PIECE = new RegExp(`^([A-Za-z0-9_-][A-Za-z0-9._-]{0,199})~/([0-9]{${SEQ_DIGITS}})$`);
const PREFIX_SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;

/** True for a usable key prefix: empty, or safe segments each followed by `/` (no `.`/`..`, no empty segment, nothing to escape with). */
export function isSafePrefix(prefix: string): boolean {
  if (prefix === '') return true;
  if (!prefix.endsWith('/') || prefix.length > 512) return false;
  return prefix.slice(0, -1).split('/').every((s) => PREFIX_SEGMENT.test(s));
}

/** One object of an artifact: its whole object or one of its pieces. */
interface Segment {
  key: string;
  size: number;
}

/** Artifacts as objects in one bucket under one prefix. */
export class S3ArtifactStore implements ArtifactStorage {
  readonly location: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;

  constructor(settings: S3StoreSettings) {
    if (!isSafePrefix(settings.prefix)) throw new Error(`invalid S3 key prefix ${JSON.stringify(settings.prefix)}`);
    this.bucket = settings.bucket;
    this.prefix = settings.prefix;
    this.location = `s3://${settings.bucket}/${settings.prefix} at ${settings.endpoint ?? `the AWS endpoint of ${settings.region}`}`;
    this.client = new S3Client({
      region: settings.region,
      forcePathStyle: settings.forcePathStyle,
      ...(settings.endpoint !== undefined ? { endpoint: settings.endpoint } : {}),
      ...(settings.credentials !== undefined ? { credentials: settings.credentials } : {}),
      // Checksums only where S3 requires them: S3-compatible servers differ in which of the newer ones they take.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS },
    });
  }

  /** Fails with an {@link ArtifactStoreUnavailableError} naming the bucket and endpoint unless the bucket answers with these credentials. */
  async check(): Promise<void> {
    try {
      await this.send('HeadBucket', '', () => this.client.send(new HeadBucketCommand({ Bucket: this.bucket })));
    } catch (err) {
      throw new ArtifactStoreUnavailableError(`the artifact store's bucket cannot be used (check S3_BUCKET, S3_ENDPOINT, S3_REGION and the credentials): ${(err as Error).message}`);
    }
  }

  /** Closes the client's connections. */
  close(): void {
    this.client.destroy();
  }

  async put(taskId: string, name: string, content: string | Buffer): Promise<ArtifactRef> {
    const key = this.key(taskId, name);
    const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    const [, pieces] = await Promise.all([this.putObject(key, data), this.pieces(taskId, name)]);
    // Replacing an appended artifact: its pieces would otherwise still follow the new content.
    await this.remove(pieces.map((p) => p.key));
    return { ref: artifactRef(taskId, name), bytes: data.length };
  }

  async append(taskId: string, name: string, text: string): Promise<ArtifactRef> {
    const data = Buffer.from(text, 'utf8');
    for (let attempt = 1; ; attempt++) {
      const segments = await this.segments(taskId, name);
      const last = segments.at(-1);
      const seq = last === undefined || !last.key.includes(PIECES) ? 0 : Number(last.key.slice(-SEQ_DIGITS)) + 1;
      const key = this.pieceKey(taskId, name, seq);
      // If-None-Match: a second writer that picked the same number loses instead of overwriting the other's piece.
      const written = await this.putObject(key, data, { ifAbsent: true });
      if (written) return { ref: artifactRef(taskId, name), bytes: total(segments) + data.length };
      if (attempt >= APPEND_ATTEMPTS) throw new ArtifactStoreUnavailableError(`append to ${artifactRef(taskId, name)} kept losing races for ${key} in ${this.location}`);
    }
  }

  async completeLines(taskId: string, name: string): Promise<number> {
    const segments = await this.segments(taskId, name);
    const parts = await this.fetch(segments, 0);
    const content = Buffer.concat(parts);
    const { end, lines } = completeLinesOf(content);
    if (end < content.length) await this.cut(segments, parts, end);
    return lines;
  }

  async read(ref: string): Promise<Buffer> {
    const { taskId, name } = parseArtifactRef(ref);
    return this.readByName(taskId, name);
  }

  async readByName(taskId: string, name: string): Promise<Buffer> {
    // The whole object and the list of pieces at once: most artifacts are one object, read in one round trip.
    const [whole, pieces] = await Promise.all([this.get(this.key(taskId, name)), this.pieces(taskId, name)]);
    if (whole === null && pieces.length === 0) throw new ArtifactNotFoundError(artifactRef(taskId, name));
    return Buffer.concat([whole ?? Buffer.alloc(0), ...(await this.fetch(pieces, 0))]);
  }

  async readFrom(taskId: string, name: string, offset: number): Promise<{ data: Buffer; size: number }> {
    const segments = await this.segments(taskId, name);
    const size = total(segments);
    if (offset >= size) return { data: Buffer.alloc(0), size };
    return { data: Buffer.concat(await this.fetch(segments, offset)), size };
  }

  async list(taskId: string): Promise<ArtifactEntry[]> {
    const sizes = new Map<string, number>();
    for (const o of await this.listKeys(`${this.prefix}${checkName(taskId)}/`)) {
      const name = artifactOf(o.rest);
      if (name !== null) sizes.set(name, (sizes.get(name) ?? 0) + o.size);
    }
    return [...sizes.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, bytes]) => ({ name, ref: artifactRef(taskId, name), bytes }));
  }

  async taskIds(): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const res = await this.send('ListObjectsV2', this.prefix, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix, Delimiter: '/', ContinuationToken: token })),
      );
      for (const p of res.CommonPrefixes ?? []) {
        const id = (p.Prefix ?? '').slice(this.prefix.length, -1);
        if (isSafeName(id)) out.push(id);
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token !== undefined);
    return out;
  }

  async removeTask(taskId: string, opts: { last?: string } = {}): Promise<RemovedArtifacts | null> {
    const keys = await this.listKeys(`${this.prefix}${checkName(taskId)}/`);
    if (keys.length === 0) return null;
    const last = opts.last === undefined ? null : checkName(opts.last);
    const names = new Set<string>();
    let bytes = 0;
    const first: string[] = [];
    const final: string[] = [];
    for (const o of keys) {
      const name = artifactOf(o.rest);
      if (name !== null) {
        names.add(name);
        bytes += o.size;
      }
      (name !== null && name === last ? final : first).push(o.key);
    }
    await this.remove(first);
    await this.remove(final);
    return { files: names.size, bytes };
  }

  /** Nothing to finish: `removeTask` removes the `last` artifact (the record) at the end, so the next pass finds what a crash left. */
  async finishRemovals(): Promise<string[]> {
    return [];
  }

  private key(taskId: string, name: string): string {
    return `${this.prefix}${checkName(taskId)}/${checkName(name)}`;
  }

  private pieceKey(taskId: string, name: string, seq: number): string {
    return `${this.key(taskId, name)}${PIECES}${String(seq).padStart(SEQ_DIGITS, '0')}`;
  }

  /** The artifact's objects in reading order: its whole object, then its pieces; empty when it does not exist. */
  private async segments(taskId: string, name: string): Promise<Segment[]> {
    const key = this.key(taskId, name);
    const [whole, pieces] = await Promise.all([this.head(key), this.pieces(taskId, name)]);
    return whole === null ? pieces : [{ key, size: whole }, ...pieces];
  }

  private async pieces(taskId: string, name: string): Promise<Segment[]> {
    const within = `${this.key(taskId, name)}${PIECES}`;
    return (await this.listKeys(within)).filter((o) => /^[0-9]+$/.test(o.rest) && o.rest.length === SEQ_DIGITS).map((o) => ({ key: o.key, size: o.size }));
  }

  /** Every key under `within`, in key order, with what follows `within` and its size. */
  private async listKeys(within: string): Promise<{ key: string; rest: string; size: number }[]> {
    const out: { key: string; rest: string; size: number }[] = [];
    let token: string | undefined;
    do {
      const res = await this.send('ListObjectsV2', within, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: within, ContinuationToken: token })),
      );
      for (const o of res.Contents ?? []) {
        if (o.Key === undefined || !o.Key.startsWith(within)) continue;
        out.push({ key: o.Key, rest: o.Key.slice(within.length), size: o.Size ?? 0 });
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token !== undefined);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** The object's size, or null when there is none. */
  private async head(key: string): Promise<number | null> {
    const res = await this.send('HeadObject', key, () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })), { missing: null });
    return res === null ? null : (res.ContentLength ?? 0);
  }

  /** The bytes of `segments` from `offset` on, one buffer per segment (empty for those before `offset`, or removed meanwhile). */
  private async fetch(segments: Segment[], offset: number): Promise<Buffer[]> {
    const out: Buffer[] = segments.map(() => Buffer.alloc(0));
    const wanted: { i: number; from: number }[] = [];
    let start = 0;
    segments.forEach((s, i) => {
      const from = Math.max(0, offset - start);
      start += s.size;
      if (from < s.size) wanted.push({ i, from });
    });
    // A few requests at a time: a log of many pieces reads in a fraction of the round trips, without a flood.
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < wanted.length) {
        const { i, from } = wanted[next++]!;
        out[i] = (await this.get(segments[i]!.key, from)) ?? Buffer.alloc(0);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_GETS, wanted.length) }, worker));
    return out;
  }

  /** The object's bytes from `from` on, or null when there is no such object. */
  private async get(key: string, from = 0): Promise<Buffer | null> {
    const res = await this.send(
      'GetObject',
      key,
      () => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(from > 0 ? { Range: `bytes=${from}-` } : {}) })),
      { missing: null },
    );
    if (res === null) return null;
    return res.Body ? Buffer.from(await res.Body.transformToByteArray()) : Buffer.alloc(0);
  }

  /** Cuts the artifact to its first `end` bytes: the segment holding byte `end` is rewritten shorter, every later one removed. */
  private async cut(segments: Segment[], parts: Buffer[], end: number): Promise<void> {
    let start = 0;
    for (let i = 0; i < segments.length; i++) {
      const part = parts[i]!;
      if (start + part.length > end) {
        await this.putObject(segments[i]!.key, part.subarray(0, end - start));
        await this.remove(segments.slice(i + 1).map((s) => s.key));
        return;
      }
      start += part.length;
    }
  }

  /** Writes one object; with `ifAbsent`, only when the key is free (false when another writer had it). */
  private async putObject(key: string, data: Buffer, opts: { ifAbsent?: boolean } = {}): Promise<boolean> {
    const done = await this.send(
      'PutObject',
      key,
      () => this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: data, ...(opts.ifAbsent ? { IfNoneMatch: '*' } : {}) })),
      { taken: null },
    );
    return done !== null;
  }

  private async remove(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      const res = await this.send('DeleteObjects', batch[0]!, () =>
        this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } })),
      );
      const failed = (res.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length > 0) {
        throw new ArtifactStoreUnavailableError(`S3 DeleteObjects in ${this.location} failed for ${failed.length} key(s), e.g. ${failed[0]!.Key}: ${failed[0]!.Code}`);
      }
    }
  }

  /**
   * Runs one request. A missing object (404) resolves to `opts.missing` when given, a taken key (412) to
   * `opts.taken`; any other failure becomes an {@link ArtifactStoreUnavailableError} with the service's error
   * code and status only: the SDK's own error can carry request details, so it is not kept as the cause.
   */
  private async send<T, M = never>(op: string, key: string, run: () => Promise<T>, opts: { missing?: M; taken?: M } = {}): Promise<T | M> {
    try {
      return await run();
    } catch (err) {
      const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
      if ('missing' in opts && status === 404) return opts.missing as M;
      if ('taken' in opts && status === 412) return opts.taken as M;
      const what = err instanceof S3ServiceException ? `${err.name}${status !== undefined ? ` (HTTP ${status})` : ''}` : networkError(err);
      throw new ArtifactStoreUnavailableError(`S3 ${op}${key === '' ? '' : ` of ${JSON.stringify(key)}`} in ${this.location} failed: ${what}`);
    }
  }
}

/** The artifact name a key below a task's prefix belongs to, or null for a key the store could not have written. */
function artifactOf(rest: string): string | null {
  if (isSafeName(rest)) return rest;
  const m = PIECE.exec(rest);
  return m === null ? null : m[1]!;
}

function total(segments: Segment[]): number {
  return segments.reduce((n, s) => n + s.size, 0);
}

/** A transport failure's name and system error code (ECONNREFUSED, …): what it was, without the request it was about. */
function networkError(err: unknown): string {
  if (!(err instanceof Error)) return 'error';
  const code = (err as NodeJS.ErrnoException).code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,40}$/.test(code) ? `${err.name} ${code}` : err.name;
}
