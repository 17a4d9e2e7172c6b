/**
 * The `gvisor` sandbox driver: one gVisor container per task, run with `runsc` on the
 * worker's host.
 *
 * Each sandbox is an OCI bundle under `<root>/<id>/bundle`:
 *  - a read-only root file system (the host's `/usr` and `/etc`, or a configured root fs),
 *  - the task's working copy bind-mounted read-write at `/workspace`, and its git repository
 *    read-only at `/workspace.git` (commands can read history and diff, never write config),
 *  - a private size-limited `/tmp`, which is also HOME,
 *  - no network at all (`--network=none`: not even the host's loopback is reachable), unless the task
 *    may reach some domain through the egress proxy: then runsc's netstack runs in a network namespace
 *    whose only reachable endpoint is the proxy's listener (see `gvisor-net.ts`), and commands get the
 *    proxy environment,
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
import { proxyEnvironment } from '../egress/proxy-env';
import type { EgressProxyPort } from '../egress/types';
import { gitDirOf } from '../git/workspace';
import { InvalidSandboxIdError, SANDBOX_ID, SandboxAbortedError } from './common';
import { attachQuotaDisk, detachQuotaDisk, diskIsFull } from './quota-disk';
import { readInside, writeInside } from './safe-fs';
import { watchCommand } from './command-watch';
import { PROXY_URL, SandboxNetworks } from './gvisor-net';
import { containerId, CONTAINER_ID_END, Runsc, RunscError } from './gvisor-runsc';
import { bundleNetns, commandProcessSpec, DEFAULT_GVISOR_LIMITS, GVISOR_WORKDIR, KILL_SCRIPT, writeBundle, type GvisorLimits } from './gvisor-spec';
import type { ExecOptions, ExecResult, ProvisionOptions, SandboxDriver, SandboxHandle } from './driver';

/** How long `killAll` waits for the killed processes to be gone. */
const KILL_WAIT_MS = 3_000;
const STATE_DIR = '.runsc';
/** Process specs and pid files of running commands, one pair per command. */
const EXEC_DIR = '.exec';
/** The working copy's disk image, in the sandbox's directory. */
const DISK_IMAGE = 'workspace.img';
/** The path the working copy's disk is mounted at, in the sandbox's directory. */
const DISK_MOUNT = 'workspace.mount';
/** Thrown when a command is asked of a sandbox that was torn down (its task ended meanwhile). */
export class SandboxTornDownError extends Error {
  override readonly name = 'SandboxTornDownError';
  constructor(readonly id: string) {
    super(`sandbox ${id} was torn down`);
  }
}

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
  /** The egress proxy; without it no sandbox gets a network, whatever its task may reach. */
  egress?: EgressProxyPort;
}

/** Runs each task's commands in its own gVisor sandbox (see the module comment). */
export class GvisorSandboxDriver implements SandboxDriver {
  readonly name = 'gvisor';
  readonly isolation = 'gvisor';
  private readonly root: string;
  private readonly runsc: string;
  /** runsc's command line over this driver's state directory. */
  private readonly cli: Runsc;
  private readonly log: Logger;
  private readonly uid: number;
  private readonly gid: number;
  private readonly limits: GvisorLimits;
  private readonly rootfs: string | undefined;
  /** Sandboxes this process has seen running; cleared when one is killed or removed. */
  private readonly running = new Set<string>();
  /** One start at a time per sandbox. */
  private readonly starting = new Map<string, Promise<void>>();
  private readonly egress: EgressProxyPort | undefined;
  /** The network namespaces of sandboxes that may reach the proxy. */
  private readonly net: SandboxNetworks;

  constructor(opts: GvisorSandboxDriverOptions) {
    this.root = path.resolve(opts.root);
    this.runsc = opts.runsc;
    this.cli = new Runsc(opts.runsc, path.join(this.root, STATE_DIR), opts.runscFlags ?? []);
    this.log = opts.log;
    this.uid = opts.uid ?? 65534;
    this.gid = opts.gid ?? 65534;
    this.limits = { ...DEFAULT_GVISOR_LIMITS, ...opts.limits };
    this.rootfs = opts.rootfs === undefined ? undefined : path.resolve(opts.rootfs);
    this.egress = opts.egress;
    this.net = new SandboxNetworks({ root: this.root, proxy: opts.egress, log: opts.log });
  }

  /**
   * Start the sandbox around the working copy at `hostWorkdir`, or re-attach to the one already
   * running under this id (a restarted worker). A stopped leftover is removed and started afresh.
   * A task that may reach some domain gets a sandbox with networking (one running without is restarted with it).
   */
  async provision(opts: ProvisionOptions): Promise<SandboxHandle> {
    const dir = this.dirOf(opts.id);
    const hostWorkdir = path.resolve(opts.hostWorkdir);
    const handle: SandboxHandle = { id: opts.id, driver: this.name, isolation: this.isolation, workdir: GVISOR_WORKDIR, hostWorkdir };
    const networked = this.mayNetwork(opts.id, opts.egressAllowlist ?? []);
    const state = await this.cli.state(opts.id);
    if (state?.status === 'running' && existsSync(path.join(dir, 'bundle', 'config.json'))) {
      this.running.add(opts.id);
      this.log.info('sandbox re-attached', { sandbox_id: opts.id, driver: this.name });
      if (networked && !(await this.hasNetwork(opts.id))) await this.restartWithNetwork(handle);
      await this.ensureRunning(handle);
      return handle;
    }
    await this.handOver(hostWorkdir);
    await this.writeBundle(opts.id, hostWorkdir, networked ? await this.net.prepare(opts.id) : undefined);
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
      await this.cli.control(['pause', containerId(handle.id)]);
    } catch (err) {
      // A sandbox that is gone or stopped runs nothing either; one that runs and will not pause is a fault.
      if ((await this.cli.state(handle.id))?.status === 'running') throw err;
      return work();
    }
    try {
      return await work();
    } finally {
      // Torn down while paused (the task was cancelled meanwhile): there is nothing left to resume.
      await this.cli.control(['resume', containerId(handle.id)]).catch(async (err: unknown) => {
        if ((await this.cli.state(handle.id)) !== null) throw err;
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
   * In a sandbox with networking the proxy admits what `opts.egress` allows while the command runs, and
   * nothing before or after it (processes left running lose their grant); the result carries what it saw.
   */
  async exec(handle: SandboxHandle, command: string, opts: ExecOptions): Promise<ExecResult> {
    // An empty grant still names its step: what the proxy refuses is attributed to it.
    const grant = opts.egress ?? null;
    let note = '';
    let networked = await this.hasNetwork(handle.id);
    if (!networked && this.mayNetwork(handle.id, grant?.allow ?? [])) {
      await this.restartWithNetwork(handle);
      networked = true;
      note = '\n[the sandbox was restarted with networking for this command: processes left running were stopped and /tmp was emptied]\n';
    }
    const proxy = this.egress;
    if (!proxy || !networked) return this.execChecked(handle, command, opts);
    await this.ensureRunning(handle);
    await this.net.ensureServed(handle.id);
    proxy.setGrant(handle.id, grant);
    let result: ExecResult;
    try {
      // The caller's variables come last: they may add to NO_PROXY, and bypassing the proxy reaches nothing anyway.
      result = await this.execChecked(handle, command, { ...opts, env: { ...proxyEnvironment(PROXY_URL), ...opts.env } });
    } finally {
      proxy.setGrant(handle.id, null);
    }
    return { ...result, output: result.output + note, egress: proxy.take(handle.id) };
  }

  /** Whether a sandbox allowed `allow` gets networking: some domain, and a proxy to route it (else it says why not). */
  private mayNetwork(id: string, allow: readonly string[]): boolean {
    if (allow.length === 0) return false;
    if (this.egress) return true;
    this.log.warn('the gvisor driver has no egress proxy: the egress allowed is not granted, the sandbox has no network', { sandbox_id: id, egress_allowlist: allow });
    return false;
  }

  /** Whether the sandbox's bundle gives it a network namespace (what runsc runs it with). */
  private async hasNetwork(id: string): Promise<boolean> {
    return (await bundleNetns(path.join(this.dirOf(id), 'bundle'))) !== undefined;
  }

  /**
   * Give a sandbox without networking a network, around the same working copy: runsc cannot add one to a
   * running sandbox, so it is removed and the next command starts it again (commands were stopped between
   * steps already; what runs in the background and /tmp are lost).
   */
  private async restartWithNetwork(handle: SandboxHandle): Promise<void> {
    if (!existsSync(path.join(this.dirOf(handle.id), 'bundle', 'config.json'))) throw new SandboxTornDownError(handle.id);
    this.log.warn('sandbox restarted with networking: egress was granted to it; its processes were stopped and /tmp emptied', { sandbox_id: handle.id });
    await this.removeContainer(handle.id);
    await this.writeBundle(handle.id, handle.hostWorkdir, await this.net.prepare(handle.id));
  }

  /** One command with the checks of `exec` on whether the sandbox lived through it. */
  private async execChecked(handle: SandboxHandle, command: string, opts: ExecOptions): Promise<ExecResult> {
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
    const state = await this.cli.state(id).catch(() => null);
    if (state?.status !== 'running') return false;
    return this.cli.control(['exec', '--user', '0:0', containerId(id), '/bin/true']).then(
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
    const child = spawn(this.runsc, [...this.cli.globalArgs(), 'exec', '--process', specFile, '--internal-pid-file', pidFile, containerId(handle.id)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });

    try {
      const result = await watchCommand(child, command, opts, { started, stop: () => this.killCommand(handle, pidFile), log: this.log, sandboxId: handle.id });
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
    const state = await this.cli.state(handle.id);
    if (state === null) return;
    // Left paused by a worker that died while it took a checkpoint: the sandbox is alive, resume it.
    if (state.status === 'paused') await this.cli.control(['resume', containerId(handle.id)]);
    if (state.status !== 'running' && state.status !== 'paused') {
      await this.removeContainer(handle.id);
      return;
    }
    try {
      await this.cli.control([...this.killerArgs(), containerId(handle.id), '/bin/sh', '-c', KILL_SCRIPT]);
      const deadline = Date.now() + KILL_WAIT_MS;
      for (;;) {
        const left = (await this.cli.processes(handle.id)).filter((p) => p.uid === this.uid);
        if (left.length === 0) return;
        if (Date.now() > deadline) throw new Error(`${left.length} processes survived SIGKILL`);
        await new Promise((r) => setTimeout(r, 50));
      }
    } catch (err) {
      this.log.warn('sandbox did not answer kill; removing it', { sandbox_id: handle.id, error: String(err) });
      await this.removeContainer(handle.id);
    }
  }

  /** Stop and delete the container, remove its network and `<root>/<id>`; succeeds when it is already gone. */
  async teardown(handle: SandboxHandle): Promise<void> {
    const dir = this.dirOf(handle.id);
    if ((await this.cli.state(handle.id)) !== null) await this.removeContainer(handle.id);
    await this.net.remove(handle.id);
    const mounted = await fs.readFile(path.join(dir, DISK_MOUNT), 'utf8').catch(() => null);
    for (const at of new Set([path.resolve(handle.hostWorkdir), ...(mounted ? [mounted] : [])])) await detachQuotaDisk(at);
    if (existsSync(dir)) await fs.rm(dir, { recursive: true, force: true });
    this.log.info('sandbox removed', { sandbox_id: handle.id, driver: this.name });
  }

  /** Ids of sandboxes with a bundle, a container or a network namespace, whatever their state. */
  async list(): Promise<string[]> {
    const ids = new Set<string>(await this.net.list());
    try {
      for (const e of await fs.readdir(this.root, { withFileTypes: true })) if (e.isDirectory() && SANDBOX_ID.test(e.name)) ids.add(e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (existsSync(this.cli.stateRoot)) {
      const out = await this.cli.control(['list', '-quiet']);
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
    const netns = path.join(this.cli.stateRoot, 'null-netns');
    if (!existsSync(netns)) return;
    await new Promise<void>((resolve) => execFile('umount', [netns], () => resolve()));
  }

  /** The version line `runsc --version` prints, for logs and `/healthz`. */
  async version(): Promise<string> {
    const out = await this.cli.control(['--version']);
    const line = out.split('\n')[0]!.trim();
    // A runsc built with `go install` carries no version; the setup script's cache directory names it.
    const dir = path.basename(path.dirname(this.runsc));
    return line.includes('VERSION_MISSING') && dir.startsWith('v') ? `runsc ${dir} (gVisor Go module)` : line;
  }

  private dirOf(id: string): string {
    if (!SANDBOX_ID.test(id)) throw new InvalidSandboxIdError(id);
    return path.join(this.root, id);
  }

  /** Make sure the container runs; starts (or restarts) it from its bundle when it does not. */
  private async ensureRunning(handle: SandboxHandle): Promise<void> {
    if (this.running.has(handle.id)) return;
    const pending = this.starting.get(handle.id);
    if (pending) return pending;
    const start = (async () => {
      const state = await this.cli.state(handle.id);
      // A worker that died while the sandbox was paused left it so: resume it before the first command.
      if (state?.status === 'paused') await this.cli.control(['resume', containerId(handle.id)]);
      if (state?.status === 'running' || state?.status === 'paused') {
        this.running.add(handle.id);
        return;
      }
      if (state !== null) await this.removeContainer(handle.id);
      const dir = this.dirOf(handle.id);
      // Only a teardown removes the bundle: a sandbox torn down is never started again behind it.
      const bundle = path.join(dir, 'bundle');
      if (!existsSync(path.join(bundle, 'config.json'))) throw new SandboxTornDownError(handle.id);
      const networked = (await bundleNetns(bundle)) !== undefined;
      // After a restart of the host the namespaces are gone; after any stop the sandbox's end lost its address.
      if (networked) await this.net.prepare(handle.id);
      const log = await fs.open(path.join(dir, 'runsc.log'), 'a');
      try {
        // The proxy's listener is made while runsc starts: both only need the namespaces.
        await Promise.all([this.cli.start(handle.id, bundle, log.fd, networked ? 'sandbox' : 'none'), networked ? this.net.ensureServed(handle.id) : undefined]);
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
    await this.cli.remove(id);
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
        await this.cli.control([...this.killerArgs(), '--env', `PG=${pid}`, containerId(handle.id), '/bin/sh', '-c', KILL_SCRIPT]);
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
    return commandProcessSpec(args, env, { uid: this.uid, gid: this.gid });
  }

  private async writeBundle(id: string, hostWorkdir: string, netns: string | undefined): Promise<void> {
    await writeBundle(path.join(this.dirOf(id), 'bundle'), { hostWorkdir, gitDir: gitDirOf(hostWorkdir), rootfs: this.rootfs, limits: this.limits, netns });
  }

  /** Give the working copy to the sandbox's user; links are changed themselves, never followed. */
  private async handOver(hostWorkdir: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      execFile('chown', ['-R', '-P', '-h', `${this.uid}:${this.gid}`, '--', hostWorkdir], (err, _stdout, stderr) =>
        err ? reject(new Error(`chown of the working copy failed: ${String(stderr).trim() || err.message}`)) : resolve(),
      );
    });
  }

}
