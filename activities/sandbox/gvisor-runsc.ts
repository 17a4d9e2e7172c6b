/**
 * runsc's command line, as the gVisor driver uses it for housekeeping: container ids, state, process
 * lists, removal, and one typed error for runsc itself failing (not a command inside the sandbox).
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { InvalidSandboxIdError, SANDBOX_ID } from './common';

/** How long a `runsc` housekeeping command (state, kill, delete) may take before it counts as failed. */
export const RUNSC_CONTROL_TIMEOUT_MS = 30_000;
/** runsc's messages for a container it does not know. */
const UNKNOWN_CONTAINER = /does not exist|not found|no such/i;

/**
 * Ends every runsc container id. runsc takes an id that is a prefix of others as ambiguous (`task-1`
 * next to `task-10`); `+` never occurs in a sandbox id, so no container id is a prefix of another.
 */
export const CONTAINER_ID_END = '+';

/** The runsc container id of sandbox `id`. */
export function containerId(id: string): string {
  if (!SANDBOX_ID.test(id)) throw new InvalidSandboxIdError(id);
  return `${id}${CONTAINER_ID_END}`;
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

/** What `runsc state` says of a container. */
export interface ContainerState {
  status: string;
}

/** runsc run over one state directory, with the driver's global flags. */
export class Runsc {
  constructor(
    readonly bin: string,
    readonly stateRoot: string,
    private readonly flags: readonly string[],
  ) {}

  /** The global arguments every call takes. */
  globalArgs(): string[] {
    return ['--root', this.stateRoot, ...this.flags];
  }

  /** Run a runsc housekeeping command and return its stdout. */
  control(args: string[]): Promise<string> {
    const full = args[0] === '--version' ? args : [...this.globalArgs(), ...args];
    return new Promise((resolve, reject) => {
      execFile(this.bin, full, { timeout: RUNSC_CONTROL_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err) reject(new RunscError(args, typeof err.code === 'number' ? err.code : null, String(stderr || err.message)));
        else resolve(stdout);
      });
    });
  }

  /** The container's state, or null when runsc knows no container of that sandbox id. */
  async state(id: string): Promise<ContainerState | null> {
    const cid = containerId(id);
    if (!existsSync(this.stateRoot)) return null;
    try {
      return JSON.parse(await this.control(['state', cid])) as ContainerState;
    } catch (err) {
      if (err instanceof RunscError && UNKNOWN_CONTAINER.test(err.stderr)) return null;
      throw err;
    }
  }

  /** Processes in the sandbox, from `runsc ps` (its JSON format lists pids only). */
  async processes(id: string): Promise<{ pid: number; uid: number }[]> {
    const out = await this.control(['ps', containerId(id)]);
    const rows = out.trim().split('\n').slice(1);
    return rows
      .map((r) => r.trim().split(/\s+/))
      .filter((f) => f.length >= 2)
      .map((f) => ({ uid: Number(f[0]), pid: Number(f[1]) }));
  }

  /**
   * Start sandbox `id`'s container from `bundle`, detached. runsc's runtime keeps the stdio it is given
   * for the container's life, so it gets `logFd` (a file) and no pipe. `network` is runsc's mode: `none`
   * (no interface but loopback) or `sandbox` (its netstack over the bundle's network namespace).
   */
  start(id: string, bundle: string, logFd: number, network: 'none' | 'sandbox'): Promise<void> {
    const args = [...this.globalArgs(), `--network=${network}`, 'run', '--detach', '--bundle', bundle, containerId(id)];
    return new Promise<void>((resolve, reject) => {
      const child = spawn(this.bin, args, { stdio: ['ignore', logFd, logFd] });
      const timer = setTimeout(() => child.kill('SIGKILL'), RUNSC_CONTROL_TIMEOUT_MS);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve();
        else reject(new RunscError(['run'], code, 'see the sandbox\'s runsc.log'));
      });
    });
  }

  /** Delete the container, killing what runs in it; succeeds when it is gone already. */
  async remove(id: string): Promise<void> {
    try {
      await this.control(['delete', '--force', containerId(id)]);
    } catch (err) {
      if (!(err instanceof RunscError && UNKNOWN_CONTAINER.test(err.stderr))) throw err;
    }
  }
}
