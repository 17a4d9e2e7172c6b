/**
 * Which GitHub repository a task's repository is: one `owner/name(.git)` directly under GITHUB_GIT_BASE (a URL,
 * or a directory standing in for GitHub's git), as intake names them. The worker's git gets GitHub's token for
 * exactly these, and a repository TEAMS_FILE maps to a team takes tasks of that team only.
 */
import { parseRepo, RepoRefusedError, type RepoLocation } from './repo-policy';

/** `owner/name` after the base: GitHub's rules for owners, and a name that is not `.` or `..`. */
const OWNER_NAME = /^([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)\/([A-Za-z0-9._-]+?)(?:\.git)?\/?$/;

/** `owner/name` of the GitHub repository `loc` is under `gitBase`, or null when it is none there. */
export function githubRepoAt(gitBase: string, loc: RepoLocation): string | null {
  let base: RepoLocation;
  try {
    base = parseRepo(gitBase);
  } catch (err) {
    if (err instanceof RepoRefusedError) return null;
    throw err;
  }
  let rest: string;
  if (loc.kind === 'local' && base.kind === 'local') {
    if (!loc.path.startsWith(`${base.path.replace(/\/+$/, '')}/`)) return null;
    rest = loc.path.slice(base.path.replace(/\/+$/, '').length + 1);
  } else if (loc.kind === 'remote' && base.kind === 'remote') {
    const at = new URL(loc.normalized);
    const from = new URL(base.normalized);
    if (at.protocol !== from.protocol || at.host !== from.host) return null;
    const prefix = from.pathname.replace(/\/+$/, '');
    if (!at.pathname.startsWith(`${prefix}/`)) return null;
    rest = at.pathname.slice(prefix.length + 1);
  } else {
    return null;
  }
  const m = OWNER_NAME.exec(rest);
  if (m === null || m[2] === '.' || m[2] === '..') return null;
  return `${m[1]}/${m[2]}`;
}

/** {@link githubRepoAt} for a repository as a task names it (a URL or a path); null also when it does not parse. */
export function githubRepoOf(gitBase: string, repo: string): string | null {
  try {
    return githubRepoAt(gitBase, parseRepo(repo));
  } catch (err) {
    if (err instanceof RepoRefusedError) return null;
    throw err;
  }
}
