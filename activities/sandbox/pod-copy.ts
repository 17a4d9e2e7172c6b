/**
 * Copying a working copy into a sandbox pod and back, as tar streams over `pods/exec`.
 *
 * The stream coming back is untrusted: it passes a {@link TarGuard} (regular files, directories
 * and symlinks only; bytes and members capped, measured on the stream) before the host's GNU tar
 * unpacks it into a fresh directory, which replaces the worker's copy only when everything
 * passed, so a refused archive leaves the previous copy as it was. Every transfer has a deadline
 * and a cancellation signal; either kills the host's tar and closes the exec.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { OutputTail, SandboxAbortedError } from './common';
import { hostTar } from './host-tar';
import { TarGuard, type TarLimits } from './tar-guard';

/** Extra time the exec itself is given past a transfer's deadline, so the transfer's own, clearer timeout fires first. */
const EXEC_TIMEOUT_SLACK_MS = 5_000;

/** A socket whose reading can be paused (the exec's WebSocket), so a slow host tar slows the pod down instead of filling memory. */
export interface PausableSocket {
  pause(): void;
  resume(): void;
}

/** Streams and bounds of one exec in the pod. */
export interface PodExecIo {
  stdout?: Writable;
  stderr?: Writable;
  stdin?: Readable;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Called with the exec's socket once it is open. */
  onSocket?: (socket: PausableSocket) => void;
}

/** Runs one command (argv) in the pod and resolves with its exit code. */
export type PodExec = (command: string[], io: PodExecIo) => Promise<{ exitCode: number }>;

/** Thrown when a copy fails or times out for a reason that may pass when tried again. */
export class PodCopyError extends Error {
  override readonly name = 'PodCopyError';
}

/** Copy the worker's working copy (or some of its files) into the pod's `podDir`; `replace` empties the pod's copy first. */
export async function copyIntoPod(
  exec: PodExec,
  o: { hostDir: string; podDir: string; files?: string[]; replace: boolean; timeoutMs: number; signal?: AbortSignal },
): Promise<void> {
  const stop = deadline('copying the working copy into the pod', o.timeoutMs, o.signal);
  const tar = hostTar(['-C', o.hostDir, '-c', '-f', '-', '--', ...(o.files ?? ['.'])], ['ignore', 'pipe', 'pipe'], stop.signal);
  try {
    // The directory is passed as an argument, never spliced into the script.
    const script = `${o.replace ? 'find "$1" -mindepth 1 -delete' : 'mkdir -p "$1"'} && exec tar -x -m -o -f - -C "$1"`;
    const errOut = new CollectingWritable();
    const res = await exec(['/bin/sh', '-c', script, 'sh', o.podDir], {
      // Through a PassThrough: handed the child's pipe itself, the exec client never delivers its end to the pod.
      stdin: tar.child.stdout!.pipe(new PassThrough()),
      stderr: errOut,
      stdout: new CollectingWritable(),
      signal: stop.signal,
      timeoutMs: o.timeoutMs + EXEC_TIMEOUT_SLACK_MS,
    });
    const code = await tar.exited;
    stop.signal.throwIfAborted();
    if (code !== 0) throw new PodCopyError(`packing the working copy failed: ${await tar.stderr}`);
    if (res.exitCode !== 0) throw new PodCopyError(`unpacking the working copy in the pod failed: ${errOut.text()}`);
  } catch (err) {
    throw stop.signal.aborted ? stop.signal.reason : err;
  } finally {
    stop.dispose();
    await tar.kill();
  }
}

/** Replace the worker's working copy at `hostDir` with the pod's `podDir`, refusing what {@link TarGuard} refuses. */
export async function copyBackFromPod(
  exec: PodExec,
  o: { hostDir: string; podDir: string; limits: TarLimits; timeoutMs: number; signal?: AbortSignal },
): Promise<void> {
  const dest = o.hostDir;
  const fresh = path.join(path.dirname(dest), `.${path.basename(dest)}.sync-${randomBytes(4).toString('hex')}`);
  await fs.mkdir(fresh, { mode: 0o755 });
  const stop = deadline("copying the pod's working copy back", o.timeoutMs, o.signal);
  const guard = new TarGuard(o.limits);
  let guardEnded = false;
  guard.once('end', () => (guardEnded = true));
  // 'finish', not 'end': bytes after the end marker are still counted against the cap.
  const guardDone = new Promise<void>((resolve, reject) => {
    guard.once('finish', resolve);
    guard.once('error', reject);
  });
  guardDone.catch((err: unknown) => stop.abort(err));
  // GNU tar refuses `..` members and defers links that lead out; the guard has already refused worse.
  const tar = hostTar(['-x', '-f', '-', '-C', fresh, '--no-same-owner', '--no-same-permissions', '--delay-directory-restore'], ['pipe', 'ignore', 'pipe'], stop.signal);
  try {
    tar.child.stdin!.on('error', () => undefined);
    guard.pipe(tar.child.stdin!);
    void tar.exited.then(async () => {
      if (!guardEnded) stop.abort(new PodCopyError(`unpacking the pod's working copy ended early: ${await tar.stderr}`));
    });
    let socket: PausableSocket | undefined;
    const intake = new Writable({
      // The exec client ignores backpressure, so the socket is paused until the guard drains.
      write(chunk: Buffer, _enc, cb) {
        if (guard.destroyed || guard.write(chunk)) return cb();
        socket?.pause();
        const go = (): void => {
          guard.off('drain', go);
          guard.off('close', go);
          socket?.resume();
          cb();
        };
        guard.on('drain', go);
        guard.on('close', go);
      },
      final(cb) {
        if (!guard.destroyed) guard.end();
        cb();
      },
    });
    intake.on('error', () => undefined);
    const errOut = new CollectingWritable();
    // --hard-dereference: a hard link in the pod comes back as a file of its own; any link in the stream is refused.
    const res = await exec(['tar', '-c', '-f', '-', '--hard-dereference', '-C', o.podDir, '.'], {
      stdout: intake,
      stderr: errOut,
      signal: stop.signal,
      timeoutMs: o.timeoutMs + EXEC_TIMEOUT_SLACK_MS,
      onSocket: (s) => (socket = s),
    });
    try {
      await guardDone;
    } catch (err) {
      if (res.exitCode !== 0) throw new PodCopyError(`packing the working copy in the pod failed: ${errOut.text()}`, { cause: err });
      throw err;
    }
    const code = await tar.exited;
    stop.signal.throwIfAborted();
    if (res.exitCode !== 0) throw new PodCopyError(`packing the working copy in the pod failed: ${errOut.text()}`);
    if (code !== 0) throw new PodCopyError(`unpacking the pod's working copy failed: ${await tar.stderr}`);
    const old = `${fresh}.old`;
    await fs.rename(dest, old);
    await fs.rename(fresh, dest);
    await fs.rm(old, { recursive: true, force: true });
  } catch (err) {
    throw stop.signal.aborted ? stop.signal.reason : err;
  } finally {
    stop.dispose();
    guard.destroy();
    await tar.kill();
    if (existsSync(fresh)) await fs.rm(fresh, { recursive: true, force: true });
  }
}

interface Deadline {
  signal: AbortSignal;
  abort(reason: unknown): void;
  dispose(): void;
}

/** An abort signal that fires when `signal` does (an AbortError) or when `timeoutMs` passes (a {@link PodCopyError}). */
function deadline(what: string, timeoutMs: number, signal?: AbortSignal): Deadline {
  const controller = new AbortController();
  const abort = (reason: unknown): void => {
    if (!controller.signal.aborted) controller.abort(reason);
  };
  const onAbort = (): void => abort(new SandboxAbortedError(what, { cause: signal?.reason }));
  const timer = setTimeout(() => abort(new PodCopyError(`${what} did not finish within ${timeoutMs / 1000} s`)), timeoutMs);
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  return {
    signal: controller.signal,
    abort,
    dispose() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    },
  };
}

/** Keeps the last 16 KiB written to it, for error messages. */
export class CollectingWritable extends Writable {
  private readonly tail = new OutputTail(16 * 1024);
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.tail.push(chunk);
    cb();
  }
  /** What was written, trimmed. */
  text(): string {
    return this.tail.result().output.trim();
  }
}
