/**
 * The trace archive's format, shared by the activity that writes final records and the API that reads traces:
 * one JSON trace entry per line, oldest first.
 */
import type { TraceEntry } from './task';

/** Name of the artifact the workflow archives old trace entries to. */
export const TRACE_ARCHIVE = 'trace.jsonl';

/**
 * The first `count` entries of an archive's text, or `null` when it holds fewer. Lines past `count` are ignored:
 * an archive step retried after a crash may have appended a batch twice, and the first `count` lines are the real head.
 */
export function traceHead(text: string, count: number): TraceEntry[] | null {
  const entries = traceLines(text, count);
  return entries.length < count ? null : entries;
}

/** The entries of a trace file's text, in order, at most `max` of them. */
export function traceLines(text: string, max = Number.POSITIVE_INFINITY): TraceEntry[] {
  const entries: TraceEntry[] = [];
  for (const line of text.split('\n')) {
    if (entries.length >= max) break;
    if (line.trim() === '') continue;
    entries.push(JSON.parse(line) as TraceEntry);
  }
  return entries;
}
