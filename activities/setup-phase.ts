/**
 * The worker's side of a task's setup phase: which commands it runs (the task's, or the repository's
 * `.agent/setup.sh` as of the base commit), what it may reach, and the setup cache around it: restored
 * into a fresh working copy before the sandbox starts, saved after setup while the sandbox is frozen.
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { setupAllowlist } from '../domain/egress';
import type { RepoPolicy } from '../domain/task';
import { gitDirOf, readTextAt } from './git/workspace';
import { pruneSetupCache, restoreSetupCache, saveSetupCache, setupCacheKey } from './setup-cache';
import type { ProvisionedSetup, SaveSetupCacheResult } from './types';

/** The repository's setup script, read from the base commit (nothing a command writes can change it). */
export const SETUP_SCRIPT = '.agent/setup.sh';
/** Largest setup script run, in bytes. */
const SETUP_SCRIPT_MAX_BYTES = 64 * 1024;
/** Marks, in the worker's private git directory, that the setup cache was restored into this working copy. */
const RESTORED_MARK = 'agent-setup-restored';

/** Where setup caches are kept and how large they may grow. */
export interface SetupCacheOptions {
  root: string;
  /** Largest entry kept; larger setups run again next time. */
  maxBytes: number;
  /** All entries together; the least recently used go first. */
  maxTotalBytes: number;
}

/**
 * The setup phase of a task whose working copy `dir` was just cloned or found again: null when neither
 * the task nor the repository has setup commands. When a cache entry exists for the same repository,
 * base branch, lockfiles, commands and allowlist, it is restored into `dir` (fresh clones only: a copy found again
 * reports what its first provisioning did).
 */
export async function provisionSetup(opts: {
  repo: string;
  baseBranch: string;
  dir: string;
  baseCommit: string;
  fresh: boolean;
  requested: { commands: string[]; egress_allowlist?: string[] } | undefined;
  repoPolicy: RepoPolicy | null;
  ceiling: readonly string[];
  cache: SetupCacheOptions | null;
}): Promise<ProvisionedSetup | null> {
  let commands: string[];
  let source: ProvisionedSetup['source'];
  if (opts.requested && opts.requested.commands.length > 0) {
    commands = opts.requested.commands;
    source = 'task';
  } else {
    const script = await readTextAt(opts.dir, opts.baseCommit, SETUP_SCRIPT);
    if (script === null || script.trim() === '') return null;
    if (Buffer.byteLength(script, 'utf8') > SETUP_SCRIPT_MAX_BYTES) {
      throw new SetupScriptError(`${SETUP_SCRIPT} is larger than ${SETUP_SCRIPT_MAX_BYTES} bytes`);
    }
    // The script's text runs as the command, so the sandbox cannot swap the file before it runs.
    commands = [script];
    source = 'repo';
  }
  const allow = setupAllowlist(opts.ceiling, opts.requested?.egress_allowlist, opts.repoPolicy?.setup_egress_allowlist);
  if (opts.cache === null) return { commands, source, allow, cache: null };
  const key = await setupCacheKey({ repo: opts.repo, branch: opts.baseBranch, dir: opts.dir, commit: opts.baseCommit, commands, allow });
  const mark = path.join(gitDirOf(opts.dir), RESTORED_MARK);
  if (!opts.fresh) {
    const restored = await fs.readFile(mark, 'utf8').catch(() => null);
    const prior = restored === null ? null : (JSON.parse(restored) as { key: string; files: number; bytes: number });
    return { commands, source, allow, cache: prior !== null && prior.key === key ? { key, hit: true, files: prior.files, bytes: prior.bytes } : { key, hit: false, files: 0, bytes: 0 } };
  }
  const r = await restoreSetupCache(opts.cache.root, key, opts.dir);
  if (r.hit) await fs.writeFile(mark, JSON.stringify({ key, files: r.files, bytes: r.bytes }));
  return { commands, source, allow, cache: { key, hit: r.hit, files: r.files, bytes: r.bytes, ...(r.refused ? { refused: r.refused } : {}) } };
}

/** Saves what setup left in `dir`'s ignored paths under `key`; the caller holds the sandbox frozen. */
export async function saveSetup(cache: SetupCacheOptions | null, key: string, dir: string): Promise<SaveSetupCacheResult> {
  if (cache === null) return { saved: false, files: 0, bytes: 0, reason: 'the setup cache is off' };
  if (!/^[0-9a-f]{16,128}$/.test(key)) throw new SetupScriptError(`not a setup cache key: ${JSON.stringify(key.slice(0, 80))}`);
  if (existsSync(path.join(cache.root, `${key}.tar`))) return { saved: false, files: 0, bytes: 0, reason: 'already cached' };
  const r = await saveSetupCache(cache.root, key, dir, { maxBytes: cache.maxBytes });
  if (!r.saved) return { saved: false, files: 0, bytes: 0, reason: r.reason };
  await pruneSetupCache(cache.root, cache.maxTotalBytes);
  return { saved: true, files: r.files, bytes: r.bytes };
}

/** Thrown for a setup the repository gets wrong (a script too large); the task fails naming it. */
export class SetupScriptError extends Error {
  override readonly name = 'SetupScriptError';
}
