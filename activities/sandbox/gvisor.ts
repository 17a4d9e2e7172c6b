/**
 * The `gvisor` sandbox driver: one gVisor container per task, run with `runsc` on the
 * worker's host.
 *
 * Each sandbox is an OCI bundle under `<root>/<id>/bundle`:
 *  - a read-only root file system (the host's `/usr` and `/etc`, or a configured root fs),
 *  - the task's working copy bind-mounted read-write at `/workspace`, and its git repository
 *    read-only at `/workspace.git` (commands can read history and diff, never write config),
 *  - a private size-limited `/tmp`, which is also HOME,
 *  - no network at all (`--network=none`: not even the host's loopback is reachable),
 *  - a memory limit for the whole sandbox, and per command a process limit and a CPU-time
 *    limit, run as an unprivileged user with no capabilities and an environment that holds
 *    nothing of the worker's.
 *
 * The container's first process is a small reaper (perl, which every Debian system has), so
 * processes orphaned by commands do not linger as zombies. Commands run through `runsc exec`;
 * on timeout or cancellation their whole process group is killed inside the sandbox.
 * Container state lives under `<root>/.runsc`, so a restarted worker finds a live sandbox and
 * re-attaches to it, and the reaper can list and remove sandboxes of tasks that ended.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../workers/log';
import { gitDirOf } from '../git/workspace';
import { InvalidSandboxIdError, OutputTail, SANDBOX_ID, SandboxAbortedError, signalNumber, startTicker } from './common';
import { attachQuotaDisk, detachQuotaDisk, diskIsFull } from './quota-disk';
import { readInside, writeInside } from './safe-fs';
import type { ExecOptions, ExecResult, ProvisionOptions, SandboxDriver, SandboxHandle } from './driver';

/** Where the working copy and its repository appear inside the sandbox. */
export const GVISOR_WORKDIR = '/workspace';
export const GVISOR_GIT_DIR = '/workspace.git';
const DRAIN_GRACE_MS = 200;
/** How long a `runsc` housekeeping command (state, kill, delete) may take before it counts as failed. */
const CONTROL_TIMEOUT_MS = 30_000;
/** How long `killAll` waits for the killed processes to be gone. */
const KILL_WAIT_MS = 3_000;
/** Host threads and processes the sandbox's own runtime may use (not commands: those have their own limit). */
const HOST_PIDS_LIMIT = 4_096;
const STATE_DIR = '.runsc';
/** Process specs and pid files of running commands, one pair per command. */
const EXEC_DIR = '.exec';
/**
 * Ends every runsc container id. runsc takes an id that is a prefix of others as ambiguous (`task-1`
 * next to `task-10`); `+` never occurs in a sandbox id, so no container id is a prefix of another.
 */
const CONTAINER_ID_END = '+';

/** The runsc container id of sandbox `id`. */
function containerId(id: string): string {
  if (!SANDBOX_ID.test(id)) throw new InvalidSandboxIdError(id);
  return `${id}${CONTAINER_ID_END}`;
}
/** The working copy's disk image, in the sandbox's directory. */
const DISK_IMAGE = 'workspace.img';
/** The path the working copy's disk is mounted at, in the sandbox's directory. */
const DISK_MOUNT = 'workspace.mount';
/**
 * Kills, from inside the sandbox, every process of the commands' user (`$TARGET_UID`), or only those
 * of process group `$PG` when it is set. It runs as root with CAP_KILL alone: commands have no
 * capabilities, and a fork bomb that used up their user's process limit cannot block it. Signals go
 * one process at a time (gVisor delivers a signal sent to a group or to -1 to the leader only), and the
 * walk repeats while it found anything, since a process may fork while the list is read.
 */
const KILL_SCRIPT = `me=$$
for round in 1 2 3 4 5 6 7 8 9 10; do
  hit=0
  for s in /proc/[0-9]*/stat; do
    p=\${s#/proc/}; p=\${p%/stat}
    if [ "$p" = "$me" ] || [ "$p" = 1 ]; then continue; fi
    u=$(sed -n 's/^Uid:[[:space:]]*\\([0-9]*\\).*/\\1/p' "/proc/$p/status" 2>/dev/null)
    if [ "$u" != "$TARGET_UID" ]; then continue; fi
    set -- $(sed 's/.*) //' "$s" 2>/dev/null) || continue
    if [ -n "$PG" ] && [ "$3" != "$PG" ]; then continue; fi
    if [ "$1" = Z ]; then continue; fi
    kill -s KILL "$p" 2>/dev/null && hit=1
  done
  [ "$hit" = 0 ] && break
  sleep 0.05
done
exit 0`;

/** Thrown when a command is asked of a sandbox that was torn down (its task ended meanwhile). */
export class SandboxTornDownError extends Error {
  override readonly name = 'SandboxTornDownError';
  constructor(readonly id: string) {
    super(`sandbox ${id} was torn down`);
  }
}

/** Thrown when `runsc` itself fails (not a command inside it); the message carries its stderr tail. */
export class RunscError extends Error {
  override readonly name = 'RunscError';
  constructor(
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`runsc ${args.find((a) => !a.startsWith('-')) ?? ''} failed (exit ${exitCode ?? 'none'}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }
}

/** Limits and layout of every sandbox a driver makes. */
export interface GvisorLimits {
  /** Memory of the whole sandbox (commands, page cache of `/tmp`, the runtime itself). */
  memoryMb: number;
  /** Processes the sandbox's commands may have at once (RLIMIT_NPROC): a fork bomb stops here. */
  processesPerCommand: number;
  /** CPU seconds any one process may use (RLIMIT_CPU); each command's wall-clock timeout applies as well. */
  cpuSecondsPerCommand: number;
  /** Size of the private `/tmp`. */
  tmpMb: number;
  /** Open files per process. */
  openFiles: number;
  /** Size of each working copy's own disk (0: the working copy shares the worker's disk, unbounded). */
  diskMb: number;
  /** Files and directories each working copy's disk can hold. */
  diskInodes: number;
  /** The largest file any process may write (RLIMIT_FSIZE), in `/tmp` as in the working copy. */
  fileSizeMb: number;
}

export const DEFAULT_GVISOR_LIMITS: GvisorLimits = {
  memoryMb: 2_048,
  processesPerCommand: 512,
  cpuSecondsPerCommand: 3_600,
  tmpMb: 512,
  openFiles: 4_096,
  diskMb: 8_192,
  diskInodes: 500_000,
  fileSizeMb: 2_048,
};

/** Dependencies of the gVisor driver. */
export interface GvisorSandboxDriverOptions {
  /** Directory holding one sub-directory per sandbox, usually `<DATA_DIR>/sandboxes`. */
  root: string;
  /** Path of the `runsc` binary. */
  runsc: string;
  log: Logger;
  /** The user commands run as (default 65534, `nobody`); the working copy is handed to it. */
  uid?: number;
  gid?: number;
  limits?: Partial<GvisorLimits>;
  /**
   * A directory to use as the read-only root file system (an unpacked image). Default: an empty
   * root with the host's `/usr` and `/etc` mounted read-only, which gives commands the host's toolchain.
   */
  rootfs?: string;
  /** Extra global `runsc` flags, e.g. `--platform=ptrace` or `--ignore-cgroups` where cgroups are not writable. */
  runscFlags?: string[];
}

interface ContainerState {
  status: string;
}

/** Runs each task's commands in its own gVisor sandbox (see the module comment). */
export class GvisorSandboxDriver implements SandboxDriver {
  readonly name = 'gvisor';
  readonly isolation = 'gvisor';
  private readonly root: string;
  private readonly stateRoot: string;
  private readonly runsc: string;
  private readonly log: Logger;
  private readonly uid: number;
  private readonly gid: number;
  private readonly limits: GvisorLimits;
  private readonly rootfs: string | undefined;
  private readonly flags: string[];
  /** Sandboxes this process has seen running; cleared when one is killed or removed. */
  private readonly running = new Set<string>();
  /** One start at a time per sandbox. */
  private readonly starting = new Map<string, Promise<void>>();

  constructor(opts: GvisorSandboxDriverOptions) {
    this.root = path.resolve(opts.root);
    this.stateRoot = path.join(this.root, STATE_DIR);
    this.runsc = opts.runsc;
    this.log = opts.log;
    this.uid = opts.uid ?? 65534;
    this.gid = opts.gid ?? 65534;
    this.limits = { ...DEFAULT_GVISOR_LIMITS, ...opts.limits };
    this.rootfs = opts.rootfs === undefined ? undefined : path.resolve(opts.rootfs);
    this.flags = opts.runscFlags ?? [];
  }

  /**
   * Start the sandbox around the working copy at `hostWorkdir`, or re-attach to the one already
   * running under this id (a restarted worker). A stopped leftover is removed and started afresh.
   */
  async provision(opts: ProvisionOptions): Promise<SandboxHandle> {
    const dir = this.dirOf(opts.id);
    const hostWorkdir = path.resolve(opts.hostWorkdir);
    const handle: SandboxHandle = { id: opts.id, driver: this.name, isolation: this.isolation, workdir: GVISOR_WORKDIR, hostWorkdir };
    if ((opts.egressAllowlist ?? []).length > 0) {
      this.log.warn('the gvisor driver has no egress proxy: the task\'s egress allowlist is not granted, the sandbox has no network', {
        sandbox_id: opts.id,
        egress_allowlist: opts.egressAllowlist,
      });
    }
    const state = await this.state(opts.id);
    if (state?.status === 'running' && existsSync(path.join(dir, 'bundle', 'config.json'))) {
      this.running.add(opts.id);
      this.log.info('sandbox re-attached', { sandbox_id: opts.id, driver: this.name });
      return handle;
    }
    await this.handOver(hostWorkdir);
    await this.writeBundle(opts.id, hostWorkdir);
    await this.ensureRunning(handle);
    this.log.info('sandbox provisioned', { sandbox_id: opts.id, driver: this.name, isolation: this.isolation });
    return handle;
  }

  /**
   * Run `work` (the worker reading the working copy) while nothing in the sandbox runs: runsc pauses
   * the sandbox's kernel (its own pause, which keeps every task consistent; freezing the runtime's
   * host cgroup from outside can break commands that run right after), and resumes it afterwards,
   * whatever `work` does.
   */
  async whileFrozen<T>(handle: SandboxHandle, work: () => Promise<T>): Promise<T> {
    try {
      await this.control(['pause', containerId(handle.id)]);
    } catch (err) {
      // A sandbox that is gone or stopped runs nothing either; one that runs and will not pause is a fault.
      if ((await this.state(handle.id))?.status === 'running') throw err;
      return work();
    }
    try {
      return await work();
    } finally {
      // Torn down while paused (the task was cancelled meanwhile): there is nothing left to resume.
      await this.control(['resume', containerId(handle.id)]).catch(async (err: unknown) => {
        if ((await this.state(handle.id)) !== null) throw err;
      });
    }
  }

  /** Put the working copy on a disk of its own (see `quota-disk.ts`), unless disks are turned off. */
  async attachWorkdir(id: string, hostWorkdir: string): Promise<void> {
    if (this.limits.diskMb === 0) return;
    const dir = this.dirOf(id);
    await fs.mkdir(dir, { recursive: true });
    // Where the disk is mounted, for a teardown that is handed no working copy (the reaper's).
    await fs.writeFile(path.join(dir, DISK_MOUNT), path.resolve(hostWorkdir));
    await attachQuotaDisk(path.join(dir, DISK_IMAGE), path.resolve(hostWorkdir), { sizeMb: this.limits.diskMb, inodes: this.limits.diskInodes });
  }

  /**
   * Run `command` with `/bin/sh -c` in `/workspace` inside the sandbox, as the unprivileged user, once.
   * Whether the sandbox is alive comes from runsc (its state, and a probe it runs), never from what the command printed: a
   * sandbox found dead when runsc could not even start the command (it wrote no pid) is started again
   * around the same working copy and the command gets its first run; a command the sandbox died under
   * is not run again, it fails with a note saying so.
   */
  async exec(handle: SandboxHandle, command: string, opts: ExecOptions): Promise<ExecResult> {
    const first = await this.execOnce(handle, command, opts);
    if (first.result.exitCode === 0) return first.result;
    if (await this.isRunning(handle.id)) return this.withDiskNote(handle, first.result);
    this.running.delete(handle.id);
    if (!first.started) {
      this.log.warn('sandbox was not running; starting it again', { sandbox_id: handle.id });
      await this.removeContainer(handle.id);
      const second = await this.execOnce(handle, command, opts);
      if (second.result.exitCode === 0 || (await this.isRunning(handle.id))) return second.result;
      return this.diedUnder(handle, second.result);
    }
    return this.diedUnder(handle, first.result);
  }

  /** The sandbox stopped while a command ran (out of memory?): remove what is left so the next command gets a fresh one. */
  private async diedUnder(handle: SandboxHandle, res: ExecResult): Promise<ExecResult> {
    this.running.delete(handle.id);
    this.log.warn('sandbox died under a command; it starts again for the next one', { sandbox_id: handle.id });
    await this.removeContainer(handle.id).catch((err: unknown) => this.log.warn('could not remove dead sandbox', { sandbox_id: handle.id, error: String(err) }));
    return { ...res, output: `${res.output}\n[the sandbox stopped during this command (out of memory?); it is started again for the next command]\n` };
  }

  /** A failed command on a full working-copy disk says so: the quota, not the command, is why. */
  private async withDiskNote(handle: SandboxHandle, res: ExecResult): Promise<ExecResult> {
    if (this.limits.diskMb === 0 || !(await diskIsFull(handle.hostWorkdir))) return res;
    const note = `[the working copy's disk is full: its quota is ${this.limits.diskMb} MB and ${this.limits.diskInodes} files; remove files (build output, caches) or ask for a smaller change]`;
    return { ...res, output: `${res.output}\n${note}\n` };
  }

  /**
   * Whether the sandbox is alive: runsc reports it running and it runs a process of ours (`/bin/true`,
   * as root, so a command's user at its process limit cannot make it look dead). runsc's state alone
   * lags: a sandbox killed for memory still reads "running" until its runtime is reaped.
   */
  private async isRunning(id: string): Promise<boolean> {
    const state = await this.state(id).catch(() => null);
    if (state?.status !== 'running') return false;
    return this.control(['exec', '--user', '0:0', containerId(id), '/bin/true']).then(
      () => true,
      () => false,
    );
  }

  /** One `runsc exec`; `started` says whether runsc started the command (it wrote the command's pid). */
  private async execOnce(handle: SandboxHandle, command: string, opts: ExecOptions): Promise<{ result: ExecResult; started: boolean }> {
    if (opts.signal?.aborted) throw new SandboxAbortedError(command, { cause: opts.signal.reason });
    await this.ensureRunning(handle);
    // Outside the sandbox's own directory: a teardown racing this command must not take the pid file, by which
    // `exec` tells a command that started from one that never did.
    const execDir = path.join(this.root, EXEC_DIR);
    await fs.mkdir(execDir, { recursive: true });
    const tag = `${handle.id}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const specFile = path.join(execDir, `${tag}.json`);
    const pidFile = path.join(execDir, `${tag}.pid`);
    // The process spec goes in a file: the environment (task feedback, messages) never shows in the host's `ps`.
    await fs.writeFile(specFile, JSON.stringify(this.processSpec(['/bin/sh', '-c', command], opts.env)), { mode: 0o600 });

    const started = Date.now();
    const child = spawn(this.runsc, [...this.globalArgs(), 'exec', '--process', specFile, '--internal-pid-file', pidFile, containerId(handle.id)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });

    try {
      const result = await new Promise<ExecResult>((resolve, reject) => {
        const tail = new OutputTail(opts.maxOutputBytes);
        let timedOut = false;
        let aborted = false;
        let settled = false;
        let exited = false;
        child.stdout!.on('data', (chunk: Buffer) => tail.push(chunk));
        child.stderr!.on('data', (chunk: Buffer) => tail.push(chunk));

        let killing: Promise<void> | null = null;
        const stop = (): void => {
          killing ??= this.killCommand(handle, pidFile).finally(() => {
            // If the group could not be reached, the client must not hold the activity forever.
            setTimeout(() => {
              if (!exited) {
                try {
                  process.kill(-child.pid!, 'SIGKILL');
                } catch {
                  // already gone
                }
              }
            }, 2_000).unref();
          });
        };
        const onAbort = (): void => {
          aborted = true;
          stop();
        };
        const timeout = setTimeout(() => {
          timedOut = true;
          stop();
        }, opts.timeoutMs);
        const stopTicker = startTicker(opts.onTick, this.log, handle.id);
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        const cleanup = (): void => {
          clearTimeout(timeout);
          stopTicker();
          opts.signal?.removeEventListener('abort', onAbort);
        };

        const finish = (exitCode: number): void => {
          if (settled) return;
          settled = true;
          cleanup();
          child.stdout!.destroy();
          child.stderr!.destroy();
          // A killed command is over only when everything in its group is gone, not when its shell is.
          if (killing) void killing.then(() => report(exitCode));
          else report(exitCode);
        };
        const report = (exitCode: number): void => {
          if (aborted) {
            reject(new SandboxAbortedError(command, { cause: opts.signal?.reason }));
            return;
          }
          const { output, truncatedBytes } = tail.result();
          resolve({ exitCode: timedOut ? 124 : exitCode, output, outputTruncatedBytes: truncatedBytes, timedOut, durationMs: Date.now() - started });
        };
        child.once('error', (err) => {
          if (settled) return;
          settled = true;
          cleanup();
          reject(err);
        });
        child.once('exit', (code, signal) => {
          exited = true;
          const exitCode = code ?? 128 + signalNumber(signal);
          let open = 2;
          const done = (): void => {
            if (--open === 0) finish(exitCode);
          };
          for (const stream of [child.stdout!, child.stderr!]) {
            if (stream.closed) done();
            else stream.once('close', done);
          }
          setTimeout(() => finish(exitCode), DRAIN_GRACE_MS);
        });
      });
      return { result, started: existsSync(pidFile) };
    } finally {
      await Promise.all([fs.rm(specFile, { force: true }), fs.rm(pidFile, { force: true })]);
    }
  }

  /** Read a file of the working copy on the host (the sandbox sees the same files). */
  async readFile(handle: SandboxHandle, file: string): Promise<string> {
    return (await readInside(handle.hostWorkdir, file)).data.toString('utf8');
  }

  /** Write a file of the working copy on the host; what it creates belongs to the sandbox's user like everything else there. */
  async writeFile(handle: SandboxHandle, file: string, content: string): Promise<string> {
    return writeInside(handle.hostWorkdir, file, content, { uid: this.uid, gid: this.gid });
  }

  /** Files of the working copy were changed on the host (a checkpoint restored): give them back to the sandbox's user. */
  async syncWorkdir(handle: SandboxHandle): Promise<void> {
    await this.handOver(handle.hostWorkdir);
  }

  /**
   * Kill every process of the sandbox's user, including ones started by an earlier worker process.
   * The sandbox stays up (its init runs as another user). If the sandbox no longer answers, it is
   * removed, and the next command starts it afresh around the same working copy.
   */
  async killAll(handle: SandboxHandle): Promise<void> {
    const state = await this.state(handle.id);
    if (state === null) return;
    // Left paused by a worker that died while it took a checkpoint: the sandbox is alive, resume it.
    if (state.status === 'paused') await this.control(['resume', containerId(handle.id)]);
    if (state.status !== 'running' && state.status !== 'paused') {
      await this.removeContainer(handle.id);
      return;
    }
    try {
      await this.control([...this.killerArgs(), containerId(handle.id), '/bin/sh', '-c', KILL_SCRIPT]);
      const deadline = Date.now() + KILL_WAIT_MS;
      for (;;) {
        const left = (await this.processes(handle.id)).filter((p) => p.uid === this.uid);
        if (left.length === 0) return;
        if (Date.now() > deadline) throw new Error(`${left.length} processes survived SIGKILL`);
        await new Promise((r) => setTimeout(r, 50));
      }
    } catch (err) {
      this.log.warn('sandbox did not answer kill; removing it', { sandbox_id: handle.id, error: String(err) });
      await this.removeContainer(handle.id);
    }
  }

  /** Stop and delete the container and remove `<root>/<id>`; succeeds when it is already gone. */
  async teardown(handle: SandboxHandle): Promise<void> {
    const dir = this.dirOf(handle.id);
    if ((await this.state(handle.id)) !== null) await this.removeContainer(handle.id);
    const mounted = await fs.readFile(path.join(dir, DISK_MOUNT), 'utf8').catch(() => null);
    for (const at of new Set([path.resolve(handle.hostWorkdir), ...(mounted ? [mounted] : [])])) await detachQuotaDisk(at);
    if (existsSync(dir)) await fs.rm(dir, { recursive: true, force: true });
    this.log.info('sandbox removed', { sandbox_id: handle.id, driver: this.name });
  }

  /** Ids of sandboxes with a bundle or a container, whatever their state. */
  async list(): Promise<string[]> {
    const ids = new Set<string>();
    try {
      for (const e of await fs.readdir(this.root, { withFileTypes: true })) if (e.isDirectory() && SANDBOX_ID.test(e.name)) ids.add(e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (existsSync(this.stateRoot)) {
      const out = await this.control(['list', '-quiet']);
      for (const line of out.split('\n').map((l) => l.trim())) {
        const id = line.endsWith(CONTAINER_ID_END) ? line.slice(0, -CONTAINER_ID_END.length) : line;
        if (SANDBOX_ID.test(id)) ids.add(id);
      }
    }
    return [...ids].sort();
  }

  /**
   * Release what runsc keeps on the host between sandboxes (the empty network namespace it mounts
   * under its state directory) once no sandbox is left; for tests and uninstalls.
   */
  async releaseHost(): Promise<void> {
    if ((await this.list()).length > 0) return;
    const netns = path.join(this.stateRoot, 'null-netns');
    if (!existsSync(netns)) return;
    await new Promise<void>((resolve) => execFile('umount', [netns], () => resolve()));
  }

  /** The version line `runsc --version` prints, for logs and `/healthz`. */
  async version(): Promise<string> {
    const out = await this.control(['--version']);
    const line = out.split('\n')[0]!.trim();
    // A runsc built with `go install` carries no version; the setup script's cache directory names it.
    const dir = path.basename(path.dirname(this.runsc));
    return line.includes('VERSION_MISSING') && dir.startsWith('v') ? `runsc ${dir} (gVisor Go module)` : line;
  }

  private dirOf(id: string): string {
    if (!SANDBOX_ID.test(id)) throw new InvalidSandboxIdError(id);
    return path.join(this.root, id);
  }

  private globalArgs(): string[] {
    return ['--root', this.stateRoot, ...this.flags];
  }

  /** Make sure the container runs; starts (or restarts) it from its bundle when it does not. */
  private async ensureRunning(handle: SandboxHandle): Promise<void> {
    if (this.running.has(handle.id)) return;
    const pending = this.starting.get(handle.id);
    if (pending) return pending;
    const start = (async () => {
      const state = await this.state(handle.id);
      // A worker that died while the sandbox was paused left it so: resume it before the first command.
      if (state?.status === 'paused') await this.control(['resume', containerId(handle.id)]);
      if (state?.status === 'running' || state?.status === 'paused') {
        this.running.add(handle.id);
        return;
      }
      if (state !== null) await this.removeContainer(handle.id);
      const dir = this.dirOf(handle.id);
      // Only a teardown removes the bundle: a sandbox torn down is never started again behind it.
      if (!existsSync(path.join(dir, 'bundle', 'config.json'))) throw new SandboxTornDownError(handle.id);
      const log = await fs.open(path.join(dir, 'runsc.log'), 'a');
      try {
        // A detached `runsc run` keeps the stdio it was given for the container's life: a file and /dev/null, never a pipe.
        await new Promise<void>((resolve, reject) => {
          const child = spawn(this.runsc, [...this.globalArgs(), '--network=none', 'run', '--detach', '--bundle', path.join(dir, 'bundle'), containerId(handle.id)], {
            stdio: ['ignore', log.fd, log.fd],
          });
          const timer = setTimeout(() => child.kill('SIGKILL'), CONTROL_TIMEOUT_MS);
          child.once('error', (err) => {
            clearTimeout(timer);
            reject(err);
          });
          child.once('exit', (code) => {
            clearTimeout(timer);
            if (code === 0) resolve();
            else reject(new RunscError(['run'], code, `see ${path.join(dir, 'runsc.log')}`));
          });
        });
      } finally {
        await log.close();
      }
      this.running.add(handle.id);
    })();
    this.starting.set(handle.id, start);
    try {
      await start;
    } catch (err) {
      const logText = await fs.readFile(path.join(this.dirOf(handle.id), 'runsc.log'), 'utf8').catch(() => '');
      throw err instanceof RunscError ? new RunscError(err.args, err.exitCode, logText.slice(-2_000) || err.stderr) : err;
    } finally {
      this.starting.delete(handle.id);
    }
  }

  private async removeContainer(id: string): Promise<void> {
    this.running.delete(id);
    try {
      await this.control(['delete', '--force', containerId(id)]);
    } catch (err) {
      // Gone already is what we wanted.
      if (!(err instanceof RunscError && /does not exist|not found|no such/i.test(err.stderr))) throw err;
    }
  }

  /** The container's state, or null when runsc knows no container of that id. */
  private async state(id: string): Promise<ContainerState | null> {
    this.dirOf(id);
    if (!existsSync(this.stateRoot)) return null;
    try {
      return JSON.parse(await this.control(['state', containerId(id)])) as ContainerState;
    } catch (err) {
      if (err instanceof RunscError && /does not exist|not found|no such/i.test(err.stderr)) return null;
      throw err;
    }
  }

  /** Processes in the sandbox, from `runsc ps` (its JSON format lists pids only). */
  private async processes(id: string): Promise<{ pid: number; uid: number }[]> {
    const out = await this.control(['ps', containerId(id)]);
    const rows = out.trim().split('\n').slice(1);
    return rows
      .map((r) => r.trim().split(/\s+/))
      .filter((f) => f.length >= 2)
      .map((f) => ({ uid: Number(f[0]), pid: Number(f[1]) }));
  }

  /** Kill the process group of one command, identified by the pid runsc wrote for it. */
  private async killCommand(handle: SandboxHandle, pidFile: string): Promise<void> {
    let pid = NaN;
    for (let i = 0; i < 40 && !Number.isInteger(pid); i++) {
      pid = Number((await fs.readFile(pidFile, 'utf8').catch(() => '')).trim() || NaN);
      if (!Number.isInteger(pid)) await new Promise((r) => setTimeout(r, 25));
    }
    try {
      if (Number.isInteger(pid) && pid > 1) {
        // Sent from inside, as the command's own user: the sandbox has no capabilities to signal anyone else.
        await this.control([...this.killerArgs(), '--env', `PG=${pid}`, containerId(handle.id), '/bin/sh', '-c', KILL_SCRIPT]);
      } else {
        await this.killAll(handle);
      }
    } catch (err) {
      this.log.warn('could not kill command in sandbox', { sandbox_id: handle.id, error: String(err) });
    }
  }

  private killerArgs(): string[] {
    return ['exec', '--user', '0:0', '--cap', 'CAP_KILL', '--env', `TARGET_UID=${this.uid}`];
  }

  private processSpec(args: string[], env: Record<string, string> | undefined): object {
    const base: Record<string, string> = {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: '/tmp',
      TMPDIR: '/tmp',
      LANG: 'C.UTF-8',
      TERM: 'dumb',
      CI: '1',
      GIT_TERMINAL_PROMPT: '0',
      GIT_DIR: GVISOR_GIT_DIR,
      GIT_WORK_TREE: GVISOR_WORKDIR,
      ...env,
    };
    return {
      terminal: false,
      user: { uid: this.uid, gid: this.gid },
      args,
      env: Object.entries(base).map(([k, v]) => `${k}=${v}`),
      cwd: GVISOR_WORKDIR,
      noNewPrivileges: true,
      capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
    };
  }

  private async writeBundle(id: string, hostWorkdir: string): Promise<void> {
    const bundle = path.join(this.dirOf(id), 'bundle');
    const rootfs = this.rootfs ?? path.join(bundle, 'rootfs');
    if (this.rootfs === undefined) {
      for (const d of ['usr', 'etc', 'proc', 'dev', 'tmp', 'workspace', 'workspace.git']) await fs.mkdir(path.join(rootfs, d), { recursive: true });
      // Debian's merged /usr: the top-level names are links into it.
      for (const name of ['bin', 'lib', 'lib64', 'sbin']) {
        if (!existsSync(path.join(rootfs, name))) await fs.symlink(`usr/${name}`, path.join(rootfs, name));
      }
    }
    const ro = ['rbind', 'ro', 'nosuid', 'nodev'];
    const mounts: object[] = [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', `size=${this.limits.tmpMb}m`] },
      ...(this.rootfs === undefined
        ? [
            { destination: '/usr', type: 'bind', source: '/usr', options: ro },
            { destination: '/etc', type: 'bind', source: '/etc', options: ro },
          ]
        : []),
      { destination: GVISOR_WORKDIR, type: 'bind', source: path.resolve(hostWorkdir), options: ['rbind', 'rw', 'nosuid', 'nodev'] },
      { destination: GVISOR_GIT_DIR, type: 'bind', source: gitDirOf(hostWorkdir), options: ro },
    ];
    const spec = {
      ociVersion: '1.0.2',
      process: {
        terminal: false,
        // The init only reaps orphans; commands run as the unprivileged user.
        user: { uid: 0, gid: 0 },
        // A SIGCHLD handler cuts the idle sleep short, so an orphan is reaped as soon as it exits.
        args: ['/usr/bin/perl', '-e', "$0 = 'sandbox-init'; $SIG{CHLD} = sub {}; while (1) { sleep 1 if wait() == -1 }"],
        env: ['PATH=/usr/bin:/bin'],
        cwd: '/',
        noNewPrivileges: true,
        capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
        // Every process in the sandbox gets these hard limits (`runsc exec` sets none of its own, and
        // limits changed inside one command would carry over to the next, so none are set per command).
        rlimits: [
          { type: 'RLIMIT_NPROC', hard: this.limits.processesPerCommand, soft: this.limits.processesPerCommand },
          { type: 'RLIMIT_CPU', hard: this.limits.cpuSecondsPerCommand, soft: this.limits.cpuSecondsPerCommand },
          { type: 'RLIMIT_NOFILE', hard: this.limits.openFiles, soft: this.limits.openFiles },
          { type: 'RLIMIT_FSIZE', hard: this.limits.fileSizeMb * 1024 * 1024, soft: this.limits.fileSizeMb * 1024 * 1024 },
        ],
      },
      root: { path: rootfs, readonly: true },
      hostname: 'sandbox',
      mounts,
      linux: {
        namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }],
        resources: {
          memory: { limit: this.limits.memoryMb * 1024 * 1024 },
          pids: { limit: HOST_PIDS_LIMIT },
        },
      },
    };
    await fs.mkdir(bundle, { recursive: true });
    await fs.writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec, null, 1));
  }

  /** Give the working copy to the sandbox's user; links are changed themselves, never followed. */
  private async handOver(hostWorkdir: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      execFile('chown', ['-R', '-P', '-h', `${this.uid}:${this.gid}`, '--', hostWorkdir], (err, _stdout, stderr) =>
        err ? reject(new Error(`chown of the working copy failed: ${String(stderr).trim() || err.message}`)) : resolve(),
      );
    });
  }

  /** Run a runsc housekeeping command and return its stdout. */
  private control(args: string[]): Promise<string> {
    const full = args[0] === '--version' ? args : [...this.globalArgs(), ...args];
    return new Promise((resolve, reject) => {
      execFile(this.runsc, full, { timeout: CONTROL_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err) reject(new RunscError(args, typeof err.code === 'number' ? err.code : null, String(stderr || err.message)));
        else resolve(stdout);
      });
    });
  }
}
