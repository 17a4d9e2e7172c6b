/**
 * Prism, Stoplight's OpenAPI validating proxy, run as a child process in front of the fake GitHub.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { freePort } from '../http';
import { REPO_ROOT } from '../stack';

/** A running Prism proxy. */
export interface PrismProxy {
  url: string;
  /** Milliseconds from spawn until Prism said it was listening. */
  startupMs: number;
  stop(): Promise<void>;
}

const PRISM_BIN = path.join(REPO_ROOT, 'node_modules', '.bin', 'prism');
const LISTENING = /Prism is listening on/;
/** Prism loads the trimmed description in about two seconds; the full one would take tens. */
const STARTUP_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;
/** How much of Prism's output a startup failure quotes. */
const OUTPUT_TAIL_CHARS = 2_000;

/**
 * Starts `prism proxy` validating against `specFile` and forwarding to `upstream`. With `--errors` a request the
 * description refuses never reaches the upstream (Prism answers 4xx itself), and a response that breaks the
 * description is replaced by Prism's 500.
 */
export async function startPrism(specFile: string, upstream: string): Promise<PrismProxy> {
  const port = await freePort();
  const started = Date.now();
  // The listening line is logged at `info`, the level that also logs every request, so the output is drained, not kept.
  const child = spawn(PRISM_BIN, ['proxy', specFile, upstream, '-p', String(port), '-h', '127.0.0.1', '--errors', '-v', 'info'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`prism did not start within ${STARTUP_TIMEOUT_MS} ms: ${output.slice(-OUTPUT_TAIL_CHARS)}`)), STARTUP_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-OUTPUT_TAIL_CHARS);
      if (LISTENING.test(output)) { clearTimeout(timer); resolve(); }
    };
    const fail = (error: Error): void => { clearTimeout(timer); child.kill('SIGKILL'); reject(error); };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => fail(new Error(`prism exited with ${code} before listening: ${output.slice(-OUTPUT_TAIL_CHARS)}`)));
    child.once('error', fail);
  });
  const startupMs = Date.now() - started;
  return {
    url: `http://127.0.0.1:${port}`,
    startupMs,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}
