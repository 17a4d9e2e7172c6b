/**
 * Guards that run on Temporal timers, so they hold across worker crashes, deploys and server restarts:
 * the wall-clock cap and the idle cap.
 */
import { CancellationScope, condition, isCancellation } from '@temporalio/workflow';
import type { TaskRun } from './state';

/** Ends the task with `timed_out` when the wall-clock deadline passes; a time grant moves the deadline. */
export async function wallClockGuard(t: TaskRun): Promise<void> {
  while (!t.finished) {
    const deadline = t.s.deadline_at;
    const left = Date.parse(deadline) - Date.now();
    if (left <= 0) {
      t.requestEnd({ state: 'timed_out', result: `wall-clock cap of ${t.s.budget.max_wall_clock_minutes} min reached` });
      return;
    }
    await condition(() => t.finished || t.s.deadline_at !== deadline, left);
  }
}

/** Milliseconds until `max_idle_minutes` pass without progress (zero or less: already idle). */
export function idleLeftMs(t: TaskRun): number {
  return Date.parse(t.s.idle_since) + t.s.budget.max_idle_minutes * 60_000 - Date.now();
}

/** Runs `work` (one activity) and cancels it when the idle cap passes first; a durable timer, so it holds across restarts. */
export async function withIdleGuard<T>(t: TaskRun, work: () => Promise<T>): Promise<{ kind: 'done'; result: T } | { kind: 'idle' }> {
  const scope = new CancellationScope();
  let settled = false;
  let idle = false;
  // The timer is started before the activity is scheduled: recorded histories have them in this order.
  void condition(() => settled, Math.max(idleLeftMs(t), 1))
    .then((done) => {
      if (!done) {
        idle = true;
        scope.cancel();
      }
    })
    // The task itself was cancelled: the work's own rejection carries that.
    .catch(() => undefined);
  try {
    return { kind: 'done', result: await scope.run(work) };
  } catch (err) {
    if (idle && isCancellation(err)) return { kind: 'idle' };
    throw err;
  } finally {
    settled = true;
  }
}
