/**
 * The worker's file access to a working copy that a hostile sandbox may be changing at the same time.
 *
 * A path is never handed to the kernel whole. It is walked one component at a time from an open
 * directory descriptor (`/proc/self/fd/<dir>/<name>`, Linux's openat), each component opened with
 * O_NOFOLLOW: a directory the sandbox swaps for a link after we looked cannot redirect the next step,
 * because the next step starts from the descriptor we hold, not from the path. Links are followed only
 * by reading them and walking their target the same way, and only while it stays inside the tree.
 * Only regular files with one link are read or written; FIFOs, devices and sockets are refused
 * before they are opened for I/O (they are first opened with O_PATH, which does no I/O).
 */
import { constants, promises as fs } from 'node:fs';
import { SandboxPathError } from './common';

type FileHandle = fs.FileHandle;

/** Linux's O_PATH (the same value on x86-64 and arm64); Node does not export it. */
const O_PATH = 0o10000000;
const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY, O_TRUNC } = constants;
/** Links followed in one walk before it counts as a loop (the kernel's own limit). */
const MAX_LINKS = 40;
/** The largest file the worker reads or writes in a working copy for a tool. */
export const WORKING_COPY_FILE_MAX_BYTES = 16 * 1024 * 1024;

/** Thrown when a file is not something the worker reads or writes: not a regular file, hard-linked, or too large. */
export class UnsafeFileError extends Error {
  override readonly name = 'UnsafeFileError';
  constructor(
    readonly requested: string,
    readonly reason: 'not_regular' | 'hard_linked' | 'too_large',
    /** What is wrong with it, as the end of a sentence about the file ("is not a regular file"). */
    readonly detail: string,
  ) {
    super(`${JSON.stringify(requested.slice(0, 500))} ${detail}`);
  }
}

/** Who new files and directories belong to (the sandbox's user), when the worker creates them. */
export interface Owner {
  uid: number;
  gid: number;
}

/** What a walk found: the open final object, and its path inside the tree after links. */
interface Walked {
  handle: FileHandle;
  path: string;
}

function at(dir: FileHandle, name: string): string {
  return `/proc/self/fd/${dir.fd}/${name}`;
}

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

function enoent(requested: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOENT: no such file or directory, ${JSON.stringify(requested.slice(0, 500))}`), { code: 'ENOENT' });
}

function components(requested: string): string[] {
  if (requested === '' || requested.startsWith('/') || requested.includes('\0')) throw new SandboxPathError(requested);
  return requested.split('/');
}

/**
 * Walk `requested` (relative) inside the tree at `root`. Every directory on the way is held open, so
 * `..` and link targets resolve against what was walked, never against a path the sandbox can change.
 * `final` opens the last component from its parent directory; it returns null to ask for the link
 * named there to be followed.
 */
async function walk(
  root: string,
  requested: string,
  opts: { create?: Owner; final: (dir: FileHandle, name: string) => Promise<FileHandle | null> },
): Promise<Walked> {
  const queue = components(requested);
  const top = await fs.open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  const stack: FileHandle[] = [top];
  const names: string[] = [];
  let links = 0;
  const follow = async (dir: FileHandle, name: string): Promise<void> => {
    if (++links > MAX_LINKS) throw new SandboxPathError(requested);
    const target = await fs.readlink(at(dir, name));
    // An absolute target names a path of the sandbox's world, never one of the host's.
    if (target.startsWith('/') || target === '') throw new SandboxPathError(requested);
    queue.unshift(...target.split('/'));
  };
  try {
    while (queue.length > 0) {
      const name = queue.shift()!;
      if (name === '' || name === '.') continue;
      const dir = stack[stack.length - 1]!;
      if (name === '..') {
        if (stack.length === 1) throw new SandboxPathError(requested);
        await stack.pop()!.close();
        names.pop();
        continue;
      }
      if (queue.every((n) => n === '' || n === '.')) {
        const handle = await opts.final(dir, name);
        if (handle === null) {
          await follow(dir, name);
          continue;
        }
        return { handle, path: [...names, name].join('/') };
      }
      let next: FileHandle;
      try {
        next = await fs.open(at(dir, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      } catch (err) {
        // A link opened with O_NOFOLLOW|O_DIRECTORY fails with ELOOP or ENOTDIR; walk its target instead.
        if ((code(err) === 'ELOOP' || code(err) === 'ENOTDIR') && (await fs.lstat(at(dir, name))).isSymbolicLink()) {
          await follow(dir, name);
          continue;
        }
        if (code(err) === 'ENOENT' && opts.create) {
          await fs.mkdir(at(dir, name), 0o755).catch((e: unknown) => {
            if (code(e) !== 'EEXIST') throw e;
          });
          // Opened again with O_NOFOLLOW: whatever stands there now is what the next round sees.
          queue.unshift(name);
          const made = await fs.open(at(dir, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW).catch(() => null);
          if (made) {
            await made.chown(opts.create.uid, opts.create.gid).catch(() => undefined);
            await made.close();
          }
          continue;
        }
        if (code(err) === 'ENOENT') throw enoent(requested);
        throw err;
      }
      stack.push(next);
      names.push(name);
    }
    // The path named a directory (`.`, `d/..`): the final object is the directory walked last.
    const handle = await opts.final(stack[stack.length - 1]!, '.');
    if (handle === null) throw new SandboxPathError(requested);
    return { handle, path: names.join('/') || '.' };
  } finally {
    for (const h of stack) await h.close().catch(() => undefined);
  }
}

/**
 * Open the object `name` of `dir` without following a link and without doing I/O on it (O_PATH), and
 * return it when it is a regular file with one link; null when it is a link (to be followed).
 */
async function openRegular(dir: FileHandle, name: string, requested: string, flags: number): Promise<FileHandle | null> {
  const probe = await fs.open(at(dir, name), O_PATH | O_NOFOLLOW);
  try {
    const st = await probe.stat();
    if (st.isSymbolicLink()) return null;
    if (st.isDirectory()) throw Object.assign(new Error(`EISDIR: is a directory, ${JSON.stringify(requested.slice(0, 500))}`), { code: 'EISDIR' });
    if (!st.isFile()) throw new UnsafeFileError(requested, 'not_regular', 'is not a regular file (a FIFO, socket or device)');
    if (st.nlink > 1) throw new UnsafeFileError(requested, 'hard_linked', 'has other hard links; the worker reads and writes only files with one');
    // Re-opened through the descriptor: the same inode, whatever the name points at by now.
    return await fs.open(`/proc/self/fd/${probe.fd}`, flags);
  } finally {
    await probe.close();
  }
}

/**
 * Read a regular file of the tree at `root` (path relative to it) without following anything the
 * sandbox can redirect; refuses links leading out, non-regular and hard-linked files, and files over `maxBytes`.
 */
export async function readInside(root: string, requested: string, maxBytes = WORKING_COPY_FILE_MAX_BYTES): Promise<{ data: Buffer; path: string }> {
  const found = await walk(root, requested, {
    final: async (dir, name) => {
      try {
        return await openRegular(dir, name, requested, O_RDONLY);
      } catch (err) {
        if (code(err) === 'ENOENT') throw enoent(requested);
        throw err;
      }
    },
  });
  try {
    const st = await found.handle.stat();
    if (st.size > maxBytes) throw new UnsafeFileError(requested, 'too_large', `is ${st.size} bytes; the limit is ${maxBytes}`);
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await found.handle.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return { data: buf.subarray(0, got), path: found.path };
  } finally {
    await found.handle.close();
  }
}

/**
 * Write (create or replace the contents of) a regular file of the tree at `root`, creating missing
 * directories, without following anything the sandbox can redirect. Files and directories it creates
 * are given to `owner`. Returns the path written, inside the tree after links.
 */
export async function writeInside(root: string, requested: string, content: string | Buffer, owner?: Owner): Promise<string> {
  const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  if (data.length > WORKING_COPY_FILE_MAX_BYTES) throw new UnsafeFileError(requested, 'too_large', `would be ${data.length} bytes; the limit is ${WORKING_COPY_FILE_MAX_BYTES}`);
  let created = false;
  const found = await walk(root, requested, {
    create: owner ?? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 },
    final: async (dir, name) => {
      try {
        const fresh = await fs.open(at(dir, name), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
        created = true;
        return fresh;
      } catch (err) {
        if (code(err) !== 'EEXIST') throw err;
      }
      return openRegular(dir, name, requested, O_WRONLY | O_TRUNC);
    },
  });
  try {
    let done = 0;
    while (done < data.length) done += (await found.handle.write(data, done, data.length - done, done)).bytesWritten;
    if (created && owner) await found.handle.chown(owner.uid, owner.gid);
    return found.path;
  } finally {
    await found.handle.close();
  }
}

/**
 * The path `requested` names inside the tree at `root` after following its links, without opening
 * the final object for I/O; refuses links leading out. A missing final object is allowed.
 */
export async function resolvedInside(root: string, requested: string): Promise<string> {
  const found = await walk(root, requested, {
    final: async (dir, name) => {
      let probe: FileHandle;
      try {
        probe = await fs.open(at(dir, name), O_PATH | O_NOFOLLOW);
      } catch (err) {
        if (code(err) === 'ENOENT') return fs.open(at(dir, '.'), O_PATH);
        throw err;
      }
      const st = await probe.stat();
      if (st.isSymbolicLink()) {
        await probe.close();
        return null;
      }
      return probe;
    },
  });
  await found.handle.close();
  return found.path;
}
