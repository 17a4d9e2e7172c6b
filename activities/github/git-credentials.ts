/**
 * The worker's git credential for GitHub's own git: a remote under GITHUB_GIT_BASE (`<base>/<owner>/<name>.git`,
 * as intake names repositories) gets the token of that repository's App installation, or the personal access
 * token, with `x-access-token` as the user name as GitHub asks. Any other remote gets nothing from here.
 */
import type { GitCredentials } from '../git/remote';
import { splitRepo, type GithubClients } from './client';

/** The user name GitHub's git takes with an installation token (and with a personal access token). */
export const GITHUB_GIT_USER = 'x-access-token';

/** `owner/name` of the repository `url` names under `gitBase`, or null when it names none there. */
export function githubRepoOfUrl(gitBase: string, url: string): string | null {
  let base: URL;
  let at: URL;
  try {
    base = new URL(gitBase);
    at = new URL(url);
  } catch {
    return null;
  }
  // Same scheme, host and port; the path one `owner/name(.git)` below the base's.
  if (at.protocol !== base.protocol || at.host !== base.host || at.username || at.password || at.search || at.hash) return null;
  const prefix = base.pathname.replace(/\/+$/, '');
  if (!at.pathname.startsWith(`${prefix}/`)) return null;
  const m = /^([^/]+)\/([^/]+?)(?:\.git)?\/?$/.exec(at.pathname.slice(prefix.length + 1));
  if (m === null) return null;
  try {
    return splitRepo(`${m[1]}/${m[2]}`).join('/');
  } catch {
    return null;
  }
}

/** The credentials of remotes under `gitBase` (an http(s) URL; a directory base has no remotes to authenticate to). */
export function githubGitCredentials(gitBase: string, clients: Pick<GithubClients, 'gitToken'>): GitCredentials {
  return async (url) => {
    const repo = githubRepoOfUrl(gitBase, url);
    if (repo === null) return null;
    return { username: GITHUB_GIT_USER, password: await clients.gitToken(repo) };
  };
}
