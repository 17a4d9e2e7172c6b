/**
 * Where a worker's sandbox work goes: the task queue only this worker polls, named for the worker, and the
 * limits the workflow applies to it (when the worker counts as gone, when a parked sandbox is released).
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import type { WorkerPlacement } from '../activities/types';
import { workerQueue } from '../domain/queues';

/** What a WORKER_ID may be: one queue-name segment. */
export const WORKER_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
/** Default seconds sandbox work waits for its worker: long enough for a restart of the same worker, short enough for a human not to notice much. */
export const DEFAULT_WORKER_LOST_AFTER_SECONDS = 60;
export const MIN_WORKER_LOST_AFTER_SECONDS = 2;
export const MAX_WORKER_LOST_AFTER_SECONDS = 3_600;
/** Default minutes a task waits on a human before its sandbox is released. */
export const DEFAULT_SANDBOX_RELEASE_AFTER_MINUTES = 10;
export const MAX_SANDBOX_RELEASE_AFTER_MINUTES = 7 * 24 * 60;
/** The most live sandboxes one worker may be told to hold. */
export const MAX_WORKER_SANDBOXES = 10_000;
const DATA_DIR_HASH_CHARS = 8;

/** A worker's default name: its host, and its data directory's hash so two workers on one host differ while a restarted one keeps its name. */
export function defaultWorkerId(dataDir: string): string {
  const host = os.hostname().replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 80) || 'worker';
  return `${host}-${createHash('sha256').update(dataDir).digest('hex').slice(0, DATA_DIR_HASH_CHARS)}`;
}

/** The placement a worker hands to the tasks it provisions. */
export function workerPlacement(cfg: {
  TEMPORAL_TASK_QUEUE: string;
  DATA_DIR: string;
  WORKER_ID?: string;
  WORKER_LOST_AFTER_SECONDS: number;
  SANDBOX_RELEASE_AFTER_MINUTES: number;
}): WorkerPlacement {
  const id = cfg.WORKER_ID ?? defaultWorkerId(cfg.DATA_DIR);
  return {
    id,
    queue: workerQueue(cfg.TEMPORAL_TASK_QUEUE, id),
    lost_after_seconds: cfg.WORKER_LOST_AFTER_SECONDS,
    release_after_minutes: cfg.SANDBOX_RELEASE_AFTER_MINUTES,
  };
}
