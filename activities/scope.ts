/**
 * What an activity knows of itself while it runs: its heartbeat, cancellation, attempt and identity.
 */
import { Context } from '@temporalio/activity';
import type { ActivityIdentity } from './run-once';

/** The running activity as the code below it sees it; harmless stand-ins outside a worker (tests, scripts). */
export interface ActivityScope {
  heartbeat: () => void;
  signal: AbortSignal | undefined;
  attempt: number;
  /** Which scheduled activity this is, the same for all its retries; null outside a worker. */
  identity: ActivityIdentity | null;
}

/** The running activity's scope, or stand-ins when called outside a worker. */
export function activityScope(): ActivityScope {
  let ctx: Context;
  try {
    ctx = Context.current();
  } catch {
    return { heartbeat: () => undefined, signal: undefined, attempt: 1, identity: null };
  }
  const run = ctx.info.workflowExecution;
  return {
    heartbeat: () => ctx.heartbeat(),
    signal: ctx.cancellationSignal,
    attempt: ctx.info.attempt,
    // Standalone activities (no workflow) have no run to key a record on.
    identity: run ? { runId: run.runId, activityId: ctx.info.activityId } : null,
  };
}

/** Run `work`, heartbeating once right away and then every second until it settles. */
export async function whileBeating<T>(heartbeat: () => void, work: () => Promise<T>): Promise<T> {
  heartbeat();
  const timer = setInterval(heartbeat, 1_000);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}
