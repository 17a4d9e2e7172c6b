/**
 * The backend wired to a mock GitHub, as the GitHub end-to-end tests run it: a real Temporal dev server, the
 * mock (Prism over GitHub's OpenAPI description in front of a stateful fake), a local bare repository under
 * GITHUB_GIT_BASE as `owner/name.git`, a webhook secret and a token in files only the owner reads, and the
 * repository mapped to team `platform`. Recipe tasks on the process driver.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Stack } from '../../workers/stack';
import type { DevServer } from '../../workers/temporal-server';
import { branchCommit, makeOriginRepo, tempDir } from './git-fixture';
import { startGitHttpServer, type GitHttpServer } from './git-http-server';
import { WEBHOOK_SECRET } from './github-deliveries';
import { startGithubMock, type GithubMock } from './github-mock';
import { stackEnv, startTestStack, startTestTemporal } from './stack';

/** The token the backend calls the mock with (a personal access token's shape). */
export const GITHUB_TEST_TOKEN = 'ghp_pullRequestTestToken0123456789abcdef';
/** The inbox's public URL the backend links to. */
export const GITHUB_TEST_PUBLIC_URL = 'https://inbox.example.test';

/** A running backend against the mock GitHub. */
export interface GithubStack {
  temporal: DevServer;
  stack: Stack;
  /** The task queue the stack's workers poll. */
  queue: string;
  github: GithubMock;
  /** The backend's URL. */
  base: string;
  /** The repository's bare origin. */
  bare: string;
  /** The smart-HTTP server in front of GITHUB_GIT_BASE, when the stack was asked for one. */
  gitServer: GitHttpServer | null;
  /** The environment of a worker-only backend process for this stack (same Temporal, task queue, data and GitHub). */
  workerEnv: Record<string, string>;
  stop(): Promise<void>;
}

/** What a GitHub stack may run with instead of the defaults (a token, a local GITHUB_GIT_BASE). */
export interface GithubStackOptions {
  repo: string;
  readme: string;
  planner: unknown;
  env?: Record<string, string>;
  /**
   * Act as this GitHub App instead of with the token: the mock knows `publicKey` as App `appId`'s, the backend is
   * given `privateKey` (which may be another key, to see a wrong one refused).
   */
  app?: { appId: number; publicKey: string; privateKey: string };
  /**
   * Serve GITHUB_GIT_BASE over smart HTTP, requiring user `x-access-token` with the token (or, with `app`, an
   * installation token the mock issued and that has not expired), as GitHub's git does.
   */
  gitOverHttp?: boolean;
  /** false: the API alone, its workers started by the test as processes of their own with `workerEnv`. */
  workers?: boolean;
  /** Extra arguments for the Temporal dev server (e.g. a dynamic config value). */
  temporalArgs?: string[];
}

/** Starts the backend for repository `repo` (`owner/name`, whose README the origin holds) with tasks from issues on `planner`. */
export async function startGithubStack(name: string, opts: GithubStackOptions): Promise<GithubStack> {
  const [owner, repoName] = opts.repo.split('/') as [string, string];
  const temporal = await startTestTemporal(opts.temporalArgs);
  const github = await startGithubMock();
  github.state.addRepo(opts.repo, { default_branch: 'main' });
  const root = tempDir(name);
  const gitBase = path.join(root, 'git');
  const made = makeOriginRepo(path.join(gitBase, owner), { 'README.md': opts.readme });
  const bare = path.join(gitBase, owner, `${repoName}.git`);
  fs.renameSync(made, bare);
  // GitHub knows where a branch is: a pull request's head follows what is pushed to the bare repository.
  github.state.followGit(opts.repo, (branch) => branchCommit(bare, branch));
  const secretFile = path.join(root, 'github-secret');
  fs.writeFileSync(secretFile, `${WEBHOOK_SECRET}\n`, { mode: 0o600 });
  const tokenFile = path.join(root, 'github-token');
  fs.writeFileSync(tokenFile, `${GITHUB_TEST_TOKEN}\n`, { mode: 0o600 });
  let auth: Record<string, string> = { GITHUB_TOKEN_FILE: tokenFile };
  if (opts.app !== undefined) {
    github.state.setApp(opts.app.appId, opts.app.publicKey);
    const keyFile = path.join(root, 'github-app-key.pem');
    fs.writeFileSync(keyFile, opts.app.privateKey, { mode: 0o600 });
    auth = { GITHUB_APP_ID: String(opts.app.appId), GITHUB_APP_PRIVATE_KEY_FILE: keyFile };
  }
  let gitServer: GitHttpServer | null = null;
  let git: Record<string, string> = { GITHUB_GIT_BASE: gitBase, REPO_LOCAL_ROOTS: path.join(gitBase, owner) };
  if (opts.gitOverHttp) {
    const accepts = opts.app === undefined ? (given: string) => given === GITHUB_TEST_TOKEN : (given: string) => github.state.acceptsInstallationToken(given);
    gitServer = await startGitHttpServer(gitBase, 'x-access-token', accepts);
    git = { GITHUB_GIT_BASE: gitServer.origin, REPO_ALLOW: `${gitServer.origin}/**` };
  }
  const teamsFile = path.join(root, 'teams.yaml');
  fs.writeFileSync(teamsFile, ['teams:', '  platform: {}', 'github:', '  repos:', `    ${opts.repo}: { team: platform }`, ''].join('\n'));
  const dataDir = path.join(root, 'data');
  const queue = `${name}-${process.pid}`;
  const extra: Record<string, string> = {
    TEAMS_FILE: teamsFile,
    SANDBOX_DRIVER: 'process',
    GITHUB_WEBHOOK_SECRET_FILE: secretFile,
    GITHUB_PLANNER: JSON.stringify(opts.planner),
    GITHUB_API_URL: github.apiUrl,
    PUBLIC_URL: GITHUB_TEST_PUBLIC_URL,
    ...auth,
    ...git,
    ...opts.env,
  };
  const stack = await startTestStack(temporal, dataDir, queue, opts.workers === false ? { ...extra, ROLES: 'api' } : extra);
  return {
    temporal,
    stack,
    queue,
    github,
    base: stack.url!,
    bare,
    workerEnv: stackEnv(temporal, dataDir, queue, { ...extra, ROLES: 'worker' }),
    gitServer,
    async stop() {
      await stack.stop();
      await gitServer?.stop();
      await github.stop();
      await temporal.stop();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}
