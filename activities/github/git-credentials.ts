/**
 * The worker's git credential for GitHub's own git: a remote under GITHUB_GIT_BASE (`<base>/<owner>/<name>.git`,
 * as intake names repositories) gets the token of that repository's App installation, or the personal access
 * token, with `x-access-token` as the user name as GitHub asks. Any other remote gets nothing from here.
 */
import type { GitCredentials } from '../git/remote';
import { githubRepoAt } from '../../domain/github-repos';
import { parseRepo } from '../../domain/repo-policy';
import type { GithubClients } from './client';

/** The user name GitHub's git takes with an installation token (and with a personal access token). */
export const GITHUB_GIT_USER = 'x-access-token';

/** `owner/name` of the repository remote `url` names under `gitBase`, or null when it names none there. */
export function githubRepoOfUrl(gitBase: string, url: string): string | null {
  let loc;
  try {
    loc = parseRepo(url);
  } catch {
    return null;
  }
  return loc.kind === 'remote' ? githubRepoAt(gitBase, loc) : null;
}

/** The credentials of remotes under `gitBase` (an http(s) URL; a directory base has no remotes to authenticate to). */
export function githubGitCredentials(gitBase: string, clients: Pick<GithubClients, 'gitToken'>): GitCredentials {
  return async (url) => {
    const repo = githubRepoOfUrl(gitBase, url);
    if (repo === null) return null;
    return { username: GITHUB_GIT_USER, password: await clients.gitToken(repo) };
  };
}
