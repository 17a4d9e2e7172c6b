/**
 * The `process` sandbox driver: commands run as ordinary child processes of the
 * worker, as the worker's user, with the worker's network and file system.
 *
 * This is NOT isolation (its isolation is reported as `none`). A command can read
 * and write anything the worker can. What it does provide: a scrubbed environment
 * (no worker secrets in `env`), a private HOME and TMPDIR, a process group per
 * command so timeouts and cancellation kill the whole tree, and a record of those
 * groups on disk so leftovers are killed even after the worker itself was killed.
 * Use it for development and trusted recipes only.
 */
import { spawn } from 'node:child_process';
import { existsSync, promises as fs, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../workers/log';
import { gitDirOf } from '../git/workspace';
import { InvalidSandboxIdError, SANDBOX_ID, SandboxAbortedError } from './common';
import { watchCommand } from './command-watch';
import { readInside, writeInside } from './safe-fs';
import type { ExecOptions, ExecResult, SandboxDriver, SandboxHandle } from './driver';

export { InvalidSandboxIdError, SandboxAbortedError, SandboxPathError } from './common';

/** How long `killAll` waits for killed groups to disappear before restoring files under them. */
const KILL_WAIT_MS = 2_000;
const PIDS_FILE = 'pids';

/** Dependencies of the process driver. */
export interface ProcessSandboxDriverOptions {
  /** Directory holding one sub-directory per sandbox, usually `<DATA_DIR>/sandboxes`. */
  root: string;
  log: Logger;
}

/** A process group recorded on disk; `start` tells a live group from a later one that reused its id. */
interface GroupRecord {
  pgid: number;
  start: string | null;
}

/** Runs commands as plain child processes in their own process groups; no isolation at all (see the module comment). */
export class ProcessSandboxDriver implements SandboxDriver {
  readonly name = 'process';
  readonly isolation = 'none';
  private readonly root: string;
  private readonly log: Logger;

  constructor(opts: ProcessSandboxDriverOptions) {
    this.root = path.resolve(opts.root);
    this.log = opts.log;
  }

  /** Create `<root>/<id>/{home,tmp}` for the working copy at `hostWorkdir`; re-attaching is the same call. */
  async provision(opts: { id: string; hostWorkdir: string }): Promise<SandboxHandle> {
    const dir = this.dirOf(opts.id);
    const existed = existsSync(dir);
    await fs.mkdir(path.join(dir, 'home'), { recursive: true });
    await fs.mkdir(path.join(dir, 'tmp'), { recursive: true });
    const hostWorkdir = path.resolve(opts.hostWorkdir);
    this.log.info(existed ? 'sandbox re-attached' : 'sandbox provisioned', { sandbox_id: opts.id, driver: this.name });
    return { id: opts.id, driver: this.name, isolation: this.isolation, workdir: hostWorkdir, hostWorkdir };
  }

  /** Run `command` with `/bin/sh -c` in the working copy, in a new process group. */
  async exec(handle: SandboxHandle, command: string, opts: ExecOptions): Promise<ExecResult> {
    const dir = this.dirOf(handle.id);
    if (opts.signal?.aborted) throw new SandboxAbortedError(command, { cause: opts.signal.reason });
    await fs.mkdir(path.join(dir, 'home'), { recursive: true });
    await fs.mkdir(path.join(dir, 'tmp'), { recursive: true });
    const env: Record<string, string> = {
      // Only PATH comes from the worker: its other variables may hold credentials.
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: path.join(dir, 'home'),
      TMPDIR: path.join(dir, 'tmp'),
      LANG: 'C.UTF-8',
      TERM: 'dumb',
      CI: '1',
      GIT_TERMINAL_PROMPT: '0',
      // The repository lives outside the working copy; git run by a command finds it here.
      GIT_DIR: gitDirOf(handle.hostWorkdir),
      GIT_WORK_TREE: handle.hostWorkdir,
      ...opts.env,
    };
    const started = Date.now();
    const child = spawn('/bin/sh', ['-c', command], {
      cwd: handle.workdir,
      env,
      // Its own process group: one signal to -pid reaches everything the command starts,
      // and the group outlives the worker, which is why it is also recorded on disk.
      detached: true,
      // No stdin: a command waiting for input gets EOF instead of hanging until its timeout.
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const pgid = child.pid;
    if (pgid !== undefined) {
      try {
        this.recordGroup(handle.id, pgid);
      } catch (err) {
        // An unrecorded group could outlive us unseen: do not let it run.
        killGroup(pgid, this.log);
        throw err;
      }
    }

    try {
      return await watchCommand(child, command, opts, {
        started,
        stop: async () => {
          if (pgid !== undefined) killGroup(pgid, this.log);
        },
        log: this.log,
        sandboxId: handle.id,
      });
    } finally {
      if (pgid !== undefined) this.forgetGroupIfGone(handle.id, pgid);
    }
  }

  /** Read a file of the working copy; the path must be relative and stay inside it after symlinks. */
  async readFile(handle: SandboxHandle, file: string): Promise<string> {
    return (await readInside(handle.hostWorkdir, file)).data.toString('utf8');
  }

  /** Write a file of the working copy, creating its directories; the path must stay inside it after symlinks. */
  async writeFile(handle: SandboxHandle, file: string, content: string): Promise<string> {
    return writeInside(handle.hostWorkdir, file, content);
  }

  /** SIGKILL every process group recorded for this sandbox, including ones started by an earlier worker process. */
  async killAll(handle: SandboxHandle): Promise<void> {
    const file = path.join(this.dirOf(handle.id), PIDS_FILE);
    const groups = readGroups(file);
    if (groups.length === 0) return;
    const targets = groups.filter((g) => {
      if (isSameGroup(g)) return true;
      this.log.debug('sandbox process group already gone', { sandbox_id: handle.id, pgid: g.pgid });
      return false;
    });
    for (const g of targets) killGroup(g.pgid, this.log);
    // Wait for the kernel to finish them off so nothing writes to files we are about to restore.
    const deadline = Date.now() + KILL_WAIT_MS;
    while (targets.some((g) => groupAlive(g.pgid)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    // Re-read: a command started while we waited must stay on record.
    writeGroups(file, readGroups(file).filter(isSameGroup));
    if (targets.length > 0) this.log.info('sandbox processes killed', { sandbox_id: handle.id, groups: targets.length });
  }

  /** Kill what is left and remove `<root>/<id>`; the working copy is not the driver's to remove. */
  async teardown(handle: SandboxHandle): Promise<void> {
    const dir = this.dirOf(handle.id);
    if (!existsSync(dir)) return;
    await this.killAll(handle);
    await fs.rm(dir, { recursive: true, force: true });
    this.log.info('sandbox removed', { sandbox_id: handle.id });
  }

  /** Ids of the sandboxes present under the root. */
  async list(): Promise<string[]> {
    try {
      const entries = await fs.readdir(this.root, { withFileTypes: true });
      return entries.filter((e) => e.isDirectory() && SANDBOX_ID.test(e.name)).map((e) => e.name).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  private dirOf(id: string): string {
    if (!SANDBOX_ID.test(id)) throw new InvalidSandboxIdError(id);
    return path.join(this.root, id);
  }

  private recordGroup(id: string, pgid: number): void {
    // Synchronous on purpose: the window in which a running group is not on disk stays as small as possible.
    const file = path.join(this.dirOf(id), PIDS_FILE);
    writeGroups(file, [...readGroups(file), { pgid, start: processStartTime(pgid) }]);
  }

  private forgetGroupIfGone(id: string, pgid: number): void {
    // A command's background children keep its group alive after the shell exits; keep those on record for killAll.
    if (groupAlive(pgid)) return;
    const file = path.join(this.dirOf(id), PIDS_FILE);
    if (!existsSync(file)) return;
    writeGroups(file, readGroups(file).filter((g) => g.pgid !== pgid));
  }
}

function killGroup(pgid: number, log: Logger): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ESRCH') log.warn('sandbox kill failed', { pgid, code });
  }
}

/**
 * Whether any process of the group is still running. Zombies do not count: where nothing reaps
 * orphans (a container without an init) they linger, but they run nothing and write nothing.
 */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch {
    // ESRCH: no such group. EPERM: a group exists but belongs to someone else, so it is not ours.
    return false;
  }
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return true;
  }
  for (const pid of pids) {
    const fields = procStat(Number(pid));
    // fields[0] is the state, fields[2] the process group.
    if (fields && Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') return true;
  }
  return false;
}

/** The fields of `/proc/<pid>/stat` after the command name (state first), or null where unavailable. */
function procStat(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses; the fields after it are plain.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/**
 * Start time of a process (clock ticks since boot, Linux `/proc`), or null where it cannot be read.
 * Process ids are reused; a leader with the recorded id but another start time is a stranger.
 */
function processStartTime(pid: number): string | null {
  // starttime is field 22 of the stat line, the 20th after the command name.
  return procStat(pid)?.[19] ?? null;
}

/**
 * Whether a recorded group is still the one we started. When its leader is alive its start time must match;
 * when the leader has exited the id cannot have been reused while members of the group remain.
 */
function isSameGroup(g: GroupRecord): boolean {
  if (!groupAlive(g.pgid)) return false;
  const now = processStartTime(g.pgid);
  return g.start === null || now === null || now === g.start;
}

function readGroups(file: string): GroupRecord[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: GroupRecord[] = [];
  for (const line of text.split('\n')) {
    const [pgidText, start] = line.trim().split(/\s+/);
    const pgid = Number(pgidText);
    // Only real group ids of other processes: -0 is our own group, -1 is every process we may signal.
    if (Number.isInteger(pgid) && pgid > 1 && pgid !== process.pid) out.push({ pgid, start: start && start !== '-' ? start : null });
  }
  return out;
}

function writeGroups(file: string, groups: GroupRecord[]): void {
  if (groups.length === 0) {
    rmSync(file, { force: true });
    return;
  }
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, groups.map((g) => `${g.pgid} ${g.start ?? '-'}\n`).join(''));
  renameSync(tmp, file);
}
