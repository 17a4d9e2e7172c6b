/**
 * What a checkpoint of a working copy may take. A sandbox can write a 4 GiB sparse file or a million
 * small ones in a second; hashing them into the worker's repository would burn the worker's CPU and
 * disk for minutes. The candidates a snapshot would read are listed and sized first (stat only).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { activityFailure } from './failures';
import { snapshotCandidates } from './git/workspace';

/** The largest single file a checkpoint takes (the size code hosts refuse above, too). */
export const TREE_MAX_FILE_BYTES = 100 * 1024 * 1024;
/** New or changed files one checkpoint takes at most. */
export const TREE_MAX_CHANGED_FILES = 100_000;
/** Bytes of new or changed files one checkpoint takes at most. */
export const TREE_MAX_CHANGED_BYTES = 1024 * 1024 * 1024;

/** Why the working copy at `dir` is too large to checkpoint, or null when it is within the bounds. */
export async function treeOverBounds(dir: string): Promise<string | null> {
  const candidates = await snapshotCandidates(dir);
  if (candidates.length > TREE_MAX_CHANGED_FILES) {
    return `${candidates.length} new or changed files; a checkpoint takes at most ${TREE_MAX_CHANGED_FILES} (add generated files to .gitignore)`;
  }
  let total = 0;
  for (const rel of candidates) {
    // lstat: a link is taken as a link, never followed.
    const st = await fs.lstat(path.join(dir, rel)).catch(() => null);
    if (st === null || !st.isFile()) continue;
    if (st.size > TREE_MAX_FILE_BYTES) return `${rel} is ${st.size} bytes; a checkpoint takes files of at most ${TREE_MAX_FILE_BYTES} bytes (remove it or add it to .gitignore)`;
    total += st.size;
    if (total > TREE_MAX_CHANGED_BYTES) return `new or changed files add up to more than ${TREE_MAX_CHANGED_BYTES} bytes; a checkpoint takes at most that (add generated files to .gitignore)`;
  }
  return null;
}

/** Refuse, with a failure saying why, to checkpoint a working copy over the bounds. */
export async function assertTreeWithinBounds(dir: string): Promise<void> {
  const why = await treeOverBounds(dir);
  if (why !== null) throw activityFailure('SandboxLimit', `the working copy cannot be checkpointed: ${why}`);
}
