/**
 * The worker's GitHub REST and GraphQL client: Octokit with GitHub's rate limits honoured (a bounded number of
 * waits) and transient failures retried, authenticated by a personal access token or as a GitHub App installation.
 *
 * GitHub Enterprise Server: `apiUrl` is `https://<host>/api/v3`; Octokit sends GraphQL to `<apiUrl>/graphql` except
 * that it rewrites a base URL ending in `/api/v3` to `https://<host>/api/graphql`, which is where GHES serves it.
 */
import { createAppAuth } from '@octokit/auth-app';
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import { Octokit } from '@octokit/rest';
import type { Logger } from '../../workers/log';
import { GitCredentialsError } from '../git/remote';

/** Octokit with the throttling and retry plugins, as every GitHub call of the worker uses it. */
export const GithubOctokit = Octokit.plugin(throttling, retry);
/** An instance of {@link GithubOctokit}. */
export type GithubOctokit = InstanceType<typeof GithubOctokit>;

/** How the worker authenticates at GitHub. The secrets are read once from their files and only ever sent to `apiUrl`. */
export type GithubAuth = { kind: 'token'; token: string } | { kind: 'app'; appId: number; privateKey: string };

/** Where GitHub's API is and how to authenticate there (GITHUB_API_URL, GITHUB_TOKEN_FILE or GITHUB_APP_ID with its key). */
export interface GithubAccess {
  /** REST base URL without a trailing slash: `https://api.github.com`, or `https://<host>/api/v3` for GitHub Enterprise Server. */
  apiUrl: string;
  auth: GithubAuth;
}

/** What building clients takes besides the access itself. */
export interface GithubClientOptions {
  log: Logger;
  /** Headers added to every request (a test server answering 406 to GitHub's media type takes `accept: application/json`). */
  headers?: Record<string, string>;
  /**
   * Whether writes are spaced the way GitHub asks integrations to (one write a second, one content-creating request
   * every three); default true. A local test server has no such limit.
   */
  paceWrites?: boolean;
  /** Milliseconds one unit of a retry's backoff lasts (default: one second, as the plugins count it). */
  retryUnitMs?: number;
}

/** Times a request is sent again after GitHub said the primary or the secondary rate limit is exhausted. */
export const MAX_RATE_LIMIT_RETRIES = 2;
/** Longest wait for a rate limit to lift (seconds) that is waited out here; past it the call fails and is retried later by its caller. */
export const MAX_RATE_LIMIT_WAIT_S = 120;
/** Times a request that failed with a 5xx or did not reach GitHub is sent again (after 1, 4 and 9 units of backoff). */
export const MAX_TRANSIENT_RETRIES = 3;
/**
 * Statuses the retry plugin never retries: the same request meets the same answer (403 and 429 rate limits are the
 * throttling plugin's), and a merge refused for now (405) or for a moved head (409) is the workflow's to retry, on its timer.
 */
const DO_NOT_RETRY = [400, 401, 403, 404, 405, 409, 410, 422, 451];

/** Clients for GitHub, one per repository as its installation requires (the same one for every repository with a token). */
export interface GithubClients {
  /** The client that may act on `repo` (`owner/name`); with an App, its installation on that repository is looked up once and kept. */
  octokitFor(repo: string): Promise<GithubOctokit>;
  /** The login the worker acts as (the token's user, or the App's `<slug>[bot]`): pull requests it opened carry it. Asked once. */
  selfLogin(): Promise<string>;
  /**
   * The token the worker's git presents for `repo`: the personal access token, or the installation's token (kept,
   * and renewed once it has less than {@link INSTALLATION_TOKEN_RENEW_MS} left); throws {@link GitCredentialsError}.
   */
  gitToken(repo: string): Promise<string>;
}

/** An installation token with less time left than this is renewed before git gets it: a clone or push must not outlive it. */
export const INSTALLATION_TOKEN_RENEW_MS = 5 * 60_000;

/** Whether a failure to get a token can pass by asking again: GitHub unreachable, failing or limiting, not refusing. */
function retryableStatus(status: unknown): boolean {
  return typeof status !== 'number' || status >= 500 || status === 429;
}

/** `fn`'s answer, asked the first time it is wanted and kept; a failure is not kept. */
function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let kept: Promise<T> | null = null;
  return () => {
    if (kept === null) {
      kept = fn();
      kept.catch(() => {
        kept = null;
      });
    }
    return kept;
  };
}

/** Builds the clients of `access`; no request is sent until one is used. */
export function githubClients(access: GithubAccess, opts: GithubClientOptions): GithubClients {
  const build = (auth: Pick<ConstructorParameters<typeof GithubOctokit>[0] & object, 'auth' | 'authStrategy'>): GithubOctokit =>
    withHeaders(new GithubOctokit({ ...auth, ...clientOptions(access.apiUrl, opts) }), opts.headers);

  if (access.auth.kind === 'token') {
    const client = build({ auth: access.auth.token });
    const token = access.auth.token;
    return { octokitFor: async () => client, selfLogin: once(async () => (await client.rest.users.getAuthenticated()).data.login), gitToken: async () => token };
  }

  const { appId, privateKey } = access.auth;
  // Authenticated as the App itself (a JWT signed with its key): only for finding the installation of a repository.
  const app = build({ authStrategy: createAppAuth, auth: { appId, privateKey } });
  const byInstallation = new Map<number, GithubOctokit>();
  const byRepo = new Map<string, Promise<GithubOctokit>>();
  const lookUp = async (repo: string): Promise<GithubOctokit> => {
    const [owner, name] = splitRepo(repo);
    const { data } = await app.request('GET /repos/{owner}/{repo}/installation', { owner, repo: name });
    let client = byInstallation.get(data.id);
    if (client === undefined) {
      // auth-app creates the installation token on first use, keeps it, and replaces it before it expires.
      client = build({ authStrategy: createAppAuth, auth: { appId, privateKey, installationId: data.id } });
      byInstallation.set(data.id, client);
    }
    return client;
  };
  const octokitFor = (repo: string): Promise<GithubOctokit> => {
    let client = byRepo.get(repo);
    if (client === undefined) {
      client = lookUp(repo);
      byRepo.set(repo, client);
      // A failed look-up is not kept: the App may be installed on the repository by the next call.
      client.catch(() => byRepo.delete(repo));
    }
    return client;
  };
  type InstallationToken = { token: string; expiresAt: string };
  return {
    selfLogin: once(async () => {
      const { data } = await app.rest.apps.getAuthenticated();
      if (!data?.slug) throw new Error('GitHub named no slug for this App');
      return `${data.slug}[bot]`;
    }),
    octokitFor,
    async gitToken(repo) {
      try {
        const client = await octokitFor(repo);
        // auth-app keeps the token it made for the installation's API calls; the same one serves git.
        const kept = (await client.auth({ type: 'installation' })) as InstallationToken;
        if (Date.parse(kept.expiresAt) - Date.now() > INSTALLATION_TOKEN_RENEW_MS) return kept.token;
        return ((await client.auth({ type: 'installation', refresh: true })) as InstallationToken).token;
      } catch (err) {
        // Only the status is taken: the failure's request and response stay out of messages and traces.
        const status = (err as { status?: unknown } | null)?.status;
        const why = status === 404 ? 'is it installed on the repository?' : 'check GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_FILE';
        throw new GitCredentialsError(
          `GitHub App ${appId} could not get an installation token for ${repo}${typeof status === 'number' ? ` (HTTP ${status})` : ' (GitHub unreachable)'}: ${why}`,
          retryableStatus(status),
        );
      }
    },
  };
}

/** `owner` and `name` of `owner/name`. */
export function splitRepo(repo: string): [string, string] {
  const m = /^([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)\/([A-Za-z0-9._-]+)$/.exec(repo);
  if (m === null || m[2] === '.' || m[2] === '..') throw new InvalidRepoNameError(repo);
  return [m[1]!, m[2]!];
}

/** Thrown for a repository name that is not `owner/name` as GitHub spells them. */
export class InvalidRepoNameError extends Error {
  override readonly name = 'InvalidRepoNameError';
  constructor(readonly repo: string) {
    super(`${JSON.stringify(repo.slice(0, 200))} is not a GitHub repository name (owner/name)`);
  }
}

/** Constructor options shared by every client: base URL, the plugins' limits and a log without credentials. */
function clientOptions(apiUrl: string, opts: GithubClientOptions) {
  const { log } = opts;
  const unit = opts.retryUnitMs ?? 1_000;
  /** Whether to wait out a rate limit: a bounded number of times, and only waits short enough to sit through. */
  const onLimit = (which: 'primary' | 'secondary') => (retryAfter: number, req: { method: string; url: string }, _octokit: unknown, retryCount: number) => {
    const retrying = retryCount < MAX_RATE_LIMIT_RETRIES && retryAfter <= MAX_RATE_LIMIT_WAIT_S;
    // The route template only (`/repos/{owner}/{repo}/pulls`): never a header, so never a token.
    log.warn('github rate limit reached', { limit: which, method: req.method, route: req.url, retry_after_s: retryAfter, attempt: retryCount + 1, retrying });
    return retrying;
  };
  return {
    baseUrl: apiUrl,
    userAgent: 'agent-inbox',
    throttle: {
      onRateLimit: onLimit('primary'),
      onSecondaryRateLimit: onLimit('secondary'),
      retryAfterBaseValue: unit,
      ...(opts.paceWrites === false ? unpaced() : {}),
    },
    retry: { retries: MAX_TRANSIENT_RETRIES, doNotRetry: DO_NOT_RETRY, retryAfterBaseValue: unit },
    // Octokit's own lines name a route and a status at most; failures are reported by the callers, once.
    log: {
      debug: () => undefined,
      info: () => undefined,
      warn: (message: string) => log.warn('github client warning', { detail: String(message).slice(0, 500) }),
      error: (message: string) => log.debug('github request failed', { detail: String(message).slice(0, 500) }),
    },
  };
}

/** The throttling plugin's write and notification queues replaced by ones that wait for nothing. */
function unpaced() {
  type Group = NonNullable<NonNullable<ConstructorParameters<typeof GithubOctokit>[0]>['throttle']>['write'];
  const immediate = {
    key: () => ({ schedule: async (_job: unknown, fn: (...a: unknown[]) => unknown, ...args: unknown[]) => fn(...args) }),
  } as unknown as Group;
  return { write: immediate, notifications: immediate };
}

/** `client` with `headers` set on every request it sends. */
function withHeaders(client: GithubOctokit, headers: Record<string, string> | undefined): GithubOctokit {
  if (headers === undefined || Object.keys(headers).length === 0) return client;
  client.hook.before('request', (options) => {
    Object.assign(options.headers, headers);
  });
  return client;
}
