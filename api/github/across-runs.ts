/**
 * Forge events reach a task through Updates, and a task continuing as new refuses them as ended while its run
 * hands over (the run is finishing; the next has not started). GitHub does not redeliver an event answered as
 * ignored, so such an event is sent again to the run that took over.
 */
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';

/** How long a refused event waits for the next run: GitHub gives a delivery 10 s in all. */
export const HANDOVER_WAIT_MS = 5_000;
/** How often the task is looked at meanwhile. */
const HANDOVER_POLL_MS = 100;
/** Handovers one event follows at most (one is usual; a task handing over again at once is a second). */
const MAX_HANDOVERS = 2;

/** How long to wait for the next run, and how often to look. */
export interface HandoverTiming {
  waitMs: number;
  pollMs: number;
}

/** The part of a workflow handle this needs (the handle of the task, named without a run id). */
export type TaskHandle = Pick<WorkflowHandle, 'describe'>;

/** Whether `err` is the task refusing an Update because its run has ended or is ending. */
export function refusedAsEnded(err: unknown): boolean {
  return err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure && err.cause.type === 'TaskEnded';
}

/**
 * Sends an Update with `send`; when the run `runId` (the one described before sending) refuses it as ended but the
 * task is still running, waits for the run that takes over and sends it again. A task that really ended, or whose
 * run is still ending after {@link HANDOVER_WAIT_MS}, gives the refusal back.
 */
export async function updateAcrossRuns<T>(handle: TaskHandle, runId: string, send: () => Promise<T>, timing: HandoverTiming = { waitMs: HANDOVER_WAIT_MS, pollMs: HANDOVER_POLL_MS }): Promise<T> {
  for (let handovers = 0; ; handovers++) {
    try {
      return await send();
    } catch (err) {
      if (!refusedAsEnded(err) || handovers >= MAX_HANDOVERS) throw err;
      const next = await nextRun(handle, runId, timing);
      if (next === null) throw err;
      runId = next;
    }
  }
}

/** The id of the run that took over from `runId`, or null when the task ended or no run took over in time. */
async function nextRun(handle: TaskHandle, runId: string, { waitMs, pollMs }: HandoverTiming): Promise<string | null> {
  const until = Date.now() + waitMs;
  for (;;) {
    const d = await handle.describe();
    if (d.status.name !== 'RUNNING') return null;
    if (d.runId !== runId) return d.runId;
    if (Date.now() + pollMs > until) return null;
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
