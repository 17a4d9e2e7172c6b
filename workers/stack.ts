/**
 * The whole backend in one process: Temporal (external or an embedded dev server),
 * the task worker, the HTTP API and the sandbox reaper.
 */
import fs from 'node:fs/promises';
import type { Server } from 'node:http';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { createActivities } from '../activities';
import { ArtifactStore } from '../activities/artifacts/store';
import { GvisorSandboxDriver } from '../activities/sandbox/gvisor';
import { createApp } from '../api/app';
import { ALL_SEARCH_ATTRIBUTES } from '../workflows/search-attributes';
import { repoRulesOf, type Config } from './config';
import type { Logger } from './log';
import { reapOrphanSandboxes } from './reaper';
import { createSandboxDriver, type SandboxInfo } from './sandbox';
import { ensureSearchAttributes, resolveTemporalCli, startDevServer, TemporalCliNotFoundError, type DevServer } from './temporal-server';
import { bundleWorkflows, createWorker } from './worker';

/** A running backend; `stop()` shuts it down in reverse order and is safe to call twice. */
export interface Stack {
  /** Base URL of the HTTP API, or null when this process runs only a worker. */
  url: string | null;
  temporalAddress: string;
  client: Client;
  stop(): Promise<void>;
}

const REAP_EVERY_MS = 5 * 60_000;

/** Starts every part the configuration asks for and resolves once the API is listening. */
export async function startStack(cfg: Config, log: Logger): Promise<Stack> {
  const cleanups: (() => Promise<void>)[] = [];
  const stop = async (): Promise<void> => {
    while (cleanups.length > 0) {
      const c = cleanups.pop()!;
      await c().catch((err: unknown) => log.error('shutdown step failed', { error: err }));
    }
  };
  try {
    await fs.mkdir(cfg.DATA_DIR, { recursive: true });
    let address: string;
    if (cfg.TEMPORAL_ADDRESS) {
      address = cfg.TEMPORAL_ADDRESS;
    } else {
      const server = await startEmbeddedTemporal(cfg, log);
      cleanups.push(() => server.stop());
      address = server.address;
    }
    const connection = await Connection.connect({ address });
    cleanups.push(() => connection.close());
    await ensureSearchAttributes(connection, cfg.TEMPORAL_NAMESPACE, [...ALL_SEARCH_ATTRIBUTES]);
    const client = new Client({ connection, namespace: cfg.TEMPORAL_NAMESPACE });

    const artifacts = new ArtifactStore(path.join(cfg.DATA_DIR, 'artifacts'));
    let sandboxInfo: SandboxInfo | null = null;

    let worker: Worker | null = null;
    if (cfg.ROLES.includes('worker')) {
      const chosen = await createSandboxDriver(cfg, log);
      const sandbox = chosen.driver;
      // runsc keeps an empty network namespace mounted under DATA_DIR; let it go when no sandbox is left.
      if (sandbox instanceof GvisorSandboxDriver) cleanups.push(() => sandbox.releaseHost());
      sandboxInfo = chosen.info;
      if (sandboxInfo.warning) log.warn(`sandbox driver ${sandboxInfo.driver}: ${sandboxInfo.warning}`, { ...sandboxInfo });
      else log.info(`sandbox driver ${sandboxInfo.driver}`, { ...sandboxInfo });
      const activities = createActivities({
        sandbox,
        artifacts,
        dataDir: cfg.DATA_DIR,
        log,
        repos: { rules: repoRulesOf(cfg), credentialsFile: cfg.GIT_CREDENTIALS_FILE },
        prices: cfg.MODEL_PRICES,
      });
      const nativeConnection = await NativeConnection.connect({ address });
      cleanups.push(() => nativeConnection.close());
      const w = await createWorker({
        connection: nativeConnection,
        namespace: cfg.TEMPORAL_NAMESPACE,
        taskQueue: cfg.TEMPORAL_TASK_QUEUE,
        activities,
        workflowBundle: await bundleWorkflows(),
        maxCachedWorkflows: cfg.WORKER_MAX_CACHED_WORKFLOWS,
      });
      worker = w;
      const running = runWorker(w, log);
      cleanups.push(async () => {
        if (w.getState() === 'RUNNING') w.shutdown();
        await running;
      });

      const reap = (): void => {
        reapOrphanSandboxes({
          client,
          // Names starting with a dot are the repositories and half clones of the working copies, not tasks.
          list: async () => [
            ...new Set([...(await sandbox.list()), ...(await listDir(path.join(cfg.DATA_DIR, 'workspaces'))).filter((n) => !n.startsWith('.'))]),
          ],
          remove: (taskId) => activities.teardownSandbox({ task_id: taskId, sandbox: null }),
          log,
        }).catch((err: unknown) => log.warn('sandbox reaper pass failed', { error: err }));
      };
      reap();
      const timer = setInterval(reap, REAP_EVERY_MS);
      timer.unref();
      cleanups.push(async () => clearInterval(timer));
    }

    if (!cfg.ROLES.includes('api')) {
      log.info('agent inbox worker ready', { temporal: address, task_queue: cfg.TEMPORAL_TASK_QUEUE, data_dir: cfg.DATA_DIR });
      return { url: null, temporalAddress: address, client, stop };
    }
    const app = createApp({
      client,
      taskQueue: cfg.TEMPORAL_TASK_QUEUE,
      namespace: cfg.TEMPORAL_NAMESPACE,
      log,
      repoRules: repoRulesOf(cfg),
      prices: cfg.MODEL_PRICES,
      artifacts,
      maxBodyBytes: cfg.API_MAX_BODY_BYTES,
      health: async () => ({
        sandbox: sandboxInfo ?? 'no worker in this process',
        isolation_warning: sandboxInfo?.warning,
        worker: worker ? worker.getState() : 'not in this process',
        task_queue: cfg.TEMPORAL_TASK_QUEUE,
      }),
    });
    const server = await listen(app, cfg.PORT, cfg.HOST);
    cleanups.push(() => closeServer(server));
    const port = (server.address() as { port: number }).port;
    const url = `http://${cfg.HOST}:${port}`;
    log.info('agent inbox backend ready', { url, temporal: address, namespace: cfg.TEMPORAL_NAMESPACE, data_dir: cfg.DATA_DIR });
    return { url, temporalAddress: address, client, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Starts `temporal server start-dev` on the SQLite file under DATA_DIR, or the SDK's own download as a last resort. */
async function startEmbeddedTemporal(cfg: Config, log: Logger): Promise<DevServer> {
  const dataDir = path.join(cfg.DATA_DIR, 'temporal');
  const port = cfg.TEMPORAL_PORT;
  try {
    const cli = await resolveTemporalCli({ cacheDir: cfg.TEMPORAL_CLI_CACHE, log });
    return await startDevServer({ cli, dataDir, namespace: cfg.TEMPORAL_NAMESPACE, port, uiPort: cfg.TEMPORAL_UI_PORT, log });
  } catch (err) {
    if (!(err instanceof TemporalCliNotFoundError)) throw err;
    log.warn('no Temporal CLI found locally; trying the SDK download', { tried: err.tried });
    const { TestWorkflowEnvironment } = await import('@temporalio/testing');
    await fs.mkdir(dataDir, { recursive: true });
    try {
      const env = await TestWorkflowEnvironment.createLocal({
        server: {
          dbFilename: path.join(dataDir, 'temporal.sqlite'),
          namespace: cfg.TEMPORAL_NAMESPACE,
          ip: '127.0.0.1',
          port,
          executable: { type: 'cached-download', downloadDir: cfg.TEMPORAL_CLI_CACHE },
        },
      });
      return { address: env.address, namespace: cfg.TEMPORAL_NAMESPACE, stop: () => env.teardown() };
    } catch (downloadErr) {
      throw new Error(
        `cannot start Temporal: no CLI found (${err.tried.join('; ')}) and the SDK download failed (${String(downloadErr)}); set TEMPORAL_ADDRESS or TEMPORAL_CLI`,
        { cause: downloadErr },
      );
    }
  }
}

function runWorker(worker: Worker, log: Logger): Promise<void> {
  return worker.run().catch((err: unknown) => {
    log.error('worker stopped with an error', { error: err });
    process.exitCode = 1;
  });
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch {
    return [];
  }
}

function listen(app: import('express').Express, port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host, (err?: Error) => (err ? reject(err) : resolve(server)));
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
