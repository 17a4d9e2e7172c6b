/**
 * What `GET /v1/events` streams: one event per change of a task as the visibility store shows it, so a
 * client that was away catches up from its `Last-Event-ID` with the current state of every task that changed.
 */
import type { InboxItemSummary, TaskState } from './task';

/** SSE event name of a {@link TaskEvent}. */
export const TASK_EVENT = 'task';

/** A task as it stands after a change: enough for an inbox to add, move or drop its cards. */
export interface TaskEvent {
  task_id: string;
  team: string | null;
  repo: string | null;
  requester: string | null;
  priority: number | null;
  state: TaskState | null;
  goal: string | null;
  /** Pending items (an ended task has none). */
  items: InboxItemSummary[];
  /** When the workflow published this change (or closed). */
  updated_at: string;
  /** True once the task's workflow has closed. */
  ended: boolean;
}
