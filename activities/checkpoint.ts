/**
 * Bringing a working copy back to the checkpoint a step or tool call must start from.
 */
import { activityFailure } from './failures';
import { isWorkingCopy, restoreTree, snapshotTree } from './git/workspace';
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
