/**
 * The activities' errors as Temporal failures: the typed errors of the layers below become failures whose type
 * says whether retrying can help.
 */
import { ApplicationFailure } from '@temporalio/common';
import { RepoRefusedError } from '../domain/repo-policy';
import { InvalidArtifactNameError } from './artifacts/store';
import { activityFailure } from './failures';
import { CheckpointBundleError } from './git/checkpoint-chain';
import { GitCredentialsError, GitError, InvalidGitArgumentError } from './git/workspace';
import { InvalidSandboxIdError, SandboxPathError } from './sandbox/process';
import { SandboxTornDownError } from './sandbox/gvisor';
import { UnsafeFileError } from './sandbox/safe-fs';
import { SetupScriptError } from './setup-phase';
import type { Activities } from './types';

/** Turn the typed errors of the layers below into failures whose type says whether retrying can help. */
export function toFailure(err: unknown): unknown {
  // Cancellation must stay an AbortError: that is how the worker reports the activity as cancelled.
  if (err instanceof ApplicationFailure || (err instanceof Error && err.name === 'AbortError')) return err;
  if (err instanceof SandboxTornDownError) return activityFailure('SandboxLost', `${err.message}: the task ended while this activity ran`, { cause: err });
  if (err instanceof GitError) {
    const type = err.reason === 'unavailable' ? 'RepoUnavailable' : err.reason === 'rejected' ? 'PushRejected' : 'GitFailed';
    return activityFailure(type, err.message, { cause: err });
  }
  // A checkpoint bundle that does not apply here will not apply on a retry either.
  if (err instanceof CheckpointBundleError) return activityFailure('CheckpointLost', err.message, { cause: err });
  if (err instanceof GitCredentialsError) return activityFailure(err.retryable ? 'GitFailed' : 'RepoUnavailable', err.message, { cause: err });
  if (
    err instanceof InvalidArtifactNameError ||
    err instanceof InvalidGitArgumentError ||
    err instanceof RepoRefusedError ||
    err instanceof InvalidSandboxIdError ||
    err instanceof SandboxPathError ||
    err instanceof UnsafeFileError ||
    err instanceof SetupScriptError
  ) {
    return activityFailure('InvalidInput', err.message, { cause: err });
  }
  return err;
}

/** Every activity of `activities`, its errors turned into failures by {@link toFailure}. */
export function guardAll(activities: Activities): Activities {
  const guarded = {} as Record<string, unknown>;
  for (const [name, fn] of Object.entries(activities) as [string, (input: unknown) => Promise<unknown>][]) {
    guarded[name] = async (input: unknown) => {
      try {
        return await fn(input);
      } catch (err) {
        throw toFailure(err);
      }
    };
  }
  return guarded as unknown as Activities;
}
