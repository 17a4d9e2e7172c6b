/**
 * A real PostgreSQL server for the Temporal-on-PostgreSQL topology: Debian's binaries (`initdb`, `postgres`) on a
 * fresh data directory, run as the `postgres` OS user (initdb refuses root), listening on loopback only with a free
 * port, its Unix socket inside its own directory, and password authentication (scram-sha-256) for everyone, so the
 * server's clients authenticate exactly as against a deployed database. `.ci/run` installs Debian's `postgresql`
 * when the binaries are absent.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from './git-fixture';
import { freePort } from './http';
import { sleep, startProcess, stopProcess, tail, type Proc } from './kube-processes';

/** Where Debian installs each PostgreSQL major version's server binaries. */
const DEBIAN_POSTGRES_ROOT = '/usr/lib/postgresql';
/** The OS user the server runs as. */
const POSTGRES_OS_USER = 'postgres';
/** The superuser initdb creates; Temporal's SQL tool creates its databases with it. */
const SUPERUSER = 'temporal';
/** How long initdb may take on a loaded machine. */
const INITDB_TIMEOUT_MS = 120_000;
/** How long the server may take to accept a login after it starts. */
const START_TIMEOUT_MS = 60_000;
/** How often readiness is polled. */
const POLL_MS = 200;
/** How long a fast shutdown (SIGINT) may take before the process group is killed. */
const STOP_GRACE_MS = 10_000;
/** Lines of the server's log quoted when it fails. */
const LOG_TAIL_LINES = 40;
/** Connections the server accepts: two Temporal server processes' pools with room to spare. */
const MAX_CONNECTIONS = 200;

/** A running PostgreSQL; `stop()` ends it and removes its data, and is safe to call twice. */
export interface Postgres {
  host: string;
  port: number;
  user: string;
  password: string;
  /** The server's log, for post-mortems. */
  logFile: string;
  stop(): Promise<void>;
}

/** Options for {@link startPostgres}. */
export interface PostgresOptions {
  /**
   * Keep fsync and synchronous commits on, as a deployed database has them; off by default, which is safe for a
   * test database that is thrown away (a crash of the machine loses it anyway) and spares the shared disk.
   */
  durable?: boolean;
}

/** The directory holding `initdb` and `postgres`: `POSTGRES_BIN_DIR`, else Debian's newest installed major version. */
export function postgresBinDir(): string | undefined {
  const has = (dir: string): boolean => fs.existsSync(path.join(dir, 'initdb')) && fs.existsSync(path.join(dir, 'postgres'));
  const override = process.env.POSTGRES_BIN_DIR;
  if (override) return has(override) ? override : undefined;
  let versions: string[];
  try {
    versions = fs.readdirSync(DEBIAN_POSTGRES_ROOT).filter((v) => /^\d+$/.test(v));
  } catch {
    return undefined;
  }
  versions.sort((a, b) => Number(b) - Number(a));
  return versions.map((v) => path.join(DEBIAN_POSTGRES_ROOT, v, 'bin')).find(has);
}

/** Initialises a data directory and starts PostgreSQL on it; resolves once a password login succeeds. */
export async function startPostgres(opts: PostgresOptions = {}): Promise<Postgres> {
  const bin = postgresBinDir();
  if (bin === undefined) throw new Error(`PostgreSQL's server binaries are not installed under ${DEBIAN_POSTGRES_ROOT}: install Debian's postgresql (apt-get install postgresql) or set POSTGRES_BIN_DIR`);
  const uid = Number(execFileSync('id', ['-u', POSTGRES_OS_USER], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', POSTGRES_OS_USER], { encoding: 'utf8' }).trim());

  const dir = tempDir('postgres');
  const data = path.join(dir, 'data');
  const socketDir = path.join(dir, 'socket');
  const pwFile = path.join(dir, 'password');
  const password = randomBytes(18).toString('base64url');
  fs.mkdirSync(socketDir, { mode: 0o700 });
  fs.writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
  for (const p of [dir, socketDir, pwFile]) fs.chownSync(p, uid, gid);

  const remove = (): void => fs.rmSync(dir, { recursive: true, force: true });
  try {
    await runAs(path.join(bin, 'initdb'), ['-D', data, '-U', SUPERUSER, `--pwfile=${pwFile}`, '--auth=scram-sha-256', '--encoding=UTF8', '--no-sync'], dir);
  } catch (err) {
    remove();
    throw err;
  }
  fs.rmSync(pwFile);

  const port = await freePort();
  const settings = [
    'listen_addresses=127.0.0.1',
    `port=${port}`,
    `unix_socket_directories=${socketDir}`,
    `max_connections=${MAX_CONNECTIONS}`,
    ...(opts.durable ? [] : ['fsync=off', 'synchronous_commit=off', 'full_page_writes=off']),
  ];
  const proc = startProcess('postgres', 'runuser', ['-u', POSTGRES_OS_USER, '--', path.join(bin, 'postgres'), '-D', data, ...settings.flatMap((s) => ['-c', s])], dir);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await fastShutdown(proc);
    remove();
  };
  try {
    await ready(proc, bin, port, password);
  } catch (err) {
    await stop();
    throw err;
  }
  return { host: '127.0.0.1', port, user: SUPERUSER, password, logFile: proc.logFile, stop };
}

/** SIGINT is PostgreSQL's fast shutdown (it ends open sessions); SIGTERM would wait for every client to leave. */
async function fastShutdown(proc: Proc): Promise<void> {
  const pgid = proc.child.pid;
  if (pgid !== undefined && proc.child.exitCode === null && proc.child.signalCode === null) {
    try {
      process.kill(-pgid, 'SIGINT');
    } catch {
      // already gone
    }
    await Promise.race([proc.exited, sleep(STOP_GRACE_MS)]);
  }
  await stopProcess(proc);
}

/** Polls with `psql` over TCP, with the password, until a login succeeds. */
async function ready(proc: Proc, bin: string, port: number, password: string): Promise<void> {
  let exited = false;
  void proc.exited.then(() => {
    exited = true;
  });
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = '';
  while (Date.now() < deadline) {
    if (exited) throw new Error(`PostgreSQL exited before it accepted a login; last log lines:\n${tail(proc.logFile, LOG_TAIL_LINES)}`);
    const out = await new Promise<string | null>((resolve) => {
      execFile(
        path.join(bin, 'psql'),
        ['-h', '127.0.0.1', '-p', String(port), '-U', SUPERUSER, '-d', 'postgres', '-tAc', 'select 1'],
        { env: { PATH: process.env.PATH ?? '', PGPASSWORD: password, PGCONNECT_TIMEOUT: '2' }, timeout: 5_000 },
        (err, stdout, stderr) => {
          last = err ? (stderr || err.message).trim() : '';
          resolve(err ? null : stdout.trim());
        },
      );
    });
    if (out === '1') return;
    await sleep(POLL_MS);
  }
  throw new Error(`PostgreSQL did not accept a login within ${START_TIMEOUT_MS / 1000} s (last: ${last}); last log lines:\n${tail(proc.logFile, LOG_TAIL_LINES)}`);
}

/** Runs a PostgreSQL tool as the `postgres` OS user in `cwd`, failing with its output. */
function runAs(file: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('runuser', ['-u', POSTGRES_OS_USER, '--', file, ...args], { cwd, timeout: INITDB_TIMEOUT_MS, env: { PATH: process.env.PATH ?? '', LC_ALL: 'C.UTF-8' } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(file)} failed: ${err.message}\n${(stderr || stdout).trim()}`, { cause: err }));
      else resolve();
    });
  });
}
