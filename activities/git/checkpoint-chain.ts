/**
 * Checkpoints another worker can restore. Every checkpoint tree a task reaches is recorded as a commit on one
 * chain (`refs/agent/checkpoints`, rooted at the base commit), and the chain can be packed as a git bundle: a
 * worker that never saw the task clones the base commit, unbundles the chain and restores any tree on it.
 * Trees are content-addressed, so a restored checkpoint is exactly the tree the workflow names or nothing.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { target, type RemoteOptions } from './remote';
import { GIT_TIMEOUT_MS, GitError } from './runner';
import { checkBranch, checkObject, classify, git, gitDirOf, remoteBranchTip, UNAVAILABLE } from './workspace';

/** The ref the chain of checkpoint commits lives on, in the working copy's repository only (never pushed). */
const CHAIN_REF = 'refs/agent/checkpoints';
const CHAIN_MESSAGE = 'Agent checkpoint\n';
/** Where the chain stood when its bundle last reached the artifact store. */
const BUNDLED_REF = 'refs/agent/checkpoints-bundled';

/** The commit at the tip of the chain, or null before the first checkpoint was recorded. */
export async function chainTip(dir: string): Promise<string | null> {
  return resolveCommit(dir, CHAIN_REF);
}

/**
 * Record `tree` on the chain (a commit on its tip, or on `root` for the first): afterwards the chain reaches it.
 * Nothing is written when the tip already holds that tree. Returns whether a commit was made.
 */
export async function recordCheckpoint(dir: string, tree: string, root: string): Promise<boolean> {
  const tip = await chainTip(dir);
  const parent = tip ?? checkObject(root);
  const parentTree = (await git(dir, ['rev-parse', '--verify', `${parent}^{tree}`])).trim();
  if (parentTree === checkObject(tree)) return false;
  const commit = (await git(dir, ['commit-tree', tree, '-p', parent, '-F', '-'], { input: CHAIN_MESSAGE })).trim();
  await git(dir, ['update-ref', CHAIN_REF, commit, tip ?? '']);
  return true;
}

/** The chain packed as a bundle whose only prerequisite is `root`, with the tip it holds; null when no checkpoint was recorded. */
export async function bundleChain(dir: string, root: string, opts: { signal?: AbortSignal } = {}): Promise<{ bytes: Buffer; tip: string } | null> {
  const tip = await chainTip(dir);
  if (tip === null) return null;
  const file = scratchFile(dir, 'bundle');
  try {
    await git(dir, ['bundle', 'create', '--quiet', file, CHAIN_REF, `^${checkObject(root)}`], { signal: opts.signal });
    return { bytes: await fs.readFile(file), tip };
  } finally {
    await fs.rm(file, { force: true });
  }
}

/** The chain commit the artifact store's bundle was last known to hold, or null. */
export async function bundledTip(dir: string): Promise<string | null> {
  return resolveCommit(dir, BUNDLED_REF);
}

/** Note that the store's bundle holds the chain up to `tip`. */
export async function markBundled(dir: string, tip: string): Promise<void> {
  await git(dir, ['update-ref', BUNDLED_REF, checkObject(tip)]);
}

/** Thrown when a bundle cannot be applied to the working copy (its base commit is missing, or it is no chain of ours). */
export class CheckpointBundleError extends Error {
  override readonly name = 'CheckpointBundleError';
}

/** Unpack a bundle made by {@link bundleChain} into the working copy's repository and point the chain at it. */
export async function unbundleChain(dir: string, bundle: Buffer, opts: { signal?: AbortSignal } = {}): Promise<void> {
  const file = scratchFile(dir, 'bundle');
  await fs.writeFile(file, bundle, { mode: 0o600 });
  try {
    try {
      // Checks the prerequisite (the base commit) is here before anything is written.
      await git(dir, ['bundle', 'verify', '--quiet', file], { signal: opts.signal });
    } catch (err) {
      if (err instanceof GitError) throw new CheckpointBundleError(`the checkpoint bundle does not apply to this clone: ${err.message}`, { cause: err });
      throw err;
    }
    const out = await git(dir, ['bundle', 'unbundle', file], { signal: opts.signal });
    const line = out.split('\n').find((l) => l.endsWith(` ${CHAIN_REF}`));
    const commit = line?.split(' ', 1)[0];
    if (commit === undefined) throw new CheckpointBundleError(`the checkpoint bundle holds no ${CHAIN_REF}`);
    await git(dir, ['update-ref', CHAIN_REF, checkObject(commit)]);
  } finally {
    await fs.rm(file, { force: true });
  }
}

/** Whether the working copy's repository holds `id` as an object of `type`. */
export async function hasObject(dir: string, id: string, type: 'commit' | 'tree'): Promise<boolean> {
  return (await resolveObject(dir, `${checkObject(id)}^{${type}}`)) !== null;
}

/** Detach HEAD at `commit`: a working copy restored elsewhere stands on the task's base commit, wherever its branch moved since. */
export async function detachHead(dir: string, commit: string): Promise<void> {
  await git(dir, ['update-ref', '--no-deref', 'HEAD', checkObject(commit)]);
}

/**
 * Fetch `branch` of `remote` into the local branch of the same name (replacing it): what a task pushed is what
 * its next publish builds on. Returns the tip, or null when the remote has no such branch.
 */
export async function fetchBranch(dir: string, remote: string, branch: string, opts: RemoteOptions = {}): Promise<string | null> {
  const ref = `refs/heads/${checkBranch(branch)}`;
  const tip = await remoteBranchTip(remote, branch, opts);
  if (tip === null) return null;
  const t = await target(remote, opts);
  try {
    await git(dir, ['fetch', '--quiet', '--no-tags', ...t.uploadPack, '--', t.url, `+${ref}:${ref}`], {
      config: t.config,
      timeoutMs: opts.timeoutMs ?? GIT_TIMEOUT_MS.clone,
      signal: opts.signal,
    });
  } catch (err) {
    classify(err, UNAVAILABLE, 'unavailable');
  } finally {
    await t.release();
  }
  return tip;
}

/** Point the local `branch` at `commit`, or remove it when null. */
export async function pinBranch(dir: string, branch: string, commit: string | null): Promise<void> {
  const ref = `refs/heads/${checkBranch(branch)}`;
  if (commit === null) await git(dir, ['update-ref', '-d', ref]);
  else await git(dir, ['update-ref', ref, checkObject(commit)]);
}

async function resolveCommit(dir: string, rev: string): Promise<string | null> {
  return resolveObject(dir, `${rev}^{commit}`);
}

async function resolveObject(dir: string, rev: string): Promise<string | null> {
  // Exit 1 with nothing printed: no such object.
  return (await git(dir, ['rev-parse', '--verify', '--quiet', rev], { okCodes: [1] })).trim() || null;
}

function scratchFile(dir: string, ext: string): string {
  return path.join(gitDirOf(dir), `agent-${process.pid}-${randomBytes(6).toString('hex')}.${ext}`);
}
