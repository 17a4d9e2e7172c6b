/**
 * Exclusive locks across processes that share a directory: the lock is a hard link to a file holding the
 * holder's pid, so it appears atomically with its owner inside. A lock whose owner has died, or that has
 * been waited on past the limit, is broken rather than waited on forever.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** How a lock is waited for. */
export interface LockOptions {
  /** How long to wait for a live holder before breaking its lock. */
  waitLimitMs: number;
  /** How often to look again while waiting. */
  pollMs?: number;
  /** Called once when the lock is held by a live process and we start waiting. */
  onWait?(owner: number): void;
  /** Called when a lock is broken (its owner dead, or held past `waitLimitMs`). */
  onBreak?(owner: number): void;
}

const DEFAULT_POLL_MS = 50;

/** Waits for the lock at `lockPath` and holds it; resolves to the function that releases it. */
export async function acquireFileLock(lockPath: string, opts: LockOptions): Promise<() => Promise<void>> {
  const attempt = lockAttempt(lockPath, opts);
  try {
    for (;;) {
      const wait = attempt.next();
      if (wait === 0) return async () => fs.promises.rm(lockPath, { force: true });
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  } finally {
    attempt.done();
  }
}

/** Runs `fn` holding the lock at `lockPath`, blocking the thread while it waits (for short, synchronous critical sections). */
export function withFileLockSync<T>(lockPath: string, opts: LockOptions, fn: () => T): T {
  const attempt = lockAttempt(lockPath, opts);
  try {
    for (;;) {
      const wait = attempt.next();
      if (wait === 0) break;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, wait);
    }
  } finally {
    attempt.done();
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lockPath, { force: true });
  }
}

/** One process's try at a lock: `next()` takes it (0) or says how long to wait; `done()` removes the pid file. */
function lockAttempt(lockPath: string, opts: LockOptions): { next(): number; done(): void } {
  fs.mkdirSync(path.dirname(lockPath), { recursive: true });
  const mine = `${lockPath}.${process.pid}.${randomBytes(4).toString('hex')}`;
  fs.writeFileSync(mine, String(process.pid), { mode: 0o600 });
  const deadline = Date.now() + opts.waitLimitMs;
  let waiting = false;
  return {
    next(): number {
      for (;;) {
        try {
          fs.linkSync(mine, lockPath);
          return 0;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
        const owner = ownerOf(lockPath);
        // Released between our link and our read: try again at once.
        if (owner === 'gone') continue;
        if (owner !== null && isAlive(owner) && Date.now() <= deadline) {
          if (!waiting) opts.onWait?.(owner);
          waiting = true;
          return opts.pollMs ?? DEFAULT_POLL_MS;
        }
        opts.onBreak?.(owner ?? 0);
        fs.rmSync(lockPath, { force: true });
      }
    },
    done(): void {
      fs.rmSync(mine, { force: true });
    },
  };
}

/** The pid in a lock file, `'gone'` when there is no lock, or null when it holds no pid. */
function ownerOf(lockPath: string): number | 'gone' | null {
  let text: string;
  try {
    text = fs.readFileSync(lockPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw err;
  }
  const pid = Number(text);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
