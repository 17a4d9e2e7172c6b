/**
 * Git operations on a task's working copy on the worker's host: clone, checkpoints
 * as tree ids, diffs, commits and pushes.
 *
 * The repository of a working copy lives outside it (`gitDirOf`): commands in the
 * sandbox can write every file of the working copy, and a `.git/config` they wrote
 * (a filter, a hook, an fsmonitor) would run on the host the next time git touched it.
 * Every call names the repository and work tree explicitly, so a `.git` a command
 * plants in the working copy is never read.
 *
 * Every call goes through the one runner (`runner.ts`: no shell, hooks, fsmonitor and protocols
 * off, a timeout, a cancellation signal); every call that reaches a remote goes through `remote.ts`
 * (the repository rules, hook-free pack programs for local targets, the worker's credentials).
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { target, type RemoteOptions } from './remote';
import { GIT_TIMEOUT_MS, GitAbortedError, GitError, InvalidGitArgumentError, run, type GitCallOptions, type GitFailureReason, type RunOptions } from './runner';

export { defaultRepoRules, GitCredentialsError, type GitCredential, type GitCredentials, type RemoteOptions } from './remote';
export { AGENT_AUTHOR, GIT_TIMEOUT_MS, GitAbortedError, GitError, InvalidGitArgumentError, type GitCallOptions, type GitFailureReason } from './runner';

/** A bounded view of the difference between two trees or commits. */
export interface DiffSummary {
  stat: string;
  patch: string;
  filesChanged: number;
}

/** The parts of a commit object publishing needs. */
export interface CommitInfo {
  tree: string;
  parents: string[];
  message: string;
}

// External diff drivers and textconv filters are commands too.
const DIFF_FLAGS = ['--no-ext-diff', '--no-textconv', '--no-color'];
const REF_NAME = /^(?!-)(?!.*\.\.)(?!.*\/\/)(?!.*@\{)[A-Za-z0-9._\/-]+(?<![./])$/;
const OBJECT_ID = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

/** Where the repository of the working copy at `workTree` lives: beside it, never inside it. */
export function gitDirOf(workTree: string): string {
  const abs = path.resolve(workTree);
  return path.join(path.dirname(abs), '.git-dirs', `${path.basename(abs)}.git`);
}

/** Runs git on the working copy at `dir` (its repository beside it, never a `.git` inside); returns stdout. */
export async function git(dir: string, args: string[], opts: Omit<RunOptions, 'cwd'> = {}): Promise<string> {
  return (await run(inRepo(dir, args), { ...opts, cwd: dir })).stdout;
}

function inRepo(dir: string, args: string[]): string[] {
  return ['--git-dir', gitDirOf(dir), '--work-tree', path.resolve(dir), ...args];
}

/** `branch` when it is a plain branch name git cannot read as an option; throws otherwise. */
export function checkBranch(branch: string): string {
  if (!REF_NAME.test(branch) || branch.endsWith('.lock')) throw new InvalidGitArgumentError('branch name', branch);
  return branch;
}

/** `id` when it is a full object id; throws otherwise. */
export function checkObject(id: string): string {
  if (!OBJECT_ID.test(id)) throw new InvalidGitArgumentError('object id', id);
  return id;
}

const NETWORK = /could not resolve host|could not resolve hostname|connection (timed out|refused|reset)|operation timed out|failed to connect|early eof|rpc failed|the remote end hung up unexpectedly|temporary failure/i;
/** What a remote says when the repository or branch is not there or not ours to read. */
export const UNAVAILABLE =
  /repository not found|does not appear to be a git repository|does not exist|not found in upstream|could not find remote branch|authentication failed|could not read username|could not read password|permission denied|access denied|returned error: 40[134]/i;
const REJECTED = /\[rejected\]|\[remote rejected\]|non-fast-forward|fetch first|protected branch/i;

/** Rethrows `err` with `reason` when its stderr matches `pattern` (and is no network failure), else as it is. */
export function classify(err: unknown, pattern: RegExp, reason: GitFailureReason): never {
  if (err instanceof GitError && !NETWORK.test(err.stderr) && pattern.test(err.stderr)) {
    throw new GitError(err.args, err.exitCode, err.stderr, reason, { cause: err });
  }
  throw err;
}

function clonePrefix(dest: string): string {
  return `.${path.basename(dest)}.clone-`;
}

/**
 * Clone `repo` at `baseBranch` into `dest`. The clone is made in a temporary sibling and renamed
 * into place, so a crash never leaves a half clone that looks like a working copy.
 * A missing repository or branch fails with reason `unavailable`.
 */
export async function clone(repo: string, baseBranch: string, dest: string, opts: RemoteOptions = {}): Promise<void> {
  checkBranch(baseBranch);
  const parent = path.dirname(path.resolve(dest));
  const gitDir = gitDirOf(dest);
  await fs.mkdir(path.dirname(gitDir), { recursive: true });
  await removeCloneLeftovers(dest);
  // Without its work tree a repository is a leftover of a clone that died before the rename below.
  await fs.rm(gitDir, { recursive: true, force: true });
  const tmp = path.join(parent, `${clonePrefix(dest)}${randomBytes(6).toString('hex')}`);
  const t = await target(repo, opts);
  try {
    // --no-local: a local origin is read through upload-pack like any remote, never hard-linked or copied file by file.
    const args = ['clone', '--quiet', '--no-local', ...t.uploadPack, '--branch', baseBranch, '--single-branch', '--no-tags', `--separate-git-dir=${gitDir}`];
    await run([...args, '--', t.url, tmp], { config: t.config, timeoutMs: opts.timeoutMs ?? GIT_TIMEOUT_MS.clone, signal: opts.signal });
    // The `.git` file clone leaves would point commands in the sandbox at the host's repository path.
    await fs.rm(path.join(tmp, '.git'), { force: true });
    await fs.rename(tmp, dest);
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true });
    await fs.rm(gitDir, { recursive: true, force: true });
    classify(err, UNAVAILABLE, 'unavailable');
  } finally {
    await t.release();
  }
}

/**
 * Whether `dir` is a complete working copy (its work tree and its repository both present).
 * A working copy made before repositories moved out of work trees is moved over here.
 */
export async function isWorkingCopy(dir: string): Promise<boolean> {
  const gitDir = gitDirOf(dir);
  const inside = path.join(dir, '.git');
  const [outer, inner] = await Promise.all([fs.stat(path.join(gitDir, 'HEAD')).catch(() => null), fs.lstat(inside).catch(() => null)]);
  if (outer === null && inner?.isDirectory()) {
    await fs.mkdir(path.dirname(gitDir), { recursive: true });
    await fs.rename(inside, gitDir);
    return true;
  }
  if (outer === null) return false;
  return (await fs.stat(dir).catch(() => null))?.isDirectory() ?? false;
}

/** Remove a working copy and any half clone of it; succeeds when neither exists. */
export async function removeWorkingCopy(dest: string): Promise<void> {
  await removeCloneLeftovers(dest);
  await fs.rm(dest, { recursive: true, force: true });
  await fs.rm(gitDirOf(dest), { recursive: true, force: true });
}

async function removeCloneLeftovers(dest: string): Promise<void> {
  const parent = path.dirname(path.resolve(dest));
  const prefix = clonePrefix(dest);
  let names: string[];
  try {
    names = await fs.readdir(parent);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const name of names) {
    if (name.startsWith(prefix)) await fs.rm(path.join(parent, name), { recursive: true, force: true });
  }
}

/** The commit HEAD points at. */
export async function headCommit(dir: string): Promise<string> {
  return (await git(dir, ['rev-parse', '--verify', 'HEAD^{commit}'])).trim();
}

/**
 * Tree id of the working copy as it is now, untracked files included and ignored ones not,
 * written to the object store without touching HEAD or the repository's index.
 */
export async function snapshotTree(dir: string, opts: GitCallOptions = {}): Promise<string> {
  const gitDir = gitDirOf(dir);
  const index = path.join(gitDir, `agent-snapshot-${process.pid}-${randomBytes(6).toString('hex')}.index`);
  try {
    // Seeding from the real index lets git skip hashing files whose stat data has not changed. The copy keeps
    // the index's own mtime: git re-hashes every entry not older than that ("racy git"), so a same-size edit
    // made in the same second as the index was written is still seen (git compares whole seconds).
    const real = path.join(gitDir, 'index');
    const st = await fs.stat(real).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
      return null;
    });
    if (st) {
      await fs.copyFile(real, index);
      await fs.utimes(index, st.atime, st.mtime);
    }
    const env = { GIT_INDEX_FILE: index };
    await git(dir, ['add', '--all', '--', '.'], { env, signal: opts.signal });
    return (await git(dir, ['write-tree'], { env, signal: opts.signal })).trim();
  } finally {
    await fs.rm(index, { force: true });
  }
}

/**
 * Make the working copy exactly `tree`: every file of the tree written, every other
 * untracked file or directory removed. Ignored files are kept (dependencies installed
 * by earlier steps survive); the repository lives outside the work tree and is untouched. The index is reset to `tree`.
 */
export async function restoreTree(dir: string, tree: string, opts: GitCallOptions = {}): Promise<void> {
  checkObject(tree);
  const { signal } = opts;
  await git(dir, ['read-tree', tree], { signal });
  // -f overwrites modified files and replaces files or directories that stand in the way.
  await git(dir, ['checkout-index', '--all', '--force', '-u'], { signal });
  // -ff also removes nested repositories a step may have cloned; no -x, see above.
  await git(dir, ['clean', '-ffdq'], { signal });
}

/** Repo-relative paths that differ between two trees (a rename counts as both paths), sorted. */
export async function changedPaths(dir: string, from: string, to: string, opts: GitCallOptions = {}): Promise<string[]> {
  const out = await git(dir, ['diff', ...DIFF_FLAGS, '--no-renames', '--name-only', '-z', checkObject(from), checkObject(to), '--'], { signal: opts.signal });
  return out.split('\0').filter(Boolean).sort();
}

/** Stat, patch and number of files changed between two trees or commits, optionally limited to `paths`. */
export async function diff(dir: string, from: string, to: string, paths?: readonly string[], opts: GitCallOptions = {}): Promise<DiffSummary> {
  checkObject(from);
  checkObject(to);
  // An explicit empty list limits the diff to nothing; git would read it as "everything".
  if (paths && paths.length === 0) return { stat: '', patch: '', filesChanged: 0 };
  // Literal pathspecs: a path like ":(top)" or "*" means that file, not a pattern.
  const base = ['--literal-pathspecs', 'diff', ...DIFF_FLAGS, '--find-renames'];
  const tail = [from, to, '--', ...(paths ?? [])];
  const [stat, patch, names] = await Promise.all([
    git(dir, [...base, '--stat=200', ...tail], { signal: opts.signal }),
    git(dir, [...base, '--patch', ...tail], { signal: opts.signal }),
    git(dir, [...base, '--name-only', '-z', ...tail], { signal: opts.signal }),
  ]);
  return { stat: stat.trimEnd(), patch, filesChanged: names.split('\0').filter(Boolean).length };
}

/** Tree, parents and message of a commit. */
export async function readCommit(dir: string, commit: string): Promise<CommitInfo> {
  const raw = await git(dir, ['cat-file', 'commit', checkObject(commit)]);
  const split = raw.indexOf('\n\n');
  const headers = (split === -1 ? raw : raw.slice(0, split)).split('\n');
  const message = split === -1 ? '' : raw.slice(split + 2);
  const tree = headers.find((h) => h.startsWith('tree '))?.slice(5) ?? '';
  const parents = headers.filter((h) => h.startsWith('parent ')).map((h) => h.slice(7));
  return { tree, parents, message };
}

/** Text of `file` (repo-relative) at `commit`, or null when the commit has no regular file there. */
export async function readTextAt(dir: string, commit: string, file: string): Promise<string | null> {
  const entry = await git(dir, ['ls-tree', '-z', checkObject(commit), '--', file]);
  // "<mode> <type> <id>\t<path>"; a symlink (120000) holds a link target, not the file's text.
  const match = /^(100644|100755) blob ([0-9a-f]+)\t/.exec(entry);
  if (!match) return null;
  return git(dir, ['cat-file', 'blob', match[2]!]);
}

/** The blob id of regular file `file` in `tree`, or null when the tree holds no such file. */
export async function blobIdAt(dir: string, tree: string, file: string): Promise<string | null> {
  const entry = await git(dir, ['ls-tree', '-z', checkObject(tree), '--', file]);
  const match = /^(100644|100755) blob ([0-9a-f]+)\t/.exec(entry);
  return match ? match[2]! : null;
}

/** Commit a local branch points at, or null when it does not exist. */
export async function branchTip(dir: string, branch: string): Promise<string | null> {
  const { stdout, code } = await run(inRepo(dir, ['rev-parse', '--verify', '--quiet', `refs/heads/${checkBranch(branch)}^{commit}`]), {
    cwd: dir,
    okCodes: [1],
  });
  return code === 0 ? stdout.trim() : null;
}

/** Create a commit of `tree` on top of `parent` with the agent as author; returns its id. */
export async function commitTree(dir: string, message: string, tree: string, parent: string): Promise<string> {
  // The message goes through stdin: no argument-length limit, nothing read as an option.
  const out = await git(dir, ['commit-tree', checkObject(tree), '-p', checkObject(parent), '-F', '-'], { input: message });
  return out.trim();
}

/** Point a local branch at `commit`, only if it still points at `expected` (null: must not exist yet). */
export async function updateBranch(dir: string, branch: string, commit: string, expected: string | null): Promise<void> {
  await git(dir, ['update-ref', `refs/heads/${checkBranch(branch)}`, checkObject(commit), expected === null ? '' : checkObject(expected)]);
}

/** Commit a branch of a remote points at, or null when the remote has no such branch. */
export async function remoteBranchTip(remote: string, branch: string, opts: RemoteOptions = {}): Promise<string | null> {
  const ref = `refs/heads/${checkBranch(branch)}`;
  const t = await target(remote, opts);
  let out: string;
  try {
    out = (await run(['ls-remote', ...t.uploadPack, '--', t.url, ref], { config: t.config, timeoutMs: opts.timeoutMs ?? GIT_TIMEOUT_MS.query, signal: opts.signal })).stdout;
  } catch (err) {
    classify(err, UNAVAILABLE, 'unavailable');
  } finally {
    await t.release();
  }
  for (const line of out.split('\n')) {
    const [id, name] = line.split('\t');
    if (name === ref && id) return id;
  }
  return null;
}

/**
 * Push `commit` to `branch` of `remote` (never forced). Idempotent: when the remote branch
 * already points at `commit` nothing is pushed. A refusal by the remote fails with reason `rejected`.
 */
export async function push(dir: string, remote: string, commit: string, branch: string, opts: RemoteOptions = {}): Promise<'pushed' | 'up-to-date'> {
  checkObject(commit);
  if ((await remoteBranchTip(remote, branch, opts)) === commit) return 'up-to-date';
  const t = await target(remote, opts);
  try {
    const args = ['push', '--quiet', '--no-verify', ...t.receivePack, '--', t.url, `${commit}:refs/heads/${checkBranch(branch)}`];
    await git(dir, args, { config: t.config, timeoutMs: opts.timeoutMs ?? GIT_TIMEOUT_MS.push, signal: opts.signal });
  } catch (err) {
    classify(err, REJECTED, 'rejected');
  } finally {
    await t.release();
  }
  return 'pushed';
}

/** Delete `branch` from `remote`; succeeds when it is already absent. Needs no working copy. */
export async function deleteRemoteBranch(remote: string, branch: string, opts: RemoteOptions = {}): Promise<void> {
  if ((await remoteBranchTip(remote, branch, opts)) === null) return;
  // `git push` needs some repository to run in; an empty one is enough for a deletion.
  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-inbox-git-'));
  const t = await target(remote, opts).catch(async (err: unknown) => {
    await fs.rm(scratch, { recursive: true, force: true });
    throw err;
  });
  try {
    await run(['init', '--quiet', '--bare', scratch], { signal: opts.signal });
    const args = ['--git-dir', scratch, 'push', '--quiet', '--no-verify', ...t.receivePack, '--', t.url, `:refs/heads/${checkBranch(branch)}`];
    await run(args, { cwd: scratch, config: t.config, timeoutMs: opts.timeoutMs ?? GIT_TIMEOUT_MS.push, signal: opts.signal });
  } catch (err) {
    if (err instanceof GitAbortedError) throw err;
    // Someone else deleted it between our look and our push: the outcome we wanted.
    if ((await remoteBranchTip(remote, branch, opts)) !== null) classify(err, REJECTED, 'rejected');
  } finally {
    await t.release();
    await fs.rm(scratch, { recursive: true, force: true });
  }
}

/**
 * Paths a snapshot of the working copy would read: untracked files that are not ignored, and tracked
 * files whose stat data differs from the index. git only stats here; nothing is read or hashed.
 */
export async function snapshotCandidates(dir: string): Promise<string[]> {
  const out = await git(dir, ['ls-files', '-z', '--others', '--modified', '--exclude-standard']);
  return [...new Set(out.split('\0').filter(Boolean))];
}

/** A blob in a tree: its mode (`100644`, `100755`, `120000`), object id and repo-relative path. */
export interface TreeBlob {
  mode: string;
  id: string;
  path: string;
}

/** Blobs at any depth of `commit`'s tree whose base name `keep` accepts, sorted by path. Reads objects only, never the work tree. */
export async function treeBlobs(dir: string, commit: string, keep: (basename: string) => boolean): Promise<TreeBlob[]> {
  const out = await git(dir, ['ls-tree', '-r', '-z', '--full-tree', checkObject(commit)]);
  const blobs: TreeBlob[] = [];
  for (const entry of out.split('\0')) {
    // "<mode> <type> <id>\t<path>"; submodules (commit entries) have no content here.
    const match = /^(\d{6}) blob ([0-9a-f]+)\t(.+)$/s.exec(entry);
    if (match && keep(path.posix.basename(match[3]!))) blobs.push({ mode: match[1]!, id: match[2]!, path: match[3]! });
  }
  return blobs.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Repo-relative paths of every file the index tracks (in a fresh clone: the base commit's files, symlinks included). */
export async function trackedPaths(dir: string): Promise<string[]> {
  return (await git(dir, ['ls-files', '-z', '--cached'])).split('\0').filter(Boolean);
}

/**
 * Everything in the working copy git does not track, ignored files included: a wholly untracked
 * directory is one entry ending in `/`. git never reports a path beneath a symlink (a link is a leaf to it).
 */
export async function untrackedPaths(dir: string): Promise<string[]> {
  // Without any --exclude option no ignore rule applies, so this one listing is the untracked files and the ignored ones.
  return (await git(dir, ['ls-files', '-z', '--others', '--directory'])).split('\0').filter(Boolean);
}

/** Remove every untracked and ignored file and directory of the working copy, nested repositories too. */
export async function removeUntracked(dir: string): Promise<void> {
  await git(dir, ['clean', '-ffdxq']);
}
