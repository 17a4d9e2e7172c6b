/**
 * A task's final record: its last task view and its complete trace, written to the artifact store when the
 * task ends, so a task stays readable after Temporal's retention has removed its workflow.
 */
import { TRACE_ARCHIVE, traceHead, traceLines } from '../../domain/trace-archive';
import type { TaskView, TraceEntry } from '../../domain/task';
import type { Logger } from '../../workers/log';
import { ArtifactNotFoundError, isSafeName, type ArtifactStorage } from '../artifacts/store';

/** The record's artifact: `{version, task_id, ended_at, view, trace_entries, trace_complete}`. */
export const TASK_RECORD = 'record.json';
/** The complete trace of an ended task, one entry per line, oldest first; written before the record. */
export const RECORD_TRACE = 'record-trace.jsonl';

/** Version of the record format, so a later format can still read older records. */
const RECORD_VERSION = 1;

/** What the workflow hands over when it ends: its view and the trace entries still in its state. */
export interface WriteTaskRecordInput {
  task_id: string;
  view: TaskView;
  /** Position of `entries[0]` in the whole trace: the entries before it are in the trace archive. */
  first_index: number;
  entries: TraceEntry[];
}

/** An ended task as its record keeps it. */
export interface TaskRecord {
  version: number;
  task_id: string;
  /** When the task reached its terminal state (the view's `updated_at`). */
  ended_at: string;
  view: TaskView;
  /** Entries in `record-trace.jsonl`. */
  trace_entries: number;
  /** False when the archive had lost entries, so the trace starts with a gap (logged when written). */
  trace_complete: boolean;
}

/** Where a listing of records goes on from: the last record of the previous page. */
export interface RecordCursor {
  ended_at: string;
  task_id: string;
}

/** One page of records, newest end first. */
export interface RecordPage {
  records: TaskRecord[];
  /** The cursor of the next page, or null when this page is the last. */
  next: RecordCursor | null;
}

/**
 * Writes the task's record: the archived trace head and the live entries as one trace, then the view.
 * Both writes replace whole files and read only what an earlier attempt cannot have changed, so a retry writes the same.
 */
export async function writeTaskRecord(store: ArtifactStorage, input: WriteTaskRecordInput, log: Logger): Promise<TaskRecord> {
  let head: TraceEntry[] = [];
  let complete = true;
  if (input.first_index > 0) {
    const text = await store.readByName(input.task_id, TRACE_ARCHIVE).then(
      (b) => b.toString('utf8'),
      (err: unknown) => {
        if (err instanceof ArtifactNotFoundError) return '';
        throw err;
      },
    );
    const found = traceHead(text, input.first_index);
    if (found === null) {
      complete = false;
      head = traceLines(text);
      log.warn('trace archive short of its entries; the final record starts with a gap', { task_id: input.task_id, expected_entries: input.first_index });
    } else {
      head = found;
    }
  }
  const trace = [...head, ...input.entries];
  await store.put(input.task_id, RECORD_TRACE, trace.map((e) => `${JSON.stringify(e)}\n`).join(''));
  const record: TaskRecord = {
    version: RECORD_VERSION,
    task_id: input.task_id,
    ended_at: input.view.updated_at,
    view: input.view,
    trace_entries: trace.length,
    trace_complete: complete,
  };
  // The record goes last: whoever finds it finds the whole trace beside it.
  await store.put(input.task_id, TASK_RECORD, JSON.stringify(record));
  log.info('task record written', { task_id: input.task_id, state: input.view.state, trace_entries: trace.length });
  return record;
}

/** Reads the records of ended tasks out of an artifact store. */
export class TaskRecordStore {
  constructor(
    readonly store: ArtifactStorage,
    private readonly log: Logger,
  ) {}

  /** The task's record, or null when it has none. */
  async read(taskId: string): Promise<TaskRecord | null> {
    if (!isSafeName(taskId)) return null;
    try {
      return JSON.parse((await this.store.readByName(taskId, TASK_RECORD)).toString('utf8')) as TaskRecord;
    } catch (err) {
      if (err instanceof ArtifactNotFoundError) return null;
      throw err;
    }
  }

  /** The task's complete trace from its record, or null when it has no record. */
  async trace(taskId: string): Promise<TraceEntry[] | null> {
    if ((await this.read(taskId)) === null) return null;
    return traceLines((await this.store.readByName(taskId, RECORD_TRACE)).toString('utf8'));
  }

  /** Every record in the store, newest end first (ties by task id, descending); unreadable records are logged and skipped. */
  async all(): Promise<TaskRecord[]> {
    const out: TaskRecord[] = [];
    for (const id of await this.store.taskIds()) {
      let record: TaskRecord | null;
      try {
        record = await this.read(id);
      } catch (err) {
        this.log.warn('unreadable task record skipped', { task_id: id, error: err });
        continue;
      }
      if (record !== null) out.push(record);
    }
    return out.sort((a, b) => compareCursor(b, a));
  }

  /** The page of records that `match` after `after` (or from the newest), at most `limit` long. */
  async page(opts: { after?: RecordCursor; limit: number; match?: (record: TaskRecord) => boolean }): Promise<RecordPage> {
    const all = await this.all();
    const rest = opts.after ? all.filter((r) => compareCursor(r, opts.after!) < 0) : all;
    const matching = opts.match ? rest.filter(opts.match) : rest;
    const records = matching.slice(0, opts.limit);
    const last = records.at(-1);
    const next = matching.length > records.length && last ? { ended_at: last.ended_at, task_id: last.task_id } : null;
    return { records, next };
  }
}

/** Orders records by end time, then task id: negative when `a` ended before `b`. */
function compareCursor(a: RecordCursor, b: RecordCursor): number {
  if (a.ended_at !== b.ended_at) return a.ended_at < b.ended_at ? -1 : 1;
  return a.task_id < b.task_id ? -1 : a.task_id > b.task_id ? 1 : 0;
}
