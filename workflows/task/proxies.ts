/**
 * The activities as the workflow calls them: timeouts and retries per kind of work.
 */
import { ActivityFailure, ApplicationFailure, proxyActivities, type ActivityOptions } from '@temporalio/workflow';
import type { RetryPolicy } from '@temporalio/common';
import type { Activities } from '../../activities/types';

/** Retries for work that can succeed later (a restarted worker, a busy disk). */
export const RETRY: RetryPolicy = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10 };
/** Options of sandbox, git and artifact work outside commands. */
export const IO_OPTIONS: ActivityOptions = { startToCloseTimeout: '10 minutes', retry: RETRY };
/** Sandbox, git and artifact work outside commands. */
export const io = proxyActivities<Activities>(IO_OPTIONS);

/** How long a worker may go silent in a forge call before Temporal hands the call to another worker. */
const FORGE_HEARTBEAT_TIMEOUT = '10 seconds';
/**
 * Forge calls the task waits on (its pull request, a review's comments): paced writes can take minutes, so the
 * worker heartbeats, and a worker that died mid-call is noticed in seconds, not at the call's timeout.
 */
export const forgeActs = proxyActivities<Activities>({ startToCloseTimeout: '10 minutes', heartbeatTimeout: FORGE_HEARTBEAT_TIMEOUT, retry: RETRY });

/** Forge calls that only show the task (the source issue's mirror): short, a few tries, never worth holding the task up. */
export const mirrorActs = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 3 },
});

/** One model call: retried with backoff (429s and 5xx); a bad key or unknown model is not retried. */
export const modelActs = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '60s', maximumAttempts: 8 },
});
/** Timeout of the agent's `run` tool when the model asks for none. */
export const AGENT_RUN_TIMEOUT_SECONDS = 600;
/** The longest timeout the model may ask for a `run`. */
export const AGENT_RUN_MAX_TIMEOUT_SECONDS = 1_800;
/** Options of one tool call: it may run a command for up to the longest timeout, heartbeating. */
export const TOOL_OPTIONS: ActivityOptions = {
  startToCloseTimeout: `${AGENT_RUN_MAX_TIMEOUT_SECONDS + 120} seconds`,
  heartbeatTimeout: '10 seconds',
  retry: { ...RETRY, maximumAttempts: 5 },
};
/** How long a worker may go silent inside a step before Temporal hands the step to another worker. */
const STEP_HEARTBEAT_TIMEOUT = '10 seconds';

/** Options of one recipe step, whose timeout is the step's own. */
export function stepOptions(timeoutSeconds: number): ActivityOptions {
  return {
    startToCloseTimeout: `${timeoutSeconds + 120} seconds`,
    heartbeatTimeout: STEP_HEARTBEAT_TIMEOUT,
    retry: { ...RETRY, maximumAttempts: 5 },
  };
}

/** The most specific message in an activity failure chain. */
export function describeFailure(err: ActivityFailure): string {
  const cause = err.cause;
  if (cause instanceof ApplicationFailure) return `${cause.type ?? 'Error'}: ${cause.message}`;
  return cause?.message ?? err.message;
}
