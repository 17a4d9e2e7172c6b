/**
 * The artifact store: step logs, diffs and traces too large for workflow state, named by
 * `artifact://<task_id>/<name>`. {@link ArtifactStorage} is what every store does; {@link ArtifactStore}
 * keeps them as files under one directory (the single-machine default), `S3ArtifactStore` (./s3.ts) in a bucket.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { ArtifactRef } from '../../domain/task';

/** Task ids and artifact names: one path segment, no leading dot (so never `.`, `..` or a temp file). */
const NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;
const SCHEME = 'artifact://';

/** Thrown when a task id, artifact name or reference is not one the store could have produced. */
export class InvalidArtifactNameError extends Error {
  override readonly name = 'InvalidArtifactNameError';
  constructor(readonly value: string) {
    super(`invalid artifact name or reference: ${JSON.stringify(value.slice(0, 300))}`);
  }
}

/** Thrown when an artifact that is asked for does not exist. */
export class ArtifactNotFoundError extends Error {
  override readonly name = 'ArtifactNotFoundError';
  constructor(
    readonly ref: string,
    options?: { cause?: unknown },
  ) {
    super(`artifact not found: ${ref}`, options);
  }
}

/** One artifact of a task, as listed. */
export interface ArtifactEntry extends ArtifactRef {
  name: string;
}

/** What a task's removal took away: its artifacts and their bytes. */
export interface RemovedArtifacts {
  files: number;
  bytes: number;
}

/**
 * An artifact store, on disk or in object storage; every method refuses a task id or name that is not
 * {@link isSafeName} with an {@link InvalidArtifactNameError} before touching anything. An artifact is written
 * either whole (`put`) or a piece at a time (`append`); readers see one byte string either way.
 */
export interface ArtifactStorage {
  /** Where the artifacts are, for logs and errors (a directory, or a bucket and prefix at an endpoint); never a credential. */
  readonly location: string;
  /** Write (or replace) an artifact in one step: a reader sees either the old content or the new, never half of it. */
  put(taskId: string, name: string, content: string | Buffer): Promise<ArtifactRef>;
  /** Append text to an artifact, creating it when absent (for logs written a piece at a time); `bytes` is its size after. */
  append(taskId: string, name: string, text: string): Promise<ArtifactRef>;
  /**
   * How many complete lines a line-oriented artifact holds (0 when absent); a torn last line, left by a crash
   * in the middle of an append, is cut off so the next append starts clean.
   */
  completeLines(taskId: string, name: string): Promise<number>;
  /** The content of the artifact a reference names; an {@link ArtifactNotFoundError} when there is none. */
  read(ref: string): Promise<Buffer>;
  /** The content of a task's artifact by name; an {@link ArtifactNotFoundError} when there is none. */
  readByName(taskId: string, name: string): Promise<Buffer>;
  /**
   * The bytes of an artifact from `offset` on, and its size; for reading an append-only artifact a piece at a
   * time. Empty (size 0) when the artifact does not exist.
   */
  readFrom(taskId: string, name: string, offset: number): Promise<{ data: Buffer; size: number }>;
  /** A task's artifacts sorted by name; empty when the task has none. */
  list(taskId: string): Promise<ArtifactEntry[]>;
  /** Every task id that has artifacts, in no particular order. */
  taskIds(): Promise<string[]>;
  /**
   * Removes all of a task's artifacts (null when it had none). `last` names one removed only after every other,
   * so that a removal cut short by a crash leaves it behind for a later pass to find and finish.
   */
  removeTask(taskId: string, opts?: { last?: string }): Promise<RemovedArtifacts | null>;
  /** Finishes removals that a crash interrupted in a way `removeTask` cannot find again; what it finished, for the log. */
  finishRemovals(): Promise<string[]>;
}

/** True when `value` is usable as a task id or artifact name without change. */
export function isSafeName(value: string): boolean {
  return NAME.test(value);
}

/** The reference string of an artifact. */
export function artifactRef(taskId: string, name: string): string {
  return `${SCHEME}${checkName(taskId)}/${checkName(name)}`;
}

/** Split a reference into task id and name, refusing anything the store did not produce. */
export function parseArtifactRef(ref: string): { taskId: string; name: string } {
  if (!ref.startsWith(SCHEME)) throw new InvalidArtifactNameError(ref);
  const parts = ref.slice(SCHEME.length).split('/');
  if (parts.length !== 2 || !isSafeName(parts[0]!) || !isSafeName(parts[1]!)) throw new InvalidArtifactNameError(ref);
  return { taskId: parts[0]!, name: parts[1]! };
}

/** `value` itself when it is a safe task id or artifact name; an {@link InvalidArtifactNameError} otherwise. */
export function checkName(value: string): string {
  if (!isSafeName(value)) throw new InvalidArtifactNameError(value);
  return value;
}

function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Prefix of a task directory being removed; it starts with a dot, so it is never a task id and never listed. */
const EXPIRED_PREFIX = '.expired-';

/** Artifacts as files: `<dir>/<task_id>/<name>`, written atomically so a reader never sees half a file. */
export class ArtifactStore implements ArtifactStorage {
  /** `dir` is the store's root, usually `<DATA_DIR>/artifacts`. */
  constructor(readonly dir: string) {}

  get location(): string {
    return this.dir;
  }

  async put(taskId: string, name: string, content: string | Buffer): Promise<ArtifactRef> {
    const file = this.file(taskId, name);
    await fs.mkdir(path.dirname(file), { recursive: true });
    // The temp name starts with a dot, so it is never a valid artifact name and never listed.
    const tmp = path.join(path.dirname(file), `.${name}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    try {
      const handle = await fs.open(tmp, 'wx');
      try {
        await handle.writeFile(data);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.rename(tmp, file);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    return { ref: artifactRef(taskId, name), bytes: data.length };
  }

  async append(taskId: string, name: string, text: string): Promise<ArtifactRef> {
    const file = this.file(taskId, name);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.appendFile(file, text, 'utf8');
    const { size } = await fs.stat(file);
    return { ref: artifactRef(taskId, name), bytes: size };
  }

  async completeLines(taskId: string, name: string): Promise<number> {
    const file = this.file(taskId, name);
    let content: Buffer;
    try {
      content = await fs.readFile(file);
    } catch (err) {
      if (isNotFound(err)) return 0;
      throw err;
    }
    const { end, lines } = completeLinesOf(content);
    if (end < content.length) await fs.truncate(file, end);
    return lines;
  }

  async read(ref: string): Promise<Buffer> {
    const { taskId, name } = parseArtifactRef(ref);
    return this.readByName(taskId, name);
  }

  async readByName(taskId: string, name: string): Promise<Buffer> {
    const file = this.file(taskId, name);
    try {
      return await fs.readFile(file);
    } catch (err) {
      if (isNotFound(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') {
        throw new ArtifactNotFoundError(artifactRef(taskId, name), { cause: err });
      }
      throw err;
    }
  }

  async readFrom(taskId: string, name: string, offset: number): Promise<{ data: Buffer; size: number }> {
    const file = this.file(taskId, name);
    let handle;
    try {
      handle = await fs.open(file, 'r');
    } catch (err) {
      if (isNotFound(err)) return { data: Buffer.alloc(0), size: 0 };
      throw err;
    }
    try {
      const { size } = await handle.stat();
      if (offset >= size) return { data: Buffer.alloc(0), size };
      const data = Buffer.alloc(size - offset);
      let read = 0;
      while (read < data.length) {
        const r = await handle.read(data, read, data.length - read, offset + read);
        if (r.bytesRead === 0) break;
        read += r.bytesRead;
      }
      return { data: data.subarray(0, read), size };
    } finally {
      await handle.close();
    }
  }

  async list(taskId: string): Promise<ArtifactEntry[]> {
    const dir = path.join(this.dir, checkName(taskId));
    let entries;
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
    const out: ArtifactEntry[] = [];
    for (const entry of entries) {
      if (!entry.isFile() || !isSafeName(entry.name)) continue;
      try {
        const { size } = await fs.stat(path.join(dir, entry.name));
        out.push({ name: entry.name, ref: artifactRef(taskId, entry.name), bytes: size });
      } catch (err) {
        // Removed between readdir and stat: it is simply not there any more.
        if (!isNotFound(err)) throw err;
      }
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async taskIds(): Promise<string[]> {
    try {
      // Names starting with a dot are temporary or being removed, never task ids.
      return (await fs.readdir(this.dir, { withFileTypes: true })).filter((e) => e.isDirectory() && isSafeName(e.name)).map((e) => e.name);
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
  }

  /** The task's directory is renamed away first, so a crash mid-removal leaves no half task behind, only a dot-named directory. */
  async removeTask(taskId: string): Promise<RemovedArtifacts | null> {
    const dir = path.join(this.dir, checkName(taskId));
    const removed = await sizeOf(dir);
    const doomed = path.join(this.dir, `${EXPIRED_PREFIX}${taskId}-${randomBytes(4).toString('hex')}`);
    try {
      await fs.rename(dir, doomed);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    await fs.rm(doomed, { recursive: true, force: true });
    return removed;
  }

  async finishRemovals(): Promise<string[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
    const doomed = names.filter((n) => n.startsWith(EXPIRED_PREFIX));
    for (const name of doomed) await fs.rm(path.join(this.dir, name), { recursive: true, force: true });
    return doomed;
  }

  private file(taskId: string, name: string): string {
    return path.join(this.dir, checkName(taskId), checkName(name));
  }
}

/** Regular files and their bytes directly in a task's artifact directory (artifacts are never nested). */
async function sizeOf(dir: string): Promise<RemovedArtifacts> {
  let files = 0;
  let bytes = 0;
  for (const entry of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (!entry.isFile()) continue;
    const st = await fs.stat(path.join(dir, entry.name)).catch(() => null);
    if (st === null) continue;
    files += 1;
    bytes += st.size;
  }
  return { files, bytes };
}

/** Where the complete lines of `content` end (after its last newline), and how many there are. */
export function completeLinesOf(content: Buffer): { end: number; lines: number } {
  const end = content.lastIndexOf(0x0a) + 1;
  let lines = 0;
  for (let i = 0; i < end; i++) if (content[i] === 0x0a) lines++;
  return { end, lines };
}
