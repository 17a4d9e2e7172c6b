/**
 * Retention of ended tasks' artifacts: a task whose final record says it ended more than the retention
 * ago loses all its artifacts (logs, diffs, trace, the record itself). Tasks without a record are open, or
 * ended before records existed, and are left alone.
 */
import type { Logger } from '../../workers/log';
import { TASK_RECORD, type TaskRecordStore } from './task-record';

/** Milliseconds in a day. */
const DAY_MS = 24 * 60 * 60 * 1000;

/** One task whose artifacts a clean-up pass removed. */
export interface RemovedTask {
  task_id: string;
  ended_at: string;
  files: number;
  bytes: number;
}

/**
 * One clean-up pass at `now`: removes the artifacts of every task that ended more than `retentionDays` before it,
 * logging each. The record goes last, so a crash mid-removal leaves it for the next pass, which finishes the task.
 */
export async function removeExpiredTasks(opts: { records: TaskRecordStore; retentionDays: number; now: Date; log: Logger }): Promise<RemovedTask[]> {
  const store = opts.records.store;
  for (const name of await store.finishRemovals()) opts.log.info('finished removing an expired task directory', { name });
  const cutoff = opts.now.getTime() - opts.retentionDays * DAY_MS;
  const removed: RemovedTask[] = [];
  for (const record of await opts.records.all()) {
    const ended = Date.parse(record.ended_at);
    if (!Number.isFinite(ended) || ended >= cutoff) continue;
    const gone = await store.removeTask(record.task_id, { last: TASK_RECORD });
    if (gone === null) continue;
    const entry = { task_id: record.task_id, ended_at: record.ended_at, ...gone };
    removed.push(entry);
    opts.log.info('removed artifacts of a task past its retention', { ...entry, retention_days: opts.retentionDays });
  }
  return removed;
}
