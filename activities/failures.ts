/**
 * The failure types activities throw, and whether Temporal may retry each.
 *
 * Pure module (no Node built-ins): workflows may import it to recognise a failure's `type`.
 */
import { ApplicationFailure } from '@temporalio/common';

/** Every `ApplicationFailure.type` an activity throws; nothing else is used. */
export const FAILURE_TYPES = [
  // `.agent/policy.yaml` is not valid YAML or does not match the schema; retrying reads the same file.
  'InvalidRepoPolicy',
  // The repository or its base branch does not exist or cannot be read with the worker's credentials.
  'RepoUnavailable',
  // The remote refused the push (the branch moved under us, or a protection rule); a human must look.
  'PushRejected',
  // The workflow passed something the activity refuses (a bad artifact name, a path outside the working copy).
  'InvalidInput',
  // The task's working copy is gone (data directory wiped, task moved to another host); re-running cannot find it.
  'SandboxLost',
  // The checkpoint a task must go on from is neither in this worker's clone nor in the shared store's bundle (the store was wiped, or is not shared).
  'CheckpointLost',
  // A git command failed for a reason that may pass (network, a lock file); retried.
  'GitFailed',
  // A sandbox went past a bound the worker enforces (a copy-back cap, a file type it refuses, a tree too large to checkpoint); running it again meets the same bound.
  'SandboxLimit',
  // A webhook receiver answered that it will not take this delivery (a 4xx other than 408, 425 or 429), or the webhook is no longer configured.
  'WebhookRefused',
  // A webhook could not be reached, timed out, or answered 5xx, 408, 425 or 429; retried with backoff.
  'WebhookFailed',
  // The forge refused a request (bad credentials, no access, not found, invalid), or no forge access is configured; the same request meets the same answer.
  'ForgeRefused',
  // The forge could not be reached, answered 5xx, or is rate limiting us past the client's own waits; retried with backoff.
  'ForgeFailed',
] as const;

/** One of {@link FAILURE_TYPES}. */
export type FailureType = (typeof FAILURE_TYPES)[number];

/** Fixed per type, so the same cause is never retried in one place and given up on in another. */
const NON_RETRYABLE: Readonly<Record<FailureType, boolean>> = {
  InvalidRepoPolicy: true,
  RepoUnavailable: true,
  PushRejected: true,
  InvalidInput: true,
  SandboxLost: true,
  CheckpointLost: true,
  GitFailed: false,
  SandboxLimit: true,
  WebhookRefused: true,
  WebhookFailed: false,
  ForgeRefused: true,
  ForgeFailed: false,
};

/** True when Temporal should not retry a failure of this type. */
export function isNonRetryable(type: FailureType): boolean {
  return NON_RETRYABLE[type];
}

/** Build the `ApplicationFailure` for `type`, keeping the underlying error as its cause. */
export function activityFailure(
  type: FailureType,
  message: string,
  opts: { cause?: unknown; details?: unknown[] } = {},
): ApplicationFailure {
  const cause = opts.cause === undefined ? undefined : opts.cause instanceof Error ? opts.cause : new Error(String(opts.cause));
  return ApplicationFailure.create({ type, message, nonRetryable: NON_RETRYABLE[type], cause, details: opts.details });
}
