/** The compiled backend entry point started as a process of its own, as a deploy runs it: for crash and restart tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './stack';

/** The backend's entry point, compiled. */
export const BACKEND_MAIN = path.join(REPO_ROOT, 'dist', 'workers', 'main.js');

/** Starts the backend with `env` (and PATH) only, its output appended to `logFile`. */
export function spawnBackend(env: Record<string, string>, logFile: string): ChildProcess {
  const out = fs.openSync(logFile, 'a');
  const child = spawn(process.execPath, [BACKEND_MAIN], { cwd: REPO_ROOT, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  return child;
}

/** The process's exit code once it has exited (null when a signal ended it). */
export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** How much of the backend's log a failed start shows. */
const LOG_TAIL_CHARS = 4_000;
/** How long a backend start may take on a loaded machine before the test gives up. */
const HEALTHY_TIMEOUT_MS = 120_000;

/**
 * Waits until the backend at `base` answers /healthz with 200. Fails at once when `child` exits first, and in
 * either failure says why with the end of its log, so a start that broke is told apart from one that was slow.
 */
export async function backendHealthy(child: ChildProcess, base: string, logFile: string): Promise<{ status: number; body: any }> {
  const tail = (): string => {
    try {
      return fs.readFileSync(logFile, 'utf8').slice(-LOG_TAIL_CHARS);
    } catch {
      return '(no log)';
    }
  };
  const deadline = Date.now() + HEALTHY_TIMEOUT_MS;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the backend exited (${child.exitCode ?? child.signalCode}) before it was healthy; its log ends:\n${tail()}`);
    }
    try {
      const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(5_000) });
      if (res.status === 200) return { status: res.status, body: await res.json() };
      lastErr = `status ${res.status}`;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the backend was not healthy after ${HEALTHY_TIMEOUT_MS / 1000} s (last: ${String(lastErr)}); its log ends:\n${tail()}`);
}
