/**
 * Task views (`GET /v1/tasks/:id`) fetched once per task while its cards are on screen, so a list of
 * many cards renders from the listing alone and details arrive for what the person looks at.
 */
import { api } from './api';
import type { ItemDiff, TaskView } from './types';

const cache = new Map<string, Promise<TaskView>>();

/** The task's view, fetched at most once until {@link forgetTask}. */
export function taskView(taskId: string): Promise<TaskView> {
  let p = cache.get(taskId);
  if (!p) {
    p = api<TaskView>('GET', `/v1/tasks/${encodeURIComponent(taskId)}`);
    p.catch(() => cache.delete(taskId));
    cache.set(taskId, p);
  }
  return p;
}

/** Drops a cached view (after a decision or an event about the task). */
export function forgetTask(taskId: string): void {
  cache.delete(taskId);
}

const diffs = new Map<string, Promise<ItemDiff>>();

/** An item's annotated diff, fetched at most once (a settled item's diff does not change). */
export function itemDiff(taskId: string, itemId: string): Promise<ItemDiff> {
  const key = `${taskId}/${itemId}`;
  let p = diffs.get(key);
  if (!p) {
    p = api<ItemDiff>('GET', `/v1/tasks/${encodeURIComponent(taskId)}/inbox/${encodeURIComponent(itemId)}/diff`);
    p.catch(() => diffs.delete(key));
    diffs.set(key, p);
  }
  return p;
}
