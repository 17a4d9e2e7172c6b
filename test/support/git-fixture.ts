/**
 * Real local git repositories for tests: a bare "origin" with a `main` branch.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Runs git and returns trimmed stdout; throws with stderr on failure. */
export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, GIT_AUTHOR_NAME: 'Fixture', GIT_AUTHOR_EMAIL: 'fixture@example.test', GIT_COMMITTER_NAME: 'Fixture', GIT_COMMITTER_EMAIL: 'fixture@example.test' },
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

/** A fresh temp directory removed by the caller (or left for post-mortems under the OS temp dir). */
export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `agent-inbox-${prefix}-`));
}

/** Creates `origin.git` (bare) with one commit on `main` holding `files`; returns its path. */
export function makeOriginRepo(root: string, files: Record<string, string>): string {
  const origin = path.join(root, 'origin.git');
  const seed = path.join(root, 'seed');
  fs.mkdirSync(seed, { recursive: true });
  git(root, 'init', '--bare', '--initial-branch=main', origin);
  git(seed, 'init', '--initial-branch=main');
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(seed, name)), { recursive: true });
    fs.writeFileSync(path.join(seed, name), content);
  }
  git(seed, 'add', '-A');
  git(seed, 'commit', '-m', 'initial');
  git(seed, 'push', origin, 'main');
  fs.rmSync(seed, { recursive: true, force: true });
  return origin;
}

/** Commit id a branch of `repo` points at, or null when it does not exist. */
export function branchCommit(repo: string, branch: string): string | null {
  try {
    return git(repo, 'rev-parse', '--verify', '--quiet', `refs/heads/${branch}`);
  } catch {
    return null;
  }
}
