/**
 * The setup cache: what a task's setup phase added to its working copy outside git's tracked files
 * (node_modules, .venv, target/ …), kept as one tar archive per key so the next task on the same
 * repository, lockfiles and setup commands starts from it instead of running setup again.
 *
 * Everything in an archive was written by a sandbox, so it is treated as hostile both ways: it is
 * made without following links and checked by the streaming {@link TarGuard} while it is written,
 * and it is unpacked only through a guard again, which also refuses every member that would land on
 * a tracked path of the fresh clone, pass through one, carry a setuid bit or name a `.git`.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { removeUntracked, trackedPaths, treeBlobs, untrackedPaths } from './git/workspace';
import { hostTar } from './sandbox/host-tar';
import { TarGuard, TarRefusedError, type MemberCheck } from './sandbox/tar-guard';

/** Part of every key: bump it when what an archive holds or how it is made changes, so old entries are never read. */
export const SETUP_CACHE_VERSION = 'agent-inbox/setup-cache/1';
/** Most members (files, directories, links) one archive may hold; a large node_modules has a few hundred thousand. */
export const SETUP_CACHE_MAX_MEMBERS = 1_000_000;
/** A temporary archive older than this is a save that died; pruning removes it. */
const STALE_TMP_MS = 60 * 60_000;
/** Mode bits an archive member may not carry: setuid and setgid. */
const SET_ID_BITS = 0o6000;

const KEY = /^[0-9a-f]{64}$/;
const ENTRY_SUFFIX = '.tar';
const TMP_SUFFIX = '.tmp';

/** Base names of lockfiles and manifests whose content decides what a setup phase installs. */
const MANIFEST_NAMES = new Set([
  'package-lock.json',
  'npm-shrinkwrap.json',
  'yarn.lock',
  'pnpm-lock.yaml',
  'package.json',
  'pyproject.toml',
  'poetry.lock',
  'Pipfile.lock',
  'uv.lock',
  'setup.py',
  'setup.cfg',
  'Cargo.lock',
  'Cargo.toml',
  'go.mod',
  'go.sum',
  'Gemfile.lock',
  'composer.lock',
  'pom.xml',
  'build.gradle',
  'build.gradle.kts',
  'gradle.lockfile',
]);
const MANIFEST_PATTERN = /^requirements.*\.txt$/;

/** Whether a file of this base name is a lockfile or manifest that goes into the setup cache's key. */
export function isDependencyManifest(basename: string): boolean {
  return MANIFEST_NAMES.has(basename) || MANIFEST_PATTERN.test(basename);
}

/** What a setup phase's outcome depends on. */
export interface SetupCacheInput {
  /** The repository as the task names it. */
  repo: string;
  /**
   * The base branch: setup may run files outside the key (a postinstall script a manifest names), and
   * whoever can push a branch must not decide what tasks on another branch start from.
   */
  branch: string;
  /** The working copy whose repository holds `commit`. */
  dir: string;
  /** The base commit the setup phase starts from. */
  commit: string;
  /** The setup commands, in order. */
  commands: readonly string[];
  /** The egress allowlist of the setup phase. */
  allow: readonly string[];
}

/** The cache key of a setup phase: sha256 over the version, repository, base branch, commands, allowlist and the base commit's lockfiles and manifests. */
export async function setupCacheKey(input: SetupCacheInput): Promise<string> {
  const manifests = await treeBlobs(input.dir, input.commit, isDependencyManifest);
  // The allowlist is a set; the commands are a sequence.
  const allow = [...new Set(input.allow)].sort();
  const material = JSON.stringify([SETUP_CACHE_VERSION, input.repo, input.branch, [...input.commands], allow, manifests.map((b) => [b.path, b.mode, b.id])]);
  return createHash('sha256').update(material).digest('hex');
}

/** Thrown when the host's tar fails to unpack an entry the guard passed (the working copy is back to its tracked files). */
export class SetupCacheError extends Error {
  override readonly name = 'SetupCacheError';
}

/** Thrown for a key that is not a setup cache key (it names a file under the cache root). */
export class InvalidSetupCacheKeyError extends Error {
  override readonly name = 'InvalidSetupCacheKeyError';
  constructor(key: string) {
    super(`not a setup cache key: ${JSON.stringify(key.slice(0, 100))}`);
  }
}

function entryPath(root: string, key: string): string {
  if (!KEY.test(key)) throw new InvalidSetupCacheKeyError(key);
  return path.join(root, `${key}${ENTRY_SUFFIX}`);
}

/** What saving came to: an entry written, or why not. */
export type SaveResult = { saved: true; bytes: number; files: number } | { saved: false; reason: string };

/** Members no archive of the cache may hold, whichever way it goes: set-id modes and anything named `.git`. */
const checkCacheMember: MemberCheck = (m) => {
  if (m.name.split('/').includes('.git')) return 'names a .git';
  if (m.type !== 'symlink' && (m.mode & SET_ID_BITS) !== 0) return 'has a setuid or setgid bit';
  return null;
};

/**
 * Store what setup added to `dir` (its untracked and ignored files) as the entry `key` under `root`.
 * Skipped, with the reason, when there is nothing, when the archive would pass `maxBytes`, or when it
 * holds something a restore would refuse (a FIFO, a device …). The caller runs this while the sandbox
 * is frozen (`driver.whileFrozen`): git's listing and tar's reading must see the same tree, and a
 * path git listed has no symlink above it only while nothing in the sandbox runs.
 */
export async function saveSetupCache(root: string, key: string, dir: string, opts: { maxBytes: number }): Promise<SaveResult> {
  const dest = entryPath(root, key);
  const paths = await untrackedPaths(dir);
  if (paths.length === 0) return { saved: false, reason: 'setup left no untracked or ignored files' };
  await fs.mkdir(root, { recursive: true, mode: 0o700 });
  const tmp = path.join(root, `.${key}.${randomBytes(6).toString('hex')}${TMP_SUFFIX}`);
  const stop = new AbortController();
  // No -h: links are stored as links; --hard-dereference: a hard link is a file of its own, never a link member;
  // options come before -T, which GNU tar reads positionally.
  const tar = hostTar(
    ['-c', '-f', '-', '-C', dir, '--format=gnu', '--hard-dereference', '--mode=ug-s', '--exclude=.git', '--null', '-T', '-'],
    ['pipe', 'pipe', 'pipe'],
    stop.signal,
  );
  const guard = new TarGuard({ maxBytes: opts.maxBytes, maxMembers: SETUP_CACHE_MAX_MEMBERS }, checkCacheMember);
  try {
    tar.child.stdin!.on('error', () => undefined);
    // Without git's trailing slash: `dir/` names what a symlink at `dir` points at, `dir` names the link.
    tar.child.stdin!.end(paths.map((p) => `${p.replace(/\/+$/, '')}\0`).join(''));
    try {
      await pipeline(tar.child.stdout!, guard, createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
    } catch (err) {
      if (err instanceof TarRefusedError && err.reason === 'bytes') return { saved: false, reason: `not cached: the archive would pass the limit of ${opts.maxBytes} bytes` };
      if (err instanceof TarRefusedError) return { saved: false, reason: `not cached: ${err.message}` };
      throw err;
    }
    const code = await tar.exited;
    if (code !== 0) return { saved: false, reason: `not cached: tar failed (exit ${code}): ${await tar.stderr}` };
    const { size } = await fs.stat(tmp);
    await fs.rename(tmp, dest);
    return { saved: true, bytes: size, files: guard.members };
  } finally {
    stop.abort();
    await tar.kill();
    await fs.rm(tmp, { force: true });
  }
}

/** What restoring came to: a hit unpacked (`bytes` of archive, `files` members), a miss, or an entry refused and removed. */
export interface RestoreResult {
  hit: boolean;
  bytes: number;
  files: number;
  /** Set when the entry existed but was refused; it has been removed and `dir` is back to its tracked files. */
  refused?: string;
}

/**
 * Unpack the entry `key` under `root` into `dir`, a fresh clone nothing else touches yet, through a
 * {@link TarGuard} into the host's tar. Members on or through a tracked path are refused, and tar
 * itself never replaces an existing file. On a refusal the entry is deleted and everything it
 * unpacked is removed again; on a hit the entry's mtime is touched (pruning evicts by it).
 */
export async function restoreSetupCache(root: string, key: string, dir: string): Promise<RestoreResult> {
  const src = entryPath(root, key);
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(src, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { hit: false, bytes: 0, files: 0 };
    throw err;
  }
  try {
    const size = (await handle.stat()).size;
    const tracked = trackedSet(await trackedPaths(dir));
    const check: MemberCheck = (m) => checkCacheMember(m) ?? trackedRefusal(tracked, m.name);
    const guard = new TarGuard({ maxBytes: size, maxMembers: SETUP_CACHE_MAX_MEMBERS }, check);
    const stop = new AbortController();
    // --keep-old-files: whatever the guard let through, tar never replaces a file that is already there.
    const tar = hostTar(['-x', '-f', '-', '-C', dir, '--no-same-owner', '--keep-old-files', '--delay-directory-restore'], ['pipe', 'ignore', 'pipe'], stop.signal);
    let refused: TarRefusedError | null = null;
    let failed: unknown = null;
    try {
      tar.child.stdin!.on('error', () => undefined);
      // The read stream keeps the descriptor opened above: pruning may unlink the entry meanwhile.
      await pipeline(createReadStream('', { fd: handle, autoClose: false }), guard, tar.child.stdin!);
    } catch (err) {
      if (err instanceof TarRefusedError) refused = err;
      else failed = err;
    }
    // A refused member never reached tar, but what came before it did: tar is stopped and its work undone below.
    if (refused) stop.abort();
    const code = await tar.exited;
    if (!refused && (failed !== null || code !== 0)) {
      failed = new SetupCacheError(`unpacking the setup cache failed (tar exit ${code}): ${await tar.stderr}`, { cause: failed ?? undefined });
    }
    if (refused || failed) {
      await removeUntracked(dir);
      if (failed) throw failed;
      await fs.rm(src, { force: true });
      return { hit: false, bytes: 0, files: 0, refused: refused!.message };
    }
    const now = new Date();
    await fs.utimes(src, now, now).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    return { hit: true, bytes: guard.bytes, files: guard.members };
  } finally {
    await handle.close();
  }
}

interface TrackedSet {
  files: Set<string>;
  /** Every directory that holds a tracked file, at any depth. */
  dirs: Set<string>;
}

function trackedSet(files: string[]): TrackedSet {
  const dirs = new Set<string>();
  for (const f of files) {
    for (let i = f.indexOf('/'); i !== -1; i = f.indexOf('/', i + 1)) dirs.add(f.slice(0, i));
  }
  return { files: new Set(files), dirs };
}

/** Why a member may not be unpacked over the clone's tracked files, or null. */
function trackedRefusal(tracked: TrackedSet, name: string): string | null {
  if (tracked.files.has(name)) return 'is a tracked file of the repository';
  // Saves list untracked paths only, so even a directory member that is a tracked directory came from elsewhere.
  if (tracked.dirs.has(name)) return 'is a tracked directory of the repository';
  for (let i = name.indexOf('/'); i !== -1; i = name.indexOf('/', i + 1)) {
    // A tracked symlink (or file) above a member would be written through or replaced.
    if (tracked.files.has(name.slice(0, i))) return `lies under the tracked path ${JSON.stringify(name.slice(0, i))}`;
  }
  return null;
}

/** Remove least recently used entries under `root` until the rest total at most `maxTotalBytes`, and saves that died; returns the keys removed. */
export async function pruneSetupCache(root: string, maxTotalBytes: number): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.readdir(root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const entries: { key: string; file: string; size: number; used: number }[] = [];
  const now = Date.now();
  for (const name of names) {
    const file = path.join(root, name);
    const st = await fs.lstat(file).catch(() => null);
    if (!st?.isFile()) continue;
    if (name.endsWith(TMP_SUFFIX)) {
      if (now - st.mtimeMs > STALE_TMP_MS) await fs.rm(file, { force: true });
      continue;
    }
    const key = name.slice(0, -ENTRY_SUFFIX.length);
    if (name.endsWith(ENTRY_SUFFIX) && KEY.test(key)) entries.push({ key, file, size: st.size, used: st.mtimeMs });
  }
  entries.sort((a, b) => b.used - a.used);
  const removed: string[] = [];
  let total = 0;
  for (const e of entries) {
    total += e.size;
    if (total <= maxTotalBytes) continue;
    await fs.rm(e.file, { force: true });
    removed.push(e.key);
  }
  return removed;
}
