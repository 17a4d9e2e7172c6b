/**
 * Reading a task's artifacts for the API: a missing artifact becomes a 404, and the
 * archived head of a trace is read back from `trace.jsonl`.
 */
import type { TraceEntry } from '../domain/task';
import { TRACE_ARCHIVE, traceHead } from '../domain/trace-archive';
import type { Logger } from '../workers/log';
import type { ArtifactReader } from './deps';
import { NotFoundError } from './errors';

/** The artifact's content; a 404 when the store has no such artifact (or no store is configured). */
export async function readArtifact(store: ArtifactReader | undefined, taskId: string, name: string): Promise<Buffer> {
  if (store === undefined) throw new NotFoundError('artifact_not_found', 'this server has no artifact store');
  try {
    return await store.readByName(taskId, name);
  } catch (err) {
    if (isMissing(err)) throw new NotFoundError('artifact_not_found', `task ${taskId} has no artifact ${name}`, err);
    throw err;
  }
}

/**
 * The first `count` trace entries from the archive, or `null` when the archive does not hold
 * that many (then the caller shows only the live entries rather than a trace with a gap).
 */
export async function archivedTrace(store: ArtifactReader, taskId: string, count: number, log: Logger): Promise<TraceEntry[] | null> {
  let text: string;
  try {
    text = (await store.readByName(taskId, TRACE_ARCHIVE)).toString('utf8');
  } catch (err) {
    if (!isMissing(err)) throw err;
    log.warn('trace archive missing', { task_id: taskId, expected_entries: count });
    return null;
  }
  const entries = traceHead(text, count);
  if (entries === null) log.warn('trace archive shorter than expected', { task_id: taskId, expected_entries: count });
  return entries;
}

/** The store signals a missing artifact with `ArtifactNotFoundError`; a bare ENOENT means the same. */
function isMissing(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e.name === 'ArtifactNotFoundError' || (e as NodeJS.ErrnoException).code === 'ENOENT') return true;
  }
  return false;
}
