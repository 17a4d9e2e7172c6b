/**
 * The one exec state machine of the drivers that run a command as a local child process (a `runsc
 * exec` client, or the shell itself for the process driver): keeps the output's tail, kills the
 * command at its timeout or when the caller aborts, ticks while it runs, and waits for the output to
 * drain after it exits. What "kill" means is the driver's (`stop`).
 */
import type { ChildProcess } from 'node:child_process';
import type { Logger } from '../../workers/log';
import { OutputTail, SandboxAbortedError, signalNumber, startTicker } from './common';
import type { ExecOptions, ExecResult } from './driver';

/** How long output may still arrive after the client exited. */
const DRAIN_GRACE_MS = 200;
/** How long a stop may take before the client itself is killed, so it cannot hold the activity forever. */
const CLIENT_KILL_GRACE_MS = 2_000;

/** What the watcher needs from the driver besides the client. */
export interface CommandWatch {
  /** When the client was started (`Date.now()`), for the result's duration. */
  started: number;
  /** Kill the command and everything it started, inside the sandbox; resolves once they are gone. */
  stop: () => Promise<void>;
  log: Logger;
  sandboxId: string;
}

/**
 * The result of the command run by `child` (detached, so it leads a process group, with piped stdout
 * and stderr); rejects with {@link SandboxAbortedError} when `opts.signal` aborted it.
 */
export function watchCommand(child: ChildProcess, command: string, opts: ExecOptions, how: CommandWatch): Promise<ExecResult> {
  return new Promise<ExecResult>((resolve, reject) => {
    const tail = new OutputTail(opts.maxOutputBytes);
    let timedOut = false;
    let aborted = false;
    let settled = false;
    let exited = false;
    child.stdout!.on('data', (chunk: Buffer) => tail.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => tail.push(chunk));

    let killing: Promise<void> | null = null;
    const stop = (): void => {
      killing ??= how.stop().finally(() => {
        // If the group could not be reached, the client must not hold the activity forever.
        setTimeout(() => {
          if (!exited) {
            try {
              process.kill(-child.pid!, 'SIGKILL');
            } catch {
              // already gone
            }
          }
        }, CLIENT_KILL_GRACE_MS).unref();
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
    const stopTicker = startTicker(opts.onTick, how.log, how.sandboxId);
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
      resolve({ exitCode: timedOut ? 124 : exitCode, output, outputTruncatedBytes: truncatedBytes, timedOut, durationMs: Date.now() - how.started });
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
}
