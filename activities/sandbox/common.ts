/**
 * Pieces every sandbox driver shares: its errors, the output tail and the per-second tick.
 */
import os from 'node:os';
import type { Logger } from '../../workers/log';

/** Sandbox ids: one path segment, no leading dot. */
export const SANDBOX_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;

/** Thrown when a sandbox id is not a single safe path segment. */
export class InvalidSandboxIdError extends Error {
  override readonly name = 'InvalidSandboxIdError';
  constructor(readonly id: string) {
    super(`invalid sandbox id: ${JSON.stringify(id.slice(0, 300))}`);
  }
}

/** Thrown when `readFile`/`writeFile` is given a path that is absolute or leads outside the working copy. */
export class SandboxPathError extends Error {
  override readonly name = 'SandboxPathError';
  constructor(
    readonly requested: string,
    options?: { cause?: unknown },
  ) {
    super(`path is outside the working copy: ${JSON.stringify(requested.slice(0, 500))}`, options);
  }
}

/**
 * Thrown when `opts.signal` aborts a command; named `AbortError` because that is
 * how the Temporal worker recognises an activity that ended because it was cancelled.
 */
export class SandboxAbortedError extends Error {
  override readonly name = 'AbortError';
  constructor(
    readonly command: string,
    options?: { cause?: unknown },
  ) {
    super('command aborted', options);
  }
}

/** Keeps the last `max` bytes of a stream and counts what fell off the front. */
export class OutputTail {
  private chunks: Buffer[] = [];
  private kept = 0;
  private dropped = 0;

  constructor(private readonly max: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.kept += chunk.length;
    while (this.chunks.length > 1 && this.kept - this.chunks[0]!.length >= this.max) {
      const first = this.chunks.shift()!;
      this.kept -= first.length;
      this.dropped += first.length;
    }
  }

  result(): { output: string; truncatedBytes: number } {
    let buf = Buffer.concat(this.chunks);
    let dropped = this.dropped;
    if (buf.length > this.max) {
      let cut = buf.length - this.max;
      // Do not start the tail in the middle of a UTF-8 character.
      while (cut < buf.length && (buf[cut]! & 0xc0) === 0x80) cut++;
      dropped += cut;
      buf = buf.subarray(cut);
    }
    return { output: buf.toString('utf8'), truncatedBytes: dropped };
  }
}

/** The number of a signal by name, 0 for none (exit codes of killed commands are 128 + it). */
export function signalNumber(signal: NodeJS.Signals | null): number {
  return signal === null ? 0 : (os.constants.signals[signal] ?? 0);
}

/**
 * Calls `onTick` about once a second while a command runs (activities heartbeat there); a throwing
 * callback is logged, never fatal. Returns the function that stops it.
 */
export function startTicker(onTick: (() => void) | undefined, log: Logger, sandboxId: string): () => void {
  const ticker = setInterval(() => {
    try {
      onTick?.();
    } catch (err) {
      log.warn('sandbox tick callback failed', { sandbox_id: sandboxId, err });
    }
  }, 1_000);
  return () => clearInterval(ticker);
}
