/**
 * Retention of ended tasks' artifacts: a task whose final record says it ended more than the retention
 * ago loses all its artifacts (logs, diffs, trace, the record itself). Tasks without a record are open, or
 * ended before records existed, and are left alone.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../workers/log';
import type { TaskRecordStore } from './task-record';

/** Milliseconds in a day. */
const DAY_MS = 24 * 60 * 60 * 1000;
/** Prefix of a task directory being removed; it starts with a dot, so it is never a task id and never listed. */
const EXPIRED_PREFIX = '.expired-';

/** One task whose artifacts a clean-up pass removed. */
export interface RemovedTask {
  task_id: string;
  ended_at: string;
  files: number;
  bytes: number;
}

/**
 * One clean-up pass at `now`: removes the artifacts of every task that ended more than `retentionDays` before it,
 * logging each. A task directory is renamed away first, so a crash mid-removal leaves no half task behind, only
 * a dot-named directory the next pass finishes removing.
 */
export async function removeExpiredTasks(opts: { records: TaskRecordStore; retentionDays: number; now: Date; log: Logger }): Promise<RemovedTask[]> {
  const root = opts.records.store.dir;
  await removeLeftovers(root, opts.log);
  const cutoff = opts.now.getTime() - opts.retentionDays * DAY_MS;
  const removed: RemovedTask[] = [];
  for (const record of await opts.records.all()) {
    const ended = Date.parse(record.ended_at);
    if (!Number.isFinite(ended) || ended >= cutoff) continue;
    const dir = path.join(root, record.task_id);
    const { files, bytes } = await sizeOf(dir);
    const doomed = path.join(root, `${EXPIRED_PREFIX}${record.task_id}-${randomBytes(4).toString('hex')}`);
    try {
      await fs.rename(dir, doomed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    await fs.rm(doomed, { recursive: true, force: true });
    const entry = { task_id: record.task_id, ended_at: record.ended_at, files, bytes };
    removed.push(entry);
    opts.log.info('removed artifacts of a task past its retention', { ...entry, retention_days: opts.retentionDays });
  }
  return removed;
}

/** Finishes removals an earlier pass began and did not complete. */
async function removeLeftovers(root: string, log: Logger): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const name of names.filter((n) => n.startsWith(EXPIRED_PREFIX))) {
    await fs.rm(path.join(root, name), { recursive: true, force: true });
    log.info('finished removing an expired task directory', { name });
  }
}

/** Regular files and their bytes directly in a task's artifact directory (artifacts are never nested). */
async function sizeOf(dir: string): Promise<{ files: number; bytes: number }> {
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
