/**
 * Intake on a production Temporal against the dev server: task starts per second through `POST /v1/tasks` (as
 * `bench/run.ts` measures them: a burst with a fixed number in flight and no worker running) on the embedded dev
 * server (SQLite) and on `temporal-server` with PostgreSQL, in one run, and their ratio.
 *
 *   npm run bench:postgres                         # 300 tasks, 16 in flight, on each server
 *   BENCH_TASKS=1000 BENCH_START_CONCURRENCY=32 npm run bench:postgres
 *
 * PostgreSQL runs with fsync and synchronous commits on, as a deployed database does; the dev server runs as the
 * backend starts it (WAL, synchronous=NORMAL). A start that fails is not retried: its status and body are
 * reported with the server's log lines about it, so a fault under the burst shows its cause.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { DevServer } from '../workers/temporal-server';
import { makeOriginRepo, tempDir } from '../test/support/git-fixture';
import { call } from '../test/support/http';
import { startPostgres, type Postgres } from '../test/support/postgres';
import { startTestStack, startTestTemporal } from '../test/support/stack';
import { startTemporalOnPostgres, type PostgresTemporal } from '../test/support/temporal-postgres';
import { startBurst } from './intake';
import { summary } from './stats';

const TASKS = Number(process.env.BENCH_TASKS ?? 300);
const START_CONCURRENCY = Number(process.env.BENCH_START_CONCURRENCY ?? 16);
/** Starts before the measured burst, so neither server is measured on its first, cold requests. */
const WARMUP_TASKS = 16;
/** Server log lines quoted per failed start. */
const LOG_LINES = 20;

interface Intake {
  starts_per_second: number;
  start_latency_ms: ReturnType<typeof summary>;
  failed: number;
  first_failure?: { status: number; body: unknown };
}

/** Posts `WARMUP_TASKS`, then `TASKS` with `START_CONCURRENCY` in flight, through an API on `temporal`. */
async function intake(temporal: DevServer, label: string): Promise<Intake> {
  const root = tempDir(`bench-${label}`);
  const origin = makeOriginRepo(root, { 'README.md': 'bench\n' });
  const api = await startTestStack(temporal, path.join(root, 'data'), `bench-${label}-${process.pid}`, { ROLES: 'api' });
  const base = api.url!;
  const body = { repo: origin, goal: 'bench: intake', planner: { kind: 'recipe', steps: [{ run: 'echo change >> README.md' }] } };
  try {
    for (let i = 0; i < WARMUP_TASKS; i++) await call(base, 'POST', '/v1/tasks', body);
    const burst = await startBurst(base, body, TASKS, START_CONCURRENCY);
    const failed = burst.failures.length;
    return {
      starts_per_second: Math.round((TASKS - failed) / burst.seconds),
      start_latency_ms: summary(burst.latencies),
      failed,
      ...(failed > 0 ? { first_failure: burst.failures[0] } : {}),
    };
  } finally {
    await api.stop();
  }
}

/** The server's warnings and errors, for a run with failed starts. */
function serverComplaints(logFile: string): string[] {
  const lines = fs.readFileSync(logFile, 'utf8').split('\n');
  return lines.filter((l) => /"level":"(warn|error|fatal)"/.test(l)).slice(-LOG_LINES).map((l) => l.slice(0, 600));
}

async function main(): Promise<void> {
  const dev = await startTestTemporal();
  let devResult: Intake;
  try {
    devResult = await intake(dev, 'dev');
  } finally {
    await dev.stop();
  }

  let pg: Postgres | undefined;
  let server: PostgresTemporal | undefined;
  let pgResult: Intake;
  let complaints: string[] = [];
  try {
    pg = await startPostgres({ durable: true });
    server = await startTemporalOnPostgres(pg);
    pgResult = await intake(server, 'postgres');
    if (pgResult.failed > 0) complaints = serverComplaints(server.logFile);
  } finally {
    await server?.stop();
    await pg?.stop();
  }

  const result = {
    date: new Date().toISOString(),
    machine: `${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.cpus()[0]?.model ?? 'unknown cpu'}, node ${process.version}`,
    tasks: TASKS,
    in_flight: START_CONCURRENCY,
    dev_server: devResult,
    postgres: pgResult,
    ratio_postgres_to_dev: Math.round((pgResult.starts_per_second / devResult.starts_per_second) * 100) / 100,
    ...(complaints.length ? { postgres_server_log: complaints } : {}),
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  if (devResult.failed > 0 || pgResult.failed > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
