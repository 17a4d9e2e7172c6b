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
import { WEBHOOK_SECRET } from './github-deliveries';
import { startGithubMock, type GithubMock } from './github-mock';
import { startTestStack, startTestTemporal } from './stack';

/** The token the backend calls the mock with (a personal access token's shape). */
export const GITHUB_TEST_TOKEN = 'ghp_pullRequestTestToken0123456789abcdef';
/** The inbox's public URL the backend links to. */
export const GITHUB_TEST_PUBLIC_URL = 'https://inbox.example.test';

/** A running backend against the mock GitHub. */
export interface GithubStack {
  temporal: DevServer;
  stack: Stack;
  github: GithubMock;
  /** The backend's URL. */
  base: string;
  /** The repository's bare origin. */
  bare: string;
  stop(): Promise<void>;
}

/** Starts the backend for repository `repo` (`owner/name`, whose README the origin holds) with tasks from issues on `planner`. */
export async function startGithubStack(name: string, opts: { repo: string; readme: string; planner: unknown; env?: Record<string, string> }): Promise<GithubStack> {
  const [owner, repoName] = opts.repo.split('/') as [string, string];
  const temporal = await startTestTemporal();
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
  const teamsFile = path.join(root, 'teams.yaml');
  fs.writeFileSync(teamsFile, ['teams:', '  platform: {}', 'github:', '  repos:', `    ${opts.repo}: { team: platform }`, ''].join('\n'));
  const stack = await startTestStack(temporal, path.join(root, 'data'), `${name}-${process.pid}`, {
    TEAMS_FILE: teamsFile,
    SANDBOX_DRIVER: 'process',
    GITHUB_WEBHOOK_SECRET_FILE: secretFile,
    GITHUB_GIT_BASE: gitBase,
    GITHUB_PLANNER: JSON.stringify(opts.planner),
    GITHUB_API_URL: github.apiUrl,
    GITHUB_TOKEN_FILE: tokenFile,
    PUBLIC_URL: GITHUB_TEST_PUBLIC_URL,
    REPO_LOCAL_ROOTS: path.join(gitBase, owner),
    ...opts.env,
  });
  return {
    temporal,
    stack,
    github,
    base: stack.url!,
    bare,
    async stop() {
      await stack.stop();
      await github.stop();
      await temporal.stop();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}
