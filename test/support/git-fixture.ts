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

/** Every regular file under `dir` whose bytes contain `needle` (runsc keeps namespace files there that cannot be read: EINVAL). */
export function filesHolding(dir: string, needle: string): string[] {
  const found: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      // A working copy's disk image holds the files this walk reads through its mount under workspaces/.
      else if (e.isFile() && e.name !== 'workspace.img' && contents(p)?.includes(needle)) found.push(p);
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return found;
}

/** The bytes of file `p`, or null for a file the kernel will not read (EINVAL). */
function contents(p: string): Buffer | null {
  try {
    return fs.readFileSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
    return null;
  }
}
