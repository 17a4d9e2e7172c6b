/**
 * What the API looks up at GitHub before a comment steers anything: the commenter's permission, the head branch
 * of the pull request commented on, and a reply to someone who may not steer the agent.
 */
import type { ForgeLookup } from '../../domain/forge-comments';
import type { Logger } from '../../workers/log';
import { githubClients, splitRepo, type GithubAccess } from './client';
import { MAX_BODY_CHARS, permissionOf } from './pulls';

/** GitHub's look-ups for `access`, with the same clients (and rate-limit handling) the worker uses. */
export function githubLookup(access: GithubAccess, opts: { log: Logger }): ForgeLookup {
  const clients = githubClients(access, { log: opts.log });
  const reach = async (full: string) => {
    const [owner, repo] = splitRepo(full);
    return { octokit: await clients.octokitFor(full), at: { owner, repo } };
  };
  return {
    async permission(full, login) {
      const { octokit, at } = await reach(full);
      return permissionOf(octokit, at, full, login);
    },
    async pullHead(full, number) {
      const { octokit, at } = await reach(full);
      const { data } = await octokit.rest.pulls.get({ ...at, pull_number: number });
      // A fork's branch may carry any name: only a branch of the repository itself can be the agent's.
      return data.head.repo?.full_name.toLowerCase() === full.toLowerCase() ? data.head.ref : null;
    },
    async comment(full, number, body) {
      const { octokit, at } = await reach(full);
      await octokit.rest.issues.createComment({ ...at, issue_number: number, body: body.slice(0, MAX_BODY_CHARS) });
    },
  };
}
