/**
 * The forge activities the task workflow calls, over a forge's pull-request and issue sides; without forge access
 * configured each one fails, not retried, saying what to set.
 */
import type { ForgeChecks } from '../../domain/checks';
import type { ForgePullRequests } from '../../domain/forge';
import type { ForgeIssues } from '../../domain/forge-mirror';
import type { ForgeMerges } from '../../domain/merge';
import type { Logger } from '../../workers/log';
import { activityFailure } from '../failures';
import { activityScope, whileBeating } from '../scope';
import type { PullRequestActivities } from '../types';
import { githubChecks } from './checks';
import { githubClients, type GithubAccess, type GithubClients } from './client';
import { githubIssues } from './issues';
import { githubMerges } from './merge';
import { githubPullRequests } from './pulls';

/** Why a forge activity refuses on a worker without forge access. */
const NO_ACCESS = 'this worker has no GitHub access: GITHUB_TOKEN_FILE or GITHUB_APP_ID (with GITHUB_APP_PRIVATE_KEY_FILE) is not set';

/** A forge's pull-request, issue, merge and checks sides together, as a worker with forge access has them. */
export type Forge = ForgePullRequests & ForgeIssues & ForgeMerges & ForgeChecks;

/** The activities over `forge` (its issue side `issues`, its merge side `merges`, its checks side `checks`), or ones that refuse when the worker has no forge access. */
export function createPullRequestActivities(
  forge: ForgePullRequests | null,
  issues: ForgeIssues | null = null,
  merges: ForgeMerges | null = null,
  checks: ForgeChecks | null = null,
): PullRequestActivities {
  const use = (): ForgePullRequests => {
    if (forge === null) throw activityFailure('ForgeRefused', NO_ACCESS);
    return forge;
  };
  const beating = <T>(work: () => Promise<T>): Promise<T> => whileBeating(activityScope().heartbeat, work);
  return {
    mirrorIssue: async (input) => {
      if (issues === null) throw activityFailure('ForgeRefused', NO_ACCESS);
      return issues.mirrorIssue(input);
    },
    // The task waits on these: each heartbeats while GitHub is called, so a worker that died mid-call is seen in seconds.
    publishPullRequest: async (input) => beating(() => use().publish(input)),
    closePullRequest: async (input) => beating(() => use().close(input)),
    readReviewFeedback: async (input) => beating(() => use().reviewFeedback(input)),
    commentOnPullRequest: async (input) => beating(() => use().comment(input)),
    mergePullRequest: async (input) => {
      if (merges === null) throw activityFailure('ForgeRefused', NO_ACCESS);
      return beating(() => merges.merge(input));
    },
    readCommitChecks: async (input) => {
      if (checks === null) throw activityFailure('ForgeRefused', NO_ACCESS);
      return beating(() => checks.commitChecks(input));
    },
  };
}

/**
 * GitHub's pull-request side for `access`. An App reports the self-check as a check run; a personal access token
 * cannot create check runs (GitHub keeps them to Apps), so with one it is a commit status of the same name.
 */
export function githubForge(access: GithubAccess, opts: { publicUrl?: string; log: Logger; clients?: GithubClients }): Forge {
  // Shared with the worker's git when given: one installation look-up and one token per repository for both.
  const clients = opts.clients ?? githubClients(access, { log: opts.log });
  const octokitFor = (repo: string) => clients.octokitFor(repo);
  const selfLogin = () => clients.selfLogin();
  const pulls = githubPullRequests(octokitFor, {
    selfLogin,
    publicUrl: opts.publicUrl,
    selfCheckAs: access.auth.kind === 'app' ? 'check_run' : 'commit_status',
    log: opts.log,
  });
  return {
    ...pulls,
    ...githubIssues(octokitFor, { selfLogin, publicUrl: opts.publicUrl, log: opts.log }),
    ...githubMerges(octokitFor, { log: opts.log }),
    ...githubChecks(octokitFor),
  };
}
