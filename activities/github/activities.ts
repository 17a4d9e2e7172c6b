/**
 * The pull-request activities the task workflow calls, over a forge's pull-request side; without forge access
 * configured each one fails, not retried, saying what to set.
 */
import type { ForgePullRequests } from '../../domain/forge';
import type { Logger } from '../../workers/log';
import { activityFailure } from '../failures';
import type { PullRequestActivities } from '../types';
import { githubClients, type GithubAccess } from './client';
import { githubPullRequests } from './pulls';

/** The activities over `forge`, or ones that refuse when the worker has no forge access. */
export function createPullRequestActivities(forge: ForgePullRequests | null): PullRequestActivities {
  const use = (): ForgePullRequests => {
    if (forge === null) throw activityFailure('ForgeRefused', 'this worker has no GitHub access: GITHUB_TOKEN_FILE or GITHUB_APP_ID (with GITHUB_APP_PRIVATE_KEY_FILE) is not set');
    return forge;
  };
  return {
    publishPullRequest: async (input) => use().publish(input),
    closePullRequest: async (input) => use().close(input),
    readReviewFeedback: async (input) => use().reviewFeedback(input),
    commentOnPullRequest: async (input) => use().comment(input),
  };
}

/**
 * GitHub's pull-request side for `access`. An App reports the self-check as a check run; a personal access token
 * cannot create check runs (GitHub keeps them to Apps), so with one it is a commit status of the same name.
 */
export function githubForge(access: GithubAccess, opts: { publicUrl?: string; log: Logger }): ForgePullRequests {
  const clients = githubClients(access, { log: opts.log });
  return githubPullRequests((repo) => clients.octokitFor(repo), {
    selfLogin: () => clients.selfLogin(),
    publicUrl: opts.publicUrl,
    selfCheckAs: access.auth.kind === 'app' ? 'check_run' : 'commit_status',
    log: opts.log,
  });
}
