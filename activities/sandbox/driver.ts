/**
 * The sandbox contract every driver (process, gVisor, Kubernetes pod) implements.
 */
import type { EgressGrant, EgressReport } from '../egress/types';

/** Names a live sandbox; plain JSON so the workflow can carry it across restarts. */
export interface SandboxHandle {
  /** Stable id, derived from the task id so a restarted worker finds the same sandbox. */
  id: string;
  /** Which driver made it (`process`, `gvisor`, `k8s`). */
  driver: string;
  /** What isolation the commands get, shown in traces and `/healthz` (`none` for process). */
  isolation: string;
  /** Path of the working copy as commands see it. */
  workdir: string;
  /** Path of the same working copy on the worker's host, where git runs (credentials never enter the sandbox). */
  hostWorkdir: string;
}

/** What a caller asks of one command. */
export interface ExecOptions {
  timeoutMs: number;
  /** Bytes of combined stdout+stderr kept; the rest is cut and counted. */
  maxOutputBytes: number;
  /** Variables added to the scrubbed environment. */
  env?: Record<string, string>;
  /** Aborts the command (kills its whole process tree) when fired. */
  signal?: AbortSignal;
  /** Called about once a second while the command runs (activities heartbeat here). */
  onTick?: () => void;
  /**
   * What the command may reach through the egress proxy. Absent or empty: nothing. A driver that
   * routes egress applies it before the command starts; one that cannot keeps egress denied.
   */
  egress?: EgressGrant;
}

/** What one command did. */
export interface ExecResult {
  exitCode: number;
  /** Combined stdout and stderr in arrival order, cut to `maxOutputBytes`. */
  output: string;
  outputTruncatedBytes: number;
  timedOut: boolean;
  durationMs: number;
  /** What the proxy saw of the sandbox's traffic while the command ran; absent where the driver routes no egress. */
  egress?: EgressReport;
}

/** What a sandbox is made for. */
export interface ProvisionOptions {
  /** The task id. */
  id: string;
  /** The working copy on the worker's host. */
  hostWorkdir: string;
  /**
   * Domains the task may reach at first; empty or absent means no network at all (a later command
   * granted egress gets it then). Drivers that cannot proxy keep egress denied.
   */
  egressAllowlist?: string[];
  /** Seconds the sandbox may live at most (the task's remaining wall-clock budget), where the driver can enforce it. */
  activeDeadlineSeconds?: number;
}

/** Provision, run commands in, inspect and remove one sandbox per task. */
export interface SandboxDriver {
  readonly name: string;
  readonly isolation: string;
  /** Create the sandbox around an existing host working copy, or re-attach to the live one with this id. */
  provision(opts: ProvisionOptions): Promise<SandboxHandle>;
  /**
   * Put the working copy at `hostWorkdir` where the driver's bounds hold (a disk of its own), after it
   * was cloned or found again and before anything reads it. Drivers without such bounds need not implement it.
   */
  attachWorkdir?(id: string, hostWorkdir: string): Promise<void>;
  exec(handle: SandboxHandle, command: string, opts: ExecOptions): Promise<ExecResult>;
  /** Read a file of the working copy (path relative to it; escapes are refused). */
  readFile(handle: SandboxHandle, path: string): Promise<string>;
  /**
   * Write a file of the working copy (path relative to it; escapes are refused); returns the path
   * written, inside the working copy after links.
   */
  writeFile(handle: SandboxHandle, path: string, content: string): Promise<string>;
  /**
   * The worker changed files of the working copy on its host (a checkpoint was restored): make the
   * sandbox see them as its own. Drivers that share the host's files directly need not implement it.
   */
  syncWorkdir?(handle: SandboxHandle): Promise<void>;
  /**
   * Run `work` (the worker reading the working copy on its host) while nothing in the sandbox can run.
   * Drivers whose sandbox cannot touch the worker's copy while the worker reads it (a pod's mirror)
   * need not implement it.
   */
  whileFrozen?<T>(handle: SandboxHandle, work: () => Promise<T>): Promise<T>;
  /** Kill anything still running inside (used before restoring a checkpoint and on teardown). */
  killAll(handle: SandboxHandle): Promise<void>;
  /** Remove the sandbox; succeeds when it is already gone. */
  teardown(handle: SandboxHandle): Promise<void>;
  /** Ids of sandboxes this driver has that are still present (for reaping). */
  list(): Promise<string[]>;
}
