/**
 * Task events for live inboxes, derived from the visibility store the tasks already write: one poller per
 * process lists task workflows whose `AgentUpdatedAt` or `CloseTime` moved, and hands each change to every
 * subscriber. Nothing is stored here; a client that was away asks again from its last event id.
 */
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import type { TaskEvent } from '../domain/events';
import type { Logger } from '../workers/log';
import { MEMO_INBOX, SA_TEAM, SA_UPDATED_AT, type InboxMemo } from '../workflows/search-attributes';
import { listExecutions, taskRow, visibilityQuery, where } from './visibility';

/** How often the poller asks while anyone listens. */
export const EVENT_POLL_MS = 200;
/**
 * How far before its cursor each poll looks again: a visibility row can become visible a little after the
 * time it carries (and the workflow's clock is not this process's); per-task dedupe drops what was sent.
 */
const OVERLAP_MS = 2_000;
/** Most tasks one poll or one catch-up reads; a client away for longer gets the newest changes up to this many. */
export const EVENT_BACKLOG_MAX = 1_000;
/** Tasks whose last sent change the poller remembers for dedupe. */
const SEEN_MAX = 20_000;

/** An event with its SSE id (the change's time in ms, which `Last-Event-ID` sends back). */
export interface FeedEvent {
  id: string;
  event: TaskEvent;
}

/** When a task last changed as visibility shows it, in ms. */
function changedAt(info: WorkflowExecutionInfo): number {
  const updated = info.typedSearchAttributes.get(SA_UPDATED_AT)?.getTime() ?? info.startTime.getTime();
  const closed = info.closeTime?.getTime() ?? 0;
  return Math.max(updated, closed);
}

/** The event for one execution as visibility lists it. */
export function taskEventOf(info: WorkflowExecutionInfo): FeedEvent {
  const row = taskRow(info);
  const ended = info.status.name !== 'RUNNING';
  const memo = info.memo?.[MEMO_INBOX] as InboxMemo | undefined;
  const at = changedAt(info);
  return {
    id: String(at),
    event: {
      task_id: row.task_id,
      team: info.typedSearchAttributes.get(SA_TEAM) ?? null,
      repo: row.repo,
      requester: row.requester,
      priority: row.priority,
      state: row.state,
      goal: row.goal,
      items: ended ? [] : (memo?.items ?? []),
      updated_at: new Date(at).toISOString(),
      ended,
    },
  };
}

/** Task workflows that changed after `sinceMs`, oldest change first. */
export async function changedSince(client: Client, sinceMs: number): Promise<FeedEvent[]> {
  const since = new Date(sinceMs).toISOString();
  const query = visibilityQuery([where('ExecutionStatus', '!=', 'ContinuedAsNew'), `(${where(SA_UPDATED_AT, '>', since)} OR ${where('CloseTime', '>', since)})`]);
  const events = (await listExecutions(client, query, EVENT_BACKLOG_MAX)).map(taskEventOf);
  return events.sort((a, b) => Number(a.id) - Number(b.id));
}

/** One poller per process, running only while someone subscribes. */
export class TaskEventFeed {
  private readonly listeners = new Set<(e: FeedEvent) => void>();
  private readonly seen = new Map<string, number>();
  private cursor = 0;
  private timer: NodeJS.Timeout | null = null;
  private polling = false;

  constructor(
    private readonly client: Client,
    private readonly log: Logger,
    private readonly pollMs: number = EVENT_POLL_MS,
  ) {}

  /** Calls `listener` with every change from now on; returns the unsubscribe function. */
  subscribe(listener: (e: FeedEvent) => void): () => void {
    if (this.listeners.size === 0) {
      this.cursor = Date.now() - OVERLAP_MS;
      this.timer = setInterval(() => void this.poll(), this.pollMs);
    }
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.timer !== null) {
        clearInterval(this.timer);
        this.timer = null;
        this.seen.clear();
      }
    };
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    const started = Date.now();
    try {
      const events = await changedSince(this.client, this.cursor);
      for (const e of events) {
        const at = Number(e.id);
        if ((this.seen.get(e.event.task_id) ?? 0) >= at) continue;
        this.seen.delete(e.event.task_id);
        this.seen.set(e.event.task_id, at);
        if (this.seen.size > SEEN_MAX) this.seen.delete(this.seen.keys().next().value!);
        for (const l of this.listeners) l(e);
      }
      // The next poll looks back only the overlap: rows older than that were listed by this one.
      this.cursor = Math.max(this.cursor, started - OVERLAP_MS);
    } catch (err) {
      this.log.warn('event poll failed', { error: err });
    } finally {
      this.polling = false;
    }
  }
}
