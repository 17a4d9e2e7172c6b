/**
 * The host's GNU tar as a child process that a deadline or a cancellation can kill, for the streams
 * that copy working copies in and out of sandboxes and caches.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { OutputTail } from './common';

/** A running host tar. */
export interface HostTar {
  child: ChildProcess;
  /** Exit code (null when killed or not started). */
  exited: Promise<number | null>;
  /** The last 16 KiB of its stderr, once it has closed. */
  stderr: Promise<string>;
  /** SIGKILL it if it still runs, and wait until it has exited. */
  kill(): Promise<void>;
}

/** The host's `tar`, killed as soon as `stop` fires. */
export function hostTar(args: string[], stdio: ['ignore' | 'pipe', 'ignore' | 'pipe', 'pipe'], stop: AbortSignal): HostTar {
  const child = spawn('tar', args, { stdio });
  const tail = new OutputTail(16 * 1024);
  child.stderr!.on('data', (c: Buffer) => tail.push(c));
  let startError: Error | null = null;
  const closed = new Promise<void>((resolve) => {
    child.once('error', (err) => {
      startError = err;
      resolve();
    });
    child.once('close', () => resolve());
  });
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  stop.addEventListener('abort', kill, { once: true });
  void closed.then(() => stop.removeEventListener('abort', kill));
  if (stop.aborted) kill();
  return {
    child,
    exited: closed.then(() => child.exitCode),
    stderr: closed.then(() => (startError ? `could not run tar: ${(startError as Error).message}` : tail.result().output.trim())),
    async kill() {
      kill();
      await closed;
    },
  };
}
