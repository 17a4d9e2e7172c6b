/**
 * Commands that run once: the result of a command is recorded the moment it ends, before anything
 * else the activity does can fail, and a retry of the same activity is answered from the record
 * instead of running the command again (an approved risky command must never run twice because
 * the worker died while writing its log).
 */
import type { ArtifactStorage } from './artifacts/store';
import { ArtifactNotFoundError, isSafeName } from './artifacts/store';

/** Identifies one scheduled activity across its retries: the workflow run and the activity id. */
export interface ActivityIdentity {
  runId: string;
  activityId: string;
}

/** What running `work` gave, and whether it came from the record of an earlier attempt. */
export interface RunOnceOutcome<T> {
  value: T;
  replayed: boolean;
}

function recordName(id: ActivityIdentity): string | null {
  const name = `run-once-${id.runId}-${id.activityId}.json`;
  return isSafeName(name) ? name : null;
}

/** The recorded result of this activity's command, or null when no earlier attempt finished it. */
export async function recordedRun<T>(artifacts: ArtifactStorage, taskId: string, id: ActivityIdentity | null): Promise<T | null> {
  const name = id === null ? null : recordName(id);
  if (name === null) return null;
  try {
    return JSON.parse((await artifacts.readByName(taskId, name)).toString('utf8')) as T;
  } catch (err) {
    if (err instanceof ArtifactNotFoundError) return null;
    throw err;
  }
}

/**
 * Run `work` unless an earlier attempt of the same activity recorded its result; record the result
 * as soon as `work` returns. Outside a worker (`id` null) it simply runs.
 */
export async function runOnce<T>(artifacts: ArtifactStorage, taskId: string, id: ActivityIdentity | null, work: () => Promise<T>): Promise<RunOnceOutcome<T>> {
  const recorded = await recordedRun<T>(artifacts, taskId, id);
  if (recorded !== null) return { value: recorded, replayed: true };
  const value = await work();
  const name = id === null ? null : recordName(id);
  if (name !== null) await artifacts.put(taskId, name, JSON.stringify(value));
  return { value, replayed: false };
}
