/**
 * A real Temporal server on PostgreSQL, as a production cluster runs it: `temporal-server` built from the Go module
 * `go.temporal.io/server` (`bash k8s/tools/build-temporal.sh`, which `npm run setup:test` runs), its schema set up
 * with `temporal-sql-tool` from the module's own `schema/postgresql/v12`, the `postgres12` persistence plugin for
 * both the default and the visibility store, and every service (frontend, history, matching, worker) in one
 * process on free loopback ports, without TLS or an authorizer. What it returns has the dev server's shape, so
 * `stackEnv()` points backends at it unchanged.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import YAML from 'yaml';
import type { DevServer } from '../../workers/temporal-server';
import { tempDir } from './git-fixture';
import { sleep, startProcess, stopProcess, tail } from './kube-processes';
import type { Postgres } from './postgres';
import { REPO_ROOT } from './stack';

/** History shards: enough to spread a test's workflows, few enough to start fast (fixed for a database's life). */
const NUM_HISTORY_SHARDS = 4;
/** How long the frontend may take to serve a registered namespace after the process starts. */
const START_TIMEOUT_MS = 90_000;
/** How long one schema step of the SQL tool may take. */
const SQL_TOOL_TIMEOUT_MS = 120_000;
/** How often readiness is polled. */
const POLL_MS = 250;
/** Lines of the server's log quoted when it fails to start. */
const LOG_TAIL_LINES = 60;
/** Days a namespace the helper registers keeps ended workflows. */
const RETENTION_DAYS = 1;
const DAY_MS = 24 * 60 * 60 * 1000;
/** The default store's connection pool per service; the visibility store's is smaller, as in Temporal's own samples. */
const DEFAULT_MAX_CONNS = 20;
const VISIBILITY_MAX_CONNS = 10;
/** How often the server re-reads its dynamic config file. */
const DYNAMIC_CONFIG_POLL = '10s';
/** The server's persistence plugin for PostgreSQL 12 and later. */
const SQL_PLUGIN = 'postgres12';
/** The databases the schema tool creates. */
const DATABASES = [
  { name: 'temporal', schema: 'temporal' },
  { name: 'temporal_visibility', schema: 'visibility' },
] as const;

/**
 * Temporal keeps each service's ports in `cluster_membership.rpc_port`, a SMALLINT on PostgreSQL: a port above
 * 32767 (any ephemeral port Linux hands out) fails the server's start. So its ports come from below that.
 */
const PORT_RANGE = { from: 20_000, to: 32_767 } as const;
/** Random ports tried before giving up: the range is mostly free on a test machine. */
const PORT_ATTEMPTS = 200;

/** A running server: the dev server's shape plus where its files are. */
export interface PostgresTemporal extends DevServer {
  /** The server's log, for post-mortems. */
  logFile: string;
  /** `host:port` of each service's gRPC and membership listeners (all loopback), for probes. */
  listeners: string[];
}

/** Options for {@link startTemporalOnPostgres}. */
export interface PostgresTemporalOptions {
  /** Registered at start; defaults to `default`. */
  namespace?: string;
  /** Connection pool of the default store per service; defaults to {@link DEFAULT_MAX_CONNS}. */
  maxConns?: number;
  /** Further dynamic config values, keyed as in Temporal's dynamic config file. */
  dynamicConfig?: Record<string, unknown>;
}

/** The directory holding the server, the SQL tool and the schema: `TEMPORAL_SERVER_DIR`, else what `build-temporal.sh --bin-dir` names. */
export async function temporalServerDir(): Promise<string | undefined> {
  const has = (dir: string): boolean => ['temporal-server', 'temporal-sql-tool', 'schema'].every((f) => fs.existsSync(path.join(dir, f)));
  const override = process.env.TEMPORAL_SERVER_DIR;
  if (override) return has(override) ? override : undefined;
  const out = await new Promise<string | undefined>((resolve) => {
    execFile('bash', [path.join(REPO_ROOT, 'k8s', 'tools', 'build-temporal.sh'), '--bin-dir'], { timeout: 30_000 }, (err, stdout) => resolve(err ? undefined : stdout));
  });
  const dir = out?.trim().split('\n').pop();
  return dir && has(dir) ? dir : undefined;
}

/** Creates Temporal's databases on `pg`, sets up their schema, starts the server and registers the namespace. */
export async function startTemporalOnPostgres(pg: Postgres, opts: PostgresTemporalOptions = {}): Promise<PostgresTemporal> {
  const bin = await temporalServerDir();
  if (bin === undefined) throw new Error('the Temporal server is not built: run `bash k8s/tools/build-temporal.sh` (or `npm run setup:test`) first');
  const namespace = opts.namespace ?? 'default';
  const dir = tempDir('temporal-pg');
  await setUpSchema(bin, pg, dir);

  const [frontend, frontendMembership, history, historyMembership, matching, matchingMembership, worker, workerMembership] = await freeSmallintPorts(8);
  const address = `127.0.0.1:${frontend}`;
  const dynamicConfigFile = path.join(dir, 'dynamicconfig.yaml');
  fs.writeFileSync(dynamicConfigFile, YAML.stringify(dynamicConfig(opts.dynamicConfig ?? {})));
  const configFile = path.join(dir, 'temporal.yaml');
  // It holds the database password.
  fs.writeFileSync(configFile, YAML.stringify(serverConfig({ pg, address, dynamicConfigFile, maxConns: opts.maxConns ?? DEFAULT_MAX_CONNS, ports: { frontend, frontendMembership, history, historyMembership, matching, matchingMembership, worker, workerMembership } })), { mode: 0o600 });

  const proc = startProcess('temporal-server', path.join(bin, 'temporal-server'), ['--config-file', configFile, '--allow-no-auth', 'start'], dir, { PATH: process.env.PATH ?? '' });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await stopProcess(proc);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await registerWhenServing(address, namespace, proc.exited, proc.logFile);
  } catch (err) {
    await stop();
    throw err;
  }
  const listeners = [frontend, frontendMembership, history, historyMembership, matching, matchingMembership, worker, workerMembership].map((p) => `127.0.0.1:${p}`);
  return { address, namespace, logFile: proc.logFile, listeners, stop };
}

/** Distinct ports in {@link PORT_RANGE} free on 127.0.0.1 right now (held open together so they differ). */
async function freeSmallintPorts(count: number): Promise<number[]> {
  const held: net.Server[] = [];
  try {
    for (let attempt = 0; held.length < count && attempt < PORT_ATTEMPTS; attempt++) {
      const port = PORT_RANGE.from + Math.floor(Math.random() * (PORT_RANGE.to - PORT_RANGE.from + 1));
      const srv = net.createServer();
      const ok = await new Promise<boolean>((resolve) => {
        srv.once('error', () => resolve(false));
        srv.listen(port, '127.0.0.1', () => resolve(true));
      });
      if (ok) held.push(srv);
    }
    if (held.length < count) throw new Error(`found only ${held.length} of ${count} free ports in ${PORT_RANGE.from}-${PORT_RANGE.to}`);
    return held.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(held.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/** `create-database`, `setup-schema -v 0.0` and `update-schema` to the newest version, for both databases. */
async function setUpSchema(bin: string, pg: Postgres, dir: string): Promise<void> {
  const tool = path.join(bin, 'temporal-sql-tool');
  // The password goes in the environment, not on a command line others can read.
  const env = { PATH: process.env.PATH ?? '', SQL_HOST: pg.host, SQL_PORT: String(pg.port), SQL_USER: pg.user, SQL_PASSWORD: pg.password };
  const log = path.join(dir, 'sql-tool.log');
  for (const db of DATABASES) {
    const versioned = path.join(bin, 'schema', 'postgresql', 'v12', db.schema, 'versioned');
    for (const step of [['create-database'], ['setup-schema', '-v', '0.0'], ['update-schema', '-d', versioned]]) {
      await runTool(tool, ['--plugin', SQL_PLUGIN, '--db', db.name, ...step], env, log);
    }
  }
}

function runTool(file: string, args: string[], env: NodeJS.ProcessEnv, logFile: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env, timeout: SQL_TOOL_TIMEOUT_MS }, (err, stdout, stderr) => {
      fs.appendFileSync(logFile, `# ${path.basename(file)} ${args.join(' ')}\n${stdout}${stderr}`);
      if (err) reject(new Error(`${path.basename(file)} ${args.join(' ')} failed: ${err.message}\n${(stderr || stdout).trim().split('\n').slice(-10).join('\n')}`, { cause: err }));
      else resolve();
    });
  });
}

interface Ports {
  frontend: number;
  frontendMembership: number;
  history: number;
  historyMembership: number;
  matching: number;
  matchingMembership: number;
  worker: number;
  workerMembership: number;
}

/** The server's static config: PostgreSQL for both stores, every service bound to 127.0.0.1, no metrics or pprof listener. */
function serverConfig(o: { pg: Postgres; address: string; dynamicConfigFile: string; maxConns: number; ports: Ports }): unknown {
  const store = (databaseName: string, maxConns: number): unknown => ({
    sql: {
      pluginName: SQL_PLUGIN,
      databaseName,
      connectAddr: `${o.pg.host}:${o.pg.port}`,
      connectProtocol: 'tcp',
      user: o.pg.user,
      password: o.pg.password,
      maxConns,
      maxIdleConns: maxConns,
      maxConnLifetime: '1h',
    },
  });
  const rpc = (grpcPort: number, membershipPort: number): unknown => ({ rpc: { grpcPort, membershipPort, bindOnIP: '127.0.0.1' } });
  return {
    log: { stdout: true, level: 'warn' },
    persistence: {
      defaultStore: 'postgres-default',
      visibilityStore: 'postgres-visibility',
      numHistoryShards: NUM_HISTORY_SHARDS,
      datastores: {
        'postgres-default': store('temporal', o.maxConns),
        'postgres-visibility': store('temporal_visibility', VISIBILITY_MAX_CONNS),
      },
    },
    global: { membership: { maxJoinDuration: '30s', broadcastAddress: '127.0.0.1' } },
    services: {
      frontend: rpc(o.ports.frontend, o.ports.frontendMembership),
      history: rpc(o.ports.history, o.ports.historyMembership),
      matching: rpc(o.ports.matching, o.ports.matchingMembership),
      worker: rpc(o.ports.worker, o.ports.workerMembership),
    },
    clusterMetadata: {
      enableGlobalNamespace: false,
      failoverVersionIncrement: 10,
      masterClusterName: 'active',
      currentClusterName: 'active',
      clusterInformation: { active: { enabled: true, initialFailoverVersion: 1, rpcName: 'frontend', rpcAddress: o.address } },
    },
    dcRedirectionPolicy: { policy: 'noop' },
    dynamicConfigClient: { filepath: o.dynamicConfigFile, pollInterval: DYNAMIC_CONFIG_POLL },
  };
}

/**
 * Task queues of one partition, as the README's "Many workers" section requires: Temporal keeps priority order
 * within a partition only, and admission takes tasks strictly by priority.
 */
function dynamicConfig(extra: Record<string, unknown>): Record<string, { value: unknown }[]> {
  const values: Record<string, unknown> = {
    'matching.numTaskqueueReadPartitions': 1,
    'matching.numTaskqueueWritePartitions': 1,
    ...extra,
  };
  return Object.fromEntries(Object.entries(values).map(([k, value]) => [k, [{ value }]]));
}

/** Polls until the frontend answers, registers `namespace` (unless it exists), and waits until it is served. */
async function registerWhenServing(address: string, namespace: string, exited: Promise<void>, logFile: string): Promise<void> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last: unknown;
  let registered = false;
  while (Date.now() < deadline) {
    if (gone) throw new Error(`temporal-server exited before it served namespace ${namespace}; last log lines:\n${tail(logFile, LOG_TAIL_LINES)}`);
    let connection: Connection | undefined;
    try {
      connection = await Connection.connect({ address, connectTimeout: '2s' });
      if (!registered) {
        await connection.workflowService
          .registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs(RETENTION_DAYS * DAY_MS) })
          .catch((err: unknown) => {
            // gRPC status 6 is ALREADY_EXISTS: an earlier attempt got through.
            if ((err as { code?: unknown }).code !== 6) throw err;
          });
        registered = true;
      }
      await connection.workflowService.describeNamespace({ namespace });
      return;
    } catch (err) {
      last = err;
    } finally {
      await connection?.close().catch(() => undefined);
    }
    await sleep(POLL_MS);
  }
  throw new Error(`temporal-server on ${address} did not serve namespace ${namespace} within ${START_TIMEOUT_MS / 1000} s (last: ${String(last)}); last log lines:\n${tail(logFile, LOG_TAIL_LINES)}`);
}
