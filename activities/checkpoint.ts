/**
 * Bringing a working copy back to the checkpoint a step or tool call must start from, and keeping every
 * checkpoint where another worker can restore it (the artifact store, shared between workers).
 */
import type { ArtifactStorage } from './artifacts/store';
import { ArtifactNotFoundError } from './artifacts/store';
import { activityFailure } from './failures';
import { bundledTip, bundleChain, chainTip, hasObject, markBundled, recordCheckpoint, unbundleChain } from './git/checkpoint-chain';
import { headCommit, isWorkingCopy, restoreTree, snapshotTree } from './git/workspace';
import { assertTreeWithinBounds, treeOverBounds } from './tree-bounds';
import type { SandboxDriver, SandboxHandle } from './sandbox/driver';

/**
 * Make the working copy at `dir` exactly `checkpoint` before a command runs. A retried attempt first kills
 * what an earlier attempt left running (it outlives a killed worker); a copy that differs is restored and
 * handed back to the sandbox. `verify: false` trusts that a first attempt finds the tree as the last call
 * left it. Returns the tree found when it had to be restored, else null.
 */
export async function ensureAtCheckpoint(
  driver: SandboxDriver,
  handle: SandboxHandle,
  dir: string,
  checkpoint: string,
  opts: { attempt: number; verify?: boolean; signal?: AbortSignal },
): Promise<string | null> {
  const retry = opts.attempt > 1;
  if (retry) await driver.killAll(handle);
  if (opts.verify === false && !retry) return null;
  // A tree over the bounds is not the checkpoint (which was within them): restore without hashing it.
  const found = await frozen(driver, handle, async () => ((await treeOverBounds(dir)) === null ? snapshotTree(dir, { signal: opts.signal }) : 'over-bounds'));
  if (found === checkpoint) return null;
  if (!retry) await driver.killAll(handle);
  await restoreTree(dir, checkpoint, { signal: opts.signal });
  await driver.syncWorkdir?.(handle);
  return found;
}

/**
 * The checkpoint of the working copy at `dir` after a command: its bounds checked and its tree taken
 * while nothing in the sandbox runs, so no process left running can swap a path under the worker's git.
 */
export async function checkpointAfter(driver: SandboxDriver, handle: SandboxHandle, dir: string, signal?: AbortSignal): Promise<string> {
  // The task ended while its command ran (a cancel tore the sandbox down): there is nothing to checkpoint.
  if (!(await isWorkingCopy(dir))) throw activityFailure('SandboxLost', `the working copy at ${dir} was removed while the command ran`);
  return frozen(driver, handle, async () => {
    await assertTreeWithinBounds(dir);
    return snapshotTree(dir, { signal });
  });
}

function frozen<T>(driver: SandboxDriver, handle: SandboxHandle, work: () => Promise<T>): Promise<T> {
  return driver.whileFrozen ? driver.whileFrozen(handle, work) : work();
}

/** The artifact holding a task's checkpoint chain as a git bundle (see `git/checkpoint-chain.ts`). */
export const CHECKPOINT_BUNDLE = 'checkpoints.bundle';

/**
 * Keep `tree` where any worker can restore it: recorded on the working copy's checkpoint chain, and the chain
 * bundled into the artifact store. Nothing is written when the chain's tip already holds that tree.
 */
export async function saveCheckpoint(
  artifacts: ArtifactStorage,
  taskId: string,
  dir: string,
  tree: string,
  opts: { signal?: AbortSignal; /** Write the bundle even when the chain did not change (a release must leave one behind). */ always?: boolean } = {},
): Promise<boolean> {
  const root = await headCommit(dir);
  const recorded = await recordCheckpoint(dir, tree, root);
  // An attempt that recorded the tree but died before the store had the bundle left the tip unbundled.
  if (!recorded && !opts.always && (await chainTip(dir)) === (await bundledTip(dir))) return false;
  const bundle = await bundleChain(dir, root, { signal: opts.signal });
  if (bundle !== null) {
    await artifacts.put(taskId, CHECKPOINT_BUNDLE, bundle.bytes);
    await markBundled(dir, bundle.tip);
  }
  return recorded;
}

/**
 * Bring a fresh clone of the task's base commit to `tree`: the base's own tree is there already, any other
 * comes from the task's bundle in the artifact store. A tree found nowhere fails as `CheckpointLost`.
 */
export async function restoreCheckpoint(artifacts: ArtifactStorage, taskId: string, dir: string, tree: string, signal?: AbortSignal): Promise<void> {
  await haveCheckpoint(artifacts, taskId, dir, tree, signal);
  await restoreTree(dir, tree, { signal });
}

/** Make sure the working copy's repository holds the tree `tree`, from the task's bundle when it does not; the files are left alone. */
export async function haveCheckpoint(artifacts: ArtifactStorage, taskId: string, dir: string, tree: string, signal?: AbortSignal): Promise<void> {
  if (!(await hasObject(dir, tree, 'tree'))) {
    let bundle: Buffer;
    try {
      bundle = await artifacts.readByName(taskId, CHECKPOINT_BUNDLE);
    } catch (err) {
      if (err instanceof ArtifactNotFoundError) throw activityFailure('CheckpointLost', `task ${taskId} has no checkpoint bundle in the artifact store, so checkpoint ${tree} cannot be restored here`, { cause: err });
      throw err;
    }
    await unbundleChain(dir, bundle, { signal });
    if (!(await hasObject(dir, tree, 'tree'))) throw activityFailure('CheckpointLost', `checkpoint ${tree} of task ${taskId} is not in its checkpoint bundle`);
  }
}
