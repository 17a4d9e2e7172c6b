/**
 * The one git runner: every git process the worker starts goes through {@link run}, as its own process group
 * without a shell, with hooks, fsmonitor and every transport protocol off (a remote call enables the one it
 * needs), prompts off, a fixed author, a timeout and an optional cancellation signal.
 */
import { spawn } from 'node:child_process';

/** The identity of every commit the agent makes. */
export const AGENT_AUTHOR = { name: 'Agent Inbox', email: 'agent@agent-inbox.local' } as const;

/** Why a git command failed, as far as its message tells: `unavailable` and `rejected` will not pass by retrying. */
export type GitFailureReason = 'unavailable' | 'rejected' | 'failed';

/** Thrown when a git command exits non-zero or runs out of time; carries the command and stderr tail, credentials redacted. */
export class GitError extends Error {
  override readonly name = 'GitError';
  readonly args: readonly string[];
  readonly stderr: string;
  constructor(
    args: readonly string[],
    readonly exitCode: number | null,
    stderr: string,
    readonly reason: GitFailureReason = 'failed',
    options?: { cause?: unknown },
  ) {
    const safeArgs = args.map(redact);
    const safeStderr = redact(stderr);
    const subcommand = safeArgs.find((a) => !a.startsWith('-')) ?? '';
    const last = safeStderr.trim().split('\n').slice(-3).join(' | ');
    super(`git ${subcommand} failed (exit ${exitCode ?? 'none'}): ${last}`, options);
    this.args = safeArgs;
    this.stderr = safeStderr;
  }
}

/** Thrown when a signal aborts a git call; named `AbortError` because that is how the worker recognises a cancelled activity. */
export class GitAbortedError extends Error {
  override readonly name = 'AbortError';
  constructor(subcommand: string, options?: { cause?: unknown }) {
    super(`git ${subcommand} aborted`, options);
  }
}

/** Thrown when an argument would reach git as an option or an invalid ref. */
export class InvalidGitArgumentError extends Error {
  override readonly name = 'InvalidGitArgumentError';
  constructor(readonly what: string, readonly value: string) {
    super(`invalid ${what}: ${JSON.stringify(redact(value).slice(0, 300))}`);
  }
}

/** How long one git call may run, by kind; past it the call is killed with everything it started and fails as `failed`. */
export const GIT_TIMEOUT_MS = {
  /** Work on the local repository: snapshots of a large working copy, diffs, commits. */
  local: 10 * 60_000,
  /** Asking a remote where a branch points. */
  query: 2 * 60_000,
  /** Cloning a repository. */
  clone: 30 * 60_000,
  /** Pushing or deleting a branch. */
  push: 10 * 60_000,
} as const;

/** What the exported git operations accept: the activity's cancellation signal (`Context.current().cancellationSignal`). */
export interface GitCallOptions {
  /** Aborting kills the git process group; the call rejects with a {@link GitAbortedError}. */
  signal?: AbortSignal;
}

// Set on every command: neither hooks nor an fsmonitor configured inside the working copy ever run on the host,
// and no transport is allowed unless a remote call enables its own (see remote.ts).
const SAFE_CONFIG = ['-c', 'core.hooksPath=/dev/null', '-c', 'core.fsmonitor=false', '-c', 'protocol.allow=never'];
const MAX_OUTPUT = 256 * 1024 * 1024;
const STDERR_TAIL = 4_000;
// Variables that would point git at another repository or index than the one we name, or (GIT_ALLOW_PROTOCOL)
// replace the protocol rules set on each call.
const LOCATION_VARS = [
  'GIT_DIR',
  'GIT_WORK_TREE',
  'GIT_INDEX_FILE',
  'GIT_OBJECT_DIRECTORY',
  'GIT_ALTERNATE_OBJECT_DIRECTORIES',
  'GIT_COMMON_DIR',
  'GIT_NAMESPACE',
  'GIT_PREFIX',
  'GIT_ALLOW_PROTOCOL',
];

/** How one git call runs. */
export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  input?: string;
  /** Exit codes that are answers rather than failures (e.g. 1 from `rev-parse --verify --quiet`). */
  okCodes?: number[];
  /** Extra `-c` settings before the subcommand (protocol and credentials of a remote call). */
  config?: string[];
  /** Default: {@link GIT_TIMEOUT_MS}.local. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Hide the user:password part of URLs so a token in a remote never reaches a log or a failure message. */
export function redact(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]+@/gi, '$1***@');
}

/** The environment of a git call: the worker's, minus anything that redirects git, plus the fixed author. */
function gitEnv(extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
  // The worker's environment is kept: SSH agents and the operator's own git configuration live there.
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of LOCATION_VARS) delete env[name];
  return {
    ...env,
    GIT_TERMINAL_PROMPT: '0',
    // Stable English messages: failures are classified by what git says.
    LC_ALL: 'C',
    GIT_AUTHOR_NAME: AGENT_AUTHOR.name,
    GIT_AUTHOR_EMAIL: AGENT_AUTHOR.email,
    GIT_COMMITTER_NAME: AGENT_AUTHOR.name,
    GIT_COMMITTER_EMAIL: AGENT_AUTHOR.email,
    ...extra,
  };
}

/** Kill a git call's whole process group (remote helpers and pack processes included); gone already is fine. */
function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // ESRCH: nothing of the group is left.
  }
}

/** The one git runner: every git process of the worker starts here. */
export function run(args: string[], opts: RunOptions = {}): Promise<{ stdout: string; code: number }> {
  const fullArgs = [...SAFE_CONFIG, ...(opts.config ?? []), ...args];
  const subcommand = args.find((a) => !a.startsWith('-')) ?? '';
  if (opts.signal?.aborted) return Promise.reject(new GitAbortedError(subcommand, { cause: opts.signal.reason }));
  const timeoutMs = opts.timeoutMs ?? GIT_TIMEOUT_MS.local;
  return new Promise((resolve, reject) => {
    // Its own process group, so a timeout or a cancellation also ends the remote helper or ssh git started.
    const child = spawn('git', fullArgs, { cwd: opts.cwd, env: gitEnv(opts.env), detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let outBytes = 0;
    let err = '';
    let ended: 'timeout' | 'abort' | 'overflow' | null = null;
    const stop = (why: 'timeout' | 'abort' | 'overflow'): void => {
      ended ??= why;
      killGroup(child.pid);
    };
    const onAbort = (): void => stop('abort');
    const timer = setTimeout(() => stop('timeout'), timeoutMs);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes > MAX_OUTPUT) stop('overflow');
      else out.push(chunk);
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      err = (err + chunk).slice(-STDERR_TAIL);
    });
    const settle = (): void => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    child.once('error', (spawnErr) => {
      settle();
      reject(new GitError(args, null, spawnErr.message, 'failed'));
    });
    child.once('close', (code) => {
      settle();
      if (ended === 'abort') return reject(new GitAbortedError(subcommand, { cause: opts.signal?.reason }));
      if (ended === 'timeout') return reject(new GitError(args, null, `${err}\ntimed out after ${timeoutMs} ms`, 'failed'));
      if (ended === 'overflow') return reject(new GitError(args, null, `output exceeded ${MAX_OUTPUT} bytes`, 'failed'));
      const stdout = Buffer.concat(out).toString('utf8');
      if (code === 0) return resolve({ stdout, code: 0 });
      if (code !== null && opts.okCodes?.includes(code)) return resolve({ stdout, code });
      reject(new GitError(args, code, err || `exit ${code}`, 'failed'));
    });
    // git may exit without reading stdin (an early failure); its exit code reports that, not an EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}
